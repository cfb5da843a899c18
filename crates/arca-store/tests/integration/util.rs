//! Shared helpers: pools on simulated devices.

use std::sync::Arc;

use arca_store::sim::{PowerDomain, SimDevice};
use arca_store::{BlockDevice, Pool, PoolConfig};

pub const MIB: u64 = 1 << 20;

/// A simulated machine: devices on one power domain, and the pool on them.
pub struct SimPool {
    pub power: Arc<PowerDomain>,
    pub devices: Vec<Arc<SimDevice>>,
    pub pool: Pool,
}

pub fn small_config() -> PoolConfig {
    PoolConfig {
        extent_size: 4096,
        meta_len: Some(4 * MIB),
    }
}

pub fn sim_pool(device_sizes: &[u64], config: &PoolConfig) -> SimPool {
    let power = PowerDomain::new();
    let devices: Vec<Arc<SimDevice>> = device_sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            Arc::new(SimDevice::new(
                &format!("sim{i}"),
                s as usize,
                power.clone(),
            ))
        })
        .collect();
    let pool = Pool::create(as_block(&devices), config).expect("create pool");
    SimPool {
        power,
        devices,
        pool,
    }
}

pub fn as_block(devices: &[Arc<SimDevice>]) -> Vec<Arc<dyn BlockDevice>> {
    devices
        .iter()
        .map(|d| d.clone() as Arc<dyn BlockDevice>)
        .collect()
}

/// Reopens the pool on the devices' current content (a clean restart).
pub fn reopen(sp: &SimPool) -> Pool {
    Pool::open(as_block(&sp.devices)).expect("reopen pool")
}

pub fn assert_clean(pool: &Pool) {
    let report = pool.fsck().expect("fsck runs");
    assert!(report.is_clean(), "fsck problems: {:#?}", report.problems);
}

/// Deterministic bytes for a test write.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
