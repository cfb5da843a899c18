//! Loading a pool from its metadata store: the records, the maps, the allocator and the
//! counters are rebuilt in memory; inconsistencies found on the way are kept for fsck.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::RwLock;
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::error::{Error, ErrorKind, Result};
use crate::extent_map::{Entry, ExtentMap};
use crate::family::{Family, FamilyHandle, Snap};
use crate::fsck::Problem;
use crate::meta_guard::store_error;
use crate::pool::{Pool, Registry};
use crate::records::{self, SnapshotRecord, VolumeRecord};

/// Inconsistencies found while loading, kept for fsck.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, code: &'static str, message: String) {
        self.0.push(Problem { code, message });
    }
}

/// Owner id (a volume's or a snapshot's) -> (family id, snapshot id or None).
type Owners = HashMap<u64, (u64, Option<u64>)>;

impl Pool {
    /// Builds memory from the store: families, snapshots, maps, allocator, counters.
    pub(crate) fn load(&self, db: &Database) -> Result<()> {
        let inner = &self.inner;
        let e = |err: redb::Error| store_error(&inner.meta_label, "loading the pool", err);
        let txn = db.begin_read().map_err(|x| e(x.into()))?;
        let mut problems = Problems::default();
        let next_id = read_next_id(&txn).map_err(e)??;
        let volumes = read_records(
            &txn,
            records::VOLUMES,
            VolumeRecord::decode,
            "volume",
            &mut problems,
        )
        .map_err(e)?;
        let snapshots = read_records(
            &txn,
            records::SNAPSHOTS,
            SnapshotRecord::decode,
            "snapshot",
            &mut problems,
        )
        .map_err(e)?;
        let (mut families, owners) = build_families(&volumes, &snapshots, &mut problems);
        self.load_entries(&txn, &mut families, &owners, &mut problems)
            .map_err(e)?;
        for f in families.values_mut() {
            recount(f);
        }
        let reg = self.register(families, &volumes, &mut problems);
        let max_id = volumes
            .keys()
            .chain(snapshots.keys())
            .copied()
            .max()
            .unwrap_or(0);
        let next_id = if next_id <= max_id {
            problems.add(
                "record",
                format!("next id {next_id} is not above the largest id in use {max_id}"),
            );
            max_id + 1
        } else {
            next_id
        };
        inner.next_id.store(next_id, Ordering::SeqCst);
        *inner.registry.write() = reg;
        *inner.load_problems.lock() = problems.0;
        Ok(())
    }

    /// Reads every map entry into its family and marks its extent used in the allocator.
    fn load_entries(
        &self,
        txn: &redb::ReadTransaction,
        families: &mut BTreeMap<u64, Family>,
        owners: &Owners,
        problems: &mut Problems,
    ) -> std::result::Result<(), redb::Error> {
        let inner = &self.inner;
        let Some(t) = open_optional(txn, records::EXTENTS)? else {
            return Ok(());
        };
        let mut alloc = inner.alloc.lock();
        for row in t.iter()? {
            let (k, v) = row?;
            let (owner, l) = k.value();
            let (raw, birth) = v.value();
            let Some(entry) = Entry::from_parts(raw, birth) else {
                problems.add(
                    "entry",
                    format!("owner {owner} extent {l}: empty entry stored"),
                );
                continue;
            };
            let Some(&(fid, sid)) = owners.get(&owner) else {
                problems.add(
                    "orphan-entry",
                    format!("entry ({owner}, {l}) has no volume or snapshot"),
                );
                continue;
            };
            if let Some(p) = entry.phys() {
                let valid = (p.device() as usize) < inner.devices.len()
                    && p.index() < inner.superblocks[p.device() as usize].extent_count;
                if !valid {
                    problems.add(
                        "extent-out-of-range",
                        format!("owner {owner} extent {l} points past its device: {p:?}"),
                    );
                    continue;
                }
                if !alloc.mark_used(p) {
                    problems.add(
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
        Ok(())
    }

    /// Handles for the families in id order (a clone's parent, always older, is registered
    /// before it), with their referenced counts, which read through the parent.
    fn register(
        &self,
        families: BTreeMap<u64, Family>,
        volumes: &BTreeMap<u64, VolumeRecord>,
        problems: &mut Problems,
    ) -> Registry {
        let es = self.inner.extent_size;
        let mut reg = Registry::default();
        for (id, f) in families {
            let parent = match volumes[&id].parent {
                None => None,
                Some((pid, sid)) => match reg.by_id.get(&pid) {
                    Some(h) => Some((h.clone(), sid)),
                    None => {
                        problems.add(
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
                problems.add(
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
                problems.add("record", format!("two volumes are named {name}"));
            }
            reg.by_name.insert(name, handle.clone());
            reg.by_id.insert(id, handle);
        }
        reg
    }
}

/// The next id to hand out (1 in a new store), or the error when the store's format is not
/// this version's. The inner result is the format check, the outer one the store read.
fn read_next_id(txn: &redb::ReadTransaction) -> std::result::Result<Result<u64>, redb::Error> {
    let t = match txn.open_table(records::META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Ok(1)),
        Err(x) => return Err(x.into()),
    };
    let next_id = t.get(records::KEY_NEXT_ID)?.map_or(1, |v| v.value());
    if let Some(v) = t.get(records::KEY_FORMAT)?
        && v.value() != records::FORMAT
    {
        return Ok(Err(Error::new(
            ErrorKind::Corrupt,
            format!("metadata format {} is not supported", v.value()),
        )));
    }
    Ok(Ok(next_id))
}

/// Every record of a table of records; one that does not decode is a problem.
fn read_records<R>(
    txn: &redb::ReadTransaction,
    table: redb::TableDefinition<u64, &[u8]>,
    decode: impl Fn(&[u8]) -> std::result::Result<R, String>,
    what: &str,
    problems: &mut Problems,
) -> std::result::Result<BTreeMap<u64, R>, redb::Error> {
    let mut out = BTreeMap::new();
    let Some(t) = open_optional(txn, table)? else {
        return Ok(out);
    };
    for row in t.iter()? {
        let (k, v) = row?;
        match decode(v.value()) {
            Ok(r) => {
                out.insert(k.value(), r);
            }
            Err(m) => problems.add("record", format!("{what} record {}: {m}", k.value())),
        }
    }
    Ok(out)
}

/// The families of the volume records, with their snapshots (maps still empty), and who owns
/// each owner id.
fn build_families(
    volumes: &BTreeMap<u64, VolumeRecord>,
    snapshots: &BTreeMap<u64, SnapshotRecord>,
    problems: &mut Problems,
) -> (BTreeMap<u64, Family>, Owners) {
    let mut families: BTreeMap<u64, Family> =
        volumes.iter().map(|(&id, r)| (id, family_of(r))).collect();
    let mut owners: Owners = volumes.keys().map(|&id| (id, (id, None))).collect();
    for (&sid, r) in snapshots {
        match families.get_mut(&r.volume) {
            Some(f) => {
                f.snaps.push(snap_of(sid, r));
                owners.insert(sid, (r.volume, Some(sid)));
            }
            None => problems.add(
                "orphan-snapshot",
                format!(
                    "snapshot {sid} ({}) names missing volume {}",
                    r.name, r.volume
                ),
            ),
        }
    }
    (families, owners)
}

/// A volume's family as its record describes it, its maps and counters still empty.
fn family_of(r: &VolumeRecord) -> Family {
    Family {
        gen_current: r.gen_current,
        tag: r.tag.clone(),
        guards: r.guards.clone(),
        ..Family::new(r.name.clone(), r.size, r.placement, r.created_unix)
    }
}

/// A snapshot as its record describes it, its delta map and counters still empty.
fn snap_of(sid: u64, r: &SnapshotRecord) -> Snap {
    Snap {
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
    }
}

/// A family's counters, counted from its maps.
fn recount(f: &mut Family) {
    (f.live_real, f.live_unique) = f.recount_live();
    for i in 0..f.snaps.len() {
        f.snaps[i].delta_real = f.snaps[i]
            .delta
            .iter()
            .filter(|(_, e)| e.phys().is_some())
            .count() as u64;
        f.recount_snap_unique(i);
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
