//! The web console in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! against a real `arca serve` on ephemeral loopback ports. The scenarios act as a person would
//! (find fields by their labels, click buttons by their text) and check what the page shows
//! against the API. Screenshots go to target/ui-screenshots/.

use std::time::Duration;

use serde_json::{Value, json};

#[path = "../common/mod.rs"]
mod common;

mod axe;
mod flows;
mod protection;
mod webdriver;

use common::daemon::Daemon;
use webdriver::{Browser, CHROMEDRIVER, CHROMIUM};

/// Whether Chromium and chromedriver are installed (a failure under CI=true, else a skip).
fn browser_installed() -> bool {
    common::tools::tools(&[CHROMIUM, CHROMEDRIVER])
}

/// An HTTP request to the daemon: (status, headers, body text).
fn http(
    d: &Daemon,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, ureq::http::HeaderMap, String) {
    let agent = common::http::agent(Some(Duration::from_secs(60)));
    let url = format!("{}{path}", d.api);
    common::http::request(&agent, method, &url, headers, body.map(|b| b.to_string()))
}

/// A browser window (1280×800) on the console's `route` (`#/volumes`; "" for the overview).
fn open_page(d: &Daemon, route: &str) -> Browser {
    let b = Browser::start(1280, 800);
    b.goto(&format!("{}/{route}", d.api));
    b
}

/// [`open_page`] on a list, once its heading shows.
fn open_list(d: &Daemon, route: &str, heading: &str) -> Browser {
    let b = open_page(d, route);
    b.wait_text("h1", heading);
    b
}

/// Waits until the API no longer has `path` (the `what` the page deleted) and the page is back
/// on the list headed `heading`.
fn wait_gone(b: &Browser, d: &Daemon, what: &str, path: &str, heading: &str) {
    b.wait(&format!("the {what} to be gone"), |_| {
        (http(d, "GET", path, &[], None).0 == 404).then_some(())
    });
    b.wait_text("h1", heading);
}

/// An API call that must succeed; its JSON.
fn api(d: &Daemon, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, _, text) = http(d, method, path, &[], body);
    assert!(status < 300, "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Sizes as the console shows them (app/api.js `bytes`): binary units, one decimal.
fn shown(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Every visible control of the page has an accessible name (its label, aria-label or text):
/// usable with a screen reader and findable by what it says; and axe-core finds no serious or
/// critical violation.
fn assert_accessible(b: &Browser, page: &str) {
    axe::assert_axe_clean(b, page);
    let unnamed = b.script(
        "return [...document.querySelectorAll(
                'input:not([type=hidden]), select, textarea, button, a[href]')]
            .filter(e => e.getClientRects().length)
            .filter(e => !(e.getAttribute('aria-label')
                || [...(e.labels || [])].map(l => l.textContent).join('')
                || e.textContent).trim())
            .map(e => e.outerHTML.slice(0, 160));",
        vec![],
    );
    assert_eq!(unnamed, json!([]), "unlabelled controls on {page}");
}

/// The `<data value>` (exact bytes) and text of the size shown in `css`.
fn size_at(b: &Browser, css: &str) -> (u64, String) {
    let css = format!("{css} data");
    let value = b.wait(&css, |b| b.attribute_of(&css, "value"));
    (value.parse().unwrap(), b.text_of(&css))
}

#[test]
fn overview_numbers_match_the_api() {
    if !browser_installed() {
        return;
    }
    let d = Daemon::with_volumes(&["kept=64M", "forgotten=64M"]);
    api(
        &d,
        "POST",
        "/v1/backups",
        Some(json!({"volumes": ["kept"], "label": "nightly"})),
    );
    let b = open_page(&d, "");
    b.wait_for("#pool-capacity");
    let pool = api(&d, "GET", "/v1/pool", None);
    for (css, field) in [
        ("#pool-capacity", "capacity"),
        ("#pool-used", "used"),
        ("#pool-free", "free"),
    ] {
        let want = pool[field].as_u64().unwrap();
        assert_eq!(size_at(&b, css), (want, shown(want)), "{field}");
    }
    for dev in pool["devices"].as_array().unwrap() {
        let row = b.text_of(&format!("#device-{}", dev["index"]));
        let want = format!(
            "{} of {}",
            shown(dev["used"].as_u64().unwrap()),
            shown(dev["capacity"].as_u64().unwrap())
        );
        assert!(row.contains(&want), "device row {row:?} lacks {want:?}");
    }
    let meta = b.text_of("#metadata-bar");
    assert!(
        meta.contains(&shown(pool["metadata_capacity"].as_u64().unwrap())),
        "{meta}"
    );
    // The volume without a backup needs attention; the one backed up just now does not.
    let attention = b.wait("the attention list", |b| {
        Some(b.text_of("#attention-list")).filter(|t| t.contains("forgotten"))
    });
    assert!(!attention.contains("kept"), "{attention}");
    b.screenshot("overview");
    assert_accessible(&b, "overview");
    for (page, heading) in [("backups", "Backups"), ("jobs", "Jobs"), ("pairs", "Pairs")] {
        b.goto(&format!("{}/#/{page}", d.api));
        b.wait_text("h1", heading);
        b.wait_for("main .card table, main .card p.muted");
        assert_accessible(&b, page);
        b.screenshot(page);
    }
    b.goto(&format!("{}/", d.api));
    b.set_size(390, 844);
    b.wait_for("#pool-capacity");
    b.screenshot("overview-phone");
    assert_accessible(&b, "the overview on a phone");
}

#[test]
fn the_token_is_asked_for_and_only_the_login_files_are_served_without_it() {
    if !browser_installed() {
        return;
    }
    let d = common::daemon::Serve::new()
        .token("s3cret")
        .volumes(&["db=64M"])
        .start();
    for path in ["/", "/console/login.js", "/console/style.css"] {
        let (status, _, _) = http(&d, "GET", path, &[], None);
        assert_eq!(status, 200, "{path}");
    }
    let (status, _, text) = http(&d, "GET", "/console/app/main.js", &[], None);
    assert_eq!(status, 401, "the application without the token: {text}");
    let wrong = [("Cookie", "arca_console=736563726574")];
    assert_eq!(http(&d, "GET", "/console/app/main.js", &wrong, None).0, 401);
    // hex("s3cret")
    let right = [("Cookie", "arca_console=733363726574")];
    assert_eq!(http(&d, "GET", "/console/app/main.js", &right, None).0, 200);
    // The cookie opens nothing of the API.
    assert_eq!(http(&d, "GET", "/v1/volumes", &right, None).0, 401);

    let b = open_page(&d, "");
    let token = b.field("#login", "Token");
    assert!(
        b.find("#nav[hidden]").is_some(),
        "sections shown before sign-in"
    );
    b.type_into(&token, "wrong");
    b.click(&b.wait_text("#login button", "Sign in"));
    let error = b.wait("the refusal", |b| {
        Some(b.text_of("#login-error")).filter(|t| !t.is_empty())
    });
    assert_eq!(error, "Not signed in: a valid bearer token is required");
    b.screenshot("login");
    assert_accessible(&b, "the login form");
    b.type_into(&token, "s3cret");
    b.click(&b.wait_text("#login button", "Sign in"));
    let (capacity, _) = size_at(&b, "#pool-capacity");
    assert_eq!(capacity, api_with_token(&d, "s3cret"));
    b.wait_text("#attention-list a", "db");
    // Signing out forgets the token: the form is back.
    b.click(&b.wait_text("#logout", "Sign out"));
    b.wait("the login form", |b| b.find("#login:not([hidden])"));
}

fn api_with_token(d: &Daemon, token: &str) -> u64 {
    let auth = format!("Bearer {token}");
    let (status, _, text) = http(d, "GET", "/v1/pool", &[("Authorization", &auth)], None);
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["capacity"].as_u64().unwrap()
}

#[test]
fn console_files_have_their_types_a_strict_policy_and_revalidate() {
    let d = Daemon::start();
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/login.js", "text/javascript; charset=utf-8"),
        ("/console/app/main.js", "text/javascript; charset=utf-8"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let (status, h, _) = http(&d, "GET", path, &[], None);
        assert_eq!(status, 200, "{path}");
        assert_eq!(h["content-type"], ty, "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "private, no-cache");
        let tag = h["etag"].to_str().unwrap().to_string();
        let (again, _, body) = http(&d, "GET", path, &[("If-None-Match", &tag)], None);
        assert_eq!((again, body.as_str()), (304, ""), "{path} revalidated");
    }
    let (status, _, text) = http(&d, "GET", "/console/app/nope.js", &[], None);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("no file"), "{text}");
}

#[test]
fn newest_backups_name_each_volume_s_newest_complete_backup() {
    let d = Daemon::with_volumes(&["a=64M", "b=64M", "copy=64M"]);
    let first = api(&d, "POST", "/v1/backups", Some(json!({"volumes": ["a"]})));
    let second = api(
        &d,
        "POST",
        "/v1/backups",
        Some(json!({"volumes": ["a"], "label": "second"})),
    );
    assert_ne!(first["backups"][0]["id"], second["backups"][0]["id"]);
    // A copy backup of b into `copy`: `copy` then holds a backup.
    let copied = api(
        &d,
        "POST",
        "/v1/backups",
        Some(json!({"volumes": ["b"], "to": "copy"})),
    );
    let job = copied["jobs"][0].as_u64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while api(&d, "GET", &format!("/v1/jobs/{job}"), None)["state"] == "running" {
        assert!(std::time::Instant::now() < deadline, "copy job hangs");
        std::thread::sleep(Duration::from_millis(50));
    }
    let list = api(&d, "GET", "/v1/newest-backups", None);
    let by = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|n| n["volume"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {list}"))
            .clone()
    };
    let a = by("a");
    assert_eq!(a["backup"], second["backups"][0]["id"]);
    assert_eq!(a["label"], "second");
    assert_eq!(a["point_in_time"], second["backups"][0]["point_in_time"]);
    assert_eq!(a["holds_backup"], false);
    let b = by("b");
    assert_eq!(b["backup"], copied["backups"][0]["id"]);
    let copy = by("copy");
    assert_eq!(
        (copy["backup"].clone(), copy["holds_backup"].clone()),
        (Value::Null, json!(true))
    );
    let volumes = api(&d, "GET", "/v1/volumes", None);
    assert_eq!(
        list.as_array().unwrap().len(),
        volumes.as_array().unwrap().len()
    );
}

#[test]
fn exports_list_the_hosts_connected_to_them() {
    let d = Daemon::with_volumes(&["db=64M"]);
    let connected = |d: &Daemon| {
        api(d, "GET", "/v1/exports", None)
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "db")
            .unwrap()["connected"]
            .clone()
    };
    assert_eq!(connected(&d), json!([]));
    let host = common::nbd::connect(&d.addr(), "db");
    let peer = host.local_addr().unwrap().to_string();
    assert_eq!(connected(&d), json!([peer]));
    drop(host);
}

/// "2026-12-03 15:40:01 UTC", as the console writes an RFC 3339 time.
fn when(rfc3339: &Value) -> String {
    let t = rfc3339.as_str().unwrap();
    format!("{} UTC", t[..19].replace('T', " "))
}

#[test]
fn the_overview_shows_the_recorded_checks_after_a_restart() {
    if !browser_installed() {
        return;
    }
    let d = Daemon::with_volumes(&["db=64M"]);
    let job = api(&d, "POST", "/v1/pool/check", Some(json!({})));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while api(&d, "GET", &format!("/v1/jobs/{}", job["id"]), None)["state"] == "running" {
        assert!(std::time::Instant::now() < deadline, "pool check hangs");
        std::thread::sleep(Duration::from_millis(50));
    }
    api(&d, "GET", "/v1/catalog/check", None);
    // Jobs are forgotten at a restart; the record of checks is not.
    let d = d.restart();
    let checks = api(&d, "GET", "/v1/checks", None);
    let b = Browser::start(1280, 800);
    b.goto(&format!("{}/", d.api));
    for (css, kind) in [("#pool-check", "pool"), ("#catalog-check", "catalog")] {
        let c = &checks[kind][0];
        assert_eq!(c["outcome"], "clean", "{checks}");
        let text = b.wait(&format!("the last {kind} check"), |b| {
            Some(b.text_of(css)).filter(|t| t.contains("clean"))
        });
        for want in [when(&c["finished"]), "by anonymous".to_string()] {
            assert!(text.contains(&want), "{css} {text:?} lacks {want:?}");
        }
    }
    assert!(
        b.find("#check-history:not([hidden])").is_some(),
        "two checks recorded: the history is offered"
    );
    // A check from the console lands in the record and on the page.
    flows::click(&b, "button", "Check catalog");
    b.wait("the third check in the history", |b| {
        let rows = b.script(
            "return document.querySelectorAll('#check-history tbody tr').length;",
            vec![],
        );
        (rows == json!(3)).then_some(())
    });
    assert_eq!(
        api(&d, "GET", "/v1/checks", None)["catalog"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    flows::click(&b, "#check-history summary", "Recent checks");
    b.wait_for("#check-history[open] table");
    b.screenshot("overview-checks");
    assert_accessible(&b, "the overview with its checks");
}
