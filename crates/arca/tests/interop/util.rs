//! Shared harness: the daemon under test, running clients with a timeout, tool checks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;

/// Size of the pool's single sparse device (`--size 2G` for pools the daemon creates).
const POOL_SIZE: u64 = 2 * 1024 * MIB;
/// Bounds daemon start and stop, so a hung daemon fails the test instead of hanging it.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(60);
/// Bounds one client run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(150);

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn on_path(tool: &str) -> bool {
    if tool.contains('/') {
        return is_executable(Path::new(tool));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| is_executable(&d.join(tool)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Debian's interpreter: the libnbd binding (python3-libnbd) is installed for it, not for
/// whatever other python3 comes first on PATH.
pub const PYTHON: &str = "/usr/bin/python3";

fn python_nbd() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        is_executable(Path::new(PYTHON))
            && Command::new(PYTHON)
                .args(["-c", "import nbd"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    })
}

/// True when every tool is there. A missing one panics under CI=true (a skipped
/// interoperability test must not pass silently there) and is a printed skip otherwise.
/// `python3-nbd` stands for Debian's python3 with the libnbd binding.
pub fn tools(names: &[&str]) -> bool {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|t| {
            if *t == "python3-nbd" {
                !python_nbd()
            } else {
                !on_path(t)
            }
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if ci() {
        panic!("CI=true and required tools are missing: {missing:?} (scripts/test installs them)");
    }
    eprintln!("SKIPPED: missing tools {missing:?}; run scripts/test to install them");
    false
}

/// Returns early from a test when a tool is missing (see [`tools`]).
#[macro_export]
macro_rules! require {
    ($($t:expr),+ $(,)?) => {
        if !$crate::util::tools(&[$($t),+]) {
            return;
        }
    };
}

pub use crate::process::Out;

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with the whole output unless the run exited 0.
    pub fn ok(self) -> Out {
        assert!(
            self.status.success(),
            "{} failed:\n{}",
            self.what,
            self.describe()
        );
        self
    }
}

/// Runs `prog args` to completion, bounded by a timeout (the process is killed past it).
pub fn run<S: AsRef<std::ffi::OsStr>>(prog: &str, args: &[S]) -> Out {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    run_cmd(cmd)
}

pub fn run_cmd(cmd: Command) -> Out {
    crate::process::run_cmd(cmd, CLIENT_TIMEOUT)
}

/// A running `arca serve`, stopped with SIGTERM by PID when dropped.
pub struct Daemon {
    child: Child,
    pub port: u16,
    tmp: Option<tempfile::TempDir>,
    log: PathBuf,
    volumes: Vec<String>,
    /// Further `arca serve` arguments, kept for a restart.
    args: Vec<String>,
    stopped: bool,
}

/// A tempdir holding `pool/`; [`Daemon::start_in`] serves that pool.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("arca-interop-")
        .tempdir()
        .expect("tempdir")
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

impl Daemon {
    /// A fresh pool in a new tempdir with the given `NAME=SIZE` volumes.
    pub fn start(volumes: &[&str]) -> Daemon {
        Daemon::start_in(tempdir(), volumes)
    }

    /// [`Daemon::start`] with further `arca serve` arguments.
    pub fn start_with(volumes: &[&str], args: &[&str]) -> Daemon {
        Daemon::start_in_with(tempdir(), volumes, args)
    }

    /// Serves `tmp/pool` (created by the daemon when it holds no device yet).
    pub fn start_in(tmp: tempfile::TempDir, volumes: &[&str]) -> Daemon {
        Daemon::start_in_with(tmp, volumes, &[])
    }

    fn start_in_with(tmp: tempfile::TempDir, volumes: &[&str], args: &[&str]) -> Daemon {
        let pool = tmp.path().join("pool");
        let log = tmp.path().join("daemon.log");
        let stdout_path = tmp.path().join("daemon.stdout");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_arca"));
        cmd.arg("serve")
            .arg("--pool")
            .arg(&pool)
            .args(["--size", "2G"])
            .args(["--nbd", "127.0.0.1:0", "--api", "127.0.0.1:0"]);
        for v in volumes {
            cmd.args(["--volume", v]);
        }
        cmd.args(args);
        // Files, not pipes: nothing has to drain them, and the log survives for failure reports.
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            // Appended: a restarted daemon keeps the first run's log.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            );
        let mut child = cmd.spawn().expect("spawning arca serve");
        let deadline = Instant::now() + DAEMON_TIMEOUT;
        let port = loop {
            let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            // Only a complete line: the file may be read while the line is being written.
            if let Some((line, _)) = out.split_once('\n') {
                let port = line
                    .strip_prefix("arca: serving NBD on 127.0.0.1:")
                    .and_then(|p| p.trim().parse::<u16>().ok())
                    .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"));
                break port;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "arca serve exited early with {status}; stderr:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "arca serve printed no port within {DAEMON_TIMEOUT:?}; stdout {out:?}; stderr:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Daemon {
            child,
            port,
            tmp: Some(tmp),
            log,
            volumes: volumes.iter().map(|v| v.to_string()).collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            stopped: false,
        }
    }

    pub fn uri(&self, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{export}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Scratch space for the test's local files.
    pub fn dir(&self) -> &Path {
        self.tmp.as_ref().expect("tempdir").path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            self.stopped = true;
            panic!("arca serve died with {status}; stderr:\n{}", self.log());
        }
    }

    /// SIGTERM, then waits: the daemon must finish, flush and exit 0.
    pub fn stop(mut self) {
        let status = self.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "arca serve did not exit 0 after SIGTERM: {status:?}; stderr:\n{}",
            self.log()
        );
    }

    /// Stops the daemon (asserting exit 0) and starts a new one on the same pool.
    pub fn restart(mut self) -> Daemon {
        let status = self.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "arca serve did not exit 0 after SIGTERM: {status:?}; stderr:\n{}",
            self.log()
        );
        let tmp = self.tmp.take().expect("tempdir");
        let volumes: Vec<&str> = self.volumes.iter().map(String::as_str).collect();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Daemon::start_in_with(tmp, &volumes, &args)
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
