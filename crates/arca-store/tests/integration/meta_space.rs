//! The metadata region never wedges the pool: what adds metadata is refused before the region
//! is at risk, while host writes and deletions always commit.

use arca_store::{ErrorKind, PoolConfig};

use crate::util::*;

const ES: u64 = 4096;
const ROW_BYTES: usize = 32 * 1024;

/// Regression: snapshots with large rows of their own (as backups with digests) filled the
/// region until host flushes failed with ENOSPC and no delete could commit.
#[test]
fn metadata_region_full_refuses_adds_but_host_writes_and_deletes_commit() {
    let sp = sim_pool(&[24 * MIB], &small_config());
    let pool = &sp.pool;
    let total = pool.status().capacity_bytes;
    pool.create_volume("v", total, None).unwrap();
    let v = pool.export("v").unwrap();
    // A quarter of the pool written, then "backups" until the region refuses one.
    let chunk = pattern(1, 256 * 1024);
    for off in (0..total / 4).step_by(chunk.len()) {
        v.write(off, &chunk, false).unwrap();
    }
    pool.flush().unwrap();
    let mut made = Vec::new();
    let refusal = loop {
        let name = format!("s{}", made.len());
        let mut t = pool.transaction();
        let r = t
            .admit("a test backup", ROW_BYTES as u64)
            .and_then(|()| t.create_snapshots(&[("v", name.as_str())]).map(drop));
        match r {
            Ok(()) => {
                t.put("rows", name.clone().into_bytes(), pattern(7, ROW_BYTES));
                t.commit().expect("an admitted change commits");
                made.push(name);
            }
            Err(e) => break e,
        }
        assert!(made.len() < 10_000, "admission never refused");
    };
    assert_eq!(refusal.kind(), ErrorKind::NoSpace, "{refusal}");
    assert!(
        refusal.to_string().contains("metadata region nearly full"),
        "{refusal}"
    );
    assert!(made.len() > 10, "only {} fitted", made.len());
    // A refused change left nothing behind.
    assert_eq!(pool.snapshots("v").unwrap().len(), made.len());
    let space = pool.status().metadata;
    assert!(space.used_bytes <= space.reachable_bytes, "{space:?}");

    // Every other extent of the pool written by a host, with FUA and flushes: all of it commits.
    let written = (total / 4).div_ceil(chunk.len() as u64) * chunk.len() as u64;
    for off in (written..total).step_by(chunk.len()) {
        let len = chunk.len().min((total - off) as usize);
        v.write(off, &chunk[..len], off % (1 << 20) == 0).unwrap();
    }
    pool.flush()
        .expect("host writes commit with the region nearly full");
    // And every deletion commits.
    for name in &made {
        let mut t = pool.transaction();
        t.delete_snapshot("v", name).unwrap();
        t.delete("rows", name.clone().into_bytes());
        t.commit().expect("a deletion commits");
    }
    assert_clean(pool);
    let space = pool.status().metadata;
    assert!(space.available_bytes > ROW_BYTES as u64, "{space:?}");
    pool.create_snapshot("v", "after").expect("room again");
    let pool = reopen(&sp);
    assert_clean(&pool);
}

/// A pool whose metadata region cannot map every extent is refused at creation.
#[test]
fn metadata_region_too_small_for_the_extents_is_refused() {
    let config = PoolConfig {
        extent_size: ES as u32,
        meta_len: Some(2 * MIB),
    };
    let e = arca_store::Pool::create(
        as_block(&[std::sync::Arc::new(arca_store::sim::SimDevice::new(
            "big",
            (256 * MIB) as usize,
            arca_store::sim::PowerDomain::new(),
        ))]),
        &config,
    )
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("too small for a pool of"), "{e}");
}

/// A commit the region cannot hold (rows written without asking for room) fails as no space,
/// recognised by the region's error kind, and the pool goes on working.
#[test]
fn a_commit_past_the_region_is_a_no_space_error() {
    let sp = sim_pool(&[16 * MIB], &small_config());
    let pool = &sp.pool;
    let mut last = None;
    for i in 0..200u32 {
        let mut t = pool.transaction();
        t.put(
            "rows",
            i.to_be_bytes().to_vec(),
            pattern(i as u64, 64 * 1024),
        );
        if let Err(e) = t.commit() {
            last = Some(e);
            break;
        }
    }
    let e = last.expect("a 4 MiB region cannot hold 200 rows of 64 KiB");
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    // The failed rows were dropped: the pool still commits, deletions make room.
    assert_eq!(
        pool.create_volume("v", MIB, None).unwrap_err().kind(),
        ErrorKind::NoSpace
    );
    let mut t = pool.transaction();
    t.clear("rows");
    t.commit().unwrap();
    pool.create_volume("v", MIB, None).unwrap();
    assert_clean(pool);
}
