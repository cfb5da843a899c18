//! Which certificate authorities the client trusts for an `https://` API: the `--ca-file`
//! (or `ARCA_CA_FILE`) alone when given, else the system's bundle (`SSL_CERT_FILE`, or
//! Debian's /etc/ssl/certs/ca-certificates.crt), else the Mozilla roots built into the client.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Debian's bundle of the system's trusted roots (package ca-certificates).
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading CA file {}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        // A key or anything else in a CA file is not trusted for anything.
        let item = item.with_context(|| format!("CA file {}", path.display()))?;
        if let PemItem::Certificate(c) = item {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        bail!("CA file {}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}

/// The system's bundle, when there is one.
fn system_bundle() -> Option<PathBuf> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    env.into_iter()
        .chain([PathBuf::from(SYSTEM_BUNDLE)])
        .find(|p| p.is_file())
}

/// The client's TLS settings.
pub fn tls_config(ca_file: Option<&Path>) -> Result<TlsConfig> {
    let roots = match ca_file.map(PathBuf::from).or_else(system_bundle) {
        Some(path) => RootCerts::Specific(Arc::new(certificates(&path)?)),
        None => RootCerts::WebPki,
    };
    Ok(TlsConfig::builder().root_certs(roots).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = tls_config(Some(&empty)).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = tls_config(Some(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(format!("{e:#}").contains("missing.pem"), "{e:#}");
    }
}
