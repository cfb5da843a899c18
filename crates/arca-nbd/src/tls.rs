//! TLS on the data path: `NBD_OPT_STARTTLS` upgrades a connection during the handshake
//! (NetworkBlockDevice/nbd doc/proto.md, "TLS support"), with x509 server credentials and,
//! optionally, client certificates verified against a CA (rustls), or with pre-shared keys
//! (GnuTLS, see [`crate::psk`]).
//!
//! A connection is a [`Wire`]: the TCP socket, plain or carrying one TLS session. With rustls, in the
//! transmission phase one thread reads requests while several workers send replies, so the
//! session is shared behind a lock that is held only to decrypt or encrypt, never across a
//! socket wait. Records must reach the socket in the order rustls made them: a second lock
//! (`send`) orders encrypt-then-send as one step; the lock order is `send` before `conn`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use crate::access::Identity;
use crate::psk::{PskCredentials, PskSession};

/// Whether the server offers TLS and whether it insists on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// No TLS: STARTTLS is answered `NBD_REP_ERR_UNSUP` ("NOTLS" in the protocol).
    #[default]
    Off,
    /// TLS when the client asks for it; plain clients are served too ("SELECTIVETLS" with no
    /// TLS-only export).
    On,
    /// Every option but STARTTLS and ABORT is refused with `NBD_REP_ERR_TLS_REQD` until the
    /// upgrade, and EXPORT_NAME before it ends the session ("FORCEDTLS").
    Require,
}

impl FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<TlsMode, String> {
        match s {
            "off" => Ok(TlsMode::Off),
            "on" => Ok(TlsMode::On),
            "require" => Ok(TlsMode::Require),
            _ => Err(format!("expected off, on or require, got {s:?}")),
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Off => "off",
            TlsMode::On => "on",
            TlsMode::Require => "require",
        })
    }
}

/// A credential file that could not be used. Names the file and what was wrong with it,
/// never its contents.
#[derive(Debug)]
pub struct TlsSetupError {
    pub path: Option<PathBuf>,
    pub message: String,
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TlsSetupError {}

fn setup_error(path: &Path, message: impl fmt::Display) -> TlsSetupError {
    TlsSetupError {
        path: Some(path.to_path_buf()),
        message: message.to_string(),
    }
}

/// The server's TLS settings: the mode and, unless it is `Off`, the credentials.
#[derive(Clone, Default)]
pub struct TlsConfig {
    mode: TlsMode,
    server: Option<Arc<ServerConfig>>,
    /// Pre-shared keys instead of certificates.
    psk: Option<Arc<PskCredentials>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The credentials stay out of debug output.
        f.debug_struct("TlsConfig")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Reads every certificate of a PEM file (at least one).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| setup_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup_error(path, e))?;
    if certs.is_empty() {
        return Err(setup_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

impl TlsConfig {
    /// No TLS.
    pub fn off() -> TlsConfig {
        TlsConfig::default()
    }

    /// TLS in `mode` (`On` or `Require`) with the certificate chain and private key of these
    /// PEM files; with `client_ca`, every client must present a certificate that CA signed.
    pub fn from_files(
        mode: TlsMode,
        cert_path: &Path,
        key_path: &Path,
        client_ca: Option<&Path>,
    ) -> Result<TlsConfig, TlsSetupError> {
        assert!(mode != TlsMode::Off, "credentials are for TLS modes");
        let certs = load_certificates(cert_path)?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
            // The parser's message may quote the file; say only what kind of failure it was.
            let kind = match e {
                rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in the file",
                rustls::pki_types::pem::Error::Io(_) => "cannot read the key file",
                _ => "the key file is not a valid PEM private key",
            };
            setup_error(key_path, kind)
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| setup_error(cert_path, e))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca_path) => {
                let mut roots = RootCertStore::empty();
                for c in load_certificates(ca_path)? {
                    roots.add(c).map_err(|e| setup_error(ca_path, e))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| setup_error(ca_path, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let server = builder
            .with_single_cert(certs, key)
            .map_err(|e| setup_error(cert_path, format!("certificate and key: {e}")))?;
        Ok(TlsConfig {
            mode,
            server: Some(Arc::new(server)),
            psk: None,
        })
    }

    /// TLS in `mode` (`On` or `Require`) with the pre-shared keys of a GnuTLS key file
    /// (`username:hexkey` lines, as qemu's and libnbd's PSK files); an error when the file is
    /// malformed or the GnuTLS library cannot be loaded.
    pub fn from_psk_file(mode: TlsMode, path: &Path) -> Result<TlsConfig, TlsSetupError> {
        assert!(mode != TlsMode::Off, "credentials are for TLS modes");
        let psk = PskCredentials::from_file(path).map_err(|e| setup_error(path, e))?;
        Ok(TlsConfig {
            mode,
            server: None,
            psk: Some(Arc::new(psk)),
        })
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }
}

/// The TLS session a connection's threads share.
struct Shared {
    conn: Mutex<ServerConnection>,
    /// Held from encrypting a message to handing its records to the socket.
    send: Mutex<()>,
}

/// Received TLS bytes are read off the socket in pieces of this size.
const RAW_READ_BYTES: usize = 64 * 1024;
/// Plaintext is encrypted and sent in pieces of this size, so a large reply is never held
/// twice in memory nor the session locked for long.
const SEND_CHUNK_BYTES: usize = 256 * 1024;

/// A connection's TLS session, shared by its reading and writing halves.
#[derive(Clone)]
enum Session {
    Rustls(Arc<Shared>),
    Psk(Arc<PskSession>),
}

/// One end of a connection: the socket, and its TLS session once STARTTLS upgraded it. After
/// [`Wire::split`] one half reads and the other writes.
pub(crate) struct Wire {
    tcp: TcpStream,
    tls: Option<Session>,
    /// TLS bytes received and not yet handed to rustls (`raw[raw_start..raw_end]`).
    raw: Vec<u8>,
    raw_start: usize,
    raw_end: usize,
    /// Plaintext rustls holds for this reader, as of the last count.
    plaintext_bytes: usize,
    /// Encrypted records on their way to the socket (reused).
    out: Vec<u8>,
}

/// Why a TLS handshake failed (untrusted or missing client certificate, no common version...).
#[derive(Debug)]
struct HandshakeFailed(io::Error);

impl fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS handshake failed: {}", self.0)
    }
}

impl std::error::Error for HandshakeFailed {}

/// Whether a connection ended because its TLS handshake failed.
pub(crate) fn is_handshake_failure(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<HandshakeFailed>())
}

fn invalid(e: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl Wire {
    pub fn plain(tcp: TcpStream) -> Wire {
        Wire {
            tcp,
            tls: None,
            raw: Vec::new(),
            raw_start: 0,
            raw_end: 0,
            plaintext_bytes: 0,
            out: Vec::new(),
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Runs the TLS handshake as the server, right after STARTTLS was acknowledged. The
    /// socket's read timeout bounds each wait. An error (see [`is_handshake_failure`]) leaves
    /// the connection unusable.
    pub fn start_tls(&mut self, tls: &TlsConfig) -> io::Result<()> {
        assert!(self.tls.is_none(), "STARTTLS on a TLS connection");
        let done = match (&tls.psk, &tls.server) {
            (Some(creds), _) => PskSession::handshake(creds, self.tcp.as_raw_fd())
                .map(|s| self.tls = Some(Session::Psk(Arc::new(s)))),
            (None, Some(config)) => self.handshake(config),
            (None, None) => Err(io::Error::other("no TLS credentials")),
        };
        done.map_err(|e| io::Error::new(e.kind(), HandshakeFailed(e)))
    }

    fn handshake(&mut self, config: &Arc<ServerConfig>) -> io::Result<()> {
        let mut conn = ServerConnection::new(config.clone()).map_err(invalid)?;
        // Replies are encrypted as they come; the send lock bounds what is queued.
        conn.set_buffer_limit(None);
        while conn.is_handshaking() {
            let (read, _) = conn.complete_io(&mut self.tcp)?;
            if read == 0 && conn.is_handshaking() && !conn.wants_write() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client left during the TLS handshake",
                ));
            }
        }
        // The handshake may have read the first option's records too.
        let state = conn.process_new_packets().map_err(invalid)?;
        self.plaintext_bytes = state.plaintext_bytes_to_read();
        self.raw = vec![0; RAW_READ_BYTES];
        self.tls = Some(Session::Rustls(Arc::new(Shared {
            conn: Mutex::new(conn),
            send: Mutex::new(()),
        })));
        Ok(())
    }

    /// The identity a verified client certificate proves (none without TLS or a certificate).
    pub fn peer_identity(&self) -> Option<Identity> {
        let shared = match self.tls.as_ref()? {
            Session::Rustls(shared) => shared,
            Session::Psk(s) => return s.user().map(|user| Identity::Psk { user }),
        };
        let conn = shared.conn.lock();
        let der = conn.peer_certificates()?.first()?;
        let identity = Identity::from_certificate(der);
        if identity.is_none() {
            tracing::warn!("cannot read the subject of a verified client certificate");
        }
        identity
    }

    /// A reading half (taking the received bytes still held) and a writing half.
    pub fn split(self) -> io::Result<(Wire, Wire)> {
        let writer = Wire {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.clone(),
            raw: Vec::new(),
            raw_start: 0,
            raw_end: 0,
            plaintext_bytes: 0,
            out: Vec::new(),
        };
        Ok((self, writer))
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.tcp.shutdown(how)
    }

    /// Tells a TLS peer the session ends (best effort; plain connections have nothing to say).
    pub fn close_notify(&mut self) {
        let shared = match &self.tls {
            None => return,
            Some(Session::Psk(s)) => return s.close_notify(),
            Some(Session::Rustls(shared)) => shared.clone(),
        };
        let _order = shared.send.lock();
        let mut conn = shared.conn.lock();
        conn.send_close_notify();
        self.out.clear();
        while conn.wants_write() {
            if conn.write_tls(&mut self.out).is_err() {
                return;
            }
        }
        drop(conn);
        let _ = self.tcp.write_all(&self.out);
    }

    /// Bytes received and not yet read: plaintext held by rustls, received records not yet
    /// decrypted, and what waits on the socket (0 there when unknown).
    pub fn pending_bytes(&self) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer, which is valid for the call.
        let rc = unsafe { libc::ioctl(self.tcp.as_raw_fd(), libc::FIONREAD, &mut n) };
        let socket = if rc == 0 { n.max(0) as usize } else { 0 };
        let psk = match &self.tls {
            Some(Session::Psk(s)) => s.pending(),
            _ => 0,
        };
        socket + psk + self.plaintext_bytes + (self.raw_end - self.raw_start)
    }

    /// Sends what rustls queued (alerts, key updates) outside a reply.
    fn flush_queued(&mut self, shared: &Shared) -> io::Result<()> {
        let _order = shared.send.lock();
        self.out.clear();
        {
            let mut conn = shared.conn.lock();
            while conn.wants_write() {
                conn.write_tls(&mut self.out)?;
            }
        }
        self.tcp.write_all(&self.out)
    }

    fn read_tls(&mut self, shared: &Arc<Shared>, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Whether records were decrypted (so plaintext may now be there), and whether
            // rustls has something to send in answer.
            let (mut decrypted, mut flush) = (false, false);
            {
                let mut conn = shared.conn.lock();
                match conn.reader().read(buf) {
                    Ok(n) => {
                        self.plaintext_bytes = self.plaintext_bytes.saturating_sub(n);
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.raw_start < self.raw_end {
                    let mut held = &self.raw[self.raw_start..self.raw_end];
                    let used = conn.read_tls(&mut held)?;
                    self.raw_start += used;
                    match conn.process_new_packets() {
                        Ok(state) => self.plaintext_bytes = state.plaintext_bytes_to_read(),
                        Err(e) => {
                            // rustls queued an alert for the peer: send it, then give up.
                            drop(conn);
                            let _ = self.flush_queued(shared);
                            return Err(invalid(e));
                        }
                    }
                    flush = conn.wants_write();
                    decrypted = true;
                }
            }
            if flush {
                self.flush_queued(shared)?;
            }
            if decrypted {
                continue;
            }
            // Wait for more records without holding the session: workers keep sending.
            let n = self.tcp.read(&mut self.raw)?;
            if n == 0 {
                // The client closed the socket without close_notify: the end of the stream.
                return Ok(0);
            }
            self.raw_start = 0;
            self.raw_end = n;
        }
    }

    fn write_tls(&mut self, shared: &Arc<Shared>, data: &[u8]) -> io::Result<()> {
        let _order = shared.send.lock();
        for chunk in data.chunks(SEND_CHUNK_BYTES) {
            self.out.clear();
            {
                let mut conn = shared.conn.lock();
                conn.writer().write_all(chunk)?;
                while conn.wants_write() {
                    conn.write_tls(&mut self.out)?;
                }
            }
            self.tcp.write_all(&self.out)?;
        }
        if self.out.capacity() > 4 * SEND_CHUNK_BYTES {
            self.out = Vec::new();
        }
        Ok(())
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.clone() {
            None => self.tcp.read(buf),
            Some(Session::Rustls(shared)) => self.read_tls(&shared, buf),
            Some(Session::Psk(s)) => s.recv(buf),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.tls.clone() {
            None => self.tcp.write_all(buf),
            Some(Session::Rustls(shared)) => self.write_tls(&shared, buf),
            Some(Session::Psk(s)) => s.send_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
