//! Export access rules (`--nbd-access`) against real clients: nbdinfo lists only the exports
//! a client may open; qemu and libnbd are refused with NBD_REP_ERR_POLICY; a read-only grant
//! is offered read-only and writes fail; certificates are told apart by CN; without TLS,
//! rules by source address; SIGHUP rereads the file and a broken file changes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::certs::Certs;
use crate::require;
use crate::tls::x509_daemon;
use crate::util::{Daemon, Out, Serve, json, run, serve_once, tempdir};

/// The export names `nbdinfo --list --json` reports.
pub fn listed(out: &Out) -> Vec<String> {
    let mut names: Vec<String> = json(&out.stdout)["exports"]
        .as_array()
        .unwrap_or_else(|| panic!("no exports in:\n{}", out.describe()))
        .iter()
        .map(|e| e["export-name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn refused_by_policy(out: &Out, d: &Daemon) {
    assert!(!out.status.success(), "served:\n{}", out.describe());
    assert!(
        d.log().contains("export refused by the access rules"),
        "no refusal logged for:\n{}\n--- log\n{}",
        out.describe(),
        d.log()
    );
}

fn tls_daemon_with_rules(certs: &Certs, rules: &Path) -> Daemon {
    let rules = rules.to_str().unwrap();
    x509_daemon(certs, &["v=4M", "w1=4M", "x=4M"], &["--nbd-access", rules])
}

#[test]
fn certificate_rules_limit_what_clients_list_open_and_write() {
    require!("nbdinfo", "nbdcopy", "qemu-io", "openssl");
    let tmp = tempdir();
    let certs = Certs::make(&tmp.path().join("certs"));
    let rules = tmp.path().join("access");
    std::fs::write(
        &rules,
        "# the backup host writes v and reads the w volumes\n\
         v   rw cn:backup-host\n\
         w*  ro subject:O=arca,CN=backup-host\n",
    )
    .unwrap();
    let d = tls_daemon_with_rules(&certs, &rules);
    let backup = certs.client_dir("backup", Some("client"));
    let other = certs.client_dir("other", Some("other"));
    let uri = |export: &str, dir: &Path| {
        format!(
            "nbds://{}/{export}?tls-certificates={}",
            d.addr(),
            dir.display()
        )
    };

    let list = run("nbdinfo", &["--list", "--json", &uri("", &backup)]).ok();
    assert_eq!(listed(&list), ["v", "w1"], "{}", list.describe());
    let info = run("nbdinfo", &["--json", &uri("w1", &backup)]).ok();
    assert_eq!(
        json(&info.stdout)["exports"][0]["is_read_only"],
        true,
        "{}",
        info.describe()
    );
    let info = run("nbdinfo", &["--json", &uri("v", &backup)]).ok();
    assert_eq!(json(&info.stdout)["exports"][0]["is_read_only"], false);

    // The read-only grant: a copy into w1 fails, nothing written.
    let src = tmp.path().join("src.bin");
    std::fs::write(&src, vec![0x5au8; 4 << 20]).unwrap();
    let out = run("nbdcopy", &[src.to_str().unwrap(), &uri("w1", &backup)]);
    assert!(!out.status.success(), "wrote w1:\n{}", out.describe());
    run("nbdcopy", &[src.to_str().unwrap(), &uri("v", &backup)]).ok();

    // x is granted to nobody: qemu is denied by the server's policy.
    let port = d.port().to_string();
    let object = format!(
        "tls-creds-x509,id=tls0,endpoint=client,dir={}",
        backup.display()
    );
    let image = |export: &str| {
        format!(
            "driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port={port},\
             file.export={export},file.tls-creds=tls0"
        )
    };
    let out = run(
        "qemu-io",
        &[
            "--object",
            &object,
            "--image-opts",
            &image("x"),
            "-c",
            "read 0 4k",
        ],
    );
    refused_by_policy(&out, &d);
    assert!(
        out.stderr.contains("Denied by server"),
        "not a policy refusal:\n{}",
        out.describe()
    );
    // qemu opens a read-only grant only read-only.
    let out = run(
        "qemu-io",
        &[
            "--object",
            &object,
            "--image-opts",
            &image("w1"),
            "-c",
            "write 0 4k",
        ],
    );
    assert!(!out.status.success(), "wrote w1:\n{}", out.describe());
    let out = run(
        "qemu-io",
        &[
            "-r",
            "--object",
            &object,
            "--image-opts",
            &image("w1"),
            "-c",
            "read -P 0 0 4k",
        ],
    )
    .ok();
    assert!(!out.stdout.contains("fail"), "{}", out.describe());

    // Another certificate of the same CA, with another CN: sees nothing, opens nothing.
    let list = run("nbdinfo", &["--list", "--json", &uri("", &other)]).ok();
    assert!(listed(&list).is_empty(), "{}", list.describe());
    let out = run("nbdinfo", &["--json", &uri("v", &other)]);
    refused_by_policy(&out, &d);
    d.stop();
}

/// Polls until `nbdinfo` on `uri` succeeds or not as wanted (a reload is asynchronous).
fn wait_served(uri: &str, served: bool) -> Out {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run("nbdinfo", &["--json", uri]);
        if out.status.success() == served || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn address_rules_without_tls_and_reload_on_sighup() {
    require!("nbdinfo");
    let tmp = tempdir();
    let rules = tmp.path().join("access");
    std::fs::write(&rules, "v rw addr:127.0.0.0/8\nw ro addr:192.0.2.0/24\n").unwrap();
    let d = Serve::new()
        .volumes(&["v=4M", "w=4M"])
        .args(&["--nbd-access", rules.to_str().unwrap()])
        .start();
    let list = run("nbdinfo", &["--list", "--json", &d.uri("")]).ok();
    assert_eq!(listed(&list), ["v"], "{}", list.describe());
    let out = run("nbdinfo", &["--json", &d.uri("w")]);
    refused_by_policy(&out, &d);

    // New rules take effect on SIGHUP, for new connections.
    std::fs::write(&rules, "* ro addr:127.0.0.1\n").unwrap();
    d.signal(libc::SIGHUP);
    let out = wait_served(&d.uri("w"), true);
    assert!(out.status.success(), "{}", out.describe());
    assert_eq!(json(&out.stdout)["exports"][0]["is_read_only"], true);

    // A broken file keeps the rules in force and says why.
    std::fs::write(&rules, "w sometimes addr:127.0.0.1\n").unwrap();
    d.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("the current rules stay in force") {
        assert!(
            Instant::now() < deadline,
            "no reload error logged:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run("nbdinfo", &["--json", &d.uri("w")]).ok();
    assert_eq!(json(&out.stdout)["exports"][0]["is_read_only"], true);
    d.stop();
}

#[test]
fn a_broken_rules_file_stops_the_start() {
    let tmp = tempdir();
    let rules = tmp.path().join("access");
    std::fs::write(&rules, "v rw\n").unwrap();
    let out = serve_once(
        tmp.path(),
        "127.0.0.1:0",
        &["--nbd-access", rules.to_str().unwrap()],
    );
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("line 1") && out.stderr.contains("access"),
        "{}",
        out.describe()
    );
}
