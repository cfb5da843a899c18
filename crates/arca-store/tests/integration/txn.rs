//! Transactions for the layers above, application tables, guards, and the queries the backup
//! layer builds on (changed extents, bytes freed by deleting snapshots together).

use std::ops::Bound;

use arca_store::sim::CrashMode;
use arca_store::{ErrorKind, Guard, GuardEffect, GuardOwner, Pool, PoolConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::*;

const ES: u64 = 4096;

/// A pool on one 4 MiB device with `volumes` (name, size in extents).
fn small_pool(volumes: &[(&str, u64)]) -> SimPool {
    let sp = sim_pool(&[4 * MIB], &config());
    for &(name, extents) in volumes {
        sp.pool.create_volume(name, extents * ES, None).unwrap();
    }
    sp
}

fn config() -> PoolConfig {
    PoolConfig {
        extent_size: ES as u32,
        meta_len: Some(2 * MIB),
    }
}

fn keys(pool: &Pool, table: &str, reverse: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    pool.app_scan(
        table,
        Bound::Unbounded,
        Bound::Unbounded,
        reverse,
        |k, _| {
            out.push(k.to_vec());
            true
        },
    )
    .unwrap();
    out
}

#[test]
fn app_tables_store_scan_and_survive_reopen() {
    let sp = small_pool(&[]);
    let pool = &sp.pool;
    assert_eq!(keys(pool, "cat", false), Vec::<Vec<u8>>::new());
    let mut t = pool.transaction();
    for k in [3u64, 1, 2, 10] {
        t.put(
            "cat",
            k.to_be_bytes().to_vec(),
            format!("v{k}").into_bytes(),
        );
    }
    t.put("other", b"x".to_vec(), b"y".to_vec());
    t.commit().unwrap();
    let be = |k: u64| k.to_be_bytes().to_vec();
    assert_eq!(keys(pool, "cat", false), vec![be(1), be(2), be(3), be(10)]);
    assert_eq!(keys(pool, "cat", true), vec![be(10), be(3), be(2), be(1)]);
    let mut some = Vec::new();
    pool.app_scan(
        "cat",
        Bound::Included(&be(2)),
        Bound::Excluded(&be(10)),
        false,
        |k, v| {
            some.push((k.to_vec(), v.to_vec()));
            true
        },
    )
    .unwrap();
    assert_eq!(some, vec![(be(2), b"v2".to_vec()), (be(3), b"v3".to_vec())]);
    // An inverted range is empty, not a panic.
    pool.app_scan(
        "cat",
        Bound::Included(&be(9)),
        Bound::Included(&be(1)),
        false,
        |_, _| panic!("nothing lies in an inverted range"),
    )
    .unwrap();
    let mut t = pool.transaction();
    t.delete("cat", be(2));
    t.commit().unwrap();
    let pool = reopen(&sp);
    assert_eq!(keys(&pool, "cat", false), vec![be(1), be(3), be(10)]);
    assert_eq!(pool.app_get("cat", &be(3)).unwrap(), Some(b"v3".to_vec()));
    assert_eq!(pool.app_get("cat", &be(2)).unwrap(), None);
    let mut t = pool.transaction();
    t.clear("cat");
    t.commit().unwrap();
    assert!(keys(&pool, "cat", false).is_empty());
    assert_eq!(keys(&pool, "other", false), vec![b"x".to_vec()]);
    assert_clean(&pool);
}

#[test]
fn tags_are_stored_with_volumes_and_snapshots() {
    let sp = small_pool(&[("v", 64)]);
    let pool = &sp.pool;
    let mut t = pool.transaction();
    t.create_snapshots(&[("v", "s")]).unwrap();
    t.set_snapshot_tag("v", "s", Some(b"snap-tag".to_vec()))
        .unwrap();
    t.set_volume_tag("v", Some(b"vol-tag".to_vec())).unwrap();
    t.commit().unwrap();
    let pool = reopen(&sp);
    assert_eq!(pool.volume("v").unwrap().tag, Some(b"vol-tag".to_vec()));
    assert_eq!(
        pool.snapshot("v", "s").unwrap().tag,
        Some(b"snap-tag".to_vec())
    );
    assert_clean(&pool);
}

#[test]
fn multi_snapshot_is_all_or_none() {
    let sp = small_pool(&[("a", 16), ("b", 16)]);
    let pool = &sp.pool;
    pool.create_snapshot("b", "s").unwrap();
    let mut t = pool.transaction();
    let e = t.create_snapshots(&[("a", "s"), ("b", "s")]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let e = t.create_snapshots(&[("a", "t"), ("a", "u")]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = t
        .create_snapshots(&[("a", "t"), ("nope", "t")])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    t.commit().unwrap();
    assert!(pool.snapshots("a").unwrap().is_empty());
    let mut t = pool.transaction();
    t.create_snapshots(&[("a", "t"), ("b", "t")]).unwrap();
    t.commit().unwrap();
    assert_eq!(pool.snapshots("a").unwrap().len(), 1);
    assert_eq!(pool.snapshots("b").unwrap().len(), 2);
}

/// Power fails somewhere in a run of transactions that each create a snapshot and its
/// record: after the restart every record has its snapshot and every snapshot its record.
#[test]
fn crash_leaves_snapshot_and_record_both_or_neither() {
    for seed in 0..120u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let sp = small_pool(&[("v", 32)]);
        let pool = &sp.pool;
        let e = pool.export("v").unwrap();
        sp.power.fail_after(rng.random_range(0..60));
        let mut acknowledged = Vec::new();
        for i in 0..12u64 {
            let _ = e.write(
                rng.random_range(0..32) * ES,
                &pattern(i, ES as usize),
                false,
            );
            let name = format!("s{i}");
            let mut t = pool.transaction();
            if t.create_snapshots(&[("v", &name)]).is_err() {
                break;
            }
            t.put("records", name.clone().into_bytes(), vec![1]);
            if t.commit().is_ok() {
                acknowledged.push(name);
            }
        }
        let mode = if seed % 2 == 0 {
            CrashMode::LoseAll
        } else {
            CrashMode::RandomSubset(seed)
        };
        let pool = sp.crash_and_reopen(mode).unwrap().pool;
        assert_clean(&pool);
        let mut snaps: Vec<String> = pool
            .snapshots("v")
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        let mut records: Vec<String> = keys(&pool, "records", false)
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect();
        snaps.sort();
        records.sort();
        assert_eq!(snaps, records, "seed {seed}");
        for a in &acknowledged {
            assert!(snaps.contains(a), "seed {seed}: acknowledged {a} lost");
        }
    }
}

#[test]
fn guards_refuse_delete_resize_and_host_writes() {
    let sp = small_pool(&[("v", 16)]);
    let pool = &sp.pool;
    pool.create_snapshot("v", "s").unwrap();
    let host = pool.export("v").unwrap();
    assert!(!host.read_only());
    pool.add_volume_guard(
        "v",
        Guard::new(
            GuardOwner::Backup(7),
            GuardEffect::ALL,
            "destination of backup 7",
        ),
    )
    .unwrap();
    let e = pool.delete_volume("v", true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert!(e.to_string().contains("destination of backup 7"), "{e}");
    assert_eq!(
        pool.resize_volume("v", 32 * ES).unwrap_err().kind(),
        ErrorKind::Busy
    );
    // A host export opened before the guard and one opened after both refuse writes.
    for x in [host, pool.export("v").unwrap()] {
        assert!(x.read_only());
        let e = x.write(0, &[1; 512], false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReadOnly);
        assert!(e.to_string().contains("backup 7"), "{e}");
        assert_eq!(
            x.trim(0, ES, false).unwrap_err().kind(),
            ErrorKind::ReadOnly
        );
    }
    assert!(pool.exports().iter().any(|e| e.name == "v" && e.read_only));
    let own = pool.export_unguarded("v").unwrap();
    assert!(!own.read_only());
    own.write(0, &[7; 512], false).unwrap();
    pool.remove_volume_guard("v", GuardOwner::Backup(7))
        .unwrap();
    pool.add_snapshot_guard(
        "v",
        "s",
        Guard::new(GuardOwner::Backup(9), GuardEffect::NO_DELETE, "backup 9"),
    )
    .unwrap();
    let e = pool.delete_snapshot("v", "s").unwrap_err();
    assert!(e.to_string().contains("backup 9"), "{e}");
    let e = pool.delete_volume("v", true).unwrap_err();
    assert!(e.to_string().contains("backup 9"), "{e}");
    pool.remove_snapshot_guard("v", "s", GuardOwner::Backup(9))
        .unwrap();
    pool.delete_volume("v", true).unwrap();
    assert_clean(pool);
}

#[test]
fn changed_extents_are_exactly_what_differs() {
    let sp = small_pool(&[("v", 64)]);
    let pool = &sp.pool;
    let e = pool.export("v").unwrap();
    for l in [0u64, 1, 2, 5, 9] {
        e.write(l * ES, &pattern(l, ES as usize), false).unwrap();
    }
    pool.create_snapshot("v", "base").unwrap();
    e.write(ES, &[1; 100], false).unwrap(); // overwrite of a shared extent
    e.write(20 * ES, &[2; 100], false).unwrap(); // new extent
    pool.create_snapshot("v", "later").unwrap();
    e.trim(5 * ES, ES, false).unwrap(); // trim of an extent base saw
    e.write(20 * ES, &[3; 100], false).unwrap(); // overwrite after the later snapshot
    e.write(30 * ES, &[4; 100], false).unwrap();
    assert_eq!(
        pool.changed_extents("v", "base").unwrap(),
        vec![1, 5, 20, 30]
    );
    assert_eq!(pool.changed_extents("v", "later").unwrap(), vec![5, 20, 30]);
    // What the query names is a superset of what differs, and everything else is equal.
    let base = pool.export("v@base").unwrap();
    let changed = pool.changed_extents("v", "base").unwrap();
    for l in 0..64u64 {
        let mut a = vec![0u8; ES as usize];
        let mut b = vec![0u8; ES as usize];
        base.read(l * ES, &mut a).unwrap();
        e.read(l * ES, &mut b).unwrap();
        if a != b {
            assert!(changed.contains(&l), "extent {l} differs but is not named");
        }
    }
}

/// Every extent where two snapshots differ is named by `changed_between`, whatever mix of
/// writes, overwrites and trims came between and after them.
#[test]
fn changed_between_names_every_extent_two_snapshots_differ_in() {
    for seed in 0..30u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let sp = sim_pool(&[8 * MIB], &config());
        let pool = &sp.pool;
        pool.create_volume("v", 32 * ES, None).unwrap();
        let e = pool.export("v").unwrap();
        for i in 0..5 {
            for _ in 0..rng.random_range(0..12) {
                let l = rng.random_range(0..32u64);
                if rng.random_range(0..4) == 0 {
                    e.trim(l * ES, ES, false).unwrap();
                } else {
                    e.write(l * ES, &[rng.random::<u8>() | 1; 64], false)
                        .unwrap();
                }
            }
            pool.create_snapshot("v", &format!("s{i}")).unwrap();
        }
        let read = |name: &str, l: u64| {
            let mut buf = vec![0u8; ES as usize];
            pool.export(name).unwrap().read(l * ES, &mut buf).unwrap();
            buf
        };
        for i in 0..5 {
            for j in i..5 {
                let changed = pool
                    .changed_between("v", &format!("s{i}"), &format!("s{j}"))
                    .unwrap();
                for l in 0..32u64 {
                    if read(&format!("v@s{i}"), l) != read(&format!("v@s{j}"), l) {
                        assert!(changed.contains(&l), "seed {seed}: s{i}..s{j} extent {l}");
                    }
                }
                if i == j {
                    assert!(changed.is_empty());
                }
            }
        }
        let err = pool.changed_between("v", "s3", "s1").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}

#[test]
fn bytes_freed_by_deleting_snapshots_together_is_exact() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let sp = sim_pool(&[8 * MIB], &config());
        let pool = &sp.pool;
        pool.create_volume("v", 64 * ES, None).unwrap();
        let e = pool.export("v").unwrap();
        let mut names = Vec::new();
        for i in 0..6 {
            for _ in 0..rng.random_range(0..20) {
                let l = rng.random_range(0..64u64);
                if rng.random_range(0..5) == 0 {
                    e.trim(l * ES, ES, false).unwrap();
                } else {
                    e.write(l * ES, &[i as u8 + 1; 512], false).unwrap();
                }
            }
            let n = format!("s{i}");
            pool.create_snapshot("v", &n).unwrap();
            names.push(n);
        }
        for _ in 0..rng.random_range(0..20) {
            e.write(rng.random_range(0..64u64) * ES, &[9; 512], false)
                .unwrap();
        }
        pool.flush().unwrap();
        let doomed: Vec<&str> = names
            .iter()
            .filter(|_| rng.random_range(0..2) == 0)
            .map(String::as_str)
            .collect();
        let predicted = pool.bytes_freed_by_deleting("v", &doomed).unwrap();
        let used_before = pool.status().used_bytes;
        for n in &doomed {
            pool.delete_snapshot("v", n).unwrap();
        }
        pool.flush().unwrap();
        let used_after = pool.status().used_bytes;
        assert_eq!(
            predicted,
            used_before - used_after,
            "seed {seed} {doomed:?}"
        );
        assert_clean(pool);
    }
}
