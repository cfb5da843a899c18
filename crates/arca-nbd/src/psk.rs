//! TLS with pre-shared keys, through the system's GnuTLS (`libgnutls.so.30`) loaded at run
//! time. rustls has no server side for external PSKs; GnuTLS is the library qemu and libnbd use
//! for theirs, reads the very key files they read (`username:hexkey` lines), and is on every
//! Debian system (apt depends on it), so building needs no C headers or -dev package and a
//! daemon without PSK never loads it.
//!
//! Sessions are TLS 1.2 only. GnuTLS lets one thread receive while another sends on a session
//! (manual, "Thread safety"), which is how the transmission phase uses a connection, provided
//! nothing else sends or receives meanwhile: TLS 1.3 post-handshake messages (key updates)
//! would, and a TLS 1.2 renegotiation the client asks for is refused (it ends the session).

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::RawFd;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

const GNUTLS_SERVER: c_uint = 1;
const GNUTLS_NO_SIGNAL: c_uint = 1 << 6;
const GNUTLS_CRD_PSK: c_int = 4;
const GNUTLS_SHUT_WR: c_int = 1;
const GNUTLS_E_AGAIN: c_int = -28;
const GNUTLS_E_INTERRUPTED: c_int = -52;
const GNUTLS_E_PREMATURE_TERMINATION: c_int = -110;

/// PSK key exchanges (ephemeral ones first: forward secrecy), TLS 1.2 (see above).
const PRIORITY: &CStr = c"NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-PSK:+DHE-PSK:+PSK";

/// The soname Debian ships (libgnutls30).
const LIBRARY: &str = "libgnutls.so.30";

type Session = *mut c_void;

/// The GnuTLS functions used, resolved once.
struct Api {
    strerror: unsafe extern "C" fn(c_int) -> *const c_char,
    psk_allocate_server_credentials: unsafe extern "C" fn(*mut *mut c_void) -> c_int,
    psk_free_server_credentials: unsafe extern "C" fn(*mut c_void),
    psk_set_server_credentials_file: unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int,
    init: unsafe extern "C" fn(*mut Session, c_uint) -> c_int,
    deinit: unsafe extern "C" fn(Session),
    priority_set_direct: unsafe extern "C" fn(Session, *const c_char, *mut *const c_char) -> c_int,
    credentials_set: unsafe extern "C" fn(Session, c_int, *mut c_void) -> c_int,
    transport_set_int2: unsafe extern "C" fn(Session, c_int, c_int),
    handshake: unsafe extern "C" fn(Session) -> c_int,
    record_send: unsafe extern "C" fn(Session, *const c_void, usize) -> isize,
    record_recv: unsafe extern "C" fn(Session, *mut c_void, usize) -> isize,
    record_check_pending: unsafe extern "C" fn(Session) -> usize,
    bye: unsafe extern "C" fn(Session, c_int) -> c_int,
    psk_server_get_username: unsafe extern "C" fn(Session) -> *const c_char,
    /// Keeps the function pointers above valid.
    _library: libloading::Library,
}

/// Resolves `name` in `lib` as a function pointer of type `T`.
///
/// # Safety
/// `T` must be the function's real signature.
unsafe fn symbol<T: Copy>(lib: &libloading::Library, name: &str) -> Result<T, String> {
    let mut cname = name.as_bytes().to_vec();
    cname.push(0);
    // SAFETY: the caller vouches for the type; the pointer is used only while `lib` lives
    // (Api keeps it).
    unsafe { lib.get::<T>(&cname) }
        .map(|s| *s)
        .map_err(|e| format!("{LIBRARY} has no {name}: {e}"))
}

impl Api {
    fn load() -> Result<Api, String> {
        // SAFETY: loading GnuTLS runs its constructors (its global initialisation), which are
        // made to run in any process; nothing else is run.
        let lib = unsafe { libloading::Library::new(LIBRARY) }.map_err(|e| {
            format!("PSK needs the GnuTLS library ({LIBRARY}, Debian package libgnutls30): {e}")
        })?;
        // SAFETY: each type below is the prototype in GnuTLS 3's gnutls/gnutls.h.
        unsafe {
            Ok(Api {
                strerror: symbol(&lib, "gnutls_strerror")?,
                psk_allocate_server_credentials: symbol(
                    &lib,
                    "gnutls_psk_allocate_server_credentials",
                )?,
                psk_free_server_credentials: symbol(&lib, "gnutls_psk_free_server_credentials")?,
                psk_set_server_credentials_file: symbol(
                    &lib,
                    "gnutls_psk_set_server_credentials_file",
                )?,
                init: symbol(&lib, "gnutls_init")?,
                deinit: symbol(&lib, "gnutls_deinit")?,
                priority_set_direct: symbol(&lib, "gnutls_priority_set_direct")?,
                credentials_set: symbol(&lib, "gnutls_credentials_set")?,
                transport_set_int2: symbol(&lib, "gnutls_transport_set_int2")?,
                handshake: symbol(&lib, "gnutls_handshake")?,
                record_send: symbol(&lib, "gnutls_record_send")?,
                record_recv: symbol(&lib, "gnutls_record_recv")?,
                record_check_pending: symbol(&lib, "gnutls_record_check_pending")?,
                bye: symbol(&lib, "gnutls_bye")?,
                psk_server_get_username: symbol(&lib, "gnutls_psk_server_get_username")?,
                _library: lib,
            })
        }
    }

    fn error(&self, code: c_int) -> String {
        // SAFETY: gnutls_strerror returns a static string (or NULL) for any code.
        let p = unsafe { (self.strerror)(code) };
        if p.is_null() {
            return format!("GnuTLS error {code}");
        }
        // SAFETY: non-NULL: a NUL-terminated static string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn io_error(&self, code: c_int) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("TLS: {}", self.error(code)),
        )
    }
}

/// Checks a key file has the format GnuTLS reads: `username:hexkey` lines, the key an even
/// number of hex digits. The error names the line, never a key.
fn check_key_file(path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut users = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ok = line.split_once(':').is_some_and(|(user, key)| {
            !user.is_empty()
                && !key.is_empty()
                && key.len() % 2 == 0
                && key.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok {
            return Err(format!("line {}: expected username:hexkey", i + 1));
        }
        users += 1;
    }
    if users == 0 {
        return Err("no username:hexkey line".into());
    }
    Ok(users)
}

/// The server's PSK credentials: a key file GnuTLS reads at each handshake (so keys added to
/// it serve new connections without a restart).
pub struct PskCredentials {
    api: Arc<Api>,
    creds: *mut c_void,
}

// SAFETY: GnuTLS credentials are only read once set up, and read-only access from several
// threads is thread-safe (manual, "Thread safety"); they are freed once, in Drop.
unsafe impl Send for PskCredentials {}
// SAFETY: as above.
unsafe impl Sync for PskCredentials {}

impl fmt::Debug for PskCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PskCredentials")
    }
}

impl PskCredentials {
    /// Loads GnuTLS and sets up credentials from the key file at `path`: an error when the
    /// library is missing or the file unreadable or malformed.
    pub fn from_file(path: &Path) -> Result<PskCredentials, String> {
        check_key_file(path)?;
        let api = Arc::new(Api::load()?);
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| "the path holds a NUL byte".to_string())?;
        let mut creds = std::ptr::null_mut();
        // SAFETY: allocates into a valid out pointer.
        let rc = unsafe { (api.psk_allocate_server_credentials)(&mut creds) };
        if rc < 0 {
            return Err(api.error(rc));
        }
        let out = PskCredentials { api, creds };
        // SAFETY: valid credentials and a NUL-terminated path (GnuTLS copies it).
        let rc = unsafe { (out.api.psk_set_server_credentials_file)(out.creds, cpath.as_ptr()) };
        if rc < 0 {
            return Err(out.api.error(rc));
        }
        Ok(out)
    }
}

impl Drop for PskCredentials {
    fn drop(&mut self) {
        // SAFETY: allocated in from_file; sessions using it hold an Arc, so none is left.
        unsafe { (self.api.psk_free_server_credentials)(self.creds) }
    }
}

/// One connection's PSK session. One thread receives ([`PskSession::recv`]) while any number
/// send: sends are serialised by `send`, so GnuTLS sees one sender and one receiver.
pub(crate) struct PskSession {
    creds: Arc<PskCredentials>,
    session: Session,
    send: Mutex<()>,
}

// SAFETY: GnuTLS allows one thread sending and another receiving on a session (manual, "Thread
// safety"); `send` serialises senders, the connection has a single reader (Wire::split gives
// the reading half to one thread), and renegotiation and TLS 1.3 are off (see the module).
unsafe impl Send for PskSession {}
// SAFETY: as above.
unsafe impl Sync for PskSession {}

impl PskSession {
    /// Runs the server handshake on the socket `fd` (blocking; its read timeout bounds each
    /// wait). The session owns nothing of the socket but its use.
    pub fn handshake(creds: &Arc<PskCredentials>, fd: RawFd) -> io::Result<PskSession> {
        let api = &creds.api;
        let mut session = std::ptr::null_mut();
        // SAFETY: a valid out pointer.
        let rc = unsafe { (api.init)(&mut session, GNUTLS_SERVER | GNUTLS_NO_SIGNAL) };
        if rc < 0 {
            return Err(api.io_error(rc));
        }
        // From here the session is deinitialised by Drop.
        let s = PskSession {
            creds: creds.clone(),
            session,
            send: Mutex::new(()),
        };
        let mut err_pos = std::ptr::null();
        // SAFETY: a live session, a NUL-terminated priority string, a valid out pointer.
        let rc = unsafe { (api.priority_set_direct)(session, PRIORITY.as_ptr(), &mut err_pos) };
        if rc < 0 {
            return Err(api.io_error(rc));
        }
        // SAFETY: the credentials outlive the session (it holds an Arc to them).
        let rc = unsafe { (api.credentials_set)(session, GNUTLS_CRD_PSK, creds.creds) };
        if rc < 0 {
            return Err(api.io_error(rc));
        }
        // SAFETY: the socket stays open as long as the session (the Wire holds both).
        unsafe { (api.transport_set_int2)(session, fd, fd) };
        loop {
            // SAFETY: a live session used by this thread alone during the handshake.
            let rc = unsafe { (api.handshake)(session) };
            match rc {
                0 => return Ok(s),
                GNUTLS_E_INTERRUPTED => continue,
                GNUTLS_E_AGAIN => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stalled in the TLS handshake",
                    ));
                }
                _ => return Err(api.io_error(rc)),
            }
        }
    }

    /// The PSK user the client authenticated as.
    pub fn user(&self) -> Option<String> {
        // SAFETY: a live session past its handshake; the string it returns lives as long.
        let p = unsafe { (self.creds.api.psk_server_get_username)(self.session) };
        if p.is_null() {
            return None;
        }
        // SAFETY: non-NULL: NUL-terminated, owned by the session, copied at once.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// Receives plaintext; 0 at the end of the stream. Only the connection's reader calls it.
    /// A read timeout is `WouldBlock`, and the next call resumes.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: a live session; `buf` is valid for its length; single receiver.
            let n = unsafe {
                (self.creds.api.record_recv)(self.session, buf.as_mut_ptr().cast(), buf.len())
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            match n as c_int {
                GNUTLS_E_INTERRUPTED => continue,
                GNUTLS_E_AGAIN => return Err(io::ErrorKind::WouldBlock.into()),
                // The socket closed without close_notify: the end of the stream.
                GNUTLS_E_PREMATURE_TERMINATION => return Ok(0),
                code => return Err(self.creds.api.io_error(code)),
            }
        }
    }

    /// Plaintext received and not yet read.
    pub fn pending(&self) -> usize {
        // SAFETY: a live session; only reads the receive buffer's length.
        unsafe { (self.creds.api.record_check_pending)(self.session) }
    }

    /// Sends all of `data`, as the only sender while it runs.
    pub fn send_all(&self, mut data: &[u8]) -> io::Result<()> {
        let _one_sender = self.send.lock();
        while !data.is_empty() {
            // SAFETY: a live session; `data` valid for its length; senders serialised.
            let n = unsafe {
                (self.creds.api.record_send)(self.session, data.as_ptr().cast(), data.len())
            };
            if n >= 0 {
                data = &data[n as usize..];
                continue;
            }
            match n as c_int {
                // Interrupted: called again with the same data, as GnuTLS asks.
                GNUTLS_E_INTERRUPTED | GNUTLS_E_AGAIN => {}
                code => return Err(self.creds.api.io_error(code)),
            }
        }
        Ok(())
    }

    /// Tells the client no more data comes (close_notify); the reader may still be receiving.
    pub fn close_notify(&self) {
        let _one_sender = self.send.lock();
        // SAFETY: a live session; SHUT_WR from the sending side is the shutdown the manual
        // allows while another thread receives.
        unsafe { (self.creds.api.bye)(self.session, GNUTLS_SHUT_WR) };
    }
}

impl Drop for PskSession {
    fn drop(&mut self) {
        // SAFETY: the last reference: no thread uses the session any more.
        unsafe { (self.creds.api.deinit)(self.session) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_checked_without_quoting_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.psk");
        std::fs::write(&path, "alice:0123456789abcdef\nbob:AABB\n").unwrap();
        assert_eq!(check_key_file(&path), Ok(2));
        for bad in [
            "alice\n",
            "alice:abc\n",
            "ok:aa\nbob:zz11\n",
            ":aabb\n",
            "\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = check_key_file(&path).unwrap_err();
            assert!(!e.contains("zz11") && !e.contains("abc"), "{e}");
        }
        let e = check_key_file(&dir.path().join("missing")).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn credentials_load_from_the_system_gnutls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.psk");
        std::fs::write(&path, "alice:0123456789abcdef0123456789abcdef\n").unwrap();
        PskCredentials::from_file(&path).unwrap();
    }
}
