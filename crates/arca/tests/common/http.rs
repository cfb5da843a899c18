//! Plain HTTP requests to the daemon under test, for the api and console harnesses: every
//! status comes back as a value (an error status is what many tests assert).

use std::io::Read;
use std::time::Duration;

/// A client that returns error statuses instead of failing on them; `timeout` bounds a whole
/// request (None: unbounded).
pub fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .build()
        .into()
}

/// `method` on `url` with `headers` and, when given, a JSON `body`: (status, headers, body text).
pub fn request(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (u16, ureq::http::HeaderMap, String) {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = match body {
        Some(b) => agent.run(
            req.header("Content-Type", "application/json")
                .body(b)
                .unwrap(),
        ),
        None => agent.run(req.body(()).unwrap()),
    }
    .expect("request reaches the daemon");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut text = String::new();
    resp.into_body()
        .into_reader()
        .read_to_string(&mut text)
        .unwrap();
    (status, headers, text)
}
