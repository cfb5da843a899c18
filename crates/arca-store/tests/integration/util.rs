//! Shared helpers: pools on simulated devices.

pub use arca_store::sim::pattern;
pub use arca_store::sim::{SimPool, block_devices as as_block};
use arca_store::{Export, Pool, PoolConfig};

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

/// `pool_with_v` and volume `v` exported.
pub fn exported_v(device_sizes: &[u64], size: u64) -> (SimPool, Export) {
    let sp = pool_with_v(device_sizes, size);
    let v = sp.pool.export("v").unwrap();
    (sp, v)
}

/// Writes `pattern(seed, len)` at `offset`; the bytes written.
pub fn write_pattern(e: &Export, offset: u64, seed: u64, len: usize) -> Vec<u8> {
    let data = pattern(seed, len);
    e.write(offset, &data, false).unwrap();
    data
}

/// `len` bytes read at `offset`.
pub fn read_at(e: &Export, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    e.read(offset, &mut buf).unwrap();
    buf
}

/// Reopens the pool on the devices' current content (a clean restart).
pub fn reopen(sp: &SimPool) -> Pool {
    sp.reopen().expect("reopen pool")
}

/// Reopens the pool (`reopen`) and checks that volume `v` reads `expect` at `offset` and
/// fsck finds nothing; the reopened pool.
pub fn assert_reopens_with(sp: &SimPool, offset: u64, expect: &[u8]) -> Pool {
    let reopened = reopen(sp);
    let e = reopened.export("v").unwrap();
    assert_eq!(read_at(&e, offset, expect.len()), expect);
    drop(e);
    assert_clean(&reopened);
    reopened
}

pub fn assert_clean(pool: &Pool) {
    let report = pool.fsck().expect("fsck runs");
    assert!(report.is_clean(), "fsck problems: {:#?}", report.problems);
}
