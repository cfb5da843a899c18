//! `GET /v1/newest-backups`: every volume with its newest complete backup, so that a client
//! (the web console's overview) can list the volumes without a recent backup in one request.

use std::sync::Arc;

use arca_backup::record::Status;
use arca_store::GuardOwner;
use axum::Json;
use axum::extract::State;

use crate::backup_json::backup_json;
use crate::error::ApiError;
use crate::server::{St, blocking};
use crate::types::*;

/// Every current volume, by name, with its newest complete backup (null when it has none).
#[utoipa::path(get, path = "/v1/newest-backups", tag = "backups",
    responses((status = 200, body = Vec<NewestBackup>), (status = 503, body = ErrorBody)))]
pub(crate) async fn newest_backups(State(s): St) -> Result<Json<Vec<NewestBackup>>, ApiError> {
    let list = blocking(move || {
        let names = crate::backup_json::Names::new(&s.pool, &s.nbd_addr);
        let mut out = Vec::new();
        for v in s.pool.volumes() {
            // The volume index is walked newest first: the newest complete backup is usually
            // the first record read.
            let q = arca_backup::catalog::Query {
                volume_id: Some(v.id),
                status: Some(Status::Complete),
                limit: 1,
                ..Default::default()
            };
            let newest = s.backups.list(&q)?.into_iter().next();
            // Converted as a listing converts it, so the fields read the same.
            let b = newest.map(|r| backup_json(r, &names));
            out.push(NewestBackup {
                holds_backup: v
                    .guards
                    .iter()
                    .any(|g| matches!(g.owner, GuardOwner::Backup(_))),
                volume: v.name,
                volume_id: v.id,
                backup: b.as_ref().map(|b| b.id),
                point_in_time: b.as_ref().map(|b| b.point_in_time.clone()),
                label: b.as_ref().and_then(|b| b.info.label.clone()),
                verified: b.as_ref().and_then(|b| b.verified),
            });
        }
        Ok(out)
    })
    .await?;
    Ok(Json(list))
}

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    axum::Router::new().route("/v1/newest-backups", axum::routing::get(newest_backups))
}
