//! Write-behind for a file device: once enough has been written through the page cache, a
//! helper thread starts writing it back to the disk, without waiting for it.
//!
//! Why: the kernel starts writeback only at its background dirty threshold (a tenth of memory
//! by default, gigabytes on a storage server) or after 30 seconds. Until then a host's writes
//! pile up in memory and its next flush pays for all of them at once: half a second after a
//! burst of 4 KiB random writes, and a quarter of the time of a 1 GiB sequential copy. Started
//! early, writeback runs while the host is still sending, and a flush finds little left to
//! write. Durability is unchanged: only a flush (`fdatasync`) promises anything.
//!
//! Writeback starts once `WRITE_BEHIND_BYTES` were written, and also once writes pause for
//! `IDLE_MS` with anything written since the last start: a device at rest should not keep
//! dirty data in memory for the next flush to find.
//!
//! Writers pay a few atomic operations per write; the system call that starts writeback runs
//! on the helper thread, because it can wait for the disk's queue. While writes keep coming
//! the helper looks every `IDLE_MS` instead of being woken per write; once it finds nothing
//! new it sleeps until the next write wakes it.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Bytes written between two starts of writeback. Small enough that a flush after a burst of
/// 4 KiB random writes finds at most about 2,000 scattered pages not yet on their way (tens
/// of milliseconds of disk time; with 32 MiB a flush in the NBD benchmark sometimes still
/// waited 50 ms), large enough that sequential writes go to the disk in large pieces.
pub const WRITE_BEHIND_BYTES: u64 = 8 << 20;

/// A pause in writes this long starts writeback of what they left dirty.
pub const IDLE_MS: u64 = 10;

#[derive(Debug, Default)]
struct Queue {
    /// The byte range to write back next, merged from every request not yet taken.
    span: Option<(u64, u64)>,
    stop: bool,
    /// The helper waits for a write to wake it (it found nothing written at its last look).
    sleeping: bool,
}

#[derive(Debug)]
struct Shared {
    /// Bytes written since writeback was last started.
    written: AtomicU64,
    /// The range those bytes lie in: `[low, high)`; `low > high` when none.
    low: AtomicU64,
    high: AtomicU64,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Mirrors `Queue::sleeping`, so writers check it without the lock.
    sleeping: AtomicBool,
}

impl Shared {
    /// Takes the range written since writeback was last started, if any.
    fn take(&self) -> Option<(u64, u64)> {
        self.written.store(0, Ordering::Relaxed);
        let low = self.low.swap(u64::MAX, Ordering::Relaxed);
        let high = self.high.swap(0, Ordering::Relaxed);
        (low < high).then_some((low, high))
    }
}

#[derive(Debug)]
pub struct WriteBehind {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl WriteBehind {
    /// Starts the helper thread on `file`, a second handle of the device's file.
    pub fn start(file: File) -> io::Result<WriteBehind> {
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            low: AtomicU64::new(u64::MAX),
            high: AtomicU64::new(0),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            sleeping: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("arca-writeback".into())
                .spawn(move || run(&shared, &file))?
        };
        Ok(WriteBehind {
            shared,
            thread: Some(thread),
        })
    }

    /// Notes a completed write of `len` bytes at `offset`; past the threshold, hands the range
    /// written since the last start to the helper thread.
    pub fn wrote(&self, offset: u64, len: u64) {
        let s = &self.shared;
        s.low.fetch_min(offset, Ordering::Relaxed);
        s.high.fetch_max(offset + len, Ordering::Relaxed);
        // SeqCst pairs with the helper's store of `sleeping` and its load of `written`: either
        // it sees these bytes, or this write sees it asleep and wakes it.
        let before = s.written.fetch_add(len, Ordering::SeqCst);
        if before + len < WRITE_BEHIND_BYTES {
            if s.sleeping.load(Ordering::SeqCst) {
                // Under the lock, so the wake-up cannot fall between the helper's last look
                // and its wait.
                let mut q = s.queue.lock();
                q.sleeping = false;
                s.sleeping.store(false, Ordering::Relaxed);
                s.wake.notify_one();
            }
            return;
        }
        // Whoever swaps the count back from above the threshold takes the range. Writes racing
        // with the swap may be left out of it; they are written back by a later start or by
        // the next flush, which is all that matters for durability.
        if s.written.load(Ordering::Relaxed) < WRITE_BEHIND_BYTES {
            return;
        }
        let Some((low, high)) = s.take() else {
            return;
        };
        let mut q = s.queue.lock();
        q.span = Some(match q.span {
            Some((l, h)) => (l.min(low), h.max(high)),
            None => (low, high),
        });
        q.sleeping = false;
        s.sleeping.store(false, Ordering::Relaxed);
        s.wake.notify_one();
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.shared.queue.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, file: &File) {
    loop {
        let (low, high) = {
            let mut q = shared.queue.lock();
            loop {
                if q.stop {
                    return;
                }
                if let Some(span) = q.span.take() {
                    break span;
                }
                if q.sleeping {
                    shared.wake.wait(&mut q);
                    continue;
                }
                let seen = shared.written.load(Ordering::Relaxed);
                let timed_out = shared
                    .wake
                    .wait_for(&mut q, Duration::from_millis(IDLE_MS))
                    .timed_out();
                if !timed_out || q.stop || q.span.is_some() {
                    continue;
                }
                if shared.written.load(Ordering::Relaxed) != seen {
                    // Still being written: the threshold starts writeback meanwhile.
                    continue;
                }
                // A quiet spell: start writeback of what was written before it, or sleep
                // until the next write if there was none.
                match shared.take() {
                    Some(span) => break span,
                    None => {
                        q.sleeping = true;
                        shared.sleeping.store(true, Ordering::SeqCst);
                        if shared.written.load(Ordering::SeqCst) > 0 {
                            // A write came in since the look and may not have seen us asleep.
                            q.sleeping = false;
                            shared.sleeping.store(false, Ordering::SeqCst);
                        }
                    }
                }
            }
        };
        if let Err(e) = start_writeback(file, low, high - low) {
            // Left to the next flush, which reports any write error itself.
            tracing::debug!("starting writeback: {e}");
        }
    }
}

/// Starts writeback of the dirty pages of `file` in `[offset, offset + len)`.
///
/// SYNC_FILE_RANGE_WRITE alone waits for none of it. It does not consume a writeback error
/// either (only the waiting flags check them), so the next `fdatasync` still reports any.
fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Ok(());
    };
    // SAFETY: sync_file_range on a file descriptor the caller keeps open; no memory is passed.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
