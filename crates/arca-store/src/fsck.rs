//! fsck: checks every invariant of a live pool and names each problem.
//!
//! Checked: both superblock copies of every device; every physical extent either free or
//! referenced exactly once, within its device's data region; no leaked extent; every map entry
//! within its volume's or snapshot's size and born in a valid generation; snapshot order; the
//! space counters against a recount; clone origins; and, for every family with no uncommitted
//! change, the stored metadata against memory.

use std::collections::{HashMap, HashSet};

use redb::{ReadableDatabase, ReadableTable};

use crate::error::Result;
use crate::extent_map::{Entry, Phys};
use crate::family::View;
use crate::layout::{SUPERBLOCK_OFFSETS, SUPERBLOCK_SIZE, Superblock};
use crate::pool::{Pool, count_referenced, store_error};
use crate::records;

/// One inconsistency: a short code to match on and a message naming the objects involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
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

impl Pool {
    /// Commits, then checks the whole pool. Writes that allocate wait while it runs.
    pub fn fsck(&self) -> Result<FsckReport> {
        let inner = &self.inner;
        let es = inner.extent_size;
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
        // Superblocks, re-read from the devices.
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
        let reg = inner.registry.read();
        let mut handles: Vec<_> = reg.by_id.values().cloned().collect();
        handles.sort_by_key(|h| h.id);
        let mut owner_of: HashMap<Phys, String> = HashMap::new();
        let mut pending_free: HashSet<Phys> = inner.pending.lock().frees.iter().copied().collect();
        let mut clean_families = Vec::new();
        for h in &handles {
            let f = h.cell.read();
            report.volumes += 1;
            report.snapshots += f.snaps.len();
            pending_free.extend(f.dirty.frees.iter().copied());
            if f.dirty.is_empty() {
                clean_families.push(h.clone());
            }
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
                && p.cell.read().snap_index(*sid).is_none()
            {
                problem(
                    "orphan-clone",
                    format!("clone {} has lost origin snapshot {sid}", f.name),
                );
            }
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
                check_entry(
                    inner,
                    &mut problem,
                    &mut owner_of,
                    format!("volume {}", f.name),
                    l,
                    e,
                    f.size,
                );
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
                    check_entry(
                        inner,
                        &mut problem,
                        &mut owner_of,
                        label.clone(),
                        l,
                        e,
                        s.size,
                    );
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
            let newest = f.newest_gen();
            let live_real = f.live.iter().filter(|(_, e)| e.phys().is_some()).count() as u64;
            let live_unique = f
                .live
                .iter()
                .filter(|(_, e)| e.phys().is_some() && e.birth >= newest)
                .count() as u64;
            if live_real != f.live_real || live_unique != f.live_unique {
                problem(
                    "accounting",
                    format!(
                        "volume {}: counted {} mapped / {} unique extents, recount {live_real} / {live_unique}",
                        f.name, f.live_real, f.live_unique
                    ),
                );
            }
            let name = f.name.clone();
            let referenced = f.referenced;
            let snap_refs: Vec<(String, u64)> = f
                .snaps
                .iter()
                .map(|s| (s.name.clone(), s.referenced))
                .collect();
            drop(f);
            let recount = count_referenced(h, View::Live, es);
            if recount != referenced {
                problem(
                    "accounting",
                    format!(
                        "volume {name}: counted {referenced} referenced extents, recount {recount}"
                    ),
                );
            }
            for (i, (sname, sref)) in snap_refs.iter().enumerate() {
                let recount = count_referenced(h, View::Snap(i), es);
                if recount != *sref {
                    problem(
                        "accounting",
                        format!(
                            "snapshot {name}@{sname}: counted {sref} referenced extents, recount {recount}"
                        ),
                    );
                }
            }
        }
        report.extents_referenced = owner_of.len() as u64;
        // The allocator against the references.
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
                            "physical extent {i} of device {d} is free but used by {}",
                            owner_of[&p]
                        ),
                    );
                } else if referenced && pending {
                    problem(
                        "extent-free-but-used",
                        format!(
                            "physical extent {i} of device {d} is pending free but used by {}",
                            owner_of[&p]
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
        drop(alloc);
        // The store against memory, for families without uncommitted changes.
        let db_guard = inner.db.read();
        let db = db_guard
            .as_ref()
            .expect("flush_locked succeeded, so the store is open");
        let ctx = "fsck reading the metadata store";
        let txn = db.begin_read().map_err(|e| store_error(ctx, e.into()))?;
        let extents = txn
            .open_table(records::EXTENTS)
            .map_err(|e| store_error(ctx, e.into()))?;
        let volumes = txn
            .open_table(records::VOLUMES)
            .map_err(|e| store_error(ctx, e.into()))?;
        let snapshots = txn
            .open_table(records::SNAPSHOTS)
            .map_err(|e| store_error(ctx, e.into()))?;
        let mut known: HashSet<u64> = HashSet::new();
        for row in volumes.iter().map_err(|e| store_error(ctx, e.into()))? {
            let (k, _) = row.map_err(|e| store_error(ctx, e.into()))?;
            known.insert(k.value());
        }
        for row in snapshots.iter().map_err(|e| store_error(ctx, e.into()))? {
            let (k, v) = row.map_err(|e| store_error(ctx, e.into()))?;
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
        for row in extents.iter().map_err(|e| store_error(ctx, e.into()))? {
            let (k, _) = row.map_err(|e| store_error(ctx, e.into()))?;
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
                    .map_err(|e| store_error(ctx, e.into()))?;
                for row in range {
                    let (k, v) = row.map_err(|e| store_error(ctx, e.into()))?;
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
        report.problems = found;
        Ok(report)
    }
}

/// Checks one map entry's bounds and records its physical extent, reporting a double use.
fn check_entry(
    inner: &crate::pool::Inner,
    problem: &mut impl FnMut(&'static str, String),
    owner_of: &mut HashMap<Phys, String>,
    owner: String,
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
        } else if let Some(prev) = owner_of.insert(p, format!("{owner} extent {l}")) {
            problem(
                "extent-double-use",
                format!(
                    "physical extent {} of device {} is used by {prev} and {owner} extent {l}",
                    p.index(),
                    p.device()
                ),
            );
        }
    }
}
