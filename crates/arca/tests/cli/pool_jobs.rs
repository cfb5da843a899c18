//! `arca pool status`, `arca pool check` (waiting and `--no-wait`) and `arca job ...`.

use crate::util::{Daemon, GIB, field, find, header};

#[test]
fn pool_status_in_table_and_json() {
    let d = Daemon::start();
    d.arca(&["volume", "create", "v", "--size", "1G"]).ok();
    d.arca(&["snapshot", "create", "v", "--name", "s"]).ok();

    let p = d.json(&["pool", "status"]);
    assert_eq!(p["volumes"], 1);
    assert_eq!(p["snapshots"], 1);
    assert_eq!(p["extent_size"], 64 * 1024);
    let capacity = p["capacity"].as_u64().unwrap();
    assert!(capacity > GIB && capacity <= 2 * GIB, "{p:#}");
    assert!(p["free"].as_u64().unwrap() <= capacity);
    assert!(p["metadata_capacity"].as_u64().unwrap() > 0);
    assert!(!p["id"].as_str().unwrap().is_empty());
    let devices = p["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["index"], 0);
    assert!(
        devices[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("device-0.img"),
        "{p:#}"
    );
    assert_eq!(devices[0]["capacity"].as_u64(), Some(capacity));

    let text = d.arca(&["pool", "status"]).ok().stdout;
    let field = |k: &str| field(&text, k);
    assert_eq!(field("pool"), p["id"].as_str().unwrap());
    assert_eq!(field("extent size"), "64.0K");
    assert_eq!(field("volumes"), "1");
    assert_eq!(field("snapshots"), "1");
    assert!(field("capacity").ends_with('G'), "{text}");
    assert!(field("metadata").contains(" of "), "{text}");
    assert_eq!(field("last pool check"), "none recorded");
    assert_eq!(field("last catalog check"), "none recorded");
    let header = text
        .lines()
        .find(|l| l.trim_start().starts_with("DEVICE"))
        .unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["DEVICE", "PATH", "CAPACITY", "USED", "FREE"]
    );
    assert!(
        text.lines().any(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|p| p.ends_with("device-0.img"))),
        "{text}"
    );
    d.stop();
}

#[test]
fn pool_check_and_jobs() {
    let d = Daemon::start();
    d.arca(&["volume", "create", "v", "--size", "1G"]).ok();
    d.arca(&["snapshot", "create", "v", "--name", "s"]).ok();

    // Waiting: a clean pool exits 0 and says so.
    let out = d.arca(&["pool", "check"]).ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("pool check: clean (1 volume, 1 snapshot")),
        "{}",
        out.describe()
    );
    // With --json: the finished job, carrying its CheckReport.
    let job = d.json(&["pool", "check"]);
    assert_eq!(job["kind"], "pool-check");
    assert_eq!(job["state"], "succeeded");
    assert!(job["finished"].is_string(), "{job:#}");
    assert!(job["error"].is_null());
    assert_eq!(job["result"]["clean"], true);
    assert_eq!(job["result"]["problems"], serde_json::json!([]));
    // Both checks are on the record `pool status` prints from.
    d.arca(&["catalog", "check"]).ok();
    let text = d.arca(&["pool", "status"]).ok().stdout;
    for k in ["last pool check", "last catalog check"] {
        let line = field(&text, k);
        assert!(
            line.starts_with("clean; ") && line.ends_with(", by anonymous)"),
            "{k}: {line:?}"
        );
    }
    assert_eq!(job["result"]["volumes"], 1);
    assert_eq!(job["result"]["snapshots"], 1);
    let waited_id = job["id"].as_u64().unwrap();

    // --no-wait prints the bare id; `job wait` then waits for it.
    let out = d.arca(&["pool", "check", "--no-wait"]).ok();
    let id: u64 = out
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a job id: {}", out.describe()));
    assert!(id > waited_id);
    let out = d.arca(&["job", "wait", &id.to_string()]).ok();
    assert!(
        out.stdout.contains("pool check: clean"),
        "{}",
        out.describe()
    );
    let job = d.json(&["job", "wait", &id.to_string()]);
    assert_eq!(
        (job["id"].as_u64(), job["state"].as_str()),
        (Some(id), Some("succeeded"))
    );
    // --no-wait --json: the job as just started.
    let started = d.json(&["pool", "check", "--no-wait"]);
    assert_eq!(started["kind"], "pool-check");
    assert!(started["id"].as_u64().unwrap() > id);
    let last = started["id"].as_u64().unwrap().to_string();
    d.arca(&["job", "wait", &last]).ok();

    // job show, both forms.
    let show = d.arca(&["job", "show", &id.to_string()]).ok().stdout;
    for want in [
        "kind:",
        "pool-check",
        "state:",
        "succeeded",
        "result:",
        "clean",
    ] {
        assert!(show.contains(want), "{want} missing in:\n{show}");
    }
    let job = d.json(&["job", "show", &id.to_string()]);
    assert_eq!(job["id"].as_u64(), Some(id));
    assert_eq!(job["target"], "pool");
    assert_eq!(job["result"]["clean"], true);

    // job list, both forms.
    let list = d.json(&["job", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 4, "{list:#}");
    let j = list
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"].as_u64() == Some(id))
        .unwrap();
    assert_eq!(j["state"], "succeeded");
    assert!(find(&list, "kind", "pool-check")["created"].is_string());
    let table = d.arca(&["job", "list"]).ok().stdout;
    assert_eq!(
        header(&table),
        [
            "ID", "KIND", "TARGET", "STATE", "PROGRESS", "CREATED", "FINISHED"
        ]
    );
    let r = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c[0] == id.to_string())
        .unwrap();
    assert_eq!(&r[1..5], ["pool-check", "pool", "succeeded", "100%"]);

    // Cancelling a finished job is refused (409), in one line.
    let err = d.arca(&["job", "cancel", &id.to_string()]).error_line();
    assert!(err.contains("finished"), "{err}");
    // Unknown jobs: show, wait and cancel all fail cleanly.
    for cmd in ["show", "wait", "cancel"] {
        let err = d.arca(&["job", cmd, "999999"]).error_line();
        assert!(err.contains("999999"), "{err}");
    }
    d.stop();
}
