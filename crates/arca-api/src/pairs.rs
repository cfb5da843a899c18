//! The copy-pair endpoints: create, list and show, split, resync (forward or reverse) and
//! delete. Each calls the pair service ([`arca_backup::Pairs`]) off the async threads, since
//! most commit metadata (a split takes two snapshots at one instant).
//!
//! The service's refusals keep the mapping of [`ApiError`]: 404 for an unknown pair or volume,
//! 409 busy for a volume that is not free or a state that does not allow the operation, 422
//! for invalid values (a smaller secondary, a volume paired with itself, a pace of 0).

use std::collections::HashMap;
use std::sync::Arc;

use arca_backup::{PairRecord, Pairs};
use arca_store::Pool;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;

use crate::backups::optional_body;
use crate::error::ApiError;
use crate::server::{ApiJson, ApiPath, St, blocking};
use crate::types::*;
use arca_backup::time::format_ms;

/// Current volume names by id: a pair follows its volumes through renames.
fn volume_names(pool: &Pool) -> HashMap<u64, String> {
    pool.volumes().into_iter().map(|v| (v.id, v.name)).collect()
}

fn pair_json(r: PairRecord, pairs: &Pairs, names: &HashMap<u64, String>) -> Pair {
    // A pair deleted meanwhile has no job to tell of.
    let job = pairs.job(&r.name).ok().flatten();
    Pair {
        primary: names.get(&r.primary_id).cloned(),
        secondary: names.get(&r.secondary_id).cloned(),
        state: r.state,
        reason: r.reason,
        pace_bytes_per_second: r.pace_bytes_per_second,
        created: format_ms(r.created_ms),
        split: r.split_ms.map(format_ms),
        job,
        name: r.name,
    }
}

/// Makes `secondary` a copy of `primary` and starts the initial copy (a job). Mirroring
/// starts at once: primary writes during the copy reach the secondary too.
#[utoipa::path(post, path = "/v1/pairs", tag = "pairs", request_body = CreatePair,
    responses((status = 201, body = CreatedPair, links(
                ("Get" = (operation_id = "get_pair",
                    parameters(("name" = "$response.body#/pair/name")))),
                ("Split" = (operation_id = "split_pair",
                    parameters(("name" = "$response.body#/pair/name")))),
                ("Resync" = (operation_id = "resync_pair",
                    parameters(("name" = "$response.body#/pair/name")))),
                ("Delete" = (operation_id = "delete_pair",
                    parameters(("name" = "$response.body#/pair/name")))))),
              (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn create_pair(
    State(s): St,
    ApiJson(req): ApiJson<CreatePair>,
) -> Result<(StatusCode, Json<CreatedPair>), ApiError> {
    let created = blocking(move || {
        let (r, warning) =
            s.pairs
                .create(&req.primary, &req.secondary, req.pace, s.hosts.as_ref())?;
        let pair = pair_json(r, &s.pairs, &volume_names(&s.pool));
        Ok(CreatedPair {
            job: pair.job,
            pair,
            warning,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Every pair, oldest first.
#[utoipa::path(get, path = "/v1/pairs", tag = "pairs",
    responses((status = 200, body = Vec<Pair>)))]
pub(crate) async fn list_pairs(State(s): St) -> Json<Vec<Pair>> {
    let names = volume_names(&s.pool);
    Json(
        s.pairs
            .list()
            .into_iter()
            .map(|r| pair_json(r, &s.pairs, &names))
            .collect(),
    )
}

#[utoipa::path(get, path = "/v1/pairs/{name}", tag = "pairs",
    params(("name" = String, Path)),
    responses((status = 200, body = Pair), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn get_pair(
    State(s): St,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Pair>, ApiError> {
    let r = s.pairs.get(&name)?;
    Ok(Json(pair_json(r, &s.pairs, &volume_names(&s.pool))))
}

/// Splits a pair in state `pair` at one instant: the secondary keeps the primary's image of
/// that instant and becomes writable; both sides track what changes from there.
#[utoipa::path(post, path = "/v1/pairs/{name}/split", tag = "pairs",
    params(("name" = String, Path)),
    responses((status = 200, body = Pair), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn split_pair(
    State(s): St,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Pair>, ApiError> {
    let p = blocking(move || {
        let r = s.pairs.split(&name)?;
        Ok(pair_json(r, &s.pairs, &volume_names(&s.pool)))
    })
    .await?;
    Ok(Json(p))
}

/// Starts copying what changed since the split: primary to secondary (from `split`, or from
/// `error`), or with `reverse` secondary to primary (from `split` only). The pair is back in
/// state `pair` when the job ends. Refused (409) while the secondary holds a live backup,
/// unless `consume_backup`, and while that backup is on hold or locked.
#[utoipa::path(post, path = "/v1/pairs/{name}/resync", tag = "pairs",
    params(("name" = String, Path)), request_body = ResyncPair,
    responses((status = 202, body = ResyncStarted), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn resync_pair(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ResyncStarted>), ApiError> {
    let req: ResyncPair = optional_body(&body)?;
    let started = blocking(move || {
        // Through the backup service: a backup held on the secondary is refused or consumed
        // before the data changes.
        let job = s
            .backups
            .resync_pair(&name, req.reverse, req.consume_backup)?;
        let r = s.pairs.get(&name)?;
        Ok(ResyncStarted {
            pair: pair_json(r, &s.pairs, &volume_names(&s.pool)),
            job,
        })
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Ends a pair: mirroring stops, the tracking snapshots and guards go, both volumes stay.
/// Refused while its copy job runs (cancel the job first).
#[utoipa::path(delete, path = "/v1/pairs/{name}", tag = "pairs",
    params(("name" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn delete_pair(
    State(s): St,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || Ok(s.pairs.delete(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/pairs", get(list_pairs).post(create_pair))
        .route("/v1/pairs/{name}", get(get_pair).delete(delete_pair))
        .route("/v1/pairs/{name}/split", post(split_pair))
        .route("/v1/pairs/{name}/resync", post(resync_pair))
}
