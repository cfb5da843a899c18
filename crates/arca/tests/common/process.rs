//! Child-process helpers shared by the test harnesses that run `arca serve`.

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
