//! The listener: accepts connections up to a cap in all and one per client address, runs each
//! on its own thread through the handshake and transmission phases (closing it once idle), and
//! shuts down cleanly: stop accepting, let in-flight requests finish, return. The owner can
//! list the connected clients and disconnect those of one export.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};

use crate::access::AccessRules;
use crate::device::Exports;
use crate::handshake::{Refusal, Session, negotiate};
use crate::tls::{TlsConfig, Wire};
use crate::transmission::{self, Ended};

/// Bounds on what one client can make the server hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest READ or WRITE payload (advertised as the maximum block size).
    pub payload_max_bytes: u32,
    /// Requests queued or running per connection.
    pub in_flight_max: usize,
    /// Payload bytes held per connection.
    pub in_flight_bytes_max: usize,
    /// Connections served at once (in the handshake or past it), from all addresses.
    pub connections_max: usize,
    /// Connections served at once from one client address.
    pub connections_per_host_max: usize,
    /// Options per handshake; a client that lists the exports gets room to ask about each.
    pub options_max: usize,
    /// How long the handshake may wait for each message from the client.
    pub handshake_timeout: Duration,
    /// A connection past the handshake with no request in flight and none arriving for this
    /// long is closed (after at most twice this when a request finished meanwhile). None: never.
    pub idle_timeout: Option<Duration>,
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
            connections_per_host_max: 32,
            options_max: 1024,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: None,
            workers_per_connection: 16,
        }
    }
}

/// A connection past the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: u64,
    pub peer: String,
    /// The export's name as resolved in the handshake (`vol1`, `vol1@snap`).
    pub export: String,
    pub read_only: bool,
    /// When the handshake finished, in seconds since the Unix epoch.
    pub connected_unix: u64,
}

/// Closes one connection from outside its thread.
struct Closer {
    control: TcpStream,
    closing: AtomicBool,
}

impl Closer {
    /// The reader takes no further request and its blocked read returns; requests already
    /// read finish and their replies go out, then the connection closes. True the first time.
    fn close(&self) -> bool {
        let first = !self.closing.swap(true, Ordering::SeqCst);
        let _ = self.control.shutdown(Shutdown::Read);
        first
    }
}

/// The sessions past the handshake, shared with the connection threads: each admits its own
/// session (so none is missed however the accept loop's bookkeeping is timed) and removes it
/// when it ends, however it ends.
#[derive(Default)]
struct Registry {
    table: Mutex<Table>,
    /// Signalled when a session leaves.
    left: Condvar,
}

#[derive(Default)]
struct Table {
    live: BTreeMap<u64, (SessionInfo, Arc<Closer>)>,
    /// Counts disconnect() calls.
    epoch: u64,
    /// Per export, the epoch of its last disconnect(). A handshake begun before it may have
    /// opened the export before the owner stopped opens, so it is refused. One entry per
    /// export ever disconnected.
    fenced: HashMap<String, u64>,
}

impl Registry {
    fn epoch(&self) -> u64 {
        self.table.lock().epoch
    }

    /// Lists a session unless its export was disconnected since `begun` or it is closing.
    fn admit(&self, info: SessionInfo, closer: &Arc<Closer>, begun: u64) -> bool {
        let mut t = self.table.lock();
        let fenced = t.fenced.get(&info.export).is_some_and(|&e| e > begun);
        if fenced || closer.closing.load(Ordering::SeqCst) {
            return false;
        }
        t.live.insert(info.id, (info, closer.clone()));
        true
    }

    fn remove(&self, id: u64) {
        if self.table.lock().live.remove(&id).is_some() {
            self.left.notify_all();
        }
    }
}

/// Takes a connection's session out of the registry when its thread ends, even by panic.
struct Listed<'a> {
    registry: &'a Registry,
    id: u64,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

struct Conn {
    closer: Arc<Closer>,
    thread: JoinHandle<()>,
    ip: IpAddr,
    /// Served, not refused: counts towards the limits.
    served: bool,
}

/// Refused connections answered at once (each told why, on its own thread); past this a
/// refused connection is closed without a word, so a flood costs no more threads.
const REFUSING_MAX: usize = 16;

/// Refusals are logged at most once per this period; the others are counted into the next line.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Rate-limits the warnings about refused connections.
#[derive(Default)]
struct RefusalLog {
    /// When the last warning went out.
    last: Option<Instant>,
    /// Refusals since then not logged.
    unlogged: u64,
}

impl RefusalLog {
    fn refused(&mut self, peer: SocketAddr, limit: &'static str, max: usize) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_PERIOD)
        {
            self.unlogged += 1;
            return;
        }
        let also = std::mem::take(&mut self.unlogged);
        tracing::warn!(%peer, limit, max, also_refused = also, "refusing an NBD connection");
        self.last = Some(now);
    }

    /// Reports refusals left unlogged once their period is over, so a flood that stops is
    /// still counted in full.
    fn flush(&mut self) {
        if self.unlogged > 0 && self.last.is_some_and(|t| t.elapsed() >= REFUSAL_LOG_PERIOD) {
            let n = std::mem::take(&mut self.unlogged);
            tracing::warn!(
                refused = n,
                "refused more NBD connections since the last warning"
            );
            self.last = None;
        }
    }
}

/// An NBD server over a set of exports.
pub struct Server {
    exports: Arc<dyn Exports>,
    limits: Limits,
    conns: Mutex<HashMap<u64, Conn>>,
    next_conn: AtomicU64,
    registry: Arc<Registry>,
    refusals: Mutex<RefusalLog>,
    tls: Arc<TlsConfig>,
    /// The export access rules; replaced whole on reload, read once per handshake.
    access: Mutex<Arc<AccessRules>>,
}

impl Server {
    pub fn new(exports: Arc<dyn Exports>, limits: Limits) -> Server {
        Server {
            exports,
            limits,
            tls: Arc::default(),
            access: Mutex::default(),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            registry: Arc::default(),
            refusals: Mutex::default(),
        }
    }

    /// Serves with these TLS settings (the default is no TLS).
    pub fn with_tls(mut self, tls: TlsConfig) -> Server {
        self.tls = Arc::new(tls);
        self
    }

    /// Replaces the export access rules. Handshakes from now on follow the new rules;
    /// sessions already past their handshake keep what they were granted.
    pub fn set_access(&self, rules: AccessRules) {
        *self.access.lock() = Arc::new(rules);
    }

    /// Connections past the handshake, in id order.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let t = self.registry.table.lock();
        t.live.values().map(|(info, _)| info.clone()).collect()
    }

    /// Disconnects every client whose export is `export` (exactly: `vol1` does not cover
    /// `vol1@snap`): stops reading their requests, lets requests already read finish and
    /// their replies go out, then closes. Returns how many this call disconnected (not those
    /// already closing). A handshake for `export` still in progress is refused when it
    /// finishes, so after making `Exports::open` refuse the export, a caller that gets
    /// `wait_disconnected` true knows no client uses it.
    pub fn disconnect(&self, export: &str) -> usize {
        let mut t = self.registry.table.lock();
        t.epoch += 1;
        let epoch = t.epoch;
        t.fenced.insert(export.to_string(), epoch);
        let mut n = 0;
        for (info, closer) in t.live.values() {
            if info.export == export && closer.close() {
                tracing::info!(peer = %info.peer, export, "disconnecting client");
                n += 1;
            }
        }
        n
    }

    /// Waits until no session for `export` remains or the timeout passes; returns whether
    /// none remain. A session leaves once its last reply went out and its socket was shut down.
    pub fn wait_disconnected(&self, export: &str, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut t = self.registry.table.lock();
        loop {
            if !t.live.values().any(|(info, _)| info.export == export) {
                return true;
            }
            match deadline {
                Some(d) => {
                    if self.registry.left.wait_until(&mut t, d).timed_out() {
                        return !t.live.values().any(|(info, _)| info.export == export);
                    }
                }
                None => self.registry.left.wait(&mut t),
            }
        }
    }

    /// Accepts connections until `stop` is set, then stops reading new requests, waits for
    /// in-flight ones to finish and returns.
    pub fn serve(&self, listener: &TcpListener, stop: &AtomicBool) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, peer)) => self.start(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(listener, 100),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Running out of descriptors and the like: keep serving the others.
                    tracing::warn!("accept failed: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
            }
            self.reap();
            self.refusals.lock().flush();
        }
        self.shutdown();
        Ok(())
    }

    fn reap(&self) {
        let mut conns = self.conns.lock();
        let done: Vec<u64> = conns
            .iter()
            .filter(|(_, c)| c.thread.is_finished())
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            if let Some(c) = conns.remove(&k) {
                let _ = c.thread.join();
            }
        }
    }

    fn shutdown(&self) {
        let conns: Vec<Conn> = self.conns.lock().drain().map(|(_, v)| v).collect();
        tracing::info!(
            connections = conns.len(),
            "stopping: finishing in-flight requests"
        );
        for c in &conns {
            // Readers see end of stream; replies to requests already read still go out.
            c.closer.close();
        }
        for c in conns {
            let _ = c.thread.join();
        }
    }

    /// Whether a connection from `ip` is over a limit, and if so whether a refusal can still be
    /// answered. Counts only threads still running: one that ended frees its slot at once, however
    /// the accept loop's reaping is timed.
    fn admission(&self, ip: IpAddr) -> (Option<Refusal>, bool) {
        let conns = self.conns.lock();
        let (mut served, mut from_host, mut refusing) = (0, 0, 0);
        for c in conns.values().filter(|c| !c.thread.is_finished()) {
            if !c.served {
                refusing += 1;
            } else {
                served += 1;
                from_host += usize::from(c.ip == ip);
            }
        }
        let refusal = if served >= self.limits.connections_max {
            Some(Refusal::TooManyConnections)
        } else if from_host >= self.limits.connections_per_host_max {
            Some(Refusal::TooManyFromHost)
        } else {
            None
        };
        (refusal, refusing < REFUSING_MAX)
    }

    fn start(&self, stream: TcpStream, peer_addr: SocketAddr) {
        let ip = peer_addr.ip();
        let (refusal, can_answer) = self.admission(ip);
        if let Some(r) = refusal {
            let (limit, max) = match r {
                Refusal::TooManyConnections => ("connections", self.limits.connections_max),
                Refusal::TooManyFromHost => (
                    "connections per address",
                    self.limits.connections_per_host_max,
                ),
            };
            self.refusals.lock().refused(peer_addr, limit, max);
            if !can_answer {
                return;
            }
        }
        let peer = peer_addr.to_string();
        let Ok(control) = stream.try_clone() else {
            return;
        };
        let closer = Arc::new(Closer {
            control,
            closing: AtomicBool::new(false),
        });
        let exports = self.exports.clone();
        let tls = self.tls.clone();
        let access = self.access.lock().clone();
        let registry = self.registry.clone();
        let limits = self.limits;
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let thread_closer = closer.clone();
        let spawned = thread::Builder::new()
            .name(format!("nbd-conn-{id}"))
            .spawn(move || {
                let c = Client {
                    id,
                    peer: &peer,
                    registry: &registry,
                    closer: &thread_closer,
                    tls: &tls,
                    access: &access,
                };
                if let Err(e) = connection(stream, &*exports, limits, refusal, c) {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            });
        match spawned {
            Ok(thread) => {
                let served = refusal.is_none();
                let conn = Conn {
                    closer,
                    thread,
                    ip,
                    served,
                };
                self.conns.lock().insert(id, conn);
            }
            Err(e) => tracing::warn!("cannot start a connection thread: {e}"),
        }
    }
}

/// A connection thread's identity and its link to the registry.
struct Client<'a> {
    id: u64,
    peer: &'a str,
    registry: &'a Registry,
    closer: &'a Arc<Closer>,
    tls: &'a TlsConfig,
    access: &'a AccessRules,
}

fn connection(
    stream: TcpStream,
    exports: &dyn Exports,
    limits: Limits,
    refusal: Option<Refusal>,
    client: Client<'_>,
) -> io::Result<()> {
    let Client {
        id,
        peer,
        registry,
        closer,
        tls,
        access,
    } = client;
    // Before anything can open an export: a disconnect() from here on refuses the session.
    let begun = registry.epoch();
    let _listed = Listed { registry, id };
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    keep_alive(&stream)?;
    stream.set_read_timeout(Some(limits.handshake_timeout))?;
    let mut admit = |s: &Session| {
        let info = SessionInfo {
            id,
            peer: peer.to_string(),
            export: s.name.clone(),
            read_only: s.device.read_only(),
            connected_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        registry.admit(info, closer, begun)
    };
    let mut wire = Wire::plain(stream);
    let negotiated = negotiate(
        &mut wire, exports, &limits, tls, access, refusal, &mut admit,
    );
    let session = match negotiated {
        Ok(Some(session)) => session,
        Ok(None) => return Ok(()),
        Err(e) => {
            if crate::tls::is_handshake_failure(&e) {
                tracing::warn!(%peer, "{e}");
            }
            return Err(e);
        }
    };
    // The idle timeout: a read that waits this long wakes the reader (see transmission).
    wire.tcp()
        .set_read_timeout(limits.idle_timeout.filter(|t| !t.is_zero()))?;
    let tls_used = wire.is_tls();
    tracing::info!(%peer, export = %session.name, structured = session.structured, tls = tls_used, "client connected");
    let name = session.name.clone();
    let r = transmission::run(wire, session, limits, &closer.closing);
    if let Ok(Ended::Idle) = r {
        let idle_timeout_s = limits.idle_timeout.map_or(0, |t| t.as_secs());
        tracing::info!(%peer, export = %name, idle_timeout_s, "closed an idle connection");
    }
    tracing::info!(%peer, export = %name, "client disconnected");
    r.map(|_| ())
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

/// TCP keepalive probes after 60 s of silence, every 10 s, 6 unanswered closing it: a peer
/// that vanished (host crash, cable pulled) frees its connection slot within about two
/// minutes, while a connection merely idle (a mounted disk nobody writes to) stays open.
fn keep_alive(stream: &std::net::TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| -> io::Result<()> {
        // SAFETY: setsockopt reads one c_int through the pointer, valid for the call, on a
        // socket the stream owns.
        let r = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 60)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 6)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    fn get(stream: &std::net::TcpStream, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`, both valid for the call, on a
        // socket the stream owns.
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0);
        v
    }

    #[test]
    fn accepted_connections_probe_vanished_peers() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        super::keep_alive(&stream).unwrap();
        assert_eq!(get(&stream, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(get(&stream, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 60);
        assert_eq!(get(&stream, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 10);
        assert_eq!(get(&stream, libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 6);
    }
}
