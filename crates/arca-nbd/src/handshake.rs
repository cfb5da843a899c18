//! The fixed newstyle handshake: option haggling until the client picks an export (GO or
//! EXPORT_NAME) or leaves.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use crate::device::{Device, Exports};
use crate::proto::*;
use crate::server::Limits;

/// What the handshake settled for the transmission phase.
pub struct Session {
    pub name: String,
    pub device: Arc<dyn Device>,
    pub structured: bool,
    /// `base:allocation` was selected for this export.
    pub allocation_context: bool,
}

/// Why a connection is refused service while still answering options politely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds its most connections.
    TooManyConnections,
    /// The client's address holds its most connections.
    TooManyFromHost,
}

/// Options a refused client may send: enough to read the refusal, not to linger.
const REFUSED_OPTIONS_MAX: usize = 16;

/// Options granted per export a LIST returned: a client that lists the exports may then ask
/// about each one (`qemu-nbd --list` sends INFO and LIST_META_CONTEXT per export), with room
/// for SET_META_CONTEXT and GO.
const OPTIONS_PER_LISTED_EXPORT: usize = 4;

/// Option data beyond this is not read into memory.
const OPTION_DATA_MAX: u32 = 64 * 1024;
/// Larger option data is not even discarded: the client is not speaking NBD sensibly.
const OPTION_DISCARD_MAX: u32 = 16 * 1024 * 1024;

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn protocol_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A cursor over option data that reports truncation instead of panicking.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .map(|b| u16::from_be_bytes(b.try_into().unwrap()))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    }
    /// A length-prefixed UTF-8 string of at most `STRING_MAX` bytes.
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        if n > STRING_MAX {
            return None;
        }
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// Acknowledges the next segments at once. Clients that send an option's header and data in
/// two writes with Nagle's algorithm on (qemu-nbd --list does) hold the data until the header
/// is acknowledged, and a delayed acknowledgement made every such option wait ~40 ms. Linux
/// leaves quick-ack mode by itself, so it is asked for again before each option.
fn quick_ack(stream: &TcpStream) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int through the pointer, valid for the call, on a socket
    // the stream owns.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

pub fn transmission_flags(device: &dyn Device, structured: bool, multi_conn: bool) -> u16 {
    let mut f = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_CACHE;
    if device.read_only() {
        f |= FLAG_READ_ONLY;
    } else {
        f |= FLAG_SEND_FUA | FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FAST_ZERO;
    }
    if structured {
        f |= FLAG_SEND_DF;
    }
    if multi_conn {
        f |= FLAG_CAN_MULTI_CONN;
    }
    f
}

/// Runs the handshake on a fresh connection. `Ok(None)`: the client left (ABORT or a refused
/// EXPORT_NAME). Errors are protocol violations or I/O failures: the caller disconnects.
///
/// `admit` is called with the chosen session before the client is told it may start, so the
/// caller can list the session before any request can arrive; `false` refuses it (its export
/// is being disconnected).
pub fn negotiate(
    stream: &mut TcpStream,
    exports: &dyn Exports,
    limits: &Limits,
    refusal: Option<Refusal>,
    admit: &mut dyn FnMut(&Session) -> bool,
) -> io::Result<Option<Session>> {
    let mut greeting = Vec::with_capacity(18);
    greeting.extend_from_slice(&NBDMAGIC.to_be_bytes());
    greeting.extend_from_slice(&IHAVEOPT.to_be_bytes());
    greeting.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    stream.write_all(&greeting)?;
    let client_flags = read_u32(stream)?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(protocol_error("unknown client flags"));
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
    let mut structured = false;
    // (export name, base:allocation selected) from the last SET_META_CONTEXT.
    let mut meta: Option<(String, bool)> = None;
    // Bounds the handshake (with the read timeout, its length): options_max, or for a client
    // that listed the exports, room to ask about each one. Listing again adds nothing.
    let mut options_max = if refusal.is_some() {
        REFUSED_OPTIONS_MAX
    } else {
        limits.options_max
    };
    let mut options = 0;
    while options < options_max {
        options += 1;
        quick_ack(stream);
        if read_u64(stream)? != IHAVEOPT {
            return Err(protocol_error("bad option magic"));
        }
        let option = read_u32(stream)?;
        let length = read_u32(stream)?;
        let mut out = Vec::new();
        if length > OPTION_DATA_MAX {
            if length > OPTION_DISCARD_MAX || option == OPT_EXPORT_NAME {
                return Err(protocol_error("option data too large"));
            }
            io::copy(&mut (&mut *stream).take(length as u64), &mut io::sink())?;
            let msg = format!("option data of {length} bytes is too large");
            option_reply(&mut out, option, REP_ERR_TOO_BIG, msg.as_bytes());
            stream.write_all(&out)?;
            continue;
        }
        let mut data = vec![0u8; length as usize];
        stream.read_exact(&mut data)?;
        if let Some(r) = refusal {
            if option == OPT_EXPORT_NAME {
                return Ok(None);
            }
            if option == OPT_ABORT {
                option_reply(&mut out, option, REP_ACK, &[]);
                let _ = stream.write_all(&out);
                return Ok(None);
            }
            let msg = match r {
                Refusal::TooManyConnections => "too many connections",
                Refusal::TooManyFromHost => "too many connections from this address",
            };
            option_reply(&mut out, option, REP_ERR_POLICY, msg.as_bytes());
            stream.write_all(&out)?;
            continue;
        }
        match option {
            OPT_EXPORT_NAME => {
                let Ok(name) = String::from_utf8(data) else {
                    return Ok(None);
                };
                // This option has no error reply: an unknown export ends the connection.
                let Ok((name, device)) = exports.open(&name) else {
                    return Ok(None);
                };
                let size = device
                    .size_bytes()
                    .map_err(|e| io::Error::other(e.message))?;
                let flags = transmission_flags(&*device, structured, exports.flush_covers_all());
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(&flags.to_be_bytes());
                if !no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                let allocation_context = meta.as_ref().is_some_and(|(n, a)| *n == name && *a);
                let session = Session {
                    name,
                    device,
                    structured,
                    allocation_context,
                };
                if !admit(&session) {
                    return Ok(None);
                }
                stream.write_all(&out)?;
                return Ok(Some(session));
            }
            OPT_ABORT => {
                option_reply(&mut out, option, REP_ACK, &[]);
                let _ = stream.write_all(&out);
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    option_reply(&mut out, option, REP_ERR_INVALID, b"LIST takes no data");
                } else {
                    let list = exports.list();
                    let grant = list.len().saturating_mul(OPTIONS_PER_LISTED_EXPORT);
                    options_max = options_max.max(limits.options_max.saturating_add(grant));
                    for e in list {
                        let mut d = Vec::new();
                        d.extend_from_slice(&(e.name.len() as u32).to_be_bytes());
                        d.extend_from_slice(e.name.as_bytes());
                        d.extend_from_slice(e.description.as_bytes());
                        option_reply(&mut out, option, REP_SERVER, &d);
                    }
                    option_reply(&mut out, option, REP_ACK, &[]);
                }
            }
            OPT_INFO | OPT_GO => {
                let mut f = Fields(&data);
                let parsed = (|| {
                    let name = f.string()?;
                    let n = f.u16()?;
                    let requests: Option<Vec<u16>> = (0..n).map(|_| f.u16()).collect();
                    f.0.is_empty().then_some((name, requests?))
                })();
                let Some((name, requests)) = parsed else {
                    option_reply(
                        &mut out,
                        option,
                        REP_ERR_INVALID,
                        b"malformed INFO/GO request",
                    );
                    stream.write_all(&out)?;
                    continue;
                };
                match exports.open(&name) {
                    Err(msg) => option_reply(&mut out, option, REP_ERR_UNKNOWN, msg.as_bytes()),
                    Ok((real_name, device)) => {
                        let size = match device.size_bytes() {
                            Ok(s) => s,
                            Err(e) => {
                                option_reply(
                                    &mut out,
                                    option,
                                    REP_ERR_UNKNOWN,
                                    e.message.as_bytes(),
                                );
                                stream.write_all(&out)?;
                                continue;
                            }
                        };
                        let flags =
                            transmission_flags(&*device, structured, exports.flush_covers_all());
                        let mut d = Vec::new();
                        d.extend_from_slice(&INFO_EXPORT.to_be_bytes());
                        d.extend_from_slice(&size.to_be_bytes());
                        d.extend_from_slice(&flags.to_be_bytes());
                        option_reply(&mut out, option, REP_INFO, &d);
                        if requests.contains(&INFO_NAME) {
                            let mut d = INFO_NAME.to_be_bytes().to_vec();
                            d.extend_from_slice(real_name.as_bytes());
                            option_reply(&mut out, option, REP_INFO, &d);
                        }
                        let description = exports.description(&real_name);
                        if requests.contains(&INFO_DESCRIPTION) && !description.is_empty() {
                            let mut d = INFO_DESCRIPTION.to_be_bytes().to_vec();
                            d.extend_from_slice(description.as_bytes());
                            option_reply(&mut out, option, REP_INFO, &d);
                        }
                        // Block size constraints: any alignment works, 4 KiB is best, and the
                        // payload limit bounds a request's memory.
                        let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                        d.extend_from_slice(&1u32.to_be_bytes());
                        d.extend_from_slice(&4096u32.to_be_bytes());
                        d.extend_from_slice(&limits.payload_max_bytes.to_be_bytes());
                        option_reply(&mut out, option, REP_INFO, &d);
                        option_reply(&mut out, option, REP_ACK, &[]);
                        if option == OPT_GO {
                            // Contexts chosen for another export do not carry over.
                            let allocation_context = meta
                                .as_ref()
                                .is_some_and(|(n, a)| (*n == name || *n == real_name) && *a);
                            let session = Session {
                                name: real_name,
                                device,
                                structured,
                                allocation_context,
                            };
                            if admit(&session) {
                                stream.write_all(&out)?;
                                return Ok(Some(session));
                            }
                            out.clear();
                            option_reply(
                                &mut out,
                                option,
                                REP_ERR_UNKNOWN,
                                b"export is being disconnected",
                            );
                        }
                    }
                }
            }
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    option_reply(
                        &mut out,
                        option,
                        REP_ERR_INVALID,
                        b"STRUCTURED_REPLY takes no data",
                    );
                } else if structured {
                    option_reply(
                        &mut out,
                        option,
                        REP_ERR_INVALID,
                        b"structured replies already negotiated",
                    );
                } else {
                    structured = true;
                    option_reply(&mut out, option, REP_ACK, &[]);
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let set = option == OPT_SET_META_CONTEXT;
                let mut f = Fields(&data);
                let parsed = (|| {
                    let name = f.string()?;
                    let n = f.u32()?;
                    if n > 1024 {
                        return None;
                    }
                    let queries: Option<Vec<String>> = (0..n).map(|_| f.string()).collect();
                    f.0.is_empty().then_some((name, queries?))
                })();
                if !structured {
                    option_reply(
                        &mut out,
                        option,
                        REP_ERR_INVALID,
                        b"negotiate structured replies first",
                    );
                } else if let Some((name, queries)) = parsed {
                    if let Err(msg) = exports.open(&name) {
                        option_reply(&mut out, option, REP_ERR_UNKNOWN, msg.as_bytes());
                    } else {
                        let selected = if queries.is_empty() {
                            // LIST with no query lists everything; SET with none selects nothing.
                            !set
                        } else {
                            queries.iter().any(|q| {
                                q == BASE_ALLOCATION || (!set && (q == "base:" || q == "base"))
                            })
                        };
                        if selected {
                            let mut d = if set { BASE_ALLOCATION_ID } else { 0 }
                                .to_be_bytes()
                                .to_vec();
                            d.extend_from_slice(BASE_ALLOCATION.as_bytes());
                            option_reply(&mut out, option, REP_META_CONTEXT, &d);
                        }
                        option_reply(&mut out, option, REP_ACK, &[]);
                        if set {
                            meta = Some((name, selected));
                        }
                    }
                } else {
                    option_reply(
                        &mut out,
                        option,
                        REP_ERR_INVALID,
                        b"malformed meta context request",
                    );
                }
            }
            _ => option_reply(&mut out, option, REP_ERR_UNSUP, b"option not supported"),
        }
        stream.write_all(&out)?;
    }
    Err(protocol_error("too many options"))
}
