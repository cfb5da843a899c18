//! The backup-policy endpoints: create, list, show, update, delete, pause, resume, run now,
//! the next slots and the history. Each calls the policy service ([`arca_backup::Policies`]);
//! those that commit metadata run off the async threads.
//!
//! Refusals keep the mapping of [`ApiError`]: 404 for an unknown policy, 409 for one that
//! exists already, runs (delete, run) or is paused (run), 422 for invalid settings (a
//! calendar, a time zone, a pattern, keep rules).

use std::sync::Arc;

use arca_backup::Policies;
use arca_backup::policy::{self as bp, PolicyRecord, PolicySpec, RunRecord};
use arca_backup::time::format_ms;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;

use crate::backups::optional_body;
use crate::error::ApiError;
use crate::server::{ApiJson, ApiPath, ApiQuery, St, blocking};
use crate::types::*;

fn keep_in(k: PolicyKeep) -> bp::Keep {
    bp::Keep {
        last: k.last,
        hourly: k.hourly,
        daily: k.daily,
        weekly: k.weekly,
        monthly: k.monthly,
        yearly: k.yearly,
    }
}

fn keep_out(k: &bp::Keep) -> PolicyKeep {
    PolicyKeep {
        last: k.last,
        hourly: k.hourly,
        daily: k.daily,
        weekly: k.weekly,
        monthly: k.monthly,
        yearly: k.yearly,
    }
}

fn policy_json(policies: &Policies, r: PolicyRecord, state: bp::PolicyState) -> Policy {
    let schedules = bp::Track::ALL
        .iter()
        .copied()
        .filter_map(|t| {
            let calendar = r.calendar(t)?.to_string();
            let ts = state.tracks.get(&t).cloned().unwrap_or_default();
            Some(PolicySchedule {
                track: t,
                calendar,
                steps: t.steps(&r),
                next: (!r.paused).then_some(ts.next_ms).flatten().map(format_ms),
                last_run: ts.last_run_ms.map(format_ms),
                last_success: ts.last_success_ms.map(format_ms),
                last_result: ts.last_result,
                last_reason: ts.last_reason,
            })
        })
        .collect();
    let running = policies
        .running(&r.name)
        .map(|(run, job)| PolicyRunning { run, job });
    Policy {
        matched_volumes: policies.matched_volumes(&r),
        label: r.label(),
        program: r.program(),
        keep: keep_out(&r.keep),
        vault_keep: keep_out(&r.vault_keep),
        created: format_ms(r.created_ms),
        updated: format_ms(r.updated_ms),
        last_success: state.last_success_ms.map(format_ms),
        schedules,
        running,
        name: r.name,
        volumes: r.volumes,
        set: r.set,
        snapshot: r.snapshot,
        verify: r.verify,
        verify_budget: r.verify_budget_bytes,
        copy_to: r.copy_to,
        copy: r.copy,
        meta: r.meta,
        tz: r.tz,
        paused: r.paused,
    }
}

fn run_json(r: RunRecord) -> PolicyRun {
    PolicyRun {
        run: r.seq,
        trigger: r.trigger,
        tracks: r.tracks,
        planned: r.planned,
        slot: r.slot_ms.map(format_ms),
        slots_missed: r.slots_missed,
        started: format_ms(r.started_ms),
        ended: r.ended_ms.map(format_ms),
        result: r.result,
        reason: r.reason,
        steps: r.steps,
        job: r.job,
    }
}

fn show(s: &crate::ApiState, name: &str) -> Result<Policy, ApiError> {
    let (r, state) = s.policies.get(name)?;
    Ok(policy_json(&s.policies, r, state))
}

/// Creates a policy. Its first slots are the first after now: nothing runs at once.
#[utoipa::path(post, path = "/v1/policies", tag = "policies", request_body = CreatePolicy,
    responses((status = 201, body = Policy, links(
                ("Get" = (operation_id = "get_policy",
                    parameters(("name" = "$response.body#/name")))),
                ("Next" = (operation_id = "next_policy_runs",
                    parameters(("name" = "$response.body#/name")))),
                ("History" = (operation_id = "policy_history",
                    parameters(("name" = "$response.body#/name")))),
                ("Update" = (operation_id = "update_policy",
                    parameters(("name" = "$response.body#/name")))),
                ("Pause" = (operation_id = "pause_policy",
                    parameters(("name" = "$response.body#/name")))),
                ("Resume" = (operation_id = "resume_policy",
                    parameters(("name" = "$response.body#/name")))),
                ("Run" = (operation_id = "run_policy",
                    parameters(("name" = "$response.body#/name")))),
                ("Delete" = (operation_id = "delete_policy",
                    parameters(("name" = "$response.body#/name")))))),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn create_policy(
    State(s): St,
    ApiJson(req): ApiJson<CreatePolicy>,
) -> Result<(StatusCode, Json<Policy>), ApiError> {
    let p = blocking(move || {
        let spec = PolicySpec {
            volumes: Some(req.volumes),
            set: req.set,
            snapshot: Some(req.snapshot),
            keep: req.keep.map(keep_in),
            verify: Some(req.verify),
            verify_budget_bytes: Some(req.verify_budget),
            label: req.label,
            meta: req.meta,
            tz: req.tz,
            paused: req.paused,
            copy_to: req.copy_to.map(Some),
            copy: req.copy.map(Some),
            vault_keep: req.vault_keep.map(keep_in),
        };
        s.policies.create(&req.name, spec)?;
        show(&s, &req.name)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// Every policy, by name.
#[utoipa::path(get, path = "/v1/policies", tag = "policies",
    responses((status = 200, body = Vec<Policy>)))]
pub(crate) async fn list_policies(State(s): St) -> Json<Vec<Policy>> {
    Json(
        s.policies
            .list()
            .into_iter()
            .map(|(r, st)| policy_json(&s.policies, r, st))
            .collect(),
    )
}

#[utoipa::path(get, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path)),
    responses((status = 200, body = Policy), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn get_policy(
    State(s): St,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(show(&s, &name)?))
}

/// Changes a policy (see UpdatePolicy). A calendar or time zone that changes is scheduled
/// afresh from now.
#[utoipa::path(patch, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path)), request_body = UpdatePolicy,
    responses((status = 200, body = Policy), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn update_policy(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<UpdatePolicy>,
) -> Result<Json<Policy>, ApiError> {
    let p = blocking(move || {
        let spec = PolicySpec {
            volumes: req.volumes,
            set: req.set,
            snapshot: req.snapshot.map(Some),
            keep: req.keep.map(keep_in),
            verify: req.verify.map(Some),
            verify_budget_bytes: req.verify_budget.map(|b| (b > 0).then_some(b)),
            label: req.label,
            meta: req.meta,
            tz: req.tz,
            paused: None,
            copy_to: req.copy_to.map(Some),
            copy: req.copy.map(Some),
            vault_keep: req.vault_keep.map(keep_in),
        };
        s.policies.update(&name, spec)?;
        show(&s, &name)
    })
    .await?;
    Ok(Json(p))
}

/// Deletes a policy with its state and history; the backups it made stay. Refused (409)
/// while it runs.
#[utoipa::path(delete, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn delete_policy(
    State(s): St,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || Ok(s.policies.delete(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(s: St, name: String, paused: bool) -> Result<Json<Policy>, ApiError> {
    let State(s) = s;
    let p = blocking(move || {
        s.policies.set_paused(&name, paused)?;
        show(&s, &name)
    })
    .await?;
    Ok(Json(p))
}

/// Pauses a policy: nothing runs until it is resumed.
#[utoipa::path(post, path = "/v1/policies/{name}/pause", tag = "policies",
    params(("name" = String, Path)),
    responses((status = 200, body = Policy), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn pause_policy(
    s: St,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Policy>, ApiError> {
    set_paused(s, name, true).await
}

/// Resumes a policy: its calendars go on from now (slots that passed while paused are not
/// caught up).
#[utoipa::path(post, path = "/v1/policies/{name}/resume", tag = "policies",
    params(("name" = String, Path)),
    responses((status = 200, body = Policy), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn resume_policy(
    s: St,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Policy>, ApiError> {
    set_paused(s, name, false).await
}

/// Runs a policy now, as a job (`policy-run`): every step of its calendars, or the step
/// given. Refused (409) while it is paused or already running.
#[utoipa::path(post, path = "/v1/policies/{name}/run", tag = "policies",
    params(("name" = String, Path)), request_body = RunPolicy,
    responses((status = 202, body = PolicyRunStarted), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn run_policy(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<PolicyRunStarted>), ApiError> {
    let req: RunPolicy = optional_body(&body)?;
    let started = blocking(move || {
        let job = s.policies.run_now(&name, req.step)?;
        Ok(PolicyRunStarted { policy: name, job })
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// The next slots of each calendar, as the scheduler computes them: a slot already due
/// (a catch-up about to run) comes first.
#[utoipa::path(get, path = "/v1/policies/{name}/next", tag = "policies",
    params(("name" = String, Path), PolicyNextQuery),
    responses((status = 200, body = PolicyNext), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn next_policy_runs(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<PolicyNextQuery>,
) -> Result<Json<PolicyNext>, ApiError> {
    let count = q.count.unwrap_or(5);
    if !(1..=1000).contains(&count) {
        return Err(ApiError::invalid("count must be 1 to 1000"));
    }
    let (r, _) = s.policies.get(&name)?;
    let next = s.policies.next_runs(&name, count as usize)?;
    let schedules = next
        .into_iter()
        .map(|(t, times)| PolicyNextTimes {
            track: t,
            calendar: r.calendar(t).unwrap_or_default().to_string(),
            local: times
                .iter()
                .map(|&ms| bp::calendar::format_local(ms, &r.tz))
                .collect(),
            times: times.into_iter().map(format_ms).collect(),
        })
        .collect();
    Ok(Json(PolicyNext {
        policy: r.name,
        tz: r.tz,
        paused: r.paused,
        schedules,
    }))
}

/// The policy's runs, newest first (at most the last 100 are kept).
#[utoipa::path(get, path = "/v1/policies/{name}/history", tag = "policies",
    params(("name" = String, Path), PolicyHistoryQuery),
    responses((status = 200, body = Vec<PolicyRun>), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn policy_history(
    State(s): St,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<PolicyHistoryQuery>,
) -> Result<Json<Vec<PolicyRun>>, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 1000"));
    }
    let runs = blocking(move || Ok(s.policies.history(&name, limit as usize)?)).await?;
    Ok(Json(runs.into_iter().map(run_json).collect()))
}

/// The policy metrics: when each policy last succeeded, and its runs by result since the
/// daemon started.
pub(crate) fn render_metrics(policies: &Policies, o: &mut String) {
    use std::fmt::Write;
    let list = policies.list();
    o.push_str(
        "# HELP arca_policy_last_success_timestamp_seconds When a run of the policy last \
         succeeded (0: never).\n# TYPE arca_policy_last_success_timestamp_seconds gauge\n",
    );
    for (r, st) in &list {
        let secs = st.last_success_ms.map_or(0.0, |ms| ms as f64 / 1000.0);
        let _ = writeln!(
            o,
            "arca_policy_last_success_timestamp_seconds{{policy=\"{}\"}} {secs}",
            r.name
        );
    }
    // Per calendar too: hourly snapshots succeeding must not hide a daily copy failing.
    o.push_str(
        "# HELP arca_policy_calendar_last_success_timestamp_seconds When a run for the \
         policy's calendar (snapshot, copy, verify) last succeeded (0: never).\n# TYPE \
         arca_policy_calendar_last_success_timestamp_seconds gauge\n",
    );
    for (r, st) in &list {
        for &t in bp::Track::ALL.iter().filter(|t| r.calendar(**t).is_some()) {
            let ms = st.tracks.get(&t).and_then(|x| x.last_success_ms);
            let _ = writeln!(
                o,
                "arca_policy_calendar_last_success_timestamp_seconds{{policy=\"{}\",\
                 calendar=\"{}\"}} {}",
                r.name,
                t.as_str(),
                ms.map_or(0.0, |ms| ms as f64 / 1000.0)
            );
        }
    }
    o.push_str(
        "# HELP arca_policy_runs_total Runs of the policy by result since the daemon \
         started.\n# TYPE arca_policy_runs_total counter\n",
    );
    let counts = policies.run_counts();
    for (r, _) in &list {
        for &result in bp::RunResult::ALL {
            let n = counts
                .iter()
                .find(|(p, x, _)| p == &r.name && *x == result)
                .map_or(0, |c| c.2);
            let _ = writeln!(
                o,
                "arca_policy_runs_total{{policy=\"{}\",result=\"{}\"}} {n}",
                r.name,
                result.as_str()
            );
        }
    }
}

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/policies", get(list_policies).post(create_policy))
        .route(
            "/v1/policies/{name}",
            get(get_policy).patch(update_policy).delete(delete_policy),
        )
        .route("/v1/policies/{name}/pause", post(pause_policy))
        .route("/v1/policies/{name}/resume", post(resume_policy))
        .route("/v1/policies/{name}/run", post(run_policy))
        .route("/v1/policies/{name}/next", get(next_policy_runs))
        .route("/v1/policies/{name}/history", get(policy_history))
}
