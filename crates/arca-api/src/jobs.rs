//! The job endpoints: list, show and cancel.

use std::sync::Arc;
use std::time::Duration;

use arca_backup::{JobId, JobSnapshot};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::server::{ApiPath, St};
use crate::types::*;

pub fn job_json(j: JobSnapshot) -> Job {
    j.into()
}

/// Job `id`, or a 404 that names it.
fn find_job(s: &crate::ApiState, id: JobId) -> Result<Arc<arca_backup::Job>, ApiError> {
    s.jobs
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", responses((status = 200, body = Vec<Job>)))]
pub(crate) async fn list_jobs(State(s): St) -> Json<Vec<Job>> {
    Json(s.jobs.list().into_iter().map(job_json).collect())
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = u64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_job(
    State(s): St,
    ApiPath(id): ApiPath<JobId>,
) -> Result<Json<Job>, ApiError> {
    let job = find_job(&s, id)?;
    Ok(Json(job_json(job.snapshot())))
}

/// Asks a running job to stop; a finished job is a conflict.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = u64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel_job(
    State(s): St,
    ApiPath(id): ApiPath<JobId>,
) -> Result<Json<Job>, ApiError> {
    let job = find_job(&s, id)?;
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

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
}
