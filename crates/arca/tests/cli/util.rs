//! The cli harness: runs of the real `arca` client against the shared daemon
//! (crates/arca/tests/common), and readers of its output.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

pub use crate::common::daemon::{Daemon, arca_cmd};
pub use crate::common::json::find;
pub use crate::common::process::Out;
pub use crate::common::tools::{PYTHON, tools};

/// Bounds one client run.
const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `arca ARGS` with no `--api` added (for usage errors and explicit URLs).
pub fn arca(args: &[&str]) -> Out {
    let mut cmd = arca_cmd();
    cmd.args(args);
    run_cmd(cmd)
}

pub fn run_cmd(cmd: Command) -> Out {
    crate::common::process::run_cmd(cmd, CLIENT_TIMEOUT)
}

/// The whole image of an export, as a host reads it (qemu-img convert to a raw file in `dir`,
/// removed afterwards).
pub fn image(d: &Daemon, export: &str, dir: &Path) -> Vec<u8> {
    let file = dir.join(format!("{}.raw", export.replace('@', "_")));
    let _ = std::fs::remove_file(&file);
    let mut cmd = Command::new("qemu-img");
    cmd.args(["convert", "-f", "raw", "-O", "raw"])
        .arg(d.uri(export))
        .arg(&file);
    run_cmd(cmd).ok();
    let data = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    data
}

/// `arca ARGS` is a usage error (exit 2) whose message mentions `want`.
pub fn assert_usage_error(args: &[&str], want: &str) {
    let out = arca(args).usage_error();
    assert!(
        out.stderr.contains(want),
        "{want:?} missing:\n{}",
        out.describe()
    );
}

/// `arca ARGS --help` succeeds, its text starts with `starts` and mentions each of `words`
/// (help is not an error); its text.
pub fn assert_help(args: &[&str], starts: &str, words: &[&str]) -> String {
    let out = arca(&[args, &["--help"]].concat()).ok();
    assert!(out.stdout.starts_with(starts), "{}", out.stdout);
    for w in words {
        assert!(out.stdout.contains(w), "{w} missing:\n{}", out.stdout);
    }
    out.stdout
}

/// [`assert_usage_error`] for each case of the command group `group`, run with an `--api`
/// where nothing answers (usage errors come before any request); first the errors every
/// group has: no subcommand, and an unknown one.
pub fn assert_usage_errors(group: &str, cases: &[(&[&str], &str)]) {
    let api = closed_url();
    let common: [(&[&str], &str); 2] =
        [(&[group], "Usage"), (&[group, "frobnicate"], "frobnicate")];
    for (args, want) in common.iter().chain(cases) {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--api", &api]);
        assert_usage_error(&full, want);
    }
}

/// Every kind of host information `backup create` takes, as options.
pub const HOST_INFO_ARGS: &[&str] = &[
    "--label",
    "nightly",
    "--program",
    "pgbackup",
    "--host",
    "db1",
    "--app",
    "postgres",
    "--content-id",
    "c-7",
    "--description",
    "before the upgrade",
    "--meta",
    "tier=gold",
    "--meta",
    "ticket=42",
];

/// A loopback URL where nothing listens (the port was just free).
pub fn closed_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// The path of a device file in `dir`, for daemons started on the same pool one after another.
pub fn device(dir: &std::path::Path) -> String {
    dir.join("device.img").to_str().unwrap().to_string()
}

/// A new tempdir and the path of a device file in it (see [`device`]).
pub fn device_in_tempdir() -> (tempfile::TempDir, String) {
    let tmp = crate::common::daemon::tempdir();
    let dev = device(tmp.path());
    (tmp, dev)
}

impl Daemon {
    /// A daemon creating a pool of `size` on the device file `dev` (see [`device`]).
    pub fn serve_new_device(dev: &str, size: &str) -> Daemon {
        Daemon::serve(&["--device", dev, "--create", "--size", size])
    }

    /// `arca ARGS --api URL`.
    pub fn arca(&self, args: &[&str]) -> Out {
        let mut cmd = arca_cmd();
        cmd.args(args).args(["--api", &self.api]);
        run_cmd(cmd)
    }

    /// `arca ARGS --api URL --json`, asserting exit 0; the parsed stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut cmd = arca_cmd();
        cmd.args(args).args(["--api", &self.api, "--json"]);
        run_cmd(cmd).json()
    }
}

/// The value of the `KEY: value` line of a `show` or `status` text.
pub fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
        .trim()
        .to_string()
}

/// The header cells of a table.
pub fn header(table: &str) -> Vec<&str> {
    table.lines().next().unwrap().split_whitespace().collect()
}

/// The table row whose first cell is `first`, split into cells.
pub fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{table}"))
}

pub const GIB: u64 = 1 << 30;
