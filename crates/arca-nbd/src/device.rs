//! What the server serves: a set of named exports, each a block device. The server knows
//! nothing of what is behind them.

use std::sync::Arc;

/// An error for one request: the NBD error number to send and a message for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevError {
    /// One of the `proto::E*` values.
    pub errno: u32,
    pub message: String,
}

impl DevError {
    pub fn new(errno: u32, message: impl Into<String>) -> DevError {
        DevError {
            errno,
            message: message.into(),
        }
    }
}

pub type DevResult<T> = Result<T, DevError>;

/// One run of allocation status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub length: u64,
    /// Not allocated; reads as zeros.
    pub hole: bool,
}

/// A block device behind one export. Methods are called from many threads at once.
pub trait Device: Send + Sync {
    /// Current size in bytes.
    fn size_bytes(&self) -> DevResult<u64>;
    fn read_only(&self) -> bool;
    fn read(&self, offset: u64, buf: &mut [u8]) -> DevResult<()>;
    /// Reads only if that needs no wait (for the disk or a lock); `Ok(false)` when it would
    /// wait, and `buf` then holds anything. The connection's reader serves such reads itself,
    /// without handing them to a worker. Devices that cannot tell always answer `Ok(false)`.
    fn try_read(&self, offset: u64, buf: &mut [u8]) -> DevResult<bool> {
        let _ = (offset, buf);
        Ok(false)
    }
    /// Starts reading the range into a cache, waiting for none of it: the server reads ahead
    /// of a client reading sequentially. A hint; devices without a cache ignore it.
    fn prefetch(&self, offset: u64, length: u64) {
        let _ = (offset, length);
    }
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> DevResult<()>;
    /// Zeroes a range; whole allocation units may become holes when `may_trim`.
    fn write_zeroes(&self, offset: u64, length: u64, may_trim: bool, fua: bool) -> DevResult<()>;
    fn trim(&self, offset: u64, length: u64, fua: bool) -> DevResult<()>;
    /// Makes every completed write durable. When `flush_covers_all` is true for the source,
    /// this covers writes made through every connection (multi-conn).
    fn flush(&self) -> DevResult<()>;
    /// Allocation status covering `[offset, offset + length)` exactly, in order.
    fn block_status(&self, offset: u64, length: u64) -> DevResult<Vec<Extent>>;
}

/// A listed export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub name: String,
    pub description: String,
    pub read_only: bool,
}

/// The set of exports a server offers.
pub trait Exports: Send + Sync + 'static {
    fn list(&self) -> Vec<ExportSummary>;
    /// Opens an export by name; the empty name asks for the default export.
    fn open(&self, name: &str) -> Result<(String, Arc<dyn Device>), String>;
    /// True when a flush on any export makes every connection's completed writes durable,
    /// so the server may advertise multi-conn.
    fn flush_covers_all(&self) -> bool;
    fn description(&self, name: &str) -> String {
        self.list()
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.description)
            .unwrap_or_default()
    }
}

/// A device served read-only (a read-only grant of a writable export): it says so, so the
/// export is offered with `NBD_FLAG_READ_ONLY` and writes are refused with EPERM.
pub(crate) struct ReadOnly(pub Arc<dyn Device>);

fn read_only_error() -> DevError {
    DevError::new(crate::proto::EPERM, "export is read-only for this client")
}

impl Device for ReadOnly {
    fn size_bytes(&self) -> DevResult<u64> {
        self.0.size_bytes()
    }
    fn read_only(&self) -> bool {
        true
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> DevResult<()> {
        self.0.read(offset, buf)
    }
    fn try_read(&self, offset: u64, buf: &mut [u8]) -> DevResult<bool> {
        self.0.try_read(offset, buf)
    }
    fn prefetch(&self, offset: u64, length: u64) {
        self.0.prefetch(offset, length)
    }
    fn write(&self, _: u64, _: &[u8], _: bool) -> DevResult<()> {
        Err(read_only_error())
    }
    fn write_zeroes(&self, _: u64, _: u64, _: bool, _: bool) -> DevResult<()> {
        Err(read_only_error())
    }
    fn trim(&self, _: u64, _: u64, _: bool) -> DevResult<()> {
        Err(read_only_error())
    }
    fn flush(&self) -> DevResult<()> {
        self.0.flush()
    }
    fn block_status(&self, offset: u64, length: u64) -> DevResult<Vec<Extent>> {
        self.0.block_status(offset, length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writable device that records whether a write reached it.
    #[derive(Default)]
    struct Writable(std::sync::atomic::AtomicBool);

    impl Device for Writable {
        fn size_bytes(&self) -> DevResult<u64> {
            Ok(4096)
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read(&self, _: u64, buf: &mut [u8]) -> DevResult<()> {
            buf.fill(7);
            Ok(())
        }
        fn write(&self, _: u64, _: &[u8], _: bool) -> DevResult<()> {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        fn write_zeroes(&self, o: u64, l: u64, _: bool, f: bool) -> DevResult<()> {
            self.write(o, &vec![0; l as usize], f)
        }
        fn trim(&self, o: u64, l: u64, f: bool) -> DevResult<()> {
            self.write_zeroes(o, l, true, f)
        }
        fn flush(&self) -> DevResult<()> {
            Ok(())
        }
        fn block_status(&self, _: u64, length: u64) -> DevResult<Vec<Extent>> {
            Ok(vec![Extent {
                length,
                hole: false,
            }])
        }
    }

    #[test]
    fn a_read_only_grant_reads_and_refuses_every_write_with_eperm() {
        let inner = Arc::new(Writable::default());
        let ro = ReadOnly(inner.clone());
        assert!(ro.read_only());
        let mut buf = [0u8; 8];
        ro.read(0, &mut buf).unwrap();
        assert_eq!(buf, [7; 8]);
        let eperm = Err(read_only_error());
        assert_eq!(ro.write(0, &[1; 8], false), eperm);
        assert_eq!(ro.write_zeroes(0, 8, false, false), eperm);
        assert_eq!(ro.trim(0, 8, true), eperm);
        assert_eq!(read_only_error().errno, crate::proto::EPERM);
        assert!(!inner.0.load(std::sync::atomic::Ordering::SeqCst));
    }
}
