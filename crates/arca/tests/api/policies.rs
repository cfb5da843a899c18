//! The backup-policy endpoints against a real daemon: create, list, show, update, pause,
//! resume, run now (a job), next, history, delete, the metrics, and every 400/404/409/422
//! answer.

use serde_json::{Value, json};

use crate::{
    Daemon, assert_documented, assert_error, assert_error_mentions, assert_refusals, call,
    create_volume, delete, get, openapi, post, wait_job,
};

const M: u64 = 1 << 20;

fn patch(d: &Daemon, path: &str, body: Value) -> (u16, Value) {
    call(d, "PATCH", path, Some(&body.to_string()), None)
}

#[test]
fn policies_every_endpoint_and_error() {
    let d = Daemon::start();
    create_volume(&d, "db-1", 16 * M);
    create_volume(&d, "web", 16 * M);
    let (s, p) = post(
        &d,
        "/v1/policies",
        json!({"name": "nightly", "volumes": ["db-*"], "snapshot": "02:00",
               "keep": {"last": 3, "daily": 7}, "verify": "sun 04:00",
               "verify_budget": 1 << 30, "meta": {"tier": "gold"}, "tz": "Europe/Berlin"}),
    );
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["label"], "nightly");
    assert_eq!(p["program"], "arca-policy/nightly");
    assert_eq!(p["matched_volumes"], json!(["db-1"]));
    assert_eq!(p["schedules"][0]["track"], "snapshot");
    assert_eq!(p["schedules"][0]["steps"], json!(["snapshot", "prune"]));
    assert_eq!(p["schedules"][1]["steps"], json!(["verify"]));
    assert!(p["schedules"][0]["next"].is_string(), "{p}");
    assert_eq!(p["paused"], false);

    // Next: in UTC and in the zone, five by default.
    let (s, n) = get(&d, "/v1/policies/nightly/next?count=3");
    assert_eq!(s, 200, "{n}");
    let local = n["schedules"][0]["local"].as_array().unwrap();
    assert_eq!(local.len(), 3);
    assert!(local[0].as_str().unwrap().contains("T02:00:00+0"), "{n}");

    // Run now (a job), then the history and metrics show it.
    let (s, started) = post(&d, "/v1/policies/nightly/run", json!({}));
    assert_eq!(s, 202, "{started}");
    let job = wait_job(&d, started["job"].as_u64().unwrap());
    assert_eq!(job["kind"], "policy-run");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["policy"], "nightly");
    let (s, h) = get(&d, "/v1/policies/nightly/history");
    assert_eq!(s, 200);
    assert_eq!(h[0]["trigger"], "manual");
    assert_eq!(h[0]["result"], "succeeded", "{h}");
    assert_eq!(
        h[0]["planned"],
        json!(["snapshot", "prune", "verify"]),
        "{h}"
    );
    let (_, backups) = get(&d, "/v1/backups?label=nightly");
    assert_eq!(
        backups["backups"].as_array().map(Vec::len),
        Some(1),
        "{backups}"
    );
    let (_, text) = get(&d, "/metrics");
    let text = text.as_str().unwrap();
    assert!(
        text.contains("arca_policy_runs_total{policy=\"nightly\",result=\"succeeded\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("arca_policy_last_success_timestamp_seconds{policy=\"nightly\"} 1"));

    // A run that fails: its job fails with the reason, the history and metrics say so.
    let (s, _) = patch(
        &d,
        "/v1/policies/nightly",
        json!({"volumes": ["nothing-*"]}),
    );
    assert_eq!(s, 200);
    let (_, started) = post(&d, "/v1/policies/nightly/run", json!({"step": "snapshot"}));
    let job = wait_job(&d, started["job"].as_u64().unwrap());
    assert_eq!(job["state"], "failed");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("no volume matches nothing-*"),
        "{job}"
    );
    let (_, text) = get(&d, "/metrics");
    assert!(
        text.as_str()
            .unwrap()
            .contains("arca_policy_runs_total{policy=\"nightly\",result=\"failed\"} 1\n")
    );

    // Update: a calendar removed with "none", the budget with 0.
    let (s, p) = patch(
        &d,
        "/v1/policies/nightly",
        json!({"verify": "none", "verify_budget": 0, "volumes": ["db-*"]}),
    );
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["verify"], Value::Null);
    assert_eq!(p["verify_budget"], Value::Null);
    assert_eq!(p["schedules"].as_array().unwrap().len(), 1);

    // Pause: nothing runs, and a run is refused saying so.
    let (s, p) = post(&d, "/v1/policies/nightly/pause", json!({}));
    assert_eq!((s, &p["paused"]), (200, &json!(true)));
    assert_eq!(p["schedules"][0]["next"], Value::Null);
    let r = post(&d, "/v1/policies/nightly/run", json!({}));
    assert_error_mentions(&r, 409, "busy", "paused");
    let (_, n) = get(&d, "/v1/policies/nightly/next");
    assert_eq!(n["paused"], true);
    let (s, p) = post(&d, "/v1/policies/nightly/resume", json!({}));
    assert_eq!((s, &p["paused"]), (200, &json!(false)));

    let (s, list) = get(&d, "/v1/policies");
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Refusals.
    assert_refusals(
        |b| post(&d, "/v1/policies", b),
        &[
            (
                json!({"name": "nightly", "volumes": ["a"], "snapshot": "daily"}),
                409,
                "conflict",
            ),
            (json!({"name": "x", "volumes": ["a"]}), 422, "invalid"),
            (
                json!({"name": "x", "volumes": [], "snapshot": "daily"}),
                422,
                "invalid",
            ),
            (
                json!({"name": "x", "volumes": ["a"], "snapshot": "25:00"}),
                422,
                "invalid",
            ),
            (
                json!({"name": "x", "volumes": ["a"], "snapshot": "daily", "tz": "Mars/Base"}),
                422,
                "invalid",
            ),
            (
                json!({"name": "../x", "volumes": ["a"], "snapshot": "daily"}),
                422,
                "invalid",
            ),
            (
                json!({"name": "x", "volumes": ["a"], "snapshot": "daily", "verify_budget": 0}),
                422,
                "invalid",
            ),
            (
                json!({"name": "x", "volumes": ["a"], "snapshot": "daily", "bogus": 1}),
                422,
                "invalid",
            ),
            (json!({"name": "x"}), 422, "invalid"),
        ],
    );
    let r = post(
        &d,
        "/v1/policies",
        json!({"name": "x", "volumes": ["a"], "snapshot": "25:00"}),
    );
    assert_error_mentions(&r, 422, "invalid", "hour 25 is outside 0..23");
    let r = post(&d, "/v1/policies/nightly/run", json!({"step": "copy"}));
    assert_error(&r, 422, "invalid");
    assert_error(&get(&d, "/v1/policies/none"), 404, "not_found");
    assert_error(&get(&d, "/v1/policies/none/history"), 404, "not_found");
    assert_error(
        &get(&d, "/v1/policies/nightly/next?count=0"),
        422,
        "invalid",
    );
    assert_error(
        &get(&d, "/v1/policies/nightly/history?limit=x"),
        400,
        "invalid",
    );
    assert_error(
        &patch(&d, "/v1/policies/nightly", json!({"snapshot": "never"})),
        422,
        "invalid",
    );

    // The copy step: a registered vault, its calendar and vault keep rules; "none" removes
    // all three.
    let url = format!("file://{}", d.dir().join("off").display());
    let (s, v) = post(&d, "/v1/vaults", json!({"name": "off", "url": url}));
    assert_eq!(s, 201, "{v}");
    let r = post(
        &d,
        "/v1/policies",
        json!({"name": "y", "volumes": ["db-*"], "copy_to": "nope", "copy": "daily"}),
    );
    assert_error_mentions(&r, 422, "invalid", "cannot copy to vault nope");
    let r = post(
        &d,
        "/v1/policies",
        json!({"name": "y", "volumes": ["db-*"], "verify": "weekly", "vault_keep": {"last": 1}}),
    );
    assert_error_mentions(&r, 422, "invalid", "vault keep rules need a vault");
    let (s, p) = post(
        &d,
        "/v1/policies",
        json!({"name": "offsite", "volumes": ["db-*"], "verify": "weekly", "copy_to": "off",
               "copy": "daily", "vault_keep": {"last": 2}}),
    );
    assert_eq!(s, 201, "{p}");
    assert_eq!(
        (&p["copy_to"], &p["copy"]),
        (&json!("off"), &json!("daily"))
    );
    assert_eq!(p["vault_keep"], json!({"last": 2}));
    assert_eq!(p["schedules"][0]["track"], "copy");
    assert_eq!(p["schedules"][0]["steps"], json!(["copy", "vault-prune"]));
    let (_, text) = get(&d, "/metrics");
    assert!(
        text.as_str().unwrap().contains(
            "arca_policy_calendar_last_success_timestamp_seconds{policy=\"offsite\",\
             calendar=\"copy\"} 0\n"
        ),
        "{text}"
    );
    let (_, started) = post(&d, "/v1/policies/offsite/run", json!({"step": "copy"}));
    let job = wait_job(&d, started["job"].as_u64().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let (_, h) = get(&d, "/v1/policies/offsite/history");
    assert_eq!(h[0]["steps"][0]["step"], "copy");
    assert_eq!(
        h[0]["steps"][0]["summary"],
        "nothing new to copy to vault off"
    );
    let (s, p) = patch(&d, "/v1/policies/offsite", json!({"copy": "none"}));
    assert_eq!(s, 200, "{p}");
    assert_eq!((&p["copy_to"], &p["copy"]), (&Value::Null, &Value::Null));
    assert_eq!(p["vault_keep"], json!({}));
    let (s, _) = delete(&d, "/v1/policies/offsite");
    assert_eq!(s, 204);

    // Delete: the policy and its history go, its backups stay.
    let (s, _) = delete(&d, "/v1/policies/nightly");
    assert_eq!(s, 204);
    assert_error(&get(&d, "/v1/policies/nightly"), 404, "not_found");
    let (_, backups) = get(&d, "/v1/backups?label=nightly");
    assert_eq!(backups["backups"].as_array().map(Vec::len), Some(1));

    let doc = openapi(&d);
    assert_documented(
        &doc,
        &[
            ("/v1/policies", "post", &["201", "409", "422"]),
            ("/v1/policies", "get", &["200"]),
            ("/v1/policies/{name}", "get", &["200", "404"]),
            ("/v1/policies/{name}", "patch", &["200", "404", "422"]),
            ("/v1/policies/{name}", "delete", &["204", "404", "409"]),
            ("/v1/policies/{name}/pause", "post", &["200", "404"]),
            ("/v1/policies/{name}/resume", "post", &["200", "404"]),
            (
                "/v1/policies/{name}/run",
                "post",
                &["202", "404", "409", "422"],
            ),
            ("/v1/policies/{name}/next", "get", &["200", "404", "422"]),
            ("/v1/policies/{name}/history", "get", &["200", "404"]),
        ],
    );
    d.stop();
}
