//! The fixed newstyle handshake: option haggling until the client picks an export (GO or
//! EXPORT_NAME) or leaves.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use crate::access::{AccessRules, Client, Grant};
use crate::device::{Device, Exports, ReadOnly};
use crate::proto::*;
use crate::server::Limits;
use crate::tls::{TlsConfig, TlsMode, Wire};

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
    stream: &mut Wire,
    exports: &dyn Exports,
    limits: &Limits,
    tls: &TlsConfig,
    access: &AccessRules,
    refusal: Option<Refusal>,
    admit: &mut dyn FnMut(&Session) -> bool,
) -> io::Result<Option<Session>> {
    let client = Client {
        ip: stream.tcp().peer_addr()?.ip(),
        identity: None,
    };
    let no_zeroes = greet(stream)?;
    let mut haggle = Haggle {
        exports,
        limits,
        access,
        client,
        no_zeroes,
        structured: false,
        meta: None,
        // Bounds the handshake (with the read timeout, its length): options_max, or for a
        // client that listed the exports, room to ask about each one.
        options_max: if refusal.is_some() {
            REFUSED_OPTIONS_MAX
        } else {
            limits.options_max
        },
    };
    let mut options = 0;
    while options < haggle.options_max {
        options += 1;
        quick_ack(stream.tcp());
        let Some((option, data)) = read_option(stream)? else {
            continue;
        };
        let step = match refusal {
            Some(r) => refused_option(option, r),
            None if option == OPT_STARTTLS => start_tls(tls, stream.is_tls(), &data),
            None if tls.mode() == TlsMode::Require && !stream.is_tls() => tls_required(option),
            None => haggle.option(option, data)?,
        };
        match step {
            Step::Reply(out) => stream.write_all(&out)?,
            Step::StartTls(ack) => {
                stream.write_all(&ack)?;
                stream.start_tls(tls)?;
                haggle.client.identity = stream.peer_identity();
                // Nothing negotiated in the clear carries over: a man in the middle may
                // have sent it.
                haggle.structured = false;
                haggle.meta = None;
            }
            Step::Leave(out) => {
                let _ = stream.write_all(&out);
                return Ok(None);
            }
            Step::Offer {
                session,
                reply,
                if_refused,
            } => {
                if admit(&session) {
                    stream.write_all(&reply)?;
                    return Ok(Some(session));
                }
                let Some(out) = if_refused else {
                    return Ok(None);
                };
                stream.write_all(&out)?;
            }
        }
    }
    Err(protocol_error("too many options"))
}

/// What one option leads to.
enum Step {
    /// Send these replies and read the next option.
    Reply(Vec<u8>),
    /// Send this acknowledgement of STARTTLS, then run the TLS handshake.
    StartTls(Vec<u8>),
    /// Send these replies (if the client still listens) and end the connection.
    Leave(Vec<u8>),
    /// The client chose an export: if `admit` takes the session, send `reply` and start;
    /// otherwise send `if_refused` and go on, or leave when there is none (EXPORT_NAME has no
    /// error reply).
    Offer {
        session: Session,
        reply: Vec<u8>,
        if_refused: Option<Vec<u8>>,
    },
}

fn reply(option: u32, kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    option_reply(&mut out, option, kind, data);
    out
}

/// STARTTLS: acknowledged when TLS is on and not yet running (protocol: the option takes no
/// data, and a second one is invalid); a server without TLS does not know the option.
fn start_tls(tls: &TlsConfig, running: bool, data: &[u8]) -> Step {
    let option = OPT_STARTTLS;
    if tls.mode() == TlsMode::Off {
        return Step::Reply(reply(option, REP_ERR_UNSUP, b"TLS is not enabled"));
    }
    if !data.is_empty() {
        return Step::Reply(reply(option, REP_ERR_INVALID, b"STARTTLS takes no data"));
    }
    if running {
        return Step::Reply(reply(option, REP_ERR_INVALID, b"TLS is already running"));
    }
    Step::StartTls(reply(option, REP_ACK, &[]))
}

/// An option before the upgrade on a server that requires TLS: ABORT is answered, EXPORT_NAME
/// (which has no error reply) ends the session, anything else is refused with TLS_REQD.
fn tls_required(option: u32) -> Step {
    match option {
        OPT_ABORT => Step::Leave(reply(option, REP_ACK, &[])),
        OPT_EXPORT_NAME => Step::Leave(Vec::new()),
        _ => Step::Reply(reply(
            option,
            REP_ERR_TLS_REQD,
            b"this server requires TLS: send NBD_OPT_STARTTLS first",
        )),
    }
}

/// Sends the greeting and reads the client's flags; whether the client asked for no zeroes.
fn greet(stream: &mut Wire) -> io::Result<bool> {
    let mut greeting = Vec::with_capacity(18);
    greeting.extend_from_slice(&NBDMAGIC.to_be_bytes());
    greeting.extend_from_slice(&IHAVEOPT.to_be_bytes());
    greeting.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    stream.write_all(&greeting)?;
    let client_flags = read_u32(stream)?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(protocol_error("unknown client flags"));
    }
    Ok(client_flags & FLAG_C_NO_ZEROES != 0)
}

/// Reads the next option and its data. Data too large to hold is discarded and answered
/// TOO_BIG here: `None`.
fn read_option(stream: &mut Wire) -> io::Result<Option<(u32, Vec<u8>)>> {
    if read_u64(stream)? != IHAVEOPT {
        return Err(protocol_error("bad option magic"));
    }
    let option = read_u32(stream)?;
    let length = read_u32(stream)?;
    if length > OPTION_DATA_MAX {
        if length > OPTION_DISCARD_MAX || option == OPT_EXPORT_NAME {
            return Err(protocol_error("option data too large"));
        }
        io::copy(&mut (&mut *stream).take(length as u64), &mut io::sink())?;
        let msg = format!("option data of {length} bytes is too large");
        stream.write_all(&reply(option, REP_ERR_TOO_BIG, msg.as_bytes()))?;
        return Ok(None);
    }
    let mut data = vec![0u8; length as usize];
    stream.read_exact(&mut data)?;
    Ok(Some((option, data)))
}

/// A refused client's option: ABORT and EXPORT_NAME end the connection, anything else is
/// answered with the refusal.
fn refused_option(option: u32, r: Refusal) -> Step {
    match option {
        OPT_EXPORT_NAME => Step::Leave(Vec::new()),
        OPT_ABORT => Step::Leave(reply(option, REP_ACK, &[])),
        _ => {
            let msg = match r {
                Refusal::TooManyConnections => "too many connections",
                Refusal::TooManyFromHost => "too many connections from this address",
            };
            Step::Reply(reply(option, REP_ERR_POLICY, msg.as_bytes()))
        }
    }
}

/// The handshake's state between options.
struct Haggle<'a> {
    exports: &'a dyn Exports,
    limits: &'a Limits,
    access: &'a AccessRules,
    /// Who is asking: the address, and the identity TLS proved once it runs.
    client: Client,
    no_zeroes: bool,
    structured: bool,
    /// (export name, base:allocation selected) from the last SET_META_CONTEXT.
    meta: Option<(String, bool)>,
    options_max: usize,
}

impl Haggle<'_> {
    fn option(&mut self, option: u32, data: Vec<u8>) -> io::Result<Step> {
        let out = match option {
            OPT_EXPORT_NAME => return self.export_name(data),
            OPT_ABORT => return Ok(Step::Leave(reply(option, REP_ACK, &[]))),
            OPT_LIST => self.list(&data),
            OPT_INFO | OPT_GO => return Ok(self.info_or_go(option, &data)),
            OPT_STRUCTURED_REPLY => self.structured_reply(&data),
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => self.meta_context(option, &data),
            _ => reply(option, REP_ERR_UNSUP, b"option not supported"),
        };
        Ok(Step::Reply(out))
    }

    /// EXPORT_NAME: the export, or leaving (the option has no error reply).
    fn export_name(&self, data: Vec<u8>) -> io::Result<Step> {
        let Ok(name) = String::from_utf8(data) else {
            return Ok(Step::Leave(Vec::new()));
        };
        // No error reply exists: a refused or unknown export ends the session.
        let Ok((name, device)) = self.open(OPT_EXPORT_NAME, &name) else {
            return Ok(Step::Leave(Vec::new()));
        };
        let size = device
            .size_bytes()
            .map_err(|e| io::Error::other(e.message))?;
        let flags = self.flags(&*device);
        let mut out = Vec::new();
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        if !self.no_zeroes {
            out.extend_from_slice(&[0u8; 124]);
        }
        let allocation_context = self.meta.as_ref().is_some_and(|(n, a)| *n == name && *a);
        Ok(Step::Offer {
            session: Session {
                name,
                device,
                structured: self.structured,
                allocation_context,
            },
            reply: out,
            if_refused: None,
        })
    }

    /// Opens an export the access rules grant this client (read-only when that is all they
    /// grant); otherwise the error reply's kind (POLICY or UNKNOWN) and message. A name the
    /// rules refuse is refused before it is looked up, so refused clients cannot probe which
    /// exports exist.
    fn open(&self, option: u32, name: &str) -> Result<(String, Arc<dyn Device>), (u32, String)> {
        if !name.is_empty() {
            self.check(option, name)?;
        }
        let (real_name, device) = self
            .exports
            .open(name)
            .map_err(|msg| (REP_ERR_UNKNOWN, msg))?;
        let device = match self.check(option, &real_name)? {
            Grant::ReadOnly if !device.read_only() => Arc::new(ReadOnly(device)),
            _ => device,
        };
        Ok((real_name, device))
    }

    /// What the rules grant this client on `name`; a refusal (logged) when nothing.
    fn check(&self, option: u32, name: &str) -> Result<Grant, (u32, String)> {
        let grant = self.access.grant(&self.client, name);
        if grant != Grant::Denied {
            return Ok(grant);
        }
        let identity = self
            .client
            .identity
            .as_ref()
            .map_or_else(|| "none".to_string(), ToString::to_string);
        tracing::warn!(
            peer = %self.client.ip,
            %identity,
            export = name,
            option = option_name(option),
            "export refused by the access rules"
        );
        let msg = format!("export {name:?} is not open to this client");
        Err((REP_ERR_POLICY, msg))
    }

    fn flags(&self, device: &dyn Device) -> u16 {
        transmission_flags(device, self.structured, self.exports.flush_covers_all())
    }

    /// LIST: every export; listing grants room to ask about each (listing again adds none).
    fn list(&mut self, data: &[u8]) -> Vec<u8> {
        if !data.is_empty() {
            return reply(OPT_LIST, REP_ERR_INVALID, b"LIST takes no data");
        }
        let mut list = self.exports.list();
        list.retain(|e| self.access.grant(&self.client, &e.name) != Grant::Denied);
        let grant = list.len().saturating_mul(OPTIONS_PER_LISTED_EXPORT);
        self.options_max = self
            .options_max
            .max(self.limits.options_max.saturating_add(grant));
        let mut out = Vec::new();
        for e in list {
            let mut d = Vec::new();
            d.extend_from_slice(&(e.name.len() as u32).to_be_bytes());
            d.extend_from_slice(e.name.as_bytes());
            d.extend_from_slice(e.description.as_bytes());
            option_reply(&mut out, OPT_LIST, REP_SERVER, &d);
        }
        option_reply(&mut out, OPT_LIST, REP_ACK, &[]);
        out
    }

    /// INFO, or GO which then starts with the export.
    fn info_or_go(&self, option: u32, data: &[u8]) -> Step {
        let mut f = Fields(data);
        let parsed = (|| {
            let name = f.string()?;
            let n = f.u16()?;
            let requests: Option<Vec<u16>> = (0..n).map(|_| f.u16()).collect();
            f.0.is_empty().then_some((name, requests?))
        })();
        let Some((name, requests)) = parsed else {
            return Step::Reply(reply(option, REP_ERR_INVALID, b"malformed INFO/GO request"));
        };
        let (real_name, device) = match self.open(option, &name) {
            Ok(found) => found,
            Err((kind, msg)) => return Step::Reply(reply(option, kind, msg.as_bytes())),
        };
        let out = match self.export_info(option, &real_name, &*device, &requests) {
            Ok(out) => out,
            Err(msg) => return Step::Reply(reply(option, REP_ERR_UNKNOWN, msg.as_bytes())),
        };
        if option != OPT_GO {
            return Step::Reply(out);
        }
        // Contexts chosen for another export do not carry over.
        let allocation_context = self
            .meta
            .as_ref()
            .is_some_and(|(n, a)| (*n == name || *n == real_name) && *a);
        Step::Offer {
            session: Session {
                name: real_name,
                device,
                structured: self.structured,
                allocation_context,
            },
            reply: out,
            if_refused: Some(reply(
                option,
                REP_ERR_UNKNOWN,
                b"export is being disconnected",
            )),
        }
    }

    /// The INFO replies about an export (those `requests` asks for, and the ones always
    /// sent), then the ACK; the error message when its size cannot be read.
    fn export_info(
        &self,
        option: u32,
        real_name: &str,
        device: &dyn Device,
        requests: &[u16],
    ) -> Result<Vec<u8>, String> {
        let size = device.size_bytes().map_err(|e| e.message)?;
        let mut out = Vec::new();
        let mut d = Vec::new();
        d.extend_from_slice(&INFO_EXPORT.to_be_bytes());
        d.extend_from_slice(&size.to_be_bytes());
        d.extend_from_slice(&self.flags(device).to_be_bytes());
        option_reply(&mut out, option, REP_INFO, &d);
        if requests.contains(&INFO_NAME) {
            let mut d = INFO_NAME.to_be_bytes().to_vec();
            d.extend_from_slice(real_name.as_bytes());
            option_reply(&mut out, option, REP_INFO, &d);
        }
        let description = self.exports.description(real_name);
        if requests.contains(&INFO_DESCRIPTION) && !description.is_empty() {
            let mut d = INFO_DESCRIPTION.to_be_bytes().to_vec();
            d.extend_from_slice(description.as_bytes());
            option_reply(&mut out, option, REP_INFO, &d);
        }
        // Block size constraints: any alignment works, 4 KiB is best, and the payload limit
        // bounds a request's memory.
        let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        d.extend_from_slice(&1u32.to_be_bytes());
        d.extend_from_slice(&4096u32.to_be_bytes());
        d.extend_from_slice(&self.limits.payload_max_bytes.to_be_bytes());
        option_reply(&mut out, option, REP_INFO, &d);
        option_reply(&mut out, option, REP_ACK, &[]);
        Ok(out)
    }

    fn structured_reply(&mut self, data: &[u8]) -> Vec<u8> {
        let option = OPT_STRUCTURED_REPLY;
        if !data.is_empty() {
            reply(option, REP_ERR_INVALID, b"STRUCTURED_REPLY takes no data")
        } else if self.structured {
            reply(
                option,
                REP_ERR_INVALID,
                b"structured replies already negotiated",
            )
        } else {
            self.structured = true;
            reply(option, REP_ACK, &[])
        }
    }

    /// LIST_META_CONTEXT, or SET_META_CONTEXT which remembers the choice for the export.
    fn meta_context(&mut self, option: u32, data: &[u8]) -> Vec<u8> {
        let set = option == OPT_SET_META_CONTEXT;
        let mut f = Fields(data);
        let parsed = (|| {
            let name = f.string()?;
            let n = f.u32()?;
            if n > 1024 {
                return None;
            }
            let queries: Option<Vec<String>> = (0..n).map(|_| f.string()).collect();
            f.0.is_empty().then_some((name, queries?))
        })();
        if !self.structured {
            return reply(
                option,
                REP_ERR_INVALID,
                b"negotiate structured replies first",
            );
        }
        let Some((name, queries)) = parsed else {
            return reply(option, REP_ERR_INVALID, b"malformed meta context request");
        };
        if let Err((kind, msg)) = self.open(option, &name) {
            return reply(option, kind, msg.as_bytes());
        }
        let selected = if queries.is_empty() {
            // LIST with no query lists everything; SET with none selects nothing.
            !set
        } else {
            queries
                .iter()
                .any(|q| q == BASE_ALLOCATION || (!set && (q == "base:" || q == "base")))
        };
        let mut out = Vec::new();
        if selected {
            let mut d = if set { BASE_ALLOCATION_ID } else { 0 }
                .to_be_bytes()
                .to_vec();
            d.extend_from_slice(BASE_ALLOCATION.as_bytes());
            option_reply(&mut out, option, REP_META_CONTEXT, &d);
        }
        option_reply(&mut out, option, REP_ACK, &[]);
        if set {
            self.meta = Some((name, selected));
        }
        out
    }
}
