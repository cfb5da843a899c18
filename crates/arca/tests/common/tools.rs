//! Tools a test needs from the machine (qemu-io, nbdinfo, libnbd's Python binding, ...): a
//! missing one fails the test under CI=true and skips it otherwise.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Debian's interpreter: the libnbd binding (python3-libnbd, what nbdsh runs) is installed for
/// it, not for whatever other python3 comes first on PATH.
pub const PYTHON: &str = "/usr/bin/python3";

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn on_path(tool: &str) -> bool {
    if tool.contains('/') {
        return is_executable(Path::new(tool));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| is_executable(&d.join(tool)))
}

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

/// True when every tool is there. A missing one panics under CI=true (a skipped test must not
/// pass silently there) and is a printed skip otherwise. `python3-nbd` stands for Debian's
/// python3 with the libnbd binding.
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
    assert!(
        !ci(),
        "CI=true and required tools are missing: {missing:?} (scripts/test installs them)"
    );
    eprintln!("SKIPPED: missing tools {missing:?}; run scripts/test to install them");
    false
}

/// Returns early from a test when a tool is missing (see [`tools`]).
#[macro_export]
macro_rules! require {
    ($($t:expr),+ $(,)?) => {
        if !$crate::common::tools::tools(&[$($t),+]) {
            return;
        }
    };
}
