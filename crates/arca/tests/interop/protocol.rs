//! Malformed and hostile protocol input over a raw TcpStream. After each case the daemon must
//! still be running and serve a fresh client (a handshake here, then nbdinfo).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use arca_nbd::proto::*;

use crate::require;
use crate::util::{Daemon, MIB, Serve, run};

// The wire constants are the server's own (as arca-nbd's tests use them); what this checks is
// the daemon's behaviour on hostile input, and nbdinfo/qemu check the constants against theirs.
const REP_ERR_BIT: u32 = 1 << 31;

const VOLUME_SIZE: u64 = 128 * MIB;

fn daemon() -> Daemon {
    Daemon::with_volumes(&["vol=128M"])
}

fn connect(d: &Daemon) -> TcpStream {
    let s = TcpStream::connect(d.addr()).expect("connect");
    // Bounds every read: a server that hangs fails the test instead of blocking it.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("reading from the daemon");
    buf
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes(b[i..i + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i..i + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_be_bytes(b[i..i + 8].try_into().unwrap())
}

/// Reads the server greeting and returns its handshake flags.
fn greeting(s: &mut TcpStream) -> u16 {
    let g = read_exact(s, 18);
    assert_eq!(u64_at(&g, 0), NBDMAGIC);
    assert_eq!(u64_at(&g, 8), IHAVEOPT, "newstyle greeting expected");
    let flags = u16_at(&g, 16);
    assert!(
        flags & FLAG_FIXED_NEWSTYLE != 0,
        "fixed newstyle not offered"
    );
    flags
}

fn option(opt: u32, data: &[u8]) -> Vec<u8> {
    let mut m = IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&opt.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    m
}

fn go_data(name: &str) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    d
}

/// One option reply: (option, reply type, data).
fn option_reply(s: &mut TcpStream) -> (u32, u32, Vec<u8>) {
    let h = read_exact(s, 20);
    assert_eq!(u64_at(&h, 0), REP_MAGIC, "option reply magic");
    let len = u32_at(&h, 16) as usize;
    assert!(len < 1 << 20, "absurd option reply length {len}");
    (u32_at(&h, 8), u32_at(&h, 12), read_exact(s, len))
}

/// Sends NBD_OPT_GO for `name` and reads replies to the final one: Ok((size, transmission
/// flags)) on NBD_REP_ACK, Err(error reply type) on an error.
fn go(s: &mut TcpStream, name: &str) -> Result<(u64, u16), u32> {
    s.write_all(&option(OPT_GO, &go_data(name))).unwrap();
    let mut export = None;
    loop {
        let (opt, typ, data) = option_reply(s);
        assert_eq!(opt, OPT_GO);
        match typ {
            REP_ACK => return Ok(export.expect("NBD_INFO_EXPORT before NBD_REP_ACK")),
            REP_INFO => {
                if u16_at(&data, 0) == INFO_EXPORT {
                    export = Some((u64_at(&data, 2), u16_at(&data, 10)));
                }
            }
            t if t & REP_ERR_BIT != 0 => return Err(t),
            t => panic!("unexpected reply type {t:#x} to NBD_OPT_GO"),
        }
    }
}

/// Greeting and client flags: the stream is ready for options.
fn start_options(d: &Daemon) -> TcpStream {
    let mut s = connect(d);
    let flags = greeting(&mut s);
    let client = u32::from(flags & (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
    s.write_all(&client.to_be_bytes()).unwrap();
    s
}

/// A connection in transmission on `vol` (simple replies: no structured reply negotiated).
fn transmission(d: &Daemon) -> TcpStream {
    let mut s = start_options(d);
    let (size, _) = go(&mut s, "vol").expect("NBD_OPT_GO vol");
    assert_eq!(size, VOLUME_SIZE);
    s
}

fn request(s: &mut TcpStream, flags: u16, typ: u16, cookie: u64, offset: u64, len: u32) {
    let mut r = REQUEST_MAGIC.to_be_bytes().to_vec();
    r.extend_from_slice(&flags.to_be_bytes());
    r.extend_from_slice(&typ.to_be_bytes());
    r.extend_from_slice(&cookie.to_be_bytes());
    r.extend_from_slice(&offset.to_be_bytes());
    r.extend_from_slice(&len.to_be_bytes());
    s.write_all(&r).unwrap();
}

/// A simple reply header: (error, cookie).
fn simple_reply(s: &mut TcpStream) -> (u32, u64) {
    let h = read_exact(s, 16);
    assert_eq!(u32_at(&h, 0), SIMPLE_REPLY_MAGIC, "simple reply magic");
    (u32_at(&h, 4), u64_at(&h, 8))
}

/// Reads `len` bytes at `offset` and returns them.
fn read_at(s: &mut TcpStream, cookie: u64, offset: u64, len: u32) -> Vec<u8> {
    request(s, 0, CMD_READ, cookie, offset, len);
    let (err, c) = simple_reply(s);
    assert_eq!((err, c), (0, cookie), "read at {offset}");
    read_exact(s, len as usize)
}

fn write_at(s: &mut TcpStream, cookie: u64, offset: u64, data: &[u8]) -> u32 {
    request(s, 0, CMD_WRITE, cookie, offset, data.len() as u32);
    s.write_all(data).unwrap();
    let (err, c) = simple_reply(s);
    assert_eq!(c, cookie);
    err
}

/// Expects the daemon to close the connection (after any bytes it still sends).
fn assert_closed(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return;
            }
            Err(e) => panic!("{what}: the daemon should close the connection, got {e}"),
        }
    }
}

/// Expects the daemon to close `s`, then to serve new clients; stops it.
fn assert_closed_then_serving(mut d: Daemon, mut s: TcpStream, what: &str) {
    assert_closed(&mut s, what);
    assert_serving(&mut d);
    d.stop();
}

/// The daemon is up and serves new clients: our own handshake and read, then nbdinfo.
fn assert_serving(d: &mut Daemon) {
    d.assert_alive();
    let mut s = transmission(d);
    assert_eq!(read_at(&mut s, 99, 0, 512).len(), 512);
    request(&mut s, 0, CMD_DISC, 100, 0, 0);
    drop(s);
    let out = run("nbdinfo", &["--size", &d.uri("vol")]).ok();
    assert_eq!(out.stdout.trim(), VOLUME_SIZE.to_string());
    d.assert_alive();
}

#[test]
fn bad_client_flags_close_the_connection() {
    require!("nbdinfo");
    let d = daemon();
    let mut s = connect(&d);
    greeting(&mut s);
    // Unknown client flag bits: the server must not go on.
    let mut m = 0xdead_beefu32.to_be_bytes().to_vec();
    m.extend_from_slice(&option(OPT_GO, &go_data("vol")));
    // The daemon may close before reading it all; a failed write is not the point here.
    let _ = s.write_all(&m);
    assert_closed_then_serving(d, s, "unknown client flags");
}

#[test]
fn bad_option_magic_closes_the_connection() {
    require!("nbdinfo");
    let d = daemon();
    let mut s = start_options(&d);
    let mut m = option(OPT_GO, &go_data("vol"));
    m[..8].copy_from_slice(b"NOTAMAGC");
    s.write_all(&m).unwrap();
    assert_closed_then_serving(d, s, "bad option magic");
}

#[test]
fn truncated_option_then_disconnect() {
    require!("nbdinfo");
    let d = daemon();
    let mut s = start_options(&d);
    // Announces 100 bytes of data, sends 10, then ends its side.
    let mut m = option(OPT_GO, &[0; 100]);
    m.truncate(16 + 10);
    s.write_all(&m).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    assert_closed_then_serving(d, s, "truncated option");
}

#[test]
fn malformed_and_unknown_go_are_refused_and_negotiation_continues() {
    require!("nbdinfo");
    let mut d = daemon();
    let mut s = start_options(&d);
    // Name length longer than the option data.
    let mut data = 1000u32.to_be_bytes().to_vec();
    data.extend_from_slice(b"vol\0\0");
    s.write_all(&option(OPT_GO, &data)).unwrap();
    let (opt, typ, _) = option_reply(&mut s);
    assert_eq!(opt, OPT_GO);
    assert!(
        typ & REP_ERR_BIT != 0,
        "malformed NBD_OPT_GO accepted: {typ:#x}"
    );
    // An export that does not exist.
    assert_eq!(go(&mut s, "nosuch"), Err(REP_ERR_UNKNOWN));
    // The same connection can still negotiate, then read.
    let (size, _) = go(&mut s, "vol").expect("NBD_OPT_GO after errors");
    assert_eq!(size, VOLUME_SIZE);
    assert_eq!(read_at(&mut s, 1, 0, 4096), vec![0; 4096]);
    drop(s);
    assert_serving(&mut d);
    d.stop();
}

#[test]
fn option_with_huge_length_is_not_accepted() {
    require!("nbdinfo");
    let mut d = daemon();
    let mut s = start_options(&d);
    let mut m = IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&OPT_GO.to_be_bytes());
    m.extend_from_slice(&u32::MAX.to_be_bytes());
    m.extend_from_slice(&go_data("vol"));
    s.write_all(&m).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    // An error reply (NBD_REP_ERR_TOO_BIG or similar) or a close, never a success.
    let mut h = [0u8; 20];
    match s.read_exact(&mut h) {
        Ok(()) => {
            assert_eq!(u64_at(&h, 0), REP_MAGIC);
            let typ = u32_at(&h, 12);
            assert!(typ & REP_ERR_BIT != 0, "4 GiB option answered {typ:#x}");
        }
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ),
            "neither a reply nor a close: {e}"
        ),
    }
    drop(s);
    assert_serving(&mut d);
    d.stop();
}

#[test]
fn bad_request_magic_closes_the_connection() {
    require!("nbdinfo");
    let d = daemon();
    let mut s = transmission(&d);
    let mut r = 0x1234_5678u32.to_be_bytes().to_vec();
    r.extend_from_slice(&[0; 24]);
    s.write_all(&r).unwrap();
    assert_closed_then_serving(d, s, "bad request magic");
}

#[test]
fn overflowing_range_unknown_command_and_flags_get_errors() {
    require!("nbdinfo");
    let d = daemon();
    let mut s = transmission(&d);
    // offset + length overflows u64.
    request(&mut s, 0, CMD_READ, 1, u64::MAX - 511, 4096);
    assert_eq!(
        simple_reply(&mut s),
        (EINVAL, 1),
        "read with offset+length overflow"
    );
    let err = write_at(&mut s, 2, u64::MAX - 100, &[0x55; 512]);
    assert!(
        err == EINVAL || err == ENOSPC,
        "write with offset+length overflow: errno {err}"
    );
    // Past the end without overflow.
    request(&mut s, 0, CMD_READ, 3, VOLUME_SIZE, 1);
    assert_eq!(simple_reply(&mut s), (EINVAL, 3), "read past the end");
    // Unknown command type.
    request(&mut s, 0, 0x4242, 4, 0, 0);
    assert_eq!(simple_reply(&mut s), (EINVAL, 4), "unknown command");
    // Unknown flag bit on a read.
    request(&mut s, 0x8000, CMD_READ, 5, 0, 512);
    assert_eq!(simple_reply(&mut s), (EINVAL, 5), "unknown command flag");
    // Beyond the maximum payload, inside the volume.
    request(&mut s, 0, CMD_READ, 6, 0, 64 * MIB as u32);
    let (err, cookie) = simple_reply(&mut s);
    assert_eq!(cookie, 6);
    assert!(
        err == EINVAL || err == EOVERFLOW,
        "64 MiB read: errno {err}"
    );
    // The connection is still in step: a write and read-back work.
    assert_eq!(write_at(&mut s, 7, 4096, &[0x77; 4096]), 0);
    assert_eq!(read_at(&mut s, 8, 4096, 4096), vec![0x77; 4096]);
    request(&mut s, 0, CMD_FLUSH, 9, 0, 0);
    assert_eq!(simple_reply(&mut s), (0, 9));
    request(&mut s, 0, CMD_DISC, 10, 0, 0);
    assert_closed_then_serving(d, s, "NBD_CMD_DISC");
}

#[test]
fn disconnect_mid_write_payload_applies_nothing() {
    require!("nbdinfo");
    let mut d = daemon();
    let mut s = transmission(&d);
    // A 1 MiB write of which only 4 KiB of payload arrives.
    request(&mut s, 0, CMD_WRITE, 1, 0, MIB as u32);
    s.write_all(&[0xaa; 4096]).unwrap();
    drop(s);
    assert_serving(&mut d);
    let mut s = transmission(&d);
    assert_eq!(
        read_at(&mut s, 2, 0, 1024 * 1024),
        vec![0; 1024 * 1024],
        "a write whose payload never fully arrived must not be applied"
    );
    drop(s);
    d.stop();
}

#[test]
fn sigterm_flushes_unflushed_writes() {
    require!("nbdinfo");
    let d = daemon();
    let mut s = transmission(&d);
    // Acknowledged but never flushed by the client; the connection stays open across SIGTERM.
    assert_eq!(write_at(&mut s, 1, 3 * MIB, &[0x3c; 65536]), 0);
    let mut d = d.restart();
    drop(s);
    let mut s = transmission(&d);
    assert_eq!(read_at(&mut s, 2, 3 * MIB, 65536), vec![0x3c; 65536]);
    drop(s);
    assert_serving(&mut d);
    d.stop();
}

#[test]
fn pipelined_requests_are_all_answered_by_cookie() {
    require!("nbdinfo");
    let d = daemon();
    let mut s = transmission(&d);
    const N: u64 = 64;
    const LEN: usize = 65536 + 513;
    let block = |i: u64| vec![(i as u8).wrapping_mul(7).wrapping_add(1); LEN];
    let offset = |i: u64| i * (LEN as u64 + 1000);
    // All writes sent before any reply is read; replies may come in any order.
    for i in 0..N {
        request(&mut s, 0, CMD_WRITE, 1000 + i, offset(i), LEN as u32);
        s.write_all(&block(i)).unwrap();
    }
    let mut seen: Vec<u64> = (0..N)
        .map(|_| simple_reply(&mut s))
        .map(|(e, c)| {
            assert_eq!(e, 0, "write {c}");
            c
        })
        .collect();
    seen.sort();
    assert_eq!(seen, (1000..1000 + N).collect::<Vec<_>>());
    for i in 0..N {
        request(&mut s, 0, CMD_READ, 2000 + i, offset(i), LEN as u32);
    }
    let mut seen = Vec::new();
    for _ in 0..N {
        let (e, c) = simple_reply(&mut s);
        assert_eq!(e, 0, "read {c}");
        assert!((2000..2000 + N).contains(&c), "unknown cookie {c}");
        assert_eq!(read_exact(&mut s, LEN), block(c - 2000), "read {c}");
        seen.push(c);
    }
    seen.sort();
    assert_eq!(seen, (2000..2000 + N).collect::<Vec<_>>());
    request(&mut s, 0, CMD_DISC, 1, 0, 0);
    assert_closed_then_serving(d, s, "NBD_CMD_DISC");
}

/// A new connection asking for the export list is refused by policy: it and the message.
fn list_refused(d: &Daemon) -> (TcpStream, String) {
    let mut s = start_options(d);
    s.write_all(&option(OPT_LIST, &[])).unwrap();
    let (opt, reply, msg) = option_reply(&mut s);
    assert_eq!(opt, OPT_LIST);
    assert_eq!(reply, REP_ERR_POLICY, "reply {reply:#x}");
    (s, String::from_utf8_lossy(&msg).into_owned())
}

/// The daemon with `vol` and more `arca serve` options.
fn daemon_with(args: &[&str]) -> Daemon {
    Serve::new().volumes(&["vol=128M"]).args(args).start()
}

/// The first line of the daemon's log that contains `text`.
fn log_line(d: &Daemon, text: &str) -> Option<String> {
    d.log()
        .lines()
        .find(|l| l.contains(text))
        .map(str::to_string)
}

/// Polls `done` every 50 ms until it holds; panics naming `what` after 30 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connections_past_the_cap_get_a_policy_error_and_others_still_work() {
    // All from one address: its own cap must not come first.
    let mut d = daemon_with(&["--nbd-max-connections-per-host", "200"]);
    // The daemon's cap is 128 connections; idle handshakes count.
    let held: Vec<TcpStream> = (0..128).map(|_| start_options(&d)).collect();
    let (extra, msg) = list_refused(&d);
    assert!(msg.contains("too many connections"), "{msg}");
    drop(extra);
    drop(held);
    // Freed slots are reused once the daemon notices the closed connections.
    wait_until("slots freed", || {
        let mut s = start_options(&d);
        s.write_all(&option(OPT_LIST, &[])).unwrap();
        option_reply(&mut s).1 != REP_ERR_POLICY
    });
    assert_serving(&mut d);
    let log = d.log();
    assert!(
        log.contains("refusing an NBD connection") && log.contains("limit=\"connections\""),
        "{log}"
    );
    d.stop();
}

#[test]
fn one_address_gets_its_own_connection_cap_and_the_refusal_is_logged() {
    let mut d = daemon_with(&["--nbd-max-connections-per-host", "3"]);
    let held: Vec<TcpStream> = (0..3).map(|_| transmission(&d)).collect();
    let (extra, msg) = list_refused(&d);
    let peer = extra.local_addr().unwrap().to_string();
    assert!(msg.contains("from this address"), "{msg}");
    let line = log_line(&d, "refusing an NBD connection")
        .unwrap_or_else(|| panic!("no refusal logged:\n{}", d.log()));
    assert!(line.contains("WARN") && line.contains(&peer), "{line}");
    assert!(line.contains("connections per address"), "{line}");
    drop(extra);
    drop(held);
    // The slots are freed once the daemon notices the closed connections.
    wait_until("slots freed", || go(&mut start_options(&d), "vol").is_ok());
    assert_serving(&mut d);
    d.stop();
}

#[test]
fn idle_connections_are_closed_and_logged() {
    let mut d = daemon_with(&["--nbd-idle-timeout", "1"]);
    let mut idle = transmission(&d);
    let peer = idle.local_addr().unwrap().to_string();
    // Closed after the timeout (the client's 10 s read timeout bounds the wait).
    assert_closed(&mut idle, "an idle connection");
    // Logged as the connection thread ends, which may be just after the client sees the close.
    wait_until("an idle close logged", || {
        log_line(&d, "closed an idle connection").is_some()
    });
    let line = log_line(&d, "closed an idle connection").unwrap();
    assert!(line.contains("INFO") && line.contains(&peer), "{line}");
    assert_serving(&mut d);
    d.stop();
}

#[test]
fn second_daemon_on_the_same_pool_is_refused_with_a_clear_message() {
    let mut d = daemon();
    let pool = d.dir().join("pool");
    let out = run(
        env!("CARGO_BIN_EXE_arca"),
        &[
            "serve",
            "--pool",
            pool.to_str().unwrap(),
            "--nbd",
            "127.0.0.1:0",
            "--api",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("in use by another process")
            && out.stderr.contains("another arca serve"),
        "{}",
        out.describe()
    );
    assert_serving(&mut d);
    d.stop();
}
