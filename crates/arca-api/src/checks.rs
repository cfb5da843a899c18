//! The record of checks: each pool check (the `pool-check` job) and catalog check
//! (`GET /v1/catalog/check`) is recorded when it ends, with when it ran, how long, the token
//! that ran it and what it found, in the pool's metadata (table `checks`): the overview and
//! `arca pool status` show the last ones, also after a restart.
//!
//! Rows are keyed by the kind's byte and that kind's sequence number (big-endian, so a kind's
//! rows sort in order); each kind keeps its last `HISTORY_MAX`: a new row removes the one
//! `HISTORY_MAX` before it in the same transaction.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arca_backup::JobId;
use arca_store::Pool;
use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::server::{St, blocking};
use crate::tokens::Caller;
use crate::types::{CheckFinding, CheckHistory, CheckKind, CheckOutcome, CheckRecord};

const TABLE: &str = "checks";
/// Checks kept of each kind.
pub const HISTORY_MAX: u64 = 10;
/// Problems kept of one check (the count is kept whole).
const FIRST_PROBLEMS_MAX: usize = 5;

/// A record as stored (times in milliseconds; the kind is in the key).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    started_ms: u64,
    finished_ms: u64,
    duration_ms: u64,
    by: String,
    outcome: CheckOutcome,
    problems: u64,
    first_problems: Vec<CheckFinding>,
    error: Option<String>,
    job: Option<JobId>,
}

/// What a check found: how many problems, and the first few.
pub struct Findings {
    count: u64,
    first: Vec<CheckFinding>,
}

impl Findings {
    /// From the problems as the check reports them: (code, message).
    pub fn of<'a>(problems: impl IntoIterator<Item = (&'a str, &'a str)>) -> Findings {
        let mut f = Findings {
            count: 0,
            first: Vec::new(),
        };
        for (code, message) in problems {
            f.count += 1;
            if f.first.len() < FIRST_PROBLEMS_MAX {
                f.first.push(CheckFinding {
                    code: code.to_string(),
                    message: message.to_string(),
                });
            }
        }
        f
    }
}

/// A check under way: who started it, and when.
struct Running {
    kind: CheckKind,
    by: String,
    started_ms: u64,
    at: Instant,
}

/// The record: the pool's table and each kind's next sequence number.
pub struct Checks {
    pool: Pool,
    clock: arca_backup::Clock,
    /// Indexed by `kind_index`.
    next: [AtomicU64; 2],
}

fn kind_index(kind: CheckKind) -> usize {
    match kind {
        CheckKind::Pool => 0,
        CheckKind::Catalog => 1,
    }
}

fn key(kind: CheckKind, seq: u64) -> Vec<u8> {
    let mut k = vec![kind_index(kind) as u8];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Visits a kind's rows, newest first, until `visit` returns false.
fn scan_kind(
    pool: &Pool,
    kind: CheckKind,
    mut visit: impl FnMut(u64, &[u8]) -> bool,
) -> arca_store::Result<()> {
    let from = [kind_index(kind) as u8];
    let to = [kind_index(kind) as u8 + 1];
    pool.app_scan(
        TABLE,
        Bound::Included(&from[..]),
        Bound::Excluded(&to[..]),
        true,
        |k, v| match k.get(1..).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
            Some(seq) => visit(u64::from_be_bytes(seq), v),
            None => true,
        },
    )
}

/// The name of the token a request came with.
pub(crate) fn caller_name(caller: Option<Extension<Caller>>) -> String {
    caller.map_or_else(|| Caller::anonymous().name, |Extension(c)| c.name)
}

impl Checks {
    pub fn open(pool: Pool, clock: arca_backup::Clock) -> arca_store::Result<Checks> {
        let mut next = [0, 0];
        for kind in CheckKind::ALL {
            scan_kind(&pool, *kind, |seq, _| {
                next[kind_index(*kind)] = seq + 1;
                false
            })?;
        }
        Ok(Checks {
            pool,
            clock,
            next: next.map(AtomicU64::new),
        })
    }

    /// Runs `check`, a check of `kind` by the token named `by` (in job `job`), and records how
    /// it ended: what it found (`findings` of its report) or the error that stopped it.
    pub fn record<T, E: std::fmt::Display>(
        &self,
        kind: CheckKind,
        by: String,
        job: Option<JobId>,
        check: impl FnOnce() -> Result<T, E>,
        findings: impl FnOnce(&T) -> Findings,
    ) -> Result<T, E> {
        let run = self.begin(kind, by);
        let result = check();
        let found = match &result {
            Ok(report) => Ok(findings(report)),
            Err(e) => Err(e.to_string()),
        };
        self.finish(run, found, job);
        result
    }

    fn begin(&self, kind: CheckKind, by: String) -> Running {
        Running {
            kind,
            by,
            started_ms: (self.clock)(),
            at: Instant::now(),
        }
    }

    /// Records how `run` ended. The check's own answer stands whatever happens here: a
    /// failure to record is logged.
    fn finish(&self, run: Running, result: Result<Findings, String>, job: Option<JobId>) {
        let (outcome, findings, error) = match result {
            Ok(f) if f.count == 0 => (CheckOutcome::Clean, f, None),
            Ok(f) => (CheckOutcome::Problems, f, None),
            Err(e) => (CheckOutcome::Failed, Findings::of([]), Some(e)),
        };
        let row = Row {
            started_ms: run.started_ms,
            finished_ms: (self.clock)(),
            duration_ms: run.at.elapsed().as_millis() as u64,
            by: run.by,
            outcome,
            problems: findings.count,
            first_problems: findings.first,
            error,
            job,
        };
        if let Err(e) = self.append(run.kind, &row) {
            tracing::error!("cannot record the {} check: {e}", run.kind);
        }
    }

    fn append(&self, kind: CheckKind, row: &Row) -> arca_store::Result<()> {
        let seq = self.next[kind_index(kind)].fetch_add(1, Ordering::SeqCst);
        let mut t = self.pool.transaction();
        let value = serde_json::to_vec(row).expect("a check row serializes");
        t.put(TABLE, key(kind, seq), value);
        if let Some(old) = seq.checked_sub(HISTORY_MAX) {
            t.delete(TABLE, key(kind, old));
        }
        t.commit()
    }

    /// A kind's last `HISTORY_MAX` checks, newest first. A row that does not decode is
    /// skipped (and logged).
    pub fn history(&self, kind: CheckKind) -> arca_store::Result<Vec<CheckRecord>> {
        let mut out = Vec::new();
        scan_kind(&self.pool, kind, |seq, v| {
            match serde_json::from_slice::<Row>(v) {
                Ok(r) => out.push(CheckRecord {
                    kind,
                    started: arca_backup::time::format_ms(r.started_ms),
                    finished: arca_backup::time::format_ms(r.finished_ms),
                    duration_ms: r.duration_ms,
                    by: r.by,
                    outcome: r.outcome,
                    problems: r.problems,
                    first_problems: r.first_problems,
                    error: r.error,
                    job: r.job,
                }),
                Err(e) => tracing::error!("skipping unreadable {kind} check record {seq}: {e}"),
            }
            (out.len() as u64) < HISTORY_MAX
        })?;
        Ok(out)
    }
}

/// The last pool and catalog checks, newest first: when, how long, who ran them, what they
/// found.
#[utoipa::path(get, path = "/v1/checks", tag = "pool",
    responses((status = 200, body = CheckHistory), (status = 500, body = crate::types::ErrorBody)))]
pub(crate) async fn list_checks(State(s): St) -> Result<Json<CheckHistory>, ApiError> {
    let history = blocking(move || {
        Ok(CheckHistory {
            pool: s.checks.history(CheckKind::Pool)?,
            catalog: s.checks.history(CheckKind::Catalog)?,
        })
    })
    .await?;
    Ok(Json(history))
}

pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    axum::Router::new().route("/v1/checks", axum::routing::get(list_checks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(checks: &Checks, kind: CheckKind, by: &str, result: Result<Findings, String>) {
        let r = checks.begin(kind, by.into());
        checks.finish(r, result, None);
    }

    #[test]
    fn each_kind_keeps_its_last_checks_across_restarts() {
        let dir = std::env::temp_dir().join(format!("arca-checks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dev = dir.join("device-0.img");
        let config = arca_store::PoolConfig::default();
        let pool = Pool::create_files(&[&dev], 256 << 20, &config).unwrap();
        let ms = Arc::new(AtomicU64::new(1_000));
        let tick = ms.clone();
        let clock: arca_backup::Clock = Arc::new(move || tick.fetch_add(1000, Ordering::SeqCst));
        let checks = Checks::open(pool.clone(), clock.clone()).unwrap();
        assert_eq!(checks.history(CheckKind::Pool).unwrap(), vec![]);
        for i in 0..12 {
            run(
                &checks,
                CheckKind::Pool,
                &format!("t{i}"),
                Ok(Findings::of([])),
            );
        }
        let problems: Vec<(String, String)> = (0..7)
            .map(|i| ("orphan".to_string(), format!("problem {i}")))
            .collect();
        let found = Findings::of(problems.iter().map(|(c, m)| (c.as_str(), m.as_str())));
        run(&checks, CheckKind::Catalog, "admin", Ok(found));

        // Reopened: the numbering goes on, the oldest go first, the kinds are apart.
        let checks = Checks::open(pool.clone(), clock).unwrap();
        run(
            &checks,
            CheckKind::Pool,
            "last",
            Err("device 0: I/O error".into()),
        );
        let pool_checks = checks.history(CheckKind::Pool).unwrap();
        let by: Vec<&str> = pool_checks.iter().map(|c| c.by.as_str()).collect();
        assert_eq!(
            by,
            [
                "last", "t11", "t10", "t9", "t8", "t7", "t6", "t5", "t4", "t3"
            ]
        );
        let newest = &pool_checks[0];
        assert_eq!(newest.outcome, CheckOutcome::Failed);
        assert_eq!(newest.error.as_deref(), Some("device 0: I/O error"));
        assert_eq!(pool_checks[1].outcome, CheckOutcome::Clean);
        assert_eq!(pool_checks[1].problems, 0);
        let mut rows = 0;
        scan_kind(&pool, CheckKind::Pool, |_, _| {
            rows += 1;
            true
        })
        .unwrap();
        assert_eq!(rows, HISTORY_MAX, "older rows are removed, not only hidden");

        let catalog = checks.history(CheckKind::Catalog).unwrap();
        assert_eq!(catalog.len(), 1);
        let c = &catalog[0];
        assert_eq!(
            (c.kind, c.outcome, c.problems),
            (CheckKind::Catalog, CheckOutcome::Problems, 7)
        );
        let first: Vec<&str> = c
            .first_problems
            .iter()
            .map(|p| p.message.as_str())
            .collect();
        assert_eq!(
            first,
            [
                "problem 0",
                "problem 1",
                "problem 2",
                "problem 3",
                "problem 4"
            ]
        );
        assert!(c.started < c.finished, "{} {}", c.started, c.finished);
        pool.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
