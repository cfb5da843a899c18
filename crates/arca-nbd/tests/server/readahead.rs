//! The server reads ahead of a client reading sequentially, and not of one reading at random.

use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

const READ: u64 = 16 * 1024;

#[test]
fn a_sequential_reader_is_read_ahead_and_a_random_one_is_not() {
    let exports = MemExports::new(None, None);
    let dev = exports.dev("a");
    let r = start(exports);
    let mut a = connect(r.addr, "a");

    for i in 0..8u64 {
        check_read(&mut a, "a", i, i * READ, READ as u32);
    }
    // Read ahead by a worker, so it may land just after the replies.
    let start = Instant::now();
    while dev.prefetched.lock().unwrap().is_empty() {
        assert!(start.elapsed() < IO_TIMEOUT, "no read-ahead");
        thread::sleep(Duration::from_millis(1));
    }
    // Every hint was handed to the workers before the last reply left; let them all land
    // (no new one for 200 ms) before the random phase looks for new ones.
    let mut seen = 0;
    loop {
        thread::sleep(Duration::from_millis(200));
        let n = dev.prefetched.lock().unwrap().len();
        if n == seen {
            break;
        }
        assert!(start.elapsed() < IO_TIMEOUT, "read-ahead hints keep coming");
        seen = n;
    }
    // The first window starts where the third read in a row ended: 1 MiB of it.
    assert_eq!(dev.prefetched.lock().unwrap()[0], (3 * READ, 1 << 20));

    dev.prefetched.lock().unwrap().clear();
    for (i, block) in [37u64, 3, 50, 12, 51, 20, 8, 44, 1, 30]
        .into_iter()
        .enumerate()
    {
        check_read(&mut a, "a", 100 + i as u64, block * READ, READ as u32);
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(*dev.prefetched.lock().unwrap(), []);
    r.stop();
}
