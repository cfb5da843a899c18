//! Bad input gets a clear, typed error and changes nothing; devices that are not this pool's
//! are refused with an error naming them.

use std::sync::Arc;

use arca_store::sim::{PowerDomain, SimDevice};
use arca_store::{ErrorKind, Pool, PoolConfig, VOLUME_SIZE_MAX};

use crate::util::*;

fn kind<T>(r: arca_store::Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind(),
    }
}

#[test]
fn bad_names_sizes_ranges_and_targets() {
    let sp = sim_pool(&[16 * MIB, 8 * MIB], &small_config());
    let pool = &sp.pool;
    assert_eq!(
        kind(pool.create_volume("bad name", MIB, None)),
        ErrorKind::InvalidName
    );
    assert_eq!(
        kind(pool.create_volume("a@b", MIB, None)),
        ErrorKind::InvalidName
    );
    assert_eq!(
        kind(pool.create_volume("", MIB, None)),
        ErrorKind::InvalidName
    );
    assert_eq!(
        kind(pool.create_volume("v", 0, None)),
        ErrorKind::InvalidSize
    );
    assert_eq!(
        kind(pool.create_volume("v", 1000, None)),
        ErrorKind::InvalidSize
    );
    assert_eq!(
        kind(pool.create_volume("v", VOLUME_SIZE_MAX + 512, None)),
        ErrorKind::InvalidSize
    );
    assert_eq!(
        kind(pool.create_volume("v", MIB, Some(2))),
        ErrorKind::InvalidArgument
    );
    pool.create_volume("v", MIB, Some(1)).unwrap();
    assert_eq!(
        kind(pool.create_volume("v", MIB, None)),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(pool.resize_volume("v", MIB / 2)),
        ErrorKind::InvalidSize
    );
    assert_eq!(kind(pool.resize_volume("nope", MIB)), ErrorKind::NotFound);
    assert_eq!(kind(pool.export("nope")), ErrorKind::NotFound);
    assert_eq!(kind(pool.export("v@nope")), ErrorKind::NotFound);
    assert_eq!(
        kind(pool.create_snapshot("v", "x/y")),
        ErrorKind::InvalidName
    );
    assert_eq!(kind(pool.delete_snapshot("v", "nope")), ErrorKind::NotFound);
    assert_eq!(
        kind(pool.clone_snapshot("v", "nope", "c", None)),
        ErrorKind::NotFound
    );
    pool.create_snapshot("v", "s").unwrap();
    assert_eq!(
        kind(pool.create_snapshot("v", "s")),
        ErrorKind::AlreadyExists
    );
    assert_eq!(kind(pool.delete_volume("v", false)), ErrorKind::Busy);
    let v = pool.export("v").unwrap();
    let e = v.write(MIB - 10, &[1u8; 11], false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange);
    assert!(e.to_string().contains("past the end of v"), "{e}");
    assert_eq!(
        v.write(u64::MAX - 5, &[1u8; 11], false).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        v.trim(u64::MAX, 2, false).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        v.block_status(MIB, 1).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    let mut buf = [0u8; 2];
    assert_eq!(
        v.read(MIB - 1, &mut buf).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    let s = pool.export("v@s").unwrap();
    assert!(s.read_only());
    assert_eq!(
        s.write(0, b"x", false).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert_eq!(
        s.trim(0, 512, false).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    // Nothing above changed the pool.
    assert_eq!(pool.status().used_bytes, 0);
    assert_eq!(pool.volumes().len(), 1);
    // A deleted volume's open export reports it gone.
    pool.delete_volume("v", true).unwrap();
    assert_eq!(v.read(0, &mut buf).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(s.size().unwrap_err().kind(), ErrorKind::NotFound);
    assert_clean(pool);
}

#[test]
fn invalid_pool_configs_are_refused() {
    let power = PowerDomain::new();
    let dev = || -> Vec<Arc<dyn arca_store::BlockDevice>> {
        vec![Arc::new(SimDevice::new(
            "d",
            (16 * MIB) as usize,
            power.clone(),
        ))]
    };
    for es in [0, 1000, 2048, 128 << 20] {
        let c = PoolConfig {
            extent_size: es,
            meta_len: Some(4 * MIB),
        };
        assert_eq!(
            Pool::create(dev(), &c).map(|_| ()).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
    let c = PoolConfig {
        extent_size: 4096,
        meta_len: Some(64 * MIB),
    };
    let e = Pool::create(dev(), &c).map(|_| ()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidSize);
    assert!(e.to_string().contains("too small"), "{e}");
}

fn open_err(devices: Vec<Arc<SimDevice>>) -> arca_store::Error {
    Pool::open(as_block(&devices)).map(|_| ()).unwrap_err()
}

#[test]
fn foreign_mismatched_truncated_and_missing_devices_are_named() {
    let a = sim_pool(&[16 * MIB, 8 * MIB], &small_config());
    let b = sim_pool(&[16 * MIB, 8 * MIB], &small_config());
    drop(a.pool.clone());
    // Foreign: a device that was never labelled.
    let blank = Arc::new(SimDevice::new("blank", (8 * MIB) as usize, a.power.clone()));
    let e = open_err(vec![a.devices[0].clone(), blank]);
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        e.to_string().contains("blank") && e.to_string().contains("no valid Arca superblock"),
        "{e}"
    );
    // Mismatched: a device of another pool.
    let e = open_err(vec![a.devices[0].clone(), b.devices[1].clone()]);
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        e.to_string().contains("sim1") && e.to_string().contains("belongs to pool"),
        "{e}"
    );
    // Missing.
    let e = open_err(vec![a.devices[0].clone()]);
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("missing device index 1"), "{e}");
    // The same device twice.
    let e = open_err(vec![a.devices[0].clone(), a.devices[0].clone()]);
    assert!(e.to_string().contains("both claim index 0"), "{e}");
    // Truncated.
    let mut img = a.devices[1].snapshot_bytes();
    img.truncate(img.len() - 4096);
    let short = Arc::new(SimDevice::from_image("short", img, a.power.clone()));
    let e = open_err(vec![a.devices[0].clone(), short]);
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("short is truncated"), "{e}");
    // Both orders of the right devices open.
    Pool::open(as_block(&[a.devices[1].clone(), a.devices[0].clone()])).unwrap();
}

#[test]
fn one_damaged_superblock_copy_opens_and_fsck_names_it() {
    let sp = sim_pool(&[16 * MIB], &small_config());
    sp.pool.create_volume("v", MIB, None).unwrap();
    sp.devices[0].corrupt(4096 + 100, b"garbage");
    let pool = reopen(&sp);
    assert_eq!(pool.volumes().len(), 1);
    let report = pool.fsck().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].code, "superblock");
    assert!(
        report.problems[0]
            .message
            .contains("sim0: superblock copy 1: superblock checksum mismatch")
    );
    // Both copies damaged: refused.
    sp.devices[0].corrupt(100, b"garbage");
    let e = open_err(sp.devices.clone());
    assert_eq!(e.kind(), ErrorKind::Corrupt);
}
