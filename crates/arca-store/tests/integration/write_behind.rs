//! A file device starts writing back what was written through the page cache without waiting
//! for a flush: past a threshold of bytes written, and after a pause in writes. Observed with
//! the kernel's `cachestat` (Linux 6.5), which counts a file's dirty pages. Without
//! write-behind the kernel would leave these pages dirty for 30 seconds (its expiry time),
//! far longer than the tests wait.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use arca_store::FileDevice;
use arca_store::device::BlockDevice;

/// The system call's number, the same on x86_64 and aarch64 (the libc crate lacks it there).
const SYS_CACHESTAT: libc::c_long = 451;

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Dirty pages of the file in `[off, off + len)`; `len` 0 means to the end.
fn dirty_pages(path: &Path, off: u64, len: u64) -> u64 {
    let f = File::open(path).unwrap();
    let range = CachestatRange { off, len };
    let mut cs = Cachestat::default();
    // SAFETY: cachestat reads `range` and writes one `Cachestat` through the pointers, both
    // valid for the call; the layouts are the kernel's (five and two u64 fields).
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            f.as_raw_fd(),
            &range as *const CachestatRange,
            &mut cs as *mut Cachestat,
            0,
        )
    };
    assert_eq!(rc, 0, "cachestat: {}", std::io::Error::last_os_error());
    cs.nr_dirty
}

fn wait_clean(path: &Path, within: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let dirty = dirty_pages(path, 0, 0);
        if dirty == 0 || start.elapsed() > within {
            return dirty;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn device(name: &str) -> (tempfile::TempDir, std::path::PathBuf, FileDevice) {
    // On a disk: a tmpfs has no writeback.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join(name);
    let dev = FileDevice::create(&path, 128 << 20).unwrap();
    (dir, path, dev)
}

#[test]
fn writes_past_the_threshold_are_written_back_without_a_flush() {
    let (_dir, path, dev) = device("big");
    let chunk = vec![0x5au8; 1 << 20];
    for i in 0..48u64 {
        dev.write_at(&chunk, i << 20).unwrap();
    }
    // Keep writing a little, more often than the pause that also starts writeback, so that
    // only the threshold can be what cleans the first 32 MiB.
    let small = vec![0xa5u8; 4096];
    let start = Instant::now();
    while dirty_pages(&path, 0, 32 << 20) > 0 && start.elapsed() < Duration::from_secs(5) {
        dev.write_at(&small, 100 << 20).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(dirty_pages(&path, 0, 32 << 20), 0, "the first 32 MiB");
    assert_eq!(wait_clean(&path, Duration::from_secs(10)), 0);
}

#[test]
fn a_pause_in_writes_starts_writeback() {
    let (_dir, path, dev) = device("small");
    dev.write_at(&vec![0x11u8; 1 << 20], 0).unwrap();
    assert!(dirty_pages(&path, 0, 0) > 0, "just written: dirty");
    assert_eq!(wait_clean(&path, Duration::from_secs(10)), 0);
}
