//! Loading a pool from its metadata store: the records, the maps, the allocator and the
//! counters are rebuilt in memory; inconsistencies found on the way are kept for fsck.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::RwLock;
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::error::{Error, ErrorKind, Result};
use crate::extent_map::{Entry, ExtentMap};
use crate::family::{Dirty, Family, FamilyHandle, Snap};
use crate::meta_guard::store_error;
use crate::pool::{Pool, Registry};
use crate::records::{self, SnapshotRecord, VolumeRecord};

impl Pool {
    /// Builds memory from the store: families, snapshots, maps, allocator, counters.
    pub(crate) fn load(&self, db: &Database) -> Result<()> {
        let inner = &self.inner;
        let es = inner.extent_size;
        let ctx = "loading the pool";
        let e = |err: redb::Error| store_error(&inner.meta_label, ctx, err);
        let txn = db.begin_read().map_err(|x| e(x.into()))?;
        let mut problems = Vec::new();
        let mut problem = |code: &'static str, message: String| {
            problems.push(crate::fsck::Problem { code, message });
        };
        let mut volumes: BTreeMap<u64, VolumeRecord> = BTreeMap::new();
        let mut snapshots: BTreeMap<u64, SnapshotRecord> = BTreeMap::new();
        let mut next_id = 1;
        match txn.open_table(records::META) {
            Ok(t) => {
                if let Some(v) = t.get(records::KEY_NEXT_ID).map_err(|x| e(x.into()))? {
                    next_id = v.value();
                }
                if let Some(v) = t.get(records::KEY_FORMAT).map_err(|x| e(x.into()))?
                    && v.value() != records::FORMAT
                {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        format!("metadata format {} is not supported", v.value()),
                    ));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(x) => return Err(e(x.into())),
        }
        if let Some(t) = open_optional(&txn, records::VOLUMES).map_err(e)? {
            for row in t.iter().map_err(|x| e(x.into()))? {
                let (k, v) = row.map_err(|x| e(x.into()))?;
                match VolumeRecord::decode(v.value()) {
                    Ok(r) => {
                        volumes.insert(k.value(), r);
                    }
                    Err(m) => problem("record", format!("volume record {}: {m}", k.value())),
                }
            }
        }
        if let Some(t) = open_optional(&txn, records::SNAPSHOTS).map_err(e)? {
            for row in t.iter().map_err(|x| e(x.into()))? {
                let (k, v) = row.map_err(|x| e(x.into()))?;
                match SnapshotRecord::decode(v.value()) {
                    Ok(r) => {
                        snapshots.insert(k.value(), r);
                    }
                    Err(m) => problem("record", format!("snapshot record {}: {m}", k.value())),
                }
            }
        }
        // Families in id order, so a clone's parent (always older) exists before it.
        let mut reg = Registry::default();
        let mut families: BTreeMap<u64, Family> = BTreeMap::new();
        for (&id, r) in &volumes {
            families.insert(
                id,
                Family {
                    name: r.name.clone(),
                    size: r.size,
                    gen_current: r.gen_current,
                    placement: r.placement,
                    created_unix: r.created_unix,
                    live: ExtentMap::new(),
                    snaps: Vec::new(),
                    referenced: 0,
                    live_devices: Default::default(),
                    live_real: 0,
                    live_unique: 0,
                    deleted: false,
                    dirty: Dirty::default(),
                    tag: r.tag.clone(),
                    guards: r.guards.clone(),
                    hook: Default::default(),
                },
            );
        }
        // owner id -> (family id, snapshot id or None)
        let mut owners: HashMap<u64, (u64, Option<u64>)> = HashMap::new();
        for &id in volumes.keys() {
            owners.insert(id, (id, None));
        }
        for (&sid, r) in &snapshots {
            match families.get_mut(&r.volume) {
                Some(f) => {
                    f.snaps.push(Snap {
                        id: sid,
                        name: r.name.clone(),
                        generation: r.generation,
                        size: r.size,
                        created_unix: r.created_unix,
                        referenced: r.referenced_extents,
                        devices: Default::default(),
                        delta: ExtentMap::new(),
                        delta_real: 0,
                        unique: 0,
                        tag: r.tag.clone(),
                        guards: r.guards.clone(),
                    });
                    owners.insert(sid, (r.volume, Some(sid)));
                }
                None => problem(
                    "orphan-snapshot",
                    format!(
                        "snapshot {sid} ({}) names missing volume {}",
                        r.name, r.volume
                    ),
                ),
            }
        }
        let mut alloc = inner.alloc.lock();
        if let Some(t) = open_optional(&txn, records::EXTENTS).map_err(e)? {
            for row in t.iter().map_err(|x| e(x.into()))? {
                let (k, v) = row.map_err(|x| e(x.into()))?;
                let (owner, l) = k.value();
                let (raw, birth) = v.value();
                let Some(entry) = Entry::from_parts(raw, birth) else {
                    problem(
                        "entry",
                        format!("owner {owner} extent {l}: empty entry stored"),
                    );
                    continue;
                };
                let Some(&(fid, sid)) = owners.get(&owner) else {
                    problem(
                        "orphan-entry",
                        format!("entry ({owner}, {l}) has no volume or snapshot"),
                    );
                    continue;
                };
                if let Some(p) = entry.phys() {
                    let valid = (p.device() as usize) < inner.devices.len()
                        && p.index() < inner.superblocks[p.device() as usize].extent_count;
                    if !valid {
                        problem(
                            "extent-out-of-range",
                            format!("owner {owner} extent {l} points past its device: {p:?}"),
                        );
                        continue;
                    }
                    if !alloc.mark_used(p) {
                        problem(
                            "extent-double-use",
                            format!(
                                "physical extent {} on device {} is referenced twice (again by owner {owner} extent {l})",
                                p.index(),
                                p.device()
                            ),
                        );
                    }
                }
                let f = families
                    .get_mut(&fid)
                    .expect("owner map built from families");
                match sid {
                    None => {
                        f.live.insert(l, entry);
                    }
                    Some(sid) => {
                        // Snapshots were pushed in id order, so the binary search holds.
                        let i = f.snap_index(sid).expect("snapshot registered as owner");
                        f.snaps[i].delta.insert(l, entry);
                    }
                }
            }
        }
        drop(alloc);
        // Counters, then handles (a clone's referenced count reads through its parent).
        for f in families.values_mut() {
            let newest = f.newest_gen();
            f.live_real = f.live.iter().filter(|(_, e)| e.phys().is_some()).count() as u64;
            f.live_unique = f
                .live
                .iter()
                .filter(|(_, e)| e.phys().is_some() && e.birth >= newest)
                .count() as u64;
            for i in 0..f.snaps.len() {
                f.snaps[i].delta_real = f.snaps[i]
                    .delta
                    .iter()
                    .filter(|(_, e)| e.phys().is_some())
                    .count() as u64;
                f.recount_snap_unique(i);
            }
        }
        for (id, f) in families {
            let parent = match volumes[&id].parent {
                None => None,
                Some((pid, sid)) => match reg.by_id.get(&pid) {
                    Some(h) => Some((h.clone(), sid)),
                    None => {
                        problem(
                            "orphan-clone",
                            format!("clone {} names missing origin volume {pid}", f.name),
                        );
                        None
                    }
                },
            };
            if let Some((ph, sid)) = &parent
                && ph.cell.read().snap_index(*sid).is_none()
            {
                problem(
                    "orphan-clone",
                    format!("clone {} names missing origin snapshot {sid}", f.name),
                );
                continue;
            }
            let name = f.name.clone();
            let handle = Arc::new(FamilyHandle {
                id,
                parent,
                cell: RwLock::new(f),
            });
            // Counting through the parent needs the handle, so it comes after.
            crate::placement::count_at_load(&handle, es);
            if reg.by_name.contains_key(&name) {
                problem("record", format!("two volumes are named {name}"));
            }
            reg.by_name.insert(name, handle.clone());
            reg.by_id.insert(id, handle);
        }
        let max_id = volumes
            .keys()
            .chain(snapshots.keys())
            .copied()
            .max()
            .unwrap_or(0);
        if next_id <= max_id {
            problem(
                "record",
                format!("next id {next_id} is not above the largest id in use {max_id}"),
            );
            next_id = max_id + 1;
        }
        inner.next_id.store(next_id, Ordering::SeqCst);
        *inner.registry.write() = reg;
        *inner.load_problems.lock() = problems;
        Ok(())
    }
}

/// The generation of the store's last commit; 0 for a store from before generations.
pub(crate) fn read_commit_generation(db: &Database, region: &str) -> Result<u64> {
    let run = || -> std::result::Result<u64, redb::Error> {
        let txn = db.begin_read()?;
        match txn.open_table(records::META) {
            Ok(t) => Ok(t
                .get(records::KEY_COMMIT_GENERATION)?
                .map_or(0, |v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    };
    run().map_err(|e| store_error(region, "reading the commit generation", e))
}

/// Makes sure every table exists, so readers need not special-case a new pool.
pub(crate) fn create_tables(db: &Database, region: &str) -> Result<()> {
    let run = || -> std::result::Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(records::META)?;
        txn.open_table(records::VOLUMES)?;
        txn.open_table(records::SNAPSHOTS)?;
        txn.open_table(records::EXTENTS)?;
        txn.commit()?;
        Ok(())
    };
    run().map_err(|e| store_error(region, "creating metadata tables", e))
}

fn open_optional<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    def: redb::TableDefinition<K, V>,
) -> std::result::Result<Option<redb::ReadOnlyTable<K, V>>, redb::Error> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
