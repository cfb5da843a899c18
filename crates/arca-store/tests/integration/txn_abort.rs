//! Transactions that abort: dropped without a commit, or with a commit that fails, they leave
//! the pool as it was, in memory and after a reopen, even with host I/O running.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arca_store::sim::{FaultOp, image_digest, pool_state};
use arca_store::{BlockDevice, FileDevice, Guard, GuardEffect, GuardOwner, Pool, PoolConfig, Txn};

use crate::util::*;

const ES: u64 = 4096;

fn config() -> PoolConfig {
    PoolConfig {
        extent_size: ES as u32,
        meta_len: Some(2 * MIB),
    }
}

/// Everything visible about the pool: volumes, snapshots, guards, tags, rows and data.
fn state(pool: &Pool) -> String {
    pool_state(pool, &["t"], true).unwrap()
}

fn digest(pool: &Pool, export: &str) -> u64 {
    image_digest(pool, export).unwrap()
}

/// A pool with something of every kind to change: volumes with data, snapshots, a clone,
/// guards, tags and rows.
fn setup() -> SimPool {
    let sp = sim_pool(&[4 * MIB], &config());
    let pool = &sp.pool;
    pool.create_volume("a", 16 * ES, None).unwrap();
    pool.create_volume("b", 16 * ES, None).unwrap();
    let e = pool.export("a").unwrap();
    e.write(0, &pattern(1, 4 * ES as usize), false).unwrap();
    pool.create_snapshot("a", "old").unwrap();
    e.write(ES, &pattern(2, 2 * ES as usize), false).unwrap();
    pool.create_snapshot("a", "mid").unwrap();
    e.write(2 * ES, &pattern(3, 2 * ES as usize), false)
        .unwrap();
    pool.create_snapshot("a", "new").unwrap();
    e.write(0, &pattern(4, ES as usize), false).unwrap();
    pool.export("b")
        .unwrap()
        .write(0, &pattern(5, ES as usize), false)
        .unwrap();
    pool.create_snapshot("b", "s").unwrap();
    pool.clone_snapshot("a", "old", "c", None).unwrap();
    let mut t = pool.transaction();
    t.add_volume_guard("b", guard(GuardOwner::Pair(1), GuardEffect::ALL))
        .unwrap();
    t.set_volume_tag("a", Some(b"tag".to_vec())).unwrap();
    t.put("t", b"k".to_vec(), b"v".to_vec());
    t.commit().unwrap();
    pool.flush().unwrap();
    sp
}

fn guard(owner: GuardOwner, effect: GuardEffect) -> Guard {
    Guard::new(owner, effect, format!("held by {owner}"))
}

/// Closes the pool and opens it again on the same devices.
fn restart(sp: SimPool) -> SimPool {
    let SimPool {
        power,
        devices,
        pool,
    } = sp;
    drop(pool);
    let pool = Pool::open(arca_store_devices(&devices)).unwrap();
    SimPool {
        power,
        devices,
        pool,
    }
}

fn arca_store_devices(
    devices: &[Arc<arca_store::sim::SimDevice>],
) -> Vec<Arc<dyn arca_store::BlockDevice>> {
    as_block(devices)
}

type Plan = fn(&mut Txn<'_>);

/// One transaction per kind of op (each valid on [`setup`]'s pool).
fn plans() -> Vec<(&'static str, Plan)> {
    vec![
        ("create volume", |t| {
            t.create_volume("n", 8 * ES, None).unwrap();
        }),
        ("create snapshots", |t| {
            t.create_snapshots(&[("a", "x"), ("b", "x")]).unwrap();
        }),
        ("clone", |t| {
            t.clone_snapshot("a", "mid", "n", None).unwrap();
        }),
        ("delete newest snapshot", |t| {
            t.delete_snapshot("a", "new").unwrap()
        }),
        ("delete middle snapshot", |t| {
            t.delete_snapshot("a", "mid").unwrap()
        }),
        ("delete volume", |t| {
            t.remove_volume_guard("b", GuardOwner::Pair(1)).unwrap();
            t.delete_volume("b", true).unwrap();
        }),
        ("delete clone", |t| t.delete_volume("c", false).unwrap()),
        ("tags", |t| {
            t.set_volume_tag("a", None).unwrap();
            t.set_snapshot_tag("a", "old", Some(b"x".to_vec())).unwrap();
        }),
        ("guards", |t| {
            t.add_volume_guard("a", guard(GuardOwner::Backup(3), GuardEffect::NO_DELETE))
                .unwrap();
            t.add_snapshot_guard(
                "a",
                "mid",
                guard(GuardOwner::Backup(3), GuardEffect::NO_DELETE),
            )
            .unwrap();
            t.remove_volume_guard("b", GuardOwner::Pair(1)).unwrap();
        }),
        ("rows", |t| {
            t.put("t", b"k2".to_vec(), b"v2".to_vec());
            t.delete("t", b"k".to_vec());
        }),
        ("everything at once", |t| {
            t.create_volume("n", 8 * ES, None).unwrap();
            t.create_snapshots(&[("n", "s"), ("a", "x")]).unwrap();
            t.clone_snapshot("n", "s", "m", None).unwrap();
            t.delete_snapshot("a", "mid").unwrap();
            t.add_snapshot_guard(
                "a",
                "x",
                guard(GuardOwner::Backup(4), GuardEffect::NO_DELETE),
            )
            .unwrap();
            t.set_volume_tag("n", Some(b"n".to_vec())).unwrap();
            t.delete_volume("c", false).unwrap();
            t.put("t", b"k3".to_vec(), b"v3".to_vec());
        }),
    ]
}

#[test]
fn dropped_transaction_leaves_the_pool_unchanged() {
    for (what, plan) in plans() {
        let sp = setup();
        let pool = &sp.pool;
        let before = state(pool);
        let commits = pool.commit_count();
        let mut t = pool.transaction();
        plan(&mut t);
        assert_eq!(state(pool), before, "{what}: planned ops are invisible");
        drop(t);
        pool.flush().unwrap();
        assert_eq!(
            pool.commit_count(),
            commits,
            "{what}: nothing was left to commit"
        );
        assert_eq!(state(pool), before, "{what}: in memory");
        assert_clean(pool);
        assert_eq!(state(&reopen(&sp)), before, "{what}: after reopen");
    }
}

#[test]
fn failed_commit_undoes_every_change_in_memory() {
    for (what, plan) in plans() {
        let mut sp = setup();
        let before = state(&sp.pool);
        // Fail the Nth sync of the commit, for every N until the commit succeeds.
        let mut n = 0;
        loop {
            let pool = &sp.pool;
            let mut t = pool.transaction();
            plan(&mut t);
            sp.devices[0].inject(FaultOp::Sync, n, 1, libc::EIO);
            let r = t.commit();
            sp.devices[0].clear_faults();
            if r.is_ok() {
                break;
            }
            assert_eq!(state(pool), before, "{what}: sync {n} failed");
            pool.flush().unwrap();
            assert_eq!(state(pool), before, "{what}: sync {n} failed, then a flush");
            assert_clean(pool);
            sp = restart(sp);
            assert_eq!(state(&sp.pool), before, "{what}: sync {n}, reopened");
            n += 1;
        }
        assert!(n >= 1, "{what}: a commit syncs at least once");
        assert_ne!(state(&sp.pool), before, "{what}: the commit applies");
        let after = state(&sp.pool);
        assert_clean(&sp.pool);
        let sp = restart(sp);
        assert_eq!(state(&sp.pool), after, "{what}: committed, reopened");
    }
}

/// Hosts write to every volume while transactions of every kind fail and are undone: what the
/// hosts wrote is all there, snapshots read what they read before, and the pool is clean.
#[test]
fn undo_is_exact_with_host_writes_running() {
    for (what, plan) in plans() {
        let sp = setup();
        let pool = sp.pool.clone();
        let snaps_before: Vec<(String, u64)> = ["a@old", "a@mid", "a@new", "b@s"]
            .iter()
            .map(|s| (s.to_string(), digest(&pool, s)))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = ["a", "c"]
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let e = pool.export(v).unwrap();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut model = vec![None; 16];
                    let mut k = 0u64;
                    while !stop.load(Ordering::SeqCst) || k < 64 {
                        let l = (k * 7 + i as u64) % 16;
                        let data = pattern(1000 * i as u64 + k, ES as usize);
                        e.write(l * ES, &data, false).unwrap();
                        model[l as usize] = Some(data);
                        k += 1;
                    }
                    (e, model)
                })
            })
            .collect();
        for _ in 0..6 {
            let mut t = pool.transaction();
            plan(&mut t);
            // The first sync: a device's, before the metadata commit (a later one may fail
            // after the commit reached the store, which then counts as done).
            sp.devices[0].inject(FaultOp::Sync, 0, 1, libc::EIO);
            assert!(t.commit().is_err(), "{what}");
            sp.devices[0].clear_faults();
        }
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            let (e, model) = w.join().unwrap();
            for (l, data) in model.iter().enumerate() {
                if let Some(data) = data {
                    let mut buf = vec![0u8; ES as usize];
                    e.read(l as u64 * ES, &mut buf).unwrap();
                    assert!(&buf == data, "{what}: extent {l} of {}", e.name());
                }
            }
        }
        for (s, d) in &snaps_before {
            assert_eq!(digest(&pool, s), *d, "{what}: {s}");
        }
        assert!(pool.volume("n").is_err(), "{what}");
        assert_eq!(pool.snapshots("a").unwrap().len(), 3, "{what}");
        assert_clean(&pool);
        pool.flush().unwrap();
        let again = reopen(&sp);
        for (s, d) in &snaps_before {
            assert_eq!(digest(&again, s), *d, "{what}: {s} after reopen");
        }
        assert_clean(&again);
    }
}

#[test]
fn a_backup_guard_outlives_a_pair_guard_lifted_and_guards_persist() {
    let sp = setup();
    let pool = &sp.pool;
    let mut t = pool.transaction();
    t.add_snapshot_guard(
        "a",
        "mid",
        guard(GuardOwner::Backup(3), GuardEffect::NO_DELETE),
    )
    .unwrap();
    t.add_volume_guard("b", guard(GuardOwner::Backup(3), GuardEffect::NO_DELETE))
        .unwrap();
    t.commit().unwrap();
    let again = reopen(&sp);
    let b = again.volume("b").unwrap();
    assert_eq!(
        b.guards.iter().map(|g| g.owner).collect::<Vec<_>>(),
        vec![GuardOwner::Backup(3), GuardOwner::Pair(1)]
    );
    assert!(again.export("b").unwrap().read_only(), "the pair's guard");
    let e = again.delete_snapshot("a", "mid").unwrap_err();
    assert!(e.to_string().contains("held by backup 3"), "{e}");
    // Each owner lifts only its own: the backup's guard stays when the pair's goes.
    again.remove_volume_guard("b", GuardOwner::Pair(1)).unwrap();
    assert!(!again.export("b").unwrap().read_only());
    let e = again.delete_volume("b", true).unwrap_err();
    assert!(e.to_string().contains("held by backup 3"), "{e}");
    assert_clean(&again);
}

/// A device whose syncs wait until the test opens its gate, then fail: a commit that stays
/// undecided as long as the test needs.
#[derive(Debug)]
struct GatedDevice {
    inner: FileDevice,
    closed: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
    waiting: AtomicBool,
}

impl GatedDevice {
    fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.opened.notify_all();
    }
}

impl BlockDevice for GatedDevice {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn size_bytes(&self) -> std::io::Result<u64> {
        self.inner.size_bytes()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> std::io::Result<()> {
        let mut closed = self.closed.lock().unwrap();
        if !*closed {
            return self.inner.sync();
        }
        self.waiting.store(true, Ordering::SeqCst);
        while *closed {
            closed = self.opened.wait(closed).unwrap();
        }
        Err(std::io::Error::from_raw_os_error(libc::EIO))
    }
}

/// Regression: a volume deletion whose commit then failed was visible to hosts while the
/// commit was undecided: a write to the volume failed with "not found", although the volume
/// came back when the failed commit was undone. Hosts now wait for the outcome.
#[test]
fn hosts_never_see_a_volume_deleted_by_a_commit_that_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d0");
    let pool = Pool::create_files(&[path.as_path()], 16 * MIB, &config()).unwrap();
    pool.create_volume("c", 16 * ES, None).unwrap();
    pool.close().unwrap();
    let dev = Arc::new(GatedDevice {
        inner: FileDevice::open(&path).unwrap(),
        closed: std::sync::Mutex::new(false),
        opened: std::sync::Condvar::new(),
        waiting: AtomicBool::new(false),
    });
    let pool = Pool::open(vec![dev.clone() as Arc<dyn BlockDevice>]).unwrap();
    let export = pool.export("c").unwrap();
    export.write(0, &pattern(1, ES as usize), false).unwrap();
    pool.flush().unwrap();
    *dev.closed.lock().unwrap() = true;
    let committer = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let mut t = pool.transaction();
            t.delete_volume("c", false).unwrap();
            t.commit()
        })
    };
    while !dev.waiting.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // The commit is undecided: a host writing now must wait for it, not fail.
    let writer = std::thread::spawn(move || export.write(ES, &pattern(2, ES as usize), false));
    std::thread::sleep(std::time::Duration::from_millis(200));
    dev.open();
    assert!(committer.join().unwrap().is_err(), "the commit failed");
    writer
        .join()
        .unwrap()
        .expect("the write after the undone delete");
    let mut buf = vec![0u8; ES as usize];
    pool.export("c").unwrap().read(ES, &mut buf).unwrap();
    assert_eq!(buf, pattern(2, ES as usize));
    assert_clean(&pool);
}
