//! A host for the harnesses: an NBD client that does the handshake by hand and then just stays
//! connected, so a test can see the daemon count it and disconnect it.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Connects to `export` at `addr` (fixed newstyle, NBD_OPT_EXPORT_NAME) and returns once the
/// server has listed the session: it lists it before it sends the export size and flags.
pub fn connect(addr: &str, export: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], b"NBDMAGIC");
    // FIXED_NEWSTYLE | NO_ZEROES
    s.write_all(&3u32.to_be_bytes()).unwrap();
    let mut opt = Vec::new();
    opt.extend_from_slice(b"IHAVEOPT");
    opt.extend_from_slice(&1u32.to_be_bytes());
    opt.extend_from_slice(&(export.len() as u32).to_be_bytes());
    opt.extend_from_slice(export.as_bytes());
    s.write_all(&opt).unwrap();
    // Export size and transmission flags.
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply)
        .unwrap_or_else(|e| panic!("export {export} was not opened: {e}"));
    s
}

/// Asserts that the server closed the connection (within the read timeout set by `connect`).
pub fn assert_closed(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 1];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the connection of {what} is still open: {other:?}"),
    }
}

/// Asserts that the server keeps the connection open: nothing to read, no end of stream.
pub fn assert_open(s: &mut TcpStream, what: &str) {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let r = s.read(&mut buf);
    s.set_nonblocking(false).unwrap();
    match r {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the connection of {what} was closed: {other:?}"),
    }
}
