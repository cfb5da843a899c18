//! The daemon under test: `arca serve` on ephemeral loopback ports with its files in a
//! tempdir, waited for by its ready lines and stopped by PID (SIGTERM, or SIGKILL for a crash).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::process;

/// Bounds daemon start and stop, so a hung daemon fails the test instead of hanging it.
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(60);

pub const ARCA: &str = env!("CARGO_BIN_EXE_arca");

/// Size of the pool's single sparse device when the daemon creates it (`--size`).
pub const POOL_SIZE: &str = "2G";

/// `arca`, with none of the caller's ARCA_* or proxy settings leaking in.
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

/// A tempdir for a daemon's files (`pool/`, its log) and the test's own.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("arca-test-")
        .tempdir()
        .expect("tempdir")
}

/// What a daemon is started with, kept for a restart.
#[derive(Clone)]
struct Spec {
    /// `--pool DIR --size 2G`: a pool the daemon creates when DIR holds no device yet. None
    /// for daemons given their devices in `args`.
    pool: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    umask: Option<libc::mode_t>,
}

/// How to start a daemon; [`Serve::start`] starts it. By default it serves the pool of
/// `TMP/pool` in a new tempdir TMP.
pub struct Serve {
    tmp: tempfile::TempDir,
    spec: Spec,
}

impl Default for Serve {
    fn default() -> Serve {
        Serve::in_tempdir(tempdir())
    }
}

impl Serve {
    pub fn new() -> Serve {
        Serve::default()
    }

    /// Serves `tmp/pool` (created by the daemon when it holds no device yet): a pool a test
    /// prepared there, or its scratch files next to the pool.
    pub fn in_tempdir(tmp: tempfile::TempDir) -> Serve {
        let pool = tmp.path().join("pool");
        Serve {
            tmp,
            spec: Spec {
                pool: Some(pool),
                args: Vec::new(),
                env: Vec::new(),
                umask: None,
            },
        }
    }

    /// Serves the pool of `dir` (which the caller keeps) instead of `TMP/pool`.
    pub fn pool_dir(mut self, dir: &Path) -> Serve {
        self.spec.pool = Some(dir.to_path_buf());
        self
    }

    /// No `--pool`/`--size`: the devices are in the arguments (`--device PATH [--create
    /// --size SIZE]`), kept by the caller so that a second daemon can serve the same pool.
    pub fn without_pool(mut self) -> Serve {
        self.spec.pool = None;
        self
    }

    /// More `arca serve` options.
    pub fn args<S: AsRef<OsStr>>(mut self, args: &[S]) -> Serve {
        self.spec
            .args
            .extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// `--volume NAME=SIZE` for each.
    pub fn volumes(mut self, volumes: &[&str]) -> Serve {
        for v in volumes {
            self.spec.args.extend(["--volume".into(), v.into()]);
        }
        self
    }

    /// Requires `Authorization: Bearer TOKEN`, given in a token file.
    pub fn token(self, token: &str) -> Serve {
        let path = self.tmp.path().join("token");
        // As `echo TOKEN > file` writes it: with a newline.
        std::fs::write(&path, format!("{token}\n")).unwrap();
        self.args(&[OsStr::new("--token-file"), path.as_os_str()])
    }

    pub fn env(mut self, key: &str, value: &str) -> Serve {
        self.spec.env.push((key.into(), value.into()));
        self
    }

    /// Runs the daemon under this umask.
    pub fn umask(mut self, mask: libc::mode_t) -> Serve {
        self.spec.umask = Some(mask);
        self
    }

    pub fn start(self) -> Daemon {
        Daemon::launch(self.spec, self.tmp)
    }
}

/// A running `arca serve`, stopped with SIGTERM by PID when dropped.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT`, as the daemon printed it.
    pub api: String,
    /// `127.0.0.1:PORT` of the NBD listener.
    pub nbd: String,
    /// Holds the pool and the log; removed when the daemon is dropped.
    tmp: Option<tempfile::TempDir>,
    spec: Spec,
    stopped: bool,
}

impl Daemon {
    /// A daemon on a fresh pool.
    pub fn start() -> Daemon {
        Serve::new().start()
    }

    /// A daemon with more `arca serve` options.
    pub fn start_with_args(args: &[&str]) -> Daemon {
        Serve::new().args(args).start()
    }

    /// A daemon requiring `Authorization: Bearer TOKEN`, given in a token file.
    pub fn start_with_token(token: &str) -> Daemon {
        Serve::new().token(token).start()
    }

    /// A daemon on a fresh pool holding the given `NAME=SIZE` volumes.
    pub fn with_volumes(volumes: &[&str]) -> Daemon {
        Serve::new().volumes(volumes).start()
    }

    /// A daemon on the devices its arguments name (see [`Serve::without_pool`]).
    pub fn serve(args: &[&str]) -> Daemon {
        Serve::new().without_pool().args(args).start()
    }

    fn launch(spec: Spec, tmp: tempfile::TempDir) -> Daemon {
        let log = tmp.path().join("daemon.log");
        let stdout_path = tmp.path().join("daemon.stdout");
        let mut cmd = arca_cmd();
        cmd.arg("serve");
        if let Some(pool) = &spec.pool {
            cmd.arg("--pool").arg(pool).args(["--size", POOL_SIZE]);
        }
        cmd.args(["--nbd", "127.0.0.1:0", "--api", "127.0.0.1:0"])
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(mask) = spec.umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask(2) is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask);
                    Ok(())
                });
            }
        }
        // Files, not pipes: nothing has to drain them, and the log survives for failure
        // reports. Appended: a restarted daemon keeps the first run's log.
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            );
        let mut child = cmd.spawn().expect("spawning arca serve");
        let (nbd, api) = wait_ready(&mut child, &stdout_path, &log);
        Daemon {
            child,
            api,
            nbd,
            tmp: Some(tmp),
            spec,
            stopped: false,
        }
    }

    /// Sends the daemon a signal (SIGHUP to reload its access rules).
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child this value owns and has not reaped.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
    }

    pub fn port(&self) -> u16 {
        let (_, port) = self.nbd.rsplit_once(':').unwrap();
        port.parse().unwrap()
    }

    /// `nbd://127.0.0.1:PORT/EXPORT`.
    pub fn uri(&self, export: &str) -> String {
        format!("nbd://{}/{export}", self.nbd)
    }

    /// `127.0.0.1:PORT` of the NBD listener.
    pub fn addr(&self) -> String {
        self.nbd.clone()
    }

    /// Scratch space for the test's local files (the daemon's tempdir).
    pub fn dir(&self) -> &Path {
        self.tmp.as_ref().expect("tempdir").path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("daemon.log")).unwrap_or_default()
    }

    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            self.stopped = true;
            panic!("arca serve died with {status}; stderr:\n{}", self.log());
        }
    }

    /// SIGTERM, then waits: the daemon must finish, flush and exit 0.
    pub fn stop(self) {
        self.stop_with_log();
    }

    /// [`Daemon::stop`], returning its log.
    pub fn stop_with_log(mut self) -> String {
        self.stop_ok();
        self.log()
    }

    /// Stops the daemon (asserting exit 0) and starts a new one on the same pool with the same
    /// options.
    pub fn restart(mut self) -> Daemon {
        self.stop_ok();
        let tmp = self.tmp.take().expect("tempdir");
        Daemon::launch(self.spec.clone(), tmp)
    }

    /// SIGKILL by PID (no flush, no clean close: a crash), then reaps the process so that its
    /// device locks are gone. Returns its log.
    pub fn kill(mut self) -> String {
        self.stopped = true;
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's PID, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let status = process::wait_timeout(&mut self.child, DAEMON_TIMEOUT);
        assert!(status.is_some(), "arca serve survived SIGKILL");
        self.log()
    }

    fn stop_ok(&mut self) {
        let status = self.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "arca serve did not exit 0 after SIGTERM: {status:?}; stderr:\n{}",
            self.log()
        );
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        self.stopped = true;
        process::terminate(&mut self.child, DAEMON_TIMEOUT)
    }
}

/// Waits for both ready lines on the daemon's stdout (NBD first, then the API); their
/// addresses.
fn wait_ready(child: &mut Child, stdout_path: &Path, log: &Path) -> (String, String) {
    let deadline = Instant::now() + DAEMON_TIMEOUT;
    let (mut nbd, mut api) = (None, None);
    loop {
        let out = std::fs::read_to_string(stdout_path).unwrap_or_default();
        // Only complete lines: the file may be read while a line is being written.
        for (i, line) in out
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .enumerate()
        {
            if let Some(a) = line.trim().strip_prefix("arca: serving NBD on ") {
                assert_eq!(i, 0, "the NBD ready line comes first: {out:?}");
                nbd = Some(a.to_string());
            }
            if let Some(a) = line.trim().strip_prefix("arca: serving API on ") {
                api = Some(a.to_string());
            }
        }
        if let (Some(nbd), Some(api)) = (&nbd, &api) {
            assert!(
                nbd.starts_with("127.0.0.1:")
                    && (api.starts_with("http://127.0.0.1:")
                        || api.starts_with("https://127.0.0.1:")),
                "unexpected ready lines: NBD {nbd:?}, API {api:?}"
            );
            return (nbd.clone(), api.clone());
        }
        let stderr = || std::fs::read_to_string(log).unwrap_or_default();
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "arca serve exited early with {status}; stdout {out:?}; stderr:\n{}",
                stderr()
            );
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "arca serve was not ready within {DAEMON_TIMEOUT:?}; stdout {out:?}; stderr:\n{}",
                stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
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
