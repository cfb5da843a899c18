//! fsck while the pool is busy: writers (in place and allocating, to volumes and a clone),
//! trims, snapshots taken and deleted. Every report must be clean: a check that does not see
//! one consistent state reports writes in flight as leaked extents or wrong counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use arca_store::PoolConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::*;

const ROUNDS: usize = 40;
const VOLUME: u64 = 1024 * 1024;

#[test]
fn fsck_during_writes_trims_and_snapshots_reports_nothing() {
    let config = PoolConfig {
        extent_size: 4096,
        meta_len: Some(8 * MIB),
    };
    let sp = sim_pool(&[32 * MIB, 16 * MIB], &config);
    let pool = sp.pool.clone();
    for (name, device) in [("a", 0), ("b", 1)] {
        pool.create_volume(name, VOLUME, Some(device)).unwrap();
        pool.export(name)
            .unwrap()
            .write(0, &pattern(9, VOLUME as usize / 2), false)
            .unwrap();
    }
    pool.create_snapshot("a", "base").unwrap();
    pool.clone_snapshot("a", "base", "c", None).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (t, name) in ["a", "b", "c", "a", "c"].into_iter().enumerate() {
        let (pool, stop, ops) = (pool.clone(), stop.clone(), ops.clone());
        // Threads 0..3 write, 3 and 4 trim.
        let trims = t >= 3;
        threads.push(thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(t as u64);
            let e = pool.export(name).unwrap();
            while !stop.load(Ordering::SeqCst) {
                let off = rng.random_range(0..VOLUME / 4096) * 4096;
                let len = (rng.random_range(1..=4u64) * 4096).min(VOLUME - off);
                if trims {
                    e.trim(off, len, false).unwrap();
                } else {
                    e.write(off, &pattern(rng.random(), len as usize), false)
                        .unwrap();
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    {
        let (pool, stop) = (pool.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                pool.create_snapshot("b", &format!("s{n}")).unwrap();
                if n > 3 {
                    pool.delete_snapshot("b", &format!("s{}", n - 3)).unwrap();
                }
                thread::sleep(std::time::Duration::from_millis(2));
            }
        }));
    }
    let mut reports = Vec::new();
    for round in 0..ROUNDS {
        let before = ops.load(Ordering::Relaxed);
        let report = pool.fsck().expect("fsck runs");
        if !report.is_clean() {
            reports.push(format!("round {round}: {:#?}", report.problems));
        }
        // Let the load run between checks.
        while ops.load(Ordering::Relaxed) < before + 50 {
            thread::yield_now();
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        reports.is_empty(),
        "{} of {ROUNDS} checks under load reported problems:\n{}",
        reports.len(),
        reports.join("\n")
    );
    assert_clean(&pool);
}
