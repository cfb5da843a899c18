//! NBD_OPT_LIST over many exports, and the bound on options per handshake.

use std::sync::Arc;

use arca_nbd::proto::*;
use arca_nbd::{Device, ExportSummary, Exports, Limits};

use crate::support::*;

/// `n` exports named `e0000`, `e0001`, ..., all backed by one device.
struct ManyExports {
    n: usize,
    dev: Arc<MemDev>,
}

fn name(i: usize) -> String {
    format!("e{i:04}")
}

impl Exports for ManyExports {
    fn list(&self) -> Vec<ExportSummary> {
        (0..self.n)
            .map(|i| ExportSummary {
                name: name(i),
                description: format!("export {i}"),
                read_only: false,
            })
            .collect()
    }
    fn open(&self, name: &str) -> Result<(String, Arc<dyn Device>), String> {
        let known = name
            .strip_prefix('e')
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i < self.n);
        if !known {
            return Err(format!("no export {name:?}"));
        }
        Ok((name.to_string(), self.dev.clone() as Arc<dyn Device>))
    }
    fn flush_covers_all(&self) -> bool {
        true
    }
}

/// Reads replies to `option` through the ACK; returns the replies of type `kind`.
fn replies_through_ack(s: &mut std::net::TcpStream, option: u32, kind: u32) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        match recv_option(s, option) {
            (REP_ACK, _) => return got,
            (k, data) if k == kind => got.push(data),
            (k, _) if k == REP_INFO => {}
            (k, data) => panic!(
                "option {option}: reply {k:#x} {:?}",
                String::from_utf8_lossy(&data)
            ),
        }
    }
}

#[test]
fn a_client_can_list_2000_exports_and_ask_about_each() {
    const N: usize = 2000;
    let dev = MemExports::new(None, None).dev("a");
    let r = start_with(Arc::new(ManyExports { n: N, dev }), Limits::default());
    let mut s = begin(r.addr);
    send_option(&mut s, OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(recv_option(&mut s, OPT_STRUCTURED_REPLY).0, REP_ACK);
    send_option(&mut s, OPT_LIST, &[]);
    let listed = replies_through_ack(&mut s, OPT_LIST, REP_SERVER);
    assert_eq!(listed.len(), N);
    for (i, d) in listed.iter().enumerate() {
        let len = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
        assert_eq!(d[4..4 + len], *name(i).as_bytes());
        assert_eq!(d[4 + len..], *format!("export {i}").as_bytes());
    }
    // What `qemu-nbd --list` does next: INFO and LIST_META_CONTEXT for every export.
    for i in 0..N {
        let info = info(&mut s, &name(i));
        assert!(info.iter().any(|d| d[..2] == INFO_EXPORT.to_be_bytes()));
        let mut named = INFO_NAME.to_be_bytes().to_vec();
        named.extend_from_slice(name(i).as_bytes());
        assert!(info.contains(&named), "export {i}");
        let mut m = (name(i).len() as u32).to_be_bytes().to_vec();
        m.extend_from_slice(name(i).as_bytes());
        m.extend_from_slice(&0u32.to_be_bytes());
        send_option(&mut s, OPT_LIST_META_CONTEXT, &m);
        let contexts = replies_through_ack(&mut s, OPT_LIST_META_CONTEXT, REP_META_CONTEXT);
        assert_eq!(contexts.len(), 1, "export {i}");
    }
    // And then it can still pick one.
    assert_eq!(go(&mut s, &name(N - 1)), Ok(SIZE as u64));
    // (A flush: its reply is simple, with structured replies negotiated too.)
    let mut m = Vec::new();
    encode(&mut m, CMD_FLUSH, 0, 1, 0, 0, &[]);
    std::io::Write::write_all(&mut s, &m).unwrap();
    assert_eq!(recv_reply(&mut s), (1, 0));
    drop(s);
    r.stop();
}

/// Sends INFO for `export` and returns its REP_INFO replies.
fn info(s: &mut std::net::TcpStream, export: &str) -> Vec<Vec<u8>> {
    send_option(s, OPT_INFO, &info_request(export, &[INFO_NAME]));
    let mut got = Vec::new();
    loop {
        match recv_option(s, OPT_INFO) {
            (REP_ACK, _) => return got,
            (REP_INFO, data) => got.push(data),
            (k, _) => panic!("INFO {export}: reply {k:#x}"),
        }
    }
}

/// Sends `option` (no data) until the server hangs up; returns how many it answered.
fn answered_until_closed(s: &mut std::net::TcpStream, option: u32, most: usize) -> usize {
    for n in 0..most {
        send_option(s, option, &[]);
        let mut magic = [0u8; 8];
        if std::io::Read::read_exact(s, &mut magic).is_err() {
            return n;
        }
        assert_eq!(u64::from_be_bytes(magic), REP_MAGIC);
        assert_eq!(read_u32(s), option);
        let kind = read_u32(s);
        let mut data = vec![0; read_u32(s) as usize];
        std::io::Read::read_exact(s, &mut data).unwrap();
        if option == OPT_LIST {
            // The rest of the list, through its ACK.
            let mut k = kind;
            while k != REP_ACK {
                let (next, _) = recv_option(s, option);
                k = next;
            }
        }
    }
    panic!("the server answered {most} options");
}

#[test]
fn options_per_handshake_stay_bounded_after_a_list() {
    let limits = Limits {
        options_max: 8,
        ..Limits::default()
    };
    let r = start_with(Arc::new(MemExports::new(None, None)), limits);
    // Without a list: the plain cap.
    let mut s = begin(r.addr);
    assert_eq!(answered_until_closed(&mut s, OPT_STRUCTURED_REPLY, 100), 8);
    // Listing (two exports) makes room for a few options per export, once: listing again
    // and again gets no further.
    let mut s = begin(r.addr);
    let n = answered_until_closed(&mut s, OPT_LIST, 100);
    assert!((9..=8 + 2 * 8).contains(&n), "{n} options answered");
    r.stop();
}
