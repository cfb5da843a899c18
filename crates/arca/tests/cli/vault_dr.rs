//! Disaster recovery through the daemon and the CLI, against a directory vault and a real S3
//! server (s3s-fs): write data, back up, copy into the vault, stop the daemon and delete the
//! pool, start on a new empty pool, add the vault and import it, restore as a new volume,
//! compare. And an S3 server that is down during a copy: the job fails clearly, no manifest
//! appears, and the copy succeeds once the server is back.

use std::path::Path;
use std::process::Command;

use crate::common::data::random_bytes;
use crate::common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use crate::util::*;

pub(crate) const BUCKET: &str = "dr-bucket";

/// Writes `data` at the start of `export` as a host would (qemu-img, into the existing export).
pub(crate) fn put(d: &Daemon, export: &str, data: &[u8], dir: &Path) {
    let file = dir.join("put.raw");
    std::fs::write(&file, data).unwrap();
    let mut cmd = Command::new("qemu-img");
    cmd.args(["convert", "-n", "-f", "raw", "-O", "raw"])
        .arg(&file)
        .arg(d.uri(export));
    run_cmd(cmd).ok();
}

/// The `vault add` arguments of the place: a directory, or the S3 server (credentials from
/// files, encrypted).
pub(crate) fn add_args(url: &str, s3: Option<(&S3Server, &Path)>) -> Vec<String> {
    let mut a: Vec<String> = ["vault", "add", "dr", "--url", url]
        .map(String::from)
        .to_vec();
    if let Some((server, dir)) = s3 {
        let (ak, sk) = (dir.join("ak"), dir.join("sk"));
        std::fs::write(&ak, ACCESS_KEY).unwrap();
        std::fs::write(&sk, SECRET_KEY).unwrap();
        a.extend(
            [
                "--endpoint",
                &server.endpoint(),
                "--allow-http",
                "--access-key-file",
                ak.to_str().unwrap(),
                "--secret-key-file",
                sk.to_str().unwrap(),
            ]
            .map(String::from),
        );
    }
    a
}

pub(crate) fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn disaster_recovery(s3: bool) {
    if !tools(&["qemu-img"]) {
        return;
    }
    let work = crate::common::daemon::tempdir();
    let server = if s3 {
        match S3Server::start(&work.path().join("s3"), &[BUCKET], ACCESS_KEY, SECRET_KEY) {
            Some(s) => Some(s),
            None => return,
        }
    } else {
        None
    };
    let url = match &server {
        Some(_) => format!("s3://{BUCKET}/arrays/dr"),
        None => format!("file://{}", work.path().join("vault").display()),
    };
    let (_pool1, dev1) = device_in_tempdir();
    let d = Daemon::serve_new_device(&dev1, "128M");
    d.arca(&["volume", "create", "db", "--size", "16M"]).ok();
    // 3 MiB of random data, then holes.
    let data = random_bytes(21, 3 << 20);
    put(&d, "db", &data, work.path());
    let want = image(&d, "db", work.path());
    let b = d.json(&["backup", "create", "db", "--label", "before the fire"]);
    let id = b["backups"][0]["id"].to_string();
    let mut add = add_args(&url, server.as_ref().map(|s| (s, work.path())));
    if s3 {
        add.push("--encrypt".into());
    }
    d.arca(&strs(&add)).ok();
    let out = d.arca(&["backup", "copy", &id, "--vault", "dr"]).ok();
    assert!(
        out.stdout
            .contains(&format!("copied backup {id} to vault dr")),
        "{}",
        out.stdout
    );
    let key_file = work.path().join("dr.key");
    if s3 {
        d.arca(&[
            "vault",
            "key",
            "export",
            "dr",
            "--to",
            key_file.to_str().unwrap(),
        ])
        .ok();
    }
    let shown = d.json(&["backup", "show", &id]);
    assert_eq!(shown["locations"], serde_json::json!(["array", "vault:dr"]));
    d.stop();
    // The pool is lost.
    std::fs::remove_file(&dev1).unwrap();

    let (_pool2, dev2) = device_in_tempdir();
    let d = Daemon::serve_new_device(&dev2, "128M");
    d.arca(&strs(&add_args(
        &url,
        server.as_ref().map(|s| (s, work.path())),
    )))
    .ok();
    let mut import = vec!["vault", "import", "dr"];
    if s3 {
        import.extend(["--key-file", key_file.to_str().unwrap()]);
    }
    let out = d.arca(&import).ok();
    assert!(
        out.stdout
            .contains(&format!("imported 1 backup from vault dr: {id}")),
        "{}",
        out.stdout
    );
    let shown = d.json(&["backup", "show", &id]);
    assert_eq!(shown["info"]["label"], "before the fire", "{shown}");
    assert_eq!(shown["locations"], serde_json::json!(["vault:dr"]));
    d.arca(&["restore", &id, "--as", "db"]).ok();
    let got = image(&d, "db", work.path());
    crate::common::data::assert_same("the restored volume", &got, &want);
    let shown = d.json(&["backup", "show", &id]);
    let last = shown["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"]["type"], "restored", "{last}");
    assert_eq!(last["event"]["from"], "vault:dr", "{last}");
    d.stop();
}

#[test]
fn disaster_recovery_from_a_directory_vault() {
    disaster_recovery(false);
}

#[test]
fn disaster_recovery_from_an_encrypted_s3_vault() {
    disaster_recovery(true);
}

#[test]
fn a_copy_while_the_s3_server_is_down_fails_clearly_and_succeeds_once_it_is_back() {
    let work = crate::common::daemon::tempdir();
    let Some(mut server) =
        S3Server::start(&work.path().join("s3"), &[BUCKET], ACCESS_KEY, SECRET_KEY)
    else {
        return;
    };
    let d = Daemon::with_volumes(&["v=16M"]);
    let add = add_args(&format!("s3://{BUCKET}/down"), Some((&server, work.path())));
    d.arca(&strs(&add)).ok();
    let b = d.json(&["backup", "create", "v"]);
    let id = b["backups"][0]["id"].to_string();
    server.stop();
    let out = d.arca(&["backup", "copy", &id, "--vault", "dr"]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!(
            "failed: copy of backup {id} to vault dr: vault dr: vault storage error"
        )),
        "{}",
        out.describe()
    );
    let shown = d.json(&["backup", "show", &id]);
    assert_eq!(shown["locations"], serde_json::json!(["array"]));
    server.restart();
    let manifests = work.path().join("s3").join(BUCKET).join("down/manifests");
    assert!(
        !manifests.exists() || std::fs::read_dir(&manifests).unwrap().next().is_none(),
        "a manifest of the failed copy"
    );
    d.arca(&["backup", "copy", &id, "--vault", "dr"]).ok();
    let shown = d.json(&["backup", "show", &id]);
    assert_eq!(shown["locations"], serde_json::json!(["array", "vault:dr"]));
}
