//! A small W3C WebDriver client over ureq: chromedriver started on an ephemeral loopback port
//! and stopped by PID, one headless Chromium session, and the few commands the console tests
//! use (navigate, find, click, type, read, run a script, screenshot, resize).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::process::terminate;

/// What a test waits for the console to show: polling every 2 s plus a job takes seconds.
pub const WAIT: Duration = Duration::from_secs(60);

/// The key of an element reference in WebDriver's JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver and the browser session it runs, ended when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    /// Chromium's profile, removed after the session.
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Clone)]
pub struct Element {
    pub id: String,
}

fn free_port() -> u16 {
    // chromedriver takes no port 0: a port the kernel just handed out is free in practice.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, `width`×`height`.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("starting chromedriver");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::Builder::new()
            .prefix("arca-chromium-")
            .tempdir()
            .unwrap();
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            agent,
            _profile: profile,
        };
        b.wait_driver_ready(log.path());
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", b._profile.path().display()),
            &format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    fn wait_driver_ready(&mut self, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.agent.get(format!("{}/status", self.base)).call()
                && let Ok(v) = r.into_body().read_json::<Value>()
                && v["value"]["ready"] == true
            {
                return;
            }
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!(
                    "chromedriver exited with {status}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One WebDriver command: its `value`, or a panic naming the WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = ureq::http::Request::builder().method(method).uri(&url);
        // Every POST carries a JSON object; chromedriver drops a command without one.
        let body = body.or_else(|| (method == "POST").then(|| json!({})));
        let resp = match body {
            Some(b) => self.agent.run(
                req.header("Content-Type", "application/json")
                    .body(b.to_string())
                    .unwrap(),
            ),
            None => self.agent.run(req.body(()).unwrap()),
        }
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = resp.status().as_u16();
        let v: Value = resp.into_body().read_json().unwrap_or(Value::Null);
        assert!(
            status < 300,
            "WebDriver {method} {path} answered {status}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    pub fn set_size(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs `script` asynchronously: it ends by calling its last argument with the result.
    pub fn script_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            "POST",
            &self.s("/execute/async"),
            Some(json!({"script": script, "args": args})),
        )
    }

    fn element_of(v: &Value) -> Option<Element> {
        v.get(ELEMENT_KEY)
            .and_then(|id| id.as_str())
            .map(|id| Element { id: id.to_string() })
    }

    /// The first element matching the CSS selector, if any now.
    pub fn find(&self, css: &str) -> Option<Element> {
        let v = self.script(
            "return document.querySelector(arguments[0]);",
            vec![json!(css)],
        );
        Self::element_of(&v)
    }

    /// The visible element matching `css` whose text is `text`, if any now.
    pub fn find_text(&self, css: &str, text: &str) -> Option<Element> {
        let v = self.script(
            "return [...document.querySelectorAll(arguments[0])]
                .find(e => e.offsetParent !== null && e.textContent.trim() === arguments[1])
                || null;",
            vec![json!(css), json!(text)],
        );
        Self::element_of(&v)
    }

    /// The control labelled `label` inside the element matching `scope` (a person finds a
    /// field by its label; this also checks that it has one).
    pub fn field(&self, scope: &str, label: &str) -> Element {
        self.wait(&format!("a field labelled {label:?} in {scope}"), |b| {
            b.field_now(scope, label)
        })
    }

    fn field_now(&self, scope: &str, label: &str) -> Option<Element> {
        let v = self.script(
            "const scope = document.querySelector(arguments[0]);
             if (!scope) return null;
             const l = [...scope.querySelectorAll('label')]
                 .find(l => l.textContent.trim() === arguments[1]);
             return l ? document.getElementById(l.htmlFor) : null;",
            vec![json!(scope), json!(label)],
        );
        Self::element_of(&v)
    }

    /// Waits until `f` gives a value, panicking with `what` and the page's text after WAIT.
    pub fn wait<T>(&self, what: &str, mut f: impl FnMut(&Browser) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.script("return document.body.innerText;", vec![]);
                panic!(
                    "waited {WAIT:?} for {what}; the page shows:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn wait_for(&self, css: &str) -> Element {
        self.wait(css, |b| b.find(css))
    }

    pub fn wait_text(&self, css: &str, text: &str) -> Element {
        self.wait(&format!("{css} with text {text:?}"), |b| {
            b.find_text(css, text)
        })
    }

    pub fn click(&self, e: &Element) {
        self.call("POST", &self.s(&format!("/element/{}/click", e.id)), None);
    }

    /// Clears the field and types `text` into it.
    pub fn type_into(&self, e: &Element, text: &str) {
        self.call("POST", &self.s(&format!("/element/{}/clear", e.id)), None);
        self.call(
            "POST",
            &self.s(&format!("/element/{}/value", e.id)),
            Some(json!({ "text": text })),
        );
    }

    /// The visible text of the element matching `css`, empty when there is none.
    /// One script, so that a redraw in between cannot leave a stale reference.
    pub fn text_of(&self, css: &str) -> String {
        let v = self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            vec![json!(css)],
        );
        v.as_str().unwrap_or("").to_string()
    }

    /// The attribute `name` of the element matching `css`, when both exist now.
    pub fn attribute_of(&self, css: &str, name: &str) -> Option<String> {
        let v = self.script(
            "const e = document.querySelector(arguments[0]);
             return e ? e.getAttribute(arguments[1]) : null;",
            vec![json!(css), json!(name)],
        );
        v.as_str().map(str::to_string)
    }

    /// Saves a PNG of the viewport as `target/ui-screenshots/NAME.png`.
    pub fn screenshot(&self, name: &str) {
        let v = self.call("GET", &self.s("/screenshot"), None);
        let png = base64_decode(v.as_str().expect("base64 PNG"));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target/tmp has a parent")
            .join("ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Ends the browser; chromedriver is then stopped by its PID.
            let _ = self
                .agent
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        terminate(&mut self.driver, Duration::from_secs(10));
    }
}

/// Standard base64 (the screenshot's encoding).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=' && *c != b'\n').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | value(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_what_it_should() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
