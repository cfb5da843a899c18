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
