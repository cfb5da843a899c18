//! Sequential read detection for one connection. Once a client's reads follow each other (each
//! starts where the one before ended), the server keeps a window of the export read ahead of
//! them, doubling it as the stream goes on, and asks the device to start reading it in
//! steps of half a window.
//!
//! Why here and not only in the kernel: the kernel reads ahead in the order of the device
//! file, and a thin volume's extents lie on the disk in the order they were first written,
//! which is not the volume's order once several writers or random writes allocated them. The
//! server sees the volume's order. It also keeps many large reads in flight at once, which
//! disks of this kind need to reach their throughput.

/// Window read ahead when a stream is first seen.
pub const WINDOW_MIN_BYTES: u64 = 1 << 20;
/// Largest window: at the roughly 1 GB/s such disks read, 16 ms of reading, and with steps of
/// half of it, several large requests in flight.
pub const WINDOW_MAX_BYTES: u64 = 16 << 20;
/// Reads in a row, each starting where the last ended, that make a stream.
const STREAK_MIN: u32 = 2;

#[derive(Debug)]
pub struct ReadAhead {
    /// Where the next read of the stream would start.
    next: u64,
    streak: u32,
    /// Read ahead up to here.
    ahead: u64,
    window: u64,
}

impl Default for ReadAhead {
    fn default() -> ReadAhead {
        ReadAhead {
            next: u64::MAX,
            streak: 0,
            ahead: 0,
            window: WINDOW_MIN_BYTES,
        }
    }
}

impl ReadAhead {
    /// Notes a read of `len` bytes at `offset`; the range to start reading ahead, if any.
    pub fn read(&mut self, offset: u64, len: u64) -> Option<(u64, u64)> {
        if offset == self.next && len > 0 {
            self.streak = self.streak.saturating_add(1);
        } else {
            *self = ReadAhead::default();
        }
        self.next = offset.saturating_add(len);
        if self.streak < STREAK_MIN {
            return None;
        }
        let from = self.ahead.max(self.next);
        let to = self.next.saturating_add(self.window);
        // In steps of half a window at least: small reads must not turn into small prefetches.
        if to <= from || to - from < self.window / 2 {
            return None;
        }
        self.ahead = to;
        self.window = (self.window * 2).min(WINDOW_MAX_BYTES);
        Some((from, to - from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 1024;
    const M: u64 = 1 << 20;

    #[test]
    fn a_stream_is_read_ahead_in_growing_steps_and_never_twice() {
        let mut ra = ReadAhead::default();
        let mut issued: Vec<(u64, u64)> = Vec::new();
        for i in 0..400u64 {
            if let Some(r) = ra.read(i * 256 * K, 256 * K) {
                issued.push(r);
            }
        }
        // Nothing before the third read; then 1, 2, 4, 8 MiB windows; then steps of 8 MiB.
        assert_eq!(issued[0], (768 * K, M));
        assert!(
            issued.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0),
            "contiguous, no overlap"
        );
        assert!(issued.iter().all(|r| r.1 <= WINDOW_MAX_BYTES));
        assert_eq!(issued.last().unwrap().1, WINDOW_MAX_BYTES / 2);
        // Always ahead of the reads, never more than the largest window ahead.
        let end = issued.last().map(|r| r.0 + r.1).unwrap();
        let read_to = 400 * 256 * K;
        assert!(end > read_to && end <= read_to + WINDOW_MAX_BYTES);
    }

    #[test]
    fn random_reads_are_not_read_ahead() {
        let mut ra = ReadAhead::default();
        let mut x = 12345u64;
        for _ in 0..1000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            assert_eq!(ra.read((x >> 20) * 4096, 4096), None);
        }
    }

    #[test]
    fn a_jump_starts_over() {
        let mut ra = ReadAhead::default();
        for i in 0..3 {
            ra.read(i * 64 * K, 64 * K);
        }
        assert_eq!(ra.read(100 * M, 64 * K), None);
        assert_eq!(ra.read(100 * M + 64 * K, 64 * K), None);
        assert_eq!(
            ra.read(100 * M + 128 * K, 64 * K),
            Some((100 * M + 192 * K, M))
        );
        // Zero-length reads and reads at the end of the address space break no arithmetic.
        assert_eq!(ra.read(u64::MAX - 10, 10), None);
        assert_eq!(ra.read(u64::MAX, 0), None);
    }
}
