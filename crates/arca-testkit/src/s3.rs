//! A real S3 server for the vault tests: s3s-fs (installed by scripts/test under
//! target/tools), started on an ephemeral loopback port over a directory and stopped by PID.
//! Missing outside CI, a test using it prints a skip; with CI=true its absence fails the test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const ACCESS_KEY: &str = "arcatestaccess";
pub const SECRET_KEY: &str = "arca-test-secret-key-0123456789";

/// scripts/test installs s3s-fs here (`cargo install --root target/tools`).
fn binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/bin/s3s-fs")
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A running s3s-fs, stopped (by its PID) when dropped.
pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    pub root: PathBuf,
    access: String,
    secret: String,
}

impl S3Server {
    /// Starts a server over `root` with `buckets` made, the given credentials; `None` (after
    /// printing a skip) when s3s-fs is not installed and CI is not set. Under CI=true a
    /// missing s3s-fs panics, so the test fails instead of passing without having run.
    pub fn start(root: &Path, buckets: &[&str], access: &str, secret: &str) -> Option<S3Server> {
        if !binary().exists() {
            assert!(
                !ci(),
                "CI=true and s3s-fs is missing from target/tools (scripts/test installs it)"
            );
            eprintln!("SKIPPED: s3s-fs missing from target/tools; run scripts/test to install it");
            return None;
        }
        for b in buckets {
            std::fs::create_dir_all(root.join(b)).unwrap();
        }
        let mut s = S3Server {
            child: None,
            port: 0,
            root: root.to_path_buf(),
            access: access.into(),
            secret: secret.into(),
        };
        s.run(0);
        Some(s)
    }

    /// Starts s3s-fs on `port` (0: any) and reads the bound port from its log.
    fn run(&mut self, port: u16) {
        let mut child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &self.access, "--secret-key", &self.secret])
            .arg(&self.root)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port.parse::<u16>().unwrap());
                    sent = true;
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) => self.port = p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("s3s-fs did not report its port");
            }
        }
        self.child = Some(child);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (by its PID); `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.run(port);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
