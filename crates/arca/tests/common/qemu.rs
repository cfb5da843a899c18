//! qemu-io, QEMU's NBD client, as a host of the daemon under test.

use std::process::Command;

use super::daemon::Daemon;
use super::process::{Out, run_cmd};
use super::tools::tools;

/// Bounds one qemu-io run.
const QEMU_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(150);

/// One qemu-io connection running `cmds` in order on `export`, read-only when every command
/// reads; not checked (qemu-io exits 1 when a command fails).
pub fn qemu_io_run(d: &Daemon, export: &str, cmds: &[&str]) -> Out {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    if cmds.iter().all(|c| c.starts_with("read")) {
        cmd.arg("-r");
    }
    for c in cmds {
        cmd.args(["-c", c]);
    }
    cmd.arg(d.uri(export));
    run_cmd(cmd, QEMU_TIMEOUT)
}

/// [`qemu_io_run`] that must succeed: exit 0 and no failure (an I/O error, a `read -P`
/// mismatch) reported in its output.
pub fn qemu_io(d: &Daemon, export: &str, cmds: &[&str]) -> Out {
    let out = qemu_io_run(d, export, cmds);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        out.status.success() && !text.contains("failed") && !text.contains("error"),
        "qemu-io {cmds:?} on {export} reported a failure:\n{}",
        out.describe()
    );
    out
}

/// [`qemu_io`] when qemu-io is installed; false (a skip, an error under CI) when it is not, so
/// a test can still check what needs no host.
pub fn qemu_io_if_installed(d: &Daemon, export: &str, cmds: &[&str]) -> bool {
    if !tools(&["qemu-io"]) {
        return false;
    }
    qemu_io(d, export, cmds);
    true
}

/// A host write into `export` is refused (it is read-only to hosts). Checked when qemu-io is
/// installed (see [`tools`]).
pub fn write_refused(d: &Daemon, export: &str) {
    if !tools(&["qemu-io"]) {
        return;
    }
    let out = qemu_io_run(d, export, &["write -P 0xee 0 4k"]);
    assert!(
        !out.status.success() && !out.stdout.contains("wrote "),
        "a host wrote into {export}:\n{}",
        out.describe()
    );
}

/// Both exports hold the same bytes, as qemu-img compares them. Checked when qemu-img is
/// installed (see [`tools`]).
pub fn identical(d: &Daemon, a: &str, b: &str) {
    if !tools(&["qemu-img"]) {
        return;
    }
    let mut cmd = Command::new("qemu-img");
    cmd.args(["compare", "-f", "raw", "-F", "raw", &d.uri(a), &d.uri(b)]);
    let out = run_cmd(cmd, QEMU_TIMEOUT);
    assert!(
        out.status.success(),
        "{a} and {b} differ:\n{}",
        out.describe()
    );
}
