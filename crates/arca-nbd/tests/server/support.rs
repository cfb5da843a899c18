//! What the server tests share: in-memory exports and a raw TCP client that speaks the
//! fixed-newstyle handshake (NBD_OPT_GO) and simple replies by hand.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use arca_nbd::proto::*;
use arca_nbd::{DevResult, Device, ExportSummary, Exports, Extent, Limits, Server};

pub const SIZE: usize = 1 << 20;
/// Long enough never to fire on a healthy run; keeps a broken one from hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Holds a device's reads until released, so a test can act while a request is in flight.
#[derive(Default)]
pub struct Gate {
    state: Mutex<(bool, bool)>, // (a read entered, released)
    cv: Condvar,
}

impl Gate {
    pub fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        self.cv.notify_all();
        while !s.1 {
            s = self.cv.wait(s).unwrap();
        }
    }
    pub fn wait_entered(&self) {
        let mut s = self.state.lock().unwrap();
        while !s.0 {
            s = self.cv.wait(s).unwrap();
        }
    }
    pub fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

/// Which 4 KiB blocks a device's `try_read` serves.
pub type Cached = fn(block: u64) -> bool;

pub struct MemDev {
    data: Mutex<Vec<u8>>,
    /// Holds every read that waits (`read`, not `try_read`).
    gate: Option<Arc<Gate>>,
    /// None: `try_read` always declines, so every read goes to `read`.
    cached: Option<Cached>,
    pub reads_inline: AtomicUsize,
    pub reads_waited: AtomicUsize,
    /// Every read-ahead hint, in the order received.
    pub prefetched: Mutex<Vec<(u64, u64)>>,
}

impl Device for MemDev {
    fn size_bytes(&self) -> DevResult<u64> {
        Ok(SIZE as u64)
    }
    fn read_only(&self) -> bool {
        false
    }
    fn try_read(&self, offset: u64, buf: &mut [u8]) -> DevResult<bool> {
        let Some(cached) = self.cached else {
            return Ok(false);
        };
        let end = offset + buf.len() as u64;
        if !(offset / 4096..end.div_ceil(4096)).all(cached) {
            return Ok(false);
        }
        let d = self.data.lock().unwrap();
        buf.copy_from_slice(&d[offset as usize..end as usize]);
        self.reads_inline.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> DevResult<()> {
        self.reads_waited.fetch_add(1, Ordering::SeqCst);
        if let Some(g) = &self.gate {
            g.pass();
        }
        let d = self.data.lock().unwrap();
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn prefetch(&self, offset: u64, length: u64) {
        self.prefetched.lock().unwrap().push((offset, length));
    }
    fn write(&self, offset: u64, data: &[u8], _fua: bool) -> DevResult<()> {
        let mut d = self.data.lock().unwrap();
        d[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, length: u64, _may_trim: bool, fua: bool) -> DevResult<()> {
        self.write(offset, &vec![0; length as usize], fua)
    }
    fn trim(&self, offset: u64, length: u64, fua: bool) -> DevResult<()> {
        self.write_zeroes(offset, length, true, fua)
    }
    fn flush(&self) -> DevResult<()> {
        Ok(())
    }
    fn block_status(&self, _offset: u64, length: u64) -> DevResult<Vec<Extent>> {
        Ok(vec![Extent {
            length,
            hole: false,
        }])
    }
}

pub struct MemExports(HashMap<String, Arc<MemDev>>);

impl MemExports {
    /// Exports "a" and "b", each filled with a pattern distinct per export; `gate_a` and
    /// `cached_a` apply to "a".
    pub fn new(gate_a: Option<Arc<Gate>>, cached_a: Option<Cached>) -> MemExports {
        let dev = |seed: u8, gate, cached| {
            let data = (0..SIZE).map(|i| (i % 251) as u8 ^ seed).collect();
            Arc::new(MemDev {
                data: Mutex::new(data),
                gate,
                cached,
                reads_inline: AtomicUsize::new(0),
                reads_waited: AtomicUsize::new(0),
                prefetched: Mutex::new(Vec::new()),
            })
        };
        let mut m = HashMap::new();
        m.insert("a".to_string(), dev(0x00, gate_a, cached_a));
        m.insert("b".to_string(), dev(0x5a, None, None));
        MemExports(m)
    }

    pub fn dev(&self, name: &str) -> Arc<MemDev> {
        self.0[name].clone()
    }
}

impl Exports for MemExports {
    fn list(&self) -> Vec<ExportSummary> {
        let mut v: Vec<_> = self
            .0
            .keys()
            .map(|n| ExportSummary {
                name: n.clone(),
                description: String::new(),
                read_only: false,
            })
            .collect();
        v.sort_by(|x, y| x.name.cmp(&y.name));
        v
    }
    fn open(&self, name: &str) -> Result<(String, Arc<dyn Device>), String> {
        let d = self
            .0
            .get(name)
            .ok_or_else(|| format!("no export {name:?}"))?;
        Ok((name.to_string(), d.clone() as Arc<dyn Device>))
    }
    fn flush_covers_all(&self) -> bool {
        true
    }
}

pub fn expected(export: &str, offset: usize, len: usize) -> Vec<u8> {
    let seed = if export == "a" { 0x00 } else { 0x5a };
    (offset..offset + len)
        .map(|i| (i % 251) as u8 ^ seed)
        .collect()
}

pub struct Running {
    pub server: Arc<Server>,
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<io::Result<()>>,
}

pub fn start(exports: MemExports) -> Running {
    start_with(Arc::new(exports), Limits::default())
}

pub fn start_with(exports: Arc<dyn Exports>, limits: Limits) -> Running {
    start_server(Server::new(exports, limits))
}

/// Serves with `server` (its exports, limits and TLS settings) on an ephemeral port.
pub fn start_server(server: Server) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (server, stop) = (server.clone(), stop.clone());
        thread::spawn(move || server.serve(&listener, &stop))
    };
    Running {
        server,
        addr,
        stop,
        thread,
    }
}

impl Running {
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap().unwrap();
        assert!(self.server.sessions().is_empty(), "stop ends every session");
    }
}

pub fn read_u32(s: &mut (impl Read + Write)) -> u32 {
    let mut b = [0; 4];
    s.read_exact(&mut b).unwrap();
    u32::from_be_bytes(b)
}

pub fn read_u64(s: &mut (impl Read + Write)) -> u64 {
    let mut b = [0; 8];
    s.read_exact(&mut b).unwrap();
    u64::from_be_bytes(b)
}

/// Connects and reads the greeting, then sends the client flags: the handshake has begun.
pub fn begin(addr: SocketAddr) -> TcpStream {
    greet(TcpStream::connect(addr).unwrap())
}

/// [`begin`] from the local address `source` (any of 127.0.0.0/8 reaches a loopback listener).
pub fn begin_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    greet(connect_from(source, addr))
}

fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(dest) = addr else {
        panic!("IPv4 only")
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket, owned by the TcpStream from here on; bind and connect read a
    // sockaddr_in of the given length that outlives the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let s = TcpStream::from_raw_fd(fd);
        let src = sockaddr(source, 0);
        let rc = libc::bind(fd, (&src as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "bind {source}: {}", io::Error::last_os_error());
        let dst = sockaddr(*dest.ip(), dest.port());
        let rc = libc::connect(fd, (&dst as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "connect {addr}: {}", io::Error::last_os_error());
        s
    }
}

fn greet(mut s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(read_u64(&mut s), NBDMAGIC);
    assert_eq!(read_u64(&mut s), IHAVEOPT);
    let mut flags = [0; 2];
    s.read_exact(&mut flags).unwrap();
    assert_ne!(u16::from_be_bytes(flags) & FLAG_FIXED_NEWSTYLE, 0);
    s.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes())
        .unwrap();
    s
}

/// Sends an option with its data.
pub fn send_option(s: &mut (impl Read + Write), option: u32, data: &[u8]) {
    let mut m = IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&option.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    s.write_all(&m).unwrap();
}

/// Reads one option reply to `option`: (reply type, data).
pub fn recv_option(s: &mut (impl Read + Write), option: u32) -> (u32, Vec<u8>) {
    assert_eq!(read_u64(s), REP_MAGIC);
    assert_eq!(read_u32(s), option);
    let kind = read_u32(s);
    let mut data = vec![0; read_u32(s) as usize];
    s.read_exact(&mut data).unwrap();
    (kind, data)
}

/// The data of INFO and GO for `export`, with these information requests.
pub fn info_request(export: &str, infos: &[u16]) -> Vec<u8> {
    let mut m = (export.len() as u32).to_be_bytes().to_vec();
    m.extend_from_slice(export.as_bytes());
    m.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        m.extend_from_slice(&i.to_be_bytes());
    }
    m
}

/// Sends NBD_OPT_GO for `export` (no info requests) and reads its replies through the final
/// one: Ok(size) on ACK, Err(reply type) on an error reply.
pub fn go(s: &mut (impl Read + Write), export: &str) -> Result<u64, u32> {
    go_message(s, export).map_err(|(kind, _)| kind)
}

/// [`go`], with the message of an error reply.
pub fn go_message(s: &mut (impl Read + Write), export: &str) -> Result<u64, (u32, String)> {
    send_option(s, OPT_GO, &info_request(export, &[]));
    let mut size = None;
    loop {
        let (kind, data) = recv_option(s, OPT_GO);
        match kind {
            REP_ACK => return Ok(size.expect("INFO_EXPORT before ACK")),
            REP_INFO if data[..2] == INFO_EXPORT.to_be_bytes() => {
                size = Some(u64::from_be_bytes(data[2..10].try_into().unwrap()));
            }
            REP_INFO => {}
            k if k & 0x8000_0000 != 0 => return Err((k, String::from_utf8_lossy(&data).into())),
            k => panic!("unexpected reply type {k:#x}"),
        }
    }
}

pub fn connect(addr: SocketAddr, export: &str) -> TcpStream {
    let mut s = begin(addr);
    assert_eq!(go(&mut s, export), Ok(SIZE as u64));
    s
}

/// Appends a request (header, then `data` for a write) to `m`.
pub fn encode(
    m: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    cookie: u64,
    offset: u64,
    length: u32,
    data: &[u8],
) {
    m.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&cookie.to_be_bytes());
    m.extend_from_slice(&offset.to_be_bytes());
    m.extend_from_slice(&length.to_be_bytes());
    m.extend_from_slice(data);
}

pub fn send_read(s: &mut (impl Read + Write), cookie: u64, offset: u64, length: u32) {
    let mut m = Vec::new();
    encode(&mut m, CMD_READ, 0, cookie, offset, length, &[]);
    s.write_all(&m).unwrap();
}

/// Reads the header of a simple reply: (cookie, error).
pub fn recv_reply(s: &mut (impl Read + Write)) -> (u64, u32) {
    assert_eq!(read_u32(s), SIMPLE_REPLY_MAGIC);
    let error = read_u32(s);
    (read_u64(s), error)
}

/// Reads a successful simple reply to a READ and returns its data.
pub fn recv_read(s: &mut (impl Read + Write), cookie: u64, length: u32) -> Vec<u8> {
    assert_eq!(read_u32(s), SIMPLE_REPLY_MAGIC);
    assert_eq!(read_u32(s), 0, "read failed");
    assert_eq!(read_u64(s), cookie);
    let mut data = vec![0; length as usize];
    s.read_exact(&mut data).unwrap();
    data
}

pub fn check_read(
    s: &mut (impl Read + Write),
    export: &str,
    cookie: u64,
    offset: u64,
    length: u32,
) {
    send_read(s, cookie, offset, length);
    let data = recv_read(s, cookie, length);
    assert!(data == expected(export, offset as usize, length as usize));
}

/// The server closed the connection: a read sees end of stream or a reset, not a timeout.
pub fn assert_closed(s: &mut (impl Read + Write)) {
    let mut b = [0; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("unexpected data on a disconnected client"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "connection still open: {e}"
        ),
    }
}

pub fn exports_of(server: &Server) -> Vec<String> {
    server.sessions().into_iter().map(|s| s.export).collect()
}
