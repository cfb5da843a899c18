//! Copy pairs: a primary volume and a full-size secondary kept as its copy.
//!
//! States: `copy` (initial copy), `pair` (every write to the primary is applied to the
//! secondary before it is acknowledged), `split` (the secondary frozen at the split instant,
//! writable), `resync` / `reverse-resync` (changed extents copied primary to secondary, or
//! back), `error` (a secondary write failed; the primary keeps serving).
//!
//! Change tracking costs nothing to make crash-safe: a split takes a snapshot of each side at
//! one instant (no write straddles it: the mirror hook brackets every primary write, and the
//! split waits for those in flight), and "what changed since the split" is the store's
//! `changed_extents` against those snapshots, which survive crashes like any snapshot. An
//! interrupted resync restarts from the same snapshots: still incremental, and it ends
//! identical. A secondary that fails in `pair` state gets the same treatment from that
//! instant on the primary, plus the extents of the writes it missed.
//!
//! Records live in the `pairs` table of the metadata store (id → record, postcard with a
//! version byte). A pair that was in `pair` state when the daemon stopped without closing it
//! restarts with a full copy: a write in flight at the crash may have reached one side only.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use arca_store::{
    Error, ErrorKind, Guard, GuardEffect, GuardOwner, Pool, Result, Txn, WriteHook, Written,
};
use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::backups::{busy, invalid, now_ms};
use crate::copier;
use crate::jobs::{JobContext, JobError, JobKind, JobManager, JobResult};

pub const PAIRS: &str = "pairs";
const RECORD_VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairState {
    Copy,
    Pair,
    Split,
    Resync,
    ReverseResync,
    Error,
}

impl PairState {
    pub fn as_str(self) -> &'static str {
        match self {
            PairState::Copy => "copy",
            PairState::Pair => "pair",
            PairState::Split => "split",
            PairState::Resync => "resync",
            PairState::ReverseResync => "reverse-resync",
            PairState::Error => "error",
        }
    }

    /// Whether primary writes are applied to the secondary.
    fn mirrors(self) -> bool {
        matches!(self, PairState::Copy | PairState::Pair | PairState::Resync)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRecord {
    pub id: u64,
    /// The pair's name: its secondary's name when it was made.
    pub name: String,
    pub primary_id: u64,
    pub secondary_id: u64,
    pub state: PairState,
    pub reason: Option<String>,
    /// Copy jobs stay under this rate (bytes per second).
    pub pace_bytes_per_second: Option<u64>,
    pub created_ms: u64,
    pub split_ms: Option<u64>,
    /// Extents that may differ beyond what the split snapshots track: writes the secondary
    /// missed when it failed.
    pub missed_extents: Vec<u64>,
    /// Set when the daemon closed the pair cleanly in `pair` state.
    pub closed_cleanly: bool,
    /// The initial copy did not finish: the next resync copies everything.
    pub needs_full_copy: bool,
}

impl PairRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        out.extend(postcard::to_stdvec(self).expect("records serialize"));
        out
    }

    fn decode(b: &[u8]) -> std::result::Result<PairRecord, String> {
        match b.split_first() {
            Some((&RECORD_VERSION, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
            Some((v, _)) => Err(format!("pair record version {v} is not supported")),
            None => Err("empty pair record".into()),
        }
    }
}

/// The guards a pair's state wants, owned by the pair (`GuardOwner::Pair`): on the secondary
/// except while split (in error it may hold half a write), on the primary during a reverse
/// resync, and on the tracking snapshots while they exist. Other owners' guards on the same
/// volumes (a backup held on a split secondary) are theirs to keep or lift.
fn stage_guards(pool: &Pool, t: &mut Txn<'_>, r: &PairRecord) -> Result<()> {
    let owner = GuardOwner::Pair(r.id);
    let primary = volume_name(pool, r.primary_id).ok();
    let secondary = volume_name(pool, r.secondary_id).ok();
    if let Some(s) = &secondary {
        match r.state {
            PairState::Split => t.remove_volume_guard(s, owner)?,
            st => t.add_volume_guard(
                s,
                Guard::new(
                    owner,
                    GuardEffect::ALL,
                    format!("secondary of pair {} ({})", r.name, st.as_str()),
                ),
            )?,
        }
    }
    if let Some(p) = &primary {
        if r.state == PairState::ReverseResync {
            let why = format!("being restored from its pair {} (reverse-resync)", r.name);
            t.add_volume_guard(p, Guard::new(owner, GuardEffect::ALL, why))?;
        } else {
            t.remove_volume_guard(p, owner)?;
        }
    }
    for (vol, snap) in [
        (&primary, primary_snapshot(r.id)),
        (&secondary, secondary_snapshot(r.id)),
    ] {
        if let Some(v) = vol
            && t.snapshot_exists(v, &snap)
        {
            let why = format!("change tracking of pair {}", r.name);
            t.add_snapshot_guard(v, &snap, Guard::new(owner, GuardEffect::NO_DELETE, why))?;
        }
    }
    Ok(())
}

/// Plans removing every guard of the pair (it ends).
fn stage_lift_guards(pool: &Pool, t: &mut Txn<'_>, r: &PairRecord) -> Result<()> {
    let owner = GuardOwner::Pair(r.id);
    for id in [r.primary_id, r.secondary_id] {
        if let Ok(v) = volume_name(pool, id) {
            t.remove_volume_guard(&v, owner)?;
        }
    }
    Ok(())
}

pub fn primary_snapshot(id: u64) -> String {
    format!("pair-{id}-primary")
}

pub fn secondary_snapshot(id: u64) -> String {
    format!("pair-{id}-secondary")
}

/// Lets primary writes through while open; `close` waits for those in flight.
#[derive(Default)]
struct Gate {
    state: Mutex<(usize, bool)>,
    cv: Condvar,
}

impl Gate {
    fn enter(&self) {
        let mut s = self.state.lock();
        while s.1 {
            self.cv.wait(&mut s);
        }
        s.0 += 1;
    }
    fn leave(&self) {
        let mut s = self.state.lock();
        s.0 -= 1;
        self.cv.notify_all();
    }
    fn close(&self) {
        let mut s = self.state.lock();
        s.1 = true;
        while s.0 > 0 {
            self.cv.wait(&mut s);
        }
    }
    fn open(&self) {
        self.state.lock().1 = false;
        self.cv.notify_all();
    }
}

struct Runtime {
    record: Mutex<PairRecord>,
    gate: Gate,
    /// Held shared by the mirror while it writes the secondary, exclusive by a copy job while
    /// it copies a batch: a mirrored write never lands between a copy's read and its write.
    copy_lock: RwLock<()>,
    job: Mutex<Option<u64>>,
    /// In `error` state: the primary's snapshot tracks its changes (until then the mirror
    /// notes them in `missed_extents`).
    error_tracked: std::sync::atomic::AtomicBool,
    /// The secondary opened for the mirror's writes (an export follows renames).
    secondary: Mutex<Option<arca_store::Export>>,
}

impl Runtime {
    fn new(record: PairRecord) -> Arc<Runtime> {
        Arc::new(Runtime {
            record: Mutex::new(record),
            gate: Gate::default(),
            copy_lock: RwLock::new(()),
            job: Mutex::new(None),
            error_tracked: std::sync::atomic::AtomicBool::new(true),
            secondary: Mutex::new(None),
        })
    }
}

struct Mirror {
    pool: Pool,
    rt: Arc<Runtime>,
    pairs: std::sync::Weak<Pairs>,
}

impl WriteHook for Mirror {
    fn begin(&self) {
        self.rt.gate.enter();
    }

    fn end(&self, offset: u64, len: u64, written: Option<Written<'_>>) {
        let mut failed = false;
        if written.is_some() || len > 0 {
            let state = self.rt.record.lock().state;
            if state.mirrors() {
                let r = match written {
                    Some(w) => {
                        let _c = self.rt.copy_lock.read();
                        self.mirror(offset, w)
                    }
                    // The primary write failed, perhaps after part of it landed: the sides
                    // may differ there.
                    None => Err(Error::new(
                        ErrorKind::Io,
                        "a primary write failed part way; the secondary may differ there",
                    )),
                };
                if let Err(e) = r {
                    // Error at once in memory, so mirroring stops; the durable record and the
                    // snapshot tracking further changes follow, outside the gate (their
                    // commit waits for nothing a gate holder holds).
                    let es = self.pool.extent_size();
                    let mut rec = self.rt.record.lock();
                    if rec.state.mirrors() {
                        if rec.state == PairState::Copy {
                            rec.needs_full_copy = true;
                        }
                        rec.state = PairState::Error;
                        rec.reason = Some(format!("writing the secondary failed: {e}"));
                        // With the state, so every later write notes its extents until the
                        // error's snapshot exists.
                        self.rt
                            .error_tracked
                            .store(false, std::sync::atomic::Ordering::SeqCst);
                        failed = true;
                    }
                    rec.missed_extents
                        .extend(offset / es..(offset + len).div_ceil(es));
                }
            } else if state == PairState::Error
                && !self
                    .rt
                    .error_tracked
                    .load(std::sync::atomic::Ordering::SeqCst)
            {
                // Until the error's snapshot exists, changes are remembered by extent.
                let es = self.pool.extent_size();
                self.rt
                    .record
                    .lock()
                    .missed_extents
                    .extend(offset / es..(offset + len).div_ceil(es));
            }
        }
        self.rt.gate.leave();
        if failed && let Some(p) = self.pairs.upgrade() {
            p.secondary_failed(&self.rt);
        }
    }
}

impl Mirror {
    fn mirror(&self, offset: u64, w: Written<'_>) -> Result<()> {
        let cached = self.rt.secondary.lock().clone();
        let to = match cached {
            Some(e) => e,
            None => {
                let id = self.rt.record.lock().secondary_id;
                let e = self.pool.export_unguarded(&volume_name(&self.pool, id)?)?;
                *self.rt.secondary.lock() = Some(e.clone());
                e
            }
        };
        match w {
            Written::Data(d) => to.write(offset, d, false),
            Written::Zeroes { len, unmap } => to.write_zeroes(
                offset,
                len,
                arca_store::ZeroOptions {
                    may_unmap: unmap,
                    fua: false,
                },
            ),
        }
    }
}

fn resync_allowed(r: &PairRecord, reverse: bool) -> Result<()> {
    let allowed = r.state == PairState::Split || (r.state == PairState::Error && !reverse);
    if allowed {
        return Ok(());
    }
    Err(busy(format!(
        "pair {} is in state {}; resync needs split{}",
        r.name,
        r.state.as_str(),
        if reverse { "" } else { " or error" }
    )))
}

fn volume_name(pool: &Pool, id: u64) -> Result<String> {
    pool.volumes()
        .into_iter()
        .find(|v| v.id == id)
        .map(|v| v.name)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("volume id {id} no longer exists"),
            )
        })
}

/// The pairs of a pool.
pub struct Pairs {
    pool: Pool,
    jobs: Arc<JobManager>,
    pairs: Mutex<Vec<Arc<Runtime>>>,
    /// Serializes state changes (taken before the store's commit lock).
    lock: Mutex<()>,
}

impl Pairs {
    /// Loads the pairs, installs their mirrors and guards, and resumes what a stop
    /// interrupted: an initial copy or a resync restarts; a pair not closed cleanly in `pair`
    /// state gets a full copy.
    pub fn open(pool: Pool, jobs: Arc<JobManager>) -> Result<Arc<Pairs>> {
        let mut records = Vec::new();
        pool.app_scan(PAIRS, Bound::Unbounded, Bound::Unbounded, false, |_, v| {
            records.push(PairRecord::decode(v));
            true
        })?;
        let p = Arc::new(Pairs {
            pool,
            jobs,
            pairs: Mutex::new(Vec::new()),
            lock: Mutex::new(()),
        });
        for r in records {
            let mut r = r.map_err(|e| Error::new(ErrorKind::Corrupt, e))?;
            if r.state == PairState::Pair && !r.closed_cleanly {
                r.state = PairState::Copy;
                r.reason = Some("the array stopped without closing the pair: full copy".into());
            }
            r.closed_cleanly = false;
            let rt = Runtime::new(r.clone());
            p.store(&r)?;
            if let Err(e) = p.install(&rt) {
                // A side deleted behind the pair's back: keep the record, in error, so the
                // pool still opens and the pair can be deleted.
                tracing::warn!(pair = %r.name, "cannot restore the pair: {e}");
                p.set(&rt, |x| {
                    x.state = PairState::Error;
                    x.reason = Some(format!("cannot restore the pair: {e}"));
                })?;
                p.pairs.lock().push(rt.clone());
                continue;
            }
            p.pairs.lock().push(rt.clone());
            match r.state {
                PairState::Copy => p.start_copy_job(&rt, false, false)?,
                PairState::Resync => p.start_copy_job(&rt, true, false)?,
                PairState::ReverseResync => p.start_copy_job(&rt, true, true)?,
                _ => {}
            }
        }
        Ok(p)
    }

    /// Marks pairs in `pair` state closed cleanly (the daemon's orderly stop, after the data
    /// path stopped and its last flush), so the next start need not copy them in full. Writes
    /// to their primaries block from here on.
    pub fn close(&self) -> Result<()> {
        let _l = self.lock.lock();
        for rt in self.pairs.lock().iter() {
            let mut r = rt.record.lock().clone();
            if r.state == PairState::Pair {
                rt.gate.close();
                r.closed_cleanly = true;
                self.store(&r)?;
            }
        }
        Ok(())
    }

    /// Stores the record with the guards its state wants, in one transaction.
    fn store(&self, r: &PairRecord) -> Result<()> {
        let mut t = self.pool.transaction();
        t.put(PAIRS, r.id.to_be_bytes().to_vec(), r.encode());
        stage_guards(&self.pool, &mut t, r)?;
        t.commit()
    }

    /// Sets the record (in memory and durably).
    fn set(&self, rt: &Runtime, change: impl FnOnce(&mut PairRecord)) -> Result<PairRecord> {
        let mut r = rt.record.lock().clone();
        change(&mut r);
        self.store(&r)?;
        *rt.record.lock() = r.clone();
        Ok(r)
    }

    /// The mirror (not stored; the guards are, with the record). Both sides must exist.
    fn install(self: &Arc<Self>, rt: &Arc<Runtime>) -> Result<()> {
        let (primary_id, secondary_id) = {
            let r = rt.record.lock();
            (r.primary_id, r.secondary_id)
        };
        volume_name(&self.pool, secondary_id)?;
        self.pool.set_write_hook(
            &volume_name(&self.pool, primary_id)?,
            Some(Arc::new(Mirror {
                pool: self.pool.clone(),
                rt: rt.clone(),
                pairs: Arc::downgrade(self),
            })),
        )?;
        Ok(())
    }

    fn find(&self, name: &str) -> Result<Arc<Runtime>> {
        self.pairs
            .lock()
            .iter()
            .find(|rt| rt.record.lock().name == name)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("pair {name} does not exist")))
    }

    /// Refuses a change that would break a pair (deleting or resizing one of its volumes).
    pub fn check_volume_change(&self, volume: &str, what: &str) -> Result<()> {
        let Ok(v) = self.pool.volume(volume) else {
            return Ok(());
        };
        for rt in self.pairs.lock().iter() {
            let r = rt.record.lock();
            if r.primary_id == v.id || r.secondary_id == v.id {
                return Err(busy(format!(
                    "cannot {what} {volume}: it is in pair {}; delete the pair first",
                    r.name
                )));
            }
        }
        Ok(())
    }

    pub fn list(&self) -> Vec<PairRecord> {
        self.pairs
            .lock()
            .iter()
            .map(|rt| rt.record.lock().clone())
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<PairRecord> {
        Ok(self.find(name)?.record.lock().clone())
    }

    /// The running copy job of a pair, if any.
    pub fn job(&self, name: &str) -> Result<Option<u64>> {
        Ok(*self.find(name)?.job.lock())
    }

    /// Makes a pair and starts its initial copy. The secondary must be at least as large and
    /// free; the second value is a warning when one device's loss may take both (placement.rs).
    pub fn create(
        self: &Arc<Self>,
        primary: &str,
        secondary: &str,
        pace_bytes_per_second: Option<u64>,
        hosts: &dyn crate::Hosts,
    ) -> Result<(PairRecord, Option<String>)> {
        let _l = self.lock.lock();
        let p = self.pool.volume(primary)?;
        let s = self.pool.volume(secondary)?;
        if p.id == s.id {
            return Err(invalid("a volume cannot be its own secondary"));
        }
        if s.size < p.size {
            return Err(invalid(format!(
                "secondary {secondary} is {} bytes, smaller than {primary} ({} bytes)",
                s.size, p.size
            )));
        }
        if pace_bytes_per_second == Some(0) {
            return Err(invalid("a pace of 0 would never copy"));
        }
        if let Some(g) = &s.guard {
            return Err(busy(format!("{secondary} is not free: {g}")));
        }
        if let Some(g) = &p.guard {
            // A reverse resync would write into it.
            return Err(busy(format!("{primary} is protected: {g}")));
        }
        if s.snapshots > 0 || s.tag.is_some() {
            return Err(busy(format!("{secondary} has snapshots or holds a backup")));
        }
        let connected = hosts.connected(secondary);
        if !connected.is_empty() {
            return Err(busy(format!(
                "{secondary} is in use by {}",
                connected.join(", ")
            )));
        }
        for rt in self.pairs.lock().iter() {
            let r = rt.record.lock();
            if [r.primary_id, r.secondary_id].contains(&s.id) {
                return Err(busy(format!("{secondary} is already in pair {}", r.name)));
            }
            if r.secondary_id == p.id || r.primary_id == p.id {
                return Err(busy(format!("{primary} is already in pair {}", r.name)));
            }
        }
        let devices = self.pool.device_status().len();
        let warning = crate::placement::pair_warning(&p, &s, devices);
        // Ids key the records: above every id in use, even within one millisecond.
        let last = self
            .pairs
            .lock()
            .iter()
            .map(|rt| rt.record.lock().id)
            .max()
            .unwrap_or(0);
        let r = PairRecord {
            id: now_ms().max(last + 1),
            name: secondary.to_string(),
            primary_id: p.id,
            secondary_id: s.id,
            state: PairState::Copy,
            reason: None,
            pace_bytes_per_second,
            created_ms: now_ms(),
            split_ms: None,
            missed_extents: Vec::new(),
            closed_cleanly: false,
            needs_full_copy: false,
        };
        self.store(&r)?;
        let rt = Runtime::new(r.clone());
        self.install(&rt)?;
        self.pairs.lock().push(rt.clone());
        self.start_copy_job(&rt, false, false)?;
        Ok((r, warning))
    }

    /// Splits the pair at one instant: the secondary is frozen as the primary was then, and
    /// both sides track what changes from there.
    pub fn split(&self, name: &str) -> Result<PairRecord> {
        self.split_with(name, &mut |_, _| Ok(()))
    }

    /// A split whose transaction carries `also`'s changes too, planned (given the split
    /// record) before the pair's own guards change: a backup held on the secondary from the
    /// split's instant, with its record, all or nothing with the split.
    pub fn split_with(
        &self,
        name: &str,
        also: &mut dyn FnMut(&mut Txn<'_>, &PairRecord) -> Result<()>,
    ) -> Result<PairRecord> {
        let _l = self.lock.lock();
        let rt = self.find(name)?;
        let r = rt.record.lock().clone();
        if r.state != PairState::Pair {
            return Err(busy(format!(
                "pair {name} is in state {}; only a pair in state pair can split",
                r.state.as_str()
            )));
        }
        let primary = volume_name(&self.pool, r.primary_id)?;
        let secondary = volume_name(&self.pool, r.secondary_id)?;
        // No primary write is half mirrored while the snapshots are taken.
        rt.gate.close();
        let result = (|| {
            let mut new = r.clone();
            new.state = PairState::Split;
            new.split_ms = Some(now_ms());
            let mut t = self.pool.transaction();
            t.create_snapshots(&[
                (primary.as_str(), primary_snapshot(r.id).as_str()),
                (secondary.as_str(), secondary_snapshot(r.id).as_str()),
            ])?;
            t.put(PAIRS, r.id.to_be_bytes().to_vec(), new.encode());
            // The caller's guards go on before the pair's lift: no instant unguarded.
            also(&mut t, &new)?;
            stage_guards(&self.pool, &mut t, &new)?;
            t.commit()?;
            *rt.record.lock() = new.clone();
            Ok(new)
        })();
        rt.gate.open();
        result
    }

    /// Copies what changed since the split: primary to secondary, or back (`reverse`, the
    /// restore: the primary is read-only to hosts meanwhile). Returns the job.
    /// Refused while the secondary holds a live backup (its guard says so): giving that up is
    /// the backup service's decision ([`crate::Backups::resync_pair`] consumes it first).
    pub fn resync(self: &Arc<Self>, name: &str, reverse: bool) -> Result<u64> {
        let _l = self.lock.lock();
        let rt = self.find(name)?;
        resync_allowed(&rt.record.lock(), reverse)?;
        let secondary_id = rt.record.lock().secondary_id;
        if let Ok(v) = volume_name(&self.pool, secondary_id)
            && let Some(g) = self
                .pool
                .volume(&v)?
                .guards
                .into_iter()
                .find(|g| matches!(g.owner, GuardOwner::Backup(_)))
        {
            return Err(busy(format!(
                "cannot resync pair {name}: its secondary {v} {}; consume the backup first",
                g.reason
            )));
        }
        let state = if reverse {
            PairState::ReverseResync
        } else {
            PairState::Resync
        };
        rt.gate.close();
        let r = self.set(&rt, |x| {
            x.state = state;
            x.reason = None;
        });
        rt.gate.open();
        r?;
        self.start_copy_job(&rt, true, reverse)?;
        Ok(rt.job.lock().expect("just started"))
    }

    /// Whether the pair's state lets it resync now (the backup layer asks before it consumes
    /// a backup held on the secondary, so a refused resync consumes nothing).
    pub fn check_resync(&self, name: &str, reverse: bool) -> Result<()> {
        resync_allowed(&self.find(name)?.record.lock(), reverse)
    }

    /// Ends a pair: the mirror goes, the guards and tracking snapshots go, both volumes stay.
    pub fn delete(&self, name: &str) -> Result<()> {
        let _l = self.lock.lock();
        let rt = self.find(name)?;
        if let Some(j) = *rt.job.lock()
            && self
                .jobs
                .get(j)
                .is_some_and(|j| !j.snapshot().state.finished())
        {
            return Err(busy(format!(
                "pair {name} has job {j} running; cancel it first"
            )));
        }
        let r = rt.record.lock().clone();
        let primary = volume_name(&self.pool, r.primary_id).ok();
        let secondary = volume_name(&self.pool, r.secondary_id).ok();
        let mut t = self.pool.transaction();
        for (vol, snap) in [
            (&primary, primary_snapshot(r.id)),
            (&secondary, secondary_snapshot(r.id)),
        ] {
            if let Some(v) = vol
                && t.snapshot_exists(v, &snap)
            {
                t.remove_snapshot_guard(v, &snap, GuardOwner::Pair(r.id))?;
                t.delete_snapshot(v, &snap)?;
            }
        }
        stage_lift_guards(&self.pool, &mut t, &r)?;
        t.delete(PAIRS, r.id.to_be_bytes().to_vec());
        t.commit()?;
        if let Some(p) = &primary {
            self.pool.set_write_hook(p, None)?;
        }
        self.pairs.lock().retain(|x| !Arc::ptr_eq(x, &rt));
        Ok(())
    }

    /// A mirrored write failed on the secondary (the record already says `error` in memory):
    /// the state becomes durable, and a snapshot of the primary tracks its changes from now on;
    /// the writes before it are in `missed_extents`.
    fn secondary_failed(&self, rt: &Arc<Runtime>) {
        let _l = self.lock.lock();
        // No write lands between the snapshot and the end of noting extents by hand.
        rt.gate.close();
        let result = (|| -> Result<()> {
            let r = rt.record.lock().clone();
            let primary = volume_name(&self.pool, r.primary_id)?;
            let mut t = self.pool.transaction();
            let snap = primary_snapshot(r.id);
            // Tracking matters only when the secondary was whole.
            if !r.needs_full_copy && self.pool.snapshot(&primary, &snap).is_err() {
                t.create_snapshots(&[(primary.as_str(), snap.as_str())])?;
            }
            // Read again after the snapshot: every change before it is in the record.
            let r = rt.record.lock().clone();
            t.put(PAIRS, r.id.to_be_bytes().to_vec(), r.encode());
            stage_guards(&self.pool, &mut t, &r)?;
            t.commit()
        })();
        let name = rt.record.lock().name.clone();
        if result.is_ok() {
            rt.error_tracked
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        rt.gate.open();
        match result {
            Ok(()) => {}
            // Memory keeps noting changes by extent; a failed commit stays pending for the
            // next flush, which carries the record with it.
            Err(x) => tracing::error!(pair = %name, "recording the error state: {x}"),
        }
        tracing::warn!(pair = %name, "secondary failed, pair in error state");
    }

    /// Starts the job that copies: everything (initial copy) or what changed since the split.
    fn start_copy_job(
        self: &Arc<Self>,
        rt: &Arc<Runtime>,
        changed_only: bool,
        reverse: bool,
    ) -> Result<()> {
        let me = self.clone();
        let rtc = rt.clone();
        let name = rt.record.lock().name.clone();
        let kind = match (changed_only, reverse) {
            (false, _) => JobKind::PairCopy,
            (true, false) => JobKind::PairResync,
            (true, true) => JobKind::PairReverseResync,
        };
        let job = self
            .jobs
            .start(kind, &name, move |ctx| {
                let r = me.copy_body(&rtc, changed_only, reverse, ctx);
                if let Err(e) = &r {
                    let reason = match e {
                        JobError::Cancelled => "cancelled".to_string(),
                        JobError::Failed(m) => m.clone(),
                    };
                    let _l = me.lock.lock();
                    // A failed initial copy or resync leaves the pair in error (the primary
                    // serves on); a later resync picks it up.
                    if let Err(x) = me.set(&rtc, |x| {
                        if x.state == PairState::Copy {
                            x.needs_full_copy = true;
                        }
                        if x.state != PairState::ReverseResync {
                            x.state = PairState::Error;
                        } else {
                            x.state = PairState::Split;
                        }
                        x.reason = Some(reason.clone());
                    }) {
                        tracing::error!("recording a failed pair copy: {x}");
                    }
                }
                r
            })
            .map_err(|e| Error::io("starting a pair copy job", e))?;
        *rt.job.lock() = Some(job.id());
        Ok(())
    }

    fn copy_body(
        &self,
        rt: &Arc<Runtime>,
        changed_only: bool,
        reverse: bool,
        ctx: &JobContext,
    ) -> std::result::Result<Option<JobResult>, JobError> {
        let r = rt.record.lock().clone();
        let primary = volume_name(&self.pool, r.primary_id)?;
        let secondary = volume_name(&self.pool, r.secondary_id)?;
        let (from_name, to_name) = if reverse {
            (&secondary, &primary)
        } else {
            (&primary, &secondary)
        };
        let from = self.pool.export_unguarded(from_name)?;
        let to = self.pool.export_unguarded(to_name)?;
        let es = self.pool.extent_size();
        let size = self.pool.volume(&primary)?.size;
        // An error during the initial copy leaves nothing tracked: only a full copy repairs.
        let tracked = self
            .pool
            .snapshot(&primary, &primary_snapshot(r.id))
            .is_ok();
        let changed_only = changed_only && tracked && !r.needs_full_copy;
        let mut refill = false;
        let extents: Vec<u64> = if changed_only {
            let mut set: BTreeSet<u64> = r.missed_extents.iter().copied().collect();
            for (vol, snap) in [
                (&primary, primary_snapshot(r.id)),
                (&secondary, secondary_snapshot(r.id)),
            ] {
                if self.pool.snapshot(vol, &snap).is_ok() {
                    set.extend(self.pool.changed_extents(vol, &snap)?);
                } else if vol == &secondary && r.split_ms.is_some() {
                    // After a split, without the secondary's snapshot nothing says what
                    // changed there. (After an error only the primary was snapshotted: the
                    // secondary took no writes but the missed ones.)
                    return Err(JobError::Failed(format!(
                        "the change tracking snapshot {snap} of {vol} is missing; delete and \
                         recreate the pair"
                    )));
                }
            }
            set.into_iter().collect()
        } else {
            // Everything either side holds: the primary's data, and the secondary's old data
            // where the primary has holes.
            let mut set: BTreeSet<u64> = from.allocated_extents()?.into_iter().collect();
            let old = to.allocated_extents()?;
            refill = !old.is_empty();
            set.extend(old);
            set.into_iter().collect()
        };
        ctx.set_total(copier::listed_bytes(&extents, size, es));
        let opts = copier::Options {
            to: Some(&to),
            extents: copier::Extents::Listed(&extents),
            dest_size: Some(size),
            // A full copy into a secondary that holds data (after a stop that did not close
            // the pair, nearly all of it the same): reading beats rewriting it.
            differs_only: !changed_only && refill,
            // Extent by extent, as it always went; the mirror waits at most one.
            chunk_bytes: Some(es),
            pace_bytes_per_second: r.pace_bytes_per_second,
            exclusive: Some(&rt.copy_lock),
            ..copier::Options::default()
        };
        let done = copier::copy(&from, size, &opts, ctx)?.bytes_done;
        // The copy is durable before the state says so.
        self.pool.flush()?;
        let _l = self.lock.lock();
        rt.gate.close();
        let finish = (|| -> Result<()> {
            let mut new = rt.record.lock().clone();
            new.state = PairState::Pair;
            new.reason = None;
            new.split_ms = None;
            new.missed_extents.clear();
            new.needs_full_copy = false;
            let mut t = self.pool.transaction();
            for (vol, snap) in [
                (&primary, primary_snapshot(r.id)),
                (&secondary, secondary_snapshot(r.id)),
            ] {
                if t.snapshot_exists(vol, &snap) {
                    t.remove_snapshot_guard(vol, &snap, GuardOwner::Pair(r.id))?;
                    t.delete_snapshot(vol, &snap)?;
                }
            }
            t.put(PAIRS, r.id.to_be_bytes().to_vec(), new.encode());
            stage_guards(&self.pool, &mut t, &new)?;
            t.commit()?;
            *rt.record.lock() = new;
            Ok(())
        })();
        rt.gate.open();
        finish?;
        Ok(Some(JobResult::PairCopied {
            pair: r.name,
            bytes_copied: done,
        }))
    }
}
