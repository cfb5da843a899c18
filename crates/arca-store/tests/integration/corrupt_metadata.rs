//! Damaged metadata: random 4 KiB blocks written over the used part of the metadata region.
//! Opening, reading, checking and committing must never panic (redb can panic on pages it
//! cannot make sense of), and every failure must be an error naming the metadata region.

use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arca_store::layout::META_OFFSET;
use arca_store::sim::{SimDevice, devices_from_images};
use arca_store::{Pool, PoolConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::*;

const TRIALS: u64 = 200;
const BLOCK: usize = 4096;

/// A pool with volumes, snapshots, a clone, data and an application table; its device images.
fn populated_images() -> (Vec<Vec<u8>>, u64) {
    let config = PoolConfig {
        extent_size: 4096,
        meta_len: Some(2 * MIB),
    };
    let sp = sim_pool(&[8 * MIB, 4 * MIB], &config);
    let pool = &sp.pool;
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        pool.create_volume(name, 256 * 1024, Some((i % 2) as u32))
            .unwrap();
        let e = pool.export(name).unwrap();
        for k in 0..24u64 {
            e.write(k * 8192, &pattern(k + 100 * i as u64, 4096), false)
                .unwrap();
        }
        pool.create_snapshot(name, "s1").unwrap();
        for k in 0..8u64 {
            e.write(k * 16384, &pattern(k + 7, 4096), false).unwrap();
        }
        pool.create_snapshot(name, "s2").unwrap();
    }
    pool.clone_snapshot("a", "s1", "a-clone", None).unwrap();
    let mut t = pool.transaction();
    for k in 0..2000u64 {
        t.put("catalog", k.to_be_bytes().to_vec(), pattern(k, 40));
    }
    t.commit().unwrap();
    let used = pool.status().metadata.file_bytes;
    // Closed cleanly, as a stopped daemon leaves it: redb then trusts its pages at the next
    // open instead of verifying them in a repair.
    let SimPool { devices, pool, .. } = sp;
    pool.close().unwrap();
    let images = devices.iter().map(|d| d.snapshot_bytes()).collect();
    (images, used)
}

/// An error from a damaged metadata store must say where the damage is.
fn check_error(trial: u64, what: &str, e: &arca_store::Error) {
    assert!(
        e.to_string().contains("metadata region"),
        "trial {trial}: {what} failed without naming the metadata region: {e}"
    );
}

/// Exercises the pool the way the daemon does; returns at the first error (checked). The
/// damage is done before the open, or after it (the daemon running when the block goes bad).
fn exercise(trial: u64, devices: &[Arc<SimDevice>], damage: (u64, &[u8]), after_open: bool) {
    if !after_open {
        devices[0].corrupt(damage.0, damage.1);
    }
    let pool = match Pool::open(as_block(devices)) {
        Ok(p) => p,
        Err(e) => return check_error(trial, "open", &e),
    };
    if after_open {
        devices[0].corrupt(damage.0, damage.1);
    }
    // Every step runs whatever the ones before it met: a failed read must leave the pool
    // usable for the next request (or failing it the same way).
    let check = |what: &str, r: arca_store::Result<()>| {
        if let Err(e) = r {
            check_error(trial, what, &e);
        }
    };
    for v in pool.volumes() {
        let _ = pool.snapshots(&v.name);
    }
    for x in pool.exports() {
        let e = pool.export(&x.name).unwrap();
        let mut buf = vec![0u8; x.size as usize];
        check("read", e.read(0, &mut buf));
    }
    let scan = |pool: &Pool| {
        pool.app_scan(
            "catalog",
            Bound::Unbounded,
            Bound::Unbounded,
            false,
            |_, _| true,
        )
    };
    check("app_scan", scan(&pool));
    check(
        "app_get",
        pool.app_get("catalog", &7u64.to_be_bytes()).map(|_| ()),
    );
    check("fsck", pool.fsck().map(|_| ()));
    let written = pool
        .create_volume("fresh", 64 * 1024, None)
        .and_then(|_| pool.export("fresh"))
        .and_then(|e| e.write(0, &pattern(trial, 8192), false))
        .and_then(|_| pool.flush());
    check("commit", written);
    let mut t = pool.transaction();
    t.put("catalog", b"new".to_vec(), b"row".to_vec());
    t.delete("catalog", 5u64.to_be_bytes().to_vec());
    check("commit to a table", t.commit());
    check("app_scan again", scan(&pool));
    check("close", pool.close());
}

#[test]
fn random_blocks_in_the_metadata_region_give_errors_not_panics() {
    let (images, used) = populated_images();
    // The region's two header slots, then the store's bytes.
    let span = 8192 + used;
    let mut rng = StdRng::seed_from_u64(11);
    let mut panics = Vec::new();
    for trial in 0..TRIALS {
        let at = META_OFFSET + rng.random_range(0..span.div_ceil(BLOCK as u64)) * BLOCK as u64;
        let mut junk = vec![0u8; BLOCK];
        rng.fill(&mut junk[..]);
        let (_power, devices) = devices_from_images(images.iter().cloned());
        let after_open = trial % 2 == 1;
        let run = || exercise(trial, &devices, (at, &junk), after_open);
        if let Err(p) = catch_unwind(AssertUnwindSafe(run)) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panics.push(format!(
                "trial {trial} (block at {at}, after open: {after_open}): {msg}"
            ));
        }
    }
    assert!(
        panics.is_empty(),
        "{} of {TRIALS} trials panicked:\n{}",
        panics.len(),
        panics.join("\n")
    );
}
