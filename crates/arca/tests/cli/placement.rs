//! Issue 12's reproduction as a user runs it: two devices, device 0 mostly full through a
//! pinned volume, and `v` (created without `--device`) whose data the pool puts on device 1.
//! `volume show` says where the data lies, and `backup targets` no longer calls a copy on
//! device 1 independent of it.

use serde_json::Value;

use crate::common::qemu::qemu_io;
use crate::require;
use crate::util::Daemon;

#[test]
fn volume_show_and_backup_targets_tell_where_a_volumes_data_lies() {
    require!("qemu-io");
    let tmp = tempfile::Builder::new()
        .prefix("arca-placement-")
        .tempdir()
        .unwrap();
    let dev = |i: u32| {
        tmp.path()
            .join(format!("d{i}.img"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let (d0, d1) = (dev(0), dev(1));
    let d = Daemon::serve(&[
        "--device", &d0, "--device", &d1, "--create", "--size", "256M",
    ]);
    d.arca(&[
        "volume", "create", "fill", "--size", "200M", "--device", "0",
    ])
    .ok();
    qemu_io(&d, "fill", &["write -P 0xab 0 180M"]);
    d.arca(&["volume", "create", "v", "--size", "16M"]).ok();
    qemu_io(&d, "v", &["write -P 0xcd 0 8M"]);

    let shown = d.arca(&["volume", "show", "v"]).ok().stdout;
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {shown}"))
            .to_string()
    };
    assert!(line("data:").ends_with("device 1 8.0M"), "{shown}");
    assert!(line("placement:").contains("none"), "{shown}");
    let v = d.json(&["volume", "show", "v"]);
    assert!(v["device"].is_null(), "{v:#}");
    assert_eq!(
        v["device_bytes"],
        serde_json::json!([{"device": 1, "bytes": 8 << 20}]),
        "{v:#}"
    );
    let fill = d.json(&["volume", "show", "fill"]);
    assert_eq!(fill["device_bytes"][0]["device"], 0, "{fill:#}");

    // Before the fix the first target was "new volume on device 1 ... survives the loss of
    // the source's device".
    let targets = d.json(&["backup", "targets", "v"]);
    let targets = targets.as_array().unwrap();
    let on = |t: &Value, dev: u64| t["device"].as_u64() == Some(dev);
    assert_eq!(targets[0]["kind"], "existing-volume", "{targets:#?}");
    assert!(on(&targets[0], 0) && targets[0]["other_device"] == true);
    for t in targets.iter().filter(|t| on(t, 1)) {
        assert_eq!(t["other_device"], false, "{t:#}");
        assert!(!t["reason"].as_str().unwrap().contains("survives"), "{t:#}");
    }
    let table = d.arca(&["backup", "targets", "v"]).ok().stdout;
    assert!(
        table.contains("new volume on device 0") && table.contains("holds none of the source's"),
        "{table}"
    );
    d.stop();
}
