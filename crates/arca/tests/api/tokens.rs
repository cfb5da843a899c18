//! Named tokens with roles: every documented route called with every role, allowed or refused
//! as `arca_api::roles` specifies; secrets shown once and stored only as hashes; revocation;
//! a locked backup undeletable whatever the role; a backup token refused on every changing
//! route but the few that only add; no secret in the log, /metrics or the OpenAPI document.

use serde_json::{Value, json};

use arca_api::roles::{ROUTE_ROLES, Role};

use crate::common::daemon::{Daemon, Serve};
use crate::{call, openapi};

const BOOTSTRAP: &str = "bootstrap-token-for-role-tests-0123";

fn daemon() -> Daemon {
    daemon_on(None)
}

/// A daemon with the bootstrap token, on the pool in `dir` when given (kept by the caller).
fn daemon_on(dir: Option<&std::path::Path>) -> Daemon {
    let serve = match dir {
        Some(d) => Serve::new().pool_dir(d),
        None => Serve::new(),
    };
    serve.token(BOOTSTRAP).volumes(&["v=64M"]).start()
}

/// The changing routes a `backup` token may call, stated here apart from the roles table:
/// each only adds (a backup, a verification, a hold, a note, a copy). Every other changing
/// route, whatever the table says, must refuse it, so no new route lets a backup host delete
/// backups or weaken their retention unnoticed.
const BACKUP_MAY: [(&str, &str); 6] = [
    ("POST", "/v1/backups"),
    ("POST", "/v1/backups/verify"),
    ("POST", "/v1/backups/{id}/hold"),
    ("POST", "/v1/backups/{id}/annotate"),
    ("POST", "/v1/backups/{id}/host-copies"),
    ("POST", "/v1/vaults/{name}/copies"),
];

/// Creates a token with the bootstrap token; its secret.
fn create_token(d: &Daemon, name: &str, role: Role) -> String {
    let body = json!({"name": name, "role": role.as_str()}).to_string();
    let (s, v) = call(d, "POST", "/v1/tokens", Some(&body), Some(BOOTSTRAP));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["role"], role.as_str());
    v["secret"].as_str().unwrap().to_string()
}

/// A concrete path for a template: parameters that name nothing, so an allowed call fails
/// with 404 or 4xx on its input and changes nothing.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{id}" => "999999",
            s if s.starts_with('{') => "nonexistent",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_route_with_every_role_is_allowed_or_refused_as_specified() {
    let d = daemon();
    let secrets: Vec<(Role, String)> = Role::ALL
        .iter()
        .map(|r| (*r, create_token(&d, &format!("t-{r}"), *r)))
        .collect();
    let doc = openapi_with(&d);
    let (mut checked, mut changing) = (0, 0);
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let need = ROUTE_ROLES
                .iter()
                .find(|(m, p, _)| *m == method && p == path)
                .map(|(_, _, r)| *r)
                .unwrap_or_else(|| panic!("{method} {path} has no role"));
            let body = (method != "GET" && method != "DELETE").then_some("{}");
            for (role, secret) in &secrets {
                let (s, v) = call(&d, &method, &concrete(path), body, Some(secret));
                if *role >= need {
                    assert!(
                        s != 403 && s != 401,
                        "{role} refused {method} {path} (needs {need}): {s} {v}"
                    );
                } else {
                    assert_eq!(s, 403, "{role} allowed {method} {path} (needs {need}): {v}");
                    assert!(
                        v["error"]["message"]
                            .as_str()
                            .unwrap()
                            .contains(need.as_str()),
                        "{v}"
                    );
                }
                if *role == Role::Backup && method != "GET" {
                    assert!(
                        BACKUP_MAY.contains(&(method.as_str(), path.as_str())) || s == 403,
                        "a backup token may {method} {path}, not known to only add: {s} {v}"
                    );
                }
                checked += 1;
                changing += usize::from(method != "GET");
            }
        }
    }
    assert!(checked >= 4 * 40, "only {checked} calls");
    // Every route called with every token: no secret in the log, /metrics or the document.
    let mut hidden: Vec<&str> = secrets.iter().map(|(_, s)| &s[5..]).collect();
    hidden.push(BOOTSTRAP);
    crate::assert_secrets_hidden(&d, Some(BOOTSTRAP), &hidden);
    // The audit trail holds every changing call (refused ones too, under their token's
    // name) and no read.
    let (s, trail) = call(&d, "GET", "/v1/audit", None, Some(BOOTSTRAP));
    assert_eq!(s, 200, "{trail}");
    let trail = trail.as_array().unwrap();
    assert_eq!(trail.len(), changing + Role::ALL.len(), "{trail:?}");
    assert!(
        trail
            .iter()
            .all(|e| !e["operation"].as_str().unwrap().starts_with("GET "))
    );
    assert!(
        trail
            .iter()
            .all(|e| e["remote"].as_str().unwrap().starts_with("127.0.0.1:"))
    );
    let refused = trail
        .iter()
        .filter(|e| e["status"] == 403 && e["token"] == "t-read-only")
        .count();
    assert!(
        refused > 20,
        "{refused} refusals of the read-only token recorded"
    );
    let (_, mine) = call(&d, "GET", "/v1/audit?token=t-backup", None, Some(BOOTSTRAP));
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|e| e["token"] == "t-backup")
    );
    // Without a token, or with an unknown one: 401 everywhere.
    assert_eq!(call(&d, "GET", "/v1/pool", None, None).0, 401);
    assert_eq!(call(&d, "GET", "/v1/pool", None, Some("arca_00")).0, 401);
    d.stop();
}

fn openapi_with(d: &Daemon) -> Value {
    let (s, doc) = call(d, "GET", "/v1/openapi.json", None, Some(BOOTSTRAP));
    assert_eq!(s, 200);
    doc
}

#[test]
fn tokens_are_shown_once_stored_as_hashes_and_revocable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pool");
    let d = daemon_on(Some(&dir));
    let secret = create_token(&d, "backup-host", Role::Backup);
    assert!(secret.starts_with("arca_") && secret.len() > 60, "{secret}");
    // The backup role takes backups but deletes nothing.
    let take = json!({"volumes": ["v"]}).to_string();
    let (s, v) = call(&d, "POST", "/v1/backups", Some(&take), Some(&secret));
    assert_eq!(s, 201, "{v}");
    let (s, _) = call(&d, "DELETE", "/v1/volumes/v", None, Some(&secret));
    assert_eq!(s, 403);
    // A name is taken once; listing shows names and roles, never a secret or a hash.
    let dup = json!({"name": "backup-host", "role": "admin"}).to_string();
    assert_eq!(
        call(&d, "POST", "/v1/tokens", Some(&dup), Some(BOOTSTRAP)).0,
        409
    );
    let bad = json!({"name": "bad name", "role": "admin"}).to_string();
    assert_eq!(
        call(&d, "POST", "/v1/tokens", Some(&bad), Some(BOOTSTRAP)).0,
        422
    );
    let (s, list) = call(&d, "GET", "/v1/tokens", None, Some(BOOTSTRAP));
    assert_eq!(s, 200);
    assert_eq!(list[0]["name"], "backup-host");
    assert_eq!(list[0]["role"], "backup");
    assert!(!list.to_string().contains(&secret[5..]), "{list}");
    // Tokens survive a restart; the secret is nowhere in the pool's metadata.
    let d = d.restart();
    assert_eq!(call(&d, "GET", "/v1/pool", None, Some(&secret)).0, 200);
    d.stop();
    let pool = arca_store::Pool::open_paths_with(
        &[&dir.join("device-0.img")],
        &arca_store::OpenOptions::default(),
    )
    .unwrap();
    let mut rows = Vec::new();
    pool.app_scan(
        "api-tokens",
        std::ops::Bound::Unbounded,
        std::ops::Bound::Unbounded,
        false,
        |k, v| {
            rows.push((k.to_vec(), v.to_vec()));
            true
        },
    )
    .unwrap();
    pool.close().unwrap();
    assert_eq!(rows.len(), 1);
    let stored = String::from_utf8_lossy(&rows[0].1).into_owned();
    assert!(!stored.contains(&secret[5..]), "{stored}");
    // Revoked: refused from then on.
    let d = daemon_on(Some(&dir));
    let (s, _) = call(
        &d,
        "DELETE",
        "/v1/tokens/backup-host",
        None,
        Some(BOOTSTRAP),
    );
    assert_eq!(s, 204);
    assert_eq!(call(&d, "GET", "/v1/pool", None, Some(&secret)).0, 401);
    assert_eq!(
        call(
            &d,
            "DELETE",
            "/v1/tokens/backup-host",
            None,
            Some(BOOTSTRAP)
        )
        .0,
        404
    );
    d.stop();
}

#[test]
fn a_locked_backup_stays_undeletable_for_every_role() {
    let d = daemon();
    let admin = create_token(&d, "root", Role::Admin);
    let take = json!({"volumes": ["v"], "lock_until": "2999-01-01"}).to_string();
    let (s, v) = call(&d, "POST", "/v1/backups", Some(&take), Some(&admin));
    assert_eq!(s, 201, "{v}");
    let id = v["backups"][0]["id"].as_u64().unwrap();
    for token in [BOOTSTRAP, admin.as_str()] {
        for query in ["", "?force=true"] {
            let path = format!("/v1/backups/{id}{query}");
            let (s, v) = call(&d, "DELETE", &path, None, Some(token));
            assert_eq!(s, 409, "{v}");
        }
    }
    let (s, _) = call(&d, "GET", &format!("/v1/backups/{id}"), None, Some(&admin));
    assert_eq!(s, 200);
    d.stop();
}

#[test]
fn without_tokens_the_loopback_api_stays_open() {
    let d = Daemon::start();
    assert_eq!(call(&d, "GET", "/v1/pool", None, None).0, 200);
    let _ = openapi(&d);
    d.stop();
}
