//! The pool seen by the NBD server: volumes read-write, snapshots read-only as
//! `VOLUME@SNAPSHOT`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arca_api::metrics::{Metrics, VolumeStats};

use arca_nbd::proto::{EINVAL, EIO, ENOSPC, EPERM};
use arca_nbd::{DevError, DevResult, Device, ExportSummary, Exports, Extent};
use arca_store::{ErrorKind, Export, Pool};

/// What the backup layer knows of connected hosts, from the NBD server: who uses an export,
/// and disconnecting them (a forced in-place restore).
pub struct NbdHosts {
    server: Arc<arca_nbd::Server>,
}

impl NbdHosts {
    pub fn new(server: Arc<arca_nbd::Server>) -> NbdHosts {
        NbdHosts { server }
    }
}

impl arca_backup::Hosts for NbdHosts {
    fn connected(&self, export: &str) -> Vec<String> {
        self.server
            .sessions()
            .into_iter()
            .filter(|s| s.export == export)
            .map(|s| s.peer)
            .collect()
    }

    fn disconnect(&self, export: &str) -> usize {
        self.server.disconnect(export)
    }

    fn wait_disconnected(&self, export: &str, timeout: Duration) -> bool {
        self.server.wait_disconnected(export, timeout)
    }
}

pub struct PoolExports {
    pool: Pool,
    default_export: Option<String>,
    metrics: Arc<Metrics>,
}

impl PoolExports {
    pub fn new(pool: Pool, default_export: Option<String>, metrics: Arc<Metrics>) -> PoolExports {
        PoolExports {
            pool,
            default_export,
            metrics,
        }
    }
}

fn dev_error(e: arca_store::Error) -> DevError {
    let errno = match e.kind() {
        ErrorKind::NoSpace => ENOSPC,
        ErrorKind::ReadOnly => EPERM,
        ErrorKind::OutOfRange | ErrorKind::InvalidArgument | ErrorKind::InvalidSize => EINVAL,
        _ => EIO,
    };
    DevError::new(errno, e.to_string())
}

impl Exports for PoolExports {
    fn list(&self) -> Vec<ExportSummary> {
        self.pool
            .exports()
            .into_iter()
            .map(|e| ExportSummary {
                description: if e.read_only {
                    format!("snapshot, {} bytes, read-only", e.size)
                } else {
                    format!("volume, {} bytes", e.size)
                },
                name: e.name,
                read_only: e.read_only,
            })
            .collect()
    }

    fn open(&self, name: &str) -> Result<(String, Arc<dyn Device>), String> {
        let name = if name.is_empty() {
            match &self.default_export {
                Some(d) => d.clone(),
                None => {
                    // With exactly one volume, that volume is the obvious default. Volumes
                    // holding a copy backup (they carry its descriptor) do not count: taking
                    // a backup must not change what the empty name means.
                    let vols: Vec<_> = self
                        .pool
                        .volumes()
                        .into_iter()
                        .filter(|v| v.tag.is_none())
                        .collect();
                    match vols.as_slice() {
                        [one] => one.name.clone(),
                        _ => {
                            return Err(format!(
                                "no default export: name one of {}",
                                vols.iter()
                                    .map(|v| v.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ));
                        }
                    }
                }
            }
        } else {
            name.to_string()
        };
        let export = self.pool.export(&name).map_err(|e| e.to_string())?;
        let stats = self.metrics.volume(&name);
        Ok((name, Arc::new(VolumeDevice { export, stats })))
    }

    fn flush_covers_all(&self) -> bool {
        // A pool flush syncs every device and commits every volume's changes.
        true
    }
}

/// An export with its metrics: every request is counted and timed.
struct VolumeDevice {
    export: Export,
    stats: Arc<VolumeStats>,
}

impl VolumeDevice {
    fn timed<T>(
        &self,
        op: &str,
        bytes: u64,
        f: impl FnOnce() -> arca_store::Result<T>,
    ) -> DevResult<T> {
        let start = Instant::now();
        let r = f();
        self.stats.op(op).record(bytes, start.elapsed(), r.is_ok());
        r.map_err(dev_error)
    }
}

impl Device for VolumeDevice {
    fn size_bytes(&self) -> DevResult<u64> {
        self.export.size().map_err(dev_error)
    }
    fn read_only(&self) -> bool {
        self.export.read_only()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> DevResult<()> {
        let n = buf.len() as u64;
        self.timed("read", n, || self.export.read(offset, buf))
    }
    fn try_read(&self, offset: u64, buf: &mut [u8]) -> DevResult<bool> {
        let start = Instant::now();
        let r = self.export.try_read(offset, buf);
        // A read that would wait is counted when the worker does it.
        if !matches!(r, Ok(false)) {
            let stats = self.stats.op("read");
            stats.record(buf.len() as u64, start.elapsed(), r.is_ok());
        }
        r.map_err(dev_error)
    }
    fn prefetch(&self, offset: u64, length: u64) {
        if let Err(e) = self.export.prefetch(offset, length) {
            // A hint only: the read itself reports any real trouble.
            tracing::debug!("reading ahead: {e}");
        }
    }
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> DevResult<()> {
        self.timed("write", data.len() as u64, || {
            self.export.write(offset, data, fua)
        })
    }
    fn write_zeroes(&self, offset: u64, length: u64, may_trim: bool, fua: bool) -> DevResult<()> {
        self.timed("zero", 0, || {
            self.export.write_zeroes(
                offset,
                length,
                arca_store::ZeroOptions {
                    may_unmap: may_trim,
                    fua,
                },
            )
        })
    }
    fn trim(&self, offset: u64, length: u64, fua: bool) -> DevResult<()> {
        self.timed("trim", 0, || self.export.trim(offset, length, fua))
    }
    fn flush(&self) -> DevResult<()> {
        self.timed("flush", 0, || self.export.flush())
    }
    fn block_status(&self, offset: u64, length: u64) -> DevResult<Vec<Extent>> {
        let runs = self.timed("status", 0, || self.export.block_status(offset, length))?;
        Ok(runs
            .into_iter()
            .map(|r| Extent {
                length: r.length,
                hole: !r.allocated,
            })
            .collect())
    }
}
