//! What one connection holds in flight (requests and their payload bytes, bounded), and the
//! reader's view of the socket, which closes the connection once the client stays idle.
//!
//! The idle check costs nothing per request: the socket's receive timeout (set by the caller
//! to the idle timeout) wakes a reader that waited that long, and only then does the reader
//! look at what is in flight.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use crate::tls::Wire;

struct Counts {
    requests: usize,
    bytes: usize,
}

/// Budget of requests handed to the workers (or run by the reader after taking budget), from
/// the moment a request is read until its reply is sent.
pub struct InFlight {
    counts: Mutex<Counts>,
    freed: Condvar,
    /// Requests that gave their budget back: compared across an idle wait. Only changed with
    /// `counts` held; read without it.
    finished: AtomicU64,
    requests_max: usize,
    bytes_max: usize,
}

impl InFlight {
    pub fn new(requests_max: usize, bytes_max: usize) -> InFlight {
        InFlight {
            counts: Mutex::new(Counts {
                requests: 0,
                bytes: 0,
            }),
            freed: Condvar::new(),
            finished: AtomicU64::new(0),
            requests_max,
            bytes_max,
        }
    }

    fn fits(&self, c: &Counts, bytes: usize) -> bool {
        c.requests < self.requests_max && (c.requests == 0 || c.bytes + bytes <= self.bytes_max)
    }

    /// Takes budget for a request; false (taking nothing) when that would wait for a reply to
    /// leave.
    pub fn try_acquire(&self, bytes: usize) -> bool {
        let mut c = self.counts.lock();
        if !self.fits(&c, bytes) {
            return false;
        }
        c.requests += 1;
        c.bytes += bytes;
        true
    }

    pub fn acquire(&self, bytes: usize) {
        let mut c = self.counts.lock();
        while !self.fits(&c, bytes) {
            self.freed.wait(&mut c);
        }
        c.requests += 1;
        c.bytes += bytes;
    }

    pub fn release(&self, bytes: usize) {
        let mut c = self.counts.lock();
        c.requests -= 1;
        c.bytes -= bytes;
        // The lock orders the writers: a plain load and store, no atomic read-modify-write.
        let f = self.finished.load(Ordering::Relaxed);
        self.finished.store(f + 1, Ordering::Relaxed);
        self.freed.notify_all();
    }

    pub fn requests(&self) -> usize {
        self.counts.lock().requests
    }

    /// After a read waited the whole idle timeout: true when no request but the reader's `own`
    /// is in flight and none finished since `finished_before` (read before that wait), so the
    /// client was idle throughout. Requests the reader executes itself are over before it reads
    /// again; its `own` ones wait for the rest of their data (a client that stalls mid-request
    /// is idle too).
    fn stayed_idle(&self, finished_before: u64, own: usize) -> bool {
        let c = self.counts.lock();
        c.requests == own && self.finished.load(Ordering::Relaxed) == finished_before
    }
}

/// The socket as the connection's reader sees it. A receive that waits the idle timeout
/// returns `WouldBlock`; that ends the connection (an [`IdleTimeout`] error) if the client
/// stayed idle, or the wait starts again.
pub struct IdleRead<'a> {
    pub stream: Wire,
    in_flight: &'a InFlight,
    /// Requests whose budget the reader holds while it reads their data (0 or 1).
    pub own: usize,
}

impl IdleRead<'_> {
    pub fn new(stream: Wire, in_flight: &InFlight) -> IdleRead<'_> {
        IdleRead {
            stream,
            in_flight,
            own: 0,
        }
    }
}

impl Read for IdleRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let before = self.in_flight.finished.load(Ordering::Relaxed);
            match self.stream.read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.in_flight.stayed_idle(before, self.own) {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, IdleTimeout));
                    }
                }
                r => return r,
            }
        }
    }
}

/// The error an idle connection's read ends with.
#[derive(Debug)]
struct IdleTimeout;

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no request for the idle timeout")
    }
}

impl std::error::Error for IdleTimeout {}

/// Whether a read ended because the client stayed idle.
pub fn is_idle(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<IdleTimeout>())
}
