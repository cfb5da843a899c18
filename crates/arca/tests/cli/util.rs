//! Shared harness: a real `arca serve` with its API on an ephemeral loopback port, and runs of
//! the real `arca` client against it.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bounds daemon start and stop, so a hung daemon fails the test instead of hanging it.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds one client run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

pub const ARCA: &str = env!("CARGO_BIN_EXE_arca");

pub use crate::process::Out;

impl Out {
    /// Panics with the whole output unless the run exited 0.
    pub fn ok(self) -> Out {
        assert_eq!(self.status.code(), Some(0), "{}", self.describe());
        self
    }

    /// Asserts exit 0 and parses stdout as JSON.
    pub fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", out.describe()))
    }

    /// Asserts a usage error: exit 2.
    pub fn usage_error(self) -> Out {
        assert_eq!(self.status.code(), Some(2), "{}", self.describe());
        assert!(self.stdout.is_empty(), "{}", self.describe());
        self
    }

    /// Asserts exit 1 with nothing on stdout and exactly one stderr line, `error: ...`;
    /// that line.
    pub fn error_line(self) -> String {
        assert_eq!(self.status.code(), Some(1), "{}", self.describe());
        assert!(self.stdout.is_empty(), "{}", self.describe());
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "one error line expected:\n{}",
            self.describe()
        );
        assert!(
            lines[0].starts_with("error: ") && lines[0].len() > "error: ".len(),
            "{}",
            self.describe()
        );
        lines[0].to_string()
    }
}

/// The client, with none of the caller's ARCA_* or proxy settings leaking in.
pub fn arca_cmd() -> Command {
    let mut cmd = Command::new(ARCA);
    for var in [
        "ARCA_API",
        "ARCA_TOKEN",
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `arca ARGS` with no `--api` added (for usage errors and explicit URLs).
pub fn arca(args: &[&str]) -> Out {
    let mut cmd = arca_cmd();
    cmd.args(args);
    run_cmd(cmd)
}

pub fn run_cmd(cmd: Command) -> Out {
    crate::process::run_cmd(cmd, CLIENT_TIMEOUT)
}

/// A loopback URL where nothing listens (the port was just free).
pub fn closed_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// A running `arca serve --api`, stopped with SIGTERM by PID when dropped.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT`, as the daemon printed it.
    pub api: String,
    /// `127.0.0.1:PORT` of the NBD listener.
    pub nbd: String,
    /// Holds the pool; removed when the daemon is dropped.
    _tmp: tempfile::TempDir,
    log: PathBuf,
    stopped: bool,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::spawn(None, &[])
    }

    /// A daemon with more `arca serve` options.
    pub fn start_with_args(args: &[&str]) -> Daemon {
        Daemon::spawn(None, args)
    }

    /// A daemon requiring `Authorization: Bearer TOKEN`, given in a token file.
    pub fn start_with_token(token: &str) -> Daemon {
        Daemon::spawn(Some(token), &[])
    }

    fn spawn(token: Option<&str>, extra: &[&str]) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("arca-cli-")
            .tempdir()
            .expect("tempdir");
        let log = tmp.path().join("daemon.log");
        let stdout_path = tmp.path().join("daemon.stdout");
        let mut cmd = arca_cmd();
        cmd.arg("serve")
            .arg("--pool")
            .arg(tmp.path().join("pool"))
            .args([
                "--size",
                "2G",
                "--nbd",
                "127.0.0.1:0",
                "--api",
                "127.0.0.1:0",
            ])
            .args(extra);
        if let Some(t) = token {
            let path = tmp.path().join("token");
            // As `echo TOKEN > file` writes it: with a newline.
            std::fs::write(&path, format!("{t}\n")).unwrap();
            cmd.arg("--token-file").arg(&path);
        }
        // Files, not pipes: nothing has to drain them, and the log survives for failure reports.
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        Daemon::launch(cmd, tmp, &stdout_path, log)
    }

    /// Starts the prepared `arca serve` and waits for both ready lines on its stdout.
    fn launch(
        mut cmd: std::process::Command,
        tmp: tempfile::TempDir,
        stdout_path: &std::path::Path,
        log: std::path::PathBuf,
    ) -> Daemon {
        let mut child = cmd.spawn().expect("spawning arca serve");
        let deadline = Instant::now() + DAEMON_TIMEOUT;
        let (mut nbd, mut api) = (None, None);
        loop {
            let out = std::fs::read_to_string(stdout_path).unwrap_or_default();
            // Only complete lines: the file may be read while a line is being written.
            for line in out.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
                if let Some(a) = line.trim().strip_prefix("arca: serving NBD on ") {
                    nbd = Some(a.to_string());
                }
                if let Some(a) = line.trim().strip_prefix("arca: serving API on ") {
                    api = Some(a.to_string());
                }
            }
            if nbd.is_some() && api.is_some() {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "arca serve exited early with {status}; stdout {out:?}; stderr:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "arca serve was not ready within {DAEMON_TIMEOUT:?}; stdout {out:?}; stderr:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (nbd, api) = (nbd.unwrap(), api.unwrap());
        assert!(
            nbd.starts_with("127.0.0.1:") && api.starts_with("http://127.0.0.1:"),
            "unexpected ready lines: NBD {nbd:?}, API {api:?}"
        );
        Daemon {
            child,
            api,
            nbd,
            _tmp: tmp,
            log,
            stopped: false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

    /// SIGTERM, then waits: the daemon must exit 0.
    pub fn stop(mut self) {
        let status = self.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "arca serve did not exit 0 after SIGTERM: {status:?}; stderr:\n{}",
            self.log()
        );
    }

    /// [`Daemon::stop`], returning its log.
    pub fn stop_with_log(mut self) -> String {
        let status = self.terminate();
        let log = self.log();
        assert!(
            status.is_some_and(|s| s.success()),
            "arca serve did not exit 0 after SIGTERM: {status:?}; stderr:\n{log}"
        );
        log
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        self.stopped = true;
        crate::process::terminate(&mut self.child, DAEMON_TIMEOUT)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.stopped {
            let status = self.terminate();
            if std::thread::panicking() {
                eprintln!(
                    "arca serve exit status {status:?}; its stderr:\n{}",
                    self.log()
                );
            }
        }
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

// ---- Helpers for the end-to-end scenarios (scenarios.rs) ----

impl Daemon {
    /// `arca serve --nbd 127.0.0.1:0 --api 127.0.0.1:0 ARGS`, with no `--pool`/`--size` of its
    /// own: for daemons on explicit devices (`--device PATH [--create --size SIZE]`) that the
    /// caller keeps, so that a second daemon can be started on the same pool. Logs go to a
    /// fresh tempdir of this daemon.
    pub fn serve(args: &[&str]) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("arca-cli-")
            .tempdir()
            .expect("tempdir");
        let log = tmp.path().join("daemon.log");
        let stdout_path = tmp.path().join("daemon.stdout");
        let mut cmd = arca_cmd();
        cmd.args(["serve", "--nbd", "127.0.0.1:0", "--api", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        Daemon::launch(cmd, tmp, &stdout_path, log)
    }

    /// SIGKILL by PID (no flush, no clean close: a crash), then reaps the process so that its
    /// device locks are gone. Returns its log.
    pub fn kill(mut self) -> String {
        self.stopped = true;
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's PID, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let status = crate::process::wait_timeout(&mut self.child, DAEMON_TIMEOUT);
        assert!(status.is_some(), "arca serve survived SIGKILL");
        self.log()
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Debian's interpreter: the libnbd binding (python3-libnbd, what nbdsh runs) is installed for
/// it, not for whatever other python3 comes first on PATH.
pub const PYTHON: &str = "/usr/bin/python3";

fn tool_present(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if tool == "python3-nbd" {
        return Command::new(PYTHON)
            .args(["-c", "import nbd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| {
        d.join(tool)
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// True when every tool is installed (`python3-nbd`: Debian's python3 with the libnbd
/// binding). A missing one panics under CI=true (a scenario must not pass silently there) and
/// is a printed skip otherwise.
pub fn tools(names: &[&str]) -> bool {
    let missing: Vec<&str> = names.iter().copied().filter(|t| !tool_present(t)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !ci(),
        "CI=true and required tools are missing: {missing:?} (scripts/test installs them)"
    );
    eprintln!("SKIPPED: missing tools {missing:?}");
    false
}
