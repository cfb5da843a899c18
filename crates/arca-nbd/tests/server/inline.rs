//! The reader thread serves reads the device can answer without waiting, and writes without
//! FUA, itself; everything else goes to the connection's workers. These tests hold the server
//! to what that must not change: every request gets its own correct reply, and a read that
//! waits for the disk does not hold up cached reads behind it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;

use arca_nbd::proto::*;

use crate::support::*;

const BLOCK: u64 = 4096;

/// Even blocks are "in the page cache", odd ones "on disk".
fn even_blocks(block: u64) -> bool {
    block.is_multiple_of(2)
}

#[test]
fn cached_reads_are_not_held_behind_reads_from_disk() {
    let gate = Arc::new(Gate::default());
    let exports = MemExports::new(Some(gate.clone()), Some(even_blocks));
    let dev = exports.dev("a");
    let r = start(exports);
    let mut a = connect(r.addr, "a");

    // Two reads of blocks on disk in one segment: pipelined, so workers take them, and the
    // gate holds both in the device.
    let mut m = Vec::new();
    encode(&mut m, CMD_READ, 0, 1, BLOCK, BLOCK as u32, &[]);
    encode(&mut m, CMD_READ, 0, 2, 3 * BLOCK, BLOCK as u32, &[]);
    a.write_all(&m).unwrap();
    gate.wait_entered();

    // A cached read sent after them is answered while they wait.
    send_read(&mut a, 3, 0, BLOCK as u32);
    assert!(recv_read(&mut a, 3, BLOCK as u32) == expected("a", 0, BLOCK as usize));
    assert_eq!(dev.reads_inline.load(Ordering::SeqCst), 1);

    gate.release();
    let mut got = HashMap::new();
    for _ in 0..2 {
        let (cookie, error) = recv_reply(&mut a);
        assert_eq!(error, 0);
        let mut data = vec![0; BLOCK as usize];
        a.read_exact(&mut data).unwrap();
        got.insert(cookie, data);
    }
    assert!(got[&1] == expected("a", BLOCK as usize, BLOCK as usize));
    assert!(got[&2] == expected("a", 3 * BLOCK as usize, BLOCK as usize));
    assert_eq!(dev.reads_waited.load(Ordering::SeqCst), 2);
    r.stop();
}

/// A small deterministic generator (splitmix64), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

enum Expect {
    Read { offset: usize, len: usize },
    Done,
}

#[test]
fn pipelined_mixed_requests_each_get_their_own_reply() {
    let exports = MemExports::new(None, Some(even_blocks));
    let dev = exports.dev("a");
    let r = start(exports);
    let mut a = connect(r.addr, "a");

    // Reads of unaligned ranges in the first half, crossing cached and uncached blocks; each
    // block of the second half written once (so the outcome does not depend on order), some
    // with FUA; flushes in between. All sent at once, replies read as they come.
    let half = SIZE / 2;
    let mut rng = Rng(0x5eed);
    let mut written: Vec<u64> = (0..(half as u64 / BLOCK)).collect();
    for i in (1..written.len()).rev() {
        written.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut stream = Vec::new();
    let mut expect = HashMap::new();
    let mut image = expected("a", 0, SIZE);
    let mut cookie = 100u64;
    let mut blocks = written.into_iter();
    for i in 0..400 {
        cookie += 1;
        match i % 10 {
            0..=5 => {
                let len = 1 + rng.below(4 * BLOCK) as usize;
                let offset = rng.below((half - len) as u64) as usize;
                encode(
                    &mut stream,
                    CMD_READ,
                    0,
                    cookie,
                    offset as u64,
                    len as u32,
                    &[],
                );
                expect.insert(cookie, Expect::Read { offset, len });
            }
            6..=8 => {
                let Some(b) = blocks.next() else { continue };
                let offset = half + (b * BLOCK) as usize;
                let data: Vec<u8> = (0..BLOCK).map(|j| (j as u8) ^ (b as u8) ^ 0xa5).collect();
                image[offset..offset + BLOCK as usize].copy_from_slice(&data);
                let flags = if b.is_multiple_of(3) { CMD_FLAG_FUA } else { 0 };
                encode(
                    &mut stream,
                    CMD_WRITE,
                    flags,
                    cookie,
                    offset as u64,
                    BLOCK as u32,
                    &data,
                );
                expect.insert(cookie, Expect::Done);
            }
            _ => {
                encode(&mut stream, CMD_FLUSH, 0, cookie, 0, 0, &[]);
                expect.insert(cookie, Expect::Done);
            }
        }
    }
    let sender = {
        let mut a = a.try_clone().unwrap();
        thread::spawn(move || a.write_all(&stream).unwrap())
    };
    while !expect.is_empty() {
        let (cookie, error) = recv_reply(&mut a);
        assert_eq!(error, 0, "request {cookie} failed");
        match expect
            .remove(&cookie)
            .expect("a reply for a request sent, once")
        {
            Expect::Read { offset, len } => {
                let mut data = vec![0; len];
                a.read_exact(&mut data).unwrap();
                assert!(data == image[offset..offset + len], "read {cookie} data");
            }
            Expect::Done => {}
        }
    }
    sender.join().unwrap();

    // Both paths were taken, and the writes landed.
    assert!(dev.reads_inline.load(Ordering::SeqCst) > 0);
    assert!(dev.reads_waited.load(Ordering::SeqCst) > 0);
    for (i, chunk) in image[half..].chunks(64 * 1024).enumerate() {
        let offset = half + i * 64 * 1024;
        send_read(&mut a, 1, offset as u64, chunk.len() as u32);
        assert!(recv_read(&mut a, 1, chunk.len() as u32) == chunk);
    }
    r.stop();
}
