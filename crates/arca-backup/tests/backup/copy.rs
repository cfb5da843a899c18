//! Copy backups: point-in-time copies while the source is written, destinations, targets, and
//! a crash in the middle of a copy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arca_backup::{CreateRequest, Destination, Method, Status, TargetKind};
use arca_store::ErrorKind;
use arca_store::sim::CrashMode;

use crate::util::*;

const EXTENTS: u64 = 512;

fn stamp(n: u64) -> Vec<u8> {
    let mut b = pattern(n, ES as usize);
    b[..8].copy_from_slice(&n.to_le_bytes());
    b
}

/// The writer's n-th write goes to extent `(n * 7) % EXTENTS` with `stamp(n)`.
fn state_after(m: u64) -> Vec<u8> {
    let mut img = vec![0u8; (EXTENTS * ES) as usize];
    for n in 1..=m {
        let l = (n * 7) % EXTENTS;
        img[(l * ES) as usize..((l + 1) * ES) as usize].copy_from_slice(&stamp(n));
    }
    img
}

#[test]
fn copy_backup_equals_the_point_in_time_image_while_the_source_is_written() {
    let r = rig_with(&[24 * MIB, 24 * MIB], &[("src", EXTENTS, Some(0))]);
    // Half full before the backup, so there is data to copy and holes to skip.
    let e = r.pool.export("src").unwrap();
    let mut n = 0;
    while n < EXTENTS / 2 {
        n += 1;
        e.write(((n * 7) % EXTENTS) * ES, &stamp(n), false).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = n;
            while !stop.load(Ordering::SeqCst) && n < 20_000 {
                n += 1;
                e.write(((n * 7) % EXTENTS) * ES, &stamp(n), false).unwrap();
            }
            n
        })
    };
    let c = r.backups.create(copy_request("src")).unwrap();
    let rec = &c.records[0];
    // The answer comes once the job has started: it may even be done.
    match rec.status {
        Status::Copying => assert_eq!(rec.job, Some(c.jobs[0])),
        Status::Complete => assert_eq!(rec.job, None),
        s => panic!("unexpected status {s:?}"),
    }
    r.wait_ok(c.jobs[0]);
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    let rec = r.backups.get(rec.id).unwrap();
    assert_eq!(rec.status, Status::Complete);
    let Destination::Volume {
        volume,
        device,
        created,
        ..
    } = &rec.destination
    else {
        panic!("a volume destination");
    };
    assert!(created);
    assert_eq!(*device, Some(1), "another device than the source's");
    let copy = r.image(volume);
    let m = (0..EXTENTS)
        .map(|l| u64::from_le_bytes(copy[(l * ES) as usize..][..8].try_into().unwrap()))
        .max()
        .unwrap();
    assert!(m <= written);
    assert!(
        copy == state_after(m),
        "the copy is not the image after write {m}"
    );
    // The point-in-time snapshot is gone; the destination is read-only to hosts.
    assert!(r.pool.snapshots("src").unwrap().is_empty());
    let host = r.pool.export(volume).unwrap();
    assert!(host.read_only());
    assert_eq!(
        host.write(0, &[1; 512], false).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert_eq!(
        r.pool.delete_volume(volume, false).unwrap_err().kind(),
        ErrorKind::Busy
    );
    let (job, _) = r.backups.verify(&[rec.id], false).unwrap();
    let out = r.wait_ok(job).unwrap();
    assert!(out.contains("\"ok\":true"), "{out}");
    r.assert_clean();
}

#[test]
fn copy_into_a_given_volume_replaces_its_old_content() {
    let r = rig_with(&[24 * MIB], &[("src", 32, None), ("spare", 40, None)]);
    r.write("src", 5 * ES, &pattern(5, ES as usize));
    r.write("spare", 0, &pattern(7, 40 * ES as usize));
    let c = r.create_ok(to_request("src", "spare"));
    let rec = r.backups.get(c.records[0].id).unwrap();
    assert_eq!(rec.method, Method::Copy);
    assert_eq!(rec.status, Status::Complete);
    let mut want = vec![0u8; 40 * ES as usize];
    want[5 * ES as usize..6 * ES as usize].copy_from_slice(&pattern(5, ES as usize));
    assert!(
        r.image("spare") == want,
        "holes and the tail must read as zeros"
    );
    // The volume now holds a backup: not a destination for another one.
    let e = r.backups.create(to_request("src", "spare")).unwrap_err();
    assert!(e.to_string().contains(&rec.id.to_string()), "{e}");
    // Deleting the backup gives the volume back, free and writable.
    r.backups.delete(rec.id, false).unwrap();
    assert!(!r.pool.export("spare").unwrap().read_only());
    assert!(r.pool.volume("spare").unwrap().tag.is_none());
    r.assert_clean();
}

#[test]
fn targets_prefer_another_device_and_skip_busy_volumes() {
    let r = rig_with(
        &[24 * MIB, 24 * MIB],
        &[
            ("src", 16, Some(0)),
            ("far", 16, Some(1)),
            ("near", 16, Some(0)),
            ("small", 8, Some(1)),
            ("held", 16, Some(1)),
        ],
    );
    guard_volume(&r.pool, "held", arca_store::GuardOwner::Pair(9), "in use");
    let t = r.backups.targets("src").unwrap();
    let kinds: Vec<(TargetKind, Option<String>, Option<u32>)> = t
        .iter()
        .map(|x| (x.kind.clone(), x.volume.clone(), x.device))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (TargetKind::ExistingVolume, Some("far".into()), Some(1)),
            (TargetKind::NewVolume, None, Some(1)),
            (TargetKind::NewSnapshot, None, Some(0)),
            (TargetKind::ExistingVolume, Some("near".into()), Some(0)),
            (TargetKind::NewVolume, None, Some(0)),
        ]
    );
    assert!(t.iter().all(|x| !x.reason.is_empty()));
    assert_eq!(
        r.backups.targets("nope").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

/// Power fails at a random point of a copy: after the restart no record says complete unless
/// its copy is whole, interrupted ones say failed with the reason, and nothing is left behind.
#[test]
fn crash_during_a_copy_leaves_a_failed_record_and_no_debris() {
    for seed in 0..32u64 {
        let r = rig_with(
            &[24 * MIB, 24 * MIB],
            &[("src", 256, Some(0)), ("spare", 256, Some(1))],
        );
        r.write("src", 0, &pattern(seed, 200 * ES as usize));
        r.pool.flush().unwrap();
        r.power.fail_after(10 + seed);
        let to = (seed % 2 == 1).then(|| "spare".to_string());
        let created = r.backups.create(CreateRequest {
            volumes: vec!["src".into()],
            to: to.clone(),
            method: Some(Method::Copy),
            ..CreateRequest::default()
        });
        if let Ok(c) = &created {
            r.wait(c.jobs[0]);
        }
        let mode = if seed % 4 < 2 {
            CrashMode::LoseAll
        } else {
            CrashMode::RandomSubset(seed)
        };
        let devices = r.crash_devices(mode);
        let r2 = r.reopen_on(devices);
        let (records, bad) = arca_backup::catalog::all(&r2.pool).unwrap();
        assert!(bad.is_empty());
        for rec in &records {
            assert_ne!(rec.status, Status::Copying, "seed {seed}");
            match rec.status {
                Status::Complete => {
                    let Destination::Volume { volume, .. } = &rec.destination else {
                        panic!("seed {seed}: {rec:?}")
                    };
                    let img = r2.read(volume, 0, 200 * ES as usize);
                    assert!(
                        img == pattern(seed, 200 * ES as usize),
                        "seed {seed}: complete but not whole"
                    );
                }
                Status::Failed => {
                    assert!(
                        rec.status_reason.is_some(),
                        "seed {seed}: a failure needs its reason"
                    );
                }
                s => panic!("seed {seed}: unexpected status {s:?}"),
            }
        }
        // No point-in-time snapshot or half-made volume outlives a failed copy; a lent
        // volume is free again.
        let failed = records.iter().any(|x| x.status == Status::Failed);
        if failed {
            assert!(r2.pool.snapshots("src").unwrap().is_empty(), "seed {seed}");
            let vols: Vec<String> = r2.pool.volumes().into_iter().map(|v| v.name).collect();
            assert_eq!(
                vols,
                vec!["spare".to_string(), "src".to_string()],
                "seed {seed}"
            );
            assert!(!r2.pool.export("spare").unwrap().read_only(), "seed {seed}");
        }
        r2.assert_clean();
    }
}
