//! Restores that do not run to their end: cut by a crash or an orderly stop, cancelled, or
//! racing a deletion of what they read. Never a silently torn volume: after a restart the
//! restore is resumed or rolled back, the volume read-only until then, the outcome in the
//! backup's history.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arca_backup::{CreateRequest, Event, JobState, RestoreTo};
use arca_store::sim::CrashMode;
use arca_store::{ErrorKind, Pool, WriteHook, Written};
use parking_lot::Mutex;

use crate::util::*;

const EXTENTS: u64 = 128;

type Action = Box<dyn FnOnce() + Send>;

/// Watches the writes into one volume: counts them, notes every one made while the volume is
/// not guarded by a restore (hosts could then write too), and runs actions at chosen writes.
struct Watch {
    pool: Pool,
    volume: String,
    /// Shared by the watches of one restore: writes into any of their volumes.
    writes: Arc<AtomicU64>,
    unguarded: AtomicU64,
    guards: Mutex<Vec<String>>,
    actions: Arc<Mutex<Vec<(u64, Action)>>>,
}

impl Watch {
    fn install(pool: &Pool, volume: &str) -> Arc<Watch> {
        Watch::install_with(pool, volume, None)
    }

    /// A watch counting with `other` (writes and actions over both volumes together).
    fn install_with(pool: &Pool, volume: &str, other: Option<&Watch>) -> Arc<Watch> {
        let w = Arc::new(Watch {
            pool: pool.clone(),
            volume: volume.to_string(),
            writes: other.map_or_else(Default::default, |o| o.writes.clone()),
            unguarded: AtomicU64::new(0),
            guards: Mutex::new(Vec::new()),
            actions: other.map_or_else(Default::default, |o| o.actions.clone()),
        });
        pool.set_write_hook(volume, Some(w.clone())).unwrap();
        w
    }

    /// Runs `f` on the job's thread right after write `n` (counted from 1).
    fn at(&self, n: u64, f: impl FnOnce() + Send + 'static) {
        self.actions.lock().push((n, Box::new(f)));
    }

    fn remove(&self) {
        // Breaks the cycle pool -> hook -> pool.
        let _ = self.pool.set_write_hook(&self.volume, None);
    }
}

impl WriteHook for Watch {
    fn begin(&self) {}

    fn end(&self, _offset: u64, _len: u64, _written: Option<Written<'_>>) {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let guard = self.pool.volume(&self.volume).ok().and_then(|v| v.guard);
        match guard {
            Some(g) if g.starts_with("being restored") => {
                let mut seen = self.guards.lock();
                if !seen.contains(&g) {
                    seen.push(g);
                }
            }
            _ => {
                self.unguarded.fetch_add(1, Ordering::SeqCst);
            }
        }
        let due: Vec<Action> = {
            let mut a = self.actions.lock();
            let (now, later): (Vec<_>, Vec<_>) = a.drain(..).partition(|(at, _)| *at == n);
            *a = later;
            now.into_iter().map(|(_, f)| f).collect()
        };
        for f in due {
            f();
        }
    }
}

/// Volume `v`: a snapshot backup of one content, then every extent overwritten with another.
/// Returns (backup id, the backup's image, the content just before a restore).
fn backed_up_then_changed(
    r: &Rig,
    volume: &str,
    seed: u64,
) -> (arca_backup::BackupId, Vec<u8>, Vec<u8>) {
    r.pool.create_volume(volume, EXTENTS * ES, None).unwrap();
    r.write(volume, 0, &pattern(seed, (EXTENTS * ES) as usize));
    let backup_image = r.image(volume);
    let id = r.snapshot_backup(volume, None);
    r.write(volume, 0, &pattern(seed + 100, (EXTENTS * ES) as usize));
    r.pool.flush().unwrap();
    (id, backup_image, r.image(volume))
}

fn in_place() -> RestoreTo {
    IN_PLACE
}

/// The restore events of a backup's history, oldest first, as short words.
fn restore_events(r: &Rig, id: arca_backup::BackupId) -> Vec<&'static str> {
    r.backups
        .get(id)
        .unwrap()
        .history
        .iter()
        .filter_map(|h| match &h.event {
            Event::Restored { .. } => Some("restored"),
            Event::RestoreResumed { .. } => Some("resumed"),
            Event::RestoreRolledBack { .. } => Some("rolled back"),
            Event::RestoreFailed { .. } => Some("failed"),
            _ => None,
        })
        .collect()
}

fn writable(r: &Rig, volume: &str) -> bool {
    r.pool.volume(volume).unwrap().guard.is_none() && !r.pool.export(volume).unwrap().read_only()
}

/// Power fails after the k-th write of an in-place restore: after the restart the restore is
/// resumed, the volume guarded (read-only to hosts, saying why) for every write it makes, and
/// the volume ends up exactly the backup, with "resumed" and "restored" in its history.
#[test]
fn an_in_place_restore_cut_by_a_crash_is_resumed_at_the_next_open() {
    for (i, k) in [1u64, 40, 127].into_iter().enumerate() {
        let r = rig(&[24 * MIB]);
        let (id, backup_image, _) = backed_up_then_changed(&r, "v", 1);
        let w = Watch::install(&r.pool, "v");
        let power = r.power.clone();
        w.at(k, move || power.fail_after(0));
        let out = r.backups.restore(id, in_place()).unwrap();
        assert_eq!(r.wait(out.job.unwrap()), JobState::Failed, "k {k}");
        w.remove();
        let mode = if i % 2 == 0 {
            CrashMode::LoseAll
        } else {
            CrashMode::RandomSubset(k)
        };
        let watch = Arc::new(Mutex::new(None));
        let slot = watch.clone();
        let r2 = r.reopen_with(r.crash_devices(mode), move |pool| {
            *slot.lock() = Some(Watch::install(pool, "v"));
        });
        r2.wait_all();
        let w2 = watch.lock().take().unwrap();
        w2.remove();
        assert!(
            w2.writes.load(Ordering::SeqCst) > 0,
            "k {k}: nothing resumed"
        );
        assert_eq!(
            w2.unguarded.load(Ordering::SeqCst),
            0,
            "k {k}: the volume was writable while partly restored"
        );
        let guards = w2.guards.lock().clone();
        assert!(
            guards.iter().any(|g| g.contains("resumed after a restart")),
            "k {k}: {guards:?}"
        );
        assert!(r2.image("v") == backup_image, "k {k}: not the backup");
        assert_eq!(restore_events(&r2, id), ["resumed", "restored"], "k {k}");
        assert!(writable(&r2, "v"), "k {k}");
        r2.assert_clean();
    }
}

/// An orderly stop in the middle of a restore leaves it to the next start, which finishes it.
#[test]
fn an_orderly_stop_during_a_restore_leaves_it_to_be_resumed() {
    let r = rig(&[24 * MIB]);
    let (id, backup_image, _) = backed_up_then_changed(&r, "v", 2);
    let w = Watch::install(&r.pool, "v");
    let backups = r.backups.clone();
    w.at(10, move || backups.stop(Duration::ZERO));
    let out = r.backups.restore(id, in_place()).unwrap();
    let job = out.job.unwrap();
    assert_eq!(r.wait(job), JobState::Failed);
    let error = r.jobs.get(job).unwrap().snapshot().error.unwrap();
    assert!(error.contains("resumes at its next start"), "{error}");
    w.remove();
    // Stopping: no new restore starts.
    let e = r.backups.restore(id, in_place()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    r.pool.flush().unwrap();
    let r2 = r.reopen_on(r.crash_devices(CrashMode::LoseAll));
    r2.wait_all();
    assert!(r2.image("v") == backup_image);
    assert_eq!(restore_events(&r2, id), ["resumed", "restored"]);
    assert!(writable(&r2, "v"));
    r2.assert_clean();
}

/// Cancelling a restore of a set rolls every volume back to its undo point, the one already
/// restored too (a set is restored as a unit); power failing during that rollback leaves it to
/// the next start, which completes the rollback rather than resuming the restore.
#[test]
fn a_cancelled_restore_is_rolled_back_even_across_a_crash() {
    // Writes over both volumes: the first restored takes 1..=128; the second is cancelled at
    // its 10th (write 138: the copier looks before every extent); the rollback rewrites the
    // first (139..=266), then the second (267..=276). Power fails in the first's or the
    // second's rollback.
    for crash_after in [None, Some(197u64), Some(270)] {
        let r = rig(&[24 * MIB]);
        for (n, v) in ["a", "b"].iter().enumerate() {
            r.pool.create_volume(v, EXTENTS * ES, None).unwrap();
            r.write(v, 0, &pattern(n as u64, (EXTENTS * ES) as usize));
        }
        let c = r.create_ok(CreateRequest {
            volumes: vec!["a".into(), "b".into()],
            ..CreateRequest::default()
        });
        let set = c.records[0].set_id.unwrap();
        for (n, v) in ["a", "b"].iter().enumerate() {
            r.write(v, 0, &pattern(10 + n as u64, (EXTENTS * ES) as usize));
        }
        r.pool.flush().unwrap();
        let before = [r.image("a"), r.image("b")];
        let wa = Watch::install(&r.pool, "a");
        let wb = Watch::install_with(&r.pool, "b", Some(&wa));
        let jobs = r.jobs.clone();
        wa.at(EXTENTS + 10, move || {
            for j in jobs.list() {
                if j.kind == arca_backup::JobKind::Restore {
                    jobs.get(j.id).unwrap().cancel();
                }
            }
        });
        if let Some(n) = crash_after {
            let power = r.power.clone();
            wa.at(n, move || power.fail_after(0));
        }
        let out = r.backups.restore_set(set, false).unwrap();
        let state = r.wait(out.job.unwrap());
        assert_eq!(r.power.failed(), crash_after.is_some());
        wa.remove();
        wb.remove();
        let r = match crash_after {
            None => {
                assert_eq!(state, JobState::Cancelled);
                r
            }
            Some(n) => {
                assert_eq!(state, JobState::Failed, "crash after {n}");
                let r2 = r.reopen_on(r.crash_devices(CrashMode::RandomSubset(n)));
                r2.wait_all();
                r2
            }
        };
        assert!(
            r.image("a") == before[0],
            "{crash_after:?}: a not rolled back"
        );
        assert!(
            r.image("b") == before[1],
            "{crash_after:?}: b not rolled back"
        );
        for m in &c.records {
            assert_eq!(restore_events(&r, m.id), ["rolled back"], "{crash_after:?}");
            let h = r.backups.get(m.id).unwrap().history;
            let Some(Event::RestoreRolledBack { reason, undo, .. }) = h.last().map(|e| &e.event)
            else {
                panic!("{h:?}")
            };
            assert_eq!(reason, "cancelled");
            assert!(out.undo_backups.contains(undo));
        }
        assert!(wa.unguarded.load(Ordering::SeqCst) == 0 && writable(&r, "a"));
        assert!(wb.unguarded.load(Ordering::SeqCst) == 0 && writable(&r, "b"));
        r.assert_clean();
    }
}

/// While a restore reads a backup (and keeps its undo point), deleting either is refused,
/// naming the job; once it is done both can go.
#[test]
fn a_backup_being_restored_cannot_be_deleted() {
    let r = rig(&[24 * MIB]);
    let (id, backup_image, _) = backed_up_then_changed(&r, "v", 3);
    let w = Watch::install(&r.pool, "v");
    let tried: Arc<Mutex<Vec<arca_store::Error>>> = Default::default();
    let (b, t) = (r.backups.clone(), tried.clone());
    w.at(5, move || {
        let undo = b
            .list(&arca_backup::catalog::Query {
                label: Some("pre-restore".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap()[0]
            .id;
        t.lock().push(b.delete(id, true).unwrap_err());
        t.lock().push(b.delete(undo, true).unwrap_err());
    });
    let out = r.backups.restore(id, in_place()).unwrap();
    let job = out.job.unwrap();
    r.wait_ok(job);
    w.remove();
    let tried = tried.lock();
    assert_eq!(tried.len(), 2);
    for e in tried.iter() {
        assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
        assert!(e.to_string().contains(&format!("restore job {job}")), "{e}");
    }
    assert!(r.image("v") == backup_image);
    r.backups.delete(out.undo_backups[0], false).unwrap();
    r.backups.delete(id, false).unwrap();
    r.assert_clean();
}

/// Power fails at points of a restore of a copy backup into a new volume: after the restart
/// the volume is either whole (history: restored) or gone (history: failed, with the reason),
/// never an empty or partial volume that hosts can write.
#[test]
fn a_restore_as_a_new_volume_cut_by_a_crash_leaves_no_partial_volume() {
    let mut outcomes = Vec::new();
    // Dense enough to land inside the copy whatever the flushes cost in device operations.
    for n in (2u64..80).step_by(3).chain([400]) {
        let r = rig_with(&[24 * MIB, 24 * MIB], &[("v", EXTENTS, Some(0))]);
        r.write("v", 0, &pattern(5, (EXTENTS * ES) as usize));
        let want = r.image("v");
        let c = r.create_ok(copy_request("v"));
        let id = c.records[0].id;
        r.pool.flush().unwrap();
        r.power.fail_after(n);
        if let Ok(out) = r.backups.restore(id, RestoreTo::New { name: "r".into() }) {
            r.wait(out.job.unwrap());
        }
        let r2 = r.reopen_on(r.crash_devices(CrashMode::RandomSubset(n)));
        r2.wait_all();
        let events = restore_events(&r2, id);
        match r2.pool.volume("r") {
            Ok(v) => {
                assert_eq!(events, ["restored"], "n {n}");
                assert!(v.guard.is_none(), "n {n}");
                assert!(r2.image("r") == want, "n {n}: restored but not whole");
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NotFound);
                assert!(
                    events.is_empty() || events == ["failed"],
                    "n {n}: {events:?}"
                );
                if events == ["failed"] {
                    let h = r2.backups.get(id).unwrap().history;
                    let Some(Event::RestoreFailed { to, reason }) = h.last().map(|e| &e.event)
                    else {
                        panic!("{h:?}")
                    };
                    assert_eq!(to, "r");
                    assert!(reason.contains("interrupted"), "{reason}");
                }
            }
        }
        outcomes.push(events);
        r2.assert_clean();
    }
    // The crash points cover both outcomes, the interrupted one included.
    assert!(outcomes.iter().any(|e| e == &["failed"]), "{outcomes:?}");
    assert!(outcomes.iter().any(|e| e == &["restored"]), "{outcomes:?}");
}
