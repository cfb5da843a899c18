//! Web pages are kept out: a Host that does not name the API (DNS rebinding) and a foreign
//! Origin are refused, through raw HTTP requests that set those headers as a browser would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::{Daemon, G, assert_error, create_volume, get};

/// Sends one HTTP/1.1 request with exactly these headers (plus `Connection: close`) and an
/// optional JSON body; (status, body as JSON or as a string value).
fn raw(d: &Daemon, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let addr = d.api.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, text) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    assert!(
        !head.to_ascii_lowercase().contains("access-control-allow"),
        "CORS allowance sent: {head}"
    );
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let v = serde_json::from_str(text).unwrap_or(Value::String(text.to_string()));
    (status, v)
}

fn port(d: &Daemon) -> &str {
    d.api.rsplit(':').next().unwrap()
}

#[test]
fn token_less_api_refuses_hosts_not_naming_it_and_foreign_origins() {
    let d = Daemon::start();
    create_volume(&d, "v", G);
    let own = d.api.strip_prefix("http://").unwrap().to_string();
    let port = port(&d);

    // DNS rebinding: the page's own name in Host.
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
    ] {
        let r = raw(&d, "DELETE", "/v1/volumes/v", &[("Host", &host)], "");
        assert_error(&r, 421, "misdirected");
        let r = raw(&d, "GET", "/metrics", &[("Host", &host)], "");
        assert_error(&r, 421, "misdirected");
    }
    assert_error(&raw(&d, "GET", "/v1/pool", &[], ""), 421, "misdirected");
    assert_eq!(
        get(&d, "/v1/volumes/v").0,
        200,
        "the refused delete deleted"
    );

    // The names of this machine, and the bound address, are answered.
    for host in [
        own.clone(),
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("[::1]:{port}"),
    ] {
        let (s, v) = raw(&d, "GET", "/v1/volumes/v", &[("Host", &host)], "");
        assert_eq!((s, &v["name"]), (200, &json!("v")), "Host {host}");
    }

    // Cross-origin: refused whatever the method, even with a Host naming the API.
    let create = json!({"name": "w", "size": G}).to_string();
    for origin in ["http://evil.example", "null", "http://localhost:1"] {
        let headers = [("Host", own.as_str()), ("Origin", origin)];
        assert_error(
            &raw(&d, "POST", "/v1/volumes", &headers, &create),
            403,
            "forbidden",
        );
        assert_error(
            &raw(&d, "DELETE", "/v1/volumes/v", &headers, ""),
            403,
            "forbidden",
        );
        assert_error(&raw(&d, "GET", "/v1/pool", &headers, ""), 403, "forbidden");
    }
    assert_eq!(get(&d, "/v1/volumes").1.as_array().unwrap().len(), 1);
    // The API's own origin is no cross-origin request.
    let own_origin = format!("http://{own}");
    let headers = [("Host", own.as_str()), ("Origin", own_origin.as_str())];
    assert_eq!(raw(&d, "POST", "/v1/volumes", &headers, &create).0, 201);
    assert_eq!(raw(&d, "DELETE", "/v1/volumes/w", &headers, "").0, 204);
    d.stop();
}

#[test]
fn with_a_token_any_host_is_answered_but_foreign_origins_are_not() {
    let d = crate::Serve::new().env("ARCA_TOKEN", "s3cret").start();
    let bearer = ("Authorization", "Bearer s3cret");
    // A page cannot know the token, so a DNS name in Host is a legitimate remote client.
    let r = raw(
        &d,
        "GET",
        "/v1/pool",
        &[("Host", "array1.example:7410"), bearer],
        "",
    );
    assert_eq!(r.0, 200, "{:?}", r.1);
    let r = raw(
        &d,
        "GET",
        "/v1/pool",
        &[("Host", "array1.example:7410")],
        "",
    );
    assert_error(&r, 401, "unauthorized");
    let headers = [
        ("Host", "array1.example:7410"),
        ("Origin", "http://evil.example"),
        bearer,
    ];
    assert_error(&raw(&d, "GET", "/v1/pool", &headers, ""), 403, "forbidden");
    d.stop();
}
