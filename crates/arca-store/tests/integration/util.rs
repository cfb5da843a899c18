//! Shared helpers: pools on simulated devices.

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

/// Reopens the pool on the devices' current content (a clean restart).
pub fn reopen(sp: &SimPool) -> Pool {
    sp.reopen().expect("reopen pool")
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
