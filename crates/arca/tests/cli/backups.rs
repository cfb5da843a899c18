//! `arca backup ...`, `arca restore` and `arca catalog ...` in human and JSON form, prune on a
//! scripted calendar, and the usage errors (exit 2) of the new commands.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::json::strs;

use crate::util::{Daemon, HOST_INFO_ARGS, assert_help, assert_usage_errors, field, header, row};

/// `arca backup prune --volume v` with the rules and options `rest`.
fn prune_v<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    [&["backup", "prune", "--volume", "v"][..], rest].concat()
}

/// Writes with qemu-io; false when it is not installed (an error under CI).
fn qemu_write(d: &Daemon, volume: &str, cmd: &str) -> bool {
    let uri = format!("nbd://{}/{volume}", d.nbd);
    match Command::new("qemu-io")
        .args(["-f", "raw", "-c", cmd, &uri])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
    {
        Ok(s) => {
            assert!(s.success(), "qemu-io {cmd} on {volume}");
            true
        }
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "qemu-io is needed: {e}"
            );
            false
        }
    }
}

/// The id at the start of `backup ID: ...`.
fn backup_id(line: &str) -> u64 {
    line.strip_prefix("backup ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a backup line: {line:?}"))
}

fn ids(list: &Value) -> Vec<u64> {
    list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn backup_commands_in_tables_and_json() {
    let d = Daemon::start();
    d.arca(&["volume", "create", "v", "--size", "64M"]).ok();
    d.arca(&["volume", "create", "w", "--size", "128M"]).ok();

    // Targets: a table ranked best first, and the JSON.
    let table = d.arca(&["backup", "targets", "v"]).ok().stdout;
    assert_eq!(
        header(&table),
        ["#", "KIND", "METHOD", "VOLUME", "DEVICE", "REASON"]
    );
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[1..4]
                == ["existing-volume", "copy", "w"]),
        "{table}"
    );
    let targets = d.json(&["backup", "targets", "v"]);
    let kinds = strs(&targets, "kind");
    assert!(kinds.contains(&"new-snapshot") && kinds.contains(&"existing-volume"));

    // Create: a snapshot backup with the host's information (human), a copy (JSON, waited).
    let out = d
        .arca(
            &[
                &["backup", "create", "v"][..],
                HOST_INFO_ARGS,
                &["--keep-for", "1h"],
            ]
            .concat(),
        )
        .ok();
    let snap = backup_id(out.stdout.trim());
    assert_eq!(
        out.stdout,
        format!("backup {snap}: snapshot of v (generation 1) in v@backup-{snap}, complete\n")
    );
    let created = d.json(&[
        "backup", "create", "v", "--method", "copy", "--label", "weekly",
    ]);
    let copy = created["backups"][0]["id"].as_u64().unwrap();
    assert_eq!(created["backups"][0]["status"], "complete", "{created:#}");
    assert_eq!(created["backups"][0]["method"], "copy");
    assert_eq!(created["jobs"].as_array().unwrap().len(), 1);
    // Into an existing volume; the copy waits and says where it went.
    let out = d.arca(&["backup", "create", "v", "--to", "w"]).ok();
    let into_w = backup_id(out.stdout.trim());
    assert_eq!(
        out.stdout,
        format!("backup {into_w}: copy of v (generation 3) in w, complete\n")
    );
    // --no-wait: the copy is still copying when the answer comes; its job is named.
    let out = d
        .arca(&["backup", "create", "v", "--method", "copy", "--no-wait"])
        .ok();
    let (line, job) = out.stdout.trim().split_once("; copying in job ").unwrap();
    let nowait = backup_id(line);
    assert!(line.ends_with(", copying"), "{}", out.stdout);
    let job = job.split_whitespace().next().unwrap();
    d.arca(&["job", "wait", job]).ok();

    // List: the table, newest first, then filters in JSON.
    let table = d.arca(&["backup", "list"]).ok().stdout;
    assert_eq!(
        header(&table),
        [
            "ID",
            "VOLUME",
            "GEN",
            "METHOD",
            "STATUS",
            "POINT",
            "IN",
            "TIME",
            "LABEL",
            "DESTINATION",
            "VERIFIED",
            "LOCATIONS"
        ]
    );
    assert_eq!(table.lines().count(), 5, "{table}");
    let first_row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(first_row[0], nowait.to_string(), "{table}");
    let r = row(&table, &snap.to_string());
    assert_eq!(
        (r[1], r[2], r[3], r[4], r[6], r[7], r[8]),
        (
            "v",
            "1",
            "snapshot",
            "complete",
            "nightly",
            format!("v@backup-{snap}").as_str(),
            "-"
        )
    );
    assert!(r[5].ends_with('Z') && r[5].len() == 24, "{table}");
    assert_eq!(row(&table, &into_w.to_string())[7], "w");
    let all = d.json(&["backup", "list"]);
    assert_eq!(ids(&all), [nowait, into_w, copy, snap]);
    assert!(all["next_before"].is_null());
    for (args, want) in [
        (vec!["--label", "nightly"], vec![snap]),
        (vec!["--host", "db1"], vec![snap]),
        (vec!["--app", "postgres"], vec![snap]),
        (
            vec!["--meta", "tier=gold", "--meta", "ticket=42"],
            vec![snap],
        ),
        (vec!["--meta", "tier=silver"], vec![]),
        (
            vec!["--volume", "v", "--status", "complete"],
            vec![nowait, into_w, copy, snap],
        ),
        (vec!["--status", "deleted"], vec![]),
        (vec!["--since", "2999-01-01"], vec![]),
        (vec!["--until", "2000-01-01T00:00:00Z"], vec![]),
    ] {
        let mut full = vec!["backup", "list"];
        full.extend(&args);
        assert_eq!(ids(&d.json(&full)), want, "{args:?}");
    }
    let page = d.json(&["backup", "list", "--limit", "2"]);
    assert_eq!(ids(&page), [nowait, into_w]);
    assert_eq!(page["next_before"], into_w);
    let before = into_w.to_string();
    let page = d.json(&["backup", "list", "--limit", "2", "--before", &before]);
    assert_eq!(ids(&page), [copy, snap]);
    let out = d.arca(&["backup", "list", "--limit", "1"]).ok();
    assert!(out.stderr.contains("--before"), "{}", out.describe());
    let err = d.arca(&["backup", "list", "--volume", "nope"]).error_line();
    assert!(err.contains("nope"), "{err}");

    // Show: every field and the history, human; the record, JSON.
    let text = d.arca(&["backup", "show", &snap.to_string()]).ok().stdout;
    let field = |k: &str| field(&text, k);
    assert_eq!(field("id"), snap.to_string());
    assert_eq!(field("status"), "complete");
    assert_eq!(field("label"), "nightly");
    assert_eq!(field("application"), "postgres");
    assert_eq!(field("description"), "before the upgrade");
    assert_eq!(field("meta"), "ticket=42, tier=gold");
    assert_eq!(field("verified"), "never");
    assert!(field("export").starts_with(&format!("nbd://{}/v@backup-{snap}", d.nbd)));
    assert_eq!(field("hold"), "no");
    assert!(field("keep until").ends_with('Z'), "{text}");
    assert!(text.contains("\nhistory:\n  -\n"), "{text}");
    let b = d.json(&["backup", "show", &snap.to_string()]);
    assert_eq!(b["id"].as_u64(), Some(snap));
    assert_eq!(b["info"]["program"], "pgbackup");
    assert_eq!(b["info"]["content_id"], "c-7");
    let err = d.arca(&["backup", "show", "12345"]).error_line();
    assert!(err.contains("12345"), "{err}");

    // Verify: one line per backup; JSON is the finished job with its results.
    let (s1, s2) = (snap.to_string(), copy.to_string());
    let out = d.arca(&["backup", "verify", &s1, &s2]).ok();
    assert_eq!(
        out.stdout,
        format!("backup {snap}: ok\nbackup {copy}: ok\n")
    );
    let job = d.json(&["backup", "verify", "--all"]);
    assert_eq!(job["kind"], "verify");
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["result"].as_array().unwrap().len(), 4, "{job:#}");
    assert!(
        job["result"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ok"] == true)
    );
    let out = d.arca(&["backup", "verify", &s1, "--no-wait"]).ok();
    let id: u64 = out.stdout.trim().parse().expect("a job id");
    d.arca(&["job", "wait", &id.to_string()]).ok();
    let text = d.arca(&["backup", "show", &s1]).ok().stdout;
    assert!(
        text.lines()
            .any(|l| l.starts_with("verified:") && l.ends_with("ok")),
        "{text}"
    );
    assert!(text.contains("  verified: ok\n"), "{text}");
    let err = d.arca(&["backup", "verify", "12345"]).error_line();
    assert!(err.contains("12345"), "{err}");

    // Restore: as a new volume (instant), in place with an undo point, as JSON.
    let out = d.arca(&["restore", &s1, "--as", "r1"]).ok();
    assert_eq!(
        out.stdout,
        format!("restored backup {snap} into new volume r1\n")
    );
    let out = d.arca(&["restore", &s1]).ok();
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("restored backup {snap} into v").as_str())
    );
    let undo_line = lines.next().unwrap();
    let undo: u64 = undo_line
        .strip_prefix("undo point: backup ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", out.describe()));
    assert_eq!(
        undo_line,
        format!("undo point: backup {undo} (to undo: arca restore {undo})")
    );
    assert_eq!(
        d.json(&["backup", "show", &undo.to_string()])["info"]["label"],
        "pre-restore"
    );
    let r = d.json(&["restore", &s2, "--as", "r2"]);
    assert_eq!(r["volumes"], serde_json::json!(["r2"]));
    assert!(r["job"].is_u64(), "a copy restores in a job: {r}");
    assert_eq!(d.json(&["volume", "show", "r2"])["size"], 64 << 20);
    let err = d.arca(&["restore", "12345", "--as", "x"]).error_line();
    assert!(err.contains("12345"), "{err}");

    // A set: two volumes at once, restored together, undone together.
    // (w holds a backup now: a set with it could be taken, but not restored into it.)
    d.arca(&["volume", "create", "x", "--size", "32M"]).ok();
    let out = d
        .arca(&["backup", "create", "v", "x", "--label", "pair"])
        .ok();
    let mut lines = out.stdout.lines();
    let set_line = lines.next().unwrap();
    let set: u64 = set_line
        .strip_prefix("backup set ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", out.describe()));
    assert_eq!(
        set_line,
        format!("backup set {set}: 2 volumes taken at one point in time")
    );
    assert_eq!(lines.count(), 2, "{}", out.describe());
    let set_s = set.to_string();
    assert_eq!(ids(&d.json(&["backup", "list", "--set", &set_s])).len(), 2);
    let out = d.arca(&["restore", "--set", &set_s]).ok();
    let text = out.stdout;
    assert!(
        text.starts_with(&format!("restored backup set {set} (backups ")),
        "{text}"
    );
    assert!(
        text.contains(") into v, x\n") || text.contains(") into x, v\n"),
        "{text}"
    );
    assert!(text.contains("(to undo: arca restore --set "), "{text}");

    // Hold, release, delete: refusals say why, in one line.
    let out = d.arca(&["backup", "hold", &s1]).ok();
    assert_eq!(out.stdout, format!("backup {snap} is on hold\n"));
    let err = d.arca(&["backup", "delete", &s1]).error_line();
    assert!(err.contains("hold"), "{err}");
    let b = d.json(&["backup", "release", &s1]);
    assert_eq!(b["retention"]["hold"], false);
    let err = d.arca(&["backup", "delete", &s1]).error_line();
    assert!(
        err.contains("kept until") && err.contains("with force"),
        "{err}"
    );
    // The clone r1 shares its data: named in the refusal.
    let err = d.arca(&["backup", "delete", &s1, "--force"]).error_line();
    assert!(err.contains("r1"), "{err}");
    d.arca(&["volume", "delete", "r1"]).ok();
    let out = d.arca(&["backup", "delete", &s1, "--force"]).ok();
    assert_eq!(
        out.stdout,
        format!("deleted backup {snap} (snapshot of v); its record stays as history\n")
    );
    let b = d.json(&["backup", "delete", &nowait.to_string()]);
    assert_eq!(b["status"], "deleted");
    assert_eq!(
        ids(&d.json(&["backup", "list", "--status", "deleted"])),
        [nowait, snap]
    );

    // Retention: human and JSON; a lock is only ever extended.
    let out = d
        .arca(&[
            "backup",
            "retain",
            &s2,
            "--keep-until",
            "2999-01-01",
            "--lock-until",
            "2030-01-01T00:00:00Z",
        ])
        .ok();
    assert_eq!(
        out.stdout,
        format!(
            "backup {copy}: keep until 2999-01-01T00:00:00.000Z, lock until \
             2030-01-01T00:00:00.000Z\n"
        )
    );
    let b = d.json(&["backup", "retain", &s2, "--clear-keep-until"]);
    assert!(b["retention"]["keep_until"].is_null(), "{b}");
    let err = d
        .arca(&["backup", "retain", &s2, "--lock-until", "2029-01-01"])
        .error_line();
    assert!(err.contains("extended"), "{err}");
    let err = d.arca(&["backup", "delete", &s2, "--force"]).error_line();
    assert!(err.contains("locked until"), "{err}");

    // Prune, dry run: one line per backup and the exact total.
    let out = d
        .arca(&prune_v(&[
            "--label",
            "weekly",
            "--keep-last",
            "0",
            "--dry-run",
        ]))
        .ok();
    let text = out.stdout;
    assert_eq!(
        header(&text),
        [
            "ACTION", "ID", "POINT", "IN", "TIME", "LABEL", "REASONS", "FREES"
        ]
    );
    let r = row(&text, "KEEP");
    assert_eq!(r[1], s2);
    assert!(text.contains("lock-until 2030-01-01T00:00:00Z"), "{text}");
    assert!(
        text.ends_with("dry run: would remove 0 of 1 backup, kept 1; would free 0B (0 bytes)\n"),
        "{text}"
    );
    let p = d.json(&prune_v(&["--keep-last", "1", "--dry-run"]));
    assert_eq!(p["dry_run"], true);
    assert!(p["items"].as_array().unwrap().len() >= 3, "{p:#}");
    let err = d.arca(&prune_v(&["--dry-run"])).error_line();
    assert!(err.contains("keep rule"), "{err}");

    // The catalog: clean, in both forms; a rebuild finds every destination.
    let out = d.arca(&["catalog", "check"]).ok();
    assert!(
        out.stdout.starts_with("catalog check: clean ("),
        "{}",
        out.describe()
    );
    let c = d.json(&["catalog", "check"]);
    assert_eq!(c["clean"], true);
    assert_eq!(c["problems"], serde_json::json!([]));
    let out = d.arca(&["catalog", "rebuild"]).ok();
    assert!(
        out.stdout
            .starts_with(&format!("catalog rebuilt: {} records from", c["live"])),
        "{}",
        out.describe()
    );
    let r = d.json(&["catalog", "rebuild"]);
    assert_eq!(r["from_descriptors"], c["live"]);
    assert_eq!(r["kept_history"], 2);
    assert_eq!(d.json(&["catalog", "check"])["clean"], true);
    d.stop();
}

/// Backups on a calendar (the daemon's backup clock reads a file): the prune report says
/// what goes and why, and exactly how much it frees; the real run does exactly that.
#[test]
fn prune_on_a_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock");
    let clock_arg = clock.to_str().unwrap().to_string();
    let d = Daemon::start_with_args(&["--test-clock-file", &clock_arg]);
    d.arca(&["volume", "create", "v", "--size", "16M"]).ok();
    // Noon, 2026-01-01 to 2026-01-05.
    let noon: u64 = 1_767_268_800_000;
    let mut backups = Vec::new();
    let mut data = false;
    for day in 0..5u64 {
        std::fs::write(&clock, (noon + day * 86_400_000).to_string()).unwrap();
        data = qemu_write(&d, "v", &format!("write -P {} 0 64k", day + 1));
        let b = d.json(&["backup", "create", "v"]);
        assert_eq!(
            b["backups"][0]["point_in_time"],
            format!("2026-01-0{}T12:00:00.000Z", day + 1)
        );
        backups.push(b["backups"][0]["id"].as_u64().unwrap());
    }
    let out = d.arca(&prune_v(&["--keep-daily", "2", "--dry-run"])).ok();
    let text = out.stdout;
    let lines: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 6, "{text}");
    let expect = [
        ("KEEP", 4, "keep-daily 2026-01-05"),
        ("KEEP", 3, "keep-daily 2026-01-04"),
        ("REMOVE", 2, "-"),
        ("REMOVE", 1, "-"),
        ("REMOVE", 0, "-"),
    ];
    for (l, (action, day, reason)) in lines.iter().zip(expect) {
        assert_eq!(l[0], action, "{text}");
        assert_eq!(l[1], backups[day].to_string(), "{text}");
        assert_eq!(l[2], format!("2026-01-0{}T12:00:00.000Z", day + 1));
        assert_eq!(l[3], "-", "no label: {text}");
        assert_eq!(l[4..l.len() - 1].join(" "), reason, "{text}");
        if data && action == "REMOVE" {
            assert_eq!(l[l.len() - 1], "64.0K", "{text}");
        }
    }
    let total = if data {
        "would free 192.0K (196608 bytes)"
    } else {
        "would free 0B (0 bytes)"
    };
    assert_eq!(
        text.lines().last().unwrap(),
        format!("dry run: would remove 3 of 5 backups, kept 2; {total}")
    );
    // The real run, as JSON.
    let r = d.json(&prune_v(&["--keep-daily", "2"]));
    assert_eq!(r["dry_run"], false);
    assert_eq!(r["removed"], 3);
    assert_eq!(r["freed_bytes"], if data { 196_608 } else { 0 });
    let left = d.json(&["backup", "list", "--status", "complete"]);
    assert_eq!(ids(&left), [backups[4], backups[3]]);
    let out = d.arca(&prune_v(&["--keep-daily", "2"])).ok();
    assert!(
        out.stdout
            .ends_with("removed 0 of 2 backups, kept 2; freed 0B (0 bytes)\n"),
        "{}",
        out.describe()
    );
    d.stop();
}

/// Usage errors exit 2 before any request (the API URL answers nothing).
#[test]
fn backup_usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["backup", "targets"], "VOLUME"),
        (&["backup", "create"], "VOLUME"),
        (
            &[
                "backup",
                "create",
                "v",
                "--keep-for",
                "1d",
                "--keep-until",
                "2030-01-01",
            ],
            "--keep-until",
        ),
        (
            &["backup", "create", "v", "--keep-until", "tomorrow"],
            "tomorrow",
        ),
        (
            &["backup", "create", "v", "--lock-until", "2026-02-30"],
            "2026-02-30",
        ),
        (&["backup", "create", "v", "--keep-for", "soon"], "soon"),
        (&["backup", "create", "v", "--meta", "novalue"], "KEY=VALUE"),
        (&["backup", "create", "v", "--method", "tape"], "tape"),
        (&["backup", "list", "--status", "bogus"], "bogus"),
        (&["backup", "list", "--limit", "0"], "0"),
        (&["backup", "list", "--since", "yesterday"], "yesterday"),
        (&["backup", "show"], "ID"),
        (&["backup", "show", "abc"], "abc"),
        (&["backup", "verify"], "--all"),
        (&["backup", "verify", "1", "--all"], "--all"),
        (&["backup", "delete", "x"], "x"),
        (&["backup", "hold"], "ID"),
        (&["backup", "retain", "1"], "--keep-until"),
        (
            &[
                "backup",
                "retain",
                "1",
                "--keep-for",
                "1d",
                "--clear-keep-until",
            ],
            "--clear-keep-until",
        ),
        (&["backup", "prune"], "--volume"),
        (
            &["backup", "prune", "--volume", "v", "--keep-last", "-1"],
            "-1",
        ),
        (&["restore"], "--set"),
        (&["restore", "1", "--set", "2"], "--set"),
        (&["restore", "1", "--as", "x", "--to", "y"], "--to"),
        (&["restore", "1", "--as", "x", "--force"], "--force"),
        (&["restore", "--set", "1", "--to", "v"], "--to"),
        (&["catalog"], "Usage"),
        (&["catalog", "frobnicate"], "frobnicate"),
        (&["catalog", "rebuild", "--everything"], "--everything"),
    ];
    assert_usage_errors("backup", cases);
    assert_help(
        &["backup"],
        "",
        &[
            "targets", "create", "list", "show", "verify", "delete", "hold", "release", "retain",
            "prune",
        ],
    );
    assert_help(
        &["restore"],
        "",
        &["--to", "--as", "--set", "--force", "--no-wait"],
    );
    // The test clock is not advertised.
    let help = assert_help(&["serve"], "", &[]);
    assert!(!help.contains("clock"), "{help}");
}
