//! A fault-injecting TCP proxy for HTTP/1.1 in front of s3s-fs: per request, chosen from a
//! seeded random stream, it forwards the request, answers 503 itself, or drops the
//! connection after reading the request (the server never sees it); a harsh proxy also
//! forwards and then cuts the response half-way, or forwards and resets the connection
//! (RST) instead of answering. Each request is sent
//! upstream on its own connection with `Connection: close`, so a response is simply
//! everything the server sends until it closes (no chunked parsing needed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Status503,
    Drop,
    CutResponse,
    Reset,
}

pub struct FaultProxy {
    pub port: u16,
    faults: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

struct Shared {
    upstream: u16,
    /// splitmix64 state; faults happen on `1 in one_in` requests.
    rng: Mutex<u64>,
    one_in: u64,
    harsh: bool,
    faults: Arc<AtomicU64>,
}

impl Shared {
    fn next_fault(&self) -> Fault {
        let mut s = self.rng.lock().unwrap();
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        if !z.is_multiple_of(self.one_in) {
            return Fault::None;
        }
        self.faults.fetch_add(1, Ordering::SeqCst);
        let kinds = if self.harsh { 4 } else { 2 };
        match (z >> 32) % kinds {
            0 => Fault::Status503,
            1 => Fault::Drop,
            2 => Fault::CutResponse,
            _ => Fault::Reset,
        }
    }
}

impl FaultProxy {
    /// Proxies 127.0.0.1:`upstream`; one request in `one_in` gets a fault (503 or a drop;
    /// with `harsh`, also a response cut half-way or a reset after the server acted).
    pub fn start(upstream: u16, seed: u64, one_in: u64, harsh: bool) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            upstream,
            rng: Mutex::new(seed),
            one_in: one_in.max(1),
            harsh,
            faults: faults.clone(),
        });
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &shared);
                });
            }
        });
        FaultProxy { port, faults, stop }
    }

    /// Faults injected so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
    }
}

/// Serves the requests of one client connection until it closes.
fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    loop {
        let mut head = Vec::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(()); // the client closed its connection
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("connection:") {
                continue;
            }
            if line == "\r\n" {
                head.extend_from_slice(b"connection: close\r\n\r\n");
                break;
            }
            head.extend_from_slice(line.as_bytes());
        }
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body)?;
        match shared.next_fault() {
            Fault::Drop => {
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            Fault::Status503 => {
                client
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")?;
            }
            fault => {
                let mut up = TcpStream::connect(("127.0.0.1", shared.upstream))?;
                up.write_all(&head)?;
                up.write_all(&body)?;
                let mut response = Vec::new();
                up.read_to_end(&mut response)?;
                match fault {
                    Fault::Reset => {
                        reset_on_close(&client);
                        return Ok(());
                    }
                    Fault::CutResponse => response.truncate(response.len() / 2),
                    _ => {}
                }
                client.write_all(&response)?;
                // The server closed after this response; so does the proxy (it answered
                // with `connection: close`), and the client opens a new connection.
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
    }
}

/// Makes closing the socket send RST instead of FIN (SO_LINGER on, time 0).
fn reset_on_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is an open socket owned by `stream` for the whole call, and the
    // option value points to a live `linger` of the length passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
