//! The vault registry and the host-written information of backups against a real daemon:
//! vault add/list/show/remove and key export, secrets kept out of every answer and of the log,
//! annotate and host copies, the vault filters of the backup list, the document.

use serde_json::{Value, json};

use crate::{
    Daemon, assert_documented, assert_error, assert_error_mentions, assert_refusals, delete, get,
    param_names, post, served_openapi,
};

const ACCESS: &str = "AKIDVAULTACCESS0001";
const SECRET: &str = "wJalrVAULTSECRETKEYEXAMPLE0001";

fn snapshot_backup(d: &Daemon, label: &str) -> u64 {
    let (s, v) = post(d, "/v1/backups", json!({"volumes": ["v"], "label": label}));
    assert_eq!(s, 201, "{v}");
    v["backups"][0]["id"].as_u64().unwrap()
}

fn assert_no_secret(what: &str, text: &str, key: Option<&str>) {
    for s in [ACCESS, SECRET].into_iter().chain(key) {
        assert!(!text.contains(s), "{what} shows a secret: {text}");
    }
}

#[test]
fn vaults_every_endpoint_and_secrets_never_shown() {
    let d = Daemon::start_with_args(&["--volume", "v=16M"]);
    // Adding a vault opens it: a real S3 server with these credentials, and a directory.
    let Some(server) =
        crate::common::s3::S3Server::start(&d.dir().join("s3"), &["arca-bkt"], ACCESS, SECRET)
    else {
        return;
    };
    let s3 = json!({
        "name": "offsite", "url": "s3://arca-bkt/site1/", "endpoint": server.endpoint(),
        "allow_http": true, "region": "eu-west-1", "access_key": ACCESS, "secret_key": SECRET,
        "encrypt": true
    });
    let (st, v) = post(&d, "/v1/vaults", s3.clone());
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (&v["url"], &v["kind"], &v["credentials"], &v["encrypted"]),
        (
            &json!("s3://arca-bkt/site1"),
            &json!("s3"),
            &json!(true),
            &json!(true)
        )
    );
    let (st, dir) = post(
        &d,
        "/v1/vaults",
        json!({"name": "local", "url": format!("file://{}", d.dir().join("local").display())}),
    );
    assert_eq!(st, 201, "{dir}");
    assert_eq!(
        (&dir["kind"], &dir["encrypted"]),
        (&json!("directory"), &json!(false))
    );
    assert_refusals(
        |b| post(&d, "/v1/vaults", b),
        &[
            (s3.clone(), 409, "conflict"),
            (json!({"name": "x", "url": "ftp://h/p"}), 422, "invalid"),
            (
                json!({"name": "bad name", "url": "file:///a"}),
                422,
                "invalid",
            ),
            (
                json!({"name": "x", "url": "file:///a", "endpoint": "https://e"}),
                422,
                "invalid",
            ),
            (
                json!({"name": "x", "url": "s3://bkt", "endpoint": "http://e"}),
                422,
                "invalid",
            ),
            (
                json!({"name": "x", "url": "s3://bkt", "access_key": ACCESS}),
                422,
                "invalid",
            ),
            (
                json!({"name": "x", "url": "file:///a", "colour": 1}),
                422,
                "invalid",
            ),
        ],
    );
    // A bad secret is refused without being quoted.
    let r = post(
        &d,
        "/v1/vaults",
        json!({"name": "x", "url": "s3://bkt", "access_key": ACCESS,
               "secret_key": format!("{SECRET} tail")}),
    );
    assert_error_mentions(&r, 422, "invalid", "secret key");
    assert_no_secret("the refusal", &r.1.to_string(), None);
    let (st, list) = get(&d, "/v1/vaults");
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(get(&d, "/v1/vaults/offsite").1["region"], "eu-west-1");
    assert_error(&get(&d, "/v1/vaults/nope"), 404, "not_found");
    // The key leaves only by export: 32 bytes of hex.
    let (st, k) = post(&d, "/v1/vaults/offsite/key-export", json!({}));
    assert_eq!(st, 200, "{k}");
    let key = k["key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_error_mentions(
        &post(&d, "/v1/vaults/local/key-export", json!({})),
        422,
        "invalid",
        "not encrypted",
    );
    for text in [
        list.to_string(),
        get(&d, "/v1/vaults/offsite").1.to_string(),
    ] {
        assert_no_secret("a vault answer", &text, Some(&key));
    }
    // The list's vault filters: an unknown vault is a 404, a known one filters.
    let b = snapshot_backup(&d, "n");
    assert_error(&get(&d, "/v1/backups?in_vault=nope"), 404, "not_found");
    assert_eq!(
        get(&d, "/v1/backups?in_vault=offsite").1["backups"],
        json!([])
    );
    let (st, page) = get(&d, "/v1/backups?not_in_vault=offsite");
    assert_eq!(
        (st, page["backups"][0]["id"].as_u64()),
        (200, Some(b)),
        "{page}"
    );
    assert_eq!(page["backups"][0]["locations"], json!(["array"]));
    crate::assert_secrets_hidden(&d, None, &[ACCESS, SECRET, &key]);
    // Removed, kept across a restart until then.
    let d = d.restart();
    assert_eq!(get(&d, "/v1/vaults").1.as_array().unwrap().len(), 2);
    let (st, r) = delete(&d, "/v1/vaults/local");
    assert_eq!((st, &r["dropped_from"]), (200, &json!([])), "{r}");
    assert_error(&delete(&d, "/v1/vaults/local"), 404, "not_found");
    let log = d.stop_with_log();
    assert_no_secret("the daemon's log", &log, Some(&key));
}

#[test]
fn annotate_and_host_copies_change_the_record_with_history() {
    let d = Daemon::start_with_args(&["--volume", "v=16M"]);
    let id = snapshot_backup(&d, "daily");
    let path = format!("/v1/backups/{id}/annotate");
    let (st, b) = post(
        &d,
        &path,
        json!({"label": "weekly", "meta": {"ticket": "42"}, "description": "kept for audit"}),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["info"]["label"], "weekly");
    assert_eq!(b["info"]["meta"], json!({"ticket": "42"}));
    let last = |b: &Value| b["history"].as_array().unwrap().last().unwrap()["event"].clone();
    assert_eq!(
        last(&b),
        json!({"type": "annotated", "what": "label, description, meta ticket"})
    );
    // The label index follows.
    let by_label = |l: &str| get(&d, &format!("/v1/backups?label={l}")).1["backups"].clone();
    assert_eq!(by_label("daily"), json!([]));
    assert_eq!(by_label("weekly")[0]["id"].as_u64(), Some(id));
    let (st, b) = post(&d, &path, json!({"unset_meta": ["ticket"]}));
    assert_eq!((st, &b["info"]["meta"]), (200, &json!({})), "{b}");
    assert_refusals(
        |body| post(&d, &path, body),
        &[
            (json!({}), 422, "invalid"),
            (json!({"label": "x".repeat(257)}), 422, "invalid"),
            (json!({"label": ""}), 422, "invalid"),
            (json!({"meta": {"a=b": "c"}}), 422, "invalid"),
            (
                json!({"meta": {"k": "v"}, "unset_meta": ["k"]}),
                422,
                "invalid",
            ),
            (json!({"colour": "red"}), 422, "invalid"),
        ],
    );
    assert_error(
        &post(&d, "/v1/backups/999/annotate", json!({"label": "x"})),
        404,
        "not_found",
    );
    let copies = format!("/v1/backups/{id}/host-copies");
    let (st, b) = post(
        &d,
        &copies,
        json!({"medium": "tape", "location": "T0042", "by": "bacula",
               "copied": "2026-01-02T03:04:05Z"}),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["host_copies"],
        json!([{"medium": "tape", "location": "T0042", "by": "bacula",
                "copied": "2026-01-02T03:04:05.000Z"}])
    );
    assert_eq!(b["locations"], json!(["array", "host:tape"]));
    assert_eq!(
        last(&b),
        json!({"type": "host_copy_recorded", "medium": "tape", "location": "T0042"})
    );
    assert_refusals(
        |body| post(&d, &copies, body),
        &[
            (json!({}), 422, "invalid"),
            (json!({"medium": ""}), 422, "invalid"),
            (
                json!({"medium": "tape", "copied": "yesterday"}),
                400,
                "invalid",
            ),
            (
                json!({"medium": "tape", "copied": "2999-01-01T00:00:00Z"}),
                422,
                "invalid",
            ),
        ],
    );
    // Without vault copies, keep_vault_copies changes nothing: the backup is deleted.
    let (st, b) = delete(&d, &format!("/v1/backups/{id}?keep_vault_copies=true"));
    assert_eq!((st, &b["status"]), (200, &json!("deleted")), "{b}");
    assert_eq!(b["locations"], json!(["host:tape"]));
    d.stop();
}

#[test]
fn vault_and_copy_endpoints_are_documented() {
    let doc = served_openapi();
    assert_documented(
        &doc,
        &[
            ("/v1/vaults", "get", &["200"]),
            ("/v1/vaults", "post", &["201", "409", "422"]),
            ("/v1/vaults/{name}", "get", &["200", "404"]),
            ("/v1/vaults/{name}", "delete", &["200", "404", "409"]),
            (
                "/v1/vaults/{name}/key-export",
                "post",
                &["200", "404", "422"],
            ),
            ("/v1/vaults/{name}/copies", "post", &["202", "404", "409"]),
            ("/v1/vaults/{name}/import", "post", &["200", "404", "422"]),
            ("/v1/backups/{id}/annotate", "post", &["200", "404", "422"]),
            (
                "/v1/backups/{id}/host-copies",
                "post",
                &["200", "404", "422"],
            ),
        ],
    );
    let params = param_names(&doc, "/v1/backups", "get");
    assert!(
        params.contains(&"in_vault") && params.contains(&"not_in_vault"),
        "{params:?}"
    );
    let del = param_names(&doc, "/v1/backups/{id}", "delete");
    assert!(del.contains(&"keep_vault_copies"), "{del:?}");
    let backup = &doc["components"]["schemas"]["Backup"]["properties"];
    for f in [
        "locations",
        "vault_copies",
        "host_copies",
        "off_array_since",
    ] {
        assert!(backup[f].is_object(), "Backup.{f} undocumented");
    }
}
