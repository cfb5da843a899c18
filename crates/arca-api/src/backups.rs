//! The backup endpoints: targets, create, list and show, verify, restore (one backup or a
//! set), delete, hold and release, retention, prune, catalog check and rebuild. Each calls the
//! backup service ([`arca_backup::Backups`]) off the async threads, since most commit metadata.
//!
//! Bad input of the API's own formats (times, durations, query parameters, contradictory
//! fields) is a 400 naming what is wrong; the service's refusals keep the mapping of
//! [`ApiError`] (409 busy for holds and locks, 422 for invalid values, 404 for unknown ids).

use std::sync::Arc;

use arca_backup::record::Status;
use arca_backup::retention::Policy;
use arca_backup::{BackupId, CreateRequest, HostInfo, PruneRequest, RestoreTo, Retention};
use arca_store::Pool;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::backup_json::{Names, backup_json, changed_backup};
use crate::checks::Findings;
use crate::error::ApiError;
use crate::server::{ApiJson, ApiPath, ApiQuery, St, blocking};
use crate::types::*;
use arca_backup::time::{format_ms, parse_duration, parse_time};

/// Most backups one list request returns (and the default page).
pub const LIST_LIMIT_MAX: usize = arca_backup::catalog::QUERY_LIMIT_MAX;
pub const LIST_LIMIT_DEFAULT: usize = 100;

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
}

/// A body that may be absent (no body means every field's default). Malformed JSON is a 400,
/// a well-formed body with wrong or unknown fields a 422, as [`ApiJson`] answers.
pub(crate) fn optional_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::invalid(e.to_string())
        } else {
            bad_request(e.to_string())
        }
    })
}

fn time_field(name: &str, value: Option<&str>) -> Result<Option<u64>, ApiError> {
    value
        .map(|v| parse_time(v).map_err(|e| bad_request(format!("{name}: {e}"))))
        .transpose()
}

/// The keep-until the request asks for: keep_until, or keep_for from now (the backup service
/// decides; here only the formats are read).
fn keep_until(
    backups: &arca_backup::Backups,
    keep_until: Option<&str>,
    keep_for: Option<&str>,
) -> Result<Option<u64>, ApiError> {
    let at = time_field("keep_until", keep_until)?;
    let duration = keep_for
        .map(|d| parse_duration(d).map_err(|e| bad_request(format!("keep_for: {e}"))))
        .transpose()?;
    Ok(backups.keep_until(at, duration)?)
}

/// Where a volume can be backed up to, best first: other devices before the source's.
#[utoipa::path(get, path = "/v1/volumes/{name}/backup-targets", tag = "backups",
    params(("name" = String, Path)),
    responses((status = 200, body = Vec<BackupTarget>), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn backup_targets(
    State(s): St,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<BackupTarget>>, ApiError> {
    let targets = blocking(move || Ok(s.backups.targets(&name)?)).await?;
    Ok(Json(targets))
}

/// Takes a backup of one volume, or a backup set of several at one point in time. A snapshot
/// backup exists when this returns (its digest job runs on); a copy backup is `copying` until
/// its job finishes.
#[utoipa::path(post, path = "/v1/backups", tag = "backups", request_body = CreateBackup,
    responses((status = 201, body = CreatedBackups, links(
                ("Get" = (operation_id = "get_backup",
                    parameters(("id" = "$response.body#/backups/0/id")))),
                ("Delete" = (operation_id = "delete_backup",
                    parameters(("id" = "$response.body#/backups/0/id")))),
                ("Hold" = (operation_id = "hold_backup",
                    parameters(("id" = "$response.body#/backups/0/id")))),
                ("Release" = (operation_id = "release_backup",
                    parameters(("id" = "$response.body#/backups/0/id")))),
                ("Retention" = (operation_id = "set_retention",
                    parameters(("id" = "$response.body#/backups/0/id")))),
                ("Restore" = (operation_id = "restore_backup",
                    parameters(("id" = "$response.body#/backups/0/id")))),
                ("RestoreSet" = (operation_id = "restore_set",
                    parameters(("id" = "$response.body#/set_id")))),
                ("Verify" = (operation_id = "verify_backups",
                    request_body = json!({"ids": ["$response.body#/backups/0/id"]}))))),
              (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
              (status = 507, body = ErrorBody)))]
pub(crate) async fn create_backups(
    State(s): St,
    ApiJson(req): ApiJson<CreateBackup>,
) -> Result<(StatusCode, Json<CreatedBackups>), ApiError> {
    let created = blocking(move || {
        let keep = keep_until(
            &s.backups,
            req.keep_until.as_deref(),
            req.keep_for.as_deref(),
        )?;
        let lock = time_field("lock_until", req.lock_until.as_deref())?;
        let created = s.backups.create(CreateRequest {
            volumes: req.volumes,
            to: req.to,
            method: req.method,
            info: HostInfo {
                program: req.program,
                host: req.host,
                application: req.app,
                content_id: req.content_id,
                label: req.label,
                description: req.description,
                meta: req.meta,
            },
            retention: Retention {
                keep_until_ms: keep,
                hold: req.hold,
                lock_until_ms: lock,
            },
        })?;
        let names = Names::new(&s.pool, &s.nbd_addr);
        let set_id = created.records.first().and_then(|r| r.set_id);
        let mut backups: Vec<Backup> = created
            .records
            .into_iter()
            .map(|r| backup_json(r, &names))
            .collect();
        // One job per record, in order: the record itself does not name it yet.
        for (b, j) in backups.iter_mut().zip(&created.jobs) {
            b.job.get_or_insert(*j);
        }
        Ok(CreatedBackups {
            backups,
            jobs: created.jobs,
            set_id,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The filters of `GET /v1/backups` (for the document: the raw query is parsed by hand so
/// that `meta` can repeat).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListBackupsQuery {
    /// Backups of this volume (by its current name; unknown volume: 404).
    volume: Option<String>,
    /// Backups of the volume with this id (also after it was deleted).
    volume_id: Option<u64>,
    label: Option<String>,
    host: Option<String>,
    /// The application, as given by `app` when the backup was taken.
    app: Option<String>,
    /// `KEY=VALUE`; repeat for several pairs, all of which must match.
    #[param(style = Form, explode)]
    meta: Option<Vec<String>>,
    /// Point in time at or after this (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Point in time at or before this (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    #[param(inline)]
    status: Option<BackupStatus>,
    /// Backups of this backup set.
    set: Option<u64>,
    /// Backups with a copy in this vault.
    in_vault: Option<String>,
    /// Backups without a copy in this vault.
    not_in_vault: Option<String>,
    /// Page size, default 100.
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<u64>,
    /// Only backups with a smaller id: the previous page's `next_before`.
    before: Option<u64>,
}

fn parse_list_query(
    raw: Option<&str>,
    pool: &Pool,
) -> Result<arca_backup::catalog::Query, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| bad_request(format!("malformed query string: {e}")))?;
    let mut q = arca_backup::catalog::Query {
        limit: LIST_LIMIT_DEFAULT,
        ..Default::default()
    };
    let mut seen: Vec<String> = Vec::new();
    let number = |k: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| bad_request(format!("{k} must be a non-negative integer, not {v:?}")))
    };
    let mut volume_id = None;
    for (k, v) in pairs {
        if k != "meta" {
            if seen.contains(&k) {
                return Err(bad_request(format!("query parameter {k} given twice")));
            }
            seen.push(k.clone());
        }
        match k.as_str() {
            "volume" => {
                let vol = pool.volume(&v)?;
                if volume_id.is_some_and(|id| id != vol.id) {
                    return Err(bad_request("volume and volume_id name different volumes"));
                }
                volume_id = Some(vol.id);
            }
            "volume_id" => {
                let id = number(&k, &v)?;
                if volume_id.is_some_and(|x| x != id) {
                    return Err(bad_request("volume and volume_id name different volumes"));
                }
                volume_id = Some(id);
            }
            "label" => q.label = Some(v),
            "host" => q.host = Some(v),
            "app" => q.application = Some(v),
            "meta" => {
                let (key, value) = v
                    .split_once('=')
                    .ok_or_else(|| bad_request(format!("meta must be KEY=VALUE, not {v:?}")))?;
                q.meta.push((key.to_string(), value.to_string()));
            }
            "since" => q.since_ms = time_field("since", Some(&v))?,
            "until" => q.until_ms = time_field("until", Some(&v))?,
            "status" => {
                q.status = Some(Status::parse(&v).ok_or_else(|| {
                    bad_request(format!(
                        "unknown status {v:?}: expected copying, complete, failed, consumed or \
                         deleted"
                    ))
                })?)
            }
            "set" => q.set_id = Some(number(&k, &v)?),
            "in_vault" => q.in_vault = Some(v),
            "not_in_vault" => q.not_in_vault = Some(v),
            "limit" => {
                let n = number(&k, &v)?;
                if n == 0 || n > LIST_LIMIT_MAX as u64 {
                    return Err(bad_request(format!(
                        "limit must be between 1 and {LIST_LIMIT_MAX}, not {n}"
                    )));
                }
                q.limit = n as usize;
            }
            "before" => q.before_id = Some(BackupId(number(&k, &v)?)),
            other => {
                return Err(bad_request(format!(
                    "unknown query parameter {other:?}: expected volume, volume_id, label, \
                     host, app, meta, since, until, status, set, in_vault, not_in_vault, limit \
                     or before"
                )));
            }
        }
    }
    q.volume_id = volume_id;
    Ok(q)
}

/// Lists backups, newest first, filtered (every filter given must match) and paged.
#[utoipa::path(get, path = "/v1/backups", tag = "backups", params(ListBackupsQuery),
    responses((status = 200, body = BackupList), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn list_backups(
    State(s): St,
    RawQuery(raw): RawQuery,
) -> Result<Json<BackupList>, ApiError> {
    let list = blocking(move || {
        let q = parse_list_query(raw.as_deref(), &s.pool)?;
        // An unknown vault is a 404, like an unknown volume: not an empty list.
        for v in [&q.in_vault, &q.not_in_vault].into_iter().flatten() {
            s.backups.vault(v)?;
        }
        let records = s.backups.list(&q)?;
        let next_before = (records.len() >= q.limit)
            .then(|| records.last().map(|r| r.id))
            .flatten();
        let names = Names::new(&s.pool, &s.nbd_addr);
        Ok(BackupList {
            backups: records
                .into_iter()
                .map(|r| backup_json(r, &names))
                .collect(),
            next_before,
        })
    })
    .await?;
    Ok(Json(list))
}

/// One backup's whole record, with its history.
#[utoipa::path(get, path = "/v1/backups/{id}", tag = "backups", params(("id" = u64, Path)),
    responses((status = 200, body = Backup), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn get_backup(
    State(s): St,
    ApiPath(id): ApiPath<BackupId>,
) -> Result<Json<Backup>, ApiError> {
    let b = blocking(move || {
        let r = s.backups.get(id)?;
        let unique = s.backups.unique_bytes(&r)?;
        let mut b = backup_json(r, &Names::new(&s.pool, &s.nbd_addr));
        b.unique_bytes = Some(unique);
        Ok(b)
    })
    .await?;
    Ok(Json(b))
}

/// Starts one job re-reading the backups and comparing them with their digests; its result
/// is a list of Verification, and each result goes on the backup's history.
#[utoipa::path(post, path = "/v1/backups/verify", tag = "backups", request_body = VerifyBackups,
    responses((status = 202, body = VerifyStarted), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn verify_backups(
    State(s): St,
    ApiJson(req): ApiJson<VerifyBackups>,
) -> Result<(StatusCode, Json<VerifyStarted>), ApiError> {
    if req.all && !req.ids.is_empty() {
        return Err(bad_request("give ids or all, not both"));
    }
    let (job, backups) = blocking(move || Ok(s.backups.verify(&req.ids, req.all)?)).await?;
    Ok((StatusCode::ACCEPTED, Json(VerifyStarted { job, backups })))
}

fn restored_json(r: arca_backup::Restored) -> Restored {
    Restored {
        backups: r.backups,
        volumes: r.volumes,
        undo_backups: r.undo_backups,
        job: r.job,
    }
}

/// Restores a backup: in place into its source volume (no body), in place into another
/// volume (`to`), or into a new volume (`as`). An in-place restore first takes an undo point.
#[utoipa::path(post, path = "/v1/backups/{id}/restore", tag = "backups",
    params(("id" = u64, Path)), request_body = RestoreBackup,
    responses((status = 202, body = Restored), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
              (status = 507, body = ErrorBody)))]
pub(crate) async fn restore_backup(
    State(s): St,
    ApiPath(id): ApiPath<BackupId>,
    body: Bytes,
) -> Result<(StatusCode, Json<Restored>), ApiError> {
    let req: RestoreBackup = optional_body(&body)?;
    let to = match (req.to, req.as_name) {
        (Some(_), Some(_)) => {
            return Err(bad_request(
                "give to (an existing volume) or as (a new volume), not both",
            ));
        }
        (None, Some(_)) if req.force => {
            return Err(bad_request(
                "force disconnects the clients of a volume restored in place; a new volume \
                 (as) has none",
            ));
        }
        (None, Some(name)) => RestoreTo::New { name },
        (volume, None) => RestoreTo::InPlace {
            volume,
            force: req.force,
        },
    };
    let from = req.from_vault;
    let r = blocking(move || Ok(s.backups.restore_from(id, to, from.as_deref())?)).await?;
    Ok((StatusCode::ACCEPTED, Json(restored_json(r))))
}

/// Restores every backup of a backup set in place, as a unit (one undo point set, one job).
#[utoipa::path(post, path = "/v1/backup-sets/{id}/restore", tag = "backups",
    params(("id" = u64, Path)), request_body = RestoreSet,
    responses((status = 202, body = Restored), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
              (status = 507, body = ErrorBody)))]
pub(crate) async fn restore_set(
    State(s): St,
    ApiPath(id): ApiPath<u64>,
    body: Bytes,
) -> Result<(StatusCode, Json<Restored>), ApiError> {
    let req: RestoreSet = optional_body(&body)?;
    let r = blocking(move || Ok(s.backups.restore_set(id, req.force)?)).await?;
    Ok((StatusCode::ACCEPTED, Json(restored_json(r))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteBackupQuery {
    /// Delete before keep-until (never under a hold or before lock-until).
    force: Option<bool>,
    /// For a backup with vault copies: delete only the array's image; the backup stays
    /// complete, living in its vault copies. Without it the vault copies' manifests are
    /// deleted too (an error names a vault that could not be reached; nothing false is kept).
    keep_vault_copies: Option<bool>,
}

/// Deletes a backup's destination; the record stays, as history, with status `deleted`.
/// Refused (409) under a hold, before lock-until, and before keep-until unless forced, and
/// for a backup with vault copies unless `keep_vault_copies` (then it stays `complete`).
#[utoipa::path(delete, path = "/v1/backups/{id}", tag = "backups",
    params(("id" = u64, Path), DeleteBackupQuery),
    responses((status = 200, body = Backup), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn delete_backup(
    State(s): St,
    ApiPath(id): ApiPath<BackupId>,
    ApiQuery(q): ApiQuery<DeleteBackupQuery>,
) -> Result<Json<Backup>, ApiError> {
    let o = arca_backup::DeleteOptions {
        force: q.force.unwrap_or(false),
        keep_vault_copies: q.keep_vault_copies.unwrap_or(false),
    };
    changed_backup(s, move |s| Ok(s.backups.delete_with(id, o)?)).await
}

async fn set_hold(s: St, id: BackupId, hold: bool) -> Result<Json<Backup>, ApiError> {
    let State(s) = s;
    changed_backup(s, move |s| Ok(s.backups.hold(id, hold)?)).await
}

/// Puts a backup on hold: it is never deleted (nor pruned) until released.
#[utoipa::path(post, path = "/v1/backups/{id}/hold", tag = "backups", params(("id" = u64, Path)),
    responses((status = 200, body = Backup), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn hold_backup(
    s: St,
    ApiPath(id): ApiPath<BackupId>,
) -> Result<Json<Backup>, ApiError> {
    set_hold(s, id, true).await
}

/// Releases a backup's hold.
#[utoipa::path(post, path = "/v1/backups/{id}/release", tag = "backups",
    params(("id" = u64, Path)),
    responses((status = 200, body = Backup), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn release_backup(
    s: St,
    ApiPath(id): ApiPath<BackupId>,
) -> Result<Json<Backup>, ApiError> {
    set_hold(s, id, false).await
}

/// Sets or clears keep-until, and extends the retention lock (a lock is never shortened).
#[utoipa::path(post, path = "/v1/backups/{id}/retention", tag = "backups",
    params(("id" = u64, Path)), request_body = SetRetention,
    responses((status = 200, body = Backup), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn set_retention(
    State(s): St,
    ApiPath(id): ApiPath<BackupId>,
    ApiJson(req): ApiJson<SetRetention>,
) -> Result<Json<Backup>, ApiError> {
    if req.clear_keep_until && (req.keep_until.is_some() || req.keep_for.is_some()) {
        return Err(bad_request(
            "clear_keep_until cannot be combined with keep_until or keep_for",
        ));
    }
    if !req.clear_keep_until
        && req.keep_until.is_none()
        && req.keep_for.is_none()
        && req.lock_until.is_none()
    {
        return Err(bad_request(
            "nothing to change: give keep_until, keep_for, clear_keep_until or lock_until",
        ));
    }
    changed_backup(s, move |s| {
        let keep = if req.clear_keep_until {
            Some(None)
        } else {
            keep_until(
                &s.backups,
                req.keep_until.as_deref(),
                req.keep_for.as_deref(),
            )?
            .map(Some)
        };
        let lock = time_field("lock_until", req.lock_until.as_deref())?;
        Ok(s.backups.retain(id, keep, lock)?)
    })
    .await
}

/// Applies a retention policy to a volume's complete backups: says for each whether it is
/// kept and why, and what removal frees (exactly); with `dry_run`, changes nothing.
#[utoipa::path(post, path = "/v1/volumes/{name}/prune", tag = "backups",
    params(("name" = String, Path)), request_body = PruneBackups,
    responses((status = 200, body = PruneReport), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn prune_volume(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<PruneBackups>,
) -> Result<Json<PruneReport>, ApiError> {
    let policy = Policy {
        keep_last: req.keep_last,
        keep_hourly: req.keep_hourly,
        keep_daily: req.keep_daily,
        keep_weekly: req.keep_weekly,
        keep_monthly: req.keep_monthly,
        keep_yearly: req.keep_yearly,
        keep_newest_verified: req.keep_newest_verified.unwrap_or(true),
    };
    let report = blocking(move || {
        Ok(s.backups.prune(&PruneRequest {
            volume: name,
            label: req.label,
            policy,
            dry_run: req.dry_run,
        })?)
    })
    .await?;
    Ok(Json(PruneReport {
        dry_run: report.dry_run,
        removed: report.removed as u64,
        kept: report.kept as u64,
        freed_bytes: report.freed_bytes,
        items: report
            .items
            .into_iter()
            .map(|i| PruneItem {
                backup: i.backup,
                label: i.label,
                point_in_time: format_ms(i.point_in_time_ms),
                keep: i.keep,
                reasons: i.reasons,
                frees_alone_bytes: i.frees_alone_bytes,
                error: i.error,
            })
            .collect(),
    }))
}

/// Checks the catalog against the destinations (each carries a copy of its record), the
/// digests and the catalog's own indexes. Its outcome is recorded (`GET /v1/checks`).
#[utoipa::path(get, path = "/v1/catalog/check", tag = "catalog",
    responses((status = 200, body = CatalogReport), (status = 503, body = ErrorBody)))]
pub(crate) async fn check_catalog(
    State(s): St,
    caller: Option<axum::Extension<crate::tokens::Caller>>,
) -> Result<Json<CatalogReport>, ApiError> {
    let by = crate::checks::caller_name(caller);
    let r = blocking(move || {
        let found = |r: &arca_backup::CatalogReport| {
            Findings::of(r.problems.iter().map(|p| (p.code, p.message.as_str())))
        };
        Ok(s.checks
            .record(CheckKind::Catalog, by, None, || s.backups.check(), found)?)
    })
    .await?;
    Ok(Json(CatalogReport {
        clean: r.problems.is_empty(),
        records: r.records as u64,
        live: r.live as u64,
        destinations: r.destinations as u64,
        problems: r
            .problems
            .into_iter()
            .map(|p| CatalogProblem {
                code: p.code.to_string(),
                backup: p.backup,
                message: p.message,
            })
            .collect(),
    }))
}

/// Rebuilds the catalog from the descriptors on the destinations.
#[utoipa::path(post, path = "/v1/catalog/rebuild", tag = "catalog", request_body = RebuildCatalog,
    responses((status = 200, body = RebuildReport), (status = 400, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn rebuild_catalog(
    State(s): St,
    body: Bytes,
) -> Result<Json<RebuildReport>, ApiError> {
    let req: RebuildCatalog = optional_body(&body)?;
    let r = blocking(move || Ok(s.backups.rebuild(req.discard)?)).await?;
    Ok(Json(RebuildReport {
        from_descriptors: r.from_descriptors as u64,
        kept_history: r.kept_history as u64,
        unreadable_descriptors: r.unreadable_descriptors,
    }))
}

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/volumes/{name}/backup-targets", get(backup_targets))
        .route("/v1/volumes/{name}/prune", post(prune_volume))
        .route("/v1/backups", get(list_backups).post(create_backups))
        .route("/v1/backups/verify", post(verify_backups))
        .route("/v1/backups/{id}", get(get_backup).delete(delete_backup))
        .route("/v1/backups/{id}/restore", post(restore_backup))
        .route("/v1/backups/{id}/hold", post(hold_backup))
        .route("/v1/backups/{id}/release", post(release_backup))
        .route("/v1/backups/{id}/retention", post(set_retention))
        .route("/v1/backup-sets/{id}/restore", post(restore_set))
        .route("/v1/catalog/check", get(check_catalog))
        .route("/v1/catalog/rebuild", post(rebuild_catalog))
}
