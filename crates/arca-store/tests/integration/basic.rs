//! Volumes, snapshots and clones through the public API, with contents and accounting.

use arca_store::{ErrorKind, StatusRun};

use crate::util::*;

#[test]
fn write_read_snapshot_clone_and_reopen() {
    let (sp, v) = exported_v(&[32 * MIB], MIB);
    let pool = &sp.pool;
    let a = write_pattern(&v, 1000, 1, 10_000);
    assert_eq!(read_at(&v, 1000, 10_000), a);
    // Unwritten space reads as zeros.
    let mut z = vec![1u8; 5000];
    v.read(500_000, &mut z).unwrap();
    assert!(z.iter().all(|&b| b == 0));

    pool.create_snapshot("v", "s1").unwrap();
    let b = pattern(2, 4096);
    v.write(2000, &b, false).unwrap();
    let s1 = pool.export("v@s1").unwrap();
    let mut got = vec![0u8; 10_000];
    s1.read(1000, &mut got).unwrap();
    assert_eq!(got, a, "snapshot keeps the old data");
    assert_eq!(
        s1.write(0, b"x", false).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );

    pool.clone_snapshot("v", "s1", "c", None).unwrap();
    let c = pool.export("c").unwrap();
    c.read(1000, &mut got).unwrap();
    assert_eq!(got, a, "clone starts as the snapshot");
    c.write(1000, &b, false).unwrap();
    s1.read(1000, &mut got).unwrap();
    assert_eq!(got, a, "clone writes do not reach the snapshot");
    assert_eq!(
        pool.delete_snapshot("v", "s1").unwrap_err().kind(),
        ErrorKind::Busy
    );
    assert_clean(pool);
    pool.flush().unwrap();
    drop(v);
    drop(s1);
    drop(c);

    let pool2 = reopen(&sp);
    let c = pool2.export("c").unwrap();
    c.read(1000, &mut got).unwrap();
    assert_eq!(&got[..4096], &b[..]);
    assert_eq!(&got[4096..], &a[4096..]);
    assert_eq!(pool2.volumes().len(), 2);
    assert_clean(&pool2);
}

#[test]
fn trim_makes_holes_and_frees_space() {
    let (sp, v) = exported_v(&[32 * MIB], MIB);
    let pool = &sp.pool;
    write_pattern(&v, 0, 3, 65536);
    let used = pool.status().used_bytes;
    assert_eq!(used, 65536);
    assert_eq!(
        v.block_status(0, 131072).unwrap(),
        vec![
            StatusRun {
                length: 65536,
                allocated: true
            },
            StatusRun {
                length: 65536,
                allocated: false
            }
        ]
    );
    v.trim(4096, 8192, false).unwrap();
    let mut buf = vec![1u8; 8192];
    v.read(4096, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    // Freed extents are reusable only after the commit that frees them.
    assert_eq!(pool.status().used_bytes, 65536);
    pool.flush().unwrap();
    assert_eq!(pool.status().used_bytes, 65536 - 8192);
    assert_eq!(pool.volume("v").unwrap().referenced_bytes, 65536 - 8192);
    assert_clean(pool);
}

#[test]
fn placement_uses_the_chosen_device_then_spills_over() {
    let sp = sim_pool(&[16 * MIB, 5 * MIB], &small_config());
    let pool = &sp.pool;
    let on1 = pool.status().devices[1].capacity_bytes;
    pool.create_volume("v", 16 * MIB, Some(1)).unwrap();
    let v = pool.export("v").unwrap();
    v.write(0, &pattern(9, 65536), false).unwrap();
    let st = pool.status();
    assert_eq!(st.devices[0].used_bytes, 0);
    assert_eq!(st.devices[1].used_bytes, 65536);
    // Past device 1's room the volume's extents come from device 0.
    v.write(0, &pattern(10, (on1 + 8192) as usize), false)
        .unwrap();
    let st = pool.status();
    assert_eq!(st.devices[1].free_bytes, 0);
    assert_eq!(st.devices[0].used_bytes, 8192);
    assert_eq!(st.used_bytes, on1 + 8192);
    let len = (on1 + 8192) as usize;
    assert!(read_at(&v, 0, len) == pattern(10, len));
    assert_clean(pool);
}

/// Regression: maps and checks once cost the volume's size; a write at the end of a 1 PiB
/// volume must cost one chunk, and fsck must finish.
#[test]
fn huge_thin_volume_costs_what_is_mapped() {
    let sp = sim_pool(&[16 * MIB], &small_config());
    let pool = &sp.pool;
    let size = arca_store::VOLUME_SIZE_MAX;
    pool.create_volume("huge", size, None).unwrap();
    let v = pool.export("huge").unwrap();
    v.write(size - 4096, &pattern(11, 4096), false).unwrap();
    v.write(0, &pattern(12, 4096), false).unwrap();
    pool.create_snapshot("huge", "s").unwrap();
    pool.clone_snapshot("huge", "s", "c", None).unwrap();
    let (bytes, entries) = pool.map_memory();
    assert_eq!(entries, 2);
    assert!(bytes < 16 * 1024, "{bytes} bytes of maps for 2 extents");
    assert_eq!(pool.volume("c").unwrap().referenced_bytes, 8192);
    assert_clean(pool);
    let c = pool.export("c").unwrap();
    assert_eq!(read_at(&c, size - 4096, 4096), pattern(11, 4096));
}

#[test]
fn device_files_are_created_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |name: &str| {
        let meta = std::fs::metadata(dir.path().join(name)).unwrap();
        meta.permissions().mode() & 0o7777
    };
    // Under the loosest umask, nothing but the mode asked for limits a new file. The umask is
    // the process's: only this test changes it, and other tests' files are merely looser
    // meanwhile.
    // SAFETY: umask(2) has no memory-safety preconditions.
    let old = unsafe { libc::umask(0) };
    let made = arca_store::FileDevice::create(&dir.path().join("a.img"), MIB);
    let pool =
        arca_store::Pool::create_files(&[&dir.path().join("b.img")], 32 * MIB, &small_config());
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    drop(made.unwrap());
    pool.unwrap().close().unwrap();
    assert_eq!(mode("a.img"), 0o600);
    assert_eq!(mode("b.img"), 0o600);
}
