//! Shared helpers: pools on simulated devices.

pub use arca_store::sim::pattern;
pub use arca_store::sim::{SimPool, block_devices as as_block};
use arca_store::{Pool, PoolConfig};

pub const MIB: u64 = 1 << 20;

pub fn small_config() -> PoolConfig {
    PoolConfig {
        extent_size: 4096,
        meta_len: Some(4 * MIB),
    }
}

pub fn sim_pool(device_sizes: &[u64], config: &PoolConfig) -> SimPool {
    SimPool::create(device_sizes, config).expect("create pool")
}

/// A pool on devices of `device_sizes` (the small config) holding volume `v` of `size` bytes.
pub fn pool_with_v(device_sizes: &[u64], size: u64) -> SimPool {
    let sp = sim_pool(device_sizes, &small_config());
    sp.pool.create_volume("v", size, None).unwrap();
    sp
}

/// Reopens the pool on the devices' current content (a clean restart).
pub fn reopen(sp: &SimPool) -> Pool {
    sp.reopen().expect("reopen pool")
}

pub fn assert_clean(pool: &Pool) {
    let report = pool.fsck().expect("fsck runs");
    assert!(report.is_clean(), "fsck problems: {:#?}", report.problems);
}
