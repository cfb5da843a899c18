//! nbdinfo (libnbd's inspection tool) against the daemon.

use crate::require;
use crate::util::{
    Daemon, KIB, MIB, Serve, flag_at, json, nbdinfo_map, prepare_pool, run, tempdir,
};

/// A pool with two volumes, one of them with two snapshots taken at different contents:
/// alpha = [1M, 1M+128K) written, snapshot s1, [4M, 4M+64K) written, snapshot s2.
fn snapshot_daemon() -> Daemon {
    let tmp = tempdir();
    prepare_pool(tmp.path(), |pool| {
        pool.create_volume("alpha", 8 * MIB, None).unwrap();
        pool.create_volume("beta", 32 * MIB, None).unwrap();
        let a = pool.export("alpha").unwrap();
        a.write(MIB, &[0xa1; 128 * 1024], false).unwrap();
        pool.create_snapshot("alpha", "s1").unwrap();
        a.write(4 * MIB, &[0xa2; 64 * 1024], false).unwrap();
        pool.create_snapshot("alpha", "s2").unwrap();
    });
    Serve::in_tempdir(tmp).start()
}

#[test]
fn nbdinfo_list_shows_volumes_and_snapshots() {
    require!("nbdinfo");
    let d = snapshot_daemon();
    let out = run("nbdinfo", &["--list", "--json", &d.uri("")]).ok();
    let v = json(&out.stdout);
    let mut got: Vec<(String, u64, bool)> = v["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["export-name"].as_str().unwrap().to_string(),
                e["export-size"].as_u64().unwrap(),
                e["is_read_only"].as_bool().unwrap(),
            )
        })
        .collect();
    got.sort();
    let want = vec![
        ("alpha".to_string(), 8 * MIB, false),
        ("alpha@s1".to_string(), 8 * MIB, true),
        ("alpha@s2".to_string(), 8 * MIB, true),
        ("beta".to_string(), 32 * MIB, false),
    ];
    assert_eq!(got, want, "{}", out.describe());
    let text = run("nbdinfo", &["--list", &d.uri("")]).ok();
    for name in ["alpha", "alpha@s1", "alpha@s2", "beta"] {
        assert!(
            text.stdout.contains(&format!("export=\"{name}\":")),
            "{name} missing:\n{}",
            text.describe()
        );
    }
    d.stop();
}

fn hole_at(runs: &[(u64, u64, bool)], off: u64) -> bool {
    flag_at(runs, off)
}

#[test]
fn nbdinfo_map_shows_holes_and_data_per_snapshot() {
    require!("nbdinfo");
    let d = snapshot_daemon();
    let size = 8 * MIB;
    let s1_data = [MIB, MIB + 128 * KIB - 1];
    let s2_data = [4 * MIB, 4 * MIB + 64 * KIB - 1];
    let holes = [
        0,
        MIB - 1,
        MIB + 128 * KIB,
        2 * MIB,
        4 * MIB + 64 * KIB,
        size - 1,
    ];
    for export in ["alpha", "alpha@s2", "alpha@s1"] {
        let runs = nbdinfo_map(&d, export, size);
        for off in s1_data {
            assert!(
                !hole_at(&runs, off),
                "{export}: {off} should be data: {runs:?}"
            );
        }
        for off in s2_data {
            // Written after s1 was taken: data in s2 and the volume, a hole in s1.
            let want_hole = export == "alpha@s1";
            assert_eq!(
                hole_at(&runs, off),
                want_hole,
                "{export} at {off}: {runs:?}"
            );
        }
        for off in holes {
            assert!(
                hole_at(&runs, off),
                "{export}: {off} should be a hole: {runs:?}"
            );
        }
    }
    let beta = nbdinfo_map(&d, "beta", 32 * MIB);
    assert!(
        beta.iter().all(|r| r.2),
        "empty volume not all hole: {beta:?}"
    );
    d.stop();
}

#[test]
fn nbdinfo_can_and_is_flags() {
    require!("nbdinfo");
    let d = snapshot_daemon();
    // nbdinfo --can/--is exit 0 for true, 2 for false (1 is an error).
    let flag = |args: &[&str], export: &str, want: i32| {
        let mut all: Vec<&str> = args.to_vec();
        let uri = d.uri(export);
        all.push(&uri);
        let out = run("nbdinfo", &all);
        assert_eq!(out.code(), Some(want), "{}", out.describe());
    };
    for can in [
        "flush",
        "fua",
        "trim",
        "zero",
        "fast-zero",
        "df",
        "multi-conn",
        "cache",
        "write",
        "connect",
    ] {
        flag(&["--can", can], "alpha", 0);
    }
    flag(&["--is", "read-only"], "alpha", 2);
    flag(&["--is", "read-only"], "alpha@s1", 0);
    flag(&["--can", "write"], "alpha@s1", 2);
    flag(&["--can", "connect"], "alpha@s2", 0);
    // An export that does not exist is refused by name.
    let out = run("nbdinfo", &["--size", &d.uri("nosuch")]);
    assert!(
        !out.status.success() && out.stderr.contains("nosuch"),
        "{}",
        out.describe()
    );
    d.stop();
}

#[test]
fn nbdinfo_json_shows_structured_replies_and_limits() {
    require!("nbdinfo");
    let d = Daemon::with_volumes(&["vol=64M"]);
    let out = run("nbdinfo", &["--json", &d.uri("vol")]).ok();
    let v = json(&out.stdout);
    assert_eq!(v["protocol"].as_str().unwrap(), "newstyle-fixed");
    assert!(v["structured"].as_bool().unwrap(), "{}", out.describe());
    let exports = v["exports"].as_array().unwrap();
    assert_eq!(exports.len(), 1);
    let e = &exports[0];
    assert_eq!(e["export-name"].as_str().unwrap(), "vol");
    assert_eq!(e["export-size"].as_u64().unwrap(), 64 * MIB);
    assert!(!e["is_read_only"].as_bool().unwrap());
    assert!(
        e["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap() == "base:allocation"),
        "{}",
        out.describe()
    );
    assert_eq!(e["block_size_minimum"].as_u64().unwrap(), 1);
    assert_eq!(e["block_size_preferred"].as_u64().unwrap(), 4096);
    assert_eq!(e["block_size_maximum"].as_u64().unwrap(), 32 * MIB);
    // The only volume is also the default export (empty name).
    let size = run("nbdinfo", &["--size", &d.uri("")]).ok();
    assert_eq!(size.stdout.trim(), (64 * MIB).to_string());
    d.stop();
}
