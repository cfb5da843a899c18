//! `arca serve` on a pool where an old copy of a device was put back: refused, naming the
//! device and how to accept it; `--accept-stale-device` starts anyway and says so in the log.

use crate::util::*;

#[test]
fn serve_refuses_an_old_copy_of_a_device_unless_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let dev0 = dir.path().join("dev0.img");
    let dev1 = dir.path().join("dev1.img");
    let (d0, d1) = (dev0.to_str().unwrap(), dev1.to_str().unwrap());
    let devices = ["--device", d0, "--device", d1];
    let d = Daemon::serve(&[&devices[..], &["--create", "--size", "256M"]].concat());
    d.arca(&["volume", "create", "a", "--size", "1M"]).ok();
    d.stop();
    let old1 = std::fs::read(&dev1).unwrap();
    let d = Daemon::serve(&devices);
    d.arca(&["volume", "create", "b", "--size", "1M"]).ok();
    d.arca(&["volume", "create", "c", "--size", "1M"]).ok();
    d.stop();
    std::fs::write(&dev1, &old1).unwrap();

    let mut cmd = arca_cmd();
    cmd.args(["serve", "--nbd", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .args(devices);
    let out = run_cmd(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr
            .contains(&format!("device {d1} (index 1) is stale"))
            && out.stderr.contains("--accept-stale-device"),
        "{}",
        out.describe()
    );

    let d = Daemon::serve(&[&devices[..], &["--accept-stale-device", "1"]].concat());
    let log = d.log();
    assert!(
        log.contains("WARN") && log.contains("accepted as it is"),
        "the forced open is in the log:\n{log}"
    );
    let volumes = d.arca(&["volume", "list"]).ok().stdout;
    assert!(volumes.contains('b') && volumes.contains('c'), "{volumes}");
    d.stop();
    // Current again: no option needed.
    Daemon::serve(&devices).stop();
}
