//! The vault endpoints: add, list, show, remove, and key export; and the endpoints of the
//! information hosts write about backups after the fact: annotate and host copies; copies into
//! a vault and imports from one. Adding a vault opens (or creates) its repository.
//!
//! Secrets (S3 credentials, vault keys) go in with `POST /v1/vaults` and are never returned,
//! except a key by `POST /v1/vaults/{name}/key-export`; no error message quotes them.

use std::sync::Arc;

use arca_backup::{Annotation, BackupId, HostCopy, NewVault, Secret, VaultEntry, VaultLocation};
use axum::Json;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::backup_json::changed_backup;
use crate::error::ApiError;
use crate::server::{ApiJson, ApiPath, ApiQuery, St, blocking};
use crate::types::*;
use arca_backup::time::{format_ms, parse_time};
use axum::extract::State;

fn vault_json(e: VaultEntry, backups: u64) -> Vault {
    let kind = match e.location() {
        VaultLocation::Directory { .. } => VaultKind::Directory,
        VaultLocation::S3 { .. } => VaultKind::S3,
    };
    Vault {
        kind,
        credentials: e.credentials.is_some(),
        encrypted: e.encrypted(),
        vault_id: e.vault_id.map(|id| arca_backup::vaults::hex(&id)),
        added: format_ms(e.added_ms),
        name: e.name,
        url: e.url,
        endpoint: e.endpoint,
        region: e.region,
        allow_http: e.allow_http,
        backups,
    }
}

fn with_count(b: &arca_backup::Backups, e: VaultEntry) -> Result<Vault, ApiError> {
    let n = b.backups_in_vault(&e.name)?.len() as u64;
    Ok(vault_json(e, n))
}

/// Registers a vault and opens its repository (creating it when the place holds none), so an
/// unreachable or wrong vault is refused and not registered; with `encrypt`, its key is made
/// now. A vault that exists there encrypted is registered without opening when no key was
/// given: `vault import` with its exported key opens it.
#[utoipa::path(post, path = "/v1/vaults", tag = "vaults", request_body = AddVault,
    responses((status = 201, body = Vault, links(
                ("Get" = (operation_id = "get_vault",
                    parameters(("name" = "$response.body#/name")))),
                ("Remove" = (operation_id = "remove_vault",
                    parameters(("name" = "$response.body#/name")))))),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
              (status = 507, body = ErrorBody)))]
pub(crate) async fn add_vault(
    State(s): St,
    ApiJson(req): ApiJson<AddVault>,
) -> Result<(StatusCode, Json<Vault>), ApiError> {
    let v = blocking(move || {
        let e = s.backups.add_vault(NewVault {
            name: req.name,
            url: req.url,
            endpoint: req.endpoint,
            region: req.region,
            allow_http: req.allow_http,
            access_key: req.access_key.map(Secret::new),
            secret_key: req.secret_key.map(Secret::new),
            encrypt: req.encrypt,
        })?;
        // Reachable now, or not registered: the repository is opened (made on first use).
        let e = s.backups.connect_vault(e)?;
        Ok(vault_json(e, 0))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Every registered vault, by name (without secrets).
#[utoipa::path(get, path = "/v1/vaults", tag = "vaults",
    responses((status = 200, body = Vec<Vault>), (status = 503, body = ErrorBody)))]
pub(crate) async fn list_vaults(State(s): St) -> Result<Json<Vec<Vault>>, ApiError> {
    let list = blocking(move || {
        s.backups
            .vaults()?
            .into_iter()
            .map(|e| with_count(&s.backups, e))
            .collect()
    })
    .await?;
    Ok(Json(list))
}

#[utoipa::path(get, path = "/v1/vaults/{name}", tag = "vaults", params(("name" = String, Path)),
    responses((status = 200, body = Vault), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn get_vault(
    State(s): St,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vault>, ApiError> {
    let v = blocking(move || with_count(&s.backups, s.backups.vault(&name)?)).await?;
    Ok(Json(v))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoveVaultQuery {
    /// Remove even though backups list copies in it: those copy entries are dropped from
    /// their records (a backup living only there becomes deleted).
    force: Option<bool>,
}

/// Removes a vault from the registry; its data stays where it is. Refused (409) while any
/// backup lists a copy in it, naming them, unless forced.
#[utoipa::path(delete, path = "/v1/vaults/{name}", tag = "vaults",
    params(("name" = String, Path), RemoveVaultQuery),
    responses((status = 200, body = RemovedVault), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn remove_vault(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<RemoveVaultQuery>,
) -> Result<Json<RemovedVault>, ApiError> {
    let r = blocking(move || {
        let r = s.backups.remove_vault(&name, q.force.unwrap_or(false))?;
        Ok(RemovedVault {
            vault: vault_json(r.entry, 0),
            dropped_from: r.dropped_from,
        })
    })
    .await?;
    Ok(Json(r))
}

/// Returns an encrypted vault's key (hex), for disaster recovery: the only way it leaves the
/// array. 422 for a vault that is not encrypted.
#[utoipa::path(post, path = "/v1/vaults/{name}/key-export", tag = "vaults",
    params(("name" = String, Path)),
    responses((status = 200, body = VaultKeyExport), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn export_vault_key(
    State(s): St,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<VaultKeyExport>, ApiError> {
    let k = blocking(move || {
        let key = s.backups.vault_key(&name)?;
        Ok(VaultKeyExport {
            vault: name,
            key: key.to_hex(),
        })
    })
    .await?;
    Ok(Json(k))
}

/// Changes what the host said about a backup (label, description, content id, metadata),
/// with the bounds of creation; a history entry says what changed.
#[utoipa::path(post, path = "/v1/backups/{id}/annotate", tag = "backups",
    params(("id" = u64, Path)), request_body = AnnotateBackup,
    responses((status = 200, body = Backup), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn annotate_backup(
    State(s): St,
    ApiPath(id): ApiPath<BackupId>,
    ApiJson(req): ApiJson<AnnotateBackup>,
) -> Result<Json<Backup>, ApiError> {
    let annotation = Annotation {
        label: req.label,
        description: req.description,
        content_id: req.content_id,
        meta_set: req.meta,
        meta_unset: req.unset_meta,
    };
    changed_backup(s, move |s| Ok(s.backups.annotate(id, &annotation)?)).await
}

/// Records a copy of a complete backup that the host made itself (a tape, a disk...).
#[utoipa::path(post, path = "/v1/backups/{id}/host-copies", tag = "backups",
    params(("id" = u64, Path)), request_body = RecordHostCopy,
    responses((status = 200, body = Backup), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn record_host_copy(
    State(s): St,
    ApiPath(id): ApiPath<BackupId>,
    ApiJson(req): ApiJson<RecordHostCopy>,
) -> Result<Json<Backup>, ApiError> {
    let copied_ms = req
        .copied
        .as_deref()
        .map(|t| {
            parse_time(t).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid", format!("copied: {e}"))
            })
        })
        .transpose()?;
    changed_backup(s, move |s| {
        let copy = HostCopy {
            medium: req.medium,
            location: req.location,
            by: req.by,
            copied_ms: copied_ms.unwrap_or_else(|| s.backups.now_ms()),
        };
        Ok(s.backups.record_host_copy(id, copy)?)
    })
    .await
}

/// Copies complete backups on the array into the vault, as one `vault-copy` job (202).
#[utoipa::path(post, path = "/v1/vaults/{name}/copies", tag = "vaults",
    params(("name" = String, Path)), request_body = CopyToVault,
    responses((status = 202, body = VaultCopyStarted), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn copy_to_vault(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<CopyToVault>,
) -> Result<(StatusCode, Json<VaultCopyStarted>), ApiError> {
    let job = blocking(move || Ok(s.backups.copy_to_vault(&req.backups, &name)?)).await?;
    Ok((StatusCode::ACCEPTED, Json(VaultCopyStarted { job })))
}

/// Adds every backup the vault holds to this catalog (disaster recovery): vault-only backups
/// with their original ids and information; `restore --as` then brings them back. With `key`
/// (an exported key) an encrypted vault is opened and the key kept; a wrong key is refused.
#[utoipa::path(post, path = "/v1/vaults/{name}/import", tag = "vaults",
    params(("name" = String, Path)), request_body = ImportVault,
    responses((status = 200, body = VaultImported), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn import_vault(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ImportVault>,
) -> Result<Json<VaultImported>, ApiError> {
    let r = blocking(move || {
        let r = s.backups.import_vault(&name, req.key.as_deref())?;
        Ok(VaultImported {
            vault: name,
            imported: r.imported,
            known: r.known,
            failed: r
                .failed
                .into_iter()
                .map(|(backup, error)| ImportFailure { backup, error })
                .collect(),
        })
    })
    .await?;
    Ok(Json(r))
}

/// Per-vault counters since the daemon started, in the exposition format.
pub(crate) fn render_metrics(
    m: &std::collections::BTreeMap<String, arca_backup::VaultMetrics>,
    o: &mut String,
) {
    use std::fmt::Write as _;
    type Field = fn(&arca_backup::VaultMetrics) -> u64;
    let families: [(&str, &str, Field); 7] = [
        (
            "arca_vault_read_bytes_total",
            "Bytes read from the array by copies into the vault.",
            |x| x.bytes_read,
        ),
        (
            "arca_vault_new_bytes_total",
            "Bytes of chunks copies found new to the vault.",
            |x| x.bytes_new,
        ),
        (
            "arca_vault_stored_bytes_total",
            "Bytes copies wrote to the vault (compressed, sealed).",
            |x| x.bytes_stored,
        ),
        (
            "arca_vault_requests_total",
            "Write requests copies sent to the vault.",
            |x| x.requests,
        ),
        (
            "arca_vault_restored_bytes_total",
            "Bytes restores wrote from the vault.",
            |x| x.bytes_restored,
        ),
        (
            "arca_vault_get_requests_total",
            "Read requests sent to the vault (manifests, pack indexes, pack ranges).",
            |x| x.get_requests,
        ),
        (
            "arca_vault_fetched_bytes_total",
            "Bytes read requests returned from the vault.",
            |x| x.bytes_fetched,
        ),
    ];
    for (name, help, field) in families {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} counter");
        for (vault, x) in m {
            let v = vault.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(o, "{name}{{vault=\"{v}\"}} {}", field(x));
        }
    }
}

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/vaults", get(list_vaults).post(add_vault))
        .route("/v1/vaults/{name}", get(get_vault).delete(remove_vault))
        .route("/v1/vaults/{name}/key-export", post(export_vault_key))
        .route("/v1/vaults/{name}/copies", post(copy_to_vault))
        .route("/v1/vaults/{name}/import", post(import_vault))
        .route("/v1/backups/{id}/annotate", post(annotate_backup))
        .route("/v1/backups/{id}/host-copies", post(record_host_copy))
}
