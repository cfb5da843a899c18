//! NBD_OPT_STARTTLS: the protocol's rules for each mode, data served over TLS (pipelined, with
//! replies from several workers), and client certificates checked against the CA.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};

use arca_nbd::proto::*;
use arca_nbd::{Limits, Server, TlsConfig, TlsMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::certs::Certs;
use crate::support::*;

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Certificates are made once per test run (openssl takes a moment).
fn certs() -> &'static Certs {
    static CERTS: OnceLock<(tempfile::TempDir, Certs)> = OnceLock::new();
    let (_, c) = CERTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::make(dir.path());
        (dir, certs)
    });
    c
}

/// A server over the test exports with TLS in `mode`; `client_ca`: require client
/// certificates from the test CA.
fn serve(mode: TlsMode, client_ca: bool) -> Running {
    let c = certs();
    let tls = if mode == TlsMode::Off {
        TlsConfig::off()
    } else {
        let ca = c.path("ca-cert.pem");
        TlsConfig::from_files(
            mode,
            &c.path("server-cert.pem"),
            &c.path("server-key.pem"),
            client_ca.then_some(ca.as_path()),
        )
        .unwrap()
    };
    let exports = Arc::new(MemExports::new(None, None));
    start_server(Server::new(exports, Limits::default()).with_tls(tls))
}

/// A client configuration trusting the test CA, presenting `identity`'s certificate if any.
fn client_config(identity: Option<&str>) -> Arc<ClientConfig> {
    let c = certs();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(c.path("ca-cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = CertificateDer::pem_file_iter(c.path(&format!("{id}-cert.pem")))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(c.path(&format!("{id}-key.pem"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}

/// Sends STARTTLS on a begun handshake, expects the ACK and runs the client's TLS handshake.
fn upgrade(mut s: TcpStream, identity: Option<&str>) -> io::Result<TlsStream> {
    send_option(&mut s, OPT_STARTTLS, &[]);
    assert_eq!(recv_option(&mut s, OPT_STARTTLS), (REP_ACK, vec![]));
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(client_config(identity), name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut s)?;
    }
    Ok(StreamOwned::new(conn, s))
}

fn begin_tls(addr: SocketAddr, identity: Option<&str>) -> TlsStream {
    upgrade(begin(addr), identity).unwrap()
}

/// Whether the server ends the session instead of answering (read error or end of stream).
fn ends_session(s: &mut impl Read) -> bool {
    let mut b = [0; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn tls_serves_reads_and_writes_with_pipelined_replies() {
    let r = serve(TlsMode::Require, false);
    let mut s = begin_tls(r.addr, None);
    assert_eq!(go(&mut s, "a"), Ok(SIZE as u64));
    // A write, then a read of it back.
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    let mut m = Vec::new();
    encode(&mut m, CMD_WRITE, CMD_FLAG_FUA, 1, 4096, 8192, &data);
    s.write_all(&m).unwrap();
    assert_eq!(recv_reply(&mut s), (1, 0));
    send_read(&mut s, 2, 4096, 8192);
    assert!(recv_read(&mut s, 2, 8192) == data);
    // Pipelined reads, replied by several workers at once and in any order, each larger than
    // one encrypted send.
    let len = 512 * 1024;
    let mut m = Vec::new();
    for cookie in 0..8u64 {
        encode(
            &mut m,
            CMD_READ,
            0,
            100 + cookie,
            (cookie % 2) * len as u64,
            len,
            &[],
        );
    }
    s.write_all(&m).unwrap();
    for _ in 0..8 {
        let (cookie, error) = recv_reply(&mut s);
        assert_eq!(error, 0);
        let mut got = vec![0; len as usize];
        s.read_exact(&mut got).unwrap();
        let offset = ((cookie - 100) % 2) as usize * len as usize;
        let mut want = expected("a", offset, len as usize);
        if offset == 0 {
            want[4096..4096 + 8192].copy_from_slice(&data);
        }
        assert!(got == want, "reply {cookie} carries its own data");
    }
    let mut m = Vec::new();
    encode(&mut m, CMD_DISC, 0, 9, 0, 0, &[]);
    s.write_all(&m).unwrap();
    drop(s);
    r.stop();
}

#[test]
fn require_refuses_every_option_before_starttls() {
    let r = serve(TlsMode::Require, false);
    let mut s = begin(r.addr);
    for option in [
        OPT_LIST,
        OPT_INFO,
        OPT_GO,
        OPT_STRUCTURED_REPLY,
        OPT_LIST_META_CONTEXT,
    ] {
        let data = match option {
            OPT_INFO | OPT_GO => info_request("a", &[]),
            _ => Vec::new(),
        };
        send_option(&mut s, option, &data);
        let (kind, _) = recv_option(&mut s, option);
        assert_eq!(kind, REP_ERR_TLS_REQD, "option {option}");
    }
    // EXPORT_NAME has no error reply: the session ends, nothing served.
    send_option(&mut s, OPT_EXPORT_NAME, b"a");
    assert_closed(&mut s);
    // ABORT is still answered.
    let mut s = begin(r.addr);
    send_option(&mut s, OPT_ABORT, &[]);
    assert_eq!(recv_option(&mut s, OPT_ABORT).0, REP_ACK);
    r.stop();
}

#[test]
fn require_serves_every_option_after_starttls() {
    let r = serve(TlsMode::Require, false);
    let mut s = begin_tls(r.addr, None);
    send_option(&mut s, OPT_LIST, &[]);
    assert_eq!(recv_option(&mut s, OPT_LIST).0, REP_SERVER);
    assert_eq!(recv_option(&mut s, OPT_LIST).0, REP_SERVER);
    assert_eq!(recv_option(&mut s, OPT_LIST).0, REP_ACK);
    // A second STARTTLS is invalid (and never TLS_REQD once TLS runs).
    send_option(&mut s, OPT_STARTTLS, &[]);
    assert_eq!(recv_option(&mut s, OPT_STARTTLS).0, REP_ERR_INVALID);
    assert_eq!(go(&mut s, "b"), Ok(SIZE as u64));
    check_read(&mut s, "b", 1, 8192, 4096);
    drop(s);
    r.stop();
}

/// A server in `mode` answers STARTTLS with `data` by `reply`, and the session goes on in
/// the clear.
fn assert_starttls_refused(mode: TlsMode, data: &[u8], reply: u32) {
    let r = serve(mode, false);
    let mut s = begin(r.addr);
    send_option(&mut s, OPT_STARTTLS, data);
    assert_eq!(recv_option(&mut s, OPT_STARTTLS).0, reply);
    assert_eq!(go(&mut s, "a"), Ok(SIZE as u64));
    drop(s);
    r.stop();
}

#[test]
fn starttls_with_data_is_invalid() {
    assert_starttls_refused(TlsMode::On, b"x", REP_ERR_INVALID);
}

#[test]
fn without_tls_starttls_is_unsupported() {
    assert_starttls_refused(TlsMode::Off, &[], REP_ERR_UNSUP);
}

#[test]
fn tls_on_serves_plain_and_tls_clients() {
    let r = serve(TlsMode::On, false);
    let mut plain = connect(r.addr, "a");
    check_read(&mut plain, "a", 1, 0, 4096);
    let mut tls = begin_tls(r.addr, None);
    assert_eq!(go(&mut tls, "a"), Ok(SIZE as u64));
    check_read(&mut tls, "a", 1, 0, 4096);
    drop((plain, tls));
    r.stop();
}

/// The transmission flags a GO for `export` answers.
fn go_flags(s: &mut (impl Read + Write), export: &str) -> u16 {
    send_option(s, OPT_GO, &info_request(export, &[]));
    let mut flags = None;
    loop {
        let (kind, data) = recv_option(s, OPT_GO);
        match kind {
            REP_ACK => return flags.expect("INFO_EXPORT before ACK"),
            REP_INFO if data[..2] == INFO_EXPORT.to_be_bytes() => {
                flags = Some(u16::from_be_bytes(data[10..12].try_into().unwrap()));
            }
            REP_INFO => {}
            k => panic!("unexpected reply type {k:#x}"),
        }
    }
}

#[test]
fn options_negotiated_before_starttls_are_forgotten() {
    let r = serve(TlsMode::On, false);
    let mut s = begin(r.addr);
    send_option(&mut s, OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(recv_option(&mut s, OPT_STRUCTURED_REPLY).0, REP_ACK);
    let mut s = upgrade(s, None).unwrap();
    // Structured replies asked for in the clear do not hold under TLS.
    assert_eq!(go_flags(&mut s, "a") & FLAG_SEND_DF, 0);
    check_read(&mut s, "a", 1, 0, 4096);
    drop(s);
    r.stop();
}

#[test]
fn client_certificates_must_come_from_the_ca() {
    let r = serve(TlsMode::Require, true);
    // Signed by the CA: served.
    let mut s = begin_tls(r.addr, Some("client"));
    assert_eq!(go(&mut s, "a"), Ok(SIZE as u64));
    check_read(&mut s, "a", 1, 0, 4096);
    drop(s);
    // Signed by another CA, or none at all: the handshake fails and nothing is served. In
    // TLS 1.3 the client may finish its side before the server's alert arrives, so the
    // refusal shows as the end of the session at the first exchange.
    for identity in [Some("stranger"), None] {
        match upgrade(begin(r.addr), identity) {
            Err(_) => {}
            Ok(mut s) => {
                send_option(&mut s, OPT_GO, &info_request("a", &[]));
                let _ = s.flush();
                assert!(ends_session(&mut s), "{identity:?} was served");
            }
        }
    }
    r.stop();
}
