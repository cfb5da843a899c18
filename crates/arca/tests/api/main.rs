//! API integration tests: a real `arca serve` on ephemeral loopback ports, every endpoint, each
//! error status, bad input, authentication and metrics.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "../common/mod.rs"]
mod common;

mod access;
mod backups;
mod checks;
mod pairs;
mod policies;
mod rate_limit;
mod tokens;
mod vaults;
mod volumes_in_use;

use common::daemon::{Daemon, Serve};
use common::json::strs;
use common::nbd;
use common::qemu::qemu_io_if_installed;

/// (status, body as JSON or as a string value)
fn call(
    d: &Daemon,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let url = format!("{}{path}", d.api);
    let agent = common::http::agent(None);
    let body = body.map(str::to_string);
    let (status, _, text) = common::http::request(&agent, method, &url, &headers, body);
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

fn get(d: &Daemon, path: &str) -> (u16, Value) {
    call(d, "GET", path, None, None)
}

fn post(d: &Daemon, path: &str, body: Value) -> (u16, Value) {
    call(d, "POST", path, Some(&body.to_string()), None)
}

fn delete(d: &Daemon, path: &str) -> (u16, Value) {
    call(d, "DELETE", path, None, None)
}

/// Asserts the error shape and code.
fn assert_error(r: &(u16, Value), status: u16, code: &str) {
    assert_eq!(r.0, status, "{:?}", r.1);
    assert_eq!(r.1["error"]["code"], code, "{:?}", r.1);
    assert!(
        r.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{:?}",
        r.1
    );
}

/// Asserts the error shape and code, and that the message mentions `text`.
fn assert_error_mentions(r: &(u16, Value), status: u16, code: &str, text: &str) {
    assert_error(r, status, code);
    let message = r.1["error"]["message"].as_str().unwrap();
    assert!(message.contains(text), "{text:?} not in {:?}", r.1);
}

/// The OpenAPI document the daemon serves.
fn openapi(d: &Daemon) -> Value {
    let (s, doc) = get(d, "/v1/openapi.json");
    assert_eq!(s, 200);
    doc
}

/// Repeats a request for up to 10 s while it is refused (409) with a message saying `says`: a
/// host that just left can be listed as connected for a moment.
fn retry_while_refused(says: &str, mut f: impl FnMut() -> (u16, Value)) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = f();
        let refused = r.0 == 409
            && r.1["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says));
        if !refused || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The OpenAPI document of a daemon started for it (and stopped).
fn served_openapi() -> Value {
    let d = Daemon::start();
    let doc = openapi(&d);
    d.stop();
    doc
}

/// The names of the parameters of `method path` in the OpenAPI document `doc`.
fn param_names<'a>(doc: &'a Value, path: &str, method: &str) -> Vec<&'a str> {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect()
}

/// Each (path, method) is in the document with each of its statuses.
/// None of `secrets` in the daemon's log so far, in /metrics or in the OpenAPI document
/// (its examples included), fetched with `token`.
fn assert_secrets_hidden(d: &Daemon, token: Option<&str>, secrets: &[&str]) {
    let texts = [
        ("the daemon's log", d.log()),
        (
            "/metrics",
            call(d, "GET", "/metrics", None, token).1.to_string(),
        ),
        (
            "the OpenAPI document",
            call(d, "GET", "/v1/openapi.json", None, token)
                .1
                .to_string(),
        ),
    ];
    for (what, text) in &texts {
        assert!(text.len() > 100, "{what} is nearly empty: {text}");
        for s in secrets {
            assert!(!text.contains(s), "{what} shows a secret ({s}): {text}");
        }
    }
}

fn assert_documented(doc: &Value, ops: &[(&str, &str, &[&str])]) {
    for (path, method, statuses) in ops {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        for st in *statuses {
            assert!(
                op["responses"][st].is_object(),
                "{method} {path}: status {st} is not documented"
            );
        }
    }
}

/// Each body sent to `send` is refused with its status and error code.
fn assert_refusals(send: impl Fn(Value) -> (u16, Value), cases: &[(Value, u16, &str)]) {
    for (body, status, code) in cases {
        let r = send(body.clone());
        assert_eq!(r.0, *status, "{body} -> {:?}", r.1);
        assert_error(&r, *status, code);
    }
}

/// Creates a volume, which must succeed.
fn create_volume(d: &Daemon, name: &str, size: u64) {
    let r = post(d, "/v1/volumes", json!({"name": name, "size": size}));
    assert_eq!(r.0, 201, "{:?}", r.1);
}

const G: u64 = 1 << 30;

#[test]
fn volumes_every_endpoint_and_error() {
    let d = Daemon::start();
    let (s, v) = post(&d, "/v1/volumes", json!({"name": "db", "size": 10 * G}));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["name"], "db");
    assert_eq!(v["size"], 10 * G);
    assert_eq!(v["used"], 0);
    assert!(v["created"].as_str().unwrap().ends_with('Z'));
    assert_error(
        &post(&d, "/v1/volumes", json!({"name": "db", "size": G})),
        409,
        "conflict",
    );
    assert_eq!(get(&d, "/v1/volumes").1.as_array().unwrap().len(), 1);
    assert_eq!(get(&d, "/v1/volumes/db").1["size"], 10 * G);
    assert_error(&get(&d, "/v1/volumes/nope"), 404, "not_found");
    let (s, v) = post(&d, "/v1/volumes/db/resize", json!({"size": 20 * G}));
    assert_eq!((s, &v["size"]), (200, &json!(20 * G)));
    assert_error(
        &post(&d, "/v1/volumes/db/resize", json!({"size": G})),
        422,
        "invalid",
    );
    let (s, v) = post(&d, "/v1/volumes/db/rename", json!({"name": "db2"}));
    assert_eq!((s, &v["name"]), (200, &json!("db2")));
    assert_error(&get(&d, "/v1/volumes/db"), 404, "not_found");
    // Snapshots block a plain delete.
    assert_eq!(
        post(&d, "/v1/volumes/db2/snapshots", json!({"name": "s1"})).0,
        201
    );
    assert_error(&delete(&d, "/v1/volumes/db2"), 409, "busy");
    assert_eq!(delete(&d, "/v1/volumes/db2?with_snapshots=true").0, 204);
    assert_eq!(get(&d, "/v1/volumes").1, json!([]));
    d.stop();
}

#[test]
fn snapshots_clones_and_exports() {
    let d = Daemon::start();
    create_volume(&d, "v", G);
    let (s, snap) = post(&d, "/v1/volumes/v/snapshots", json!({"name": "daily"}));
    assert_eq!(s, 201, "{snap}");
    assert_eq!(
        (&snap["volume"], &snap["name"]),
        (&json!("v"), &json!("daily"))
    );
    // Without a body (or a name) the snapshot is named after the time.
    let (s, auto) = call(&d, "POST", "/v1/volumes/v/snapshots", None, None);
    assert_eq!(s, 201, "{auto}");
    assert!(
        auto["name"].as_str().unwrap().starts_with("snap-"),
        "{auto}"
    );
    assert_error(
        &post(&d, "/v1/volumes/v/snapshots", json!({"name": "daily"})),
        409,
        "conflict",
    );
    assert_error(
        &post(&d, "/v1/volumes/nope/snapshots", json!({})),
        404,
        "not_found",
    );
    assert_eq!(
        get(&d, "/v1/snapshots?volume=v")
            .1
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(get(&d, "/v1/snapshots").1.as_array().unwrap().len(), 2);
    assert_error(&get(&d, "/v1/snapshots?volume=nope"), 404, "not_found");
    assert_eq!(get(&d, "/v1/volumes/v/snapshots/daily").1["size"], G);
    assert_error(&get(&d, "/v1/volumes/v/snapshots/nope"), 404, "not_found");
    let (s, c) = post(
        &d,
        "/v1/volumes/v/snapshots/daily/clone",
        json!({"name": "c"}),
    );
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["origin"], json!({"volume": "v", "snapshot": "daily"}));
    assert_error(
        &post(
            &d,
            "/v1/volumes/v/snapshots/daily/clone",
            json!({"name": "c"}),
        ),
        409,
        "conflict",
    );
    assert_error(&delete(&d, "/v1/volumes/v/snapshots/daily"), 409, "busy");
    let exports = get(&d, "/v1/exports").1;
    let names = strs(&exports, "name");
    assert!(
        names.contains(&"v") && names.contains(&"v@daily") && names.contains(&"c"),
        "{exports}"
    );
    let ro = exports
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "v@daily")
        .unwrap();
    assert_eq!(ro["read_only"], true);
    assert_eq!(ro["uri"], format!("nbd://{}/v@daily", d.nbd));
    assert_eq!(delete(&d, "/v1/volumes/c").0, 204);
    assert_eq!(delete(&d, "/v1/volumes/v/snapshots/daily").0, 204);
    assert_error(
        &delete(&d, "/v1/volumes/v/snapshots/daily"),
        404,
        "not_found",
    );
    d.stop();
}

fn wait_job(d: &Daemon, id: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, j) = get(d, &format!("/v1/jobs/{id}"));
        assert_eq!(s, 200, "{j}");
        if j["state"] != "running" {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pool_status_check_job_and_job_errors() {
    let d = Daemon::start_with_args(&["--volume", "v=1G"]);
    let (s, p) = get(&d, "/v1/pool");
    assert_eq!(s, 200);
    assert_eq!(p["volumes"], 1);
    assert_eq!(p["devices"].as_array().unwrap().len(), 1);
    assert!(p["capacity"].as_u64().unwrap() > 0);
    let (s, j) = post(&d, "/v1/pool/check", json!({}));
    assert_eq!(s, 202, "{j}");
    assert_eq!(j["kind"], "pool-check");
    let id = j["id"].as_u64().unwrap();
    let done = wait_job(&d, id);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["clean"], true, "{done}");
    assert_eq!(done["result"]["problems"], json!([]));
    assert!(
        get(&d, "/v1/jobs")
            .1
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id)
    );
    assert_error(
        &post(&d, &format!("/v1/jobs/{id}/cancel"), json!({})),
        409,
        "conflict",
    );
    assert_error(&get(&d, "/v1/jobs/999"), 404, "not_found");
    assert_error(
        &post(&d, "/v1/jobs/999/cancel", json!({})),
        404,
        "not_found",
    );
    assert_error(&get(&d, "/v1/jobs/notanumber"), 400, "invalid");
    d.stop();
}

#[test]
fn bad_input_gets_4xx_and_changes_nothing() {
    let d = Daemon::start();
    let raw = |body: &str| call(&d, "POST", "/v1/volumes", Some(body), None);
    assert_error(&raw("{not json"), 400, "invalid");
    assert_error(&raw(r#"{"name": "v", "size": "big"}"#), 422, "invalid");
    assert_error(&raw(r#"{"name": "v", "size": -1}"#), 422, "invalid");
    assert_error(&raw(r#"{"name": "v"}"#), 422, "invalid");
    assert_error(
        &raw(r#"{"name": "v", "size": 1024, "colour": "red"}"#),
        422,
        "invalid",
    );
    assert_error(
        &raw(r#"{"name": "bad name", "size": 1024}"#),
        422,
        "invalid",
    );
    assert_error(&raw(r#"{"name": "v", "size": 0}"#), 422, "invalid");
    assert_error(&raw(r#"{"name": "v", "size": 1000}"#), 422, "invalid");
    assert_error(
        &raw(r#"{"name": "v", "size": 1152921504606846976}"#),
        422,
        "invalid",
    );
    assert_error(
        &raw(r#"{"name": "v", "size": 1024, "device": 7}"#),
        422,
        "invalid",
    );
    let huge = format!(r#"{{"name": "{}", "size": 1024}}"#, "x".repeat(100_000));
    assert_error(&raw(&huge), 413, "too_large");
    let (s, v) = call(&d, "POST", "/v1/volumes", None, None);
    assert!(s == 415 || s == 400, "{s} {v}");
    assert_error(&get(&d, "/v1/nothing"), 404, "not_found");
    assert_error(
        &call(&d, "PUT", "/v1/volumes", Some("{}"), None),
        405,
        "invalid",
    );
    // Nothing was created, and the daemon still serves.
    assert_eq!(get(&d, "/v1/volumes").1, json!([]));
    assert_eq!(get(&d, "/v1/pool").0, 200);
    d.stop();
}

#[test]
fn token_is_required_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let d = Daemon::start_with_args(&["--token-file", token_file.to_str().unwrap()]);
    let r = call(&d, "GET", "/v1/pool", None, None);
    assert_error(&r, 401, "unauthorized");
    assert_error(
        &call(&d, "GET", "/v1/pool", None, Some("wrong")),
        401,
        "unauthorized",
    );
    assert_eq!(call(&d, "GET", "/v1/pool", None, Some("s3cret")).0, 200);
    d.stop();
    let d = Serve::new().env("ARCA_TOKEN", "fromenv").start();
    assert_error(
        &call(&d, "GET", "/v1/volumes", None, None),
        401,
        "unauthorized",
    );
    assert_eq!(call(&d, "GET", "/v1/volumes", None, Some("fromenv")).0, 200);
    d.stop();
}

#[test]
fn device_files_and_pool_directory_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let dir = tempfile::tempdir().unwrap();
    let spare = dir.path().join("spare.img");
    for extra in [
        vec![],
        vec!["--device", spare.to_str().unwrap(), "--create"],
    ] {
        Serve::new()
            .pool_dir(&dir.path().join("pool"))
            .args(&extra)
            .umask(0)
            .start()
            .stop();
    }
    let pool = dir.path().join("pool");
    assert_eq!(mode(&pool), 0o700, "the pool directory");
    assert_eq!(
        mode(&pool.join("device-0.img")),
        0o600,
        "the embedded pool's device"
    );
    assert_eq!(mode(&spare), 0o600, "a device made by --create");
}

#[test]
fn non_loopback_api_without_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::daemon::arca_cmd()
        .arg("serve")
        .arg("--pool")
        .arg(dir.path().join("pool"))
        .args(["--size", "1G", "--nbd", "127.0.0.1:0", "--api", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a token"), "{err}");
    // Refused before touching the pool.
    assert!(!Path::new(&dir.path().join("pool")).exists());
}

#[test]
fn openapi_document_and_metrics() {
    let d = Daemon::start_with_args(&["--volume", "m=64M"]);
    let (s, doc) = get(&d, "/v1/openapi.json");
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    for p in [
        "/v1/volumes",
        "/v1/volumes/{name}",
        "/v1/pool/check",
        "/v1/jobs/{id}/cancel",
    ] {
        assert!(doc["paths"][p].is_object(), "missing {p}");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // Every parameter is where the server reads it: a path parameter names a segment of its
    // path, and the query ones (with_snapshots, force, volume) are in the query.
    let mut query = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                match p["in"].as_str().unwrap() {
                    "path" => assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: path parameter {name} is no segment of the path"
                    ),
                    "query" => query.push(format!("{method} {path} {name}")),
                    other => panic!("{method} {path}: {name} in {other}"),
                }
            }
        }
    }
    for q in [
        "delete /v1/volumes/{name} with_snapshots",
        "delete /v1/volumes/{name} force",
        "get /v1/snapshots volume",
        "delete /v1/backups/{id} force",
    ] {
        assert!(query.contains(&q.to_string()), "{q} not in {query:?}");
    }
    // One NBD write through a real client shows up per volume.
    let qemu = qemu_io_if_installed(&d, "m", &["write -P 7 0 4096"]);
    let (s, text) = get(&d, "/metrics");
    assert_eq!(s, 200);
    let text = text.as_str().unwrap().to_string();
    assert!(text.contains("arca_pool_capacity_bytes "), "{text}");
    assert!(text.contains("# TYPE arca_volume_latency_seconds histogram"));
    if qemu {
        assert!(
            text.contains("arca_volume_operations_total{volume=\"m\",op=\"write\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("arca_volume_bytes_total{volume=\"m\",op=\"write\"} 4096\n"),
            "{text}"
        );
        assert!(text.contains("arca_volume_latency_seconds_count{volume=\"m\",op=\"write\"} 1\n"));
    }
    d.stop();
}
