//! Session listing and per-export disconnect.

use std::sync::Arc;
use std::time::Duration;

use arca_nbd::SessionInfo;
use arca_nbd::proto::*;

use crate::support::*;

#[test]
fn disconnect_closes_only_that_exports_clients() {
    let r = start(MemExports::new(None, None));
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
    let r = start(MemExports::new(Some(gate.clone()), None));
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
    let r = start(MemExports::new(None, None));
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
