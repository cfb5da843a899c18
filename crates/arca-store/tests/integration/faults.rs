//! Device I/O errors and running out of space: the request that met the error gets it, the
//! pool stays consistent and usable for everything else, nothing durable is lost.

use arca_store::ErrorKind;
use arca_store::sim::FaultOp;

use crate::util::*;

/// Data region of device 0 starts after the metadata region (4 MiB at 64 KiB, extent-aligned).
const DATA0: u64 = 64 * 1024 + 4 * MIB;

#[test]
fn read_error_is_reported_and_other_reads_work() {
    let sp = pool_with_v(&[16 * MIB], MIB);
    let pool = &sp.pool;
    let v = pool.export("v").unwrap();
    let a = pattern(1, 8192);
    v.write(0, &a, false).unwrap();
    pool.flush().unwrap();
    // The first extent allocated is extent 0 of device 0.
    sp.devices[0].inject_range(FaultOp::Read, DATA0, 4096, 1);
    let mut buf = vec![0u8; 8192];
    let err = v.read(0, &mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("sim0"), "names the device: {err}");
    let mut second = vec![0u8; 4096];
    v.read(4096, &mut second).unwrap();
    assert_eq!(second, a[4096..]);
    v.read(0, &mut buf).unwrap();
    assert_eq!(buf, a);
    assert_clean(pool);
}

#[test]
fn write_error_leaves_map_unchanged_and_returns_extents() {
    let sp = pool_with_v(&[16 * MIB], MIB);
    let pool = &sp.pool;
    let v = pool.export("v").unwrap();
    let a = pattern(2, 4096);
    v.write(0, &a, false).unwrap();
    pool.create_snapshot("v", "s").unwrap();
    let used = pool.status().used_bytes;
    // A copy-on-write that fails: the new extent is released, the volume still reads `a`.
    sp.devices[0].inject(FaultOp::Write, 0, 1, libc::EIO);
    let err = v.write(100, b"new", false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    let mut buf = vec![0u8; 4096];
    v.read(0, &mut buf).unwrap();
    assert_eq!(buf, a);
    pool.flush().unwrap();
    assert_eq!(pool.status().used_bytes, used);
    assert_clean(pool);
    // With the fault gone the same write works.
    v.write(100, b"new", false).unwrap();
    v.read(0, &mut buf).unwrap();
    assert_eq!(&buf[100..103], b"new");
    assert_clean(pool);
}

#[test]
fn sync_error_fails_the_flush_and_a_retry_commits_everything() {
    let sp = pool_with_v(&[16 * MIB], MIB);
    let pool = &sp.pool;
    let v = pool.export("v").unwrap();
    let a = pattern(3, 20_000);
    v.write(5000, &a, false).unwrap();
    v.trim(0, 4096, false).unwrap();
    sp.devices[0].inject(FaultOp::Sync, 0, 1, libc::EIO);
    assert_eq!(pool.flush().unwrap_err().kind(), ErrorKind::Io);
    pool.flush().unwrap();
    drop(v);
    drop(sp.pool.clone());
    let reopened = reopen(&sp);
    let mut buf = vec![0u8; 20_000];
    reopened.export("v").unwrap().read(5000, &mut buf).unwrap();
    assert_eq!(buf, a);
    assert_clean(&reopened);
}

#[test]
fn metadata_write_error_mid_commit_recovers_on_retry() {
    let sp = pool_with_v(&[16 * MIB], MIB);
    let pool = &sp.pool;
    let v = pool.export("v").unwrap();
    let before = pattern(4, 8192);
    v.write(0, &before, false).unwrap();
    pool.flush().unwrap();
    let after = pattern(5, 30_000);
    v.write(8192, &after, false).unwrap();
    // Data is written already; the next writes are the metadata store's pages.
    sp.devices[0].inject_range(FaultOp::Write, 64 * 1024, 4 * MIB, 1);
    let err = pool.flush().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    // The pool still serves reads and writes, and the next flush commits.
    let mut buf = vec![0u8; 30_000];
    v.read(8192, &mut buf).unwrap();
    assert_eq!(buf, after);
    pool.flush().unwrap();
    assert_clean(pool);
    drop(v);
    let reopened = reopen(&sp);
    reopened.export("v").unwrap().read(8192, &mut buf).unwrap();
    assert_eq!(buf, after);
    assert_clean(&reopened);
}

#[test]
fn full_pool_gives_no_space_for_that_write_only() {
    // 1 MiB of data extents (256 of 4 KiB) after the metadata region.
    let sp = sim_pool(&[DATA0 + MIB], &small_config());
    let pool = &sp.pool;
    assert_eq!(pool.status().capacity_bytes, MIB);
    pool.create_volume("big", 4 * MIB, None).unwrap();
    pool.create_volume("other", MIB, None).unwrap();
    let big = pool.export("big").unwrap();
    let other = pool.export("other").unwrap();
    let keep = pattern(6, 4096);
    other.write(0, &keep, false).unwrap();
    big.write(0, &pattern(7, (MIB - 4096) as usize), false)
        .unwrap();
    assert_eq!(pool.status().free_bytes, 0);
    // All or nothing: a write needing 2 extents with none free changes nothing.
    let err = big.write(MIB, &[9u8; 8192], false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSpace);
    assert!(err.to_string().contains("no space"), "{err}");
    assert!(!big.block_status(MIB, 8192).unwrap()[0].allocated);
    // Overwriting allocated space still works, and so does everything else.
    big.write(0, &[1u8; 4096], false).unwrap();
    let mut buf = vec![0u8; 4096];
    other.read(0, &mut buf).unwrap();
    assert_eq!(buf, keep);
    // Space comes back after a trim commits.
    big.trim(0, 65536, false).unwrap();
    pool.flush().unwrap();
    big.write(MIB, &[9u8; 8192], false).unwrap();
    assert_clean(pool);
}

#[test]
fn device_enospc_is_a_no_space_error() {
    let sp = pool_with_v(&[16 * MIB], MIB);
    let pool = &sp.pool;
    sp.devices[0].inject(FaultOp::Write, 0, 1, libc::ENOSPC);
    let err = pool.export("v").unwrap().write(0, b"x", false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSpace);
    assert_clean(pool);
}

/// Regression: a transaction's table rows stayed pending after its commit failed, so every
/// later flush (a host's too) tried them again; rows that could not fit failed them all.
#[test]
fn a_failed_commit_of_table_rows_only_aborts_them() {
    let sp = pool_with_v(&[16 * MIB], MIB);
    let pool = &sp.pool;
    let v = pool.export("v").unwrap();
    sp.devices[0].inject_range(FaultOp::Write, 64 * 1024, 4 * MIB, 1);
    let mut t = pool.transaction();
    t.put("rows", b"k".to_vec(), b"value".to_vec());
    assert_eq!(t.commit().unwrap_err().kind(), ErrorKind::Io);
    assert_eq!(pool.app_get("rows", b"k").unwrap(), None);
    // The next flush commits the host's writes alone, and the rows never appear.
    let a = pattern(9, 10_000);
    v.write(0, &a, false).unwrap();
    pool.flush().unwrap();
    assert_eq!(pool.app_get("rows", b"k").unwrap(), None);
    drop(v);
    let reopened = reopen(&sp);
    assert_eq!(reopened.app_get("rows", b"k").unwrap(), None);
    let mut buf = vec![0u8; a.len()];
    reopened.export("v").unwrap().read(0, &mut buf).unwrap();
    assert_eq!(buf, a);
    assert_clean(&reopened);
}

/// A transaction of table rows dropped without a commit (a caller returning early on an
/// error) leaves nothing: before, dropping committed half of what it meant to write.
#[test]
fn a_transaction_of_rows_dropped_without_commit_writes_nothing() {
    let sp = sim_pool(&[16 * MIB], &small_config());
    let pool = &sp.pool;
    {
        let mut t = pool.transaction();
        t.put("rows", b"a".to_vec(), b"1".to_vec());
    }
    pool.flush().unwrap();
    assert_eq!(pool.app_get("rows", b"a").unwrap(), None);
    assert_eq!(reopen(&sp).app_get("rows", b"a").unwrap(), None);
}

/// Regression: fsck dropped the problems it had found when it then met a store error, so a
/// damaged superblock went unreported behind an I/O error. Reads fail from the `skip`th on;
/// whenever that stops fsck in its store check, the error names what it had found.
#[test]
fn fsck_reports_the_problems_it_found_along_with_a_store_error() {
    let mut reported = 0;
    for skip in 0..400u64 {
        let sp = pool_with_v(&[16 * MIB], MIB);
        let pool = &sp.pool;
        let v = pool.export("v").unwrap();
        for i in 0..32 {
            v.write(i * 8 * 4096, &pattern(i, 4096), false).unwrap();
        }
        pool.flush().unwrap();
        // What fsck finds: the device's second superblock copy is damaged.
        let copy1 = arca_store::layout::SUPERBLOCK_OFFSETS[1];
        sp.devices[0].corrupt(copy1 + 16, &[0xff; 8]);
        // A failed commit closes the store; the next commit reopens it with nothing cached, so
        // fsck's store check reads the device.
        v.write(4096, b"x", false).unwrap(); // allocates: the flush has a commit to make
        sp.devices[0].inject_range(FaultOp::Write, 64 * 1024, 4 * MIB, 1);
        assert!(pool.flush().is_err());
        sp.devices[0].clear_faults();
        sp.devices[0].inject(FaultOp::Read, skip, u64::MAX, libc::EIO);
        match pool.fsck() {
            Ok(report) => {
                assert!(!report.is_clean(), "the damaged copy is found");
                break;
            }
            Err(e) if e.to_string().contains("fsck reading the metadata store") => {
                assert!(e.to_string().contains("superblock copy"), "{e}");
                reported += 1;
            }
            // Stopped before it found anything (reopening the store, the commit).
            Err(_) => {}
        }
    }
    assert!(
        reported > 0,
        "no read failure stopped fsck in its store check"
    );
}
