//! Copies of backups into vaults (`backup copy ID... --vault NAME`): the open repositories the
//! service keeps, the copy job, and what a manifest's `meta` holds.
//!
//! A copy reads the backup's image on the array chunk by chunk (a chunk is one extent: the
//! vault is created with the pool's extent size) and hands each to the vault's writer as data,
//! a hole, or "same as the base": when an earlier backup of the same volume has a copy in this
//! vault and its snapshot is still on the array, only the extents the store names as changed
//! between the two snapshots are read (`Pool::changed_between`), and the base is pinned with a
//! typed guard while the copy runs. Every extent read is checked against the backup's digest
//! first, so a vault never receives an image that differs from the one the digest describes.
//! The manifest is written last; the catalog records the copy right after, in one transaction.
//!
//! Crash safety: before the manifest the vault shows nothing; between the manifest and the
//! catalog's transaction the catalog lists no copy (nothing false), and the next copy of that
//! backup adopts the manifest it finds. A base pin left by a crash is lifted at open.
//!
//! Manifest meta, version 1 (the vault stores it opaquely): byte 1; u32 LE length and the
//! backup's record (`BackupRecord::encode`); u64 LE count and that many u64 LE extent numbers:
//! the extents the array held as data of zeros. The vault keeps every all-zero chunk as a hole,
//! but the digest lists allocated extents, so a restore needs these to check the digest.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arca_store::{Error, ErrorKind, GuardEffect, GuardOwner, Result};
use arca_vault::{Vault, VaultSpec};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::backups::{Backups, invalid};
use crate::digest::{self, ExtentHash, ZeroHashes};
use crate::digest_store;
use crate::ids::{BackupId, JobId};
use crate::jobs::{CopiedToVault, JobContext, JobError, JobKind, JobResult};
use crate::record::{BackupRecord, Destination, Status, VaultCopy};
use crate::vaults::VaultEntry;

const META_VERSION: u8 = 1;
/// The start of the reason of a base pin (what the guard says; open lifts leftovers by it).
pub const BASE_PIN_REASON: &str = "base of a vault copy";
/// Bytes read from the image per request.
const RUN_BYTES: u64 = 1 << 20;

/// What copies and restores moved through one vault since the service started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VaultMetrics {
    /// Bytes read from the array by copies.
    pub bytes_read: u64,
    /// Bytes of chunks the vault did not hold before.
    pub bytes_new: u64,
    /// Bytes written to the vault (compressed, sealed, with indexes and manifests).
    pub bytes_stored: u64,
    /// Write requests of copies (multipart parts, indexes, manifests).
    pub requests: u64,
    /// Bytes restores wrote from the vault.
    pub bytes_restored: u64,
    pub copies: u64,
    pub restores: u64,
    /// Read requests (GETs of manifests, pack indexes and pack ranges) of every use of the
    /// vault, and the bytes they returned.
    pub get_requests: u64,
    pub bytes_fetched: u64,
}

impl VaultMetrics {
    fn add_reads(&mut self, r: arca_vault::ReadStats) {
        self.get_requests += r.get_requests;
        self.bytes_fetched += r.bytes;
    }
}

/// The open repositories (opening one loads its indexes: done once, kept) and their metrics.
#[derive(Default)]
pub(crate) struct VaultState {
    open: Mutex<HashMap<String, Arc<Vault>>>,
    pub(crate) metrics: Mutex<BTreeMap<String, VaultMetrics>>,
}

/// One backup's copy in a `vault-copy` job's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VaultCopied {
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
    pub backup: BackupId,
    /// The earlier backup whose copy gave the unchanged chunks; null for a full read.
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<u64>))]
    pub base: Option<BackupId>,
    /// Bytes read from the array.
    pub bytes_read: u64,
    /// Bytes of chunks the vault did not hold before.
    pub bytes_new: u64,
    /// Bytes written to the vault (compressed, sealed, with indexes and the manifest).
    pub bytes_stored: u64,
    /// Write requests to the vault.
    pub requests: u64,
    pub manifest: String,
}

pub(crate) fn spec_of(e: &VaultEntry) -> VaultSpec {
    VaultSpec {
        url: e.url.clone(),
        endpoint: e.endpoint.clone(),
        region: e.region.clone(),
        access_key: e
            .credentials
            .as_ref()
            .map(|c| c.access_key.expose().to_string()),
        secret_key: e
            .credentials
            .as_ref()
            .map(|c| c.secret_key.expose().to_string()),
        allow_http: e.allow_http,
    }
}

/// A repository error as the array reports it, naming the vault (never a secret: the
/// repository's errors carry none).
pub(crate) fn vault_error(name: &str, e: arca_vault::Error) -> Error {
    use arca_vault::Error as V;
    let kind = match &e {
        V::InvalidSpec(_)
        | V::InvalidKey(_)
        | V::KeyNotNeeded(_)
        | V::KeyMissing(_)
        | V::WrongKey(_)
        | V::InvalidCopy(_) => ErrorKind::InvalidArgument,
        V::NotAVault(_) | V::NoManifest(_) | V::MissingObject { .. } => ErrorKind::NotFound,
        V::Corrupt { .. } | V::UnsupportedVersion { .. } => ErrorKind::Corrupt,
        V::AlreadyExists(_) | V::ManifestExists(_) => ErrorKind::AlreadyExists,
        V::Store { .. } | V::Runtime(_) => ErrorKind::Io,
    };
    Error::new(kind, format!("vault {name}: {e}"))
}

fn parse_id(hex: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("vault ids are 32 hex digits");
    }
    out
}

pub(crate) fn vault_id_of(v: &Vault) -> [u8; 16] {
    parse_id(&v.info().vault_id)
}

pub(crate) fn encode_meta(r: &BackupRecord, zero_extents: &[u64]) -> Vec<u8> {
    let rec = r.encode();
    let mut out = Vec::with_capacity(13 + rec.len() + 8 * zero_extents.len());
    out.push(META_VERSION);
    out.extend_from_slice(
        &u32::try_from(rec.len())
            .expect("records are small")
            .to_le_bytes(),
    );
    out.extend_from_slice(&rec);
    out.extend_from_slice(&(zero_extents.len() as u64).to_le_bytes());
    for l in zero_extents {
        out.extend_from_slice(&l.to_le_bytes());
    }
    out
}

pub(crate) fn decode_meta(b: &[u8]) -> std::result::Result<(BackupRecord, Vec<u64>), String> {
    let take = |b: &[u8], at: usize, n: usize| -> std::result::Result<Vec<u8>, String> {
        b.get(at..at + n)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "the manifest's record is truncated".to_string())
    };
    match b.first() {
        Some(&META_VERSION) => {}
        Some(v) => return Err(format!("manifest record version {v} is not supported")),
        None => return Err("the manifest carries no record".into()),
    }
    let len = u32::from_le_bytes(take(b, 1, 4)?.try_into().expect("4 bytes")) as usize;
    let record = BackupRecord::decode(&take(b, 5, len)?)?;
    let at = 5 + len;
    let count = u64::from_le_bytes(take(b, at, 8)?.try_into().expect("8 bytes"));
    if count > (b.len() as u64) / 8 {
        return Err("the manifest's zero-extent list is truncated".into());
    }
    let mut zeros = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let v = take(b, at + 8 + 8 * i, 8)?;
        zeros.push(u64::from_le_bytes(v.try_into().expect("8 bytes")));
    }
    if at + 8 + 8 * count as usize != b.len() {
        return Err("the manifest's record has trailing bytes".into());
    }
    Ok((record, zeros))
}

/// The pin on a base snapshot; dropping it lifts it (a failure is logged: open lifts it).
struct BasePin<'a> {
    b: &'a Backups,
    volume: String,
    snapshot: String,
    owner: GuardOwner,
}

impl Drop for BasePin<'_> {
    fn drop(&mut self) {
        if let Err(e) = self
            .b
            .pool
            .remove_snapshot_guard(&self.volume, &self.snapshot, self.owner)
        {
            tracing::warn!(volume = %self.volume, snapshot = %self.snapshot, "lifting a base pin: {e}");
        }
    }
}

/// The base chosen for an incremental copy.
struct Base {
    id: BackupId,
    snapshot: String,
}

impl Backups {
    /// The open repository of registered vault `name`. On first use, when no vault exists at
    /// its URL yet, one is created with the pool's extent size as its chunk size; the vault's
    /// id is then bound to the registry entry (another id later means the URL moved).
    pub fn open_vault(&self, name: &str) -> Result<Arc<Vault>> {
        let entry = self.vault(name)?;
        if let Some(v) = self.vault_state.open.lock().get(name)
            && entry.vault_id == Some(vault_id_of(v))
        {
            return Ok(v.clone());
        }
        let spec = spec_of(&entry);
        let key = entry
            .key
            .as_ref()
            .map(crate::vaults::VaultKey::to_repository);
        let vault = match Vault::open(&spec, key.as_ref()) {
            Ok(v) => v,
            Err(arca_vault::Error::NotAVault(_)) if entry.vault_id.is_none() => {
                let chunk = u32::try_from(self.pool.extent_size()).map_err(|_| {
                    invalid("the pool's extent size is too large for a vault chunk")
                })?;
                Vault::create(&spec, key.as_ref(), chunk).map_err(|e| vault_error(name, e))?
            }
            Err(arca_vault::Error::NotAVault(_)) => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "vault {name}: no vault at {} any more (vault id {} was there)",
                        entry.url,
                        crate::vaults::hex(&entry.vault_id.unwrap_or_default())
                    ),
                ));
            }
            Err(e) => return Err(vault_error(name, e)),
        };
        self.bind_vault_id(name, vault_id_of(&vault))?;
        let vault = Arc::new(vault);
        let replaced = self
            .vault_state
            .open
            .lock()
            .insert(name.to_string(), vault.clone());
        self.keep_reads(name, replaced);
        Ok(vault)
    }

    /// `vault add`'s reachability check: opens (or creates) the new entry's repository. On
    /// failure the entry is removed again and the error says why, except for a vault that
    /// exists there encrypted while no key was given: it stays registered, for `vault import`
    /// with its exported key.
    pub fn connect_vault(&self, e: VaultEntry) -> Result<VaultEntry> {
        match self.open_vault(&e.name) {
            Ok(_) => self.vault(&e.name),
            Err(err) => {
                let spec = spec_of(&e);
                if e.key.is_none()
                    && matches!(
                        Vault::open(&spec, None),
                        Err(arca_vault::Error::KeyMissing(_))
                    )
                {
                    return Ok(e);
                }
                if let Err(x) = self.remove_vault(&e.name, false) {
                    tracing::warn!(vault = %e.name, "unregistering an unreachable vault: {x}");
                }
                Err(err)
            }
        }
    }

    /// Whether registered vault `name` can be reached now (one request, even when it is
    /// open): the error says why not.
    pub fn probe_vault(&self, name: &str) -> Result<()> {
        self.open_vault(name)?
            .probe()
            .map_err(|e| vault_error(name, e))
    }

    /// Forgets the open repository of `name` (removed from the registry, or its key changed).
    pub(crate) fn close_vault(&self, name: &str) {
        let closed = self.vault_state.open.lock().remove(name);
        self.keep_reads(name, closed);
    }

    /// Folds the reads of a repository no longer open into `name`'s metrics (an open one's
    /// are added when the metrics are read).
    fn keep_reads(&self, name: &str, closed: Option<Arc<Vault>>) {
        if let Some(v) = closed {
            self.count(name, |m| m.add_reads(v.reads()));
        }
    }

    /// Per-vault copy and restore metrics since the service started, by vault name.
    pub fn vault_metrics(&self) -> BTreeMap<String, VaultMetrics> {
        let mut out = self.vault_state.metrics.lock().clone();
        for (name, v) in self.vault_state.open.lock().iter() {
            out.entry(name.clone()).or_default().add_reads(v.reads());
        }
        out
    }

    pub(crate) fn count(&self, vault: &str, f: impl FnOnce(&mut VaultMetrics)) {
        f(self
            .vault_state
            .metrics
            .lock()
            .entry(vault.to_string())
            .or_default());
    }

    /// Lifts base pins a stopped or crashed copy left on snapshots (at open).
    pub(crate) fn lift_stale_base_pins(&self) -> Result<()> {
        for v in self.pool.volumes() {
            for s in self.pool.snapshots(&v.name)? {
                for g in &s.guards {
                    if g.reason.starts_with(BASE_PIN_REASON) {
                        self.pool.remove_snapshot_guard(&v.name, &s.name, g.owner)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts one job copying the given complete backups on the array into vault `vault`,
    /// oldest first (so each can be the base of the next). Deleting them is refused while it
    /// runs.
    pub fn copy_to_vault(self: &Arc<Self>, ids: &[BackupId], vault: &str) -> Result<JobId> {
        if ids.is_empty() {
            return Err(invalid("name the backups to copy"));
        }
        self.vault(vault)?;
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let (records, uses) = self.claim(&ids, "copied to a vault", "a vault copy".into())?;
        let total: u64 = records.iter().map(|r| r.source.size).sum();
        let me = self.clone();
        let name = vault.to_string();
        let uses = Arc::new(uses);
        let held = uses.clone();
        let job = self
            .jobs
            .start(JobKind::VaultCopy, vault, move |ctx| {
                let _held = &held;
                ctx.set_total(total);
                let v = me.open_vault(&name)?;
                let mut copies = Vec::new();
                for &id in &ids {
                    ctx.check()?;
                    let done = me.copy_one(&name, &v, id, ctx).map_err(|e| match e {
                        JobError::Failed(m) => {
                            JobError::Failed(format!("copy of backup {id} to vault {name}: {m}"))
                        }
                        c => c,
                    })?;
                    copies.push(done);
                }
                Ok(Some(JobResult::CopiedToVault(CopiedToVault {
                    vault: name.clone(),
                    copies,
                })))
            })
            .map_err(|e| Error::io("starting a vault copy job", e))?;
        uses.describe(format!("vault copy job {}", job.id()));
        Ok(job.id())
    }

    /// The record with its digest, waiting for a digest job still computing it.
    fn with_digest(&self, id: BackupId, ctx: &JobContext) -> Result<BackupRecord, JobError> {
        let r = self.get(id)?;
        if r.digest.is_some() {
            return Ok(r);
        }
        let job = self.digest_jobs.lock().get(&id).copied();
        if let Some(j) = job.and_then(|j| self.jobs.get(j)) {
            while !j.wait(std::time::Duration::from_millis(200)).finished() {
                ctx.check()?;
            }
        }
        let r = self.get(id)?;
        if r.digest.is_none() {
            return Err(JobError::Failed(format!(
                "backup {id} has no digest yet; copy it once its digest is computed"
            )));
        }
        Ok(r)
    }

    /// The newest earlier backup of the same volume with a copy in this vault whose snapshot
    /// is still on the array, pinned (under the catalog lock, so its deletion cannot slip in
    /// between the choice and the pin).
    fn pin_base(&self, vault: &str, r: &BackupRecord) -> Result<Option<(Base, BasePin<'_>)>> {
        if !matches!(r.destination, Destination::Snapshot { .. }) {
            return Ok(None);
        }
        let _c = self.catalog_lock.lock();
        let best = self
            .backups_in_vault_locked(vault)?
            .into_iter()
            .filter(|b| {
                b.id < r.id
                    && b.source.volume_id == r.source.volume_id
                    && b.generation < r.generation
                    && b.status == Status::Complete
                    && b.on_array()
                    && b.source.size == r.source.size
                    && matches!(b.destination, Destination::Snapshot { .. })
            })
            .max_by_key(|b| b.generation);
        let Some(b) = best else { return Ok(None) };
        let Destination::Snapshot { snapshot, .. } = b.destination else {
            unreachable!("filtered above")
        };
        let Some(volume) = self.volume_by_id(r.source.volume_id) else {
            return Ok(None);
        };
        let owner = GuardOwner::Backup(r.id.get());
        let guard = arca_store::Guard::new(
            owner,
            GuardEffect::NO_DELETE,
            format!("{BASE_PIN_REASON} of backup {}", r.id),
        );
        self.pool
            .add_snapshot_guard(&volume.name, &snapshot, guard)?;
        let pin = BasePin {
            b: self,
            volume: volume.name,
            snapshot: snapshot.clone(),
            owner,
        };
        Ok(Some((Base { id: b.id, snapshot }, pin)))
    }

    fn copy_one(
        &self,
        vault_name: &str,
        vault: &Vault,
        id: BackupId,
        ctx: &JobContext,
    ) -> Result<VaultCopied, JobError> {
        let r = self.with_digest(id, ctx)?;
        let info = r.digest.clone().expect("with_digest");
        let es = self.pool.extent_size();
        if u64::from(vault.chunk_size()) != es || info.extent_size != es {
            return Err(JobError::Failed(format!(
                "the vault's chunks are {} bytes, the pool's extents {es} and the backup's \
                 digest extents {}: they must match",
                vault.chunk_size(),
                info.extent_size
            )));
        }
        match vault.read_manifest(id.get()) {
            Ok(m) => return self.adopt(vault_name, vault, &r, &m),
            Err(arca_vault::Error::NoManifest(_)) => {}
            Err(e) => return Err(vault_error(vault_name, e).into()),
        }
        let recorded = digest_store::load(&self.pool, id)?.map_err(|m| {
            JobError::Failed(format!(
                "backup {id}: its extent hashes are unreadable ({m})"
            ))
        })?;
        let size = r.source.size;
        let zero = ZeroHashes::new(size, es);
        let zeros: Vec<u64> = recorded
            .iter()
            .filter(|(l, h)| *h == zero.of(*l))
            .map(|(l, _)| *l)
            .collect();
        let (_, image) = self.image(&r)?;
        let pinned = self.pin_base(vault_name, &r)?;
        let base = match &pinned {
            Some((b, _)) => match vault.read_manifest(b.id.get()) {
                Ok(m) if m.image_size == size => {
                    let volume = self
                        .volume_by_id(r.source.volume_id)
                        .ok_or_else(|| JobError::Failed("the source volume was deleted".into()))?;
                    let Destination::Snapshot { snapshot, .. } = &r.destination else {
                        unreachable!("a base is chosen for snapshot backups only")
                    };
                    let changed = self
                        .pool
                        .changed_between(&volume.name, &b.snapshot, snapshot)?;
                    Some((b.id, m, changed))
                }
                // The base's manifest is gone or another size: read everything.
                _ => None,
            },
            None => None,
        };
        let mut w = vault
            .begin_copy(id.get(), size, base.as_ref().map(|(_, m, _)| m))
            .map_err(|e| vault_error(vault_name, e))?;
        let changed = base.as_ref().map(|(_, _, c)| c.as_slice());
        let allocated = image.allocated_extents()?;
        let bytes_read = feed(
            &mut w, &image, size, es, &allocated, changed, &recorded, ctx,
        )
        .map_err(|e| match e {
            FeedError::Job(j) => j,
            FeedError::Vault(v) => vault_error(vault_name, v).into(),
        })?;
        let stats = w
            .finish(encode_meta(&r, &zeros))
            .map_err(|e| vault_error(vault_name, e))?;
        let copy = VaultCopy {
            vault: vault_name.to_string(),
            vault_id: vault_id_of(vault),
            manifest: stats.manifest.clone(),
            copied_ms: self.now_ms(),
            bytes_read,
            bytes_new: stats.bytes_new,
            bytes_stored: stats.bytes_stored,
            digest_root: info.root,
        };
        if let Err(e) = self.record_vault_copy(id, copy) {
            // The manifest names a copy the catalog refused: take it back (if that fails too,
            // the next copy adopts or replaces nothing false: the catalog lists no copy).
            if let Err(x) = vault.delete_manifest(id.get()) {
                tracing::warn!(backup = %id, "removing an unrecorded manifest: {x}");
            }
            return Err(e.into());
        }
        self.count(vault_name, |m| {
            m.bytes_read += bytes_read;
            m.bytes_new += stats.bytes_new;
            m.bytes_stored += stats.bytes_stored;
            m.requests += stats.put_requests;
            m.copies += 1;
        });
        Ok(VaultCopied {
            backup: id,
            base: base.map(|(b, _, _)| b),
            bytes_read,
            bytes_new: stats.bytes_new,
            bytes_stored: stats.bytes_stored,
            requests: stats.put_requests,
            manifest: stats.manifest,
        })
    }

    /// A manifest of this backup is in the vault already (a copy whose recording a crash cut
    /// off, or a copy recorded before): recorded when it is this very backup, refused otherwise.
    fn adopt(
        &self,
        vault_name: &str,
        vault: &Vault,
        r: &BackupRecord,
        m: &arca_vault::Manifest,
    ) -> Result<VaultCopied, JobError> {
        let (theirs, _) = decode_meta(&m.meta)
            .map_err(|e| JobError::Failed(format!("vault {vault_name}: backup {}: {e}", r.id)))?;
        let root = r.digest.as_ref().map(|d| d.root);
        if theirs.id != r.id
            || theirs.digest.as_ref().map(|d| d.root) != root
            || m.image_size != r.source.size
        {
            return Err(JobError::Failed(format!(
                "vault {vault_name} holds a manifest for backup {} that describes another image",
                r.id
            )));
        }
        let name = arca_vault::format::manifest_name(r.id.get());
        if !r.vault_copies.iter().any(|c| c.vault == vault_name) {
            let copy = VaultCopy {
                vault: vault_name.to_string(),
                vault_id: vault_id_of(vault),
                manifest: name.clone(),
                copied_ms: self.now_ms(),
                bytes_read: 0,
                bytes_new: 0,
                bytes_stored: 0,
                digest_root: root.unwrap_or_default(),
            };
            self.record_vault_copy(r.id, copy)?;
        }
        Ok(VaultCopied {
            backup: r.id,
            base: None,
            bytes_read: 0,
            bytes_new: 0,
            bytes_stored: 0,
            requests: 0,
            manifest: name,
        })
    }
}

enum FeedError {
    Job(JobError),
    Vault(arca_vault::Error),
}

impl From<arca_vault::Error> for FeedError {
    fn from(e: arca_vault::Error) -> FeedError {
        FeedError::Vault(e)
    }
}

impl From<JobError> for FeedError {
    fn from(e: JobError) -> FeedError {
        FeedError::Job(e)
    }
}

impl From<Error> for FeedError {
    fn from(e: Error) -> FeedError {
        FeedError::Job(e.into())
    }
}

/// Hands every chunk of the image to the writer: unchanged ones (with a base) as the base's,
/// holes as holes, the rest read in runs of up to [`RUN_BYTES`] and checked against the
/// recorded digest hashes. Returns the bytes read.
#[allow(clippy::too_many_arguments)]
fn feed(
    w: &mut arca_vault::CopyWriter<'_>,
    image: &arca_store::Export,
    size: u64,
    es: u64,
    allocated: &[u64],
    changed: Option<&[u64]>,
    recorded: &[ExtentHash],
    ctx: &JobContext,
) -> std::result::Result<u64, FeedError> {
    let n = size.div_ceil(es);
    let len_of = |l: u64| (size - l * es).min(es);
    let zero = ZeroHashes::new(size, es);
    let must_read = |l: u64| changed.is_none_or(|c| c.binary_search(&l).is_ok());
    let is_data = |l: u64| allocated.binary_search(&l).is_ok();
    let recorded_hash = |l: u64| {
        recorded
            .binary_search_by_key(&l, |(x, _)| *x)
            .ok()
            .map(|i| recorded[i].1)
    };
    let damaged = |l: u64| {
        JobError::Failed(format!(
            "extent {l} of its image on the array does not match the backup's digest (the \
             image is damaged: verify the backup); nothing was copied"
        ))
    };
    let per_run = (RUN_BYTES / es).max(1);
    let mut buf = vec![0u8; (per_run * es) as usize];
    let mut read = 0u64;
    let mut l = 0u64;
    while l < n {
        ctx.check()?;
        if !must_read(l) {
            w.same_as_base(l)?;
            ctx.add_done(len_of(l));
            l += 1;
            continue;
        }
        if !is_data(l) {
            if recorded_hash(l).is_some_and(|h| h != zero.of(l)) {
                return Err(damaged(l).into());
            }
            w.hole(l)?;
            ctx.add_done(len_of(l));
            l += 1;
            continue;
        }
        let mut end = l + 1;
        while end < n && end - l < per_run && must_read(end) && is_data(end) {
            end += 1;
        }
        let at = l * es;
        let len = (end * es).min(size) - at;
        let b = &mut buf[..len as usize];
        image.read(at, b)?;
        for (k, chunk) in (l..end).zip(b.chunks(es as usize)) {
            let h = digest::hash_extent(chunk);
            if recorded_hash(k).unwrap_or_else(|| zero.of(k)) != h {
                return Err(damaged(k).into());
            }
            w.data(k, chunk)?;
        }
        read += len;
        ctx.add_done(len);
        l = end;
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_refuses_damage() {
        let r = crate::record::tests::sample();
        let m = encode_meta(&r, &[3, 9]);
        let (back, zeros) = decode_meta(&m).unwrap();
        assert_eq!((back, zeros), (r, vec![3, 9]));
        assert!(decode_meta(&m[..m.len() - 1]).is_err());
        let mut more = m.clone();
        more.push(0);
        assert!(decode_meta(&more).is_err());
        let mut v2 = m;
        v2[0] = 2;
        assert!(decode_meta(&v2).unwrap_err().contains("version 2"));
        assert!(decode_meta(&[]).is_err());
    }
}
