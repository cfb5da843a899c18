//! A pool on simulated devices with the backup service on top, and a scriptable clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arca_backup::catalog::Query;
use arca_backup::{
    BackupRecord, Backups, Clock, CreateRequest, Created, HostInfo, JobManager, JobState, Method,
    NoHosts, RestoreTo,
};
pub use arca_store::sim::block_devices as as_block;
pub use arca_store::sim::pattern;
use arca_store::sim::{PowerDomain, SimDevice, SimPool};
use arca_store::{Pool, PoolConfig};

pub const MIB: u64 = 1 << 20;
pub const ES: u64 = 4096;

pub struct Rig {
    pub power: Arc<PowerDomain>,
    pub devices: Vec<Arc<SimDevice>>,
    pub pool: Pool,
    pub jobs: Arc<JobManager>,
    pub backups: Arc<Backups>,
    pub now_ms: Arc<AtomicU64>,
}

fn clock(now: &Arc<AtomicU64>) -> Clock {
    let now = now.clone();
    Arc::new(move || now.load(Ordering::SeqCst))
}

/// Restoring onto the backup's own volume, not forced.
pub const IN_PLACE: RestoreTo = RestoreTo::InPlace {
    volume: None,
    force: false,
};

/// Restoring in place onto `volume` (None: the backup's own), `force`d or not.
pub fn in_place(volume: Option<&str>, force: bool) -> RestoreTo {
    RestoreTo::InPlace {
        volume: volume.map(str::to_string),
        force,
    }
}

/// 2026-01-01T00:00:00Z.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

pub fn rig(device_sizes: &[u64]) -> Rig {
    let config = PoolConfig {
        extent_size: ES as u32,
        meta_len: Some(4 * MIB),
    };
    let SimPool {
        power,
        devices,
        pool,
    } = SimPool::create(device_sizes, &config).unwrap();
    let now_ms = Arc::new(AtomicU64::new(EPOCH_MS));
    let jobs = Arc::new(JobManager::new());
    let backups = Backups::open_with_clock(
        pool.clone(),
        jobs.clone(),
        Arc::new(NoHosts),
        clock(&now_ms),
    )
    .unwrap();
    Rig {
        power,
        devices,
        pool,
        jobs,
        backups,
        now_ms,
    }
}

/// [`rig`] with volumes: (name, size in extents, device), created in order.
pub fn rig_with(device_sizes: &[u64], volumes: &[(&str, u64, Option<u32>)]) -> Rig {
    let r = rig(device_sizes);
    for &(name, extents, device) in volumes {
        r.pool.create_volume(name, extents * ES, device).unwrap();
    }
    r
}

impl Rig {
    /// Restarts on the devices' current content (or on crash images of them).
    pub fn reopen_on(&self, devices: Vec<Arc<SimDevice>>) -> Rig {
        self.reopen_with(devices, |_| {})
    }

    /// [`Rig::reopen_on`], running `before` on the pool before the backup service opens
    /// (which recovers interrupted operations).
    pub fn reopen_with(&self, devices: Vec<Arc<SimDevice>>, before: impl FnOnce(&Pool)) -> Rig {
        let pool = Pool::open(as_block(&devices)).unwrap();
        before(&pool);
        let jobs = Arc::new(JobManager::new());
        let backups = Backups::open_with_clock(
            pool.clone(),
            jobs.clone(),
            Arc::new(NoHosts),
            clock(&self.now_ms),
        )
        .unwrap();
        Rig {
            power: self.power.clone(),
            devices,
            pool,
            jobs,
            backups,
            now_ms: self.now_ms.clone(),
        }
    }

    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn write(&self, volume: &str, offset: u64, data: &[u8]) {
        self.pool
            .export(volume)
            .unwrap()
            .write(offset, data, false)
            .unwrap();
    }

    pub fn read(&self, export: &str, offset: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.pool
            .export(export)
            .unwrap()
            .read(offset, &mut b)
            .unwrap();
        b
    }

    pub fn image(&self, export: &str) -> Vec<u8> {
        let size = self.pool.export(export).unwrap().size().unwrap();
        self.read(export, 0, size as usize)
    }

    pub fn wait(&self, job: arca_backup::JobId) -> JobState {
        let j = self.jobs.get(job).expect("job exists");
        let state = j.wait(Duration::from_secs(60));
        assert!(state.finished(), "job {job} did not finish");
        state
    }

    pub fn wait_ok(&self, job: arca_backup::JobId) -> Option<String> {
        let state = self.wait(job);
        let s = self.jobs.get(job).unwrap().snapshot();
        assert_eq!(state, JobState::Succeeded, "job {job}: {:?}", s.error);
        s.result
            .map(|r| serde_json::to_string(&r).expect("a job result serialises"))
    }

    /// Creates what `req` asks for and waits for its jobs, which must succeed.
    pub fn create_ok(&self, req: CreateRequest) -> Created {
        let c = self.backups.create(req).unwrap();
        for j in &c.jobs {
            self.wait_ok(*j);
        }
        c
    }

    /// A snapshot backup of one volume, digest computed.
    pub fn snapshot_backup(&self, volume: &str, label: Option<&str>) -> arca_backup::BackupId {
        let c = self.create_ok(CreateRequest {
            volumes: vec![volume.to_string()],
            info: HostInfo {
                label: label.map(str::to_string),
                ..HostInfo::default()
            },
            ..CreateRequest::default()
        });
        c.records[0].id
    }

    /// The members of backup set `set`, newest first.
    pub fn set_members(&self, set: u64) -> Vec<BackupRecord> {
        self.backups
            .list(&Query {
                set_id: Some(set),
                limit: 10,
                ..Query::default()
            })
            .unwrap()
    }

    /// Devices holding what a restart after a crash now finds.
    pub fn crash_devices(&self, mode: arca_store::sim::CrashMode) -> Vec<Arc<SimDevice>> {
        arca_store::sim::crash_devices(&self.devices, mode).1
    }

    /// Waits for every job of the manager (recoveries started at open, digests).
    pub fn wait_all(&self) {
        for j in self.jobs.list() {
            self.wait(j.id);
        }
    }

    pub fn assert_clean(&self) {
        let r = self.pool.fsck().unwrap();
        assert!(r.is_clean(), "fsck: {:#?}", r.problems);
        let c = self.backups.check().unwrap();
        assert!(c.problems.is_empty(), "catalog check: {:#?}", c.problems);
    }
}

/// A copy backup of `volume` into a new volume.
pub fn copy_request(volume: &str) -> CreateRequest {
    CreateRequest {
        volumes: vec![volume.into()],
        method: Some(Method::Copy),
        ..CreateRequest::default()
    }
}

/// A backup of `volume` into the existing volume `to`.
pub fn to_request(volume: &str, to: &str) -> CreateRequest {
    CreateRequest {
        volumes: vec![volume.into()],
        to: Some(to.into()),
        ..CreateRequest::default()
    }
}

/// Guards `volume` against everything on behalf of `owner`, saying `reason`.
pub fn guard_volume(pool: &Pool, volume: &str, owner: arca_store::GuardOwner, reason: &str) {
    pool.add_volume_guard(
        volume,
        arca_store::Guard::new(owner, arca_store::GuardEffect::ALL, reason),
    )
    .unwrap();
}

/// Where `needle` sits in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
