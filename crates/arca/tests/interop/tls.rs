//! NBD over TLS (NBD_OPT_STARTTLS with x509) against real clients: libnbd's nbdinfo and
//! nbdcopy with `nbds://` URIs and `tls-certificates`, qemu-img and qemu-io with
//! `--object tls-creds-x509`. Certificates are made by the test with openssl. Clients without
//! TLS, with an untrusted certificate or with none are refused, nothing served.

use std::path::{Path, PathBuf};

use crate::certs::Certs;
use crate::require;
use crate::util::{
    Daemon, MIB, Out, Serve, assert_same, random_bytes, run, serve_cmd, serve_once, tempdir,
};

const SIZE_MIB: u64 = 16;

/// A daemon requiring TLS with client certificates from the test CA, serving volume `v`.
fn tls_daemon(certs: &Certs) -> Daemon {
    x509_daemon(certs, &[&format!("v={SIZE_MIB}M")], &[])
}

/// A daemon requiring TLS with client certificates from the test CA, serving `volumes`
/// (`NAME=SIZE`), with `extra` arguments.
pub fn x509_daemon(certs: &Certs, volumes: &[&str], extra: &[&str]) -> Daemon {
    let ca = certs.path("ca-cert.pem").to_str().unwrap().to_string();
    let mut args = vec!["--nbd-tls-client-ca", &ca];
    args.extend_from_slice(extra);
    server_tls_daemon(certs, volumes, &args)
}

/// A daemon requiring TLS, authenticating itself with the test CA's server certificate,
/// serving `volumes` with `extra` arguments.
fn server_tls_daemon(certs: &Certs, volumes: &[&str], extra: &[&str]) -> Daemon {
    let path = |n: &str| certs.path(n).to_str().unwrap().to_string();
    let mut args = vec![
        "--nbd-tls".to_string(),
        "require".to_string(),
        "--nbd-tls-cert".to_string(),
        path("server-cert.pem"),
        "--nbd-tls-key".to_string(),
        path("server-key.pem"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    Serve::new().volumes(volumes).args(&args).start()
}

/// A TLS daemon (`tls_daemon`) on certificates made in a new tempdir, and the credentials of
/// a client the daemon trusts.
struct TlsSetup {
    tmp: tempfile::TempDir,
    certs: Certs,
    d: Daemon,
    trusted: PathBuf,
}

fn tls_setup() -> TlsSetup {
    let tmp = tempdir();
    let certs = Certs::make(&tmp.path().join("certs"));
    let d = tls_daemon(&certs);
    let trusted = certs.client_dir("trusted", Some("client"));
    TlsSetup {
        tmp,
        certs,
        d,
        trusted,
    }
}

/// `nbds://127.0.0.1:PORT/EXPORT?tls-certificates=DIR` (libnbd checks the server's address
/// against the certificate's subject alternative names).
fn nbds_uri(d: &Daemon, export: &str, dir: &Path) -> String {
    format!(
        "nbds://{}/{export}?tls-certificates={}",
        d.addr(),
        dir.display()
    )
}

fn failed(out: &Out) -> bool {
    !out.status.success()
}

/// fio's NBD engine over TLS. fio does not let libnbd read certificate paths from the URI, so
/// the CA goes where libnbd looks by default, `$HOME/.pki/libnbd`; libnbd takes no client
/// certificate from there, so this daemon authenticates itself only.
#[test]
fn fio_randwrite_verify_over_tls() {
    require!("fio", "nbdinfo", "openssl");
    let tmp = tempdir();
    let certs = Certs::make(&tmp.path().join("certs"));
    let d = server_tls_daemon(&certs, &[&format!("v={SIZE_MIB}M")], &[]);
    let home = tmp.path().join("home");
    let pki = home.join(".pki/libnbd");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::copy(certs.path("ca-cert.pem"), pki.join("ca-cert.pem")).unwrap();
    let uri = format!("nbds://{}/v", d.addr());
    crate::fio::fio_randwrite_verify(&d, &uri, SIZE_MIB / 2, Some(&home));
    // In clear, the same daemon refuses.
    let plain = run("nbdinfo", &[&d.uri("v")]);
    assert!(failed(&plain), "plain client served:\n{}", plain.describe());
    d.stop();
}

#[test]
fn libnbd_clients_copy_over_tls_with_client_certificates() {
    require!("nbdinfo", "nbdcopy", "openssl");
    let TlsSetup {
        tmp,
        certs,
        d,
        trusted,
    } = tls_setup();
    let uri = nbds_uri(&d, "v", &trusted);
    let info = run("nbdinfo", &["--json", &uri]).ok();
    assert!(
        info.stdout.contains(&format!("{}", SIZE_MIB * MIB)),
        "{}",
        info.describe()
    );
    // A round trip of random data through the export, both ways over TLS.
    let data = random_bytes(18, (SIZE_MIB * MIB) as usize);
    let src = tmp.path().join("src.bin");
    let back = tmp.path().join("back.bin");
    std::fs::write(&src, &data).unwrap();
    run("nbdcopy", &[src.to_str().unwrap(), &uri]).ok();
    run("nbdcopy", &[&uri, back.to_str().unwrap()]).ok();
    assert_same(
        "nbdcopy round trip over TLS",
        &std::fs::read(&back).unwrap(),
        &data,
    );

    // Refused, nothing served: no TLS at all, a certificate of another CA, no certificate.
    let plain = run("nbdinfo", &[&d.uri("v")]);
    assert!(failed(&plain), "plain client served:\n{}", plain.describe());
    // libnbd reports NBD_REP_ERR_TLS_REQD as an error reply to GO (its errno, ENOTSUP).
    assert!(
        plain.stderr.contains("server replied with error to opt_go"),
        "refused by a reply, not a broken connection:\n{}",
        plain.describe()
    );
    let stranger = certs.client_dir("stranger", Some("stranger"));
    let out = run("nbdinfo", &[&nbds_uri(&d, "v", &stranger)]);
    assert!(failed(&out), "untrusted client served:\n{}", out.describe());
    let anonymous = certs.client_dir("anonymous", None);
    let out = run("nbdinfo", &[&nbds_uri(&d, "v", &anonymous)]);
    assert!(
        failed(&out),
        "client without certificate served:\n{}",
        out.describe()
    );
    // The daemon names the failed handshakes in its log and keeps serving.
    let log = d.stop_with_log();
    assert!(log.contains("TLS handshake failed"), "{log}");
}

/// qemu's options for an x509 client whose credentials are in `dir`.
fn qemu_tls(dir: &Path) -> String {
    format!(
        "tls-creds-x509,id=tls0,endpoint=client,dir={}",
        dir.display()
    )
}

#[test]
fn qemu_reads_and_writes_over_tls() {
    require!("qemu-img", "qemu-io", "openssl");
    // `_tmp` holds the certificates until the end of the test.
    let TlsSetup {
        tmp: _tmp,
        certs,
        d,
        trusted,
    } = tls_setup();
    let port = d.port().to_string();
    let image = format!("driver=nbd,host=127.0.0.1,port={port},export=v,tls-creds=tls0");
    let info = run(
        "qemu-img",
        &[
            "info",
            "--object",
            &qemu_tls(&trusted),
            "--image-opts",
            &image,
        ],
    )
    .ok();
    assert!(
        info.stdout.contains(&format!("{} bytes", SIZE_MIB * MIB))
            || info.stdout.contains(&format!("{SIZE_MIB} MiB")),
        "{}",
        info.describe()
    );
    let raw = format!(
        "driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port={port},file.export=v,\
         file.tls-creds=tls0"
    );
    let io = run(
        "qemu-io",
        &[
            "--object",
            &qemu_tls(&trusted),
            "--image-opts",
            &raw,
            "-c",
            "write -P 0x5a 1M 2M",
            "-c",
            "read -P 0x5a 1M 2M",
            "-c",
            "read -P 0 0 1M",
        ],
    )
    .ok();
    let text = format!("{}{}", io.stdout, io.stderr);
    assert!(
        !text.contains("fail") && !text.contains("error"),
        "{}",
        io.describe()
    );
    // An untrusted client certificate: refused.
    let stranger = certs.client_dir("stranger", Some("stranger"));
    let out = run(
        "qemu-img",
        &[
            "info",
            "--object",
            &qemu_tls(&stranger),
            "--image-opts",
            &image,
        ],
    );
    assert!(
        failed(&out),
        "untrusted qemu client served:\n{}",
        out.describe()
    );
    // Without TLS: refused too.
    let out = run("qemu-img", &["info", &d.uri("v")]);
    assert!(
        failed(&out),
        "plain qemu client served:\n{}",
        out.describe()
    );
    d.stop();
}

#[test]
fn non_loopback_nbd_without_tls_needs_nbd_insecure() {
    let tmp = tempdir();
    let out = serve_once(tmp.path(), "0.0.0.0:0", &[]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("--nbd-insecure"), "{}", out.describe());
    // With the flag it starts, and says what it exposes.
    let log = tmp.path().join("insecure.log");
    let mut child = serve_cmd(tmp.path(), "0.0.0.0:0", &["--nbd-insecure"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Both lines read (the API's is printed when serving starts) and the pipe kept open
    // until the daemon stopped.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = String::new();
    for _ in 0..2 {
        std::io::BufRead::read_line(&mut out, &mut lines).unwrap();
    }
    assert!(
        lines.starts_with("arca: serving NBD on 0.0.0.0:"),
        "{lines}"
    );
    let status = crate::common::process::terminate(&mut child, std::time::Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("non-loopback"), "{log}");
}
