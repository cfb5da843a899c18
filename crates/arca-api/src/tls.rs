//! HTTPS for the API: rustls through tokio-rustls under axum's server.
//!
//! TLS handshakes run in their own tasks, not in the accept loop, so one slow or silent client
//! cannot hold up the others; each is bounded in time, and at most
//! `HANDSHAKES_MAX` run at once (further connections wait in the kernel's backlog).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::server::{ApiState, router};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once.
const HANDSHAKES_MAX: usize = 64;

/// A certificate or key file that could not be used: the file and what was wrong, never
/// its contents.
#[derive(Debug)]
pub struct TlsFileError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for TlsFileError {}

fn file_error(path: &Path, message: impl fmt::Display) -> TlsFileError {
    TlsFileError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The API's TLS settings from a PEM certificate chain and its private key (HTTP/1.1 only).
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsFileError> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| file_error(cert_path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert_path, e))?;
    if certs.is_empty() {
        return Err(file_error(cert_path, "no PEM certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        let kind = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in the file",
            rustls::pki_types::pem::Error::Io(_) => "cannot read the key file",
            _ => "the key file is not a valid PEM private key",
        };
        file_error(key_path, kind)
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| file_error(cert_path, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| file_error(cert_path, format!("certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The address of a client connected over TLS, as requests see it (the audit trail).
#[derive(Debug, Clone, Copy)]
pub struct TlsPeer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for TlsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> TlsPeer {
        TlsPeer(*stream.remote_addr())
    }
}

/// Connections whose TLS handshake finished, as axum's server takes them.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task ended (it only does when this listener is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: keep serving the others.
                tracing::warn!("API accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "API TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "API TLS handshake timed out"),
            }
        });
    }
}

/// Serves the API over HTTPS until `shutdown` completes.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(HANDSHAKES_MAX);
    let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
    let listener = TlsListener {
        ready: rx,
        local,
        acceptor,
    };
    let app = router(state).into_make_service_with_connect_info::<TlsPeer>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
