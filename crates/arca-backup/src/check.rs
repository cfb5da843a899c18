//! Catalog check (the catalog against the destinations and its own indexes) and rebuild (the
//! catalog reconstructed from the descriptors on the destinations).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use arca_store::{GuardEffect, GuardOwner, Result};
use serde::Serialize;

use crate::backups::{Backups, backup_guard};
use crate::catalog::{self, BACKUPS, CATALOG_TABLES};
use crate::digest;
use crate::digest_store;
use crate::ids::BackupId;
use crate::record::{BackupRecord, Destination, Status};

/// Volume id to backup generation.
type Generations = BTreeMap<u64, u64>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogProblem {
    pub code: &'static str,
    pub backup: Option<BackupId>,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CatalogReport {
    pub records: usize,
    pub live: usize,
    pub destinations: usize,
    pub problems: Vec<CatalogProblem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    /// Records reconstructed from descriptors.
    pub from_descriptors: usize,
    /// Records of backups without a destination (deleted, failed, living only in vaults) kept
    /// from the old catalog.
    pub kept_history: usize,
    pub unreadable_descriptors: Vec<String>,
}

/// A destination found in the pool, with the descriptor it carries.
struct Found {
    name: String,
    /// The snapshot (volume id, name) or volume id, to match against records.
    place: Place,
    descriptor: std::result::Result<BackupRecord, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    Snapshot(u64, String),
    Volume(u64),
}

fn place_of(r: &BackupRecord) -> Place {
    match &r.destination {
        Destination::Snapshot { snapshot, .. } => {
            Place::Snapshot(r.source.volume_id, snapshot.clone())
        }
        Destination::Volume { volume_id, .. } => Place::Volume(*volume_id),
    }
}

/// The problems a check has found so far.
#[derive(Default)]
struct Problems(Vec<CatalogProblem>);

impl Problems {
    fn add(&mut self, code: &'static str, backup: Option<BackupId>, message: String) {
        self.0.push(CatalogProblem {
            code,
            backup,
            message,
        });
    }
}

/// Destinations whose descriptor names no record, a record that lives elsewhere, or one that
/// is gone.
fn check_orphans(records: &[BackupRecord], found: &[Found], problems: &mut Problems) {
    let by_id: BTreeMap<BackupId, &BackupRecord> = records.iter().map(|r| (r.id, r)).collect();
    for f in found {
        let orphan = match &f.descriptor {
            Ok(d) => match by_id.get(&d.id) {
                None => Some(format!(
                    "{} carries the descriptor of backup {}, which the catalog does not have",
                    f.name, d.id
                )),
                Some(r) if place_of(r) != f.place => Some(format!(
                    "{} carries the descriptor of backup {}, whose destination is elsewhere",
                    f.name, d.id
                )),
                Some(r) if !r.status.live() && r.status != Status::Failed => Some(format!(
                    "{} carries the descriptor of backup {}, which is {}",
                    f.name,
                    d.id,
                    r.status.as_str()
                )),
                Some(r) if r.off_array_since_ms.is_some() => Some(format!(
                    "{} carries the descriptor of backup {}, whose image on the array was \
                     deleted (it lives in its vault copies)",
                    f.name, d.id
                )),
                Some(_) => None,
            },
            Err(e) => Some(format!("{} carries an unreadable descriptor: {e}", f.name)),
        };
        if let Some(m) = orphan {
            problems.add(
                "orphan-destination",
                f.descriptor.as_ref().ok().map(|d| d.id),
                m,
            );
        }
    }
}

impl Backups {
    fn destinations(&self) -> Result<Vec<Found>> {
        let mut out = Vec::new();
        for v in self.pool.volumes() {
            if let Some(tag) = &v.tag {
                out.push(Found {
                    name: v.name.clone(),
                    place: Place::Volume(v.id),
                    descriptor: BackupRecord::decode(tag),
                });
            }
            for s in self.pool.snapshots(&v.name)? {
                if let Some(tag) = &s.tag {
                    out.push(Found {
                        name: format!("{}@{}", v.name, s.name),
                        place: Place::Snapshot(v.id, s.name.clone()),
                        descriptor: BackupRecord::decode(tag),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Checks the catalog against the destinations, the digests and its own indexes.
    pub fn check(&self) -> Result<CatalogReport> {
        let _c = self.catalog_lock.lock();
        let mut problems = Problems::default();
        let (records, bad) = catalog::all(&self.pool)?;
        for (id, e) in bad {
            problems.add("record-unreadable", Some(id), format!("backup {id}: {e}"));
        }
        let found = self.destinations()?;
        let by_place: BTreeMap<Place, &Found> =
            found.iter().map(|f| (f.place.clone(), f)).collect();
        for r in &records {
            // A backup living only in vaults has nothing on the array to check.
            if r.on_array() || r.status == Status::Failed {
                self.check_record(r, by_place.get(&place_of(r)).copied(), &mut problems)?;
            }
        }
        check_orphans(&records, &found, &mut problems);
        // Shared digest chunks: each counts exactly the index entries that name it.
        for (chunk, stored, counted) in digest_store::recount(&self.pool)? {
            problems.add(
                "digest-refcount",
                None,
                format!(
                    "digest chunk {chunk} counts {stored} references; the backups' digest \
                     indexes name it {counted} times"
                ),
            );
        }
        self.check_indexes(&records, &mut problems)?;
        self.check_generations(&records, &mut problems)?;
        Ok(CatalogReport {
            records: records.len(),
            live: records.iter().filter(|r| r.on_array()).count(),
            destinations: found.len(),
            problems: problems.0,
        })
    }

    /// A live or failed record against its destination's descriptor and its stored digest.
    fn check_record(
        &self,
        r: &BackupRecord,
        destination: Option<&Found>,
        problems: &mut Problems,
    ) -> Result<()> {
        match destination {
            None if r.status.live() => problems.add(
                "missing-destination",
                Some(r.id),
                format!(
                    "backup {} ({} of {}): its destination {} is missing",
                    r.id,
                    r.method.as_str(),
                    r.source.volume_name,
                    describe(&r.destination)
                ),
            ),
            None => {}
            Some(f) => match &f.descriptor {
                Ok(d) if d == r => {}
                Ok(d) if d.id != r.id => problems.add(
                    "descriptor-mismatch",
                    Some(r.id),
                    format!(
                        "backup {}: destination {} carries the descriptor of backup {}",
                        r.id, f.name, d.id
                    ),
                ),
                Ok(_) => problems.add(
                    "descriptor-mismatch",
                    Some(r.id),
                    format!(
                        "backup {}: the descriptor on {} differs from the catalog record",
                        r.id, f.name
                    ),
                ),
                Err(e) => problems.add(
                    "descriptor-unreadable",
                    Some(r.id),
                    format!("backup {}: descriptor on {}: {e}", r.id, f.name),
                ),
            },
        }
        let Some(info) = r.digest.as_ref().filter(|_| r.status == Status::Complete) else {
            return Ok(());
        };
        match digest_store::load(&self.pool, r.id)? {
            Ok(hashes) if digest::root(info.extent_size, r.source.size, &hashes) == info.root => {}
            Ok(hashes) => problems.add(
                "digest-mismatch",
                Some(r.id),
                format!(
                    "backup {}: its {} stored extent hashes do not give the recorded digest root",
                    r.id,
                    hashes.len()
                ),
            ),
            Err(e) => problems.add(
                "digest-mismatch",
                Some(r.id),
                format!("backup {}: {e}", r.id),
            ),
        }
        Ok(())
    }

    /// Indexes: every record's rows exist, and every row names a record that has it.
    fn check_indexes(&self, records: &[BackupRecord], problems: &mut Problems) -> Result<()> {
        let mut expected: BTreeSet<(&'static str, Vec<u8>)> = BTreeSet::new();
        for r in records {
            expected.extend(catalog::index_keys(r));
        }
        let mut present: BTreeSet<(&'static str, Vec<u8>)> = BTreeSet::new();
        for table in CATALOG_TABLES {
            if table == BACKUPS || table == catalog::GENERATIONS {
                continue;
            }
            self.pool
                .app_scan(table, Bound::Unbounded, Bound::Unbounded, false, |k, _| {
                    present.insert((table, k.to_vec()));
                    true
                })?;
        }
        for (table, key) in expected.difference(&present) {
            problems.add(
                "index-missing",
                id_of(key),
                format!(
                    "index {table} lacks the row of backup {}",
                    id_of(key).unwrap_or_default()
                ),
            );
        }
        for (table, key) in present.difference(&expected) {
            problems.add(
                "index-orphan",
                id_of(key),
                format!(
                    "index {table} has a row for backup {} that its record does not have",
                    id_of(key).unwrap_or_default()
                ),
            );
        }
        Ok(())
    }

    /// Each volume's newest backup generation among `records`, and the generation counters
    /// the catalog stores for those volumes.
    fn generations<'a>(
        &self,
        records: impl IntoIterator<Item = &'a BackupRecord>,
    ) -> (Generations, Result<Generations>) {
        let mut generations = Generations::new();
        for r in records {
            let g = generations.entry(r.source.volume_id).or_default();
            *g = (*g).max(r.generation);
        }
        let stored = self.pool.app_read(|rd| {
            generations
                .keys()
                .map(|v| catalog::generation(rd, *v).map(|g| (*v, g)))
                .collect::<Result<Generations>>()
        });
        (generations, stored)
    }

    /// Each volume's generation counter is at least its newest backup's generation.
    fn check_generations(&self, records: &[BackupRecord], problems: &mut Problems) -> Result<()> {
        let (generations, stored) = self.generations(records);
        let stored = stored?;
        for (volume, g) in stored {
            if g < generations[&volume] {
                problems.add(
                    "generation",
                    None,
                    format!(
                        "volume id {volume}: generation counter {g} is below its newest backup's \
                         generation {}",
                        generations[&volume]
                    ),
                );
            }
        }
        Ok(())
    }

    /// Rebuilds the catalog from the descriptors on the destinations. With `discard`, the old
    /// catalog is not read at all (for a damaged one: backups living only in vaults are then
    /// brought back by importing the vault); otherwise records without a destination (deleted,
    /// failed, living only in vaults) are kept.
    pub fn rebuild(&self, discard: bool) -> Result<RebuildReport> {
        let report = {
            let _c = self.catalog_lock.lock();
            let found = self.destinations()?;
            let mut records: BTreeMap<BackupId, BackupRecord> = BTreeMap::new();
            let mut unreadable = Vec::new();
            for f in found {
                match f.descriptor {
                    Ok(d) => {
                        records.insert(d.id, d);
                    }
                    Err(e) => unreadable.push(format!("{}: {e}", f.name)),
                }
            }
            let from_descriptors = records.len();
            let mut kept_history = 0;
            if !discard {
                let (old, _) = catalog::all(&self.pool)?;
                for r in old {
                    // Besides history, backups living only in vaults: no descriptor carries them.
                    if !records.contains_key(&r.id)
                        && (matches!(
                            r.status,
                            Status::Deleted | Status::Failed | Status::Consumed
                        ) || (r.status == Status::Complete && r.off_array_since_ms.is_some()))
                    {
                        records.insert(r.id, r);
                        kept_history += 1;
                    }
                }
            }
            let (generations, old_generations) = self.generations(records.values());
            // Generations never go back, even past backups whose records are gone.
            let old_generations = match (discard, old_generations) {
                (false, Ok(v)) => v,
                _ => Generations::new(),
            };
            let mut expected: BTreeMap<(&'static str, Vec<u8>), Vec<u8>> = BTreeMap::new();
            for r in records.values() {
                for key in catalog::index_keys(r) {
                    expected.insert(key, Vec::new());
                }
                expected.insert((BACKUPS, r.id.to_be_bytes().to_vec()), r.encode());
            }
            for (v, g) in &generations {
                let g = (*g).max(old_generations.get(v).copied().unwrap_or(0));
                expected.insert(
                    (catalog::GENERATIONS, v.to_be_bytes().to_vec()),
                    g.to_be_bytes().to_vec(),
                );
            }
            // Only the rows that differ are written: rewriting a whole large catalog would
            // need as much free metadata room again, which a nearly full region lacks.
            let mut stale = Vec::new();
            for table in CATALOG_TABLES {
                self.pool
                    .app_scan(table, Bound::Unbounded, Bound::Unbounded, false, |k, v| {
                        let key = (table, k.to_vec());
                        if expected.get(&key).is_some_and(|want| want == v) {
                            expected.remove(&key);
                        } else if !expected.contains_key(&key) {
                            stale.push(key);
                        }
                        true
                    })?;
            }
            let mut t = self.pool.transaction();
            for (table, key) in stale {
                t.delete(table, key);
            }
            for ((table, key), value) in expected {
                t.put(table, key, value);
            }
            self.settle_backup_guards(&mut t, &records)?;
            t.commit()?;
            RebuildReport {
                from_descriptors,
                kept_history,
                unreadable_descriptors: unreadable,
            }
        };
        Ok(report)
    }
}

fn id_of(key: &[u8]) -> Option<BackupId> {
    key.len()
        .checked_sub(8)
        .map(|i| BackupId(u64::from_be_bytes(key[i..].try_into().expect("8 bytes"))))
}

fn describe(d: &Destination) -> String {
    match d {
        Destination::Snapshot { volume, snapshot } => format!("snapshot {volume}@{snapshot}"),
        Destination::Volume { volume, .. } => format!("volume {volume}"),
    }
}

impl Backups {
    /// Plans, inside a rebuild's transaction, the backup guards its records want: each live
    /// backup's on its destination, and none left by a backup the catalog no longer holds as
    /// live (a copy's point-in-time snapshot keeps its guard while the copy is live).
    fn settle_backup_guards(
        &self,
        t: &mut arca_store::Txn<'_>,
        records: &BTreeMap<BackupId, BackupRecord>,
    ) -> Result<()> {
        let live = |id: u64| records.get(&BackupId(id)).is_some_and(|r| r.on_array());
        for v in self.pool.volumes() {
            for g in &v.guards {
                if let GuardOwner::Backup(id) = g.owner
                    && !live(id)
                {
                    t.remove_volume_guard(&v.name, g.owner)?;
                }
            }
            for s in self.pool.snapshots(&v.name)? {
                for g in &s.guards {
                    if let GuardOwner::Backup(id) = g.owner
                        && !live(id)
                    {
                        t.remove_snapshot_guard(&v.name, &s.name, g.owner)?;
                    }
                }
            }
        }
        // Only guards that are missing: rewriting every record would need metadata room a
        // nearly full region lacks.
        for r in records.values().filter(|r| r.on_array()) {
            match &r.destination {
                Destination::Snapshot { snapshot, .. } => {
                    if let Some(v) = self.volume_by_id(r.source.volume_id)
                        && t.snapshot_exists(&v.name, snapshot)
                        && let Some(g) = backup_guard(r, GuardEffect::NO_DELETE)
                        && !t.guards(&v.name, Some(snapshot))?.contains(&g)
                    {
                        t.add_snapshot_guard(&v.name, snapshot, g)?;
                    }
                }
                Destination::Volume { volume_id, .. } => {
                    if let Some(v) = self.volume_by_id(*volume_id)
                        && let Some(g) = backup_guard(r, GuardEffect::ALL)
                        && !t.guards(&v.name, None)?.contains(&g)
                    {
                        t.add_volume_guard(&v.name, g)?;
                    }
                }
            }
        }
        Ok(())
    }
}
