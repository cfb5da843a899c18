//! The pool: devices, the metadata store, the allocator and the registry of volume families.
//!
//! Control operations (create, snapshot, clone, rename, resize, delete) change memory under the
//! registry and family locks, then commit before returning, so they are durable on success.
//! Data operations live in io.rs, commits in commit.rs, checks in fsck.rs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use redb::Database;

use crate::alloc::Allocator;
use crate::device::{BlockDevice, FileDevice};
use crate::error::{Error, ErrorKind, Result};
use crate::extent_map::Phys;
use crate::family::FamilyHandle;
use crate::generation;
use crate::layout::{
    self, DEVICE_COUNT_MAX, EXTENT_SIZE_MAX, EXTENT_SIZE_MIN, META_OFFSET, SUPERBLOCK_OFFSETS,
    SUPERBLOCK_SIZE, Superblock,
};
use crate::load::{create_tables, read_commit_generation};
use crate::meta_guard::{drop_db, guard, region_label, store_error};
use crate::meta_region::MetaRegion;

/// Largest volume: 1 PiB. Bounds the top level of extent maps (8 bytes per 64 extents).
pub const VOLUME_SIZE_MAX: u64 = 1 << 50;
/// Volume sizes are whole 512-byte sectors, as block devices are.
pub const SECTOR_SIZE: u64 = 512;
/// Snapshots per volume; bounds resolution chains and generation numbers.
pub const SNAPSHOTS_PER_VOLUME_MAX: usize = 10_000;

/// Choices fixed when a pool is created.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Allocation unit, a power of two in 4 KiB..=64 MiB. Smaller costs more metadata, larger
    /// costs more copy-on-write per small write after a snapshot.
    pub extent_size: u32,
    /// Metadata region size on device 0; `None` for [`layout::default_meta_len`].
    pub meta_len: Option<u64>,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            extent_size: 64 * 1024,
            meta_len: None,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub by_name: BTreeMap<String, Arc<FamilyHandle>>,
    pub by_id: HashMap<u64, Arc<FamilyHandle>>,
}

impl Registry {
    /// The volume called `name`, or not found.
    pub fn volume(&self, name: &str) -> Result<Arc<FamilyHandle>> {
        self.by_name
            .get(name)
            .cloned()
            .ok_or_else(|| crate::error::not_found(format_args!("volume {name}")))
    }
}

/// Pool-level changes not yet committed: those of deleted families, and the layers above's
/// table writes.
#[derive(Debug, Default)]
pub(crate) struct PoolPending {
    pub app_ops: Vec<crate::app_tables::AppOp>,
    pub frees: Vec<Phys>,
    pub purge_owners: Vec<u64>,
    pub deleted_volumes: Vec<u64>,
    pub deleted_snapshots: Vec<u64>,
}

/// Held across a commit, so commits (and transactions) run one at a time.
pub(crate) struct CommitState {
    /// The generation every device durably holds (generation.rs).
    pub synced_gen: u64,
}

/// Choices made when opening a pool.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Indexes of devices to open even though their generation record shows an old copy (or
    /// cannot be read). Their newer data is lost; the open logs each one and makes every
    /// device current again, so the next open needs no such option.
    pub accept_stale_devices: Vec<u32>,
}

pub(crate) struct Inner {
    pub devices: Vec<Arc<dyn BlockDevice>>,
    pub superblocks: Vec<Superblock>,
    pub extent_size: u64,
    pub meta: Arc<MetaRegion>,
    /// How errors name the metadata region (meta_guard.rs).
    pub meta_label: String,
    pub alloc: Mutex<Allocator>,
    pub registry: RwLock<Registry>,
    pub pending: Mutex<PoolPending>,
    pub commit: Mutex<CommitState>,
    /// The metadata store. `None` after a failed commit: the next user reopens it, which
    /// recovers its last durable state. Readers and the committer share it in read mode; only
    /// a reopen takes it in write mode, so there is never a second instance.
    pub db: RwLock<Option<Database>>,
    /// redb panicked on the store: the instance is dropped and reopened by the next `db()`.
    pub db_broken: AtomicBool,
    /// Data was written since the last flush took a generation (generation.rs). Set after
    /// each device write completes, so a flush that sees it clear did not miss one it covers.
    pub data_written: AtomicBool,
    pub next_id: AtomicU64,
    /// Inconsistencies found while loading, reported by fsck.
    pub load_problems: Mutex<Vec<crate::fsck::Problem>>,
    pub commits: AtomicU64,
    /// Volumes with a write hook: while none has one, writes skip looking (a lock each).
    pub hooks: std::sync::atomic::AtomicUsize,
    /// Metadata pages in use and the commit count they were counted at (meta_space.rs).
    pub meta_used_cache: Mutex<Option<(u64, u64)>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // redb writes when it closes: on a damaged store that may panic.
        if let Some(db) = self.db.get_mut().take() {
            drop_db(db);
        }
    }
}

/// A pool of thin volumes on one or more devices. Cheap to clone; all clones share the pool.
#[derive(Clone)]
pub struct Pool {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub created_unix: u64,
    /// Placement preference: the device the volume's new extents are allocated from while it
    /// has room; `None` lets the pool take the device with the most free space. It says nothing
    /// about where the data already lies: see `device_bytes`.
    pub placement: Option<u32>,
    /// For a clone: the (volume, snapshot) it was created from.
    pub origin: Option<(String, String)>,
    pub snapshots: usize,
    /// Bytes of extents the volume reads from (its own and, for a clone, its origin's).
    pub referenced_bytes: u64,
    /// Where the volume's data lies: of `referenced_bytes`, the bytes on each device (indexed
    /// by device; one entry per device of the pool). Losing device `d` loses data of the
    /// volume exactly when `device_bytes[d] > 0`.
    pub device_bytes: Vec<u64>,
    /// Bytes only the live volume references (no snapshot sees them).
    pub unique_bytes: u64,
    /// Bytes the volume and its snapshots own together: what deleting all of them frees.
    pub owned_bytes: u64,
    /// The descriptor the layer above attached ([`crate::Txn::set_volume_tag`]).
    pub tag: Option<Vec<u8>>,
    /// The volume's guards ([`crate::Txn::add_volume_guard`]), sorted by owner.
    pub guards: Vec<crate::Guard>,
    /// The reasons of its guards joined, for display; `None` when it has none.
    pub guard: Option<String>,
}

impl VolumeInfo {
    /// Devices holding some of the volume's data, ascending: those whose loss loses data.
    pub fn data_devices(&self) -> Vec<u32> {
        held_devices(&self.device_bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: u64,
    pub volume: String,
    pub name: String,
    pub size: u64,
    pub created_unix: u64,
    pub referenced_bytes: u64,
    /// Where the snapshot's data lies: of `referenced_bytes`, the bytes on each device.
    pub device_bytes: Vec<u64>,
    /// What deleting this snapshot frees.
    pub unique_bytes: u64,
    /// Clones made from this snapshot (it cannot be deleted while any exist).
    pub clones: Vec<String>,
    pub tag: Option<Vec<u8>>,
    /// The snapshot's guards, sorted by owner.
    pub guards: Vec<crate::Guard>,
    /// The reasons of its guards joined, for display; `None` when it has none.
    pub guard: Option<String>,
}

impl SnapshotInfo {
    /// Devices holding some of the snapshot's data, ascending.
    pub fn data_devices(&self) -> Vec<u32> {
        held_devices(&self.device_bytes)
    }
}

fn held_devices(device_bytes: &[u64]) -> Vec<u32> {
    (0..device_bytes.len() as u32)
        .filter(|&d| device_bytes[d as usize] > 0)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    pub index: u32,
    pub name: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    pub pool_id: String,
    pub extent_size: u64,
    pub devices: Vec<DeviceStatus>,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    /// The metadata region: see [`crate::MetaSpace`].
    pub metadata: crate::MetaSpace,
    pub volumes: usize,
    pub snapshots: usize,
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // The kernel's random source; fall back to time and pid, which is unique enough for labels.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut id))
        .is_err()
    {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        id.copy_from_slice(&(t ^ ((std::process::id() as u128) << 64)).to_le_bytes());
    }
    id
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Opens the store on the region; a panic in redb is an error naming the region.
pub(crate) fn open_db(meta: &Arc<MetaRegion>, region: &str) -> Result<Database> {
    let ctx = "opening the metadata store";
    guard(region, ctx, || {
        Database::builder()
            .create_with_backend(SharedRegion(meta.clone()))
            .map_err(|e| store_error(region, ctx, e.into()))
    })
    .0
}

/// Lets the pool keep a handle on the region redb owns, for usage figures.
#[derive(Debug)]
pub(crate) struct SharedRegion(pub Arc<MetaRegion>);

impl redb::StorageBackend for SharedRegion {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
}

pub(crate) fn check_size(size: u64) -> Result<()> {
    if size == 0 {
        return Err(Error::new(ErrorKind::InvalidSize, "size must not be zero"));
    }
    if !size.is_multiple_of(SECTOR_SIZE) {
        return Err(Error::new(
            ErrorKind::InvalidSize,
            format!("size {size} is not a multiple of {SECTOR_SIZE} bytes"),
        ));
    }
    if size > VOLUME_SIZE_MAX {
        return Err(Error::new(
            ErrorKind::InvalidSize,
            format!("size {size} exceeds the maximum of {VOLUME_SIZE_MAX} bytes (1 PiB)"),
        ));
    }
    Ok(())
}

impl Pool {
    /// Labels `devices` as a new pool. Device 0 holds the metadata region.
    pub fn create(devices: Vec<Arc<dyn BlockDevice>>, config: &PoolConfig) -> Result<Pool> {
        let es = config.extent_size;
        if !es.is_power_of_two() || !(EXTENT_SIZE_MIN..=EXTENT_SIZE_MAX).contains(&es) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "extent size {es} must be a power of two from {EXTENT_SIZE_MIN} to \
                     {EXTENT_SIZE_MAX}"
                ),
            ));
        }
        if devices.is_empty() || devices.len() > DEVICE_COUNT_MAX as usize {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("a pool needs 1 to {DEVICE_COUNT_MAX} devices"),
            ));
        }
        let pool_id = random_id();
        let created = now_unix();
        let mut sizes = Vec::with_capacity(devices.len());
        for dev in &devices {
            sizes.push(
                dev.size_bytes()
                    .map_err(|e| Error::io(format!("device {}: size", dev.name()), e))?,
            );
        }
        // An upper bound on the pool's extents: the metadata region must be able to map all.
        let pool_extents: u64 = sizes.iter().map(|s| s / es as u64).sum();
        let meta_len = config
            .meta_len
            .unwrap_or_else(|| layout::default_meta_len(sizes[0], pool_extents));
        let meta_len_min = layout::meta_len_min(pool_extents);
        if meta_len < meta_len_min {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "metadata region of {meta_len} bytes is too small for a pool of \
                     {pool_extents} extents: it needs at least {meta_len_min} bytes to map \
                     them all (choose a larger region or larger extents)"
                ),
            ));
        }
        for (i, dev) in devices.iter().enumerate() {
            let size = sizes[i];
            let meta_len = if i == 0 { meta_len } else { 0 };
            let g = layout::geometry(size, es, meta_len)
                .map_err(|e| Error::new(e.kind(), format!("device {}: {e}", dev.name())))?;
            let sb = Superblock {
                pool_id,
                device_id: random_id(),
                device_index: i as u32,
                device_count: devices.len() as u32,
                device_size: size,
                extent_size: es,
                meta_device: 0,
                meta_offset: META_OFFSET,
                meta_len: g.meta_len,
                data_offset: g.data_offset,
                extent_count: g.extent_count,
                created_unix: created,
            };
            let bytes = sb.encode();
            generation::clear(&**dev)?;
            if i == 0 {
                // Clear old region headers so a reused device starts with an empty store.
                dev.write_at(&vec![0u8; 8192], META_OFFSET).map_err(|e| {
                    Error::io(format!("device {}: clearing metadata", dev.name()), e)
                })?;
            }
            for off in SUPERBLOCK_OFFSETS {
                dev.write_at(&bytes, off).map_err(|e| {
                    Error::io(format!("device {}: writing superblock", dev.name()), e)
                })?;
            }
            dev.sync()
                .map_err(|e| Error::io(format!("device {}: sync", dev.name()), e))?;
        }
        let pool = Self::open(devices)?;
        pool.flush()?;
        Ok(pool)
    }

    /// Creates a pool on new sparse files of `size_bytes` each.
    pub fn create_files(paths: &[&Path], size_bytes: u64, config: &PoolConfig) -> Result<Pool> {
        let mut devices: Vec<Arc<dyn BlockDevice>> = Vec::new();
        for p in paths {
            let d = FileDevice::create(p, size_bytes)
                .map_err(|e| Error::io(format!("creating device {}", p.display()), e))?;
            devices.push(Arc::new(d));
        }
        Self::create(devices, config)
    }

    /// Opens the pool on existing files or block devices.
    pub fn open_paths(paths: &[&Path]) -> Result<Pool> {
        Self::open_paths_with(paths, &OpenOptions::default())
    }

    pub fn open_paths_with(paths: &[&Path], options: &OpenOptions) -> Result<Pool> {
        let mut devices: Vec<Arc<dyn BlockDevice>> = Vec::new();
        for p in paths {
            let d = FileDevice::open(p)
                .map_err(|e| Error::io(format!("opening device {}", p.display()), e))?;
            devices.push(Arc::new(d));
        }
        Self::open_with(devices, options)
    }

    /// Opens a pool given all its devices, in any order. A device holding an old copy of
    /// itself is refused by name (see [`OpenOptions`] to accept one).
    pub fn open(devices: Vec<Arc<dyn BlockDevice>>) -> Result<Pool> {
        Self::open_with(devices, &OpenOptions::default())
    }

    pub fn open_with(devices: Vec<Arc<dyn BlockDevice>>, options: &OpenOptions) -> Result<Pool> {
        let (superblocks, devices) = sorted_devices(devices)?;
        let first = superblocks[0].clone();
        // Before anything is written: an old copy of a device must not be written to.
        let mut gens = Vec::with_capacity(devices.len());
        for (dev, sb) in devices.iter().zip(&superblocks) {
            gens.push(generation::read(&**dev, sb)?);
        }
        let meta_dev = &devices[first.meta_device as usize];
        let meta_sb = &superblocks[first.meta_device as usize];
        let meta_label = region_label(meta_dev.name(), meta_sb.meta_offset, meta_sb.meta_len);
        let meta = MetaRegion::open(meta_dev.clone(), meta_sb.meta_offset, meta_sb.meta_len)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => {
                    Error::new(ErrorKind::Corrupt, format!("opening the {meta_label}: {e}"))
                }
                _ => Error::io(format!("opening the {meta_label}"), e),
            })?;
        let meta = Arc::new(meta);
        // The devices' records alone first: opening the store may write to it (redb repairs a
        // store that was not closed cleanly), which an old copy of device 0 must not get.
        generation::check(&devices, &gens, 0, &options.accept_stale_devices)?;
        let db = open_db(&meta, &meta_label)?;
        let opened = guard(&meta_label, "opening the metadata store", || {
            let meta_gen = read_commit_generation(&db, &meta_label)?;
            let checked =
                generation::check(&devices, &gens, meta_gen, &options.accept_stale_devices)?;
            create_tables(&db, &meta_label)?;
            Ok(checked)
        })
        .0;
        let checked = match opened {
            Ok(c) => c,
            Err(e) => {
                drop_db(db);
                return Err(e);
            }
        };
        let counts: Vec<u64> = superblocks.iter().map(|s| s.extent_count).collect();
        let inner = Inner {
            devices,
            extent_size: first.extent_size as u64,
            superblocks,
            meta,
            meta_label,
            alloc: Mutex::new(Allocator::new(&counts)),
            registry: RwLock::new(Registry::default()),
            pending: Mutex::new(PoolPending::default()),
            commit: Mutex::new(CommitState {
                synced_gen: checked.synced,
            }),
            db: RwLock::new(None),
            db_broken: AtomicBool::new(false),
            data_written: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            load_problems: Mutex::new(Vec::new()),
            commits: AtomicU64::new(0),
            hooks: std::sync::atomic::AtomicUsize::new(0),
            meta_used_cache: Mutex::new(None),
        };
        let pool = Pool {
            inner: Arc::new(inner),
        };
        // Load builds only this pool's memory, so a panic in it leaves nothing behind.
        let loaded = guard(&pool.inner.meta_label, "loading the pool", || {
            pool.load(&db)
        })
        .0;
        if let Err(e) = loaded {
            drop_db(db);
            return Err(e);
        }
        *pool.inner.db.write() = Some(db);
        for what in &checked.accepted {
            tracing::warn!("{what}");
        }
        if checked.forced {
            pool.rewrite_generations()?;
        }
        Ok(pool)
    }
}

/// Superblocks and devices, in device index order.
type Labelled = (Vec<Superblock>, Vec<Arc<dyn BlockDevice>>);

/// Reads every device's superblock and checks they make one whole pool; returns them in
/// device index order.
fn sorted_devices(devices: Vec<Arc<dyn BlockDevice>>) -> Result<Labelled> {
    if devices.is_empty() {
        return Err(Error::new(ErrorKind::InvalidArgument, "no devices given"));
    }
    let mut labelled: Vec<(Superblock, Arc<dyn BlockDevice>)> = Vec::new();
    for dev in devices {
        let sb = read_superblock(&*dev)?;
        labelled.push((sb, dev));
    }
    let first = labelled[0].0.clone();
    for (sb, dev) in &labelled {
        if sb.pool_id != first.pool_id {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "device {} belongs to pool {}, not pool {}",
                    dev.name(),
                    hex(&sb.pool_id),
                    hex(&first.pool_id)
                ),
            ));
        }
        if sb.device_count != first.device_count
            || sb.extent_size != first.extent_size
            || sb.meta_device != first.meta_device
        {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "device {}: superblock disagrees with the pool's other devices",
                    dev.name()
                ),
            ));
        }
    }
    labelled.sort_by_key(|(sb, _)| sb.device_index);
    for w in labelled.windows(2) {
        if w[0].0.device_index == w[1].0.device_index {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "devices {} and {} both claim index {} of the pool",
                    w[0].1.name(),
                    w[1].1.name(),
                    w[0].0.device_index
                ),
            ));
        }
    }
    let count = first.device_count as usize;
    if labelled.len() != count {
        let present: Vec<u32> = labelled.iter().map(|(sb, _)| sb.device_index).collect();
        let missing: Vec<String> = (0..count as u32)
            .filter(|i| !present.contains(i))
            .map(|i| i.to_string())
            .collect();
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "pool {} has {count} devices; missing device index {}",
                hex(&first.pool_id),
                missing.join(", ")
            ),
        ));
    }
    Ok(labelled.into_iter().unzip())
}

/// Reads and validates a device's superblocks; either copy may be damaged.
fn read_superblock(dev: &dyn BlockDevice) -> Result<Superblock> {
    let size = dev
        .size_bytes()
        .map_err(|e| Error::io(format!("device {}: size", dev.name()), e))?;
    let mut reasons = Vec::new();
    for (copy, off) in SUPERBLOCK_OFFSETS.iter().enumerate() {
        let mut b = vec![0u8; SUPERBLOCK_SIZE];
        if size < off + SUPERBLOCK_SIZE as u64 {
            reasons.push(format!("copy {copy}: device too small"));
            continue;
        }
        if let Err(e) = dev.read_at(&mut b, *off) {
            reasons.push(format!("copy {copy}: {e}"));
            continue;
        }
        match Superblock::decode(&b) {
            Ok(sb) => {
                if size < sb.device_size {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        format!(
                            "device {} is truncated: {size} bytes, labelled {} bytes",
                            dev.name(),
                            sb.device_size
                        ),
                    ));
                }
                return Ok(sb);
            }
            Err(m) => reasons.push(format!("copy {copy}: {m}")),
        }
    }
    Err(Error::new(
        ErrorKind::Corrupt,
        format!(
            "device {} has no valid Arca superblock ({})",
            dev.name(),
            reasons.join("; ")
        ),
    ))
}
