//! Reading and writing policies, their state and history (layout: `record.rs`). Every
//! change is one metadata transaction.

use std::ops::Bound;

use arca_store::{Error, ErrorKind, Pool, Result};

use super::record::{
    HISTORY_MAX, POLICIES, POLICY_HISTORY, POLICY_STATE, PolicyRecord, PolicyState, RunRecord,
    history_key,
};

fn corrupt(what: String) -> Error {
    Error::new(ErrorKind::Corrupt, what)
}

/// Every policy with its state (a default state when none was stored yet).
pub(super) fn load_all(pool: &Pool) -> Result<Vec<(PolicyRecord, PolicyState)>> {
    let mut records = Vec::new();
    pool.app_scan(
        POLICIES,
        Bound::Unbounded,
        Bound::Unbounded,
        false,
        |k, v| {
            records.push((
                String::from_utf8_lossy(k).into_owned(),
                PolicyRecord::decode(v),
            ));
            true
        },
    )?;
    let mut out = Vec::new();
    for (key, r) in records {
        let r = r.map_err(|e| corrupt(format!("policy {key}: {e}")))?;
        let state = match pool.app_get(POLICY_STATE, r.name.as_bytes())? {
            Some(b) => {
                PolicyState::decode(&b).map_err(|e| corrupt(format!("policy {key}: {e}")))?
            }
            None => PolicyState::default(),
        };
        out.push((r, state));
    }
    Ok(out)
}

/// Stores a policy and its state together.
pub(super) fn save(pool: &Pool, r: &PolicyRecord, state: &PolicyState) -> Result<()> {
    let mut t = pool.transaction();
    t.put(POLICIES, r.name.as_bytes().to_vec(), r.encode());
    t.put(POLICY_STATE, r.name.as_bytes().to_vec(), state.encode());
    t.commit()
}

/// Stores a policy's state, with a run that ended (or was skipped) added to its history; the
/// run [`HISTORY_MAX`] places older goes (every sequence number gets exactly one entry).
pub(super) fn save_state(
    pool: &Pool,
    name: &str,
    state: &PolicyState,
    run: Option<&RunRecord>,
) -> Result<()> {
    let mut t = pool.transaction();
    t.put(POLICY_STATE, name.as_bytes().to_vec(), state.encode());
    if let Some(run) = run {
        t.put(POLICY_HISTORY, history_key(name, run.seq), run.encode());
        if let Some(old) = run.seq.checked_sub(HISTORY_MAX as u64) {
            t.delete(POLICY_HISTORY, history_key(name, old));
        }
    }
    t.commit()
}

/// Removes a policy, its state and its history.
pub(super) fn delete(pool: &Pool, name: &str) -> Result<()> {
    let mut keys = Vec::new();
    let (lo, hi) = (history_key(name, 0), history_key(name, u64::MAX));
    pool.app_scan(
        POLICY_HISTORY,
        Bound::Included(&lo),
        Bound::Included(&hi),
        false,
        |k, _| {
            keys.push(k.to_vec());
            true
        },
    )?;
    let mut t = pool.transaction();
    t.delete(POLICIES, name.as_bytes().to_vec());
    t.delete(POLICY_STATE, name.as_bytes().to_vec());
    for k in keys {
        t.delete(POLICY_HISTORY, k);
    }
    t.commit()
}

/// A policy's runs, newest first, at most `limit`.
pub(super) fn history(pool: &Pool, name: &str, limit: usize) -> Result<Vec<RunRecord>> {
    let mut out = Vec::new();
    let mut bad = None;
    let (lo, hi) = (history_key(name, 0), history_key(name, u64::MAX));
    pool.app_scan(
        POLICY_HISTORY,
        Bound::Included(&lo),
        Bound::Included(&hi),
        true,
        |_, v| {
            match RunRecord::decode(v) {
                Ok(r) => out.push(r),
                Err(e) => bad = Some(e),
            }
            out.len() < limit
        },
    )?;
    match bad {
        // One unreadable entry does not hide the others; it is named when nothing else is.
        Some(e) if out.is_empty() => Err(corrupt(format!("policy {name}: history: {e}"))),
        _ => Ok(out),
    }
}
