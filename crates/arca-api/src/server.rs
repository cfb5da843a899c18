//! The HTTP server: routes under `/v1` (the handlers live by resource: pool, volumes,
//! snapshots, jobs, backups, pairs, vaults), bearer-token authentication, request limits, and the
//! OpenAPI document.

use std::sync::Arc;

use arca_backup::{Backups, Hosts, JobManager, Pairs, Policies};
use arca_store::Pool;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::access;
use crate::backups;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::types::*;
use crate::{checks, jobs, newest, pairs, policies, pool, snapshots, vaults, volumes};

/// Largest request body accepted; every request here is a few hundred bytes.
pub const BODY_MAX_BYTES: usize = 64 * 1024;

pub struct ApiState {
    pub pool: Pool,
    pub jobs: Arc<JobManager>,
    /// The backup service (catalog, backups, restores, retention).
    pub backups: Arc<Backups>,
    /// The copy pairs (mirroring, split, resync).
    pub pairs: Arc<Pairs>,
    /// The backup policies (their scheduler runs in the daemon).
    pub policies: Arc<Policies>,
    /// Who is connected to which export (the NBD server's sessions): a volume in use by hosts
    /// cannot become a pair's secondary.
    pub hosts: Arc<dyn Hosts>,
    pub metrics: Arc<Metrics>,
    /// Required as `Authorization: Bearer TOKEN` when set.
    pub token: Option<String>,
    /// Named tokens and the bootstrap one: who a request is, and whether one is required.
    pub tokens: Arc<crate::tokens::Tokens>,
    /// The audit trail of changing requests.
    pub audit: Arc<crate::audit::Audit>,
    /// The record of the last pool and catalog checks.
    pub checks: Arc<crate::checks::Checks>,
    /// Requests per second per token (or per address without one).
    pub rate: Arc<crate::rate::RateLimiter>,
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

async fn metrics(State(s): St) -> Response {
    let mut text = s.metrics.render(&s.pool.status());
    crate::policies::render_metrics(&s.policies, &mut text);
    crate::vaults::render_metrics(&s.backups.vault_metrics(), &mut text);
    s.rate.render_metrics(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_json())
}

/// The OpenAPI document as served. utoipa 5 writes response links with Rust's field names
/// (`operation_id`, `request_body`); OpenAPI spells them `operationId`, `requestBody`.
pub fn openapi_json() -> serde_json::Value {
    let mut api = ApiDoc::openapi();
    api.merge(crate::tokens::TokensDoc::openapi());
    api.merge(crate::audit::AuditDoc::openapi());
    let mut doc = serde_json::to_value(api).expect("the document serializes");
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
        .merge(crate::pool::routes())
        .merge(crate::volumes::routes())
        .merge(crate::snapshots::routes())
        .merge(crate::jobs::routes())
        .merge(crate::backups::routes())
        .merge(crate::pairs::routes())
        .merge(crate::tokens::routes())
        .merge(crate::audit::routes())
        .merge(crate::newest::routes())
        .merge(crate::policies::routes())
        .merge(crate::vaults::routes())
        .merge(crate::checks::routes())
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::authenticate,
        ))
        // The web console's files: outside the token layer (they gate themselves).
        .merge(crate::console::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::audit::record,
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
        API's own (http:// or https:// + its Host) gets 403, and without a token the Host must be the \
        bound address or a loopback name (localhost, 127.0.0.1, [::1]), else 421."),
    paths(pool::get_pool, pool::check_pool, volumes::list_volumes, volumes::create_volume,
          volumes::get_volume, volumes::resize_volume, volumes::rename_volume,
          volumes::delete_volume, snapshots::list_snapshots, snapshots::create_snapshot,
          snapshots::get_snapshot, snapshots::delete_snapshot, snapshots::clone_snapshot,
          pool::list_exports, jobs::list_jobs, jobs::get_job, jobs::cancel_job,
          backups::backup_targets, backups::create_backups, backups::list_backups,
          backups::get_backup, backups::verify_backups, backups::restore_backup,
          backups::restore_set, backups::delete_backup, backups::hold_backup,
          backups::release_backup, backups::set_retention, backups::prune_volume,
          backups::check_catalog, backups::rebuild_catalog, pairs::create_pair,
          pairs::list_pairs, pairs::get_pair, pairs::split_pair, pairs::resync_pair,
          pairs::delete_pair, newest::newest_backups, policies::create_policy, policies::list_policies,
          policies::get_policy, policies::update_policy, policies::delete_policy,
          policies::pause_policy, policies::resume_policy, policies::run_policy,
          policies::next_policy_runs, policies::policy_history,
          vaults::add_vault, vaults::list_vaults, vaults::get_vault, vaults::remove_vault,
          vaults::export_vault_key, vaults::annotate_backup, vaults::record_host_copy,
          vaults::copy_to_vault, vaults::import_vault, checks::list_checks),
    components(schemas(ErrorBody, ErrorDetail, PoolStatus, Device, Volume, DeviceBytes, Origin, Snapshot,
                       Export, Job, JobKind, JobState, BackupCopied, Digested,
                       RestoredNew, RestoredInPlace, RolledBack, PairCopied, CheckReport, Problem, CreateVolume, ResizeVolume,
                       RenameVolume, CreateSnapshot, CloneSnapshot, BackupTarget, BackupMethod,
                       CreateBackup, CreatedBackups, BackupSource, BackupDestination,
                       BackupInfo, BackupRetention, BackupDigest, BackupEvent,
                       BackupHistoryEntry, Backup, BackupList, VerifyBackups, VerifyStarted,
                       Verification, RestoreBackup, RestoreSet, Restored, SetRetention,
                       PruneBackups, PruneItem, PruneReport, CatalogProblem, CatalogReport,
                       RebuildCatalog, RebuildReport, CreatePair, Pair, CreatedPair,
                       ResyncPair, ResyncStarted, NewestBackup, PolicyKeep, CreatePolicy, UpdatePolicy,
                       PolicyStep, PolicyTrack, PolicyRunResult, PolicyTrigger, PolicySchedule,
                       PolicyRunning, Policy, PolicyStepOutcome, PolicyRun, RunPolicy,
                       PolicyRunStarted, PolicyRan, PolicyNextTimes, PolicyNext,
                       AddVault, Vault, VaultKind, RemovedVault,
                       VaultKeyExport, BackupVaultCopy, BackupHostCopy, AnnotateBackup,
                       RecordHostCopy, CopyToVault, VaultCopyStarted, VaultCopied, CopiedToVault,
                       ImportVault, ImportFailure, VaultImported, CheckKind, CheckOutcome,
                       CheckFinding, CheckRecord, CheckHistory)),
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
    // The peer's address is recorded in the audit trail.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema a property names, through a plain `$ref` or one wrapped with a description.
    fn referenced<'a>(
        schemas: &'a serde_json::Value,
        prop: &serde_json::Value,
    ) -> &'a serde_json::Value {
        let r = prop["$ref"]
            .as_str()
            .or_else(|| prop["allOf"][0]["$ref"].as_str())
            .or_else(|| prop["oneOf"][0]["$ref"].as_str())
            .unwrap_or_else(|| panic!("not a reference: {prop}"));
        &schemas[r.rsplit('/').next().unwrap()]
    }

    #[test]
    fn fixed_value_fields_are_enums_in_the_document() {
        // They were plain strings: schemathesis could not check them.
        let doc = openapi_json();
        let schemas = &doc["components"]["schemas"];
        for (schema, field, value) in [
            ("Job", "kind", "pool-check"),
            ("Job", "state", "succeeded"),
            ("Backup", "method", "copy"),
            ("Backup", "status", "complete"),
            ("BackupDestination", "kind", "volume"),
            ("BackupTarget", "kind", "new-volume"),
            ("BackupTarget", "method", "snapshot"),
            ("Pair", "state", "reverse-resync"),
            ("PolicyRun", "result", "interrupted"),
            ("PolicyRun", "trigger", "catch-up"),
            ("PolicyStepOutcome", "step", "prune"),
        ] {
            let prop = &schemas[schema]["properties"][field];
            let values = referenced(schemas, prop)["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{schema}.{field} is no enum: {prop}"));
            assert!(
                values.contains(&value.into()),
                "{schema}.{field}: {values:?}"
            );
        }
        let result = &schemas["Job"]["properties"]["result"]["anyOf"];
        let shapes = result.as_array().expect("a job result is anyOf its shapes");
        for name in [
            "CheckReport",
            "Digested",
            "PairCopied",
            "RestoredNew",
            "PolicyRan",
        ] {
            assert!(
                shapes
                    .iter()
                    .any(|s| s["$ref"].as_str().is_some_and(|r| r.ends_with(name))),
                "{name} missing from {result}"
            );
            assert!(schemas[name].is_object(), "{name} is not a component");
        }
    }
}
