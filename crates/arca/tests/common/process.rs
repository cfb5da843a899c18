//! Child processes with a timeout: the daemon's stop, and client runs with their output.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Waits for `child` to exit, up to `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("waiting for a child") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stops a daemon by PID with SIGTERM and waits up to `timeout`; kills it if it hangs. The
/// exit status, or `None` when it had to be killed.
pub fn terminate(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    if let Some(s) = child.try_wait().unwrap() {
        return Some(s);
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child's PID, which has not been reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = wait_timeout(child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// A finished client run.
pub struct Out {
    pub what: String,
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with the whole output unless the run exited 0.
    pub fn ok(self) -> Out {
        assert_eq!(self.status.code(), Some(0), "{}", self.describe());
        self
    }

    /// Asserts exit 0 and parses stdout as JSON.
    pub fn json(self) -> serde_json::Value {
        let out = self.ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", out.describe()))
    }

    /// Asserts a usage error: exit 2, nothing on stdout.
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

/// Runs `cmd` to completion with its output captured, killing it past `timeout`.
pub fn run_cmd(mut cmd: std::process::Command, timeout: Duration) -> Out {
    use std::io::Read;
    use std::process::Stdio;
    let mut what = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        what.push(' ');
        what.push_str(&a.to_string_lossy());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    // Drained on threads so a chatty run cannot block on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let Some(status) = wait_timeout(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{what} did not finish within {timeout:?}; stderr:\n{}",
            err.join().unwrap_or_default()
        );
    };
    Out {
        what,
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}
