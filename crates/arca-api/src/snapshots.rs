//! The snapshot endpoints: list, create (named by default after the time), show, delete and
//! clone.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::backups::optional_body;
use crate::error::ApiError;
use crate::server::{ApiJson, ApiPath, ApiQuery, St, blocking};
use crate::types::*;
use crate::volumes::volume_json;

pub(crate) fn snapshot_json(s: arca_store::SnapshotInfo) -> Snapshot {
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotQuery {
    /// Only this volume's snapshots.
    volume: Option<String>,
}

#[utoipa::path(get, path = "/v1/snapshots", tag = "snapshots", params(SnapshotQuery),
    responses((status = 200, body = Vec<Snapshot>), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_snapshots(
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
pub(crate) async fn create_snapshot(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Snapshot>), ApiError> {
    // The body is optional here: no body means all defaults.
    let req: CreateSnapshot = optional_body(&body)?;
    let snap = blocking(move || {
        Ok(arca_backup::volumes::create_snapshot(
            &s.pool,
            &name,
            req.name.as_deref(),
        )?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(snapshot_json(snap))))
}

#[utoipa::path(get, path = "/v1/volumes/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path)),
    responses((status = 200, body = Snapshot), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_snapshot(
    State(s): St,
    ApiPath((name, snap)): ApiPath<(String, String)>,
) -> Result<Json<Snapshot>, ApiError> {
    Ok(Json(snapshot_json(s.pool.snapshot(&name, &snap)?)))
}

#[utoipa::path(delete, path = "/v1/volumes/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn delete_snapshot(
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
pub(crate) async fn clone_snapshot(
    State(s): St,
    ApiPath((name, snap)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CloneSnapshot>,
) -> Result<(StatusCode, Json<Volume>), ApiError> {
    let v =
        blocking(move || Ok(s.pool.clone_snapshot(&name, &snap, &req.name, req.device)?)).await?;
    Ok((StatusCode::CREATED, Json(volume_json(v))))
}

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    use axum::routing::{get, post};
    axum::Router::new()
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
}
