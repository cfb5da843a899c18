//! `arca volume ...` in table and JSON form, and where the client options may go.

use crate::util::{Daemon, GIB, arca_cmd, find, row, run_cmd};

#[test]
fn volume_lifecycle_in_tables_and_json() {
    let d = Daemon::start();

    let out = d.arca(&["volume", "create", "v1", "--size", "10G"]).ok();
    assert_eq!(out.stdout, "created volume v1 (10.0G)\n");

    let v2 = d.json(&["volume", "create", "v2", "--size", "64K", "--device", "0"]);
    assert_eq!(v2["name"], "v2");
    assert_eq!(v2["size"], 64 * 1024);
    assert_eq!(v2["device"], 0);
    assert_eq!(v2["used"], 0);
    assert_eq!(v2["unique"], 0);
    assert_eq!(v2["owned"], 0);
    assert_eq!(v2["snapshots"], 0);
    assert!(v2["origin"].is_null(), "{v2}");
    let created = v2["created"].as_str().unwrap();
    // RFC 3339 in UTC, as the API gives it: 2026-11-28T23:05:01Z.
    assert!(
        created.len() == 20 && created.ends_with('Z') && &created[10..11] == "T",
        "{created}"
    );

    // The table: a header, one row per volume, sizes human, columns aligned.
    let table = d.arca(&["volume", "list"]).ok().stdout;
    let header = table.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "SIZE",
            "USED",
            "UNIQUE",
            "OWNED",
            "SNAPSHOTS",
            "DEVICE",
            "ORIGIN",
            "CREATED"
        ]
    );
    assert_eq!(table.lines().count(), 3, "{table}");
    let r1 = row(&table, "v1");
    assert_eq!(r1[1], "10.0G");
    assert_eq!(r1[2], "0B");
    assert_eq!(r1[6], "-", "no device asked for v1: {table}");
    assert_eq!(r1[7], "-", "v1 is no clone: {table}");
    assert_eq!(r1[8].len(), 20, "{table}");
    let r2 = row(&table, "v2");
    assert_eq!((r2[1], r2[6]), ("64.0K", "0"));
    // SIZE is right-aligned: every row's size ends where the header's SIZE ends.
    let size_end = header.find("SIZE").unwrap() + "SIZE".len();
    for line in table.lines().skip(1) {
        let cell_end = line[..size_end].trim_end().len();
        assert_eq!(cell_end, size_end, "misaligned:\n{table}");
        assert!(line[..size_end].ends_with('G') || line[..size_end].ends_with('K'));
    }

    let list = d.json(&["volume", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(find(&list, "name", "v1")["size"], 10 * GIB);
    assert!(find(&list, "name", "v1")["device"].is_null());

    let show = d.arca(&["volume", "show", "v1"]).ok().stdout;
    assert!(show.contains("name:") && show.contains("v1"), "{show}");
    assert!(show.contains("10.0G (10737418240 bytes)"), "{show}");
    let v1 = d.json(&["volume", "show", "v1"]);
    assert_eq!(
        (v1["name"].as_str(), v1["size"].as_u64()),
        (Some("v1"), Some(10 * GIB))
    );

    // Resize: table message, JSON, and the new size as seen by show.
    let out = d.arca(&["volume", "resize", "v1", "--size", "20G"]).ok();
    assert_eq!(out.stdout, "resized volume v1 to 20.0G\n");
    let v1 = d.json(&["volume", "resize", "v1", "--size", "1T"]);
    assert_eq!(v1["size"], 1u64 << 40);
    assert_eq!(d.json(&["volume", "show", "v1"])["size"], 1u64 << 40);
    // Volumes do not shrink: the API refuses, the client says so in one line.
    let err = d
        .arca(&["volume", "resize", "v1", "--size", "512"])
        .error_line();
    assert!(err.contains("v1") || err.contains("shrink"), "{err}");

    // Rename, both forms; the old name is gone.
    let out = d.arca(&["volume", "rename", "v2", "v3"]).ok();
    assert_eq!(out.stdout, "renamed volume v2 to v3\n");
    let v4 = d.json(&["volume", "rename", "v3", "v4"]);
    assert_eq!(
        (v4["name"].as_str(), v4["size"].as_u64()),
        (Some("v4"), Some(65536))
    );
    d.arca(&["volume", "show", "v3"]).error_line();
    d.arca(&["volume", "show", "v4"]).ok();

    // Delete, both forms (the API answers 204: nothing to print with --json).
    let out = d.arca(&["volume", "delete", "v1"]).ok();
    assert_eq!(out.stdout, "deleted volume v1\n");
    let out = d.arca(&["volume", "delete", "v4", "--json"]).ok();
    assert_eq!(out.stdout, "");
    assert_eq!(d.json(&["volume", "list"]), serde_json::json!([]));
    // An empty list is just the header.
    let table = d.arca(&["volume", "list"]).ok().stdout;
    assert_eq!(table.lines().count(), 1, "{table}");
    d.stop();
}

#[test]
fn client_options_go_before_or_after_the_subcommand_or_in_the_environment() {
    let d = Daemon::start();
    d.arca(&["volume", "create", "vol", "--size", "1G"]).ok();

    let check = |args: &[&str], env_api: bool| {
        let mut cmd = arca_cmd();
        cmd.args(args);
        if env_api {
            cmd.env("ARCA_API", &d.api);
        }
        let list = run_cmd(cmd).json();
        assert_eq!(list[0]["name"], "vol", "{args:?}");
    };
    check(&["--api", &d.api, "--json", "volume", "list"], false);
    check(&["volume", "--api", &d.api, "--json", "list"], false);
    check(&["volume", "list", "--json", "--api", &d.api], false);
    check(&["--json", "volume", "list"], true);
    // Without a scheme the URL means http.
    let bare = d.api.strip_prefix("http://").unwrap();
    check(&["volume", "list", "--json", "--api", bare], false);
    // The flag wins over the environment.
    let mut cmd = arca_cmd();
    cmd.args(["volume", "list", "--json", "--api", &d.api])
        .env("ARCA_API", crate::util::closed_url());
    assert_eq!(run_cmd(cmd).json()[0]["name"], "vol");
    d.stop();
}

#[test]
fn volume_delete_while_a_host_is_connected_needs_force() {
    let d = Daemon::start();
    d.arca(&["volume", "create", "v", "--size", "1G"]).ok();
    let mut host = crate::common::nbd::connect(&d.nbd, "v");
    let err = d.arca(&["volume", "delete", "v"]).error_line();
    assert!(
        err.contains("volume v has 1 host connection(s)") && err.contains("with force"),
        "{err}"
    );
    crate::common::nbd::assert_open(&mut host, "the host of v");
    // The API named by a loopback name: the CLI works the same.
    let port = d.api.rsplit(':').next().unwrap();
    let mut cmd = arca_cmd();
    cmd.args(["volume", "show", "v", "--json", "--api"])
        .arg(format!("http://localhost:{port}"));
    assert_eq!(run_cmd(cmd).json()["name"], "v");
    let out = d.arca(&["volume", "delete", "v", "--force"]).ok();
    assert_eq!(out.stdout, "deleted volume v\n");
    crate::common::nbd::assert_closed(&mut host, "the host of v");
    assert_eq!(d.json(&["volume", "list"]), serde_json::json!([]));
    d.stop();
}
