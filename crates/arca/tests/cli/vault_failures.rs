//! Vault copies interrupted through the daemon: the S3 server stopped in the middle of an
//! upload, and the daemon killed (SIGKILL) in the middle of an incremental copy. Neither
//! leaves a manifest or a record that says anything false, and the next copy succeeds,
//! reusing the packs that were complete.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::data::random_bytes;
use crate::common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use crate::util::*;
use crate::vault_dr::{BUCKET, add_args, put, strs};

/// Random data written before the interrupted copy: several 64 MiB packs.
const DATA: usize = 200 << 20;
/// Data a vault pack holds at least: it is closed before it would pass 64 MiB (blob headers
/// take a few bytes a chunk, so one 64 KiB chunk less); complete when its index appears.
const PACK: u64 = (64 << 20) - (64 << 10);

fn objects(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Starts copying backup `id` into vault `dr` and waits until the vault holds more than
/// `indexes_before` pack indexes under `index_dir` (a pack completed); the job id.
fn copy_until_a_pack_completes(d: &Daemon, id: &str, index_dir: &Path, before: usize) -> String {
    let started = d.json(&["backup", "copy", id, "--vault", "dr", "--no-wait"]);
    let job = started["job"].to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while objects(index_dir) <= before {
        assert!(Instant::now() < deadline, "no pack completed within 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    job
}

fn vault_copies(d: &Daemon, id: &str) -> Vec<Value> {
    d.json(&["backup", "show", id])["vault_copies"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn the_s3_server_stopped_mid_upload_fails_the_copy_and_the_next_copy_reuses_what_was_uploaded() {
    if !tools(&["qemu-img"]) {
        return;
    }
    let work = crate::common::daemon::tempdir();
    let Some(mut server) =
        S3Server::start(&work.path().join("s3"), &[BUCKET], ACCESS_KEY, SECRET_KEY)
    else {
        return;
    };
    let d = Daemon::with_volumes(&["v=256M"]);
    put(&d, "v", &random_bytes(31, DATA), work.path());
    let id = d.json(&["backup", "create", "v"])["backups"][0]["id"].to_string();
    let add = add_args(&format!("s3://{BUCKET}/mid"), Some((&server, work.path())));
    d.arca(&strs(&add)).ok();
    let prefix = work.path().join("s3").join(BUCKET).join("mid");
    let job = copy_until_a_pack_completes(&d, &id, &prefix.join("index"), 0);
    server.stop();
    // Polled rather than waited for: the vault retries a refused request for up to 20 s.
    let deadline = Instant::now() + Duration::from_secs(120);
    let shown = loop {
        let shown = d.json(&["job", "show", &job]);
        if shown["state"] != "running" && shown["state"] != "queued" {
            break shown;
        }
        assert!(Instant::now() < deadline, "the copy did not end: {shown}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(shown["state"], "failed", "{shown}");
    let error = shown["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "copy of backup {id} to vault dr: vault dr: vault storage error"
        )),
        "{error}"
    );
    assert!(!error.contains(SECRET_KEY) && !error.contains(ACCESS_KEY));
    assert!(vault_copies(&d, &id).is_empty());
    assert_eq!(
        objects(&prefix.join("manifests")),
        0,
        "a manifest of the failed copy"
    );
    let uploaded = objects(&prefix.join("index")) as u64;
    assert!(uploaded >= 1);

    server.restart();
    d.arca(&["backup", "copy", &id, "--vault", "dr"]).ok();
    let copies = vault_copies(&d, &id);
    assert_eq!(copies.len(), 1);
    let new = copies[0]["bytes_new"].as_u64().unwrap();
    assert!(
        new <= DATA as u64 - uploaded * PACK,
        "{new} bytes new: the {uploaded} completed pack(s) were not reused"
    );
    assert_eq!(objects(&prefix.join("manifests")), 1);
    d.stop();
}

#[test]
fn the_daemon_killed_mid_copy_leaves_no_false_record_and_no_pin_and_the_copy_succeeds_later() {
    if !tools(&["qemu-img"]) {
        return;
    }
    let work = crate::common::daemon::tempdir();
    let vault = work.path().join("vault");
    let (_pool, dev) = device_in_tempdir();
    let d = Daemon::serve_new_device(&dev, "1G");
    d.arca(&["volume", "create", "v", "--size", "256M"]).ok();
    put(&d, "v", &random_bytes(41, 1 << 20), work.path());
    let b1 = d.json(&["backup", "create", "v"])["backups"][0]["id"].to_string();
    d.arca(&strs(&add_args(
        &format!("file://{}", vault.display()),
        None,
    )))
    .ok();
    d.arca(&["backup", "copy", &b1, "--vault", "dr"]).ok();
    // The next generation differs almost everywhere: its copy is incremental on b1 (pinned)
    // and long enough to be killed in the middle.
    put(&d, "v", &random_bytes(42, DATA), work.path());
    let b2 = d.json(&["backup", "create", "v"])["backups"][0]["id"].to_string();
    let before = objects(&vault.join("index"));
    copy_until_a_pack_completes(&d, &b2, &vault.join("index"), before);
    d.kill();
    let d = Daemon::serve(&["--device", &dev]);

    let shown = d.json(&["backup", "show", &b2]);
    assert_eq!(shown["status"], "complete", "{shown}");
    assert_eq!(shown["locations"], serde_json::json!(["array"]), "{shown}");
    assert!(vault_copies(&d, &b2).is_empty());
    assert_eq!(objects(&vault.join("manifests")), 1, "only b1's manifest");
    let history = shown["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .all(|h| h["event"]["type"] != "copied_to_vault"),
        "{shown}"
    );
    d.arca(&["catalog", "check"]).ok();
    // The pin on the base is lifted: b1's image can go (its vault copy stays).
    d.arca(&["backup", "delete", &b1, "--force", "--keep-vault-copies"])
        .ok();
    let b1_shown = d.json(&["backup", "show", &b1]);
    assert_eq!(b1_shown["locations"], serde_json::json!(["vault:dr"]));
    d.arca(&["backup", "copy", &b2, "--vault", "dr"]).ok();
    let copies = vault_copies(&d, &b2);
    assert_eq!(copies.len(), 1);
    assert!(copies[0]["bytes_new"].as_u64().unwrap() <= DATA as u64 - PACK);
    d.arca(&["catalog", "check"]).ok();
    d.stop();
}
