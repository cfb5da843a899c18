//! Where images' data lies: bytes per device, counted as data is written, copied on write,
//! shared with clones and trimmed, and the same after a reopen.

use arca_store::{Pool, SnapshotInfo, VolumeInfo};

use crate::util::{MIB, assert_clean, pattern, reopen, sim_pool, small_config};

fn write(pool: &Pool, volume: &str, offset: u64, len: u64, seed: u64) {
    pool.export(volume)
        .unwrap()
        .write(offset, &pattern(seed, len as usize), false)
        .unwrap();
}

/// Every image's (name, referenced, bytes per device), each checked to add up.
fn placements(pool: &Pool) -> Vec<(String, u64, Vec<u64>)> {
    let mut out = Vec::new();
    for v in pool.volumes() {
        let VolumeInfo {
            name,
            referenced_bytes,
            device_bytes,
            ..
        } = v;
        assert_eq!(device_bytes.len(), 2, "{name}: one entry per device");
        assert_eq!(device_bytes.iter().sum::<u64>(), referenced_bytes, "{name}");
        for s in pool.snapshots(&name).unwrap() {
            let SnapshotInfo {
                name: sname,
                referenced_bytes,
                device_bytes,
                ..
            } = s;
            assert_eq!(
                device_bytes.iter().sum::<u64>(),
                referenced_bytes,
                "{sname}"
            );
            out.push((format!("{name}@{sname}"), referenced_bytes, device_bytes));
        }
        out.push((name, referenced_bytes, device_bytes));
    }
    out
}

/// The defect of issue 12: a volume created without a device had `placement: None`, which
/// layers above read as device 0, while the allocator put its data on device 1.
#[test]
fn a_volume_without_a_device_reports_the_device_its_data_lies_on() {
    let sp = sim_pool(&[24 * MIB, 24 * MIB], &small_config());
    let pool = &sp.pool;
    pool.create_volume("fill", 16 * MIB, Some(0)).unwrap();
    write(pool, "fill", 0, 12 * MIB, 1);
    pool.create_volume("v", 8 * MIB, None).unwrap();
    write(pool, "v", 0, MIB, 2);
    let v = pool.volume("v").unwrap();
    assert_eq!(v.placement, None);
    assert_eq!(v.device_bytes, vec![0, MIB]);
    assert_eq!(v.data_devices(), vec![1]);
    assert_eq!(pool.volume("fill").unwrap().device_bytes, vec![12 * MIB, 0]);
    // Device 1 fills up too: v's next data goes to device 0, and it says it lies on both.
    pool.create_volume("fill1", 24 * MIB, Some(1)).unwrap();
    write(pool, "fill1", 0, 16 * MIB, 3);
    write(pool, "v", 2 * MIB, MIB, 4);
    let v = pool.volume("v").unwrap();
    assert_eq!(v.device_bytes, vec![MIB, MIB]);
    assert_eq!(v.data_devices(), vec![0, 1]);
    assert_clean(pool);
    let before = placements(pool);
    let pool = reopen(&sp);
    assert_eq!(placements(&pool), before);
    assert_clean(&pool);
}

/// Snapshots keep where their data lay when taken; a clone counts the extents it shares with
/// its origin (losing them loses its data); copies on write, trims and snapshot deletions move
/// the counts as they move data, and a reopen rebuilds the same counts.
#[test]
fn snapshots_and_clones_report_every_extent_they_read() {
    let sp = sim_pool(&[24 * MIB, 24 * MIB], &small_config());
    let pool = &sp.pool;
    pool.create_volume("v", 8 * MIB, None).unwrap();
    pool.create_volume("f0", 20 * MIB, Some(0)).unwrap();
    pool.create_volume("f1", 20 * MIB, Some(1)).unwrap();
    // Alternate which device has the most free space, so v's data spreads over both.
    write(pool, "v", 0, 2 * MIB, 1);
    write(pool, "f1", 0, 6 * MIB, 2);
    write(pool, "v", 2 * MIB, MIB, 3);
    pool.create_snapshot("v", "s1").unwrap();
    let s1 = pool.snapshot("v", "s1").unwrap();
    assert_eq!(s1.device_bytes, pool.volume("v").unwrap().device_bytes);
    assert_eq!(s1.data_devices(), vec![0, 1]);
    // Copy on write: the snapshot keeps its extents, the volume's new ones land elsewhere.
    write(pool, "f0", 0, 8 * MIB, 4);
    write(pool, "v", 0, MIB, 5);
    assert_eq!(
        pool.snapshot("v", "s1").unwrap().device_bytes,
        s1.device_bytes
    );
    pool.create_snapshot("v", "s2").unwrap();
    write(pool, "v", 4 * MIB, MIB, 6);
    pool.create_snapshot("v", "s3").unwrap();
    pool.export("v").unwrap().trim(MIB, MIB, false).unwrap();
    // A clone reads its origin's extents: it lies where the snapshot does.
    pool.clone_snapshot("v", "s2", "c", Some(1)).unwrap();
    assert_eq!(
        pool.volume("c").unwrap().device_bytes,
        pool.snapshot("v", "s2").unwrap().device_bytes
    );
    write(pool, "c", 0, 512 * 1024, 7);
    pool.export("c")
        .unwrap()
        .trim(2 * MIB, 512 * 1024, false)
        .unwrap();
    pool.create_snapshot("c", "cs").unwrap();
    write(pool, "c", 3 * MIB, MIB, 8);
    pool.create_snapshot("c", "cs2").unwrap();
    // Deleting a middle snapshot moves its preserved entries to an older one.
    pool.delete_snapshot("v", "s3").unwrap();
    pool.create_snapshot("v", "s4").unwrap();
    write(pool, "v", 0, 3 * MIB, 9);
    assert_clean(pool);
    let before = placements(pool);
    let pool = reopen(&sp);
    assert_eq!(placements(&pool), before);
    assert_clean(&pool);
}
