//! Session listing and per-export disconnect, driven by raw TCP clients that speak the
//! fixed-newstyle handshake (NBD_OPT_GO) and simple replies by hand.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use arca_nbd::proto::*;
use arca_nbd::{DevResult, Device, ExportSummary, Exports, Extent, Limits, Server, SessionInfo};

const SIZE: usize = 1 << 20;
/// Long enough never to fire on a healthy run; keeps a broken one from hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Holds a device's reads until released, so a test can act while a request is in flight.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool)>, // (a read entered, released)
    cv: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        self.cv.notify_all();
        while !s.1 {
            s = self.cv.wait(s).unwrap();
        }
    }
    fn wait_entered(&self) {
        let mut s = self.state.lock().unwrap();
        while !s.0 {
            s = self.cv.wait(s).unwrap();
        }
    }
    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

struct MemDev {
    data: Mutex<Vec<u8>>,
    gate: Option<Arc<Gate>>,
}

impl Device for MemDev {
    fn size_bytes(&self) -> DevResult<u64> {
        Ok(SIZE as u64)
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> DevResult<()> {
        if let Some(g) = &self.gate {
            g.pass();
        }
        let d = self.data.lock().unwrap();
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
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

struct MemExports(HashMap<String, Arc<MemDev>>);

impl MemExports {
    /// Exports "a" and "b", each filled with a pattern distinct per export.
    fn new(gate_a: Option<Arc<Gate>>) -> MemExports {
        let dev = |seed: u8, gate| {
            let data = (0..SIZE).map(|i| (i % 251) as u8 ^ seed).collect();
            Arc::new(MemDev {
                data: Mutex::new(data),
                gate,
            })
        };
        let mut m = HashMap::new();
        m.insert("a".to_string(), dev(0x00, gate_a));
        m.insert("b".to_string(), dev(0x5a, None));
        MemExports(m)
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

fn expected(export: &str, offset: usize, len: usize) -> Vec<u8> {
    let seed = if export == "a" { 0x00 } else { 0x5a };
    (offset..offset + len)
        .map(|i| (i % 251) as u8 ^ seed)
        .collect()
}

struct Running {
    server: Arc<Server>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<io::Result<()>>,
}

fn start(exports: MemExports) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Server::new(Arc::new(exports), Limits::default()));
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
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap().unwrap();
        assert!(self.server.sessions().is_empty(), "stop ends every session");
    }
}

fn read_u32(s: &mut TcpStream) -> u32 {
    let mut b = [0; 4];
    s.read_exact(&mut b).unwrap();
    u32::from_be_bytes(b)
}

fn read_u64(s: &mut TcpStream) -> u64 {
    let mut b = [0; 8];
    s.read_exact(&mut b).unwrap();
    u64::from_be_bytes(b)
}

/// Connects and reads the greeting, then sends the client flags: the handshake has begun.
fn begin(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
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

/// Sends NBD_OPT_GO for `export` (no info requests) and reads its replies through the final
/// one: Ok(size) on ACK, Err(reply type) on an error reply.
fn go(s: &mut TcpStream, export: &str) -> Result<u64, u32> {
    let mut m = IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&OPT_GO.to_be_bytes());
    m.extend_from_slice(&(4 + export.len() as u32 + 2).to_be_bytes());
    m.extend_from_slice(&(export.len() as u32).to_be_bytes());
    m.extend_from_slice(export.as_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    s.write_all(&m).unwrap();
    let mut size = None;
    loop {
        assert_eq!(read_u64(s), REP_MAGIC);
        assert_eq!(read_u32(s), OPT_GO);
        let kind = read_u32(s);
        let mut data = vec![0; read_u32(s) as usize];
        s.read_exact(&mut data).unwrap();
        match kind {
            REP_ACK => return Ok(size.expect("INFO_EXPORT before ACK")),
            REP_INFO if data[..2] == INFO_EXPORT.to_be_bytes() => {
                size = Some(u64::from_be_bytes(data[2..10].try_into().unwrap()));
            }
            REP_INFO => {}
            k if k & 0x8000_0000 != 0 => return Err(k),
            k => panic!("unexpected reply type {k:#x}"),
        }
    }
}

fn connect(addr: SocketAddr, export: &str) -> TcpStream {
    let mut s = begin(addr);
    assert_eq!(go(&mut s, export), Ok(SIZE as u64));
    s
}

fn send_read(s: &mut TcpStream, cookie: u64, offset: u64, length: u32) {
    let mut m = REQUEST_MAGIC.to_be_bytes().to_vec();
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(&CMD_READ.to_be_bytes());
    m.extend_from_slice(&cookie.to_be_bytes());
    m.extend_from_slice(&offset.to_be_bytes());
    m.extend_from_slice(&length.to_be_bytes());
    s.write_all(&m).unwrap();
}

/// Reads a successful simple reply to a READ and returns its data.
fn recv_read(s: &mut TcpStream, cookie: u64, length: u32) -> Vec<u8> {
    assert_eq!(read_u32(s), SIMPLE_REPLY_MAGIC);
    assert_eq!(read_u32(s), 0, "read failed");
    assert_eq!(read_u64(s), cookie);
    let mut data = vec![0; length as usize];
    s.read_exact(&mut data).unwrap();
    data
}

fn check_read(s: &mut TcpStream, export: &str, cookie: u64, offset: u64, length: u32) {
    send_read(s, cookie, offset, length);
    let data = recv_read(s, cookie, length);
    assert!(data == expected(export, offset as usize, length as usize));
}

/// The server closed the connection: a read sees end of stream or a reset, not a timeout.
fn assert_closed(s: &mut TcpStream) {
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

fn exports_of(server: &Server) -> Vec<String> {
    server.sessions().into_iter().map(|s| s.export).collect()
}

#[test]
fn disconnect_closes_only_that_exports_clients() {
    let r = start(MemExports::new(None));
    let mut a1 = connect(r.addr, "a");
    let mut a2 = connect(r.addr, "a");
    let mut b = connect(r.addr, "b");

    // Listed by the time the handshake completes, in id (here: connection) order.
    let sessions: Vec<SessionInfo> = r.server.sessions();
    assert_eq!(exports_of(&r.server), ["a", "a", "b"]);
    assert!(sessions.windows(2).all(|w| w[0].id < w[1].id));
    for (s, client) in sessions.iter().zip([&a1, &a2, &b]) {
        assert_eq!(s.peer, client.local_addr().unwrap().to_string());
        assert!(!s.read_only);
        assert!(s.connected_unix > 1_600_000_000);
    }
    check_read(&mut a1, "a", 1, 4096, 512);
    check_read(&mut b, "b", 2, 0, 4096);

    assert!(!r.server.wait_disconnected("a", Duration::from_millis(50)));
    assert!(r.server.wait_disconnected("none", Duration::ZERO));

    assert_eq!(r.server.disconnect("a"), 2);
    assert_closed(&mut a1);
    assert_closed(&mut a2);
    assert!(r.server.wait_disconnected("a", IO_TIMEOUT));
    let sessions = r.server.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].export, "b");
    assert_eq!(sessions[0].peer, b.local_addr().unwrap().to_string());

    // The other export's client goes on as before.
    check_read(&mut b, "b", 3, 65536, 8192);
    assert_eq!(r.server.disconnect("a"), 0);

    // Disconnecting does not bar the export: new clients can connect (keeping them out is
    // the job of Exports::open).
    let mut a3 = connect(r.addr, "a");
    check_read(&mut a3, "a", 4, 0, 512);
    assert_eq!(exports_of(&r.server), ["b", "a"]);

    drop(a3);
    r.stop();
    assert_closed(&mut b);
}

#[test]
fn disconnect_lets_a_request_already_read_finish() {
    let gate = Arc::new(Gate::default());
    let r = start(MemExports::new(Some(gate.clone())));
    let mut a = connect(r.addr, "a");
    let mut b = connect(r.addr, "b");

    send_read(&mut a, 7, 8192, 4096);
    gate.wait_entered();
    assert_eq!(r.server.disconnect("a"), 1);
    // Still listed while its request runs.
    assert!(!r.server.wait_disconnected("a", Duration::from_millis(50)));
    gate.release();

    assert!(recv_read(&mut a, 7, 4096) == expected("a", 8192, 4096));
    assert_closed(&mut a);
    assert!(r.server.wait_disconnected("a", IO_TIMEOUT));
    check_read(&mut b, "b", 8, 0, 4096);
    assert_eq!(exports_of(&r.server), ["b"]);
    r.stop();
}

#[test]
fn disconnect_refuses_a_handshake_in_progress() {
    let r = start(MemExports::new(None));
    // Greeting read: the server has begun this handshake and may already have opened "a".
    let mut h = begin(r.addr);
    assert_eq!(r.server.disconnect("a"), 0);
    assert_eq!(go(&mut h, "a"), Err(REP_ERR_UNKNOWN));
    assert!(r.server.sessions().is_empty());

    // The refusal is for that export only, and handshakes begun later are not affected.
    assert_eq!(go(&mut h, "b"), Ok(SIZE as u64));
    check_read(&mut h, "b", 1, 0, 512);
    let mut a = connect(r.addr, "a");
    check_read(&mut a, "a", 2, 0, 512);
    assert_eq!(exports_of(&r.server), ["b", "a"]);
    r.stop();
}
