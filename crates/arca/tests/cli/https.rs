//! The API over HTTPS: the client verifies the daemon's certificate against `--ca-file` (or
//! ARCA_CA_FILE, or the system's roots), and a non-loopback API over plain HTTP needs
//! `--api-insecure`.

use crate::certs::Certs;
use crate::util::{Daemon, arca, arca_cmd, run_cmd};

const TOKEN: &str = "https-test-token-0123456789";

fn https_daemon(certs: &Certs) -> Daemon {
    let path = |n: &str| certs.path(n).to_str().unwrap().to_string();
    Daemon::start_with_args(&[
        "--api-tls-cert",
        &path("server-cert.pem"),
        "--api-tls-key",
        &path("server-key.pem"),
        "--volume",
        "v=64M",
    ])
}

#[test]
fn client_verifies_the_https_api_against_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::make(tmp.path());
    let d = https_daemon(&certs);
    assert!(d.api.starts_with("https://127.0.0.1:"), "{}", d.api);
    let ca = certs.path("ca-cert.pem");
    let ca = ca.to_str().unwrap();
    // Trusted through --ca-file (after or before the subcommand) or ARCA_CA_FILE.
    let list = d.json(&["volume", "list", "--ca-file", ca]);
    assert_eq!(list[0]["name"], "v", "{list}");
    let out = arca(&["--ca-file", ca, "--api", &d.api, "pool", "status"]).ok();
    assert!(out.stdout.contains("volumes"), "{}", out.describe());
    let mut cmd = arca_cmd();
    cmd.args(["volume", "list", "--api", &d.api])
        .env("ARCA_CA_FILE", ca);
    run_cmd(cmd).ok();
    // Not trusted by the system's roots, nor by another CA: refused, one line.
    let err = d.arca(&["volume", "list"]).error_line();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let other = certs.path("other-ca-cert.pem");
    let err = d
        .arca(&["volume", "list", "--ca-file", other.to_str().unwrap()])
        .error_line();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Plain HTTP to the HTTPS port gets no answer the client could mistake for one.
    let plain = d.api.replacen("https://", "http://", 1);
    arca(&["volume", "list", "--api", &plain]).error_line();
    d.stop();
}

#[test]
fn non_loopback_api_over_plain_http_needs_api_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let out = run_cmd({
        let mut cmd = arca_cmd();
        cmd.arg("serve")
            .arg("--pool")
            .arg(dir.path().join("pool"))
            .arg("--token-file")
            .arg(&token_file)
            .args(["--size", "1G", "--nbd", "127.0.0.1:0", "--api", "0.0.0.0:0"]);
        cmd
    });
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("--api-insecure"), "{}", out.describe());
    // Refused before touching the pool.
    assert!(!dir.path().join("pool").exists());
}
