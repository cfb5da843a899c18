//! Copy pairs: a model-based test of writes interleaved with split, resync, reverse resync and
//! restarts; a crash during a resync; a failing secondary.

use std::sync::Arc;

use arca_backup::{JobManager, NoHosts, PairState, Pairs};
use arca_store::sim::{CrashMode, FaultOp, PowerDomain, SimDevice, crash_devices};
use arca_store::{ErrorKind, Pool};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::*;

const EXTENTS: u64 = 48;

struct World {
    devices: Vec<Arc<SimDevice>>,
    pool: Pool,
    jobs: Arc<JobManager>,
    pairs: Arc<Pairs>,
}

fn world(devices: Vec<Arc<SimDevice>>, pool: Pool) -> World {
    let jobs = Arc::new(JobManager::new());
    let pairs = Pairs::open(pool.clone(), jobs.clone()).unwrap();
    World {
        devices,
        pool,
        jobs,
        pairs,
    }
}

impl World {
    fn image(&self, v: &str) -> Vec<u8> {
        let mut b = vec![0u8; (EXTENTS * ES) as usize];
        self.pool.export(v).unwrap().read(0, &mut b).unwrap();
        b
    }
    /// Waits for the pair's job, if one runs.
    fn settle(&self) {
        if let Some(j) = self.pairs.job("s").unwrap()
            && let Some(job) = self.jobs.get(j)
        {
            job.wait(std::time::Duration::from_secs(60));
        }
    }
    fn state(&self) -> PairState {
        self.pairs.get("s").unwrap().state
    }
    /// The backup service on this world's pool, its pairs attached.
    fn backups(&self) -> Arc<arca_backup::Backups> {
        let backups =
            arca_backup::Backups::open(self.pool.clone(), self.jobs.clone(), Arc::new(NoHosts))
                .unwrap();
        backups.attach_pairs(self.pairs.clone()).unwrap();
        backups
    }
    /// A backup of the primary onto the pair's secondary, kept as `retention` says, its job
    /// waited for.
    fn backup_to_secondary(
        &self,
        backups: &Arc<arca_backup::Backups>,
        retention: arca_backup::Retention,
    ) -> arca_backup::Created {
        let c = self.start_backup_to_secondary(backups, retention);
        assert_eq!(self.wait_job(c.jobs[0]), arca_backup::JobState::Succeeded);
        c
    }
    /// [`World::backup_to_secondary`] without waiting for its job.
    fn start_backup_to_secondary(
        &self,
        backups: &Arc<arca_backup::Backups>,
        retention: arca_backup::Retention,
    ) -> arca_backup::Created {
        backups
            .create(arca_backup::CreateRequest {
                volumes: vec!["p".into()],
                to: Some("s".into()),
                retention,
                ..Default::default()
            })
            .unwrap()
    }
    fn wait_job(&self, job: arca_backup::JobId) -> arca_backup::JobState {
        self.jobs
            .get(job)
            .unwrap()
            .wait(std::time::Duration::from_secs(60))
    }
}

fn new_world(seed: u64) -> World {
    new_world_with_power(seed).0
}

fn new_world_with_power(seed: u64) -> (World, Arc<PowerDomain>) {
    let r = rig_with(
        &[24 * MIB, 24 * MIB],
        &[("p", EXTENTS, Some(0)), ("s", EXTENTS, Some(1))],
    );
    // Old data on the secondary, which the initial copy must replace (holes included).
    r.write("s", 0, &pattern(seed + 1000, (EXTENTS * ES) as usize));
    r.write("p", 3 * ES, &pattern(seed, 5 * ES as usize));
    let w = world(r.devices.clone(), r.pool.clone());
    let (_, warning) = w.pairs.create("p", "s", None, &NoHosts).unwrap();
    assert!(warning.is_none(), "different devices: no warning");
    w.settle();
    assert_eq!(w.state(), PairState::Pair);
    (w, r.power.clone())
}

#[test]
fn model_writes_with_split_resync_reverse_and_restarts() {
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut w = new_world(seed);
        let mut p_model = w.image("p");
        assert!(w.image("s") == p_model, "seed {seed}: initial copy");
        let mut s_model = p_model.clone();
        for step in 0..40 {
            let state = w.state();
            match rng.random_range(0..10) {
                0..=4 => {
                    let off = rng.random_range(0..EXTENTS * ES - 1);
                    let len = rng.random_range(1..=(EXTENTS * ES - off).min(3 * ES));
                    let data = pattern(seed * 1000 + step, len as usize);
                    let zero = rng.random_range(0..4) == 0;
                    // While split the secondary is writable too.
                    let target = if state == PairState::Split && rng.random_range(0..3) == 0 {
                        "s"
                    } else {
                        "p"
                    };
                    let e = w.pool.export(target).unwrap();
                    if zero {
                        e.write_zeroes(off, len, arca_store::ZeroOptions::UNMAP)
                            .unwrap();
                    } else {
                        e.write(off, &data, false).unwrap();
                    }
                    let bytes = if zero { vec![0; len as usize] } else { data };
                    let r = off as usize..(off + len) as usize;
                    if target == "p" {
                        p_model[r.clone()].copy_from_slice(&bytes);
                        if state == PairState::Pair {
                            s_model[r].copy_from_slice(&bytes);
                        }
                    } else {
                        s_model[r].copy_from_slice(&bytes);
                    }
                }
                5 | 6 if state == PairState::Pair => {
                    w.pairs.split("s").unwrap();
                }
                5 | 6 => {
                    let reverse = rng.random_range(0..3) == 0;
                    w.pairs.resync("s", reverse).unwrap();
                    w.settle();
                    if reverse {
                        p_model = s_model.clone();
                    } else {
                        s_model = p_model.clone();
                    }
                    assert_eq!(w.state(), PairState::Pair, "seed {seed} step {step}");
                }
                7 => {
                    // A clean restart, or one without closing (a full copy follows).
                    w.pool.flush().unwrap();
                    if rng.random() {
                        w.pairs.close().unwrap();
                    }
                    let pool = Pool::open(as_block(&w.devices)).unwrap();
                    w = world(w.devices.clone(), pool);
                    w.settle();
                    assert_eq!(w.state(), state, "seed {seed} step {step}: state survives");
                }
                _ => {
                    // Writes to the secondary are refused while it mirrors.
                    if state == PairState::Pair {
                        let e = w.pool.export("s").unwrap();
                        assert_eq!(
                            e.write(0, &[1; 512], false).unwrap_err().kind(),
                            ErrorKind::ReadOnly
                        );
                    }
                }
            }
            assert!(w.image("p") == p_model, "seed {seed} step {step}: primary");
            assert!(
                w.image("s") == s_model,
                "seed {seed} step {step}: secondary"
            );
        }
        let report = w.pool.fsck().unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
    }
}

#[test]
fn a_crash_during_resync_resumes_and_ends_identical() {
    let mut outcomes = [0usize; 2];
    for seed in 0..16u64 {
        let (w, power) = new_world_with_power(seed);
        w.pairs.split("s").unwrap();
        for i in 0..20u64 {
            let off = ((i * 7) % EXTENTS) * ES;
            let data = pattern(seed * 77 + i, ES as usize);
            w.pool
                .export("p")
                .unwrap()
                .write(off, &data, false)
                .unwrap();
        }
        w.pool
            .export("s")
            .unwrap()
            .write(ES, &[5; 100], false)
            .unwrap();
        w.pool.flush().unwrap();
        let want = w.image("p");
        // Power fails somewhere in the resync.
        power.fail_after(seed * 2);
        let _ = w.pairs.resync("s", false);
        w.settle();
        outcomes[usize::from(power.failed())] += 1;
        let (_, devices) = crash_devices(&w.devices, CrashMode::RandomSubset(seed));
        let pool = Pool::open(as_block(&devices)).unwrap();
        let w2 = world(devices, pool);
        w2.settle();
        // Interrupted, it resumes by itself; or it had ended in error (the power failed under
        // it) and a resync finishes it.
        if w2.state() == PairState::Error || w2.state() == PairState::Split {
            w2.pairs.resync("s", false).unwrap();
            w2.settle();
        }
        assert_eq!(w2.state(), PairState::Pair, "seed {seed}");
        assert!(
            w2.image("p") == want,
            "seed {seed}: the primary keeps what was flushed"
        );
        assert!(
            w2.image("s") == want,
            "seed {seed}: both sides end identical"
        );
        let report = w2.pool.fsck().unwrap();
        assert!(report.is_clean(), "seed {seed}: {:?}", report.problems);
    }
    assert!(
        outcomes[1] > 0,
        "some resyncs were cut by the power failure: {outcomes:?}"
    );
}

#[test]
fn a_failing_secondary_puts_the_pair_in_error_and_the_primary_keeps_serving() {
    let w = new_world(1);
    let mut want = w.image("p");
    // Every write to the secondary's device fails from now on.
    let dev1_len = 24 * MIB;
    w.devices[1].inject_range(FaultOp::Write, 0, dev1_len, u64::MAX);
    let data = pattern(9, 2 * ES as usize);
    w.pool
        .export("p")
        .unwrap()
        .write(10 * ES, &data, false)
        .unwrap();
    want[(10 * ES) as usize..(12 * ES) as usize].copy_from_slice(&data);
    let r = w.pairs.get("s").unwrap();
    assert_eq!(r.state, PairState::Error);
    assert!(
        r.reason.as_deref().unwrap().contains("secondary"),
        "{:?}",
        r.reason
    );
    // The primary keeps taking writes, and loses nothing.
    w.pool
        .export("p")
        .unwrap()
        .write(0, &[7; 4096], false)
        .unwrap();
    want[..4096].fill(7);
    w.pool.flush().unwrap();
    assert!(w.image("p") == want);
    // Once the device is back, a resync brings the secondary level again.
    w.devices[1].clear_faults();
    w.pairs.resync("s", false).unwrap();
    w.settle();
    assert_eq!(
        w.state(),
        PairState::Pair,
        "{:?}",
        w.pairs.get("s").unwrap().reason
    );
    assert!(w.image("s") == want);
}

#[test]
fn a_backup_to_the_pair_secondary_splits_it_and_a_resync_must_consume_it() {
    let w = new_world(3);
    let backups = w.backups();
    let t = backups.targets("p").unwrap();
    assert_eq!(t[0].kind, arca_backup::TargetKind::PairSecondary);
    assert_eq!(t[0].volume.as_deref(), Some("s"));
    let at_backup = w.image("p");
    let c = w.start_backup_to_secondary(&backups, Default::default());
    let rec = &c.records[0];
    assert_eq!(rec.method, arca_backup::Method::Copy);
    assert_eq!(rec.status, arca_backup::Status::Complete);
    assert_eq!(w.state(), PairState::Split, "the backup split the pair");
    assert_eq!(w.wait_job(c.jobs[0]), arca_backup::JobState::Succeeded);
    // Later primary writes stay off the backup; hosts cannot write it.
    w.pool
        .export("p")
        .unwrap()
        .write(0, &[3; 4096], false)
        .unwrap();
    assert!(w.image("s") == at_backup);
    let e = w.pool.export("s").unwrap();
    assert!(e.read_only());
    let (job, _) = backups.verify(&[rec.id], false).unwrap();
    let j = w.jobs.get(job).unwrap();
    j.wait(std::time::Duration::from_secs(60));
    match j.snapshot().result {
        Some(arca_backup::JobResult::Verify(v)) => assert!(v[0].ok, "{v:?}"),
        other => panic!("not a verify result: {other:?}"),
    }
    // A resync would overwrite it: refused, naming it, unless consumed.
    let e = backups.resync_pair("s", false, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert!(e.to_string().contains(&rec.id.to_string()), "{e}");
    assert_eq!(w.state(), PairState::Split);
    // Regression: the pairs' own resync skipped that check and overwrote the live backup.
    for reverse in [false, true] {
        let e = w.pairs.resync("s", reverse).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    }
    assert_eq!(w.state(), PairState::Split);
    assert!(w.image("s") == at_backup);
    backups.resync_pair("s", false, true).unwrap();
    w.settle();
    assert_eq!(w.state(), PairState::Pair);
    assert!(w.image("s") == w.image("p"));
    let consumed = backups.get(rec.id).unwrap();
    assert_eq!(consumed.status, arca_backup::Status::Consumed);
    assert!(
        consumed
            .history
            .iter()
            .any(|h| matches!(&h.event, arca_backup::Event::Consumed { by } if by.contains("s")))
    );
    // In pair state the secondary is the pair's again: read-only to hosts.
    assert!(w.pool.export("s").unwrap().read_only());
    let report = backups.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn review_regressions_resync_after_a_cut_initial_copy_and_unsafe_changes() {
    // An initial copy that fails leaves nothing tracked: the resync must copy everything.
    let r = rig_with(
        &[24 * MIB, 24 * MIB],
        &[("p", EXTENTS, Some(0)), ("s", EXTENTS, Some(1))],
    );
    r.write("p", 0, &pattern(5, (EXTENTS * ES) as usize));
    r.pool.flush().unwrap();
    let w = world(r.devices.clone(), r.pool.clone());
    w.devices[1].inject_range(FaultOp::Write, 0, 24 * MIB, u64::MAX);
    w.pairs.create("p", "s", None, &NoHosts).unwrap();
    w.settle();
    assert_eq!(w.state(), PairState::Error);
    assert!(w.pairs.get("s").unwrap().needs_full_copy);
    w.devices[1].clear_faults();
    w.pairs.resync("s", false).unwrap();
    w.settle();
    assert_eq!(w.state(), PairState::Pair);
    assert!(w.image("s") == w.image("p"), "the full copy was made");
    // Deleting or resizing a paired volume is refused; the pool reopens with the pair.
    let e = w.pairs.check_volume_change("p", "delete").unwrap_err();
    assert!(e.to_string().contains("pair s"), "{e}");
    assert!(w.pairs.check_volume_change("other", "delete").is_ok());
    // A volume a backup holds cannot become a primary.
    w.pool.create_volume("held", EXTENTS * ES, None).unwrap();
    w.pool.create_volume("free", EXTENTS * ES, None).unwrap();
    guard_volume(
        &w.pool,
        "held",
        arca_store::GuardOwner::Backup(1),
        "holds backup 1",
    );
    let e = w.pairs.create("held", "free", None, &NoHosts).unwrap_err();
    assert!(e.to_string().contains("holds backup 1"), "{e}");
    // Pairs made within one millisecond keep distinct records.
    w.pool.create_volume("a2", 8 * ES, None).unwrap();
    w.pool.create_volume("b2", 8 * ES, None).unwrap();
    w.pool.create_volume("c2", 8 * ES, None).unwrap();
    w.pool.create_volume("d2", 8 * ES, None).unwrap();
    let (x, _) = w.pairs.create("a2", "b2", None, &NoHosts).unwrap();
    let (y, _) = w.pairs.create("c2", "d2", None, &NoHosts).unwrap();
    assert_ne!(x.id, y.id);
}

#[test]
fn a_deleted_side_leaves_the_pair_in_error_and_the_pool_opens() {
    let w = new_world(4);
    w.pairs.split("s").unwrap();
    w.pairs.close().unwrap();
    // Behind the pair's back (the API refuses this): the secondary goes.
    let id = w.pairs.get("s").unwrap().id;
    let owner = arca_store::GuardOwner::Pair(id.get());
    w.pool.remove_volume_guard("s", owner).unwrap();
    w.pool
        .remove_snapshot_guard("s", &arca_backup::pairs::secondary_snapshot(id), owner)
        .unwrap();
    w.pool.delete_volume("s", true).unwrap();
    w.pool.flush().unwrap();
    let pool = Pool::open(as_block(&w.devices)).unwrap();
    let w2 = world(w.devices.clone(), pool);
    let r = w2.pairs.get("s").unwrap();
    assert_eq!(r.state, PairState::Error);
    assert!(r.reason.unwrap().contains("no longer exists"));
    w2.pairs.delete("s").unwrap();
    assert!(w2.pairs.list().is_empty());
}

/// Findings of a review, each a way a backup or a pair lost its protection or its copy.
#[test]
fn review_regressions_protections_hold_across_pairs_and_failed_writes() {
    let w = new_world(6);
    let backups = w.backups();
    // A pair's volumes are not copy destinations.
    w.pool.create_volume("x", 8 * ES, None).unwrap();
    let e = backups
        .create(arca_backup::CreateRequest {
            volumes: vec!["x".into()],
            to: Some("p".into()),
            method: Some(arca_backup::Method::Copy),
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("pair s"), "{e}");
    // A primary write that fails on the device leaves the pair in error, and the resync
    // brings the secondary level again.
    w.devices[0].inject(FaultOp::Write, 0, 1, libc::EIO);
    let fresh = w.pool.export("p").unwrap();
    assert!(fresh.write(40 * ES, &[4; 4096], false).is_err());
    assert_eq!(w.state(), PairState::Error);
    // In error the secondary stays read-only to hosts.
    assert!(w.pool.export("s").unwrap().read_only());
    w.devices[0].clear_faults();
    w.pairs.resync("s", false).unwrap();
    w.settle();
    assert_eq!(w.state(), PairState::Pair);
    assert!(w.image("s") == w.image("p"));
    // A consumed backup's deletion leaves the pair's secondary guarded.
    let c = w.start_backup_to_secondary(&backups, Default::default());
    backups.resync_pair("s", false, true).unwrap();
    w.settle();
    backups.delete(c.records[0].id, false).unwrap();
    assert!(w.pool.export("s").unwrap().read_only(), "still the pair's");
    assert!(backups.check().unwrap().problems.is_empty());
}

/// Consuming a backup gives its image up: a pair resync over a held or locked backup on the
/// secondary is refused (forward or reverse, with --consume-backup or not), naming the hold or
/// the lock and until when, in the words a deletion uses, and leaves everything as it was.
#[test]
fn a_resync_never_consumes_a_held_or_locked_backup() {
    let w = new_world(7);
    let backups = w.backups();
    // 9999-12-31T00:00:00Z.
    let lock_ms = 253_402_214_400_000;
    let retention = arca_backup::Retention {
        hold: true,
        lock_until_ms: Some(lock_ms),
        ..Default::default()
    };
    let id = w.backup_to_secondary(&backups, retention).records[0].id;
    let image = w.image("s");
    let before = backups.get(id).unwrap();
    let unchanged = |what: &str| {
        assert_eq!(backups.get(id).unwrap(), before, "{what}");
        assert_eq!(w.state(), PairState::Split, "{what}");
        assert!(w.image("s") == image, "{what}: the image is intact");
        let guard = w.pool.volume("s").unwrap().guard;
        assert_eq!(guard, Some(format!("holds backup {id}")), "{what}");
    };
    let delete_refusal = backups.delete(id, true).unwrap_err().to_string();
    assert!(delete_refusal.contains("on hold"), "{delete_refusal}");
    for (reverse, consume) in [(false, true), (true, true), (false, false)] {
        let e = backups.resync_pair("s", reverse, consume).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        let m = e.to_string();
        assert!(
            m.starts_with("cannot resync pair s: ") && m.ends_with(&delete_refusal),
            "reverse {reverse}, consume {consume}: {m}"
        );
        unchanged(&m);
    }
    // Released, the lock still refuses, saying until when.
    backups.hold(id, false).unwrap();
    let e = backups.resync_pair("s", false, true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert!(
        e.to_string()
            .contains(&format!("backup {id} is locked until 9999-12-31T00:00:00Z")),
        "{e}"
    );
    assert_eq!(
        backups.get(id).unwrap().status,
        arca_backup::Status::Complete
    );
    assert_eq!(w.state(), PairState::Split);
    assert!(w.image("s") == image);
    assert!(backups.check().unwrap().problems.is_empty());
}

/// Keep-until yields to --consume-backup, the explicit consent (as to `delete --force`).
#[test]
fn consume_backup_overrides_keep_until() {
    let w = new_world(8);
    let backups = w.backups();
    let retention = arca_backup::Retention {
        keep_until_ms: Some(253_402_214_400_000),
        ..Default::default()
    };
    let id = w.backup_to_secondary(&backups, retention).records[0].id;
    let e = backups.resync_pair("s", false, false).unwrap_err();
    assert!(e.to_string().contains("consuming the backup"), "{e}");
    backups.resync_pair("s", false, true).unwrap();
    w.settle();
    assert_eq!(w.state(), PairState::Pair);
    assert_eq!(
        backups.get(id).unwrap().status,
        arca_backup::Status::Consumed
    );
    assert!(backups.check().unwrap().problems.is_empty());
}

/// Runs an action on the first write into a volume (on the writing job's thread).
struct OnFirstWrite(parking_lot::Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl arca_store::WriteHook for OnFirstWrite {
    fn begin(&self) {}
    fn end(&self, _offset: u64, _len: u64, _written: Option<arca_store::Written<'_>>) {
        let f = self.0.lock().take();
        if let Some(f) = f {
            f();
        }
    }
}

/// Regression: a resync consuming the secondary's backup was not refused while a restore read
/// that backup, so the resync would overwrite the image the restore was copying.
#[test]
fn a_resync_never_consumes_a_backup_a_restore_is_reading() {
    let w = new_world(8);
    let backups = w.backups();
    let id = w.backup_to_secondary(&backups, Default::default()).records[0].id;
    // Restored into another volume, watched from its first write on.
    let size = w.pool.volume("p").unwrap().size;
    w.pool.create_volume("x", size, None).unwrap();
    let tried = Arc::new(parking_lot::Mutex::new(None));
    let (b, t) = (backups.clone(), tried.clone());
    let pool = w.pool.clone();
    pool.set_write_hook(
        "x",
        Some(Arc::new(OnFirstWrite(parking_lot::Mutex::new(Some(
            Box::new(move || {
                *t.lock() = Some(b.resync_pair("s", false, true).map(|_| ()));
            }),
        ))))),
    )
    .unwrap();
    let out = backups.restore(id, in_place(Some("x"), false)).unwrap();
    let state = w.wait_job(out.job.unwrap());
    let _ = pool.set_write_hook("r", None);
    assert_eq!(state, arca_backup::JobState::Succeeded);
    let e = tried
        .lock()
        .take()
        .expect("the restore wrote into x")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(e.to_string().contains("in use by restore job"), "{e}");
    assert_eq!(
        backups.get(id).unwrap().status,
        arca_backup::Status::Complete
    );
    assert!(
        w.image("x") == w.image("s"),
        "the restore copied the whole image"
    );
}

/// Counts the writes into a volume.
#[derive(Default)]
struct CountWrites(std::sync::atomic::AtomicU64);

impl arca_store::WriteHook for CountWrites {
    fn begin(&self) {}
    fn end(&self, _offset: u64, _len: u64, _written: Option<arca_store::Written<'_>>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The full copy after a stop that did not close the pair writes only what differs: a
/// secondary already the same as its primary takes no write.
#[test]
fn the_full_copy_after_an_unclean_stop_writes_only_what_differs() {
    let w = new_world(9);
    let want = w.image("p");
    w.pool.flush().unwrap();
    // Stopped without `close`: the next open copies in full.
    let fresh = PowerDomain::new();
    let devices: Vec<Arc<SimDevice>> = w
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Arc::new(SimDevice::from_image(
                &format!("sim{i}"),
                d.crash_image(CrashMode::LoseAll),
                fresh.clone(),
            ))
        })
        .collect();
    let pool = Pool::open(as_block(&devices)).unwrap();
    let count = Arc::new(CountWrites::default());
    pool.set_write_hook("s", Some(count.clone())).unwrap();
    let w2 = world(devices, pool);
    assert!(w2.pairs.job("s").unwrap().is_some(), "a full copy runs");
    w2.settle();
    assert_eq!(w2.state(), PairState::Pair);
    assert!(w2.image("s") == want);
    assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    w2.pool.set_write_hook("s", None).unwrap();
}

/// A resync consuming a backup with a vault copy gives up only the array's image: the backup
/// stays complete, living in the vault, and a later resync does not meet it again.
#[test]
fn a_resync_consuming_a_backup_with_vault_copies_keeps_it_complete_in_the_vault() {
    let w = new_world(11);
    let backups = w.backups();
    let id = w.backup_to_secondary(&backups, Default::default()).records[0].id;
    backups
        .add_vault(arca_backup::NewVault {
            name: "off".into(),
            url: "file:///srv/off".into(),
            ..Default::default()
        })
        .unwrap();
    let root = backups.get(id).unwrap().digest.map(|d| d.root);
    let copy = arca_backup::VaultCopy {
        vault: "off".into(),
        vault_id: [5; 16],
        manifest: "m".into(),
        copied_ms: 1,
        bytes_read: 1,
        bytes_new: 1,
        bytes_stored: 1,
        digest_root: root.unwrap_or_default(),
    };
    backups.record_vault_copy(id, copy).unwrap();
    backups.resync_pair("s", false, true).unwrap();
    w.settle();
    assert_eq!(w.state(), PairState::Pair);
    let r = backups.get(id).unwrap();
    assert_eq!(r.status, arca_backup::Status::Complete);
    assert_eq!(r.locations(), ["vault:off"]);
    assert!(matches!(
        &r.history.last().unwrap().event,
        arca_backup::Event::Consumed { .. }
    ));
    assert!(
        w.pool.volume("s").unwrap().tag.is_none(),
        "the descriptor went"
    );
    // Split and resync again: the backup is no longer on the secondary to consume.
    w.pairs.split("s").unwrap();
    backups.resync_pair("s", false, false).unwrap();
    w.settle();
    let report = backups.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
