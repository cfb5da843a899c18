//! The record of pool and catalog checks (`GET /v1/checks`): each check run through the API is
//! recorded with the token that ran it and what it found, in the pool's metadata, so it
//! survives a restart; each kind keeps its last ten.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::daemon::{Daemon, Serve};
use crate::{assert_documented, call};

const BOOTSTRAP: &str = "bootstrap-token-for-check-tests-0001";

/// A call with `token` that must succeed; its JSON.
fn ok(d: &Daemon, method: &str, path: &str, token: &str) -> Value {
    let body = (method == "POST").then_some("{}");
    let (s, v) = call(d, method, path, body, Some(token));
    assert!(s < 300, "{method} {path}: {s} {v}");
    v
}

fn new_token(d: &Daemon, name: &str, role: &str) -> String {
    let body = json!({"name": name, "role": role}).to_string();
    let (s, v) = call(d, "POST", "/v1/tokens", Some(&body), Some(BOOTSTRAP));
    assert_eq!(s, 201, "{v}");
    v["secret"].as_str().unwrap().to_string()
}

/// Runs a pool check as `token` and waits for its job; the job's id.
fn pool_check(d: &Daemon, token: &str) -> u64 {
    let id = ok(d, "POST", "/v1/pool/check", token)["id"]
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ok(d, "GET", &format!("/v1/jobs/{id}"), token)["state"] == "running" {
        assert!(Instant::now() < deadline, "pool check {id} hangs");
        std::thread::sleep(Duration::from_millis(20));
    }
    id
}

#[test]
fn checks_are_recorded_with_who_ran_them_bounded_and_kept_across_a_restart() {
    let d = Serve::new().token(BOOTSTRAP).volumes(&["v=64M"]).start();
    assert_documented(&openapi_with_token(&d), &[("/v1/checks", "get", &["200"])]);
    let viewer = new_token(&d, "viewer", "read-only");
    let ops = new_token(&d, "ops", "operator");
    assert_eq!(
        ok(&d, "GET", "/v1/checks", &viewer),
        json!({"pool": [], "catalog": []})
    );

    let job = pool_check(&d, &ops);
    // A read-only token may check the catalog; its check is recorded under its name.
    let report = ok(&d, "GET", "/v1/catalog/check", &viewer);
    assert_eq!(report["clean"], true, "{report}");
    let checks = ok(&d, "GET", "/v1/checks", &viewer);
    let pool = &checks["pool"][0];
    assert_eq!(
        (&pool["kind"], &pool["by"], &pool["outcome"], &pool["job"]),
        (&json!("pool"), &json!("ops"), &json!("clean"), &json!(job)),
        "{checks}"
    );
    assert_eq!(
        (&pool["problems"], &pool["first_problems"], &pool["error"]),
        (&json!(0), &json!([]), &Value::Null)
    );
    assert!(pool["duration_ms"].is_u64(), "{pool}");
    assert!(
        pool["started"].as_str().unwrap() <= pool["finished"].as_str().unwrap(),
        "{pool}"
    );
    let catalog = &checks["catalog"][0];
    assert_eq!(
        (
            &catalog["kind"],
            &catalog["by"],
            &catalog["outcome"],
            &catalog["job"]
        ),
        (
            &json!("catalog"),
            &json!("viewer"),
            &json!("clean"),
            &Value::Null
        ),
        "{checks}"
    );

    // Bounded: the last ten of each kind, newest first.
    for _ in 0..10 {
        ok(&d, "GET", "/v1/catalog/check", BOOTSTRAP);
    }
    let checks = ok(&d, "GET", "/v1/checks", &viewer);
    let by: Vec<&str> = checks["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["by"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["bootstrap"; 10], "{checks}");
    assert_eq!(checks["pool"].as_array().unwrap().len(), 1);

    // Kept in the pool's metadata: the same record after a restart, and more added to it.
    let d = d.restart();
    assert_eq!(ok(&d, "GET", "/v1/checks", BOOTSTRAP), checks);
    let second = pool_check(&d, BOOTSTRAP);
    let after = ok(&d, "GET", "/v1/checks", BOOTSTRAP);
    let runs: Vec<(&Value, &Value)> = after["pool"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (&c["by"], &c["job"]))
        .collect();
    assert_eq!(
        runs,
        [
            (&json!("bootstrap"), &json!(second)),
            (&json!("ops"), &json!(job))
        ],
        "{after}"
    );
}

fn openapi_with_token(d: &Daemon) -> Value {
    let (s, doc) = call(d, "GET", "/v1/openapi.json", None, Some(BOOTSTRAP));
    assert_eq!(s, 200, "{doc}");
    doc
}
