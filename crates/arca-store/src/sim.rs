//! A simulated device for tests: a volatile write cache that a crash can lose, and injected
//! I/O faults.
//!
//! Devices of one pool share a [`PowerDomain`]: after a chosen number of operations the power
//! "fails", every later operation returns EIO, and [`SimDevice::crash_image`] gives the bytes a
//! restart would find: everything synced, plus none, or a random subset, of the writes since.
//! [`SimPool`] is a pool on such devices that a test can crash and reopen.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::device::BlockDevice;
use crate::error::Result;
use crate::pool::{Pool, PoolConfig};

/// Shared power for the devices of one simulated machine.
#[derive(Debug)]
pub struct PowerDomain {
    ops: AtomicU64,
    /// The op count at which power fails; `u64::MAX` means never.
    fail_at: AtomicU64,
}

impl PowerDomain {
    pub fn new() -> Arc<PowerDomain> {
        Arc::new(PowerDomain {
            ops: AtomicU64::new(0),
            fail_at: AtomicU64::new(u64::MAX),
        })
    }

    /// Power fails after `n` more writes or syncs on any device of the domain.
    pub fn fail_after(&self, n: u64) {
        let now = self.ops.load(Ordering::SeqCst);
        self.fail_at.store(now.saturating_add(n), Ordering::SeqCst);
    }

    /// Writes and syncs so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    pub fn failed(&self) -> bool {
        self.ops.load(Ordering::SeqCst) >= self.fail_at.load(Ordering::SeqCst)
    }

    /// Counts one mutating op; false when power is (now) off and the op must not happen.
    fn admit(&self) -> bool {
        let fail_at = self.fail_at.load(Ordering::SeqCst);
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        n < fail_at
    }
}

/// Which operation a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Read,
    Write,
    Sync,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    op: FaultOp,
    skip: u64,
    times: u64,
    errno: i32,
    /// Only ops touching this byte range count (reads/writes); `None` means any.
    range: Option<(u64, u64)>,
}

/// What a crash keeps of the writes not yet synced.
#[derive(Debug, Clone, Copy)]
pub enum CrashMode {
    /// Every unsynced write is lost.
    LoseAll,
    /// Each unsynced write independently survives with probability 1/2 (seeded).
    RandomSubset(u64),
}

struct SimState {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, in order, for crash images.
    unsynced: Vec<(u64, Vec<u8>)>,
}

/// An in-memory device with a volatile cache, crash images and fault injection.
pub struct SimDevice {
    name: String,
    power: Arc<PowerDomain>,
    state: Mutex<SimState>,
    faults: Mutex<Vec<Fault>>,
    syncs: AtomicU64,
}

impl fmt::Debug for SimDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimDevice")
            .field("name", &self.name)
            .finish()
    }
}

impl SimDevice {
    pub fn new(name: &str, size_bytes: usize, power: Arc<PowerDomain>) -> SimDevice {
        Self::from_image(name, vec![0; size_bytes], power)
    }

    /// A device whose durable content is `image` (what a restart after a crash finds).
    pub fn from_image(name: &str, image: Vec<u8>, power: Arc<PowerDomain>) -> SimDevice {
        SimDevice {
            name: name.to_string(),
            power,
            state: Mutex::new(SimState {
                current: image.clone(),
                durable: image,
                unsynced: Vec::new(),
            }),
            faults: Mutex::new(Vec::new()),
            syncs: AtomicU64::new(0),
        }
    }

    /// After `skip` more matching ops succeed, the next `times` fail with `errno`.
    pub fn inject(&self, op: FaultOp, skip: u64, times: u64, errno: i32) {
        self.faults.lock().push(Fault {
            op,
            skip,
            times,
            errno,
            range: None,
        });
    }

    /// Reads or writes touching `[offset, offset + len)` fail with EIO `times` times.
    pub fn inject_range(&self, op: FaultOp, offset: u64, len: u64, times: u64) {
        self.faults.lock().push(Fault {
            op,
            skip: 0,
            times,
            errno: libc::EIO,
            range: Some((offset, offset + len)),
        });
    }

    /// Syncs asked of this device so far, failed ones included (a test learns how many
    /// steps an operation has, to fail each in turn).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    pub fn clear_faults(&self) {
        self.faults.lock().clear();
    }

    /// The bytes a restart finds after power failed now.
    pub fn crash_image(&self, mode: CrashMode) -> Vec<u8> {
        let st = self.state.lock();
        let mut image = st.durable.clone();
        let mut rng = match mode {
            CrashMode::LoseAll => return image,
            CrashMode::RandomSubset(seed) => seed | 1,
        };
        for (offset, data) in &st.unsynced {
            // xorshift64: enough randomness to choose survivors, reproducible from the seed.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if rng & 1 == 1 {
                let o = *offset as usize;
                image[o..o + data.len()].copy_from_slice(data);
            }
        }
        image
    }

    /// The current content (what reads return now).
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        self.state.lock().current.clone()
    }

    /// Overwrites bytes directly, bypassing the pool: simulates corruption on the medium.
    pub fn corrupt(&self, offset: u64, data: &[u8]) {
        let mut st = self.state.lock();
        let o = offset as usize;
        st.current[o..o + data.len()].copy_from_slice(data);
        st.durable[o..o + data.len()].copy_from_slice(data);
    }

    fn check_fault(&self, op: FaultOp, offset: u64, len: u64) -> io::Result<()> {
        let mut faults = self.faults.lock();
        for f in faults.iter_mut() {
            if f.op != op || f.times == 0 {
                continue;
            }
            if let Some((start, end)) = f.range
                && (offset >= end || offset + len <= start)
            {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            f.times -= 1;
            return Err(io::Error::from_raw_os_error(f.errno));
        }
        Ok(())
    }

    fn check_range(&self, len: usize, offset: u64, size: usize) -> io::Result<usize> {
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= size as u64)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "access past end of device")
            })?;
        Ok(end as usize)
    }
}

fn power_off() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl BlockDevice for SimDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn size_bytes(&self) -> io::Result<u64> {
        Ok(self.state.lock().current.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.power.failed() {
            return Err(power_off());
        }
        self.check_fault(FaultOp::Read, offset, buf.len() as u64)?;
        let st = self.state.lock();
        let end = self.check_range(buf.len(), offset, st.current.len())?;
        buf.copy_from_slice(&st.current[offset as usize..end]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_fault(FaultOp::Write, offset, buf.len() as u64)?;
        let mut st = self.state.lock();
        let end = self.check_range(buf.len(), offset, st.current.len())?;
        if !self.power.admit() {
            return Err(power_off());
        }
        st.current[offset as usize..end].copy_from_slice(buf);
        st.unsynced.push((offset, buf.to_vec()));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.check_fault(FaultOp::Sync, 0, 0)?;
        let mut st = self.state.lock();
        if !self.power.admit() {
            return Err(power_off());
        }
        // Apply the cached writes rather than copy the device: a sync costs what was written.
        let unsynced = std::mem::take(&mut st.unsynced);
        for (offset, data) in unsynced {
            let o = offset as usize;
            st.durable[o..o + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }
}

/// A simulated machine: devices on one power domain, and the pool on them.
pub struct SimPool {
    pub power: Arc<PowerDomain>,
    pub devices: Vec<Arc<SimDevice>>,
    pub pool: Pool,
}

impl SimPool {
    /// A new pool on fresh devices of the given sizes, named `sim0`, `sim1`, ...
    pub fn create(device_sizes: &[u64], config: &PoolConfig) -> Result<SimPool> {
        let power = PowerDomain::new();
        let devices: Vec<Arc<SimDevice>> = device_sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let size = usize::try_from(size).expect("a simulated device fits in memory");
                Arc::new(SimDevice::new(&format!("sim{i}"), size, power.clone()))
            })
            .collect();
        let pool = Pool::create(block_devices(&devices), config)?;
        Ok(SimPool {
            power,
            devices,
            pool,
        })
    }

    /// Opens the pool on `devices`, which share `power`.
    pub fn open(power: Arc<PowerDomain>, devices: Vec<Arc<SimDevice>>) -> Result<SimPool> {
        let pool = Pool::open(block_devices(&devices))?;
        Ok(SimPool {
            power,
            devices,
            pool,
        })
    }

    /// A second pool on the devices' current content (a clean restart).
    pub fn reopen(&self) -> Result<Pool> {
        Pool::open(block_devices(&self.devices))
    }

    /// The power fails now: this pool goes away with what the devices had not synced (all of
    /// it, or a random subset, as `mode` says), and the pool opens again on what a restart
    /// finds, on fresh power.
    pub fn crash_and_reopen(self, mode: CrashMode) -> Result<SimPool> {
        // The images are taken before the pool is dropped: nothing it does on its way out
        // reaches them, as nothing would after a real power failure.
        let (power, devices) = crash_devices(&self.devices, mode);
        drop(self);
        SimPool::open(power, devices)
    }
}

/// Devices holding what a restart finds after the power of `devices` failed now (see
/// [`SimDevice::crash_image`]), on a fresh power domain.
pub fn crash_devices(
    devices: &[Arc<SimDevice>],
    mode: CrashMode,
) -> (Arc<PowerDomain>, Vec<Arc<SimDevice>>) {
    devices_from_images(devices.iter().map(|d| d.crash_image(mode)))
}

/// Devices `sim0`, `sim1`, ... whose durable content is `images`, on a fresh power domain.
pub fn devices_from_images(
    images: impl IntoIterator<Item = Vec<u8>>,
) -> (Arc<PowerDomain>, Vec<Arc<SimDevice>>) {
    let power = PowerDomain::new();
    let devices = images
        .into_iter()
        .enumerate()
        .map(|(i, image)| {
            Arc::new(SimDevice::from_image(
                &format!("sim{i}"),
                image,
                power.clone(),
            ))
        })
        .collect();
    (power, devices)
}

/// Deterministic bytes for a test write: the same `seed` gives the same bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The devices as the pool takes them.
pub fn block_devices(devices: &[Arc<SimDevice>]) -> Vec<Arc<dyn BlockDevice>> {
    devices
        .iter()
        .map(|d| d.clone() as Arc<dyn BlockDevice>)
        .collect()
}

/// Everything a pool shows, as text to compare two moments by: its volumes and snapshots
/// (with their guards and tags), the rows of `tables` and, with `data`, a digest of each
/// volume's and snapshot's image.
pub fn pool_state(pool: &Pool, tables: &[&str], data: bool) -> Result<String> {
    let mut out = String::new();
    for v in pool.volumes() {
        out += &format!("{v:?}\n");
        for s in pool.snapshots(&v.name)? {
            out += &format!("  {s:?}\n");
            if data {
                let d = image_digest(pool, &format!("{}@{}", v.name, s.name))?;
                out += &format!("  data {d:x}\n");
            }
        }
        if data {
            out += &format!("  data {:x}\n", image_digest(pool, &v.name)?);
        }
    }
    for t in tables {
        pool.app_scan(
            t,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            false,
            |k, v| {
                out += &format!("{t} {k:?}={v:?}\n");
                true
            },
        )?;
    }
    Ok(out)
}

/// A fingerprint (FNV-1a) of the whole image of `export`.
pub fn image_digest(pool: &Pool, export: &str) -> Result<u64> {
    let e = pool.export(export)?;
    let mut buf = vec![0u8; e.size()? as usize];
    e.read(0, &mut buf)?;
    Ok(buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }))
}
