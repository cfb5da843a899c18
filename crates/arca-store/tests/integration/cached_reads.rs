//! `Export::try_read` on a file device: it serves what the page cache holds and declines, rather
//! than waits, when the data would come from the disk. The NBD server relies on both halves: a
//! read it serves on its reader thread must never wait for the disk.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arca_store::{FileDevice, Pool, PoolConfig};

use crate::util::pattern;

/// Drops the file's clean pages from the page cache.
fn evict(path: &std::path::Path) {
    let f = File::open(path).unwrap();
    // SAFETY: posix_fadvise on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
}

/// A pool on a file with volume "v" holding 1 MiB of data at offset 0, written back so its
/// pages are clean and can be dropped.
fn pool_with_data() -> (tempfile::TempDir, PathBuf, Pool, Vec<u8>) {
    // In the target directory, which is on a disk: a tmpfs caches everything, so nothing
    // would ever be declined there.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("dev0");
    let config = PoolConfig {
        extent_size: 64 * 1024,
        meta_len: Some(16 << 20),
    };
    let device = Arc::new(FileDevice::create(&path, 64 << 20).unwrap());
    let pool = Pool::create(vec![device], &config).unwrap();
    pool.create_volume("v", 8 << 20, None).unwrap();
    let data = pattern(7, 1 << 20);
    pool.export("v").unwrap().write(0, &data, false).unwrap();
    pool.flush().unwrap();
    (dir, path, pool, data)
}

#[test]
fn try_read_serves_cached_data_and_declines_data_on_disk() {
    let (_dir, path, pool, data) = pool_with_data();
    let v = pool.export("v").unwrap();

    let mut buf = vec![0u8; 256 * 1024];
    assert!(v.try_read(4096, &mut buf).unwrap(), "just written: cached");
    assert!(buf == data[4096..4096 + buf.len()]);

    // A range half cached data, half hole.
    let mut mixed = vec![1u8; 128 * 1024];
    assert!(v.try_read((1 << 20) - 64 * 1024, &mut mixed).unwrap());
    assert!(mixed[..64 * 1024] == data[(1 << 20) - 64 * 1024..]);
    assert!(mixed[64 * 1024..].iter().all(|&b| b == 0));

    evict(&path);
    assert!(!v.try_read(4096, &mut buf).unwrap(), "evicted: would wait");
    v.read(4096, &mut buf).unwrap();
    assert!(buf == data[4096..4096 + buf.len()]);
    assert!(v.try_read(4096, &mut buf).unwrap(), "read back in: cached");
    assert!(buf == data[4096..4096 + buf.len()]);

    // Holes need no device at all, cached or not.
    let mut hole = vec![1u8; 128 * 1024];
    assert!(v.try_read(4 << 20, &mut hole).unwrap());
    assert!(hole.iter().all(|&b| b == 0));

    // Errors are errors, not "would wait".
    assert!(v.try_read(8 << 20, &mut buf).is_err());
}

#[test]
fn prefetch_brings_a_range_into_the_cache() {
    let (_dir, path, pool, data) = pool_with_data();
    let v = pool.export("v").unwrap();
    evict(&path);
    let mut buf = vec![0u8; 1 << 20];
    assert!(!v.try_read(0, &mut buf).unwrap(), "evicted: would wait");
    // Past the end and over holes is no error: a read ahead may overshoot.
    v.prefetch(0, 64 << 20).unwrap();
    let start = Instant::now();
    while !v.try_read(0, &mut buf).unwrap() {
        assert!(start.elapsed() < Duration::from_secs(10), "never cached");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(buf == data);
}
