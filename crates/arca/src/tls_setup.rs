//! `arca serve`'s options for serving beyond loopback: TLS on NBD and on the API, and the
//! rules that a non-loopback NBD address needs TLS required (or an explicit `--nbd-insecure`)
//! and a non-loopback API needs HTTPS (or an explicit `--api-insecure`) besides its token.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use anyhow::{Context, Result, bail};
use arca_nbd::{AccessRules, TlsConfig, TlsMode};

/// Reads an access rules file; the error names the file and the line.
pub fn load_access(path: &Path) -> Result<AccessRules> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading NBD access rules {}", path.display()))?;
    AccessRules::parse(&text)
        .map_err(|e| anyhow::anyhow!("NBD access rules {}: {e}", path.display()))
}

/// Rereads the access rules file on every SIGHUP and gives the server the new rules; a file
/// that cannot be read or parsed leaves the current rules in force (and says why).
pub fn reload_access_on_hup(path: PathBuf, server: Weak<arca_nbd::Server>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .context("installing the SIGHUP handler")?;
    std::thread::Builder::new()
        .name("nbd-access-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                let Some(server) = server.upgrade() else {
                    return;
                };
                match load_access(&path) {
                    Ok(rules) => {
                        tracing::info!(rules = rules.len(), path = %path.display(), "reloaded the NBD access rules");
                        server.set_access(rules);
                    }
                    Err(e) => tracing::error!("{e:#}; the current rules stay in force"),
                }
            }
        })
        .context("starting the access rules reloader")?;
    Ok(())
}

#[derive(clap::Args, Debug, Default)]
pub struct TlsArgs {
    /// TLS on NBD: off; on (clients may upgrade with NBD_OPT_STARTTLS); require (every option
    /// before the upgrade is refused with NBD_REP_ERR_TLS_REQD)
    #[arg(long, value_name = "MODE", default_value = "off")]
    pub nbd_tls: TlsMode,
    /// PEM certificate chain NBD presents (with --nbd-tls on or require)
    #[arg(long, value_name = "FILE")]
    pub nbd_tls_cert: Option<PathBuf>,
    /// PEM private key of --nbd-tls-cert
    #[arg(long, value_name = "FILE")]
    pub nbd_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): every NBD client must present a certificate one of them signed
    #[arg(long, value_name = "FILE")]
    pub nbd_tls_client_ca: Option<PathBuf>,
    /// Export access rules, one `EXPORT MODE CLIENT` a line (see the README): with rules, a
    /// client opens and lists only the exports they grant it. Reread on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub nbd_access: Option<PathBuf>,
    /// Pre-shared keys instead of certificates: a GnuTLS key file of `username:hexkey` lines
    /// (as qemu's tls-creds-psk and libnbd's tls-psk-file read); needs libgnutls.so.30
    #[arg(long, value_name = "FILE")]
    pub nbd_tls_psk: Option<PathBuf>,
    /// Serve NBD on a non-loopback address without --nbd-tls require: anyone who reaches the
    /// port can then read and write every export, and data crosses the network in clear
    #[arg(long)]
    pub nbd_insecure: bool,
    /// Serve the API over HTTPS with this PEM certificate chain (with --api-tls-key)
    #[arg(long, value_name = "FILE")]
    pub api_tls_cert: Option<PathBuf>,
    /// PEM private key of --api-tls-cert
    #[arg(long, value_name = "FILE")]
    pub api_tls_key: Option<PathBuf>,
    /// Serve the API on a non-loopback address over plain HTTP: its token then crosses the
    /// network in clear
    #[arg(long)]
    pub api_insecure: bool,
}

impl TlsArgs {
    /// The NBD server's TLS settings, with the credential files read and checked.
    pub fn nbd_tls(&self) -> Result<TlsConfig> {
        if self.nbd_tls == TlsMode::Off {
            let given = self.nbd_tls_cert.is_some()
                || self.nbd_tls_key.is_some()
                || self.nbd_tls_client_ca.is_some()
                || self.nbd_tls_psk.is_some();
            if given {
                bail!("NBD TLS credentials were given but --nbd-tls is off (use on or require)");
            }
            return Ok(TlsConfig::off());
        }
        if let Some(psk) = &self.nbd_tls_psk {
            let x509 = self.nbd_tls_cert.is_some()
                || self.nbd_tls_key.is_some()
                || self.nbd_tls_client_ca.is_some();
            if x509 {
                bail!("--nbd-tls-psk replaces the certificate options: give one or the other");
            }
            return TlsConfig::from_psk_file(self.nbd_tls, psk)
                .map_err(|e| anyhow::anyhow!("NBD TLS pre-shared keys: {e}"));
        }
        let (Some(cert), Some(key)) = (&self.nbd_tls_cert, &self.nbd_tls_key) else {
            bail!(
                "--nbd-tls {} needs --nbd-tls-cert and --nbd-tls-key (or --nbd-tls-psk)",
                self.nbd_tls
            );
        };
        let ca = self.nbd_tls_client_ca.as_deref();
        TlsConfig::from_files(self.nbd_tls, cert, key, ca)
            .map_err(|e| anyhow::anyhow!("NBD TLS credentials: {e}"))
    }

    /// The export access rules of --nbd-access (none: every export open to every client).
    pub fn nbd_access(&self) -> Result<AccessRules> {
        match &self.nbd_access {
            None => Ok(AccessRules::open()),
            Some(path) => load_access(path),
        }
    }

    /// The API's TLS settings when --api-tls-cert and --api-tls-key are given.
    pub fn api_tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>> {
        match (&self.api_tls_cert, &self.api_tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => arca_api::tls::server_config(cert, key)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("API TLS credentials: {e}")),
            _ => bail!("--api-tls-cert and --api-tls-key go together"),
        }
    }

    /// Refuses a non-loopback API over plain HTTP unless `--api-insecure` says it is meant
    /// (then warns). The token rule is checked beside it.
    pub fn check_api_exposure(&self, addr: SocketAddr, tls: bool) -> Result<()> {
        if addr.ip().is_loopback() || tls {
            return Ok(());
        }
        if !self.api_insecure {
            bail!(
                "refusing to serve the API on non-loopback address {addr} over plain HTTP: \
                 its token would cross the network in clear. Use --api-tls-cert and \
                 --api-tls-key, or --api-insecure to accept that"
            );
        }
        tracing::warn!(%addr, "serving the API on a non-loopback address over plain HTTP (--api-insecure)");
        Ok(())
    }

    /// Refuses a non-loopback NBD address (any the name resolves to) unless TLS is required
    /// or `--nbd-insecure` says the exposure is meant (then warns).
    pub fn check_nbd_exposure(&self, nbd: &str) -> Result<()> {
        let addrs: Vec<SocketAddr> = nbd
            .to_socket_addrs()
            .with_context(|| format!("invalid --nbd address {nbd}"))?
            .collect();
        for addr in addrs {
            self.check_nbd_addr(addr)?;
        }
        Ok(())
    }

    fn check_nbd_addr(&self, addr: SocketAddr) -> Result<()> {
        if addr.ip().is_loopback() || self.nbd_tls == TlsMode::Require {
            return Ok(());
        }
        if !self.nbd_insecure {
            bail!(
                "refusing to serve NBD on non-loopback address {addr} with --nbd-tls {}: \
                 clients could read and write every export in clear. Use --nbd-tls require \
                 with --nbd-tls-cert/--nbd-tls-key, or --nbd-insecure to accept that",
                self.nbd_tls
            );
        }
        tracing::warn!(
            %addr,
            tls = %self.nbd_tls,
            "serving NBD on a non-loopback address without requiring TLS (--nbd-insecure): \
             anyone who reaches it can read and write every export"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_loopback_nbd_needs_tls_required_or_insecure() {
        let plain = TlsArgs::default();
        assert!(plain.check_nbd_addr(addr("127.0.0.1:10809")).is_ok());
        assert!(plain.check_nbd_addr(addr("[::1]:10809")).is_ok());
        let e = plain.check_nbd_addr(addr("0.0.0.0:10809")).unwrap_err();
        assert!(e.to_string().contains("--nbd-insecure"), "{e}");
        let on = TlsArgs {
            nbd_tls: TlsMode::On,
            ..TlsArgs::default()
        };
        assert!(on.check_nbd_addr(addr("192.0.2.1:10809")).is_err());
        let require = TlsArgs {
            nbd_tls: TlsMode::Require,
            ..TlsArgs::default()
        };
        assert!(require.check_nbd_addr(addr("0.0.0.0:10809")).is_ok());
        let insecure = TlsArgs {
            nbd_insecure: true,
            ..TlsArgs::default()
        };
        assert!(insecure.check_nbd_addr(addr("0.0.0.0:10809")).is_ok());
    }

    #[test]
    fn tls_modes_need_their_credentials() {
        let missing = TlsArgs {
            nbd_tls: TlsMode::Require,
            ..TlsArgs::default()
        };
        let e = missing.nbd_tls().unwrap_err().to_string();
        assert!(e.contains("--nbd-tls-cert"), "{e}");
        let stray = TlsArgs {
            nbd_tls_cert: Some("cert.pem".into()),
            ..TlsArgs::default()
        };
        assert!(stray.nbd_tls().is_err());
        let unreadable = TlsArgs {
            nbd_tls: TlsMode::On,
            nbd_tls_cert: Some("/nonexistent/cert.pem".into()),
            nbd_tls_key: Some("/nonexistent/key.pem".into()),
            ..TlsArgs::default()
        };
        let e = unreadable.nbd_tls().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }

    #[test]
    fn pre_shared_keys_replace_certificates() {
        let both = TlsArgs {
            nbd_tls: TlsMode::Require,
            nbd_tls_psk: Some("keys.psk".into()),
            nbd_tls_cert: Some("cert.pem".into()),
            ..TlsArgs::default()
        };
        let e = both.nbd_tls().unwrap_err().to_string();
        assert!(e.contains("one or the other"), "{e}");
        let off = TlsArgs {
            nbd_tls_psk: Some("keys.psk".into()),
            ..TlsArgs::default()
        };
        assert!(off.nbd_tls().is_err());
        let missing = TlsArgs {
            nbd_tls: TlsMode::On,
            nbd_tls_psk: Some("/nonexistent/keys.psk".into()),
            ..TlsArgs::default()
        };
        let e = missing.nbd_tls().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/keys.psk"), "{e}");
    }
}
