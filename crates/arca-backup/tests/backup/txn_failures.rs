//! Backup operations whose commit fails at any step leave nothing: the pool and the catalog
//! are as before the call, in memory and after a reopen, and both checks are clean.

use std::sync::Arc;

use arca_backup::{CreateRequest, Method, PairState, Pairs, RestoreTo, snapshot_name};
use arca_store::Pool;
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

/// Everything the pool shows: volumes, snapshots with their guards and tags, every row.
fn pool_state(pool: &Pool) -> String {
    arca_store::sim::pool_state(pool, &TABLES, false).unwrap()
}

fn state(r: &Rig) -> String {
    pool_state(&r.pool)
}

/// A rig to run one operation on, with the pairs when the operation uses them.
struct Case {
    r: Rig,
    pairs: Option<Arc<Pairs>>,
}

impl From<Rig> for Case {
    fn from(r: Rig) -> Case {
        Case { r, pairs: None }
    }
}

impl Case {
    /// Service state held in memory outside the pool.
    fn memory(&self) -> String {
        self.pairs
            .as_ref()
            .map_or_else(String::new, |p| format!("{:?}", p.list()))
    }
}

/// Runs `op` on a fresh `setup()` failing the Nth device sync, for every sync the call makes
/// (counted in a run without faults). After every failure the state is as before, in memory
/// and after a restart, and both checks are clean. A failed sync the store survives (the
/// metadata commit had landed, or a job the call started retried) is a success: memory must
/// then show what a restart finds. Returns a case the call succeeded on.
fn fails_cleanly_at_every_sync<T>(
    what: &str,
    setup: impl Fn() -> Case,
    op: impl Fn(&Case) -> arca_store::Result<T>,
) -> Case {
    let steps = {
        let c = setup();
        c.r.pool.flush().unwrap();
        let from = c.r.devices[0].syncs();
        op(&c).unwrap_or_else(|e| panic!("{what}: {e}"));
        c.r.devices[0].syncs() - from
    };
    assert!(steps > 0, "{what}: the operation commits");
    let mut failures = 0;
    for n in 0..steps {
        let c = setup();
        let r = &c.r;
        r.pool.flush().unwrap();
        let before = state(r);
        let memory_before = c.memory();
        r.devices[0].inject(FaultOp::Sync, n, 1, libc::EIO);
        let result = op(&c);
        r.devices[0].clear_faults();
        settle(r);
        if result.is_ok() {
            r.pool.flush().unwrap();
            r.assert_clean();
            let now = state(r);
            assert_eq!(
                restarted_state(c),
                now,
                "{what}: sync {n} survived, restarted"
            );
            continue;
        }
        failures += 1;
        assert_eq!(state(r), before, "{what}: sync {n} failed");
        assert_eq!(
            c.memory(),
            memory_before,
            "{what}: sync {n} failed, in memory"
        );
        r.assert_clean();
        assert_eq!(
            restarted_state(c),
            before,
            "{what}: sync {n} failed, restarted"
        );
    }
    assert!(failures > 0, "{what}: no failure reached the caller");
    let c = setup();
    op(&c).unwrap_or_else(|e| panic!("{what}: {e}"));
    c
}

/// Waits until no job runs, those that jobs start included (a restore starts digests).
fn settle(r: &Rig) {
    while r.jobs.list().iter().any(|j| !j.state.finished()) {
        r.wait_all();
    }
}

/// What a restart on the case's devices finds, once the case is gone (two pools must not
/// share devices). The backup service then opens on it, settles what it recovers (a digest
/// a failed sync cut short), and both checks are clean.
fn restarted_state(c: Case) -> String {
    settle(&c.r);
    let devices = c.r.devices.clone();
    let clock = c.r.now_ms.clone();
    drop(c);
    let pool = Pool::open(as_block(&devices)).unwrap();
    let found = pool_state(&pool);
    let jobs = Arc::new(arca_backup::JobManager::new());
    let now = Arc::new(move || clock.load(std::sync::atomic::Ordering::SeqCst));
    let hosts = Arc::new(arca_backup::NoHosts);
    let backups =
        arca_backup::Backups::open_with_clock(pool.clone(), jobs.clone(), hosts, now).unwrap();
    while jobs.list().iter().any(|j| !j.state.finished()) {
        for j in jobs.list() {
            jobs.get(j.id)
                .unwrap()
                .wait(std::time::Duration::from_secs(60));
        }
    }
    assert!(pool.fsck().unwrap().is_clean());
    assert!(backups.check().unwrap().problems.is_empty());
    found
}

fn rig3() -> Rig {
    let r = rig(&[16 * MIB]);
    for (i, v) in ["a", "b", "c"].iter().enumerate() {
        r.pool.create_volume(v, 64 * ES, None).unwrap();
        r.write(v, 0, &pattern(i as u64, 8 * ES as usize));
    }
    r
}

/// Creating the backups `req` asks for on [`rig3`] fails cleanly at every commit step, and
/// the run that succeeds leaves a clean pool and catalog once its jobs are done.
fn create_fails_cleanly_at_every_sync(what: &str, req: CreateRequest) {
    let c =
        fails_cleanly_at_every_sync(what, || rig3().into(), |c| c.r.backups.create(req.clone()));
    c.r.wait_all();
    c.r.assert_clean();
}

#[test]
fn snapshot_backup_set_failing_at_any_commit_step_leaves_nothing() {
    create_fails_cleanly_at_every_sync(
        "snapshot set",
        CreateRequest {
            volumes: vec!["a".into(), "b".into(), "c".into()],
            ..CreateRequest::default()
        },
    );
}

#[test]
fn copy_backup_start_failing_at_any_commit_step_leaves_nothing() {
    create_fails_cleanly_at_every_sync(
        "copy start",
        CreateRequest {
            volumes: vec!["a".into(), "b".into()],
            method: Some(Method::Copy),
            ..CreateRequest::default()
        },
    );
}

#[test]
fn catalog_rebuild_failing_at_any_commit_step_leaves_nothing() {
    let setup = || {
        let r = rig3();
        r.snapshot_backup("a", None);
        r.snapshot_backup("b", None);
        // Rows the descriptors do not back: the rebuild replaces them.
        let mut t = r.pool.transaction();
        t.delete("backup_generations", 0u64.to_be_bytes().to_vec());
        t.put(
            "backup_generations",
            999u64.to_be_bytes().to_vec(),
            7u64.to_be_bytes().to_vec(),
        );
        t.commit().unwrap();
        r.into()
    };
    fails_cleanly_at_every_sync("catalog rebuild", setup, |c| c.r.backups.rebuild(true));
}

/// Volume `a` changed since its backup (whose id is returned).
fn changed_since_backup() -> (Rig, arca_backup::BackupId) {
    let r = rig3();
    let id = r.snapshot_backup("a", None);
    r.write("a", 2 * ES, &pattern(9, 3 * ES as usize));
    r.advance(60_000);
    (r, id)
}

#[test]
fn in_place_restore_failing_at_any_commit_step_leaves_nothing() {
    let (_, id) = changed_since_backup();
    let job = std::cell::Cell::new(None);
    let c = fails_cleanly_at_every_sync(
        "in-place restore",
        || changed_since_backup().0.into(),
        |c| {
            let to = RestoreTo::InPlace {
                volume: None,
                force: false,
            };
            c.r.backups.restore(id, to).map(|out| job.set(out.job))
        },
    );
    c.r.wait_ok(job.get().expect("an in-place restore runs a job"));
    assert!(c.r.image("a") == c.r.image(&format!("a@{}", snapshot_name(id))));
    c.r.assert_clean();
}

/// A set backup of `a` and `b` (its set id returned), both changed since.
fn set_changed_since() -> (Rig, u64) {
    let r = rig3();
    let c = r
        .backups
        .create(CreateRequest {
            volumes: vec!["a".into(), "b".into()],
            ..CreateRequest::default()
        })
        .unwrap();
    r.wait_all();
    r.write("a", 0, &pattern(7, ES as usize));
    r.write("b", ES, &pattern(8, ES as usize));
    r.advance(60_000);
    (r, c.records[0].set_id.expect("two volumes make a set"))
}

#[test]
fn in_place_set_restore_failing_at_any_commit_step_leaves_nothing() {
    let (_, set) = set_changed_since();
    let c = fails_cleanly_at_every_sync(
        "in-place set restore",
        || set_changed_since().0.into(),
        |c| c.r.backups.restore_set(set, false),
    );
    c.r.wait_all();
    c.r.assert_clean();
}

/// Volumes `p` and `s` in pair `s` (state pair), the pairs attached to the backups.
fn paired() -> Case {
    let r = rig(&[16 * MIB]);
    r.pool.create_volume("p", 64 * ES, None).unwrap();
    r.pool.create_volume("s", 64 * ES, None).unwrap();
    r.write("p", 0, &pattern(1, 8 * ES as usize));
    let pairs = Pairs::open(r.pool.clone(), r.jobs.clone()).unwrap();
    r.backups.attach_pairs(pairs.clone()).unwrap();
    pairs.create("p", "s", None, &arca_backup::NoHosts).unwrap();
    r.wait_all();
    assert_eq!(pairs.get("s").unwrap().state, PairState::Pair);
    Case {
        r,
        pairs: Some(pairs),
    }
}

fn pairs(c: &Case) -> &Pairs {
    c.pairs.as_ref().expect("a paired case")
}

#[test]
fn pair_split_failing_at_any_commit_step_leaves_nothing() {
    let c = fails_cleanly_at_every_sync("pair split", paired, |c| pairs(c).split("s"));
    assert_eq!(pairs(&c).get("s").unwrap().state, PairState::Split);
    c.r.write("p", 0, &[5; 100]);
    assert!(
        c.r.image("s") != c.r.image("p"),
        "the secondary stays as split"
    );
    c.r.assert_clean();
}

#[test]
fn backup_to_a_pair_secondary_failing_at_any_commit_step_leaves_nothing() {
    let c = fails_cleanly_at_every_sync("backup by split", paired, |c| {
        c.r.backups.create(to_request("p", "s"))
    });
    assert_eq!(pairs(&c).get("s").unwrap().state, PairState::Split);
    c.r.wait_all();
    c.r.assert_clean();
}

/// Volumes v0..v4, each with data.
fn rig5() -> Rig {
    let r = rig(&[16 * MIB]);
    for i in 0..5u64 {
        let v = format!("v{i}");
        r.pool.create_volume(&v, 32 * ES, None).unwrap();
        r.write(&v, 0, &pattern(i, 2 * ES as usize));
    }
    r
}

fn five() -> CreateRequest {
    CreateRequest {
        volumes: (0..5).map(|i| format!("v{i}")).collect(),
        ..CreateRequest::default()
    }
}

/// Nothing of a refused set: no backup snapshot, no record, no guard, nothing else changed.
fn assert_nothing_left(r: Rig, before: &str) {
    assert_eq!(state(&r), before);
    for v in r.pool.volumes() {
        assert!(v.guards.is_empty(), "{v:?}");
        for s in r.pool.snapshots(&v.name).unwrap() {
            assert!(s.guards.is_empty() && s.tag.is_none(), "{s:?}");
        }
    }
    let all = r
        .backups
        .list(&arca_backup::catalog::Query::default())
        .unwrap();
    assert!(all.is_empty(), "{all:?}");
    assert!(r.jobs.list().is_empty(), "no digest job started");
    r.assert_clean();
    assert_eq!(restarted_state(r.into()), before, "restarted");
}

#[test]
fn a_set_backup_refused_at_its_third_volume_for_a_name_clash_leaves_nothing() {
    let r = rig5();
    // The set's ids come from the (stopped) clock: the third volume's backup snapshot name is
    // taken there already.
    let third = r.now_ms.load(std::sync::atomic::Ordering::SeqCst) * arca_backup::IDS_PER_MS + 2;
    r.pool
        .create_snapshot(
            "v2",
            &arca_backup::snapshot_name(arca_backup::BackupId(third)),
        )
        .unwrap();
    r.pool.flush().unwrap();
    let before = state(&r);
    let e = r.backups.create(five()).unwrap_err();
    assert_eq!(e.kind(), arca_store::ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("v2@"), "{e}");
    assert_nothing_left(r, &before);
}

#[test]
fn a_set_backup_refused_at_its_third_volume_missing_leaves_nothing() {
    let r = rig5();
    r.pool.delete_volume("v2", false).unwrap();
    r.pool.flush().unwrap();
    let before = state(&r);
    let e = r.backups.create(five()).unwrap_err();
    assert_eq!(e.kind(), arca_store::ErrorKind::NotFound, "{e}");
    assert_nothing_left(r, &before);
}
