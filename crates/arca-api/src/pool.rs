//! The pool endpoints: status, the consistency check (a job), and the NBD exports.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::checks::Findings;
use crate::error::ApiError;
use crate::jobs::job_json;
use crate::server::St;
use crate::types::*;

#[utoipa::path(get, path = "/v1/pool", tag = "pool",
    responses((status = 200, body = PoolStatus)))]
pub(crate) async fn get_pool(State(s): St) -> Result<Json<PoolStatus>, ApiError> {
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

/// Starts a full consistency check of the pool as a job; its result is a CheckReport. Its
/// outcome is recorded (`GET /v1/checks`).
#[utoipa::path(post, path = "/v1/pool/check", tag = "pool",
    responses((status = 202, body = Job), (status = 503, body = ErrorBody)))]
pub(crate) async fn check_pool(
    State(s): St,
    caller: Option<axum::Extension<crate::tokens::Caller>>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let pool = s.pool.clone();
    let checks = s.checks.clone();
    let by = crate::checks::caller_name(caller);
    let job = s
        .jobs
        .start(arca_backup::JobKind::PoolCheck, "pool", move |ctx| {
            let used: u64 = pool.device_status().iter().map(|d| d.used_bytes).sum();
            ctx.set_total(used);
            let found = |r: &arca_store::FsckReport| {
                Findings::of(r.problems.iter().map(|p| (p.code, p.message.as_str())))
            };
            let report =
                checks.record(CheckKind::Pool, by, Some(ctx.id()), || pool.fsck(), found)?;
            ctx.add_done(used);
            Ok(Some(arca_backup::JobResult::PoolCheck(report)))
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

#[utoipa::path(get, path = "/v1/exports", tag = "exports",
    responses((status = 200, body = Vec<Export>)))]
pub(crate) async fn list_exports(State(s): St) -> Json<Vec<Export>> {
    Json(
        s.pool
            .exports()
            .into_iter()
            .map(|e| Export {
                uri: format!("nbd://{}/{}", s.nbd_addr, e.name),
                connected: s.hosts.connected(&e.name),
                name: e.name,
                size: e.size,
                read_only: e.read_only,
            })
            .collect(),
    )
}

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/pool", get(get_pool))
        .route("/v1/pool/check", post(check_pool))
        .route("/v1/exports", get(list_exports))
}
