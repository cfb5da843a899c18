//! Many threads writing to the same and different volumes while another takes snapshots; every
//! snapshot then holds, for each block, a write no older than the last one completed before the
//! snapshot call and no newer than the last one issued before it returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use arca_store::{FileDevice, Pool, PoolConfig};

const BLOCK: u64 = 4096;
const WRITERS_PER_VOLUME: u64 = 3;
const BLOCKS_PER_WRITER: u64 = 24;

fn stamp(writer: u64, n: u64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK as usize];
    for chunk in b.chunks_mut(16) {
        chunk[..8].copy_from_slice(&writer.to_le_bytes());
        chunk[8..].copy_from_slice(&n.to_le_bytes());
    }
    b
}

/// Writer `w`'s block `b` sits between the other writers' blocks, so writers share extents.
fn offset(w: u64, b: u64) -> u64 {
    (b * WRITERS_PER_VOLUME + w) * BLOCK
}

#[test]
fn writers_and_snapshots_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev0");
    let config = PoolConfig {
        extent_size: 16 * 1024,
        meta_len: Some(16 << 20),
    };
    let pool = Pool::create(
        vec![Arc::new(FileDevice::create(&path, 256 << 20).unwrap())],
        &config,
    )
    .unwrap();
    let vols = ["a", "b"];
    for v in vols {
        pool.create_volume(v, 8 << 20, None).unwrap();
    }
    let writers = vols.len() as u64 * WRITERS_PER_VOLUME;
    let issued: Arc<Vec<AtomicU64>> = Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());
    let completed: Arc<Vec<AtomicU64>> =
        Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for id in 0..writers {
        let (pool, issued, completed, stop) = (
            pool.clone(),
            issued.clone(),
            completed.clone(),
            stop.clone(),
        );
        threads.push(thread::spawn(move || {
            let export = pool
                .export(vols[(id / WRITERS_PER_VOLUME) as usize])
                .unwrap();
            let w = id % WRITERS_PER_VOLUME;
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) || n < 300 {
                n += 1;
                issued[id as usize].store(n, Ordering::SeqCst);
                export
                    .write(offset(w, n % BLOCKS_PER_WRITER), &stamp(id, n), false)
                    .unwrap();
                completed[id as usize].store(n, Ordering::SeqCst);
                if n % 50 == 0 {
                    pool.flush().unwrap();
                }
            }
        }));
    }
    // (volume, snapshot, completed before, issued after) per snapshot.
    let mut taken = Vec::new();
    for i in 0..16 {
        let v = vols[i % 2];
        let before: Vec<u64> = completed.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        let name = format!("s{i}");
        pool.create_snapshot(v, &name).unwrap();
        let after: Vec<u64> = issued.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        taken.push((v, name, before, after));
        thread::sleep(std::time::Duration::from_millis(5));
        if i == 8 {
            // Delete one in the middle while writers run.
            pool.delete_snapshot(vols[0], "s2").unwrap();
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    for (v, name, before, after) in taken {
        if name == "s2" {
            continue;
        }
        let e = pool.export(&format!("{v}@{name}")).unwrap();
        let vi = vols.iter().position(|x| *x == v).unwrap() as u64;
        for w in 0..WRITERS_PER_VOLUME {
            let id = vi * WRITERS_PER_VOLUME + w;
            let (lo_n, hi_n) = (before[id as usize], after[id as usize]);
            for b in 0..BLOCKS_PER_WRITER {
                let mut buf = vec![0u8; BLOCK as usize];
                e.read(offset(w, b), &mut buf).unwrap();
                // The last write to block b completed before the snapshot call.
                let lo = (1..=lo_n).rev().find(|n| n % BLOCKS_PER_WRITER == b);
                if buf.iter().all(|&x| x == 0) {
                    assert!(
                        lo.is_none(),
                        "{v}@{name} lost writer {id} block {b} (write {lo:?} completed before)"
                    );
                    continue;
                }
                let n = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                assert_eq!(buf, stamp(id, n), "{v}@{name} block {b} torn or foreign");
                assert_eq!(n % BLOCKS_PER_WRITER, b);
                assert!(
                    lo.is_none_or(|lo| n >= lo),
                    "{v}@{name} block {b}: write {n} older than completed {lo:?}"
                );
                assert!(
                    n <= hi_n,
                    "{v}@{name} block {b}: write {n} issued after the snapshot returned ({hi_n})"
                );
            }
        }
    }
    let report = pool.fsck().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}
