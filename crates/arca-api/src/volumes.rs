//! The volume endpoints: list, create, show, resize, rename and delete. The array's rules
//! (pairs, connected hosts) are arca_backup::volumes'.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::error::ApiError;
use crate::server::{ApiJson, ApiPath, ApiQuery, St, blocking};
use crate::types::*;

pub(crate) fn volume_json(v: arca_store::VolumeInfo) -> Volume {
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

#[utoipa::path(get, path = "/v1/volumes", tag = "volumes",
    responses((status = 200, body = Vec<Volume>)))]
pub(crate) async fn list_volumes(State(s): St) -> Json<Vec<Volume>> {
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
pub(crate) async fn create_volume(
    State(s): St,
    ApiJson(req): ApiJson<CreateVolume>,
) -> Result<(StatusCode, Json<Volume>), ApiError> {
    let v = blocking(move || Ok(s.pool.create_volume(&req.name, req.size, req.device)?)).await?;
    Ok((StatusCode::CREATED, Json(volume_json(v))))
}

#[utoipa::path(get, path = "/v1/volumes/{name}", tag = "volumes",
    params(("name" = String, Path)),
    responses((status = 200, body = Volume), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_volume(
    State(s): St,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Volume>, ApiError> {
    Ok(Json(volume_json(s.pool.volume(&name)?)))
}

#[utoipa::path(post, path = "/v1/volumes/{name}/resize", tag = "volumes",
    params(("name" = String, Path)), request_body = ResizeVolume,
    responses((status = 200, body = Volume), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn resize_volume(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ResizeVolume>,
) -> Result<Json<Volume>, ApiError> {
    let v = blocking(move || {
        Ok(arca_backup::volumes::resize_volume(
            &s.pool, &s.pairs, &name, req.size,
        )?)
    })
    .await?;
    Ok(Json(volume_json(v)))
}

#[utoipa::path(post, path = "/v1/volumes/{name}/rename", tag = "volumes",
    params(("name" = String, Path)), request_body = RenameVolume,
    responses((status = 200, body = Volume), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn rename_volume(
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
pub(crate) struct DeleteVolumeQuery {
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
pub(crate) async fn delete_volume(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteVolumeQuery>,
) -> Result<StatusCode, ApiError> {
    let all = q.with_snapshots.unwrap_or(false);
    let force = q.force.unwrap_or(false);
    blocking(move || {
        Ok(arca_backup::volumes::delete_volume(
            &s.pool, &s.pairs, &*s.hosts, &name, all, force,
        )?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/volumes", get(list_volumes).post(create_volume))
        .route("/v1/volumes/{name}", get(get_volume).delete(delete_volume))
        .route("/v1/volumes/{name}/resize", post(resize_volume))
        .route("/v1/volumes/{name}/rename", post(rename_volume))
}
