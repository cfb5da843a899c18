//! The cli harness: runs of the real `arca` client against the shared daemon
//! (crates/arca/tests/common), and readers of its output.

use std::process::Command;

use serde_json::Value;

pub use crate::common::daemon::{Daemon, arca_cmd};
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

/// A loopback URL where nothing listens (the port was just free).
pub fn closed_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

impl Daemon {
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

/// The entry of a JSON list whose `key` is `value`.
pub fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|e| e[key] == value)
        .unwrap_or_else(|| panic!("no entry with {key} = {value:?} in {list:#}"))
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
