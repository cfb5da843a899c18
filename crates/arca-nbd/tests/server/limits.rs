//! Connection limits: idle connections are closed, each client address has its own cap, and
//! refused connections cost a bounded number of threads.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use arca_nbd::Limits;
use arca_nbd::proto::*;

use crate::support::*;

const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Short, so the tests wait little; long enough that a client between two steps is not idle.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Generous: a slow machine still gets there; a server that never frees a slot fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// Retries a full handshake from `source` until the server admits it.
fn connect_eventually(addr: SocketAddr, source: Ipv4Addr) -> TcpStream {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut s = begin_from(source, addr);
        match go(&mut s, "a") {
            Ok(_) => return s,
            Err(k) => assert_eq!(k, REP_ERR_POLICY, "reply {k:#x}"),
        }
        assert!(Instant::now() < deadline, "no slot was ever freed");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Sends two reads in one write: the first goes to a worker (the next is waiting), so the
/// reader goes back to the socket with requests in flight. Cookies `first` and `first + 1`.
fn send_two_reads(s: &mut TcpStream, first: u64) {
    let mut m = Vec::new();
    encode(&mut m, CMD_READ, 0, first, 0, 512, &[]);
    encode(&mut m, CMD_READ, 0, first + 1, 8192, 512, &[]);
    s.write_all(&m).unwrap();
}

/// Reads `n` replies to 512-byte reads at the offsets `offset_of(cookie)`; returns the cookies.
fn recv_reads(s: &mut TcpStream, n: usize, offset_of: impl Fn(u64) -> usize) -> Vec<u64> {
    let mut cookies: Vec<u64> = (0..n)
        .map(|_| {
            let (cookie, error) = recv_reply(s);
            assert_eq!(error, 0);
            let mut data = vec![0; 512];
            s.read_exact(&mut data).unwrap();
            assert!(
                data == expected("a", offset_of(cookie), 512),
                "read {cookie}"
            );
            cookie
        })
        .collect();
    cookies.sort();
    cookies
}

#[test]
fn idle_connections_are_closed_so_the_connection_cap_does_not_lock_clients_out() {
    let gate = Arc::new(Gate::default());
    let limits = Limits {
        connections_max: 4,
        connections_per_host_max: 4,
        idle_timeout: Some(IDLE_TIMEOUT),
        ..Limits::default()
    };
    let r = start_with(Arc::new(MemExports::new(Some(gate.clone()), None)), limits);
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(r.addr, "a")).collect();
    // Reads held in the device keep every connection busy, so none can be idle yet.
    for s in &mut held {
        send_two_reads(s, 1);
    }
    gate.wait_entered();
    // The cap is reached: the next client is refused as long as the others stay.
    let mut extra = begin(r.addr);
    let (kind, msg) = go_message(&mut extra, "a").unwrap_err();
    assert_eq!(kind, REP_ERR_POLICY);
    assert!(msg.contains("too many connections"), "{msg}");
    drop(extra);
    gate.release();
    for s in &mut held {
        assert_eq!(recv_reads(s, 2, |c| (c as usize - 1) * 8192), [1, 2]);
    }
    // Now idle, they are closed after the timeout, and a new client gets in.
    let mut fresh = connect_eventually(r.addr, LOCAL);
    check_read(&mut fresh, "a", 3, 4096, 4096);
    for s in &mut held {
        assert_closed(s);
    }
    drop(fresh);
    r.stop();
}

#[test]
fn a_connection_with_requests_in_flight_is_not_idle() {
    let gate = Arc::new(Gate::default());
    let limits = Limits {
        idle_timeout: Some(IDLE_TIMEOUT),
        ..Limits::default()
    };
    let r = start_with(Arc::new(MemExports::new(Some(gate.clone()), None)), limits);
    let mut s = connect(r.addr, "a");
    send_two_reads(&mut s, 1);
    gate.wait_entered();
    // Several idle timeouts pass on the reader while the reads are held.
    thread::sleep(IDLE_TIMEOUT * 3);
    // Still reading requests: this one is answered, after the held ones.
    send_read(&mut s, 3, 16384, 512);
    gate.release();
    let cookies = recv_reads(&mut s, 3, |c| [0, 0, 8192, 16384][c as usize]);
    assert_eq!(cookies, [1, 2, 3]);
    // Once nothing is in flight, the connection is idle and closed.
    assert_closed(&mut s);
    r.stop();
}

/// A server of plain memory exports with these connection caps (in all, and per address).
fn start_capped(connections_max: usize, connections_per_host_max: usize) -> Running {
    let limits = Limits {
        connections_max,
        connections_per_host_max,
        ..Limits::default()
    };
    start_with(Arc::new(MemExports::new(None, None)), limits)
}

#[test]
fn each_client_address_has_its_own_connection_cap() {
    let r = start_capped(8, 2);
    let mut first = connect(r.addr, "a");
    let _second = connect(r.addr, "a");
    let mut third = begin_from(LOCAL, r.addr);
    let (kind, msg) = go_message(&mut third, "a").unwrap_err();
    assert_eq!(kind, REP_ERR_POLICY);
    assert!(msg.contains("from this address"), "{msg}");
    // Other addresses are served, and the refused client's own still work.
    let mut other = begin_from(OTHER, r.addr);
    assert_eq!(go(&mut other, "b"), Ok(SIZE as u64));
    check_read(&mut other, "b", 1, 0, 4096);
    check_read(&mut first, "a", 2, 0, 4096);
    // A connection that ends frees its address's slot.
    drop(first);
    drop(third);
    let mut again = connect_eventually(r.addr, LOCAL);
    check_read(&mut again, "a", 3, 512, 512);
    r.stop();
}

#[test]
fn a_flood_of_refused_connections_holds_neither_slots_nor_many_threads() {
    let r = start_capped(4, 1);
    let _served = connect(r.addr, "a");
    // Held open and silent: each would keep a refusal thread until the handshake timeout.
    const FLOOD: usize = 64;
    let mut flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| {
            let s = TcpStream::connect(r.addr).unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s
        })
        .collect();
    // Refusals past a few are closed at once, without even a greeting.
    let mut greeted = 0;
    for s in &mut flood {
        let mut magic = [0u8; 8];
        match s.read_exact(&mut magic) {
            Ok(()) => {
                assert_eq!(u64::from_be_bytes(magic), NBDMAGIC);
                greeted += 1;
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}"),
        }
    }
    assert!(
        greeted > 0 && greeted < FLOOD / 2,
        "{greeted} refusals answered"
    );
    // The refused connections take no slot: other addresses are still served.
    let mut other = begin_from(OTHER, r.addr);
    assert_eq!(go(&mut other, "a"), Ok(SIZE as u64));
    check_read(&mut other, "a", 1, 0, 512);
    drop(flood);
    r.stop();
}
