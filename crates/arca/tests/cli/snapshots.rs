//! `arca snapshot ...`, `arca clone` and `arca export list`, in table and JSON form, and the
//! refusals that protect snapshots with clones and volumes with snapshots.

use crate::util::{Daemon, GIB, find, header, row};

#[test]
fn snapshots_clones_and_exports() {
    let d = Daemon::start();
    d.arca(&["volume", "create", "base", "--size", "1G"]).ok();
    d.arca(&["volume", "create", "other", "--size", "512M"])
        .ok();

    let out = d.arca(&["snapshot", "create", "base", "--name", "s1"]).ok();
    assert_eq!(out.stdout, "created snapshot base@s1\n");
    // Without --name the API names it after the time.
    let auto = d.json(&["snapshot", "create", "base"]);
    assert_eq!(auto["volume"], "base");
    assert_eq!(auto["size"], GIB);
    assert!(auto["clones"].as_array().unwrap().is_empty());
    let auto_name = auto["name"].as_str().unwrap().to_string();
    assert!(auto_name.starts_with("snap-"), "{auto}");
    let s2 = d.json(&["snapshot", "create", "other", "--name", "s2"]);
    assert_eq!(
        (s2["volume"].as_str(), s2["name"].as_str()),
        (Some("other"), Some("s2"))
    );
    assert!(s2["created"].as_str().unwrap().ends_with('Z'));

    // Lists: every volume's, or one volume's.
    let all = d.json(&["snapshot", "list"]);
    assert_eq!(all.as_array().unwrap().len(), 3, "{all:#}");
    let of_base = d.json(&["snapshot", "list", "base"]);
    assert_eq!(of_base.as_array().unwrap().len(), 2, "{of_base:#}");
    assert!(
        of_base
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["volume"] == "base")
    );
    let table = d.arca(&["snapshot", "list"]).ok().stdout;
    assert_eq!(
        header(&table),
        [
            "VOLUME", "SNAPSHOT", "SIZE", "USED", "UNIQUE", "CLONES", "CREATED"
        ]
    );
    assert_eq!(table.lines().count(), 4, "{table}");
    let r = row(&table, "other");
    assert_eq!((r[1], r[2], r[5]), ("s2", "512.0M", "-"));
    let table = d.arca(&["snapshot", "list", "other"]).ok().stdout;
    assert_eq!(table.lines().count(), 2, "{table}");
    // A volume that does not exist is an error, not an empty list.
    let err = d.arca(&["snapshot", "list", "nosuch"]).error_line();
    assert!(err.contains("nosuch"), "{err}");

    // Clones, both forms; the clone records its origin.
    let out = d.arca(&["clone", "base@s1", "c1"]).ok();
    assert_eq!(out.stdout, "created volume c1 from base@s1\n");
    let c2 = d.json(&["clone", "base@s1", "c2", "--device", "0"]);
    assert_eq!(c2["name"], "c2");
    assert_eq!(c2["size"], GIB);
    assert_eq!(c2["origin"]["volume"], "base");
    assert_eq!(c2["origin"]["snapshot"], "s1");
    assert_eq!(c2["device"], 0);
    let show = d.arca(&["volume", "show", "c1"]).ok().stdout;
    assert!(
        show.lines()
            .any(|l| l.starts_with("origin:") && l.ends_with("base@s1")),
        "{show}"
    );
    let s1 = d.json(&["snapshot", "list", "base"]);
    let mut clones: Vec<&str> = find(&s1, "name", "s1")["clones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    clones.sort();
    assert_eq!(clones, ["c1", "c2"]);
    let table = d.arca(&["snapshot", "list", "base"]).ok().stdout;
    let r = table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("s1"))
        .unwrap();
    assert!(r.contains("c1,c2") || r.contains("c2,c1"), "{table}");

    // Exports: every volume read-write, every snapshot read-only, with the NBD URI.
    let exports = d.json(&["export", "list"]);
    assert_eq!(exports.as_array().unwrap().len(), 4 + 3, "{exports:#}");
    let e = find(&exports, "name", "base");
    assert_eq!(e["read_only"], false);
    assert_eq!(e["size"], GIB);
    assert_eq!(e["uri"], format!("nbd://{}/base", d.nbd));
    let e = find(&exports, "name", "base@s1");
    assert_eq!(e["read_only"], true);
    assert_eq!(e["uri"], format!("nbd://{}/base@s1", d.nbd));
    let table = d.arca(&["export", "list"]).ok().stdout;
    assert_eq!(header(&table), ["NAME", "SIZE", "ACCESS", "URI"]);
    assert_eq!(
        row(&table, "base@s1"),
        [
            "base@s1",
            "1.0G",
            "ro",
            format!("nbd://{}/base@s1", d.nbd).as_str()
        ]
    );
    assert_eq!(
        row(&table, "c1"),
        ["c1", "1.0G", "rw", format!("nbd://{}/c1", d.nbd).as_str()]
    );

    // A snapshot with clones is not deleted; the message names a clone.
    let err = d.arca(&["snapshot", "delete", "base@s1"]).error_line();
    assert!(err.contains("c1") || err.contains("c2"), "{err}");
    // A volume with snapshots is deleted only with --with-snapshots.
    d.arca(&["volume", "delete", "other"]).error_line();
    assert_eq!(d.json(&["volume", "show", "other"])["snapshots"], 1);
    let out = d
        .arca(&["volume", "delete", "other", "--with-snapshots"])
        .ok();
    assert_eq!(out.stdout, "deleted volume other and its snapshots\n");
    d.arca(&["snapshot", "list", "other"]).error_line();

    // Once its clones are gone the snapshot can go, in both forms.
    d.arca(&["volume", "delete", "c1"]).ok();
    d.arca(&["volume", "delete", "c2"]).ok();
    let out = d.arca(&["snapshot", "delete", "base@s1"]).ok();
    assert_eq!(out.stdout, "deleted snapshot base@s1\n");
    let target = format!("base@{auto_name}");
    let out = d.arca(&["snapshot", "delete", &target, "--json"]).ok();
    assert_eq!(out.stdout, "");
    assert_eq!(d.json(&["snapshot", "list"]), serde_json::json!([]));
    let err = d.arca(&["snapshot", "delete", "base@s1"]).error_line();
    assert!(err.contains("s1"), "{err}");
    d.stop();
}
