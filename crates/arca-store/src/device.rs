//! The I/O engine under the pool: a [`BlockDevice`] trait with interchangeable engines.
//!
//! [`FileDevice`] serves regular files and block devices with positioned I/O; the simulated
//! device in [`crate::sim`] injects crashes and faults for tests. Every method reports device
//! errors as `io::Error`; the pool turns them into [`crate::Error`]s that name the device.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

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
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn sync(&self) -> io::Result<()>;
}

/// A regular file or a block device, opened read-write with an exclusive advisory lock so that
/// two processes cannot serve one pool.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    name: String,
    path: PathBuf,
}

impl FileDevice {
    /// Opens an existing file or block device.
    pub fn open(path: &Path) -> io::Result<FileDevice> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Self::locked(file, path)
    }

    /// Creates a new sparse regular file of `size_bytes`; fails if the path exists.
    pub fn create(path: &Path, size_bytes: u64) -> io::Result<FileDevice> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
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
        Ok(FileDevice {
            file,
            name: path.display().to_string(),
            path: path.to_path_buf(),
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

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}
