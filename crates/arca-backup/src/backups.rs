//! The backup service: the array's side of every backup command. Operations live in
//! `create.rs`, `restore.rs`, `verify.rs`, `expire.rs` and `check.rs`; this file holds the
//! service, its recovery at open, and the helpers they share.
//!
//! Invariants:
//! - a record and the destination it describes are created, changed and removed in one
//!   metadata transaction ([`arca_store::Txn`]), the destination's tag holding a copy of the
//!   record (its descriptor);
//! - every live backup's destination is guarded in the store: hosts get it read-only and
//!   volume/snapshot commands refuse to delete or resize it, naming the backup;
//! - catalog changes are serialized by `catalog_lock`, taken before the store's commit lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arca_store::{
    Error, ErrorKind, Export, Guard, GuardEffect, GuardOwner, Pool, Result, VolumeInfo,
};
use parking_lot::Mutex;

use crate::catalog;
use crate::ids::{BackupId, JobId};
use crate::jobs::JobManager;
use crate::record::{BackupRecord, Destination, Status};

/// What the array knows about hosts connected over NBD (implemented by the daemon).
pub trait Hosts: Send + Sync {
    /// Peers connected to the export.
    fn connected(&self, export: &str) -> Vec<String>;
    /// Disconnects them; returns how many.
    fn disconnect(&self, export: &str) -> usize;
    /// Waits until none is connected; false on timeout.
    fn wait_disconnected(&self, export: &str, timeout: Duration) -> bool;
}

/// How long a forced operation waits for the hosts it disconnected to go.
pub const DISCONNECT_WAIT: Duration = Duration::from_secs(10);

/// How long a refusal for connected hosts waits for connections already closing.
const CLOSING_GRACE: Duration = Duration::from_millis(250);

/// Makes sure no host uses `exports` before they change under it or go away: refused (busy,
/// naming how many connections and from where) while any is connected, unless `force`, which
/// disconnects them and waits until they are gone. `what` names the target in messages
/// ("volume db") and `action` the command ("delete": "... or delete with --force").
pub fn free_exports(
    hosts: &dyn Hosts,
    what: &str,
    exports: &[String],
    force: bool,
    action: &str,
) -> Result<()> {
    let connected = || -> Vec<String> { exports.iter().flat_map(|e| hosts.connected(e)).collect() };
    let mut peers = connected();
    if peers.is_empty() {
        return Ok(());
    }
    if !force {
        // A client that has just closed its connection is still listed until the server has
        // read the end of it: give such closes a moment before counting them.
        let deadline = std::time::Instant::now() + CLOSING_GRACE;
        for e in exports {
            hosts.wait_disconnected(
                e,
                deadline.saturating_duration_since(std::time::Instant::now()),
            );
        }
        peers = connected();
        if peers.is_empty() {
            return Ok(());
        }
        return Err(busy(format!(
            "{what} has {} host connection(s) ({}); disconnect them first, or {action} with \
             force to disconnect them",
            peers.len(),
            peers.join(", ")
        )));
    }
    for e in exports {
        hosts.disconnect(e);
        if !hosts.wait_disconnected(e, DISCONNECT_WAIT) {
            return Err(busy(format!(
                "hosts of {e} did not disconnect within {} s",
                DISCONNECT_WAIT.as_secs()
            )));
        }
    }
    Ok(())
}

/// No data path: for tools and tests that run the backup layer alone.
pub struct NoHosts;

impl Hosts for NoHosts {
    fn connected(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn disconnect(&self, _: &str) -> usize {
        0
    }
    fn wait_disconnected(&self, _: &str, _: Duration) -> bool {
        true
    }
}

/// The wall clock in milliseconds since the epoch. Replaceable so that tests can script a
/// calendar of backups.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(now_ms)
}

pub struct Backups {
    pub(crate) pool: Pool,
    pub(crate) clock: Clock,
    pub(crate) jobs: Arc<JobManager>,
    pub(crate) hosts: Arc<dyn Hosts>,
    pub(crate) catalog_lock: Mutex<()>,
    last_id: Mutex<u64>,
    /// Digest jobs by backup, so verification can wait for a digest still being computed.
    pub(crate) digest_jobs: Mutex<std::collections::HashMap<BackupId, JobId>>,
    pub(crate) pairs: crate::pair_backups::PairsSlot,
    /// Backups that running operations read: deleting them is refused.
    uses: Arc<Mutex<Uses>>,
    /// Set by [`Backups::stop`]: running restores stop and are resumed at the next start.
    pub(crate) stopping: AtomicBool,
    /// Restore jobs started by this process, for [`Backups::stop`].
    pub(crate) restore_jobs: Mutex<Vec<JobId>>,
}

/// Who reads which backups: operations register while they run (in memory, since they are
/// jobs of this process; interrupted restores register again when recovered at open).
#[derive(Default)]
struct Uses {
    next_token: u64,
    by_token: HashMap<u64, (Vec<BackupId>, String)>,
}

/// One operation's claim on backups; dropping it ends the claim.
pub(crate) struct UseGuard {
    uses: Arc<Mutex<Uses>>,
    token: u64,
}

impl UseGuard {
    /// What the error refusing a deletion names (once the job has an id).
    pub(crate) fn describe(&self, what: String) {
        if let Some(u) = self.uses.lock().by_token.get_mut(&self.token) {
            u.1 = what;
        }
    }

    /// Claims more backups (an undo point taken by the operation).
    pub(crate) fn add(&self, ids: &[BackupId]) {
        if let Some(u) = self.uses.lock().by_token.get_mut(&self.token) {
            u.0.extend_from_slice(ids);
        }
    }
}

impl Drop for UseGuard {
    fn drop(&mut self) {
        self.uses.lock().by_token.remove(&self.token);
    }
}

pub(crate) use crate::time::now_ms;

pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

pub(crate) fn busy(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Busy, message)
}

pub(crate) fn backup_not_found(id: BackupId) -> Error {
    Error::new(ErrorKind::NotFound, format!("backup {id} does not exist"))
}

/// Name of a snapshot backup's destination, and of a copy backup's point-in-time snapshot.
pub fn snapshot_name(id: BackupId) -> String {
    format!("backup-{id}")
}

pub fn pit_snapshot_name(id: BackupId) -> String {
    format!("backup-{id}-pit")
}

/// Why an operation reading a backup's image on the array (`verb`: restored, verified...)
/// cannot: the array no longer holds it, only its vault copies do.
pub(crate) fn off_array_refusal(r: &BackupRecord, verb: &str) -> Option<Error> {
    r.off_array_since_ms.map(|_| {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "backup {} cannot be {verb} from the array: its image here was deleted (or it \
                 was imported); it lives in vault(s) {}",
                r.id,
                r.vault_names().join(", ")
            ),
        )
    })
}

/// The guard text: what volume and snapshot commands say when they refuse.
pub(crate) fn guard_text(r: &BackupRecord) -> String {
    match r.status {
        Status::Copying => format!("destination of backup {} (copy in progress)", r.id),
        _ => format!("holds backup {}", r.id),
    }
}

/// The guard a live backup puts on its destination (`effect`: every effect on a volume, no
/// delete on a snapshot); `None` once it is no longer live.
pub(crate) fn backup_guard(r: &BackupRecord, effect: GuardEffect) -> Option<Guard> {
    r.on_array()
        .then(|| Guard::new(GuardOwner::Backup(r.id.get()), effect, guard_text(r)))
}

/// The guard a copy backup puts on its point-in-time snapshot while the copy runs.
pub(crate) fn pit_guard(id: BackupId) -> Guard {
    Guard::new(
        GuardOwner::Backup(id.get()),
        GuardEffect::NO_DELETE,
        format!("point-in-time image of backup {id} (copy in progress)"),
    )
}

/// The guard of an in-place restore of `volume_id` from `backup`.
pub(crate) fn restore_guard(volume_id: u64, why: &str) -> Guard {
    Guard::new(
        GuardOwner::Restore(volume_id),
        GuardEffect::ALL,
        format!("being restored{why}"),
    )
}

impl Backups {
    /// Opens the service on a pool: copies that a stop interrupted are marked failed and
    /// cleaned up, digests not yet computed are restarted, and destinations are guarded.
    pub fn open(pool: Pool, jobs: Arc<JobManager>, hosts: Arc<dyn Hosts>) -> Result<Arc<Backups>> {
        Backups::open_with_clock(pool, jobs, hosts, system_clock())
    }

    pub fn open_with_clock(
        pool: Pool,
        jobs: Arc<JobManager>,
        hosts: Arc<dyn Hosts>,
        clock: Clock,
    ) -> Result<Arc<Backups>> {
        let (records, _bad) = catalog::all(&pool)?;
        // Ids only grow: past every record, and past every id given before, whose record a
        // rebuild may have dropped (the clock may stand earlier now).
        let last = records
            .iter()
            .map(|r| r.id.get())
            .max()
            .unwrap_or(0)
            .max(catalog::id_mark(&pool)?);
        let b = Arc::new(Backups {
            pool,
            clock,
            jobs,
            hosts,
            catalog_lock: Mutex::new(()),
            last_id: Mutex::new(last),
            digest_jobs: Mutex::new(Default::default()),
            pairs: Default::default(),
            uses: Default::default(),
            stopping: AtomicBool::new(false),
            restore_jobs: Mutex::new(Vec::new()),
        });
        for r in &records {
            if r.status == Status::Copying {
                // Its job died with the previous process: the copy never completed.
                b.fail_copy(r.id, "interrupted: the array stopped during the copy")?;
            }
        }
        // Before anything serves the volumes: a partly restored one is resumed or rolled back.
        // Guards need no setting: the store keeps them with the volumes and snapshots.
        b.recover_restores()?;
        let (records, _) = catalog::all(&b.pool)?;
        let pending: Vec<BackupId> = records
            .iter()
            .filter(|r| r.on_array() && r.digest.is_none())
            .map(|r| r.id)
            .collect();
        if !pending.is_empty() {
            b.start_digests(pending)?;
        }
        Ok(b)
    }

    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn jobs(&self) -> &Arc<JobManager> {
        &self.jobs
    }

    /// A new id: the current millisecond × 1000 (+ a sequence), above every id given before,
    /// whatever the clock does (a clock moved back continues the sequence).
    pub(crate) fn new_id(&self) -> BackupId {
        let mut last = self.last_id.lock();
        let id = (self.clock)()
            .saturating_mul(crate::record::IDS_PER_MS)
            .max(*last + 1);
        *last = id;
        BackupId(id)
    }

    /// Keeps new ids above `id` (a record imported from elsewhere).
    pub(crate) fn raise_last_id(&self, id: u64) {
        let mut last = self.last_id.lock();
        *last = (*last).max(id);
    }

    /// Records the highest id given, in a transaction adding records (under the catalog
    /// lock, so the marks written never decrease).
    pub(crate) fn mark_ids(&self, t: &mut arca_store::Txn<'_>) {
        catalog::set_id_mark(t, *self.last_id.lock());
    }

    pub fn get(&self, id: BackupId) -> Result<BackupRecord> {
        match catalog::get(&self.pool, id)? {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(Error::new(
                ErrorKind::Corrupt,
                format!("backup {id}: record unreadable: {e}"),
            )),
            None => Err(backup_not_found(id)),
        }
    }

    pub fn list(&self, q: &catalog::Query) -> Result<Vec<BackupRecord>> {
        catalog::query(&self.pool, q)
    }

    /// Registers an operation reading these backups, without checking them (they were just
    /// checked or created under the catalog lock, or are being recovered at open).
    pub(crate) fn register_use(&self, ids: &[BackupId], what: String) -> UseGuard {
        let mut u = self.uses.lock();
        u.next_token += 1;
        let token = u.next_token;
        u.by_token.insert(token, (ids.to_vec(), what));
        UseGuard {
            uses: self.uses.clone(),
            token,
        }
    }

    /// Claims complete backups for an operation that reads them (`verb`: what it does, for
    /// the refusal): each must be complete, and while the guard lives deleting one is refused.
    pub(crate) fn claim(
        &self,
        ids: &[BackupId],
        verb: &str,
        what: String,
    ) -> Result<(Vec<BackupRecord>, UseGuard)> {
        // Under the catalog lock, which deletion takes too: none goes between check and claim.
        let _c = self.catalog_lock.lock();
        let mut records = Vec::new();
        for &id in ids {
            let r = self.get(id)?;
            if r.status != Status::Complete {
                return Err(busy(format!(
                    "backup {id} is {}; only a complete backup can be {verb}",
                    r.status.as_str()
                )));
            }
            if let Some(why) = off_array_refusal(&r, verb) {
                return Err(why);
            }
            records.push(r);
        }
        Ok((records, self.register_use(ids, what)))
    }

    /// The operation reading a backup, if one does.
    /// The refusal of an operation that would take away backup `id`'s image (delete, consume)
    /// while a job reads it.
    pub(crate) fn in_use_refusal(&self, id: BackupId) -> Option<String> {
        self.user_of(id).map(|what| {
            format!("backup {id} is in use by {what}; wait for it to finish, or cancel it")
        })
    }

    pub(crate) fn user_of(&self, id: BackupId) -> Option<String> {
        self.uses
            .lock()
            .by_token
            .values()
            .find(|(ids, _)| ids.contains(&id))
            .map(|(_, what)| what.clone())
    }

    pub(crate) fn volume_by_id(&self, id: u64) -> Option<VolumeInfo> {
        self.pool.volumes().into_iter().find(|v| v.id == id)
    }

    /// The export holding a backup's image, read-only for a snapshot.
    pub(crate) fn image(&self, r: &BackupRecord) -> Result<(String, Export)> {
        let name = self.image_name(r)?;
        let e = self.pool.export(&name)?;
        Ok((name, e))
    }

    pub(crate) fn image_name(&self, r: &BackupRecord) -> Result<String> {
        if let Some(why) = off_array_refusal(r, "read") {
            return Err(why);
        }
        let gone = || {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "the destination of backup {} no longer exists (catalog check names it)",
                    r.id
                ),
            )
        };
        match &r.destination {
            Destination::Snapshot { snapshot, .. } => {
                let v = self.volume_by_id(r.source.volume_id).ok_or_else(gone)?;
                Ok(format!("{}@{snapshot}", v.name))
            }
            Destination::Volume { volume_id, .. } => {
                Ok(self.volume_by_id(*volume_id).ok_or_else(gone)?.name)
            }
        }
    }

    /// Reads, changes and stores one record, with its descriptor, in one transaction.
    pub(crate) fn update(
        &self,
        id: BackupId,
        change: impl FnOnce(&mut BackupRecord) -> Result<()>,
    ) -> Result<BackupRecord> {
        self.update_inner(id, false, change)
    }

    /// [`Backups::update`] for a change that adds what a host or a copy supplies (metadata,
    /// copies): the record's growth, twice (catalog and descriptor), and its new index rows
    /// ask the store for metadata room first, so it is refused whole (507) on a nearly full
    /// region rather than eating the reserve deletions need.
    pub(crate) fn update_growing(
        &self,
        id: BackupId,
        change: impl FnOnce(&mut BackupRecord) -> Result<()>,
    ) -> Result<BackupRecord> {
        self.update_inner(id, true, change)
    }

    fn update_inner(
        &self,
        id: BackupId,
        admit: bool,
        change: impl FnOnce(&mut BackupRecord) -> Result<()>,
    ) -> Result<BackupRecord> {
        const INDEX_ROW_BYTES: u64 = 64;
        let _c = self.catalog_lock.lock();
        let old = self.get(id)?;
        let mut new = old.clone();
        change(&mut new)?;
        let mut t = self.pool.transaction();
        if admit {
            let growth = new.encode().len().saturating_sub(old.encode().len()) as u64;
            let old_keys = catalog::index_keys(&old);
            let rows: u64 = catalog::index_keys(&new)
                .iter()
                .filter(|k| !old_keys.contains(k))
                .map(|(_, k)| INDEX_ROW_BYTES + k.len() as u64)
                .sum();
            t.admit(&format!("backup {id}"), 2 * growth + rows)?;
        }
        catalog::put(&mut t, Some(&old), &new);
        self.tag_destination(&mut t, &new)?;
        t.commit()?;
        Ok(new)
    }

    /// Writes the record as its destination's descriptor, and the backup's guard as its
    /// status wants it (on while live, off otherwise), when the destination exists.
    pub(crate) fn tag_destination(
        &self,
        t: &mut arca_store::Txn<'_>,
        r: &BackupRecord,
    ) -> Result<()> {
        if r.off_array_since_ms.is_some() {
            // The image is gone (or another array's): its destination is history, not ours.
            return Ok(());
        }
        let owner = GuardOwner::Backup(r.id.get());
        match &r.destination {
            Destination::Snapshot { snapshot, .. } => {
                if let Some(v) = self.volume_by_id(r.source.volume_id)
                    && t.snapshot_exists(&v.name, snapshot)
                {
                    t.set_snapshot_tag(&v.name, snapshot, Some(r.encode()))?;
                    match backup_guard(r, GuardEffect::NO_DELETE) {
                        Some(g) => t.add_snapshot_guard(&v.name, snapshot, g)?,
                        None => t.remove_snapshot_guard(&v.name, snapshot, owner)?,
                    }
                }
            }
            Destination::Volume { volume_id, .. } => {
                if let Some(v) = self.volume_by_id(*volume_id)
                    && t.volume_exists(&v.name)
                {
                    t.set_volume_tag(&v.name, Some(r.encode()))?;
                    match backup_guard(r, GuardEffect::ALL) {
                        Some(g) => t.add_volume_guard(&v.name, g)?,
                        None => t.remove_volume_guard(&v.name, owner)?,
                    }
                }
            }
        }
        Ok(())
    }
}
