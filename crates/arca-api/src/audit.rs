//! The audit trail: every API request that may change something (any method but GET and HEAD),
//! allowed or refused, recorded with its time, the token's name, the remote address, the
//! operation, its target and the answer's status, in the pool's metadata (table `audit`).
//!
//! Rows are keyed by a sequence number (big-endian, so they sort in order) and only appended;
//! the trail holds the last `ENTRIES_MAX`: each new row past that removes the oldest in the
//! same transaction. Request bodies are never recorded, so no secret (a created token's, a
//! password) can enter the trail; paths and queries carry none.

use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arca_store::Pool;
use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::error::ApiError;
use crate::server::{ApiQuery, St, blocking};
use crate::tls::TlsPeer;
use crate::tokens::Caller;

const TABLE: &str = "audit";
/// Entries kept; older ones are removed as new ones come.
pub const ENTRIES_MAX: u64 = 10_000;
/// Entries one listing returns at most (the newest of those that match).
const LIST_MAX: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Sequence number: entries are numbered in the order they were recorded.
    pub seq: u64,
    /// When the request was answered (UTC, RFC 3339 with milliseconds).
    pub time: String,
    /// The token's name (`bootstrap` for the daemon's own token, `anonymous` when the API
    /// needs none, `unauthenticated` when the request had no valid token).
    pub token: String,
    /// The client's address.
    pub remote: String,
    /// The HTTP method and path, with the query (what was asked for, on what).
    pub operation: String,
    /// The answer's HTTP status (2xx: done; 403: refused for the token's role).
    pub status: u16,
}

/// A row as stored (the entry without its key).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    time_ms: u64,
    token: String,
    remote: String,
    operation: String,
    status: u16,
}

/// The trail: the pool's table and the next sequence number.
pub struct Audit {
    pool: Pool,
    next: AtomicU64,
    clock: arca_backup::Clock,
    /// Entries kept (`ENTRIES_MAX` but in tests).
    entries_max: u64,
}

fn decode_key(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}

impl Audit {
    pub fn open(pool: Pool, clock: arca_backup::Clock) -> arca_store::Result<Audit> {
        Audit::open_bounded(pool, clock, ENTRIES_MAX)
    }

    fn open_bounded(
        pool: Pool,
        clock: arca_backup::Clock,
        entries_max: u64,
    ) -> arca_store::Result<Audit> {
        let mut last = None;
        pool.app_scan(TABLE, Bound::Unbounded, Bound::Unbounded, true, |k, _| {
            last = decode_key(k);
            false
        })?;
        Ok(Audit {
            pool,
            next: AtomicU64::new(last.map_or(0, |l| l + 1)),
            clock,
            entries_max,
        })
    }

    fn append(&self, row: &Row) -> arca_store::Result<()> {
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        let mut t = self.pool.transaction();
        let value = serde_json::to_vec(row).expect("an audit row serializes");
        t.put(TABLE, seq.to_be_bytes().to_vec(), value);
        if let Some(old) = seq.checked_sub(self.entries_max) {
            t.delete(TABLE, old.to_be_bytes().to_vec());
        }
        t.commit()
    }

    /// The newest `LIST_MAX` entries at or after `since_ms` by token `token`, oldest first.
    fn list(&self, since_ms: u64, token: Option<&str>) -> arca_store::Result<Vec<AuditEntry>> {
        let mut out = Vec::new();
        self.pool
            .app_scan(TABLE, Bound::Unbounded, Bound::Unbounded, true, |k, v| {
                let (Some(seq), Ok(row)) = (decode_key(k), serde_json::from_slice::<Row>(v)) else {
                    return true;
                };
                if row.time_ms < since_ms {
                    // Older from here on (rows are appended in time order).
                    return false;
                }
                if token.is_none_or(|t| t == row.token) {
                    out.push(AuditEntry {
                        seq,
                        time: arca_backup::time::format_ms(row.time_ms),
                        token: row.token,
                        remote: row.remote,
                        operation: row.operation,
                        status: row.status,
                    });
                }
                out.len() < LIST_MAX
            })?;
        out.reverse();
        Ok(out)
    }
}

/// The peer's address, over plain HTTP or TLS (None when served without connection info).
pub(crate) fn remote_addr(req: &Request) -> Option<SocketAddr> {
    let ext = req.extensions();
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| ext.get::<ConnectInfo<TlsPeer>>().map(|c| c.0.0))
}

/// Records every request but GET and HEAD once it is answered. Sits outside the token check,
/// so refusals are recorded too; the caller comes back on the response.
pub(crate) async fn record(State(s): St, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let remote = remote_addr(&req).map_or_else(|| "-".to_string(), |a| a.to_string());
    let operation = format!(
        "{} {}",
        req.method(),
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let resp = next.run(req).await;
    let token = resp
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "unauthenticated".to_string(), |c| c.name.clone());
    let row = Row {
        time_ms: (s.audit.clock)(),
        token,
        remote,
        operation,
        status: resp.status().as_u16(),
    };
    let audit = s.clone();
    // The operation is done: a failure to record it is reported, not turned into its answer.
    let written = tokio::task::spawn_blocking(move || audit.audit.append(&row)).await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("cannot record an audit entry: {e}"),
        Err(e) => tracing::error!("recording an audit entry failed: {e}"),
    }
    resp
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries at or after this time (RFC 3339 or a date)
    pub since: Option<String>,
    /// Only entries of the token with this name
    pub token: Option<String>,
}

/// The audit trail, oldest first: at most the newest 1000 entries that match.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 400, body = crate::types::ErrorBody)))]
pub(crate) async fn list_audit(
    State(s): St,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let since_ms = match q.since.as_deref() {
        None => 0,
        Some(t) => arca_backup::time::parse_time(t)
            .map_err(|e| ApiError::invalid(format!("since: {e}")))?,
    };
    let entries = blocking(move || Ok(s.audit.list(since_ms, q.token.as_deref())?)).await?;
    Ok(Json(entries))
}

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    axum::Router::new().route("/v1/audit", axum::routing::get(list_audit))
}

#[derive(OpenApi)]
#[openapi(paths(list_audit), components(schemas(AuditEntry)))]
pub struct AuditDoc;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(token: &str, time_ms: u64) -> Row {
        Row {
            time_ms,
            token: token.into(),
            remote: "127.0.0.1:1".into(),
            operation: "POST /v1/volumes".into(),
            status: 201,
        }
    }

    #[test]
    fn the_trail_keeps_its_newest_entries_across_restarts() {
        let dir = std::env::temp_dir().join(format!("arca-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dev = dir.join("device-0.img");
        let config = arca_store::PoolConfig::default();
        let pool = Pool::create_files(&[&dev], 256 << 20, &config).unwrap();
        let clock: arca_backup::Clock = Arc::new(|| 0);
        let audit = Audit::open_bounded(pool.clone(), clock.clone(), 5).unwrap();
        for i in 0..8 {
            audit
                .append(&row(if i % 2 == 0 { "a" } else { "b" }, 1000 * i))
                .unwrap();
        }
        let all = audit.list(0, None).unwrap();
        let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5, 6, 7], "the oldest go first");
        // Numbering goes on after a restart; filters by time and token.
        let audit = Audit::open_bounded(pool.clone(), clock, 5).unwrap();
        audit.append(&row("a", 9000)).unwrap();
        let seqs: Vec<u64> = audit.list(0, None).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [4, 5, 6, 7, 8]);
        let a: Vec<u64> = audit
            .list(5000, Some("a"))
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(a, [6, 8]);
        pool.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
