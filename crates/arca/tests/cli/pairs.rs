//! `arca pair ...` in human and JSON form, its usage errors (exit 2), and pairs across daemon
//! restarts: an orderly stop keeps a pair in `pair` state without a full copy and a split pair
//! split; a crash costs a full copy.

use serde_json::Value;

use crate::common::qemu::{identical, qemu_io, write_refused};
use crate::require;
use crate::util::{Daemon, assert_help, assert_usage_errors, device_in_tempdir, header, row};

fn job_kinds(d: &Daemon) -> Vec<String> {
    d.json(&["job", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap().to_string())
        .collect()
}

fn state(d: &Daemon, name: &str) -> Value {
    d.json(&["pair", "show", name])
}

#[test]
fn pair_commands_in_tables_and_json() {
    require!("qemu-io", "qemu-img");
    let d = Daemon::start();
    for v in ["p", "s", "q", "t"] {
        d.arca(&["volume", "create", v, "--size", "64M"]).ok();
    }
    qemu_io(&d, "p", &["write -P 0x11 0 1M"]);

    // Create waits for the initial copy; the one-device warning goes to stderr.
    let out = d.arca(&["pair", "create", "p", "s"]).ok();
    assert_eq!(out.stdout, "pair s: s is a copy of p, state pair\n");
    assert!(
        out.stderr
            .contains("warning: p and s share device 0: one device loss takes both"),
        "{}",
        out.describe()
    );
    qemu_io(&d, "s", &["read -P 0x11 0 1M"]);

    // List and show.
    let table = d.arca(&["pair", "list"]).ok().stdout;
    assert_eq!(
        header(&table),
        [
            "NAME",
            "PRIMARY",
            "SECONDARY",
            "STATE",
            "SPLIT",
            "PACE",
            "JOB",
            "CREATED"
        ]
    );
    let r = row(&table, "s");
    assert_eq!(r[1..6], ["p", "s", "pair", "-", "-"], "{table}");
    let list = d.json(&["pair", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    let p = &list[0];
    assert_eq!(
        (&p["name"], &p["primary"], &p["secondary"], &p["state"]),
        (&"s".into(), &"p".into(), &"s".into(), &"pair".into())
    );
    assert_eq!(r[6], p["job"].to_string(), "{table}");
    let shown = d.arca(&["pair", "show", "s"]).ok().stdout;
    for line in [
        "name:       s",
        "primary:    p",
        "secondary:  s",
        "state:      pair",
        "reason:     -",
        "split:      -",
        "pace:       -",
    ] {
        assert!(shown.contains(&format!("{line}\n")), "{line:?}:\n{shown}");
    }
    assert_eq!(d.json(&["pair", "show", "s"]), *p);

    // Split (human), resync (human, waits).
    let out = d.arca(&["pair", "split", "s"]).ok().stdout;
    assert!(
        out.starts_with("split pair s at ")
            && out.ends_with(": s keeps the image of p from then and is writable\n"),
        "{out}"
    );
    qemu_io(&d, "s", &["write -P 0x21 4M 64k"]);
    qemu_io(&d, "p", &["write -P 0x22 0 64k"]);
    let out = d.arca(&["pair", "resync", "s"]).ok().stdout;
    assert_eq!(out, "pair s: s is again a copy of p, state pair\n");
    identical(&d, "p", "s");

    // Split and resync in JSON.
    let split = d.json(&["pair", "split", "s"]);
    assert_eq!(split["state"], "split", "{split:#}");
    assert!(split["split"].is_string(), "{split:#}");
    let r = d.json(&["pair", "resync", "s"]);
    assert_eq!(r["pair"]["state"], "pair", "{r:#}");
    assert_eq!(r["pair"]["job"], r["job"], "{r:#}");

    // Reverse resync: the primary gets the secondary's image back.
    d.arca(&["pair", "split", "s"]).ok();
    qemu_io(&d, "p", &["write -P 0x31 0 64k"]);
    let out = d.arca(&["pair", "resync", "s", "--reverse"]).ok().stdout;
    assert_eq!(out, "pair s: p restored from s, state pair\n");
    qemu_io(&d, "p", &["read -P 0x22 0 64k"]);
    identical(&d, "p", "s");

    // --no-wait: the job to wait for.
    d.arca(&["pair", "split", "s"]).ok();
    let out = d.arca(&["pair", "resync", "s", "--no-wait"]).ok().stdout;
    let job = out
        .strip_prefix("pair s: resync in job ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        out,
        format!("pair s: resync in job {job} (arca job wait {job})\n")
    );
    d.arca(&["job", "wait", job]).ok();
    d.arca(&["pair", "split", "s"]).ok();
    let r = d.json(&["pair", "resync", "s", "--reverse", "--no-wait"]);
    assert!(r["job"].is_u64(), "{r:#}");
    assert_eq!(r["pair"]["state"], "reverse-resync", "{r:#}");
    d.arca(&["job", "wait", &r["job"].to_string()]).ok();
    assert_eq!(state(&d, "s")["state"], "pair");

    // Create with a pace, without waiting, in JSON; then waiting in JSON.
    let created = d.json(&["pair", "create", "q", "t", "--pace", "100M", "--no-wait"]);
    assert_eq!(created["pair"]["pace_bytes_per_second"], 100u64 << 20);
    assert_eq!(created["pair"]["state"], "copy", "{created:#}");
    let job = created["job"].as_u64().unwrap();
    assert_eq!(created["pair"]["job"], job);
    assert!(created["warning"].is_string(), "{created:#}");
    d.arca(&["job", "wait", &job.to_string()]).ok();
    let table = d.arca(&["pair", "list"]).ok().stdout;
    assert_eq!(row(&table, "t")[5], "100.0M/s", "{table}");
    d.arca(&["pair", "delete", "t"]).ok();
    let created = d.json(&["pair", "create", "q", "t"]);
    assert_eq!(created["pair"]["state"], "pair", "{created:#}");
    assert!(created["job"].is_u64(), "{created:#}");

    // A backup taken on the secondary splits the pair; a resync over it needs
    // --consume-backup.
    let out = d.arca(&["backup", "create", "p", "--to", "s"]).ok().stdout;
    assert!(
        out.contains("copy of p") && out.contains(" in s, complete"),
        "{out}"
    );
    assert_eq!(state(&d, "s")["state"], "split");
    let err = d.arca(&["pair", "resync", "s"]).error_line();
    assert!(err.contains("consuming the backup"), "{err}");
    let out = d.arca(&["pair", "resync", "s", "--consume-backup"]).ok();
    assert_eq!(out.stdout, "pair s: s is again a copy of p, state pair\n");
    let consumed = d.json(&["backup", "list", "--status", "consumed"]);
    assert_eq!(
        consumed["backups"].as_array().unwrap().len(),
        1,
        "{consumed:#}"
    );

    // Refusals: one error line, exit 1.
    let err = d.arca(&["pair", "show", "nope"]).error_line();
    assert!(err.contains("pair nope does not exist"), "{err}");
    let err = d.arca(&["pair", "resync", "s"]).error_line();
    assert!(err.contains("state pair"), "{err}");
    let err = d.arca(&["pair", "create", "p", "q"]).error_line();
    assert!(err.contains("already in pair"), "{err}");
    let err = d.arca(&["pair", "create", "p", "p"]).error_line();
    assert!(err.contains("own secondary"), "{err}");

    // Delete: human, and silent with --json (the API answers 204).
    let out = d.arca(&["pair", "delete", "s"]).ok();
    assert_eq!(out.stdout, "deleted pair s; both volumes stay\n");
    let out = d.arca(&["pair", "delete", "t", "--json"]).ok();
    assert_eq!(out.stdout, "");
    assert_eq!(d.json(&["pair", "list"]), serde_json::json!([]));
    assert_eq!(d.arca(&["pair", "list"]).ok().stdout.lines().count(), 1);
    qemu_io(&d, "s", &["write -P 0x41 0 64k"]);
    d.stop();
}

#[test]
fn pair_usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["pair", "create", "p"], "SECONDARY"),
        (&["pair", "create", "p", "s", "--pace", "0"], "never copy"),
        (&["pair", "create", "p", "s", "--pace", "-1M"], "negative"),
        (&["pair", "create", "p", "s", "--pace", "10X"], "10X"),
        (&["pair", "create", "p", "s", "--pace", "fast"], "fast"),
        (&["pair", "show"], "NAME"),
        (&["pair", "split"], "NAME"),
        (&["pair", "split", "a", "b"], "b"),
        (&["pair", "resync"], "NAME"),
        (&["pair", "resync", "s", "--reverse=yes"], "--reverse"),
        (&["pair", "resync", "s", "--force"], "--force"),
        (&["pair", "delete"], "NAME"),
        (&["pair", "list", "extra"], "extra"),
    ];
    assert_usage_errors("pair", cases);
    assert_help(
        &["pair"],
        "Create, list, show",
        &[
            "create", "list", "show", "split", "resync", "delete", "--json",
        ],
    );
    assert_help(&["pair", "create"], "", &["--pace", "--no-wait"]);
    assert_help(
        &["pair", "resync"],
        "",
        &["--reverse", "--consume-backup", "--no-wait"],
    );
}

/// A daemon on a new device file with pair p -> s in state pair, written before and after
/// pairing.
fn paired_on_a_device(dev: &str) -> Daemon {
    let d = Daemon::serve_new_device(dev, "1G");
    for v in ["p", "s"] {
        d.arca(&["volume", "create", v, "--size", "64M"]).ok();
    }
    qemu_io(&d, "p", &["write -P 0x11 0 2M"]);
    d.arca(&["pair", "create", "p", "s"]).ok();
    qemu_io(&d, "p", &["write -P 0x12 1M 64k"]);
    d
}

#[test]
fn pair_and_split_survive_an_orderly_restart() {
    require!("qemu-io", "qemu-img");
    let (_tmp, dev) = device_in_tempdir();
    let d = paired_on_a_device(&dev);
    let before = state(&d, "s");
    d.stop();

    // Stopped by SIGTERM in state pair: still pair, mirroring at once, no copy job at all.
    let d = Daemon::serve(&["--device", &dev]);
    let after = state(&d, "s");
    assert_eq!(after["state"], "pair", "{after:#}");
    assert!(after["reason"].is_null(), "{after:#}");
    assert!(after["job"].is_null(), "no job since the start: {after:#}");
    assert_eq!(after["created"], before["created"]);
    assert_eq!(job_kinds(&d), Vec::<String>::new(), "a copy job ran");
    write_refused(&d, "s");
    qemu_io(&d, "s", &["read -P 0x11 0 64k", "read -P 0x12 1M 64k"]);
    qemu_io(&d, "p", &["write -P 0x13 3M 64k"]);
    qemu_io(&d, "s", &["read -P 0x13 3M 64k"]);
    identical(&d, "p", "s");

    // Split, changed on both sides, stopped: still split at the same instant, still writable,
    // and the resync still knows what changed.
    let split = d.json(&["pair", "split", "s"]);
    qemu_io(&d, "p", &["write -P 0x21 0 64k"]);
    qemu_io(&d, "s", &["write -P 0x22 5M 64k"]);
    d.stop();
    let d = Daemon::serve(&["--device", &dev]);
    let after = state(&d, "s");
    assert_eq!(after["state"], "split", "{after:#}");
    assert_eq!(after["split"], split["split"], "{after:#}");
    assert_eq!(job_kinds(&d), Vec::<String>::new());
    qemu_io(&d, "s", &["read -P 0x11 0 64k", "read -P 0x22 5M 64k"]);
    qemu_io(&d, "s", &["write -P 0x23 6M 64k"]);
    let r = d.json(&["pair", "resync", "s"]);
    assert_eq!(r["pair"]["state"], "pair", "{r:#}");
    let job = d.json(&["job", "show", &r["job"].to_string()]);
    assert_eq!(job["kind"], "pair-resync", "{job:#}");
    // Only what changed: extents 0, 5M and 6M.
    assert_eq!(job["bytes_total"], 3 * 65536, "{job:#}");
    identical(&d, "p", "s");
    qemu_io(&d, "s", &["read -P 0x21 0 64k", "read -P 0 5M 64k"]);
    assert_eq!(d.json(&["pool", "check"])["result"]["clean"], true);
    d.stop();
}

#[test]
fn pair_after_a_crash_gets_a_full_copy() {
    require!("qemu-io", "qemu-img");
    let (_tmp, dev) = device_in_tempdir();
    let d = paired_on_a_device(&dev);
    let log = d.kill();
    assert!(!log.contains("panicked"), "{log}");

    // Killed in state pair: a write may have reached one side only, so the whole primary is
    // copied again before the pair mirrors.
    let d = Daemon::serve(&["--device", &dev]);
    let p = state(&d, "s");
    assert_eq!(job_kinds(&d), ["pair-copy"], "{p:#}");
    let job = p["job"].as_u64().unwrap_or_else(|| panic!("{p:#}"));
    d.arca(&["job", "wait", &job.to_string()]).ok();
    let p = state(&d, "s");
    assert_eq!(p["state"], "pair", "{p:#}");
    identical(&d, "p", "s");
    qemu_io(&d, "s", &["read -P 0x12 1M 64k"]);
    d.stop();
}

/// Issue 11, item 5: `pair resync --consume-backup` over a held and locked backup on the
/// secondary is refused with the reason a deletion gives, and the backup, its data and the
/// split stay.
#[test]
fn a_held_and_locked_backup_on_a_secondary_survives_resync() {
    require!("qemu-io");
    let d = Daemon::start();
    for v in ["p", "s"] {
        d.arca(&["volume", "create", v, "--size", "16M"]).ok();
    }
    qemu_io(&d, "p", &["write -P 0x51 0 256k"]);
    d.arca(&["pair", "create", "p", "s"]).ok();
    let created = d.json(&[
        "backup",
        "create",
        "p",
        "--to",
        "s",
        "--hold",
        "--lock-until",
        "9999-12-31",
    ]);
    let id = created["backups"][0]["id"].as_u64().unwrap().to_string();
    qemu_io(&d, "p", &["write -P 0x52 0 256k"]);

    let deleting = d.arca(&["backup", "delete", &id, "--force"]).error_line();
    assert!(
        deleting.contains(&format!("backup {id} is on hold")),
        "{deleting}"
    );
    for args in [
        vec!["pair", "resync", "s", "--consume-backup"],
        vec!["pair", "resync", "s", "--reverse", "--consume-backup"],
        vec!["pair", "resync", "s"],
    ] {
        let err = d.arca(&args).error_line();
        assert!(
            err.contains("cannot resync pair s: ")
                && err.contains(&format!("backup {id} is on hold; release it first")),
            "{args:?}: {err}"
        );
    }
    d.arca(&["backup", "release", &id]).ok();
    let err = d
        .arca(&["pair", "resync", "s", "--consume-backup"])
        .error_line();
    assert!(
        err.contains(&format!(
            "backup {id} is locked until 9999-12-31T00:00:00Z; a retention lock cannot be \
             overridden"
        )),
        "{err}"
    );

    let b = d.json(&["backup", "show", &id]);
    assert_eq!(b["status"], "complete", "{b:#}");
    assert_eq!(b["retention"]["lock_until"], "9999-12-31T00:00:00.000Z");
    assert_eq!(state(&d, "s")["state"], "split");
    qemu_io(&d, "s", &["read -P 0x51 0 256k"]);
    write_refused(&d, "s");
    assert_eq!(d.json(&["catalog", "check"])["clean"], true);
    d.stop();
}
