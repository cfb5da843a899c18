//! Test certificates made with the `openssl` command: a CA, a server certificate for
//! `localhost` and 127.0.0.1, two client certificates it signed (CN `backup-host` and
//! `other-host`), and a client certificate of another CA (untrusted). Laid out as qemu's and libnbd's x509 directories want them
//! (`ca-cert.pem`, `server-cert.pem`, `server-key.pem`, `client-cert.pem`, `client-key.pem`).
//! Shared by the arca-nbd and arca test harnesses.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Certs {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new EC P-256 key in `key`.
fn key(dir: &Path, key: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            key,
        ],
    );
}

fn ca(dir: &Path, prefix: &str, cn: &str) {
    let key_file = format!("{prefix}-key.pem");
    key(dir, &key_file);
    let cert = format!("{prefix}-cert.pem");
    let subject = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &key_file,
            "-out",
            &cert,
            "-days",
            "3",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A certificate for `prefix` signed by the CA `ca`, with these extensions.
fn signed(dir: &Path, prefix: &str, subject: &str, ca: &str, extensions: &str) {
    let key_file = format!("{prefix}-key.pem");
    key(dir, &key_file);
    let csr = format!("{prefix}.csr");
    let ext = format!("{prefix}.ext");
    std::fs::write(dir.join(&ext), extensions).unwrap();
    openssl(
        dir,
        &[
            "req", "-new", "-key", &key_file, "-out", &csr, "-subj", subject,
        ],
    );
    let (ca_cert, ca_key) = (format!("{ca}-cert.pem"), format!("{ca}-key.pem"));
    let cert = format!("{prefix}-cert.pem");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-set_serial",
            "2",
            "-out",
            &cert,
            "-days",
            "3",
            "-extfile",
            &ext,
        ],
    );
}

impl Certs {
    /// Makes the certificates in `dir` (created).
    pub fn make(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        ca(dir, "ca", "arca test CA");
        ca(dir, "other-ca", "another CA");
        let server_ext = "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
             basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n";
        let client_ext = "basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n";
        signed(dir, "server", "/O=arca/CN=localhost", "ca", server_ext);
        signed(dir, "client", "/O=arca/CN=backup-host", "ca", client_ext);
        signed(dir, "other", "/O=arca/CN=other-host", "ca", client_ext);
        signed(dir, "stranger", "/CN=stranger", "other-ca", client_ext);
        Certs {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A directory as qemu and libnbd read for a client: the CA and, with `identity`
    /// ("client", "other" or "stranger"), that client certificate and key as client-cert/-key.pem.
    pub fn client_dir(&self, name: &str, identity: Option<&str>) -> PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(self.path("ca-cert.pem"), d.join("ca-cert.pem")).unwrap();
        if let Some(id) = identity {
            std::fs::copy(
                self.path(&format!("{id}-cert.pem")),
                d.join("client-cert.pem"),
            )
            .unwrap();
            std::fs::copy(
                self.path(&format!("{id}-key.pem")),
                d.join("client-key.pem"),
            )
            .unwrap();
        }
        d
    }
}
