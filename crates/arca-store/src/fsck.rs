//! fsck: checks every invariant of a live pool and names each problem.
//!
//! Checked: both superblock copies of every device; every physical extent either free or
//! referenced exactly once, within its device's data region; no leaked extent; every map entry
//! within its volume's or snapshot's size and born in a valid generation; snapshot order; the
//! space counters and where each image's data lies (placement.rs) against a recount; clone
//! origins; every device's generation record; and, for every family with no uncommitted
//! change, the stored metadata against memory.
//!
//! A check of a pool in use must see one consistent state, or it reports writes in flight as
//! problems (an extent allocated after its volume was counted looks leaked; a counter read
//! before a write and recounted after it looks wrong). So the counting runs on a cut:
//! - the commit lock is held throughout: no commit, transaction or control operation runs;
//! - every family's lock is held in read mode while the maps, the counters and the allocator
//!   are compared: writes that change a map (allocating, trimming) wait, in-place writes and
//!   reads go on. The locks are taken children before parents (descending id: a clone's id is
//!   above its origin's), the order in which a write to a clone takes its origin's, and the
//!   allocator's lock last, as a write takes it inside its family's;
//! - resolving through a clone's origin reads the origin's held guard instead of locking it
//!   again: a second read lock could queue behind a waiting writer while this thread holds the
//!   first.
//!
//! The family locks are released before the stored metadata is compared with memory; that part
//! looks only at families with no uncommitted change, which the held commit lock keeps so.

use std::collections::{HashMap, HashSet};
use std::fmt;

use parking_lot::RwLockReadGuard;
use redb::{ReadableDatabase, ReadableTable};

use crate::error::{Error, Result};
use crate::extent_map::{Entry, Phys};
use crate::family::{Family, FamilyHandle, Origins, View, referenced_devices};
use crate::layout::{SUPERBLOCK_OFFSETS, SUPERBLOCK_SIZE, Superblock};
use crate::meta_guard::store_error;
use crate::pool::Pool;
use crate::records;

/// One inconsistency: a short code to match on and a message naming the objects involved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FsckReport {
    pub problems: Vec<Problem>,
    pub volumes: usize,
    pub snapshots: usize,
    pub extents_referenced: u64,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

type Report<'a> = dyn FnMut(&'static str, String) + 'a;

impl Pool {
    /// Commits, then checks the whole pool on a consistent cut (module doc). Writes that change
    /// a map wait while the maps are compared.
    pub fn fsck(&self) -> Result<FsckReport> {
        let inner = &self.inner;
        let mut state = inner.commit.lock();
        self.flush_locked(&mut state)?;
        let mut report = FsckReport::default();
        let mut found: Vec<Problem> = Vec::new();
        let mut problem = |code: &'static str, message: String| {
            found.push(Problem { code, message });
        };
        for p in inner.load_problems.lock().iter() {
            problem(p.code, p.message.clone());
        }
        self.check_superblocks(&mut problem);
        self.check_generations(&state, &mut problem);
        let reg = inner.registry.read();
        let mut handles: Vec<_> = reg.by_id.values().cloned().collect();
        handles.sort_by_key(|h| std::cmp::Reverse(h.id));
        let clean_families = {
            let guards: Vec<RwLockReadGuard<'_, Family>> =
                handles.iter().map(|h| h.cell.read()).collect();
            let held: HashMap<u64, &Family> = handles
                .iter()
                .map(|h| h.id)
                .zip(guards.iter().map(|g| &**g))
                .collect();
            let mut owner_of: Owners<'_> = HashMap::new();
            let mut pending_free: HashSet<Phys> =
                inner.pending.lock().frees.iter().copied().collect();
            let mut clean = Vec::new();
            // Id order, as before, so reports list volumes oldest first.
            for (h, f) in handles.iter().zip(&guards).rev() {
                report.volumes += 1;
                report.snapshots += f.snaps.len();
                pending_free.extend(f.dirty.frees.iter().copied());
                if f.dirty.is_empty() {
                    clean.push(h.clone());
                }
                self.check_family(&reg, h, f, &held, &mut owner_of, &mut problem);
            }
            report.extents_referenced = owner_of.len() as u64;
            self.check_allocator(&owner_of, &pending_free, &mut problem);
            clean
        };
        let stored = self.db().and_then(|db_guard| {
            let db = db_guard.as_ref().expect("db() opens the store");
            self.guarded("fsck reading the metadata store", || {
                self.check_store(db, &reg, &clean_families, &mut problem)
            })
        });
        if let Err(e) = stored {
            return Err(with_found(e, &found));
        }
        report.problems = found;
        Ok(report)
    }

    /// Both superblock copies of every device, re-read from the devices.
    fn check_superblocks(&self, problem: &mut Report<'_>) {
        let inner = &self.inner;
        for (dev, sb) in inner.devices.iter().zip(&inner.superblocks) {
            for (copy, off) in SUPERBLOCK_OFFSETS.iter().enumerate() {
                let mut b = vec![0u8; SUPERBLOCK_SIZE];
                let found = dev
                    .read_at(&mut b, *off)
                    .map_err(|e| e.to_string())
                    .and_then(|_| Superblock::decode(&b));
                match found {
                    Ok(s) if &s == sb => {}
                    Ok(_) => problem(
                        "superblock",
                        format!(
                            "device {}: superblock copy {copy} differs from the pool's",
                            dev.name()
                        ),
                    ),
                    Err(m) => problem(
                        "superblock",
                        format!("device {}: superblock copy {copy}: {m}", dev.name()),
                    ),
                }
            }
        }
    }

    /// One family, its lock held (in `held` with every other family's): names, origin, map
    /// entries, generations and counters.
    fn check_family<'a>(
        &self,
        reg: &crate::pool::Registry,
        h: &FamilyHandle,
        f: &'a Family,
        held: &HashMap<u64, &Family>,
        owner_of: &mut Owners<'a>,
        problem: &mut Report<'_>,
    ) {
        if crate::names::validate("volume", &f.name).is_err() {
            problem("record", format!("volume {} has an invalid name", f.name));
        }
        if reg.by_name.get(&f.name).is_none_or(|x| x.id != h.id) {
            problem(
                "record",
                format!("volume {} is not registered under its name", f.name),
            );
        }
        if let Some((p, sid)) = &h.parent
            && held
                .get(&p.id)
                .is_none_or(|pf| pf.snap_index(*sid).is_none())
        {
            problem(
                "orphan-clone",
                format!("clone {} has lost origin snapshot {sid}", f.name),
            );
        }
        self.check_family_maps(f, owner_of, problem);
        self.check_family_counters(h, f, held, problem);
    }

    /// A family's map entries (live and preserved), in generation order, and each snapshot's
    /// preserved and unique counts.
    fn check_family_maps<'a>(
        &self,
        f: &'a Family,
        owner_of: &mut Owners<'a>,
        problem: &mut Report<'_>,
    ) {
        let inner = &self.inner;
        for (l, e) in f.live.iter() {
            if e.birth > f.gen_current {
                problem(
                    "generation",
                    format!(
                        "volume {}: extent {l} born in future generation {}",
                        f.name, e.birth
                    ),
                );
            }
            let owner = Owner {
                volume: &f.name,
                snapshot: None,
            };
            check_entry(inner, problem, owner_of, owner, l, e, f.size);
        }
        let mut prev_gen = 0;
        for s in &f.snaps {
            let label = format!("snapshot {}@{}", f.name, s.name);
            if s.generation <= prev_gen || s.generation > f.gen_current {
                problem(
                    "generation",
                    format!("{label}: generation {} out of order", s.generation),
                );
            }
            for (l, e) in s.delta.iter() {
                if e.birth >= s.generation {
                    problem(
                        "generation",
                        format!("{label}: preserved extent {l} born after the snapshot"),
                    );
                }
                let owner = Owner {
                    volume: &f.name,
                    snapshot: Some(&s.name),
                };
                check_entry(inner, problem, owner_of, owner, l, e, s.size);
            }
            let real = s.delta.iter().filter(|(_, e)| e.phys().is_some()).count() as u64;
            let unique = s
                .delta
                .iter()
                .filter(|(_, e)| e.phys().is_some() && e.birth >= prev_gen)
                .count() as u64;
            if real != s.delta_real || unique != s.unique {
                problem(
                    "accounting",
                    format!(
                        "{label}: counted {} preserved / {} unique extents, recount {real} / {unique}",
                        s.delta_real, s.unique
                    ),
                );
            }
            prev_gen = s.generation;
        }
    }

    /// A family's counted mapped, referenced and per-device extents against a recount.
    fn check_family_counters(
        &self,
        h: &FamilyHandle,
        f: &Family,
        held: &HashMap<u64, &Family>,
        problem: &mut Report<'_>,
    ) {
        let es = self.inner.extent_size;
        let (live_real, live_unique) = f.recount_live();
        if live_real != f.live_real || live_unique != f.live_unique {
            problem(
                "accounting",
                format!(
                    "volume {}: counted {} mapped / {} unique extents, recount {live_real} / {live_unique}",
                    f.name, f.live_real, f.live_unique
                ),
            );
        }
        let recount = referenced_devices(&Held(held), h, f, View::Live, es);
        if recount.total() != f.referenced {
            problem(
                "accounting",
                format!(
                    "volume {}: counted {} referenced extents, recount {}",
                    f.name,
                    f.referenced,
                    recount.total()
                ),
            );
        }
        if recount != f.live_devices {
            problem(
                "placement",
                format!(
                    "volume {}: counted {:?} extents per device, recount {recount:?}",
                    f.name, f.live_devices
                ),
            );
        }
        for (i, s) in f.snaps.iter().enumerate() {
            let recount = referenced_devices(&Held(held), h, f, View::Snap(i), es);
            if recount.total() != s.referenced {
                problem(
                    "accounting",
                    format!(
                        "snapshot {}@{}: counted {} referenced extents, recount {}",
                        f.name,
                        s.name,
                        s.referenced,
                        recount.total()
                    ),
                );
            }
            if recount != s.devices {
                problem(
                    "placement",
                    format!(
                        "snapshot {}@{}: counted {:?} extents per device, recount {recount:?}",
                        f.name, s.name, s.devices
                    ),
                );
            }
        }
    }

    /// The allocator against the references (every family's lock held by the caller).
    fn check_allocator(
        &self,
        owner_of: &Owners<'_>,
        pending_free: &HashSet<Phys>,
        problem: &mut Report<'_>,
    ) {
        let inner = &self.inner;
        let alloc = inner.alloc.lock();
        for (d, sb) in inner.superblocks.iter().enumerate() {
            for i in 0..sb.extent_count {
                let p = Phys::new(d as u32, i);
                let used = alloc.is_used(p);
                let referenced = owner_of.contains_key(&p);
                let pending = pending_free.contains(&p);
                if referenced && !used {
                    problem(
                        "extent-free-but-used",
                        format!(
                            "physical extent {i} of device {d} is free but used by {} extent {}",
                            owner_of[&p].0, owner_of[&p].1
                        ),
                    );
                } else if referenced && pending {
                    problem(
                        "extent-free-but-used",
                        format!(
                            "physical extent {i} of device {d} is pending free but used by {} extent {}",
                            owner_of[&p].0, owner_of[&p].1
                        ),
                    );
                } else if used && !referenced && !pending {
                    problem(
                        "extent-leak",
                        format!(
                            "physical extent {i} of device {d} is allocated but referenced by nothing"
                        ),
                    );
                }
            }
        }
    }

    /// The store against memory, for families without uncommitted changes. Calls into redb:
    /// the caller guards it (meta_guard.rs).
    fn check_store(
        &self,
        db: &redb::Database,
        reg: &crate::pool::Registry,
        clean_families: &[std::sync::Arc<FamilyHandle>],
        problem: &mut Report<'_>,
    ) -> Result<()> {
        let ctx = "fsck reading the metadata store";
        let err = |e: redb::Error| store_error(&self.inner.meta_label, ctx, e);
        let txn = db.begin_read().map_err(|e| err(e.into()))?;
        let extents = txn
            .open_table(records::EXTENTS)
            .map_err(|e| err(e.into()))?;
        let volumes = txn
            .open_table(records::VOLUMES)
            .map_err(|e| err(e.into()))?;
        let snapshots = txn
            .open_table(records::SNAPSHOTS)
            .map_err(|e| err(e.into()))?;
        let mut known: HashSet<u64> = HashSet::new();
        for row in volumes.iter().map_err(|e| err(e.into()))? {
            let (k, _) = row.map_err(|e| err(e.into()))?;
            known.insert(k.value());
        }
        for row in snapshots.iter().map_err(|e| err(e.into()))? {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            known.insert(k.value());
            match records::SnapshotRecord::decode(v.value()) {
                Ok(r) if !reg.by_id.contains_key(&r.volume) => problem(
                    "orphan-snapshot",
                    format!(
                        "stored snapshot {} ({}) names missing volume {}",
                        k.value(),
                        r.name,
                        r.volume
                    ),
                ),
                Ok(_) => {}
                Err(m) => problem(
                    "record",
                    format!("stored snapshot record {}: {m}", k.value()),
                ),
            }
        }
        for row in extents.iter().map_err(|e| err(e.into()))? {
            let (k, _) = row.map_err(|e| err(e.into()))?;
            let (owner, l) = k.value();
            if !known.contains(&owner) {
                problem(
                    "orphan-entry",
                    format!("stored entry ({owner}, {l}) belongs to no volume or snapshot"),
                );
            }
        }
        for h in clean_families {
            let f = h.cell.read();
            if f.deleted || !f.dirty.is_empty() {
                continue;
            }
            let mut owners = vec![(h.id, None)];
            owners.extend(f.snaps.iter().enumerate().map(|(i, s)| (s.id, Some(i))));
            for (owner, snap) in owners {
                let map = match snap {
                    None => &f.live,
                    Some(i) => &f.snaps[i].delta,
                };
                let mut stored = 0u64;
                let range = extents
                    .range((owner, 0)..=(owner, u64::MAX))
                    .map_err(|e| err(e.into()))?;
                for row in range {
                    let (k, v) = row.map_err(|e| err(e.into()))?;
                    let (_, l) = k.value();
                    let (raw, birth) = v.value();
                    stored += 1;
                    if Entry::from_parts(raw, birth) != map.get(l) {
                        problem(
                            "stored-vs-memory",
                            format!(
                                "volume {} owner {owner}: stored entry for extent {l} differs from memory",
                                f.name
                            ),
                        );
                    }
                }
                if stored != map.len() {
                    problem(
                        "stored-vs-memory",
                        format!(
                            "volume {} owner {owner}: {stored} stored entries, {} in memory",
                            f.name,
                            map.len()
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

/// A store error met after the problems in `found`: it names them too, so that they are not
/// lost with the report.
fn with_found(e: Error, found: &[Problem]) -> Error {
    if found.is_empty() {
        return e;
    }
    let list: Vec<String> = found
        .iter()
        .map(|p| format!("{}: {}", p.code, p.message))
        .collect();
    e.with_note(&format!(
        "after finding {} problem(s): {}",
        found.len(),
        list.join("; ")
    ))
}

/// Origins read from the guards fsck holds (module doc).
struct Held<'a>(&'a HashMap<u64, &'a Family>);

impl Origins for Held<'_> {
    fn with_origin<R>(
        &self,
        h: &FamilyHandle,
        f: impl FnOnce(Option<(&FamilyHandle, &Family, View)>) -> R,
    ) -> R {
        let origin = h.parent.as_ref().and_then(|(p, sid)| {
            let pf = *self.0.get(&p.id)?;
            let i = pf.snap_index(*sid)?;
            Some((&**p, pf, View::Snap(i)))
        });
        f(origin)
    }
}

/// What references a physical extent: a volume's live map or one of its snapshots. Formatted
/// only when a problem names it, not for every extent under the locks.
#[derive(Debug, Clone, Copy)]
struct Owner<'a> {
    volume: &'a str,
    snapshot: Option<&'a str>,
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.snapshot {
            None => write!(f, "volume {}", self.volume),
            Some(s) => write!(f, "snapshot {}@{s}", self.volume),
        }
    }
}

/// Each referenced physical extent's owner and logical extent.
type Owners<'a> = HashMap<Phys, (Owner<'a>, u64)>;

/// Checks one map entry's bounds and records its physical extent, reporting a double use.
fn check_entry<'a>(
    inner: &crate::pool::Inner,
    problem: &mut Report<'_>,
    owner_of: &mut Owners<'a>,
    owner: Owner<'a>,
    l: u64,
    e: Entry,
    size: u64,
) {
    let es = inner.extent_size;
    if l >= size.div_ceil(es) {
        problem(
            "map-bounds",
            format!("{owner}: entry for extent {l} is past its size {size}"),
        );
    }
    if let Some(p) = e.phys() {
        let dev_ok = (p.device() as usize) < inner.devices.len()
            && p.index() < inner.superblocks[p.device() as usize].extent_count;
        if !dev_ok {
            problem(
                "extent-out-of-range",
                format!("{owner}: extent {l} points to {p:?}, outside the pool"),
            );
        } else if let Some((prev, prev_l)) = owner_of.insert(p, (owner, l)) {
            problem(
                "extent-double-use",
                format!(
                    "physical extent {} of device {} is used by {prev} extent {prev_l} and {owner} extent {l}",
                    p.index(),
                    p.device()
                ),
            );
        }
    }
}
