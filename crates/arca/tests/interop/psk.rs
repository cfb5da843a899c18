//! NBD over TLS with pre-shared keys (`--nbd-tls-psk`, a GnuTLS `username:hexkey` file)
//! against real clients: nbdinfo and nbdcopy with `tls-psk-file` (the user in the URI), qemu-img and qemu-io with
//! `tls-creds-psk`. A wrong key is refused with nothing served, and the PSK user is the
//! identity the export access rules see.

use std::path::Path;

use crate::access::listed;
use crate::require;
use crate::util::{Daemon, Serve, assert_same, json, random_bytes, run, serve_once, tempdir};

const ALICE: &str = "alice:8e5fba1bc6f6d4b2a3ac0e9d17c2f5e4a1b0c9d8e7f60516273849a0b1c2d3e4";
const BOB: &str = "bob:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// Alice's name with another key.
const ALICE_WRONG: &str = "alice:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// A directory holding `keys.psk` (the name qemu reads) with these lines.
fn key_dir(root: &Path, name: &str, lines: &[&str]) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keys.psk"), lines.join("\n") + "\n").unwrap();
    dir
}

fn psk_uri(d: &Daemon, export: &str, dir: &Path, user: &str) -> String {
    format!(
        "nbds://{user}@{}/{export}?tls-psk-file={}",
        d.addr(),
        dir.join("keys.psk").display()
    )
}

#[test]
fn libnbd_and_qemu_clients_use_pre_shared_keys() {
    require!("nbdinfo", "nbdcopy", "qemu-img", "qemu-io");
    let tmp = tempdir();
    let server_keys = key_dir(tmp.path(), "server", &[ALICE, BOB]);
    let rules = tmp.path().join("access");
    std::fs::write(&rules, "v rw psk:alice\nw ro psk:bob\n").unwrap();
    let d = Serve::new()
        .volumes(&["v=8M", "w=4M"])
        .args(&[
            "--nbd-tls",
            "require",
            "--nbd-tls-psk",
            server_keys.join("keys.psk").to_str().unwrap(),
            "--nbd-access",
            rules.to_str().unwrap(),
        ])
        .start();
    let alice = key_dir(tmp.path(), "alice", &[ALICE]);
    let bob = key_dir(tmp.path(), "bob", &[BOB]);

    // libnbd: a round trip of random data as alice.
    let uri = psk_uri(&d, "v", &alice, "alice");
    let info = run("nbdinfo", &["--json", &uri]).ok();
    assert_eq!(json(&info.stdout)["exports"][0]["export-size"], 8 << 20);
    let data = random_bytes(21, 8 << 20);
    let (src, back) = (tmp.path().join("src.bin"), tmp.path().join("back.bin"));
    std::fs::write(&src, &data).unwrap();
    run("nbdcopy", &[src.to_str().unwrap(), &uri]).ok();
    run("nbdcopy", &[&uri, back.to_str().unwrap()]).ok();
    assert_same("nbdcopy over PSK", &std::fs::read(&back).unwrap(), &data);

    // qemu: reads alice's data back, writes and reads.
    let port = d.port().to_string();
    let object = |dir: &Path, user: &str| {
        format!(
            "tls-creds-psk,id=tls0,endpoint=client,dir={},username={user}",
            dir.display()
        )
    };
    let image = |export: &str| {
        format!(
            "driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port={port},\
             file.export={export},file.tls-creds=tls0"
        )
    };
    let info = run(
        "qemu-img",
        &[
            "info",
            "--object",
            &object(&alice, "alice"),
            "--image-opts",
            &image("v"),
        ],
    )
    .ok();
    assert!(info.stdout.contains("8 MiB"), "{}", info.describe());
    let io = run(
        "qemu-io",
        &[
            "--object",
            &object(&alice, "alice"),
            "--image-opts",
            &image("v"),
            "-c",
            "write -P 0x3c 1M 1M",
            "-c",
            "read -P 0x3c 1M 1M",
        ],
    )
    .ok();
    assert!(!io.stdout.contains("fail"), "{}", io.describe());

    // A wrong key: refused by both clients, nothing served.
    let wrong = key_dir(tmp.path(), "wrong", &[ALICE_WRONG]);
    let out = run("nbdinfo", &["--json", &psk_uri(&d, "v", &wrong, "alice")]);
    assert!(
        !out.status.success(),
        "wrong key served:\n{}",
        out.describe()
    );
    let out = run(
        "qemu-img",
        &[
            "info",
            "--object",
            &object(&wrong, "alice"),
            "--image-opts",
            &image("v"),
        ],
    );
    assert!(
        !out.status.success(),
        "wrong key served:\n{}",
        out.describe()
    );
    assert!(d.log().contains("TLS handshake failed"), "{}", d.log());

    // The PSK user is the identity the rules name: bob lists and opens only w, read-only.
    let list = run(
        "nbdinfo",
        &["--list", "--json", &psk_uri(&d, "", &bob, "bob")],
    )
    .ok();
    assert_eq!(listed(&list), ["w"], "{}", list.describe());
    let out = run("nbdinfo", &["--json", &psk_uri(&d, "v", &bob, "bob")]);
    assert!(!out.status.success(), "bob opened v:\n{}", out.describe());
    assert!(d.log().contains("psk:bob"), "{}", d.log());
    let info = run("nbdinfo", &["--json", &psk_uri(&d, "w", &bob, "bob")]).ok();
    assert_eq!(json(&info.stdout)["exports"][0]["is_read_only"], true);
    // The log names users and failed handshakes, never a key (the server's or a client's).
    let log = d.log();
    for line in [ALICE, BOB, ALICE_WRONG] {
        let key = line.split_once(':').unwrap().1;
        assert!(!log.contains(key), "a PSK key in the daemon's log:\n{log}");
    }
    d.stop();
}

#[test]
fn a_malformed_key_file_stops_the_start() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys.psk");
    std::fs::write(&keys, "alice:not-hex-at-all\n").unwrap();
    let keys = keys.to_str().unwrap();
    let out = serve_once(
        tmp.path(),
        "127.0.0.1:0",
        &["--nbd-tls", "require", "--nbd-tls-psk", keys],
    );
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("line 1") && !out.stderr.contains("not-hex"),
        "{}",
        out.describe()
    );
}
