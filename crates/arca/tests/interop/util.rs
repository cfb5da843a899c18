//! The interop harness: the shared daemon (crates/arca/tests/common), clients run with a
//! timeout, and data helpers.

use std::path::Path;
use std::process::Command;

pub use crate::common::daemon::{Daemon, Serve, tempdir};
pub use crate::common::data::{assert_same, random_bytes};
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

/// The JSON map a client prints when run as `prog args`: one run per array element, read by
/// `entry`, checked to tile `[0, size)`.
pub fn tool_map(
    prog: &str,
    args: &[&str],
    export: &str,
    size: u64,
    entry: impl Fn(&serde_json::Value) -> (u64, u64, bool),
) -> Vec<(u64, u64, bool)> {
    let out = run(prog, args).ok();
    let list = json(&out.stdout);
    let runs = list
        .as_array()
        .unwrap_or_else(|| panic!("{prog}: not a JSON array: {list}"))
        .iter()
        .map(entry)
        .collect();
    tiled(runs, export, size)
}

/// (offset, length, hole) runs of `nbdinfo --map --json`, checked to tile [0, size).
pub fn nbdinfo_map(d: &Daemon, export: &str, size: u64) -> Vec<(u64, u64, bool)> {
    let uri = d.uri(export);
    tool_map("nbdinfo", &["--map", "--json", &uri], export, size, |e| {
        let hole = e["type"].as_u64().unwrap() & 1 == 1;
        assert_eq!(
            hole,
            e["description"].as_str().unwrap().contains("hole"),
            "type and description disagree: {e:?}"
        );
        (
            e["offset"].as_u64().unwrap(),
            e["length"].as_u64().unwrap(),
            hole,
        )
    })
}

/// A client's map of `export`: runs `(start, length, flag)`, checked to tile `[0, size)`.
pub fn tiled(runs: Vec<(u64, u64, bool)>, export: &str, size: u64) -> Vec<(u64, u64, bool)> {
    let mut next = 0;
    for &(start, len, _) in &runs {
        assert_eq!(start, next, "map of {export} not contiguous: {runs:?}");
        next = start + len;
    }
    assert_eq!(next, size, "map does not cover {export}: {runs:?}");
    runs
}

/// The flag of the map run holding `off`.
pub fn flag_at(runs: &[(u64, u64, bool)], off: u64) -> bool {
    runs.iter()
        .find(|(s, l, _)| (*s..s + l).contains(&off))
        .unwrap_or_else(|| panic!("offset {off} not in map {runs:?}"))
        .2
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

/// Runs `arca serve` on a new pool in `dir` (a 64 MiB device), NBD on `nbd` and the API on an
/// ephemeral loopback port, with `extra` arguments, for a start that is expected to fail.
pub fn serve_once(dir: &Path, nbd: &str, extra: &[&str]) -> Out {
    run_cmd(serve_cmd(dir, nbd, extra))
}

/// The `arca serve` command of [`serve_once`], to start as the caller needs.
pub fn serve_cmd(dir: &Path, nbd: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_arca"));
    cmd.args(["serve", "--pool"])
        .arg(dir.join("pool"))
        .args(["--size", "64M", "--nbd", nbd, "--api", "127.0.0.1:0"])
        .args(extra);
    cmd
}
