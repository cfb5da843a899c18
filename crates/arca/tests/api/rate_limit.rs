//! The per-token request rate limit: a burst past it gets 429 with Retry-After and the usual
//! error body, other tokens keep their own allowance, requests without a valid token are
//! limited by address, and refusals are counted in /metrics.
//!
//! The daemon here refills one request per 100 s, so nothing refills while the test runs and
//! no assertion depends on timing.

use serde_json::{Value, json};

use crate::call;
use crate::common::daemon::{Daemon, Serve};
use crate::common::http::{agent, request};

const ADMIN: &str = "bootstrap-token-for-rate-tests-0123";
const BURST: usize = 5;

/// GET `path` with `token`: status, Retry-After, body.
fn get_with(d: &Daemon, path: &str, token: &str) -> (u16, Option<String>, Value) {
    let auth = format!("Bearer {token}");
    let (status, headers, text) = request(
        &agent(None),
        "GET",
        &format!("{}{path}", d.api),
        &[("Authorization", &auth)],
        None,
    );
    let retry = headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn create_token(d: &Daemon, name: &str) -> String {
    let body = json!({"name": name, "role": "read-only"}).to_string();
    let (s, v) = call(d, "POST", "/v1/tokens", Some(&body), Some(ADMIN));
    assert_eq!(s, 201, "{v}");
    v["secret"].as_str().unwrap().to_string()
}

#[test]
fn a_burst_past_the_limit_gets_429_and_other_tokens_are_not_affected() {
    let burst = BURST.to_string();
    let d = Serve::new()
        .token(ADMIN)
        .args(&["--api-rate-limit", "0.01", "--api-rate-burst", &burst])
        .start();
    let (a, b) = (create_token(&d, "a"), create_token(&d, "b"));
    for _ in 0..BURST {
        let (s, _, v) = get_with(&d, "/v1/pool", &a);
        assert_eq!(s, 200, "{v}");
    }
    let (s, retry, v) = get_with(&d, "/v1/pool", &a);
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("retry in"),
        "{v}"
    );
    // One request refills in 100 s; Retry-After says so in whole seconds.
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((90..=100).contains(&retry), "Retry-After {retry}");

    // Token b has its own bucket, and so has the admin token.
    let (s, _, v) = get_with(&d, "/v1/pool", &b);
    assert_eq!(s, 200, "{v}");

    // Without a valid token, the limit is per address: 401 until the burst is spent, then 429
    // (so guessing tokens is limited too).
    for _ in 0..BURST {
        assert_eq!(get_with(&d, "/v1/pool", "not-a-token").0, 401);
    }
    assert_eq!(get_with(&d, "/v1/pool", "not-a-token").0, 429);
    // A valid token from the same address is not held back by the guesses.
    let (s, _, v) = get_with(&d, "/v1/pool", &b);
    assert_eq!(s, 200, "{v}");

    let (s, _, metrics) = get_with(&d, "/metrics", ADMIN);
    assert_eq!(s, 200);
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("arca_api_rate_limited_total 2\n"),
        "{metrics}"
    );
}
