//! A nearly full metadata region through the daemon: backups are refused with a clear error
//! before anything changes, and hosts, deletions and checks go on working.

use crate::util::{Daemon, tools};

/// qemu-io commands on an export that must succeed, with nothing on stderr.
fn qemu_io(d: &Daemon, export: &str, cmds: &[&str]) {
    let out = crate::common::qemu::qemu_io(d, export, cmds);
    assert!(out.stderr.is_empty(), "{}", out.describe());
}

/// Regression (issue 11, items 1 and 2): on a 64 MiB device, backups carrying 32 long
/// key/value pairs filled the metadata region; then host flushes failed with ENOSPC, every
/// delete answered 507, `pool check` and `catalog rebuild` failed, and a refused snapshot
/// stayed in memory without its record.
#[test]
fn a_nearly_full_metadata_region_refuses_backups_and_nothing_else() {
    if !tools(&["qemu-io"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev0.img");
    let d = Daemon::serve(&[
        "--device",
        dev.to_str().unwrap(),
        "--create",
        "--size",
        "64M",
    ]);
    d.arca(&["volume", "create", "v", "--size", "16M"]).ok();
    qemu_io(&d, "v", &["write -P 0xab 0 16M"]);
    let pairs: Vec<String> = (0..32)
        .map(|i| format!("k{i:02}{}={}", "k".repeat(61), "v".repeat(256)))
        .collect();
    let mut args = vec!["backup", "create", "v"];
    for p in &pairs {
        args.extend(["--meta", p.as_str()]);
    }
    let mut made = 0;
    let refusal = loop {
        let out = d.arca(&args);
        if !out.status.success() {
            break out.error_line();
        }
        made += 1;
        assert!(made < 1000, "no backup was ever refused");
    };
    assert!(
        refusal.contains("metadata region nearly full") && refusal.contains("make room"),
        "{refusal}"
    );
    assert!(made >= 10, "only {made} backups fitted");
    // Nothing of the refused backup exists.
    let list = d.json(&["backup", "list", "--volume", "v"]);
    let backups = list["backups"].as_array().expect("a list of backups");
    assert_eq!(backups.len(), made);
    let snaps = d.json(&["snapshot", "list", "v"]);
    assert_eq!(snaps.as_array().unwrap().len(), made);
    let status = d.json(&["pool", "status"]);
    assert!(
        status["metadata_used"].as_u64().unwrap() <= status["metadata_reachable"].as_u64().unwrap(),
        "{status}"
    );

    // Hosts write with FUA and flush; checks and a rebuild work; a delete makes room again.
    qemu_io(&d, "v", &["write -f -P 0xcd 0 1M", "flush"]);
    d.arca(&["pool", "check"]).ok();
    d.arca(&["catalog", "check"]).ok();
    d.arca(&["catalog", "rebuild"]).ok();
    let oldest = backups.last().unwrap()["id"].as_u64().unwrap().to_string();
    d.arca(&["backup", "delete", &oldest]).ok();
    d.arca(&["backup", "create", "v"]).ok();
    d.arca(&["catalog", "check"]).ok();
    d.stop();
}
