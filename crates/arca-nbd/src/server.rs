//! The listener: accepts connections up to a cap, runs each on its own thread through the
//! handshake and transmission phases, and shuts down cleanly: stop accepting, let in-flight
//! requests finish, return.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::Mutex;

use crate::device::Exports;
use crate::handshake::{Refusal, negotiate};
use crate::transmission;

/// Bounds on what one client can make the server hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest READ or WRITE payload (advertised as the maximum block size).
    pub payload_max_bytes: u32,
    /// Requests queued or running per connection.
    pub in_flight_max: usize,
    /// Payload bytes held per connection.
    pub in_flight_bytes_max: usize,
    pub connections_max: usize,
    /// Options per handshake.
    pub options_max: usize,
    /// How long a client may take over the handshake.
    pub handshake_timeout: Duration,
    /// Most threads executing one connection's requests (its parallelism for slow I/O);
    /// they are started as the client's queue deepens.
    pub workers_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            payload_max_bytes: 32 << 20,
            in_flight_max: 128,
            in_flight_bytes_max: 128 << 20,
            connections_max: 128,
            options_max: 1024,
            handshake_timeout: Duration::from_secs(30),
            workers_per_connection: 16,
        }
    }
}

/// An NBD server over a set of exports.
pub struct Server {
    exports: Arc<dyn Exports>,
    limits: Limits,
    conns: Mutex<HashMap<u64, (TcpStream, JoinHandle<()>)>>,
    next_conn: AtomicU64,
}

impl Server {
    pub fn new(exports: Arc<dyn Exports>, limits: Limits) -> Server {
        Server {
            exports,
            limits,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
        }
    }

    /// Accepts connections until `stop` is set, then stops reading new requests, waits for
    /// in-flight ones to finish and returns.
    pub fn serve(&self, listener: &TcpListener, stop: &AtomicBool) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, peer)) => self.start(stream, peer.to_string()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(listener, 100),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Running out of descriptors and the like: keep serving the others.
                    tracing::warn!("accept failed: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
            }
            self.reap();
        }
        self.shutdown();
        Ok(())
    }

    fn reap(&self) {
        let mut conns = self.conns.lock();
        let done: Vec<u64> = conns
            .iter()
            .filter(|(_, (_, h))| h.is_finished())
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            if let Some((_, h)) = conns.remove(&k) {
                let _ = h.join();
            }
        }
    }

    fn shutdown(&self) {
        let conns: Vec<(TcpStream, JoinHandle<()>)> =
            self.conns.lock().drain().map(|(_, v)| v).collect();
        tracing::info!(
            connections = conns.len(),
            "stopping: finishing in-flight requests"
        );
        for (s, _) in &conns {
            // Readers see end of stream; replies to requests already read still go out.
            let _ = s.shutdown(Shutdown::Read);
        }
        for (_, h) in conns {
            let _ = h.join();
        }
    }

    fn start(&self, stream: TcpStream, peer: String) {
        let refusal = (self.conns.lock().len() >= self.limits.connections_max)
            .then_some(Refusal::TooManyConnections);
        let Ok(control) = stream.try_clone() else {
            return;
        };
        let exports = self.exports.clone();
        let limits = self.limits;
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let spawned = thread::Builder::new()
            .name(format!("nbd-conn-{id}"))
            .spawn(move || {
                if let Err(e) = connection(stream, &*exports, limits, refusal, &peer) {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            });
        match spawned {
            Ok(h) => {
                self.conns.lock().insert(id, (control, h));
            }
            Err(e) => tracing::warn!("cannot start a connection thread: {e}"),
        }
    }
}

fn connection(
    mut stream: TcpStream,
    exports: &dyn Exports,
    limits: Limits,
    refusal: Option<Refusal>,
    peer: &str,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(limits.handshake_timeout))?;
    let Some(session) = negotiate(&mut stream, exports, &limits, refusal)? else {
        return Ok(());
    };
    stream.set_read_timeout(None)?;
    tracing::info!(%peer, export = %session.name, structured = session.structured, "client connected");
    let name = session.name.clone();
    let r = transmission::run(stream, session, limits);
    tracing::info!(%peer, export = %name, "client disconnected");
    r
}

fn wait_readable(listener: &TcpListener, timeout_ms: i32) {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a descriptor the listener owns, for the given timeout.
    unsafe {
        libc::poll(&mut pfd, 1, timeout_ms);
    }
}
