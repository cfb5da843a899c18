//! The pool seen by the NBD server: volumes read-write, snapshots read-only as
//! `VOLUME@SNAPSHOT`.

use std::sync::Arc;

use arca_nbd::proto::{EINVAL, EIO, ENOSPC, EPERM};
use arca_nbd::{DevError, DevResult, Device, ExportSummary, Exports, Extent};
use arca_store::{ErrorKind, Export, Pool};

pub struct PoolExports {
    pool: Pool,
    default_export: Option<String>,
}

impl PoolExports {
    pub fn new(pool: Pool, default_export: Option<String>) -> PoolExports {
        PoolExports {
            pool,
            default_export,
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
                    // With exactly one volume, that volume is the obvious default.
                    let vols = self.pool.volumes();
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
        Ok((name, Arc::new(VolumeDevice(export))))
    }

    fn flush_covers_all(&self) -> bool {
        // A pool flush syncs every device and commits every volume's changes.
        true
    }
}

struct VolumeDevice(Export);

impl Device for VolumeDevice {
    fn size_bytes(&self) -> DevResult<u64> {
        self.0.size().map_err(dev_error)
    }
    fn read_only(&self) -> bool {
        self.0.read_only()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> DevResult<()> {
        self.0.read(offset, buf).map_err(dev_error)
    }
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> DevResult<()> {
        self.0.write(offset, data, fua).map_err(dev_error)
    }
    fn write_zeroes(&self, offset: u64, length: u64, may_trim: bool, fua: bool) -> DevResult<()> {
        self.0
            .write_zeroes(offset, length, may_trim, fua)
            .map_err(dev_error)
    }
    fn trim(&self, offset: u64, length: u64, fua: bool) -> DevResult<()> {
        self.0.trim(offset, length, fua).map_err(dev_error)
    }
    fn flush(&self) -> DevResult<()> {
        self.0.flush().map_err(dev_error)
    }
    fn block_status(&self, offset: u64, length: u64) -> DevResult<Vec<Extent>> {
        Ok(self
            .0
            .block_status(offset, length)
            .map_err(dev_error)?
            .into_iter()
            .map(|r| Extent {
                length: r.length,
                hole: !r.allocated,
            })
            .collect())
    }
}
