//! Device I/O errors and running out of space: the request that met the error gets it, the
//! pool stays consistent and usable for everything else, nothing durable is lost.

use arca_store::ErrorKind;
use arca_store::sim::FaultOp;

use crate::util::*;

/// Data region of device 0 starts after the metadata region (4 MiB at 64 KiB, extent-aligned).
const DATA0: u64 = 64 * 1024 + 4 * MIB;

#[test]
fn read_error_is_reported_and_other_reads_work() {
    let (sp, v) = exported_v(&[16 * MIB], MIB);
    let a = write_pattern(&v, 0, 1, 8192);
    sp.pool.flush().unwrap();
    // The first extent allocated is extent 0 of device 0.
    sp.devices[0].inject_range(FaultOp::Read, DATA0, 4096, 1);
    let err = v.read(0, &mut [0u8; 8192]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("sim0"), "names the device: {err}");
    assert_eq!(read_at(&v, 4096, 4096), a[4096..]);
    assert_eq!(read_at(&v, 0, 8192), a);
    assert_clean(&sp.pool);
}

#[test]
fn write_error_leaves_map_unchanged_and_returns_extents() {
    let (sp, v) = exported_v(&[16 * MIB], MIB);
    let pool = &sp.pool;
    let a = write_pattern(&v, 0, 2, 4096);
    pool.create_snapshot("v", "s").unwrap();
    let used = pool.status().used_bytes;
    // A copy-on-write that fails: the new extent is released, the volume still reads `a`.
    sp.devices[0].inject(FaultOp::Write, 0, 1, libc::EIO);
    let err = v.write(100, b"new", false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(read_at(&v, 0, 4096), a);
    pool.flush().unwrap();
    assert_eq!(pool.status().used_bytes, used);
    assert_clean(pool);
    // With the fault gone the same write works.
    v.write(100, b"new", false).unwrap();
    assert_eq!(&read_at(&v, 0, 4096)[100..103], b"new");
    assert_clean(pool);
}

#[test]
fn sync_error_fails_the_flush_and_a_retry_commits_everything() {
    let (sp, v) = exported_v(&[16 * MIB], MIB);
    let a = write_pattern(&v, 5000, 3, 20_000);
    v.trim(0, 4096, false).unwrap();
    sp.devices[0].inject(FaultOp::Sync, 0, 1, libc::EIO);
    assert_eq!(sp.pool.flush().unwrap_err().kind(), ErrorKind::Io);
    sp.pool.flush().unwrap();
    drop(v);
    assert_reopens_with(&sp, 5000, &a);
}

#[test]
fn metadata_write_error_mid_commit_recovers_on_retry() {
    let (sp, v) = exported_v(&[16 * MIB], MIB);
    let pool = &sp.pool;
    write_pattern(&v, 0, 4, 8192);
    pool.flush().unwrap();
    let after = write_pattern(&v, 8192, 5, 30_000);
    // Data is written already; the next writes are the metadata store's pages.
    sp.devices[0].inject_range(FaultOp::Write, 64 * 1024, 4 * MIB, 1);
    let err = pool.flush().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    // The pool still serves reads and writes, and the next flush commits.
    assert_eq!(read_at(&v, 8192, 30_000), after);
    pool.flush().unwrap();
    assert_clean(pool);
    drop(v);
    assert_reopens_with(&sp, 8192, &after);
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
    let keep = write_pattern(&other, 0, 6, 4096);
    write_pattern(&big, 0, 7, (MIB - 4096) as usize);
    assert_eq!(pool.status().free_bytes, 0);
    // All or nothing: a write needing 2 extents with none free changes nothing.
    let err = big.write(MIB, &[9u8; 8192], false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSpace);
    assert!(err.to_string().contains("no space"), "{err}");
    assert!(!big.block_status(MIB, 8192).unwrap()[0].allocated);
    // Overwriting allocated space still works, and so does everything else.
    big.write(0, &[1u8; 4096], false).unwrap();
    assert_eq!(read_at(&other, 0, 4096), keep);
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
    let (sp, v) = exported_v(&[16 * MIB], MIB);
    let pool = &sp.pool;
    sp.devices[0].inject_range(FaultOp::Write, 64 * 1024, 4 * MIB, 1);
    let mut t = pool.transaction();
    t.put("rows", b"k".to_vec(), b"value".to_vec());
    assert_eq!(t.commit().unwrap_err().kind(), ErrorKind::Io);
    assert_eq!(pool.app_get("rows", b"k").unwrap(), None);
    // The next flush commits the host's writes alone, and the rows never appear.
    let a = write_pattern(&v, 0, 9, 10_000);
    pool.flush().unwrap();
    assert_eq!(pool.app_get("rows", b"k").unwrap(), None);
    drop(v);
    let reopened = assert_reopens_with(&sp, 0, &a);
    assert_eq!(reopened.app_get("rows", b"k").unwrap(), None);
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
        let (sp, v) = exported_v(&[16 * MIB], MIB);
        let pool = &sp.pool;
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
