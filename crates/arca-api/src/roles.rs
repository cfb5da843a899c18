//! Roles of API tokens and the least role each route needs.
//!
//! Roles are ordered by privilege: `read-only` < `backup` < `operator` < `admin`. A `backup`
//! token takes, lists, verifies and holds backups; an `operator` also manages volumes,
//! snapshots, pairs, jobs and restores; only `admin` deletes backups, weakens their
//! retention (release, retention, prune), rebuilds the catalog and manages tokens. A route
//! missing from the table needs `admin` (deny by default): a new route must be placed here,
//! which the test against the OpenAPI document enforces.

use std::fmt;
use std::str::FromStr;

use axum::http::Method;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ReadOnly,
    Backup,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::ReadOnly, Role::Backup, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Backup => "backup",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (admin, operator, backup, read-only)"))
    }
}

use Role::*;

/// Every route (method, path template as routed) with the least role that may call it.
pub const ROUTE_ROLES: &[(&str, &str, Role)] = &[
    ("GET", "/metrics", ReadOnly),
    ("GET", "/v1/openapi.json", ReadOnly),
    ("GET", "/v1/pool", ReadOnly),
    ("POST", "/v1/pool/check", Operator),
    ("GET", "/v1/checks", ReadOnly),
    ("GET", "/v1/exports", ReadOnly),
    ("GET", "/v1/volumes", ReadOnly),
    ("POST", "/v1/volumes", Operator),
    ("GET", "/v1/volumes/{name}", ReadOnly),
    ("DELETE", "/v1/volumes/{name}", Operator),
    ("POST", "/v1/volumes/{name}/resize", Operator),
    ("POST", "/v1/volumes/{name}/rename", Operator),
    ("POST", "/v1/volumes/{name}/snapshots", Operator),
    ("GET", "/v1/volumes/{name}/snapshots/{snapshot}", ReadOnly),
    (
        "DELETE",
        "/v1/volumes/{name}/snapshots/{snapshot}",
        Operator,
    ),
    (
        "POST",
        "/v1/volumes/{name}/snapshots/{snapshot}/clone",
        Operator,
    ),
    ("GET", "/v1/snapshots", ReadOnly),
    ("GET", "/v1/jobs", ReadOnly),
    ("GET", "/v1/jobs/{id}", ReadOnly),
    ("POST", "/v1/jobs/{id}/cancel", Operator),
    ("GET", "/v1/volumes/{name}/backup-targets", ReadOnly),
    // Prunes backups by their retention: it deletes.
    ("POST", "/v1/volumes/{name}/prune", Admin),
    ("GET", "/v1/backups", ReadOnly),
    ("POST", "/v1/backups", Backup),
    ("POST", "/v1/backups/verify", Backup),
    ("GET", "/v1/backups/{id}", ReadOnly),
    ("DELETE", "/v1/backups/{id}", Admin),
    ("POST", "/v1/backups/{id}/restore", Operator),
    // A hold only protects a backup longer; releasing it weakens its protection.
    ("POST", "/v1/backups/{id}/hold", Backup),
    ("POST", "/v1/backups/{id}/release", Admin),
    ("POST", "/v1/backups/{id}/retention", Admin),
    ("POST", "/v1/backup-sets/{id}/restore", Operator),
    ("GET", "/v1/catalog/check", ReadOnly),
    ("POST", "/v1/catalog/rebuild", Admin),
    ("GET", "/v1/pairs", ReadOnly),
    ("POST", "/v1/pairs", Operator),
    ("GET", "/v1/pairs/{name}", ReadOnly),
    ("DELETE", "/v1/pairs/{name}", Operator),
    ("POST", "/v1/pairs/{name}/split", Operator),
    ("POST", "/v1/pairs/{name}/resync", Operator),
    ("GET", "/v1/newest-backups", ReadOnly),
    // Host-written information and copies a host made itself: they add, never remove.
    ("POST", "/v1/backups/{id}/annotate", Backup),
    ("POST", "/v1/backups/{id}/host-copies", Backup),
    // A policy's keep rules prune (delete) backups: defining them is an admin's.
    ("GET", "/v1/policies", ReadOnly),
    ("POST", "/v1/policies", Admin),
    ("GET", "/v1/policies/{name}", ReadOnly),
    ("PATCH", "/v1/policies/{name}", Admin),
    ("DELETE", "/v1/policies/{name}", Admin),
    ("POST", "/v1/policies/{name}/pause", Operator),
    ("POST", "/v1/policies/{name}/resume", Operator),
    ("POST", "/v1/policies/{name}/run", Operator),
    ("GET", "/v1/policies/{name}/next", ReadOnly),
    ("GET", "/v1/policies/{name}/history", ReadOnly),
    // Where backups go off the array, with their credentials and keys.
    ("GET", "/v1/vaults", ReadOnly),
    ("POST", "/v1/vaults", Admin),
    ("GET", "/v1/vaults/{name}", ReadOnly),
    ("DELETE", "/v1/vaults/{name}", Admin),
    ("POST", "/v1/vaults/{name}/key-export", Admin),
    // Copying backups off the array only adds; importing a vault's backups rewrites the catalog.
    ("POST", "/v1/vaults/{name}/copies", Backup),
    ("POST", "/v1/vaults/{name}/import", Admin),
    ("GET", "/v1/tokens", Admin),
    ("POST", "/v1/tokens", Admin),
    ("DELETE", "/v1/tokens/{name}", Admin),
    ("GET", "/v1/audit", Admin),
];

/// The least role for a request to `template` (None: no route matched, a 404 any caller may
/// see). Routes not in the table need `admin`.
pub fn least_role(method: &Method, template: Option<&str>) -> Role {
    let Some(template) = template else {
        return ReadOnly;
    };
    // HEAD is answered by the GET route.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTE_ROLES
        .iter()
        .find(|(m, p, _)| *m == method && *p == template)
        .map_or(Admin, |(_, _, r)| *r)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_documented_route_has_a_role_and_every_role_a_route() {
        let doc = crate::openapi_json();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        // Served but not part of the JSON API's document.
        documented.insert(("GET".into(), "/metrics".into()));
        documented.insert(("GET".into(), "/v1/openapi.json".into()));
        let table: BTreeSet<(String, String)> = ROUTE_ROLES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(table.len(), ROUTE_ROLES.len(), "a route listed twice");
        let missing: Vec<_> = documented.difference(&table).collect();
        assert!(missing.is_empty(), "routes without a role: {missing:?}");
        let stale: Vec<_> = table.difference(&documented).collect();
        assert!(
            stale.is_empty(),
            "roles of routes that do not exist: {stale:?}"
        );
    }

    #[test]
    fn no_role_below_admin_deletes_backups_or_weakens_retention() {
        for (method, path) in [
            ("DELETE", "/v1/backups/{id}"),
            ("POST", "/v1/backups/{id}/release"),
            ("POST", "/v1/backups/{id}/retention"),
            ("POST", "/v1/volumes/{name}/prune"),
            ("POST", "/v1/tokens"),
        ] {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(least_role(&m, Some(path)), Admin, "{method} {path}");
        }
        // Unknown routes are denied by default; reads are open to every role.
        assert_eq!(least_role(&Method::POST, Some("/v1/new-thing")), Admin);
        assert_eq!(least_role(&Method::HEAD, Some("/v1/pool")), ReadOnly);
        assert_eq!(least_role(&Method::GET, None), ReadOnly);
    }

    #[test]
    fn roles_parse_from_their_names() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
