//! The HTTP server: routes under `/v1`, bearer-token authentication, request limits, and the
//! handlers, each documented for the OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use arca_backup::{Backups, Hosts, JobManager, JobSnapshot, Pairs};
use arca_store::Pool;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::OpenApi;

use crate::access;
use crate::backups;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::pairs;
use crate::types::*;

/// Largest request body accepted; every request here is a few hundred bytes.
pub const BODY_MAX_BYTES: usize = 64 * 1024;

pub struct ApiState {
    pub pool: Pool,
    pub jobs: Arc<JobManager>,
    /// The backup service (catalog, backups, restores, retention).
    pub backups: Arc<Backups>,
    /// The copy pairs (mirroring, split, resync).
    pub pairs: Arc<Pairs>,
    /// Who is connected to which export (the NBD server's sessions): a volume in use by hosts
    /// cannot become a pair's secondary.
    pub hosts: Arc<dyn Hosts>,
    pub metrics: Arc<Metrics>,
    /// Required as `Authorization: Bearer TOKEN` when set.
    pub token: Option<String>,
    /// Where the API listens. Without a token, requests must name it (or a loopback name) in
    /// Host: see [`crate::access`].
    pub api_addr: std::net::SocketAddr,
    /// Host:port of the NBD listener, for export URIs.
    pub nbd_addr: String,
}

pub(crate) type St = State<Arc<ApiState>>;

/// JSON body whose rejections use the API's error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Runs blocking engine work (it may sync devices) off the async threads. A panic there
/// answers 500 naming it (see panics.rs for what it may leave behind).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(crate::panics::panicked(&*e.into_panic())),
        Err(e) => Err(ApiError::internal(format!("request task failed: {e}"))),
    }
}

fn volume_json(v: arca_store::VolumeInfo) -> Volume {
    Volume {
        name: v.name,
        size: v.size,
        used: v.referenced_bytes,
        unique: v.unique_bytes,
        owned: v.owned_bytes,
        device: v.placement,
        device_bytes: DeviceBytes::list(&v.device_bytes),
        origin: v
            .origin
            .map(|(volume, snapshot)| Origin { volume, snapshot }),
        snapshots: v.snapshots as u64,
        created: rfc3339(v.created_unix),
        protection: v.guard,
    }
}

fn snapshot_json(s: arca_store::SnapshotInfo) -> Snapshot {
    Snapshot {
        volume: s.volume,
        name: s.name,
        size: s.size,
        used: s.referenced_bytes,
        device_bytes: DeviceBytes::list(&s.device_bytes),
        unique: s.unique_bytes,
        clones: s.clones,
        created: rfc3339(s.created_unix),
    }
}

pub fn job_json(j: JobSnapshot) -> Job {
    Job {
        id: j.id,
        kind: j.kind,
        target: j.target,
        state: j.state.as_str().to_string(),
        bytes_done: j.bytes_done,
        bytes_total: j.bytes_total,
        rate: j.rate_bytes_per_second,
        eta_seconds: j.eta_seconds,
        error: j.error,
        result: j.result.and_then(|r| serde_json::from_str(&r).ok()),
        created: rfc3339(j.created_unix),
        finished: j.finished_unix.map(rfc3339),
    }
}

fn check_json(r: arca_store::FsckReport) -> CheckReport {
    CheckReport {
        clean: r.is_clean(),
        problems: r
            .problems
            .into_iter()
            .map(|p| Problem {
                code: p.code.to_string(),
                message: p.message,
            })
            .collect(),
        volumes: r.volumes as u64,
        snapshots: r.snapshots as u64,
        extents: r.extents_referenced,
    }
}

#[utoipa::path(get, path = "/v1/pool", tag = "pool",
    responses((status = 200, body = PoolStatus)))]
async fn get_pool(State(s): St) -> Result<Json<PoolStatus>, ApiError> {
    let st = s.pool.status();
    Ok(Json(PoolStatus {
        id: st.pool_id,
        extent_size: st.extent_size,
        capacity: st.capacity_bytes,
        used: st.used_bytes,
        free: st.free_bytes,
        metadata_used: st.metadata.used_bytes,
        metadata_capacity: st.metadata.capacity_bytes,
        metadata_reachable: st.metadata.reachable_bytes,
        metadata_reserved: st.metadata.reserved_bytes,
        metadata_available: st.metadata.available_bytes,
        volumes: st.volumes as u64,
        snapshots: st.snapshots as u64,
        devices: st
            .devices
            .into_iter()
            .map(|d| Device {
                index: d.index,
                path: d.name,
                capacity: d.capacity_bytes,
                used: d.used_bytes,
                free: d.free_bytes,
            })
            .collect(),
    }))
}

/// Starts a full consistency check of the pool as a job; its result is a CheckReport.
#[utoipa::path(post, path = "/v1/pool/check", tag = "pool",
    responses((status = 202, body = Job), (status = 503, body = ErrorBody)))]
async fn check_pool(State(s): St) -> Result<(StatusCode, Json<Job>), ApiError> {
    let pool = s.pool.clone();
    let job = s
        .jobs
        .start("pool-check", "pool", move |ctx| {
            let used: u64 = pool.device_status().iter().map(|d| d.used_bytes).sum();
            ctx.set_total(used);
            let report = pool.fsck()?;
            ctx.add_done(used);
            Ok(Some(serde_json::to_string(&check_json(report))?))
        })
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "io_error",
                format!("cannot start the job: {e}"),
            )
        })?;
    Ok((StatusCode::ACCEPTED, Json(job_json(job.snapshot()))))
}

#[utoipa::path(get, path = "/v1/volumes", tag = "volumes",
    responses((status = 200, body = Vec<Volume>)))]
async fn list_volumes(State(s): St) -> Json<Vec<Volume>> {
    Json(s.pool.volumes().into_iter().map(volume_json).collect())
}

#[utoipa::path(post, path = "/v1/volumes", tag = "volumes", request_body = CreateVolume,
    responses((status = 201, body = Volume, links(
                ("BackUp" = (operation_id = "create_backups",
                    request_body = json!({"volumes": ["$response.body#/name"]}))),
                ("BackupTargets" = (operation_id = "backup_targets",
                    parameters(("name" = "$response.body#/name")))),
                ("Prune" = (operation_id = "prune_volume",
                    parameters(("name" = "$response.body#/name")))))),
              (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn create_volume(
    State(s): St,
    ApiJson(req): ApiJson<CreateVolume>,
) -> Result<(StatusCode, Json<Volume>), ApiError> {
    let v = blocking(move || Ok(s.pool.create_volume(&req.name, req.size, req.device)?)).await?;
    Ok((StatusCode::CREATED, Json(volume_json(v))))
}

#[utoipa::path(get, path = "/v1/volumes/{name}", tag = "volumes",
    params(("name" = String, Path)),
    responses((status = 200, body = Volume), (status = 404, body = ErrorBody)))]
async fn get_volume(
    State(s): St,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Volume>, ApiError> {
    Ok(Json(volume_json(s.pool.volume(&name)?)))
}

#[utoipa::path(post, path = "/v1/volumes/{name}/resize", tag = "volumes",
    params(("name" = String, Path)), request_body = ResizeVolume,
    responses((status = 200, body = Volume), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn resize_volume(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ResizeVolume>,
) -> Result<Json<Volume>, ApiError> {
    let v = blocking(move || {
        s.pairs.check_volume_change(&name, "resize")?;
        Ok(s.pool.resize_volume(&name, req.size)?)
    })
    .await?;
    Ok(Json(volume_json(v)))
}

#[utoipa::path(post, path = "/v1/volumes/{name}/rename", tag = "volumes",
    params(("name" = String, Path)), request_body = RenameVolume,
    responses((status = 200, body = Volume), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rename_volume(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<RenameVolume>,
) -> Result<Json<Volume>, ApiError> {
    let v = blocking(move || Ok(s.pool.rename_volume(&name, &req.name)?)).await?;
    Ok(Json(volume_json(v)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeleteVolumeQuery {
    /// Delete the volume's snapshots too.
    with_snapshots: Option<bool>,
    /// Disconnect the NBD clients of the volume (and, with `with_snapshots`, of its
    /// snapshots) instead of refusing the delete (409) while any is connected.
    force: Option<bool>,
}

/// Refused (409) while NBD clients have the volume, or a snapshot it deletes with it, open,
/// unless forced: then they are disconnected first.
#[utoipa::path(delete, path = "/v1/volumes/{name}", tag = "volumes",
    params(("name" = String, Path), DeleteVolumeQuery),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_volume(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteVolumeQuery>,
) -> Result<StatusCode, ApiError> {
    let all = q.with_snapshots.unwrap_or(false);
    let force = q.force.unwrap_or(false);
    blocking(move || {
        s.pairs.check_volume_change(&name, "delete")?;
        // Refused for its own reason before any host is disconnected for nothing.
        s.pool.check_delete_volume(&name, all)?;
        let mut exports = vec![name.clone()];
        if all {
            let snaps = s.pool.snapshots(&name)?;
            exports.extend(snaps.into_iter().map(|sn| format!("{name}@{}", sn.name)));
        }
        let what = format!("volume {name}");
        arca_backup::free_exports(&*s.hosts, &what, &exports, force, "delete")?;
        s.pool.delete_volume(&name, all)?;
        // A host that connected between the check and the delete holds an export that no
        // longer exists (its requests fail): it goes too. Only then, as every disconnect
        // leaves a fence entry in the NBD server.
        for e in &exports {
            if !s.hosts.connected(e).is_empty() {
                s.hosts.disconnect(e);
            }
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SnapshotQuery {
    /// Only this volume's snapshots.
    volume: Option<String>,
}

#[utoipa::path(get, path = "/v1/snapshots", tag = "snapshots", params(SnapshotQuery),
    responses((status = 200, body = Vec<Snapshot>), (status = 404, body = ErrorBody)))]
async fn list_snapshots(
    State(s): St,
    ApiQuery(q): ApiQuery<SnapshotQuery>,
) -> Result<Json<Vec<Snapshot>>, ApiError> {
    if let Some(v) = q.volume {
        let list = s.pool.snapshots(&v)?;
        return Ok(Json(list.into_iter().map(snapshot_json).collect()));
    }
    let mut out = Vec::new();
    for v in s.pool.volumes() {
        // A volume deleted between listing and looking is simply gone.
        if let Ok(list) = s.pool.snapshots(&v.name) {
            out.extend(list.into_iter().map(snapshot_json));
        }
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/v1/volumes/{name}/snapshots", tag = "snapshots",
    params(("name" = String, Path)), request_body = CreateSnapshot,
    responses((status = 201, body = Snapshot), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_snapshot(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Snapshot>), ApiError> {
    // The body is optional here: no body means all defaults.
    let req: CreateSnapshot = if body.iter().all(u8::is_ascii_whitespace) {
        CreateSnapshot::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            if e.is_data() {
                ApiError::invalid(e.to_string())
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string())
            }
        })?
    };
    let snap = blocking(move || {
        let snap = match req.name {
            Some(n) => n,
            None => default_snapshot_name(&s.pool, &name)?,
        };
        Ok(s.pool.create_snapshot(&name, &snap)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(snapshot_json(snap))))
}

/// `snap-20261128T230501Z`, with `-2`, `-3`... when taken within the same second.
fn default_snapshot_name(pool: &Pool, volume: &str) -> Result<String, ApiError> {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let base = format!("snap-{}", now.replace(['-', ':'], ""));
    let taken: Vec<String> = pool
        .snapshots(volume)?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name) {
        n += 1;
        name = format!("{base}-{n}");
    }
    Ok(name)
}

#[utoipa::path(get, path = "/v1/volumes/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path)),
    responses((status = 200, body = Snapshot), (status = 404, body = ErrorBody)))]
async fn get_snapshot(
    State(s): St,
    ApiPath((name, snap)): ApiPath<(String, String)>,
) -> Result<Json<Snapshot>, ApiError> {
    Ok(Json(snapshot_json(s.pool.snapshot(&name, &snap)?)))
}

#[utoipa::path(delete, path = "/v1/volumes/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_snapshot(
    State(s): St,
    ApiPath((name, snap)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    blocking(move || Ok(s.pool.delete_snapshot(&name, &snap)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/snapshots/{snapshot}/clone", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path)), request_body = CloneSnapshot,
    responses((status = 201, body = Volume), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn clone_snapshot(
    State(s): St,
    ApiPath((name, snap)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CloneSnapshot>,
) -> Result<(StatusCode, Json<Volume>), ApiError> {
    let v =
        blocking(move || Ok(s.pool.clone_snapshot(&name, &snap, &req.name, req.device)?)).await?;
    Ok((StatusCode::CREATED, Json(volume_json(v))))
}

#[utoipa::path(get, path = "/v1/exports", tag = "exports",
    responses((status = 200, body = Vec<Export>)))]
async fn list_exports(State(s): St) -> Json<Vec<Export>> {
    Json(
        s.pool
            .exports()
            .into_iter()
            .map(|e| Export {
                uri: format!("nbd://{}/{}", s.nbd_addr, e.name),
                name: e.name,
                size: e.size,
                read_only: e.read_only,
            })
            .collect(),
    )
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", responses((status = 200, body = Vec<Job>)))]
async fn list_jobs(State(s): St) -> Json<Vec<Job>> {
    Json(s.jobs.list().into_iter().map(job_json).collect())
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = u64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
async fn get_job(State(s): St, ApiPath(id): ApiPath<u64>) -> Result<Json<Job>, ApiError> {
    let job = s
        .jobs
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
    Ok(Json(job_json(job.snapshot())))
}

/// Asks a running job to stop; a finished job is a conflict.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = u64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn cancel_job(State(s): St, ApiPath(id): ApiPath<u64>) -> Result<Json<Job>, ApiError> {
    let job = s
        .jobs
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
    if !job.cancel() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "job {id} has already finished ({})",
                job.snapshot().state.as_str()
            ),
        ));
    }
    // Give a job that checks often the chance to report itself cancelled.
    let job2 = job.clone();
    let _ = tokio::task::spawn_blocking(move || job2.wait(Duration::from_millis(500))).await;
    Ok(Json(job_json(job.snapshot())))
}

async fn metrics(State(s): St) -> Response {
    let text = s.metrics.render(&s.pool.status());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_json())
}

/// The OpenAPI document as served. utoipa 5 writes response links with Rust's field names
/// (`operation_id`, `request_body`); OpenAPI spells them `operationId`, `requestBody`.
pub fn openapi_json() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let links = doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|ops| ops.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|responses| responses.values_mut())
        .filter_map(|r| r.get_mut("links").and_then(|l| l.as_object_mut()))
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(v) = link.remove(from) {
                link.insert(to.to_string(), v);
            }
        }
    }
    doc
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid",
        "method not allowed on this endpoint",
    )
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/pool", get(get_pool))
        .route("/v1/pool/check", post(check_pool))
        .route("/v1/volumes", get(list_volumes).post(create_volume))
        .route("/v1/volumes/{name}", get(get_volume).delete(delete_volume))
        .route("/v1/volumes/{name}/resize", post(resize_volume))
        .route("/v1/volumes/{name}/rename", post(rename_volume))
        .route("/v1/volumes/{name}/snapshots", post(create_snapshot))
        .route(
            "/v1/volumes/{name}/snapshots/{snapshot}",
            get(get_snapshot).delete(delete_snapshot),
        )
        .route(
            "/v1/volumes/{name}/snapshots/{snapshot}/clone",
            post(clone_snapshot),
        )
        .route("/v1/snapshots", get(list_snapshots))
        .route("/v1/exports", get(list_exports))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .merge(crate::backups::routes())
        .merge(crate::pairs::routes())
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::authenticate,
        ))
        // Outermost: a request from a web page is refused before anything else looks at it.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::check_host_and_origin,
        ))
        .layer(DefaultBodyLimit::max(BODY_MAX_BYTES))
        .layer(middleware::from_fn(crate::panics::catch_panic))
        .with_state(state)
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Arca", version = "1", description = "Management API of the Arca disk array. \
        Requests from web pages are refused: a request carrying an Origin other than the \
        API's own (http:// + its Host) gets 403, and without a token the Host must be the \
        bound address or a loopback name (localhost, 127.0.0.1, [::1]), else 421."),
    paths(get_pool, check_pool, list_volumes, create_volume, get_volume, resize_volume,
          rename_volume, delete_volume, list_snapshots, create_snapshot, get_snapshot,
          delete_snapshot, clone_snapshot, list_exports, list_jobs, get_job, cancel_job,
          backups::backup_targets, backups::create_backups, backups::list_backups,
          backups::get_backup, backups::verify_backups, backups::restore_backup,
          backups::restore_set, backups::delete_backup, backups::hold_backup,
          backups::release_backup, backups::set_retention, backups::prune_volume,
          backups::check_catalog, backups::rebuild_catalog, pairs::create_pair,
          pairs::list_pairs, pairs::get_pair, pairs::split_pair, pairs::resync_pair,
          pairs::delete_pair),
    components(schemas(ErrorBody, ErrorDetail, PoolStatus, Device, Volume, DeviceBytes, Origin, Snapshot,
                       Export, Job, CheckReport, Problem, CreateVolume, ResizeVolume,
                       RenameVolume, CreateSnapshot, CloneSnapshot, BackupTarget, BackupMethod,
                       CreateBackup, CreatedBackups, BackupSource, BackupDestination,
                       BackupInfo, BackupRetention, BackupDigest, BackupEvent,
                       BackupHistoryEntry, Backup, BackupList, VerifyBackups, VerifyStarted,
                       Verification, RestoreBackup, RestoreSet, Restored, SetRetention,
                       PruneBackups, PruneItem, PruneReport, CatalogProblem, CatalogReport,
                       RebuildCatalog, RebuildReport, CreatePair, Pair, CreatedPair,
                       ResyncPair, ResyncStarted)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
