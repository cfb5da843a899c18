//! The interop harness: the shared daemon (crates/arca/tests/common), clients run with a
//! timeout, and data helpers.

use std::path::Path;
use std::process::Command;

pub use crate::common::daemon::{Daemon, Serve, tempdir};
pub use crate::common::process::Out;
pub use crate::common::tools::PYTHON;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;

/// Size of the pool's single sparse device (as `--size 2G` creates it).
const POOL_SIZE: u64 = 2 * 1024 * MIB;
/// Bounds one client run.
const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(150);

/// A client's `--json` output, parsed.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Runs `prog args` to completion, bounded by a timeout (the process is killed past it).
pub fn run<S: AsRef<std::ffi::OsStr>>(prog: &str, args: &[S]) -> Out {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    run_cmd(cmd)
}

pub fn run_cmd(cmd: Command) -> Out {
    crate::common::process::run_cmd(cmd, CLIENT_TIMEOUT)
}

/// Creates the pool of `tmp/pool` with the storage library so a test can lay out volumes and
/// snapshots before the daemon opens it; the pool is closed (and its device unlocked) on return.
pub fn prepare_pool(tmp: &Path, f: impl FnOnce(&arca_store::Pool)) {
    let dir = tmp.join("pool");
    std::fs::create_dir_all(&dir).unwrap();
    let dev = dir.join("device-0.img");
    let pool =
        arca_store::Pool::create_files(&[&dev], POOL_SIZE, &arca_store::PoolConfig::default())
            .expect("creating the pool");
    f(&pool);
    pool.close().expect("closing the pool");
}

/// Deterministic pseudo-random bytes (splitmix64): reproducible failures, no dependency.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Panics at the first differing byte instead of printing megabytes.
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i}: got {:#04x}, want {:#04x}",
            got[i], want[i]
        );
    }
}
