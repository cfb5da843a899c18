//! The I/O engine under the pool: a [`BlockDevice`] trait with interchangeable engines.
//!
//! [`FileDevice`] serves regular files and block devices with positioned I/O; the simulated
//! device in [`crate::sim`] injects crashes and faults for tests. Every method reports device
//! errors as `io::Error`; the pool turns them into [`crate::Error`]s that name the device.

use std::fmt::Debug;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::write_behind::WriteBehind;

/// A device the pool stores data and metadata on.
///
/// Semantics are those of a disk with a volatile write cache: a completed `write_at` may be lost
/// by a crash until a later `sync` completes.
pub trait BlockDevice: Send + Sync + Debug {
    /// A name for messages (the path for files and block devices).
    fn name(&self) -> &str;
    /// Current size in bytes.
    fn size_bytes(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; a short read is an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset` only if that needs no wait for the disk (the data is
    /// cached); `Ok(false)` when it would wait, and `buf` then holds anything. Lets a caller
    /// serve cached reads on the spot and hand only the others to threads that may block.
    /// Engines that cannot tell always answer `Ok(false)`.
    fn read_at_nowait(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        let _ = (buf, offset);
        Ok(false)
    }
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn sync(&self) -> io::Result<()>;
    /// Starts reading `[offset, offset + len)` into a cache, waiting for none of it: a hint
    /// for reads expected soon. Engines without a cache do nothing.
    fn prefetch(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}

/// A regular file or a block device, opened read-write with an exclusive advisory lock so that
/// two processes cannot serve one pool.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    name: String,
    path: PathBuf,
    /// Set when the file system refuses `RWF_NOWAIT`: every later nowait read answers "would
    /// wait" at once instead of failing the same system call again.
    nowait_unsupported: AtomicBool,
    /// Starts writeback early (see [`crate::write_behind`]); None if its thread could not be
    /// started, and then the kernel decides when to write back, as for any file.
    behind: Option<WriteBehind>,
}

impl FileDevice {
    /// Opens an existing file or block device.
    pub fn open(path: &Path) -> io::Result<FileDevice> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Self::locked(file, path)
    }

    /// Creates a new sparse regular file of `size_bytes`, mode 0600 (it will hold every
    /// volume's data: only its owner may read it); fails if the path exists.
    pub fn create(path: &Path, size_bytes: u64) -> io::Result<FileDevice> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        // The umask can only clear bits of the mode asked at creation: set it exactly.
        file.set_permissions(Permissions::from_mode(0o600))?;
        file.set_len(size_bytes)?;
        Self::locked(file, path)
    }

    fn locked(file: File, path: &Path) -> io::Result<FileDevice> {
        // SAFETY: flock on a file descriptor we own; it has no memory-safety preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("{} is in use by another process", path.display()),
                ));
            }
            return Err(err);
        }
        let behind = match file.try_clone().and_then(WriteBehind::start) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!("{}: no write-behind: {e}", path.display());
                None
            }
        };
        Ok(FileDevice {
            file,
            name: path.display().to_string(),
            path: path.to_path_buf(),
            nowait_unsupported: AtomicBool::new(false),
            behind,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BlockDevice for FileDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn size_bytes(&self) -> io::Result<u64> {
        let meta = self.file.metadata()?;
        if meta.file_type().is_block_device() {
            // A block device's metadata length is 0; its size is where the end is.
            let mut f = &self.file;
            return f.seek(SeekFrom::End(0));
        }
        Ok(meta.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn read_at_nowait(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        if self.nowait_unsupported.load(Ordering::Relaxed) || buf.is_empty() {
            return Ok(buf.is_empty());
        }
        let Ok(offset) = libc::off_t::try_from(offset) else {
            return Ok(false);
        };
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: the iovec points at `buf`, which is valid for writes of its length and
        // outlives the call; preadv2 writes at most that many bytes through it.
        let n = unsafe { libc::preadv2(self.file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                // A signal is no device error: the blocking read will be retried.
                Some(libc::EAGAIN | libc::EINTR) => Ok(false),
                Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => {
                    self.nowait_unsupported.store(true, Ordering::Relaxed);
                    Ok(false)
                }
                _ => Err(err),
            };
        }
        // A short count means part of the range is not cached (or lies past the end): the
        // blocking read sorts out which.
        Ok(n as usize == buf.len())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)?;
        if let Some(b) = &self.behind {
            b.wrote(offset, buf.len() as u64);
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn prefetch(&self, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return Ok(());
        };
        // SAFETY: posix_fadvise on a file descriptor we own; no memory is passed.
        let rc = unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::POSIX_FADV_WILLNEED,
            )
        };
        // posix_fadvise returns the error number instead of setting errno.
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }
}
