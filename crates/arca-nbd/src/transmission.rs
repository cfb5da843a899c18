//! The transmission phase. A reader thread takes requests off the socket. What needs no wait
//! it executes itself: reads of cached data (the device says whether a read would wait) and
//! writes without FUA (a buffered write lands in the page cache). Their replies collect in a
//! batch that leaves in one send before the reader next waits on the socket. Everything else
//! (reads that would wait for the disk, flushes, FUA writes, trims) goes to the connection's
//! workers, which execute it and send each reply as they finish, so replies may leave out of
//! order. Workers belong to one connection: a client that stops reading its replies stalls
//! only its own workers. A request arriving when nothing is in flight and nothing else waits
//! on the socket runs on the reader thread too: at queue depth 1 a hand-off would only add a
//! thread wake-up.
//!
//! The reader also watches for a sequential stream of reads and has a worker read ahead of it
//! (see [`crate::readahead`]), so that the stream's later reads find their data cached.
//!
//! Why the reader executes so much itself: on a cached working set a request costs a few
//! microseconds, and a hand-off to another thread (a wake-up, often a context switch on a
//! small machine) cost as much as the request again.
//!
//! Memory is bounded per connection: at most `in_flight_max` requests and
//! `in_flight_bytes_max` bytes of payload (write data or read replies) are held by workers
//! from the moment a request is read until its reply is sent; past that the reader stops
//! reading (TCP back-pressure, not an error). The reader's own batch holds at most
//! `BATCH_BYTES_MAX` plus one reply.
//!
//! A connection whose client stays idle for the idle timeout is closed (see
//! [`crate::inflight`]).

use std::io::{self, BufRead, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use crossbeam_channel::{Receiver, unbounded};
use parking_lot::Mutex;

use crate::device::{DevError, DevResult, Device};
use crate::handshake::Session;
use crate::inflight::{IdleRead, InFlight, is_idle};
use crate::proto::*;
use crate::readahead::ReadAhead;
use crate::server::Limits;
use crate::tls::Wire;

/// Large enough to take many small pipelined requests (4 KiB writes with their data) in one
/// read, small enough that most of a large write payload bypasses it (one copy, socket to
/// payload, instead of two).
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Replies the reader executed itself are sent together once they hold this many bytes (or
/// before the reader waits on the socket, whichever comes first).
const BATCH_BYTES_MAX: usize = 256 * 1024;

/// Larger reads always go to the workers. Copying a large read (from the page cache, then
/// into the socket) takes long enough that a hand-off costs little beside it, and workers
/// overlap those copies on several cores. And a read that would wait still starts the kernel's
/// readahead before it declines: done for every large request of a sequential stream, then
/// again by the worker, that disturbed readahead enough to cost a third of a cold sequential
/// read's throughput.
const INLINE_READ_BYTES_MAX: u32 = 64 * 1024;

/// Buffers kept between requests (the reader's write scratch, a worker's reply) are dropped
/// when a large request grew them past this, so an idle connection holds little.
const KEEP_BUFFER_BYTES_MAX: usize = 4 << 20;

/// Work for the connection's workers.
enum Job {
    /// A request read off the socket, with its write data.
    Request(Request, Vec<u8>),
    /// Read ahead `length` bytes from `offset` (see [`crate::readahead`]).
    Prefetch(u64, u64),
}

/// How the transmission phase ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client left or was disconnected, or broke the protocol.
    Closed,
    /// No request for the idle timeout.
    Idle,
}

pub struct Connection {
    session: Session,
    writer: Mutex<Wire>,
    /// Set after a failed send: the client is gone, replies are dropped.
    broken: AtomicBool,
    in_flight: InFlight,
    limits: Limits,
}

impl Connection {
    fn send(&self, reply: &[u8]) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        let mut w = self.writer.lock();
        if w.write_all(reply).is_err() {
            self.broken.store(true, Ordering::Relaxed);
            // The reader then sees the end of the stream and stops taking requests.
            let _ = w.shutdown(Shutdown::Both);
        }
    }
}

fn work_loop(conn: &Connection, rx: Receiver<Job>, idle: &AtomicUsize) {
    // Reused: a fresh buffer per reply costs page faults and zeroing by the kernel.
    let mut reply = Vec::new();
    loop {
        idle.fetch_add(1, Ordering::SeqCst);
        let got = rx.recv();
        idle.fetch_sub(1, Ordering::SeqCst);
        match got {
            Ok(Job::Request(req, payload)) => serve_one(conn, req, payload, &mut reply),
            Ok(Job::Prefetch(offset, length)) => conn.session.device.prefetch(offset, length),
            Err(_) => return,
        }
    }
}

/// Executes one request, sends its reply and gives its budget back.
fn serve_one(conn: &Connection, req: Request, payload: Vec<u8>, reply: &mut Vec<u8>) {
    reply.clear();
    handle(conn, req, &payload, reply);
    let held = if req.kind == CMD_WRITE {
        payload.len()
    } else {
        held_bytes(conn, &req)
    };
    drop(payload);
    conn.send(reply);
    conn.in_flight.release(held);
    if reply.capacity() > KEEP_BUFFER_BYTES_MAX {
        *reply = Vec::new();
    }
}

/// Sends the replies the reader executed itself.
fn send_batch(conn: &Connection, batch: &mut Vec<u8>) {
    if !batch.is_empty() {
        conn.send(batch);
        batch.clear();
    }
    if batch.capacity() > KEEP_BUFFER_BYTES_MAX {
        *batch = Vec::new();
    }
}

/// Serves requests until the client disconnects, breaks the protocol, or `closing` is set and
/// the socket's read side shut down (server shutdown, disconnect). In-flight requests finish
/// before it returns.
pub fn run(
    stream: Wire,
    session: Session,
    limits: Limits,
    closing: &AtomicBool,
) -> io::Result<Ended> {
    let (read_half, write_half) = stream.split()?;
    let conn = Arc::new(Connection {
        session,
        writer: Mutex::new(write_half),
        broken: AtomicBool::new(false),
        in_flight: InFlight::new(limits.in_flight_max, limits.in_flight_bytes_max),
        limits,
    });
    // Buffered: one read() takes in several pipelined requests (headers and small payloads).
    let mut reader =
        io::BufReader::with_capacity(READ_BUFFER_BYTES, IdleRead::new(read_half, &conn.in_flight));
    let (tx, rx) = unbounded::<Job>();
    let idle = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    let spawn = |workers: &mut Vec<thread::JoinHandle<()>>| -> io::Result<()> {
        let (conn, rx, idle) = (conn.clone(), rx.clone(), idle.clone());
        workers.push(
            thread::Builder::new()
                .name(format!("nbd-worker-{}", workers.len()))
                .spawn(move || work_loop(&conn, rx, &idle))?,
        );
        Ok(())
    };
    spawn(&mut workers)?;
    // Workers grow with the queue depth the client uses, up to the limit: a client at queue
    // depth 1 costs two threads, a deep queue gets parallel I/O.
    let result = read_loop(&mut reader, &conn, closing, |job| {
        tx.send(job).expect("workers run until the sender goes");
        if idle.load(Ordering::SeqCst) == 0
            && workers.len() < limits.workers_per_connection
            && let Err(e) = spawn(&mut workers)
        {
            tracing::warn!("cannot add a worker: {e}");
        }
    });
    // Every request read gets its reply (or is dropped with the client) before we close.
    drop(tx);
    for w in workers {
        let _ = w.join();
    }
    if !conn.broken.load(Ordering::Relaxed) {
        conn.writer.lock().close_notify();
    }
    let _ = reader.get_ref().stream.shutdown(Shutdown::Both);
    match result {
        Ok(()) => Ok(Ended::Closed),
        Err(e) if is_idle(&e) => Ok(Ended::Idle),
        Err(e) => Err(e),
    }
}

fn read_loop(
    reader: &mut io::BufReader<IdleRead<'_>>,
    conn: &Connection,
    closing: &AtomicBool,
    submit: impl FnMut(Job),
) -> io::Result<()> {
    let mut batch = Vec::new();
    let result = read_requests(reader, conn, closing, submit, &mut batch);
    // Replies of requests executed before the end still go out.
    send_batch(conn, &mut batch);
    result
}

fn read_requests(
    reader: &mut io::BufReader<IdleRead<'_>>,
    conn: &Connection,
    closing: &AtomicBool,
    mut submit: impl FnMut(Job),
    batch: &mut Vec<u8>,
) -> io::Result<()> {
    let mut header = [0u8; REQUEST_SIZE];
    // Write data of inline writes that is not wholly in the read buffer.
    let mut scratch = Vec::new();
    let mut readahead = ReadAhead::default();
    loop {
        // About to wait on the socket: replies must not wait with us (the client may be
        // waiting for them before it sends more).
        if reader.buffer().len() < REQUEST_SIZE {
            send_batch(conn, batch);
        }
        // Linux still hands out data queued (or arriving) after shutdown(Read): without this
        // check a client that keeps pipelining would never be let go.
        if closing.load(Ordering::SeqCst) || !read_header(reader, &mut header)? {
            return Ok(());
        }
        let Some(req) = Request::decode(&header) else {
            tracing::warn!(export = %conn.session.name, "bad request magic; disconnecting");
            return Ok(());
        };
        let mut payload = Vec::new();
        if req.kind == CMD_WRITE {
            let len = req.length as usize;
            if req.length > conn.limits.payload_max_bytes {
                send_batch(conn, batch);
                // Consume the payload so the stream stays in step, then refuse.
                let n = io::copy(&mut (&mut *reader).take(req.length as u64), &mut io::sink())?;
                if n < req.length as u64 {
                    return Ok(());
                }
                simple_reply(batch, EINVAL, req.cookie);
                continue;
            }
            if req.flags & CMD_FLAG_FUA == 0 {
                // Executed here: a buffered write lands in the page cache without waiting
                // for the disk, and the data is written from where it was received.
                if reader.buffer().len() >= len {
                    handle(conn, req, &reader.buffer()[..len], batch);
                    reader.consume(len);
                } else {
                    send_batch(conn, batch);
                    scratch.clear();
                    read_payload_into(reader, len, &mut scratch)?;
                    if scratch.len() < len {
                        tracing::debug!(export = %conn.session.name, "client left mid-request");
                        return Ok(());
                    }
                    handle(conn, req, &scratch, batch);
                    if scratch.capacity() > KEEP_BUFFER_BYTES_MAX {
                        scratch = Vec::new();
                    }
                }
                if batch.len() >= BATCH_BYTES_MAX {
                    send_batch(conn, batch);
                }
                continue;
            }
            if !conn.in_flight.try_acquire(len) {
                send_batch(conn, batch);
                conn.in_flight.acquire(len);
            }
            reader.get_mut().own = 1;
            let read = read_payload_into(reader, len, &mut payload);
            reader.get_mut().own = 0;
            read?;
            if payload.len() < len {
                conn.in_flight.release(len);
                tracing::debug!(export = %conn.session.name, "client left mid-request");
                return Ok(());
            }
        } else {
            if req.kind == CMD_DISC {
                return Ok(());
            }
            if req.kind == CMD_READ
                && let Some((offset, length)) = readahead.read(req.offset, req.length as u64)
            {
                submit(Job::Prefetch(offset, length));
            }
            if req.kind == CMD_READ
                && req.length <= INLINE_READ_BYTES_MAX
                && read_inline(conn, &req, batch)
            {
                if batch.len() >= BATCH_BYTES_MAX {
                    send_batch(conn, batch);
                }
                continue;
            }
            let held = held_bytes(conn, &req);
            if !conn.in_flight.try_acquire(held) {
                send_batch(conn, batch);
                conn.in_flight.acquire(held);
            }
        }
        let next_waiting =
            !reader.buffer().is_empty() || reader.get_ref().stream.pending_bytes() > 0;
        if conn.in_flight.requests() == 1 && !next_waiting {
            // Nothing else in flight and no next request waiting on the socket: a hand-off
            // would only add a thread wake-up to the latency (queue depth 1, flushes). With
            // requests pipelined, running inline would serialize them, so they go to workers.
            send_batch(conn, batch);
            serve_one(conn, req, payload, &mut scratch);
        } else {
            submit(Job::Request(req, payload));
        }
    }
}

/// Executes a read on the reader's thread if it needs no wait, appending its reply to `out`;
/// false (with `out` as it was) when the read must go to a worker.
fn read_inline(conn: &Connection, req: &Request, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    if let Err(e) = validate(conn, req) {
        error_reply(conn, req, &e, out);
        return true;
    }
    match read_reply(conn, req, out, true) {
        Ok(true) => true,
        Ok(false) => {
            out.truncate(start);
            false
        }
        Err(e) => {
            out.truncate(start);
            tracing::debug!(export = %conn.session.name, "read failed: {}", e.message);
            error_reply(conn, req, &e, out);
            true
        }
    }
}

/// Budget a request without write data holds: a read's reply is in memory until sent. Capped
/// at the payload limit, since a larger read is refused without reading.
fn held_bytes(conn: &Connection, req: &Request) -> usize {
    if req.kind == CMD_READ {
        req.length.min(conn.limits.payload_max_bytes) as usize
    } else {
        0
    }
}

/// Reads `len` bytes of write data into `payload` (cleared first): what is already buffered,
/// then the rest straight from the socket (through the buffer it would be copied twice).
/// Shorter when the client left; an error when it stalled past the idle timeout.
fn read_payload_into(
    reader: &mut io::BufReader<IdleRead<'_>>,
    len: usize,
    payload: &mut Vec<u8>,
) -> io::Result<()> {
    payload.clear();
    payload.reserve_exact(len);
    let buffered = reader.buffer();
    let n = buffered.len().min(len);
    payload.extend_from_slice(&buffered[..n]);
    reader.consume(n);
    if n < len {
        // read_to_end fills spare capacity without zeroing it first.
        match reader.get_mut().take((len - n) as u64).read_to_end(payload) {
            Err(e) if is_idle(&e) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Reads one request header; false at a clean end of stream between requests.
fn read_header(r: &mut impl Read, buf: &mut [u8; REQUEST_SIZE]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn flags_allowed(kind: u16, structured: bool) -> Option<u16> {
    let df = if structured { CMD_FLAG_DF } else { 0 };
    Some(
        CMD_FLAG_FUA
            | match kind {
                CMD_READ => df,
                CMD_WRITE | CMD_FLUSH | CMD_TRIM | CMD_CACHE => 0,
                CMD_WRITE_ZEROES => CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
                CMD_BLOCK_STATUS => CMD_FLAG_REQ_ONE,
                _ => return None,
            },
    )
}

fn is_write(kind: u16) -> bool {
    matches!(kind, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES)
}

/// Checks a request against the export; the error to reply with if it is invalid.
fn validate(conn: &Connection, req: &Request) -> Result<(), DevError> {
    let s = &conn.session;
    let Some(allowed) = flags_allowed(req.kind, s.structured) else {
        return Err(DevError::new(
            EINVAL,
            format!("unknown command {}", req.kind),
        ));
    };
    if req.flags & !allowed != 0 {
        return Err(DevError::new(
            EINVAL,
            format!("flags {:#x} not valid for command {}", req.flags, req.kind),
        ));
    }
    if is_write(req.kind) && s.device.read_only() {
        return Err(DevError::new(EPERM, "export is read-only"));
    }
    if req.kind == CMD_BLOCK_STATUS && !s.allocation_context {
        return Err(DevError::new(EINVAL, "no metadata context was negotiated"));
    }
    if req.kind == CMD_READ && req.length > conn.limits.payload_max_bytes {
        return Err(DevError::new(
            EINVAL,
            format!("read of {} bytes exceeds the maximum payload", req.length),
        ));
    }
    if req.kind == CMD_FLUSH {
        return Ok(());
    }
    let size = s.device.size_bytes()?;
    let end = req.offset.checked_add(req.length as u64);
    if end.is_none_or(|e| e > size) {
        let errno = if req.kind == CMD_WRITE || req.kind == CMD_WRITE_ZEROES {
            ENOSPC
        } else {
            EINVAL
        };
        return Err(DevError::new(
            errno,
            format!(
                "request {}+{} past the end ({size} bytes)",
                req.offset, req.length
            ),
        ));
    }
    if req.kind == CMD_BLOCK_STATUS && req.length == 0 {
        return Err(DevError::new(EINVAL, "block status of zero length"));
    }
    Ok(())
}

/// Executes one request and appends its reply to `out`.
fn handle(conn: &Connection, req: Request, payload: &[u8], out: &mut Vec<u8>) {
    let s = &conn.session;
    let dev: &dyn Device = &*s.device;
    let fua = req.flags & CMD_FLAG_FUA != 0;
    let start = out.len();
    if let Err(e) = validate(conn, &req) {
        error_reply(conn, &req, &e, out);
        return;
    }
    let result = match req.kind {
        CMD_READ => match read_reply(conn, &req, out, false) {
            Ok(done) => {
                debug_assert!(done, "a blocking read always completes");
                return;
            }
            Err(e) => Err(e),
        },
        CMD_WRITE => dev.write(req.offset, payload, fua),
        CMD_FLUSH => dev.flush(),
        CMD_TRIM => dev.trim(req.offset, req.length as u64, fua),
        CMD_WRITE_ZEROES => {
            let no_hole = req.flags & CMD_FLAG_NO_HOLE != 0;
            if req.flags & CMD_FLAG_FAST_ZERO != 0 && no_hole {
                // Writing real zeros costs as much as writing data: not fast.
                Err(DevError::new(
                    ENOTSUP,
                    "fast zero with NO_HOLE is not fast here",
                ))
            } else {
                dev.write_zeroes(req.offset, req.length as u64, !no_hole, fua)
            }
        }
        CMD_CACHE => cache(dev, req.offset, req.length as u64),
        CMD_BLOCK_STATUS => match block_status_reply(conn, &req, out) {
            Ok(()) => return,
            Err(e) => Err(e),
        },
        _ => unreachable!("validated"),
    };
    match result {
        Ok(()) => simple_reply(out, 0, req.cookie),
        Err(e) => {
            tracing::debug!(export = %s.name, kind = req.kind, "request failed: {}", e.message);
            // Drop whatever part of a reply was built before the error.
            out.truncate(start);
            error_reply(conn, &req, &e, out);
        }
    }
}

/// Appends the error reply for `req` to `out`.
fn error_reply(conn: &Connection, req: &Request, e: &DevError, out: &mut Vec<u8>) {
    if conn.session.structured && matches!(req.kind, CMD_READ | CMD_BLOCK_STATUS) {
        let msg = &e.message.as_bytes()[..e.message.len().min(1024)];
        chunk_header(
            out,
            REPLY_FLAG_DONE,
            REPLY_TYPE_ERROR,
            req.cookie,
            6 + msg.len() as u32,
        );
        out.extend_from_slice(&e.errno.to_be_bytes());
        out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        out.extend_from_slice(msg);
    } else {
        simple_reply(out, e.errno, req.cookie);
    }
}

/// Reads through the range to warm caches; bounded memory per step.
fn cache(dev: &dyn Device, offset: u64, length: u64) -> Result<(), DevError> {
    const STEP: u64 = 1 << 20;
    let mut buf = vec![0u8; STEP.min(length) as usize];
    let mut pos = 0;
    while pos < length {
        let n = STEP.min(length - pos) as usize;
        dev.read(offset + pos, &mut buf[..n])?;
        pos += n as u64;
    }
    Ok(())
}

/// Reads `buf.len()` bytes at `offset`; with `nowait`, false instead of waiting.
fn read_into(dev: &dyn Device, offset: u64, buf: &mut [u8], nowait: bool) -> DevResult<bool> {
    if nowait {
        dev.try_read(offset, buf)
    } else {
        dev.read(offset, buf).map(|()| true)
    }
}

/// Appends the reply to a validated read. With `nowait`, false when the read would wait
/// (`out` then holds a partial reply for the caller to drop).
fn read_reply(
    conn: &Connection,
    req: &Request,
    out: &mut Vec<u8>,
    nowait: bool,
) -> Result<bool, DevError> {
    let dev = &*conn.session.device;
    let len = req.length as usize;
    if !conn.session.structured {
        let start = out.len();
        out.reserve(16 + len);
        simple_reply(out, 0, req.cookie);
        out.resize(start + 16 + len, 0);
        return read_into(dev, req.offset, &mut out[start + 16..], nowait);
    }
    if len == 0 {
        chunk_header(out, REPLY_FLAG_DONE, REPLY_TYPE_NONE, req.cookie, 0);
        return Ok(true);
    }
    let runs = if req.flags & CMD_FLAG_DF != 0 {
        vec![crate::device::Extent {
            length: len as u64,
            hole: false,
        }]
    } else {
        dev.block_status(req.offset, len as u64)?
    };
    // Data is read straight into its place in the reply: no second copy.
    out.reserve(len + 32 * runs.len());
    let mut pos = 0u64;
    for (i, r) in runs.iter().enumerate() {
        let flags = if i + 1 == runs.len() {
            REPLY_FLAG_DONE
        } else {
            0
        };
        let off = req.offset + pos;
        if r.hole {
            chunk_header(out, flags, REPLY_TYPE_OFFSET_HOLE, req.cookie, 12);
            out.extend_from_slice(&off.to_be_bytes());
            out.extend_from_slice(&(r.length as u32).to_be_bytes());
        } else {
            chunk_header(
                out,
                flags,
                REPLY_TYPE_OFFSET_DATA,
                req.cookie,
                8 + r.length as u32,
            );
            out.extend_from_slice(&off.to_be_bytes());
            let start = out.len();
            out.resize(start + r.length as usize, 0);
            if !read_into(dev, off, &mut out[start..], nowait)? {
                return Ok(false);
            }
        }
        pos += r.length;
    }
    debug_assert_eq!(pos, len as u64);
    Ok(true)
}

/// Descriptors per reply at most; the spec lets a reply cover less than asked.
const STATUS_DESCRIPTORS_MAX: usize = 1024;

fn block_status_reply(conn: &Connection, req: &Request, out: &mut Vec<u8>) -> Result<(), DevError> {
    let runs = conn
        .session
        .device
        .block_status(req.offset, req.length as u64)?;
    let limit = if req.flags & CMD_FLAG_REQ_ONE != 0 {
        1
    } else {
        STATUS_DESCRIPTORS_MAX
    };
    let mut descriptors = Vec::new();
    for r in runs.iter().take(limit) {
        // Runs fit in u32: they lie within a request of u32 length.
        let flags = if r.hole { STATE_HOLE | STATE_ZERO } else { 0 };
        descriptors.extend_from_slice(&(r.length as u32).to_be_bytes());
        descriptors.extend_from_slice(&flags.to_be_bytes());
    }
    chunk_header(
        out,
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        req.cookie,
        4 + descriptors.len() as u32,
    );
    out.extend_from_slice(&BASE_ALLOCATION_ID.to_be_bytes());
    out.extend_from_slice(&descriptors);
    Ok(())
}
