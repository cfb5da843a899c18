//! `arca policy ...` against a real daemon in real time: a policy every two seconds takes,
//! prunes and lists backups; show, list, next, history, pause, resume, run and delete; the
//! policy and its history survive a restart.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Daemon, field, header, row};

fn succeeded_runs(d: &Daemon) -> usize {
    let h = d.json(&["policy", "history", "p", "--limit", "100"]);
    h.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["result"] == "succeeded")
        .count()
}

fn policy_backups(d: &Daemon) -> Vec<Value> {
    let list = d.json(&["backup", "list", "--label", "p", "--status", "complete"]);
    list["backups"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_two_second_policy_takes_prunes_and_lists_backups_in_real_time() {
    let mut d = Daemon::start();
    for v in ["a", "b", "other"] {
        d.arca(&["volume", "create", v, "--size", "16M"]).ok();
    }
    let out = d
        .arca(&[
            "policy",
            "create",
            "p",
            "--volumes",
            "a",
            "b",
            "--set",
            "--snapshot",
            "*:*:0/2",
            "--keep-last",
            "2",
        ])
        .ok();
    assert!(
        out.stdout.starts_with("created policy p\n"),
        "{}",
        out.describe()
    );
    assert_eq!(field(&out.stdout, "matched"), "a, b");

    // `next`: the slots two seconds apart.
    let next = d.json(&["policy", "next", "p", "--count", "3"]);
    let times: Vec<&str> = next["schedules"][0]["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(times.len(), 3);
    for t in &times {
        let secs: u32 = t[17..19].parse().unwrap();
        assert_eq!(secs % 2, 0, "{t}");
    }

    // Within 20 s: at least four runs, each a set of a and b, pruned to the newest two sets.
    let deadline = Instant::now() + Duration::from_secs(20);
    while succeeded_runs(&d) < 4 {
        assert!(Instant::now() < deadline, "fewer than 4 runs in 20 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let backups = policy_backups(&d);
    let mut sets: Vec<u64> = backups
        .iter()
        .map(|b| b["set_id"].as_u64().unwrap())
        .collect();
    sets.sort();
    sets.dedup();
    // A run may be between its snapshot and its prune: at most one set more.
    assert!((2..=3).contains(&sets.len()), "{backups:#?}");
    for b in &backups {
        assert_eq!(b["info"]["program"], "arca-policy/p");
        assert!(["a", "b"].contains(&b["source"]["volume_name"].as_str().unwrap()));
    }

    // list, show and history as tables.
    let table = d.arca(&["policy", "list"]).ok().stdout;
    assert_eq!(
        header(&table)[..4],
        ["NAME", "VOLUMES", "SNAPSHOT", "VERIFY"]
    );
    assert_eq!(row(&table, "p")[1..3], ["a,b", "*:*:0/2"]);
    let shown = d.arca(&["policy", "show", "p"]).ok().stdout;
    assert_eq!(field(&shown, "keep"), "last 2");
    assert_eq!(field(&shown, "program"), "arca-policy/p");
    assert!(
        shown.contains("snapshot: *:*:0/2 (snapshot, prune)"),
        "{shown}"
    );
    let hist = d
        .arca(&["policy", "history", "p", "--limit", "3"])
        .ok()
        .stdout;
    assert_eq!(header(&hist)[..4], ["RUN", "TRIGGER", "STARTED", "RESULT"]);
    assert!(
        hist.contains("snapshot: 2 of 2 volume(s)") || hist.contains("volume(s) backed up"),
        "{hist}"
    );

    // Paused: nothing runs, a run is refused saying so.
    d.arca(&["policy", "pause", "p"]).ok();
    std::thread::sleep(Duration::from_millis(300));
    let before = succeeded_runs(&d);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(succeeded_runs(&d), before, "a paused policy ran");
    let err = d.arca(&["policy", "run", "p"]).error_line();
    assert!(err.contains("paused"), "{err}");
    let next = d.arca(&["policy", "next", "p"]).ok().stdout;
    assert!(next.contains("is paused"), "{next}");

    // Run by hand, one step, waiting for its job.
    d.arca(&["policy", "resume", "p"]).ok();
    d.arca(&["policy", "pause", "p"]).ok();
    d.arca(&["policy", "resume", "p"]).ok();
    let out = d.arca(&["policy", "run", "p", "--step", "prune"]);
    // The scheduler may be running it this instant; then the run is refused as busy.
    if out.code() == Some(0) {
        assert!(
            out.stdout.contains("prune ok: removed"),
            "{}",
            out.describe()
        );
    } else {
        assert!(out.stderr.contains("already running"), "{}", out.describe());
    }

    // Kept across a restart.
    d = d.restart();
    let p = d.json(&["policy", "show", "p"]);
    assert_eq!(p["snapshot"], "*:*:0/2");
    assert!(succeeded_runs(&d) >= 4);

    // Delete: the backups stay.
    d.arca(&["policy", "pause", "p"]).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = d.arca(&["policy", "delete", "p"]);
        if out.code() == Some(0) {
            break;
        }
        assert!(
            out.stderr.contains("is running") && Instant::now() < deadline,
            "{}",
            out.describe()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!policy_backups(&d).is_empty());
    let err = d.arca(&["policy", "show", "p"]).error_line();
    assert!(err.contains("policy p does not exist"), "{err}");
    let err = d
        .arca(&["policy", "create", "q", "--snapshot", "daily"])
        .error_line();
    assert!(err.contains("--volumes"), "{err}");
    d.stop();
}

/// `--copy-to`, `--copy` and `--vault-keep-*` through the CLI: `policy run` copies to a
/// directory vault and prunes there; `show` and `list` say where and when; `--copy none`
/// removes the copy step.
#[test]
fn a_policy_copies_to_a_vault_and_prunes_there() {
    let d = Daemon::start();
    let url = format!("file://{}", d.dir().join("off").display());
    d.arca(&["volume", "create", "a", "--size", "16M"]).ok();
    d.arca(&["vault", "add", "off", "--url", &url]).ok();
    let err = d
        .arca(&[
            "policy",
            "create",
            "p",
            "--volumes",
            "a",
            "--copy-to",
            "off",
        ])
        .error_line();
    assert!(err.contains("needs a copy calendar"), "{err}");
    let out = d
        .arca(&[
            "policy",
            "create",
            "p",
            "--volumes",
            "a",
            "--snapshot",
            "yearly",
            "--copy-to",
            "off",
            "--copy",
            "daily",
            "--vault-keep-last",
            "1",
        ])
        .ok();
    assert_eq!(field(&out.stdout, "copy to"), "off");
    assert_eq!(field(&out.stdout, "vault keep"), "last 1");
    assert!(
        out.stdout.contains("copy: daily (copy, vault-prune)"),
        "{}",
        out.stdout
    );
    let table = d.arca(&["policy", "list"]).ok().stdout;
    assert_eq!(header(&table)[4], "COPY");
    assert_eq!(
        row(&table, "p")[2..7],
        ["yearly", "-", "daily", "to", "off"]
    );
    for _ in 0..2 {
        d.arca(&["policy", "run", "p", "--step", "snapshot"]).ok();
    }
    let out = d.arca(&["policy", "run", "p", "--step", "copy"]).ok();
    assert!(
        out.stdout
            .contains("copy ok: copied 2 backup(s) to vault off (1 incremental)"),
        "{}",
        out.stdout
    );
    let out = d
        .arca(&["policy", "run", "p", "--step", "vault-prune"])
        .ok();
    assert!(
        out.stdout
            .contains("vault-prune ok: vault off: copies removed 1 ("),
        "{}",
        out.stdout
    );
    let copied = d.json(&["backup", "list", "--in-vault", "off"]);
    assert_eq!(copied["backups"].as_array().unwrap().len(), 1);
    let out = d.arca(&["policy", "update", "p", "--copy", "none"]).ok();
    assert_eq!(field(&out.stdout, "copy to"), "-");
    assert!(!out.stdout.contains("copy: daily"), "{}", out.stdout);
    d.stop();
}
