//! Taking backups: destinations (targets), snapshot and copy backups, backup sets, and the
//! jobs that copy and digest.
//!
//! A snapshot backup is one transaction: the snapshot, its record and its descriptor. Its
//! digest is computed afterwards by a job reading the (immutable) snapshot, so taking it costs
//! the same for any volume size. A copy backup first commits a point-in-time snapshot of the
//! source, the destination and a `copying` record together; a job copies the image (skipping
//! holes) and hashes it; then one transaction marks the record complete with its digest and
//! drops the point-in-time snapshot. The copied data is durable before that commit (a commit
//! syncs every device first).//!
//! Beside this file: `copy_job.rs` (the copy backup job) and `digest_job.rs` (the digest job).

use std::collections::BTreeSet;
use std::sync::Arc;

use arca_store::{Error, ErrorKind, GuardEffect, Result, VolumeInfo};

use crate::backups::{
    Backups, backup_guard, busy, invalid, pit_guard, pit_snapshot_name, snapshot_name,
};
use crate::catalog;
use crate::digest_store;
use crate::ids::{BackupId, JobId};
use crate::record::{BackupRecord, Destination, HostInfo, Method, Retention, Source, Status};
pub use crate::targets::{Target, TargetKind};

mod copy_job;
mod digest_job;

/// Volumes one backup set may hold.
pub const SET_VOLUMES_MAX: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub volumes: Vec<String>,
    pub to: Option<String>,
    pub method: Option<Method>,
    pub info: HostInfo,
    pub retention: Retention,
}

#[derive(Debug, Clone)]
pub struct Created {
    pub records: Vec<BackupRecord>,
    /// Jobs copying (copy backups) or digesting (snapshot backups), one per record.
    pub jobs: Vec<JobId>,
}

/// What backing up several volumes together starts from.
struct SetPlan {
    ids: Vec<BackupId>,
    set_id: Option<u64>,
    /// Last generation of each source (the backup takes the next).
    generations: Vec<u64>,
    /// The snapshot each source gets.
    names: Vec<String>,
    /// The point in time of each source's last generation, when the catalog has it.
    previous_pits: Vec<Option<u64>>,
}

/// The previous generation's point in time when `pit_ms` is earlier: the clock was moved back.
pub(crate) fn stepped_back(previous_pit_ms: Option<u64>, pit_ms: u64) -> Option<u64> {
    previous_pit_ms.filter(|&p| p > pit_ms)
}

/// Metadata one backup adds: its record twice (catalog and the destination's descriptor) with
/// what the host sent and room for its history, a row in each index, and its digest.
pub(crate) fn backup_room_bytes(info: &HostInfo, digest_bytes: u64) -> u64 {
    const RECORD_FIXED_BYTES: u64 = 1024;
    const HISTORY_ROOM_BYTES: u64 = 2048;
    const INDEX_ROW_BYTES: u64 = 64;
    let text: u64 = [
        &info.program,
        &info.host,
        &info.application,
        &info.content_id,
        &info.label,
        &info.description,
    ]
    .iter()
    .map(|t| t.as_ref().map_or(0, |t| t.len() as u64))
    .sum();
    let meta: u64 = info
        .meta
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();
    let record = RECORD_FIXED_BYTES + HISTORY_ROOM_BYTES + text + meta;
    let indexes = (8 + info.meta.len() as u64) * INDEX_ROW_BYTES + meta;
    2 * record + indexes + digest_bytes
}

impl Backups {
    /// Volumes that are the source of a live backup (not free to be overwritten).
    pub(crate) fn live_sources(&self) -> Result<BTreeSet<u64>> {
        let (records, _) = catalog::all(&self.pool)?;
        Ok(records
            .iter()
            .filter(|r| r.on_array())
            .map(|r| r.source.volume_id)
            .collect())
    }

    /// Why `candidate` cannot receive a copy of `source`, or `None` when it can.
    pub(crate) fn unfit_destination(
        &self,
        source: &VolumeInfo,
        candidate: &VolumeInfo,
        sources: &BTreeSet<u64>,
    ) -> Option<String> {
        let name = &candidate.name;
        if candidate.id == source.id {
            return Some(format!("{name} is the source"));
        }
        if candidate.size < source.size {
            return Some(format!(
                "{name} is {} bytes, smaller than {} ({} bytes)",
                candidate.size, source.name, source.size
            ));
        }
        if let Some(g) = &candidate.guard {
            return Some(format!("{name} is protected: {g}"));
        }
        if sources.contains(&candidate.id) {
            return Some(format!("{name} is the source of live backups"));
        }
        if candidate.snapshots > 0 {
            return Some(format!("{name} has snapshots"));
        }
        if let Some(p) = self.pairs.get()
            && let Some(r) = p
                .list()
                .into_iter()
                .find(|r| r.primary_id == candidate.id || r.secondary_id == candidate.id)
        {
            return Some(format!("{name} is in pair {}", r.name));
        }
        let hosts = self.hosts.connected(name);
        if !hosts.is_empty() {
            return Some(format!("{name} is in use by {}", hosts.join(", ")));
        }
        None
    }

    /// Metadata the digest of a new backup of `source` adds: its index, and the chunks that
    /// can differ from those the volume's newest snapshot backup shares (every chunk holding an
    /// extent written since); every chunk when there is no such snapshot.
    pub(crate) fn digest_room_bytes(&self, source: &VolumeInfo) -> u64 {
        let es = self.pool.extent_size();
        let full = digest_store::stored_bytes_max(source.referenced_bytes.div_ceil(es));
        let index = digest_store::index_bytes(source.size.div_ceil(es));
        let newest = self.pool.snapshots(&source.name).ok().and_then(|snaps| {
            snaps
                .into_iter()
                .rev()
                // A backup's snapshot carries its descriptor; other snapshots carry none.
                .find(|s| {
                    s.tag
                        .as_deref()
                        .is_some_and(|t| BackupRecord::decode(t).is_ok())
                })
        });
        let Some(newest) = newest else {
            return full;
        };
        let Ok(changed) = self.pool.changed_extents(&source.name, &newest.name) else {
            return full;
        };
        let mut chunks: Vec<u64> = changed
            .iter()
            .map(|l| l / digest_store::CHUNK_EXTENTS)
            .collect();
        chunks.dedup();
        let changed_bytes =
            digest_store::stored_bytes_max(chunks.len() as u64 * digest_store::CHUNK_EXTENTS);
        full.min(index + changed_bytes)
    }

    /// Takes a backup of one volume, or a backup set of several at one point in time.
    pub fn create(self: &Arc<Self>, req: CreateRequest) -> Result<Created> {
        if req.volumes.is_empty() {
            return Err(invalid("name at least one volume to back up"));
        }
        if req.volumes.len() > SET_VOLUMES_MAX {
            return Err(invalid(format!(
                "{} volumes; a backup set holds at most {SET_VOLUMES_MAX}",
                req.volumes.len()
            )));
        }
        let unique: BTreeSet<&String> = req.volumes.iter().collect();
        if unique.len() != req.volumes.len() {
            return Err(invalid("a volume is named twice"));
        }
        req.info.validate().map_err(invalid)?;
        let method = match (req.method, &req.to) {
            (Some(Method::Snapshot), Some(_)) => {
                return Err(invalid(
                    "a snapshot backup lives in a snapshot of its volume; a destination volume needs \
                     method copy",
                ));
            }
            (Some(m), _) => m,
            (None, Some(_)) => Method::Copy,
            (None, None) => Method::Snapshot,
        };
        if req.to.is_some() && req.volumes.len() > 1 {
            return Err(invalid(
                "a destination volume takes one source; back up one volume with it",
            ));
        }
        let mut sources = Vec::new();
        for v in &req.volumes {
            let s = self.pool.volume(v)?;
            if let Some(m) = self.restore_marker(s.id)? {
                // Its content is partly restored: no backup may call that an image.
                return Err(busy(format!(
                    "volume {v} is being restored from backup {}; back it up once the restore \
                     is done",
                    m.backup
                )));
            }
            sources.push(s);
        }
        if method == Method::Copy
            && let Some(to) = &req.to
            && let Some(pair) = self.pair_for(&sources[0], to)
        {
            // Its pair secondary: split it, nothing more to copy.
            return self.create_from_pair(&req, &sources[0], pair);
        }
        match method {
            Method::Snapshot => self.create_snapshots(&req, &sources),
            Method::Copy => self.create_copies(&req, &sources),
        }
    }

    /// A new record as a backup starts: `copying`, taken now, no digest yet.
    #[allow(clippy::too_many_arguments)] // one record's worth of fields, all needed
    pub(crate) fn base_record(
        &self,
        id: BackupId,
        source: &VolumeInfo,
        generation: u64,
        method: Method,
        destination: Destination,
        req: &CreateRequest,
        set_id: Option<u64>,
    ) -> BackupRecord {
        let now = self.now_ms();
        BackupRecord {
            id,
            source: Source {
                volume_id: source.id,
                volume_name: source.name.clone(),
                size: source.size,
            },
            generation,
            method,
            destination,
            point_in_time_ms: now,
            // Not the id's time: that runs ahead of the clock after it stepped back.
            started_ms: now,
            completed_ms: None,
            status: Status::Copying,
            status_reason: None,
            info: req.info.clone(),
            retention: req.retention.clone(),
            digest: None,
            logical_bytes: source.size,
            allocated_bytes: 0,
            set_id,
            history: Vec::new(),
            job: None,
            stepped_back_from_ms: None,
            vault_copies: Vec::new(),
            host_copies: Vec::new(),
            off_array_since_ms: None,
        }
    }

    /// The point in time of a volume's generation `generation`, if the catalog has it.
    pub(crate) fn point_in_time_of(&self, volume_id: u64, generation: u64) -> Result<Option<u64>> {
        if generation == 0 {
            return Ok(None);
        }
        Ok(catalog::by_generation(&self.pool, volume_id, generation)?.map(|r| r.point_in_time_ms))
    }

    /// Ids, set id, next generations and snapshot names for backing up `sources` together.
    /// Called under the catalog lock.
    fn plan_set(&self, sources: &[VolumeInfo], name: fn(BackupId) -> String) -> Result<SetPlan> {
        let ids: Vec<BackupId> = sources.iter().map(|_| self.new_id()).collect();
        let generations = self.pool.app_read(|r| {
            sources
                .iter()
                .map(|s| catalog::generation(r, s.id))
                .collect::<Result<Vec<u64>>>()
        })?;
        let previous_pits = sources
            .iter()
            .zip(&generations)
            .map(|(s, &g)| self.point_in_time_of(s.id, g))
            .collect::<Result<Vec<_>>>()?;
        Ok(SetPlan {
            set_id: (sources.len() > 1).then_some(ids[0].get()),
            names: ids.iter().map(|&id| name(id)).collect(),
            ids,
            generations,
            previous_pits,
        })
    }

    /// Snapshots every source at one instant (the store holds all their writes while it
    /// does) and returns that point in time, read once for the whole set.
    fn snapshot_set(
        &self,
        t: &mut arca_store::Txn<'_>,
        req: &CreateRequest,
        sources: &[VolumeInfo],
        names: &[String],
    ) -> Result<u64> {
        // Refused whole, before anything changes, when the metadata region is nearly full.
        let room: u64 = sources
            .iter()
            .map(|s| backup_room_bytes(&req.info, self.digest_room_bytes(s)))
            .sum();
        let what = match sources {
            [s] => format!("backing up {}", s.name),
            _ => format!("backing up {} volumes", sources.len()),
        };
        t.admit(&what, room)?;
        let items: Vec<(&str, &str)> = sources
            .iter()
            .zip(names)
            .map(|(s, n)| (s.name.as_str(), n.as_str()))
            .collect();
        t.create_snapshots(&items)?;
        Ok(self.now_ms())
    }

    fn create_snapshots(
        self: &Arc<Self>,
        req: &CreateRequest,
        sources: &[VolumeInfo],
    ) -> Result<Created> {
        self.create_snapshots_with(req, sources, &mut |_, _| {})
    }

    /// Snapshot backups, with `also` adding its own changes (and claims) to their transaction,
    /// under the catalog lock: a restore's markers go in with its undo point.
    pub(crate) fn create_snapshots_with(
        self: &Arc<Self>,
        req: &CreateRequest,
        sources: &[VolumeInfo],
        also: &mut dyn FnMut(&mut arca_store::Txn<'_>, &[BackupRecord]),
    ) -> Result<Created> {
        let mut records = Vec::new();
        {
            let _c = self.catalog_lock.lock();
            let SetPlan {
                ids,
                set_id,
                generations,
                names,
                previous_pits,
            } = self.plan_set(sources, snapshot_name)?;
            let mut t = self.pool.transaction();
            let pit_ms = self.snapshot_set(&mut t, req, sources, &names)?;
            for (i, s) in sources.iter().enumerate() {
                // What the snapshot will reference: the volume's now (the snapshot is planned,
                // not taken, until the commit).
                let referenced_bytes = self.pool.volume(&s.name)?.referenced_bytes;
                let mut r = self.base_record(
                    ids[i],
                    s,
                    generations[i] + 1,
                    Method::Snapshot,
                    Destination::Snapshot {
                        volume: s.name.clone(),
                        snapshot: names[i].clone(),
                    },
                    req,
                    set_id,
                );
                r.point_in_time_ms = pit_ms;
                r.stepped_back_from_ms = stepped_back(previous_pits[i], pit_ms);
                r.status = Status::Complete;
                r.completed_ms = Some(self.now_ms());
                r.allocated_bytes = referenced_bytes;
                catalog::put(&mut t, None, &r);
                catalog::set_generation(&mut t, s.id, r.generation);
                self.tag_destination(&mut t, &r)?;
                records.push(r);
            }
            self.mark_ids(&mut t);
            also(&mut t, &records);
            t.commit()?;
        }
        let mut jobs = Vec::new();
        for r in &records {
            jobs.push(self.start_digest(r.id)?);
        }
        Ok(Created { records, jobs })
    }

    /// Chooses or checks the destination volume of a copy of `source`.
    fn copy_destination(
        &self,
        source: &VolumeInfo,
        to: Option<&str>,
        sources: &BTreeSet<u64>,
    ) -> Result<(Option<VolumeInfo>, Option<u32>)> {
        if let Some(to) = to {
            let v = self.pool.volume(to)?;
            if let Some(why) = self.unfit_destination(source, &v, sources) {
                let message = format!("cannot copy {} into {to}: {why}", source.name);
                // Too small is a bad request; the rest are states that may change.
                return Err(if v.size < source.size {
                    invalid(message)
                } else {
                    busy(message)
                });
            }
            let placement = v.placement;
            return Ok((Some(v), placement));
        }
        let best = self
            .targets(&source.name)?
            .into_iter()
            .find(|t| t.kind == TargetKind::NewVolume);
        match best {
            Some(t) => Ok((None, t.device)),
            None => Err(Error::new(
                ErrorKind::NoSpace,
                format!(
                    "no device has room for a copy of {} ({} bytes allocated)",
                    source.name, source.referenced_bytes
                ),
            )),
        }
    }

    fn create_copies(
        self: &Arc<Self>,
        req: &CreateRequest,
        sources: &[VolumeInfo],
    ) -> Result<Created> {
        let mut records = Vec::new();
        {
            let _c = self.catalog_lock.lock();
            let live = self.live_sources()?;
            let mut plans = Vec::new();
            for s in sources {
                plans.push(self.copy_destination(s, req.to.as_deref(), &live)?);
            }
            let SetPlan {
                ids,
                set_id,
                generations,
                names: pits,
                previous_pits,
            } = self.plan_set(sources, pit_snapshot_name)?;
            let mut t = self.pool.transaction();
            let pit_ms = self.snapshot_set(&mut t, req, sources, &pits)?;
            for (i, s) in sources.iter().enumerate() {
                let (existing, device) = &plans[i];
                let (dest, dest_id, created) = match existing {
                    Some(v) => (v.name.clone(), v.id, false),
                    None => {
                        let name = snapshot_name(ids[i]);
                        let id = t.create_volume(&name, s.size, *device)?;
                        (name, id, true)
                    }
                };
                let referenced_bytes = self.pool.volume(&s.name)?.referenced_bytes;
                let mut r = self.base_record(
                    ids[i],
                    s,
                    generations[i] + 1,
                    Method::Copy,
                    Destination::Volume {
                        volume: dest.clone(),
                        volume_id: dest_id,
                        device: *device,
                        created,
                    },
                    req,
                    set_id,
                );
                r.point_in_time_ms = pit_ms;
                r.stepped_back_from_ms = stepped_back(previous_pits[i], pit_ms);
                r.allocated_bytes = referenced_bytes;
                catalog::put(&mut t, None, &r);
                catalog::set_generation(&mut t, s.id, r.generation);
                t.set_volume_tag(&dest, Some(r.encode()))?;
                let guard = backup_guard(&r, GuardEffect::ALL).expect("a copying backup is live");
                t.add_volume_guard(&dest, guard)?;
                t.add_snapshot_guard(&s.name, &pits[i], pit_guard(r.id))?;
                records.push(r);
            }
            self.mark_ids(&mut t);
            t.commit()?;
        }
        // Whatever the copy jobs do, hosts may stop waiting: the copies do not need them.
        if let Some(to) = &req.to {
            let n = self.hosts.disconnect(to);
            debug_assert_eq!(n, 0, "a destination in use is refused above");
        }
        let mut jobs = Vec::new();
        for r in &mut records {
            match self.start_copy(r.id) {
                Ok(j) => {
                    jobs.push(j);
                    // The record names its job while the copy runs (a second, small commit:
                    // the job exists only once the record does). The job may already be done.
                    // The backup exists from the commit above; a failure here only leaves
                    // the record without its job's id, so it is logged, not returned.
                    let updated = self.update(r.id, |x| {
                        if x.status == Status::Copying {
                            x.job = Some(j);
                        }
                        Ok(())
                    });
                    match updated {
                        Ok(u) => *r = u,
                        Err(e) => tracing::warn!(backup = %r.id, "naming the copy job {j}: {e}"),
                    }
                }
                Err(e) => {
                    self.fail_copy(r.id, &format!("the copy job could not start: {e}"))?;
                    return Err(e);
                }
            }
        }
        Ok(Created { records, jobs })
    }
}
