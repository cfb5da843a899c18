//! The copy-pair endpoints against a real daemon, with qemu-io as the host: the initial copy,
//! mirroring, the secondary read-only while paired and writable while split, split, resync,
//! reverse resync, delete, and every 400/404/409/422 answer.

use serde_json::{Value, json};

use crate::common::qemu::{identical, qemu_io_if_installed, write_refused};
use crate::{
    Daemon, assert_documented, assert_error, assert_error_mentions, assert_refusals, call, delete,
    get, post, retry_while_refused, served_openapi, wait_job,
};

const M: u64 = 1 << 20;

fn pair(d: &Daemon, name: &str) -> Value {
    let (s, p) = get(d, &format!("/v1/pairs/{name}"));
    assert_eq!(s, 200, "{p}");
    p
}

fn job_id(v: &Value) -> u64 {
    v["job"].as_u64().unwrap_or_else(|| panic!("no job in {v}"))
}

/// RFC 3339 UTC with milliseconds, like every time of the API.
fn assert_time(t: &Value) {
    let t = t.as_str().unwrap_or_else(|| panic!("not a time: {t}"));
    assert!(
        t.len() == 24 && t.ends_with('Z') && &t[19..20] == ".",
        "{t}"
    );
}

fn read_only(d: &Daemon, export: &str) -> bool {
    let (s, list) = get(d, "/v1/exports");
    assert_eq!(s, 200);
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == export)
        .unwrap_or_else(|| panic!("no export {export} in {list}"))["read_only"]
        .as_bool()
        .unwrap()
}

#[test]
fn pair_mirrors_splits_resyncs_reverses_and_deletes() {
    let d = Daemon::start_with_args(&["--volume", "p=64M", "--volume", "s=64M"]);
    let data = qemu_io_if_installed(&d, "p", &["write -P 0x11 0 1M", "write -P 0x12 32M 64k"]);

    // Create: the pair is named after its secondary and starts with the initial copy.
    let (s, created) = post(&d, "/v1/pairs", json!({"primary": "p", "secondary": "s"}));
    assert_eq!(s, 201, "{created}");
    let p = &created["pair"];
    assert_eq!(p["name"], "s");
    assert_eq!((&p["primary"], &p["secondary"]), (&json!("p"), &json!("s")));
    assert_eq!(p["state"], "copy");
    assert!(p["reason"].is_null() && p["split"].is_null(), "{p}");
    assert!(p["pace_bytes_per_second"].is_null());
    assert_time(&p["created"]);
    let job = job_id(&created);
    assert_eq!(p["job"], job);
    // One device holds both.
    let warning = created["warning"].as_str().unwrap();
    assert!(warning.contains("share device 0"), "{warning}");
    let j = wait_job(&d, job);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(
        (&j["kind"], &j["target"]),
        (&json!("pair-copy"), &json!("s"))
    );
    assert_eq!(j["result"]["pair"], "s", "{j}");
    let p = pair(&d, "s");
    assert_eq!(p["state"], "pair", "{p}");
    assert_eq!(p["job"], job);
    assert!(p["reason"].is_null() && p["split"].is_null(), "{p}");
    let (s, list) = get(&d, "/v1/pairs");
    assert_eq!((s, list.clone()), (200, json!([p])));

    // The copy holds the primary's data; a primary write reaches the secondary at once.
    if data {
        qemu_io_if_installed(&d, "s", &["read -P 0x11 0 1M", "read -P 0x12 32M 64k"]);
        qemu_io_if_installed(&d, "p", &["write -P 0x21 2M 64k"]);
        qemu_io_if_installed(&d, "s", &["read -P 0x21 2M 64k"]);
    }
    identical(&d, "p", "s");
    // Hosts get the secondary read-only while paired.
    assert!(read_only(&d, "s") && !read_only(&d, "p"));
    write_refused(&d, "s");
    // Nothing to resync in state pair.
    assert_error(&post(&d, "/v1/pairs/s/resync", json!({})), 409, "busy");
    assert_error(
        &post(&d, "/v1/pairs/s/resync", json!({"reverse": true})),
        409,
        "busy",
    );

    // Split: the secondary keeps the image of the split instant and becomes writable.
    let (s, p) = post(&d, "/v1/pairs/s/split", json!({}));
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["state"], "split");
    assert_time(&p["split"]);
    assert_error(&post(&d, "/v1/pairs/s/split", json!({})), 409, "busy");
    assert!(!read_only(&d, "s"));
    if data {
        qemu_io_if_installed(&d, "s", &["write -P 0x31 4M 64k"]);
        qemu_io_if_installed(&d, "p", &["write -P 0x41 0 64k"]);
        qemu_io_if_installed(
            &d,
            "s",
            &[
                "read -P 0x11 0 64k",
                "read -P 0x31 4M 64k",
                "read -P 0x21 2M 64k",
            ],
        );
    }

    // Resync (no body: forward): what changed on either side since the split, primary to
    // secondary; mirroring again afterwards.
    let (s, r) = call(&d, "POST", "/v1/pairs/s/resync", None, None);
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["pair"]["state"], "resync", "{r}");
    let job = job_id(&r);
    assert_eq!(r["pair"]["job"], job);
    let j = wait_job(&d, job);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["kind"], "pair-resync");
    let p = pair(&d, "s");
    assert_eq!(p["state"], "pair", "{p}");
    assert!(p["split"].is_null(), "{p}");
    assert!(read_only(&d, "s"));
    if data {
        qemu_io_if_installed(&d, "s", &["read -P 0x41 0 64k", "read -P 0 4M 64k"]);
    }
    identical(&d, "p", "s");

    // Reverse resync: the primary goes back to the secondary's image.
    let (s, p) = post(&d, "/v1/pairs/s/split", json!({}));
    assert_eq!((s, &p["state"]), (200, &json!("split")), "{p}");
    if data {
        qemu_io_if_installed(&d, "p", &["write -P 0x51 0 64k", "write -P 0x53 16M 64k"]);
        qemu_io_if_installed(&d, "s", &["write -P 0x52 8M 64k"]);
    }
    let (s, r) = post(&d, "/v1/pairs/s/resync", json!({"reverse": true}));
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["pair"]["state"], "reverse-resync", "{r}");
    let j = wait_job(&d, job_id(&r));
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["kind"], "pair-reverse-resync");
    assert_eq!(pair(&d, "s")["state"], "pair");
    if data {
        qemu_io_if_installed(
            &d,
            "p",
            &[
                "read -P 0x41 0 64k",
                "read -P 0x52 8M 64k",
                "read -P 0 16M 64k",
            ],
        );
    }
    identical(&d, "p", "s");

    // Delete: mirroring stops, both volumes stay and are free.
    assert_eq!(delete(&d, "/v1/pairs/s").0, 204);
    assert_error(&get(&d, "/v1/pairs/s"), 404, "not_found");
    assert_eq!(get(&d, "/v1/pairs").1, json!([]));
    assert!(!read_only(&d, "s") && !read_only(&d, "p"));
    assert_eq!(
        get(&d, "/v1/snapshots").1,
        json!([]),
        "tracking snapshots left"
    );
    if data {
        qemu_io_if_installed(&d, "p", &["write -P 0x61 0 64k"]);
        qemu_io_if_installed(&d, "s", &["read -P 0x41 0 64k", "write -P 0x62 0 64k"]);
    }
    assert_eq!(delete(&d, "/v1/volumes/s").0, 204);
    d.stop();
}

#[test]
fn pair_errors() {
    let d = Daemon::start_with_args(&[
        "--volume",
        "p=64M",
        "--volume",
        "s=64M",
        "--volume",
        "t=64M",
        "--volume",
        "u=64M",
        "--volume",
        "small=32M",
        "--volume",
        "snapped=64M",
    ]);
    let create = |body: Value| post(&d, "/v1/pairs", body);
    let raw = |body: &str| call(&d, "POST", "/v1/pairs", Some(body), None);

    // Unknown volumes; invalid: itself, a smaller secondary (and below, a pace of 0 or not a
    // byte rate).
    assert_refusals(
        create,
        &[
            (
                json!({"primary": "nope", "secondary": "s"}),
                404,
                "not_found",
            ),
            (
                json!({"primary": "p", "secondary": "nope"}),
                404,
                "not_found",
            ),
            (json!({"primary": "p", "secondary": "p"}), 422, "invalid"),
            (
                json!({"primary": "p", "secondary": "small"}),
                422,
                "invalid",
            ),
        ],
    );
    for pace in [json!(0), json!(-1), json!("100M"), json!(1.5), json!(null)] {
        let r = create(json!({"primary": "p", "secondary": "s", "pace": pace}));
        if pace.is_null() {
            // null is the same as leaving it out: no limit. Undo it for the next cases.
            assert_eq!(r.0, 201, "{:?}", r.1);
            wait_job(&d, job_id(&r.1));
            assert_eq!(delete(&d, "/v1/pairs/s").0, 204);
            continue;
        }
        assert_error(&r, 422, "invalid");
    }
    // Malformed bodies.
    assert_error(&raw("{not json"), 400, "invalid");
    assert_error(
        &raw(r#"{"primary": "p", "secondary": "s", "colour": "red"}"#),
        422,
        "invalid",
    );
    assert_error(&raw(r#"{"primary": "p"}"#), 422, "invalid");
    let (s, v) = call(&d, "POST", "/v1/pairs", None, None);
    assert!(s == 415 || s == 400, "{s} {v}");

    // Busy: a secondary with snapshots, or with a host connected.
    assert_eq!(
        post(&d, "/v1/volumes/snapped/snapshots", json!({"name": "x"})).0,
        201
    );
    assert_error(
        &create(json!({"primary": "p", "secondary": "snapped"})),
        409,
        "busy",
    );
    let host = crate::nbd::connect(&d.nbd, "t");
    let r = create(json!({"primary": "u", "secondary": "t"}));
    assert_error_mentions(&r, 409, "busy", "in use by");
    drop(host);

    // A pair whose copy is slow: the first 16 extents go at once, then the pace holds the
    // job for about 5 s, long enough to be refused things while it runs.
    if !qemu_io_if_installed(&d, "p", &["write -P 0x11 0 1M", "write -P 0x12 2M 64k"]) {
        d.stop();
        return;
    }
    let (s, created) = create(json!({"primary": "p", "secondary": "s", "pace": 200 * 1024}));
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["pair"]["pace_bytes_per_second"], 200 * 1024);
    let job = job_id(&created);
    // Already paired: as secondary, as primary, either side.
    for (primary, secondary) in [("u", "s"), ("p", "u"), ("s", "u"), ("u", "p")] {
        assert_error(
            &create(json!({"primary": primary, "secondary": secondary})),
            409,
            "busy",
        );
    }
    // Not in a state for it while copying.
    assert_error(&post(&d, "/v1/pairs/s/split", json!({})), 409, "busy");
    assert_error(&post(&d, "/v1/pairs/s/resync", json!({})), 409, "busy");
    let r = delete(&d, "/v1/pairs/s");
    assert_error_mentions(&r, 409, "busy", &format!("job {job}"));
    assert_eq!(get(&d, &format!("/v1/jobs/{job}")).1["state"], "running");
    // Cancelled, the copy leaves the pair in error, saying why; then it can be deleted.
    assert_eq!(
        post(&d, &format!("/v1/jobs/{job}/cancel"), json!({})).0,
        200
    );
    let j = wait_job(&d, job);
    assert_eq!(j["state"], "cancelled", "{j}");
    let p = pair(&d, "s");
    assert_eq!(p["state"], "error", "{p}");
    assert_eq!(p["reason"], "cancelled", "{p}");
    assert_eq!(p["job"], job);
    assert_error(
        &post(&d, "/v1/pairs/s/resync", json!({"reverse": true})),
        409,
        "busy",
    );
    assert_eq!(delete(&d, "/v1/pairs/s").0, 204);

    // Unknown pairs.
    assert_error(&get(&d, "/v1/pairs/nope"), 404, "not_found");
    assert_error(
        &post(&d, "/v1/pairs/nope/split", json!({})),
        404,
        "not_found",
    );
    assert_error(
        &post(&d, "/v1/pairs/nope/resync", json!({})),
        404,
        "not_found",
    );
    assert_error(&delete(&d, "/v1/pairs/nope"), 404, "not_found");

    // Resync bodies: malformed 400, wrong or unknown fields 422.
    let (s, created) = retry_while_refused("in use by", || {
        create(json!({"primary": "u", "secondary": "t"}))
    });
    assert_eq!(s, 201, "{created}");
    wait_job(&d, job_id(&created));
    assert_eq!(post(&d, "/v1/pairs/t/split", json!({})).0, 200);
    let resync = |body: &str| call(&d, "POST", "/v1/pairs/t/resync", Some(body), None);
    assert_error(&resync("{not json"), 400, "invalid");
    assert_error(&resync(r#"{"reverse": "yes"}"#), 422, "invalid");
    assert_error(
        &resync(r#"{"reverse": true, "force": true}"#),
        422,
        "invalid",
    );
    assert_eq!(pair(&d, "t")["state"], "split", "refusals changed nothing");
    let (s, r) = resync("{}");
    assert_eq!(s, 202, "{r}");
    wait_job(&d, job_id(&r));
    assert_eq!(pair(&d, "t")["state"], "pair");
    // The secondary is guarded while paired: not deletable, not resizable.
    assert_error(&delete(&d, "/v1/volumes/t"), 409, "busy");
    assert_error(
        &post(&d, "/v1/volumes/t/resize", json!({"size": 128 * M})),
        409,
        "busy",
    );
    d.stop();
}

#[test]
fn pairs_in_the_openapi_document() {
    let doc = served_openapi();
    assert_documented(
        &doc,
        &[
            (
                "/v1/pairs",
                "post",
                &["201", "400", "404", "409", "422", "503"][..],
            ),
            ("/v1/pairs", "get", &["200"][..]),
            ("/v1/pairs/{name}", "get", &["200", "404"][..]),
            ("/v1/pairs/{name}", "delete", &["204", "404", "409"][..]),
            ("/v1/pairs/{name}/split", "post", &["200", "404", "409"][..]),
            (
                "/v1/pairs/{name}/resync",
                "post",
                &["202", "400", "404", "409", "422"][..],
            ),
        ],
    );
    let schemas = &doc["components"]["schemas"];
    for name in [
        "Pair",
        "CreatePair",
        "CreatedPair",
        "ResyncPair",
        "ResyncStarted",
    ] {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
    assert_eq!(
        schemas["CreatePair"]["required"],
        json!(["primary", "secondary"])
    );
}

#[test]
fn backup_on_a_pair_secondary_and_the_resync_over_it() {
    let d = Daemon::start_with_args(&["--volume", "p=64M", "--volume", "s=64M"]);
    let data = qemu_io_if_installed(&d, "p", &["write -P 0x11 0 1M"]);
    let (s, created) = post(&d, "/v1/pairs", json!({"primary": "p", "secondary": "s"}));
    assert_eq!(s, 201, "{created}");
    wait_job(&d, job_id(&created));

    // The pair's secondary is the first target: a full copy, ready at once.
    let (s, targets) = get(&d, "/v1/volumes/p/backup-targets");
    assert_eq!(s, 200, "{targets}");
    assert_eq!(targets[0]["kind"], "pair-secondary", "{targets}");
    assert_eq!(targets[0]["volume"], "s", "{targets}");
    // A copy backup to it splits the pair at that instant.
    let (s, b) = post(&d, "/v1/backups", json!({"volumes": ["p"], "to": "s"}));
    assert_eq!(s, 201, "{b}");
    let backup = &b["backups"][0];
    let id = backup["id"].as_u64().unwrap();
    assert_eq!(
        (&backup["method"], &backup["status"]),
        (&json!("copy"), &json!("complete")),
        "{b}"
    );
    assert_eq!(backup["destination"]["volume"], "s");
    for j in b["jobs"].as_array().unwrap() {
        assert_eq!(wait_job(&d, j.as_u64().unwrap())["state"], "succeeded");
    }
    let p = pair(&d, "s");
    assert_eq!(p["state"], "split", "{p}");
    // The backup keeps hosts off the split secondary.
    assert!(read_only(&d, "s"));
    write_refused(&d, "s");
    if data {
        qemu_io_if_installed(&d, "p", &["write -P 0x22 0 64k"]);
        qemu_io_if_installed(&d, "s", &["read -P 0x11 0 1M"]);
    }

    // A resync would overwrite the backup: refused, naming it, unless it is consumed.
    let r = post(&d, "/v1/pairs/s/resync", json!({}));
    assert_error(&r, 409, "busy");
    let message = r.1["error"]["message"].as_str().unwrap();
    assert!(message.contains(&id.to_string()), "{message}");
    assert_eq!(pair(&d, "s")["state"], "split");
    let (s, r) = post(&d, "/v1/pairs/s/resync", json!({"consume_backup": true}));
    assert_eq!(s, 202, "{r}");
    assert_eq!(wait_job(&d, job_id(&r))["state"], "succeeded");
    assert_eq!(pair(&d, "s")["state"], "pair");
    let (s, b) = get(&d, &format!("/v1/backups/{id}"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "consumed", "{b}");
    identical(&d, "p", "s");
    d.stop();
}
