//! Backup operations whose commit fails at any step leave nothing: the pool and the catalog
//! are as before the call, in memory and after a reopen, and both checks are clean.

use std::ops::Bound;

use arca_backup::{CreateRequest, Method};
use arca_store::sim::FaultOp;

use crate::util::*;

const TABLES: [&str; 13] = [
    "backups",
    "backups_by_volume",
    "backups_by_label",
    "backups_by_host",
    "backups_by_app",
    "backups_by_meta",
    "backups_by_set",
    "backups_by_status",
    "backup_generations",
    "backup_digests",
    "backup_id_mark",
    "restores",
    "pairs",
];

/// Everything visible: volumes, snapshots with their guards and tags, and every table row.
fn state(r: &Rig) -> String {
    let mut out = String::new();
    for v in r.pool.volumes() {
        out += &format!("{v:?}\n");
        for s in r.pool.snapshots(&v.name).unwrap() {
            out += &format!("  {s:?}\n");
        }
    }
    for t in TABLES {
        r.pool
            .app_scan(t, Bound::Unbounded, Bound::Unbounded, false, |k, v| {
                out += &format!("{t} {k:?}={v:?}\n");
                true
            })
            .unwrap();
    }
    out
}

/// Runs `op`, failing the Nth device sync for N = 0, 1, ... until it succeeds; after every
/// failure the state is as before, both checks are clean, and a reopen shows the same.
fn fails_cleanly_at_every_sync<T>(r: &Rig, what: &str, op: impl Fn(&Rig) -> arca_store::Result<T>) {
    r.pool.flush().unwrap();
    let before = state(r);
    for n in 0.. {
        r.devices[0].inject(FaultOp::Sync, n, 1, libc::EIO);
        let result = op(r);
        r.devices[0].clear_faults();
        if result.is_ok() {
            assert!(n > 0, "{what}: the operation commits");
            assert_ne!(state(r), before, "{what}: it changed something");
            return;
        }
        assert_eq!(state(r), before, "{what}: sync {n} failed");
        r.assert_clean();
        let again = r.reopen_on(r.devices.clone());
        assert_eq!(state(&again), before, "{what}: sync {n} failed, reopened");
        assert!(n < 50, "{what}: never succeeded");
    }
}

fn rig3() -> Rig {
    let r = rig(&[16 * MIB]);
    for (i, v) in ["a", "b", "c"].iter().enumerate() {
        r.pool.create_volume(v, 64 * ES, None).unwrap();
        r.write(v, 0, &pattern(i as u64, 8 * ES as usize));
    }
    r
}

#[test]
fn snapshot_backup_set_failing_at_any_commit_step_leaves_nothing() {
    let r = rig3();
    fails_cleanly_at_every_sync(&r, "snapshot set", |r| {
        r.backups.create(CreateRequest {
            volumes: vec!["a".into(), "b".into(), "c".into()],
            ..CreateRequest::default()
        })
    });
    r.wait_all();
    r.assert_clean();
}

#[test]
fn copy_backup_start_failing_at_any_commit_step_leaves_nothing() {
    let r = rig3();
    fails_cleanly_at_every_sync(&r, "copy start", |r| {
        r.backups.create(CreateRequest {
            volumes: vec!["a".into(), "b".into()],
            method: Some(Method::Copy),
            ..CreateRequest::default()
        })
    });
    r.wait_all();
    r.assert_clean();
}

#[test]
fn catalog_rebuild_failing_at_any_commit_step_leaves_nothing() {
    let r = rig3();
    r.snapshot_backup("a", None);
    r.snapshot_backup("b", None);
    // A record the descriptors do not back: the rebuild drops it (and would change rows).
    r.pool
        .app_scan(
            "backups",
            Bound::Unbounded,
            Bound::Unbounded,
            false,
            |_, _| true,
        )
        .unwrap();
    let mut t = r.pool.transaction();
    t.delete("backup_generations", 0u64.to_be_bytes().to_vec());
    t.put(
        "backup_generations",
        999u64.to_be_bytes().to_vec(),
        7u64.to_be_bytes().to_vec(),
    );
    t.commit().unwrap();
    fails_cleanly_at_every_sync(&r, "catalog rebuild", |r| r.backups.rebuild(true));
}
