//! `arca vault ...`, `arca backup annotate` and `arca backup record-copy` against a real
//! daemon: tables, texts and JSON, secrets read from files and never printed, the key
//! exported to a new private file, usage errors before any request.

use std::os::unix::fs::PermissionsExt as _;

use serde_json::json;

use crate::util::*;

const ACCESS: &str = "AKIDCLIVAULTACCESS";
const SECRET: &str = "cliVaultSecretKeyValue0042";

#[test]
fn vault_commands_keep_secrets_in_files_and_export_the_key_privately() {
    let d = Daemon::with_volumes(&["v=16M"]);
    let dir = d.dir().to_path_buf();
    let (ak, sk, empty) = (dir.join("ak"), dir.join("sk"), dir.join("empty"));
    std::fs::write(&ak, format!("{ACCESS}\n")).unwrap();
    std::fs::write(&sk, format!("  {SECRET}\n")).unwrap();
    std::fs::write(&empty, "\n").unwrap();
    let (ak, sk, empty) = (
        ak.to_str().unwrap(),
        sk.to_str().unwrap(),
        empty.to_str().unwrap(),
    );
    let out = d
        .arca(&[
            "vault",
            "add",
            "off",
            "--url",
            "s3://cli-bkt/arca",
            "--endpoint",
            "http://127.0.0.1:9",
            "--allow-http",
            "--access-key-file",
            ak,
            "--secret-key-file",
            sk,
            "--encrypt",
        ])
        .ok();
    assert!(
        out.stdout
            .contains("added vault off (s3 at s3://cli-bkt/arca)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("arca vault key export off"),
        "{}",
        out.stdout
    );
    d.arca(&["vault", "add", "local", "--url", "file:///srv/arca/"])
        .ok();
    let err = d
        .arca(&[
            "vault",
            "add",
            "x",
            "--url",
            "s3://cli-bkt/y",
            "--access-key-file",
            empty,
            "--secret-key-file",
            sk,
        ])
        .error_line();
    assert!(
        err.contains("access key file") && err.contains("is empty"),
        "{err}"
    );
    let err = d
        .arca(&["vault", "add", "x", "--url", "file:///a", "--region", "r"])
        .error_line();
    assert!(err.contains("S3 vaults only"), "{err}");
    let table = d.arca(&["vault", "list"]).ok().stdout;
    assert_eq!(
        header(&table),
        ["NAME", "KIND", "URL", "ENCRYPTED", "BACKUPS", "ADDED"]
    );
    assert_eq!(
        row(&table, "off")[1..5],
        ["s3", "s3://cli-bkt/arca", "yes", "0"]
    );
    assert_eq!(
        row(&table, "local")[1..4],
        ["directory", "file:///srv/arca", "no"]
    );
    let show = d.arca(&["vault", "show", "off"]).ok().stdout;
    assert_eq!(field(&show, "credentials"), "stored");
    assert_eq!(field(&show, "endpoint"), "http://127.0.0.1:9");
    let json = d.json(&["vault", "show", "off"]);
    assert_eq!(
        (&json["encrypted"], &json["allow_http"]),
        (&json!(true), &json!(true))
    );
    // The key: to stdout, or to a new file only its owner reads.
    let key = d.arca(&["vault", "key", "export", "off"]).ok().stdout;
    let key = key.trim().to_string();
    assert_eq!(key.len(), 64, "{key}");
    let file = dir.join("off.key");
    let f = file.to_str().unwrap();
    let out = d.arca(&["vault", "key", "export", "off", "--to", f]).ok();
    assert!(out.stdout.contains("mode 0600"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{key}\n"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let err = d
        .arca(&["vault", "key", "export", "off", "--to", f])
        .error_line();
    assert!(err.contains("must not exist"), "{err}");
    let err = d.arca(&["vault", "key", "export", "local"]).error_line();
    assert!(err.contains("not encrypted"), "{err}");
    // No command printed a secret, nor did the daemon log one.
    for text in [
        table,
        show,
        json.to_string(),
        d.arca(&["vault", "list", "--json"]).ok().stdout,
    ] {
        for s in [ACCESS, SECRET, key.as_str()] {
            assert!(!text.contains(s), "a secret in: {text}");
        }
    }
    let out = d.arca(&["vault", "remove", "local"]).ok();
    assert!(
        out.stdout
            .contains("removed vault local (its data stays at file:///srv/arca)")
    );
    let err = d.arca(&["vault", "show", "local"]).error_line();
    assert!(err.contains("vault local does not exist"), "{err}");
    let err = d
        .arca(&["backup", "list", "--in-vault", "local"])
        .error_line();
    assert!(err.contains("vault local does not exist"), "{err}");
    let log = d.stop_with_log();
    for s in [ACCESS, SECRET, key.as_str()] {
        assert!(!log.contains(s), "a secret in the daemon's log");
    }
}

#[test]
fn vault_usage_errors_come_before_any_request() {
    assert_usage_errors(
        "vault",
        &[
            (&["vault", "add", "x"], "--url"),
            (
                &[
                    "vault",
                    "add",
                    "x",
                    "--url",
                    "s3://b/p",
                    "--access-key-file",
                    "f",
                ],
                "--secret-key-file",
            ),
            (&["vault", "key"], "Usage"),
            (&["vault", "remove"], "NAME"),
        ],
    );
    assert_usage_errors(
        "backup",
        &[
            (&["backup", "annotate", "1"], "required"),
            (
                &["backup", "annotate", "1", "--meta", "novalue"],
                "KEY=VALUE",
            ),
            (&["backup", "record-copy", "1"], "--medium"),
            (
                &[
                    "backup",
                    "record-copy",
                    "1",
                    "--medium",
                    "t",
                    "--copied",
                    "soon",
                ],
                "soon",
            ),
        ],
    );
    let help = assert_help(
        &["backup", "delete"],
        "Delete a backup's data",
        &["--keep-vault-copies"],
    );
    assert!(help.contains("not available yet"), "{help}");
}

#[test]
fn annotate_and_record_copy_show_in_the_record_and_the_list() {
    let d = Daemon::with_volumes(&["v=16M"]);
    let id = d.json(&["backup", "create", "v", "--label", "daily", "--meta", "k=v"])["backups"][0]
        ["id"]
        .as_u64()
        .unwrap()
        .to_string();
    let out = d
        .arca(&[
            "backup",
            "annotate",
            &id,
            "--label",
            "weekly",
            "--unset-meta",
            "k",
            "--meta",
            "ticket=42",
        ])
        .ok();
    assert_eq!(out.stdout, format!("annotated backup {id}\n"));
    let b = d.json(&["backup", "show", &id]);
    assert_eq!(b["info"]["label"], "weekly");
    assert_eq!(b["info"]["meta"], json!({"ticket": "42"}));
    let out = d
        .arca(&[
            "backup",
            "record-copy",
            &id,
            "--medium",
            "tape",
            "--location",
            "T7",
            "--by",
            "bacula",
            "--copied",
            "2026-01-02T00:00:00Z",
        ])
        .ok();
    assert_eq!(
        out.stdout,
        format!("recorded the copy; backup {id} lives in array,host:tape\n")
    );
    let show = d.arca(&["backup", "show", &id]).ok().stdout;
    assert_eq!(field(&show, "lives in"), "array,host:tape");
    assert!(
        show.contains("  tape at T7: 2026-01-02T00:00:00.000Z by bacula"),
        "{show}"
    );
    assert!(
        show.contains("annotated: label, meta ticket, meta k removed"),
        "{show}"
    );
    assert!(show.contains("host copy recorded: tape at T7"), "{show}");
    let table = d.arca(&["backup", "list", "--label", "weekly"]).ok().stdout;
    assert_eq!(row(&table, &id).last(), Some(&"array,host:tape"), "{table}");
    d.arca(&["vault", "add", "off", "--url", "file:///srv/off"])
        .ok();
    let ids = |args: &[&str]| -> Vec<String> {
        d.json(&[&["backup", "list"], args].concat())["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].to_string())
            .collect()
    };
    assert_eq!(ids(&["--not-in-vault", "off"]), std::slice::from_ref(&id));
    assert!(ids(&["--in-vault", "off"]).is_empty());
    let err = d
        .arca(&["backup", "record-copy", &id, "--medium", ""])
        .error_line();
    assert!(err.contains("medium must not be empty"), "{err}");
    d.stop();
}
