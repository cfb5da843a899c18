//! Snapshot backups: the record, the digest, verification, backup sets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arca_backup::catalog::Query;
use arca_backup::{CreateRequest, Destination, Event, HostInfo, Method, Status, Verification};
use arca_store::ErrorKind;

use crate::util::*;

#[test]
fn snapshot_backup_records_its_management_information() {
    let r = rig_with(&[24 * MIB], &[("db", 64, None)]);
    r.write("db", 0, &pattern(1, 3 * ES as usize));
    let info = HostInfo {
        program: Some("pg_backup".into()),
        host: Some("db1".into()),
        application: Some("postgres".into()),
        content_id: Some("lsn-0/16B3748".into()),
        label: Some("nightly".into()),
        description: Some("before the upgrade".into()),
        meta: BTreeMap::from([("ticket".to_string(), "OPS-12".to_string())]),
    };
    let c = r
        .backups
        .create(CreateRequest {
            volumes: vec!["db".into()],
            info: info.clone(),
            ..CreateRequest::default()
        })
        .unwrap();
    assert_eq!(c.records.len(), 1);
    let id = c.records[0].id;
    r.wait_ok(c.jobs[0]);
    let rec = r.backups.get(id).unwrap();
    assert_eq!(rec.method, Method::Snapshot);
    assert_eq!(rec.status, Status::Complete);
    assert_eq!(rec.generation, 1);
    assert_eq!(rec.source.volume_name, "db");
    assert_eq!(rec.source.size, 64 * ES);
    assert_eq!(rec.info, info);
    assert_eq!(rec.allocated_bytes, 3 * ES);
    assert_eq!(rec.point_in_time_ms, EPOCH_MS);
    assert!(rec.set_id.is_none());
    let digest = rec.digest.clone().expect("digest job finished");
    assert_eq!(digest.extents, 3);
    let Destination::Snapshot { volume, snapshot } = &rec.destination else {
        panic!("snapshot destination expected");
    };
    assert_eq!(volume, "db");
    // The image reads as the volume did; the destination is protected, naming the backup.
    r.write("db", 0, &[9; 512]);
    assert_eq!(
        r.read(&format!("db@{snapshot}"), 0, 3 * ES as usize),
        pattern(1, 3 * ES as usize)
    );
    let e = r.pool.delete_snapshot("db", snapshot).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert!(e.to_string().contains(&id.to_string()), "{e}");
    let e = r.pool.delete_volume("db", true).unwrap_err();
    assert!(e.to_string().contains(&id.to_string()), "{e}");
    // Generations count per volume.
    r.advance(1000);
    let second = r.snapshot_backup("db", None);
    assert_eq!(r.backups.get(second).unwrap().generation, 2);
    r.pool.create_volume("other", 8 * ES, None).unwrap();
    let third = r.snapshot_backup("other", None);
    assert_eq!(r.backups.get(third).unwrap().generation, 1);
    r.assert_clean();
}

fn verify(r: &Rig, id: arca_backup::BackupId) -> Verification {
    let (job, ids) = r.backups.verify(&[id], false).unwrap();
    assert_eq!(ids, vec![id]);
    let out = r.wait_ok(job).unwrap();
    let mut v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let v = v.remove(0);
    Verification {
        backup: arca_backup::BackupId(v["backup"].as_u64().unwrap()),
        ok: v["ok"].as_bool().unwrap(),
        damaged: v["damaged"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
            .collect(),
        damaged_bytes: v["damaged_bytes"].as_u64().unwrap(),
        unreadable_extents: v["unreadable_extents"].as_u64().unwrap(),
        error: v["error"].as_str().map(str::to_string),
    }
}

#[test]
fn verify_names_the_byte_ranges_corrupted_on_the_device() {
    let r = rig_with(&[24 * MIB], &[("v", 32, None)]);
    for l in [2u64, 3, 4, 10] {
        r.write("v", l * ES, &pattern(100 + l, ES as usize));
    }
    let id = r.snapshot_backup("v", None);
    let good = verify(&r, id);
    assert!(good.ok, "{good:?}");
    // Flip bytes in the device under extents 3, 4 and 10 of the image.
    r.pool.flush().unwrap();
    let dev = r.devices[0].snapshot_bytes();
    for l in [3u64, 4, 10] {
        let at = find(&dev, &pattern(100 + l, ES as usize)).expect("extent on the device");
        r.devices[0].corrupt((at + 100) as u64, &[0xEE; 3]);
    }
    let bad = verify(&r, id);
    assert!(!bad.ok);
    assert_eq!(bad.damaged, vec![(3 * ES, 2 * ES), (10 * ES, ES)]);
    assert_eq!(bad.damaged_bytes, 3 * ES);
    let rec = r.backups.get(id).unwrap();
    let results: Vec<bool> = rec
        .history
        .iter()
        .filter_map(|h| match &h.event {
            Event::Verified { ok, .. } => Some(*ok),
            _ => None,
        })
        .collect();
    assert_eq!(results, vec![true, false]);
    assert_eq!(rec.last_verified_ok(), Some(false));
}

#[test]
fn a_backup_set_is_taken_at_one_instant() {
    let r = rig(&[24 * MIB]);
    for v in ["a", "b", "c"] {
        r.pool.create_volume(v, 16 * ES, None).unwrap();
    }
    // One writer stamps the same sequence number into a, then b, then c. At one instant the
    // images satisfy a >= b >= c >= a - 1; snapshots taken one by one would not.
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let pool = r.pool.clone();
        let stop = stop.clone();
        let progress = progress.clone();
        std::thread::spawn(move || {
            let exports: Vec<_> = ["a", "b", "c"]
                .iter()
                .map(|v| pool.export(v).unwrap())
                .collect();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                for e in &exports {
                    e.write(0, &n.to_le_bytes(), false).unwrap();
                    // Time between the volumes' writes, so a non-atomic snapshot would fall
                    // between them.
                    std::thread::yield_now();
                }
                progress.store(n, Ordering::SeqCst);
            }
            n
        })
    };
    let mut sets = Vec::new();
    for _ in 0..20 {
        // Let the writer move on between sets, however loaded the machine.
        let seen = progress.load(Ordering::SeqCst);
        while progress.load(Ordering::SeqCst) < seen + 2 {
            std::thread::yield_now();
        }
        let c = r.create_ok(CreateRequest {
            volumes: vec!["a".into(), "b".into(), "c".into()],
            ..CreateRequest::default()
        });
        sets.push(c.records);
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(written > 20, "the writer ran");
    for records in &sets {
        let set = records[0].set_id.expect("a set id");
        assert!(records.iter().all(|x| x.set_id == Some(set)));
        let stamps: Vec<u64> = records
            .iter()
            .map(|x| {
                let Destination::Snapshot { volume, snapshot } = &x.destination else {
                    panic!()
                };
                u64::from_le_bytes(
                    r.read(&format!("{volume}@{snapshot}"), 0, 8)
                        .try_into()
                        .unwrap(),
                )
            })
            .collect();
        let (a, b, c) = (stamps[0], stamps[1], stamps[2]);
        assert!(
            a >= b && b >= c && c + 1 >= a,
            "not one instant: {stamps:?}"
        );
        let listed = r.set_members(set);
        assert_eq!(listed.len(), 3);
    }
    r.assert_clean();
}

#[test]
fn list_filters_by_every_field_and_pages() {
    let r = rig_with(&[24 * MIB], &[("a", 8, None), ("b", 8, None)]);
    let mut ids = Vec::new();
    for i in 0..12u64 {
        let volume = if i % 2 == 0 { "a" } else { "b" };
        let c = r
            .backups
            .create(CreateRequest {
                volumes: vec![volume.into()],
                info: HostInfo {
                    label: Some(if i % 3 == 0 { "daily" } else { "hourly" }.into()),
                    host: Some(format!("host{}", i % 4)),
                    application: Some(if i < 6 { "pg" } else { "mysql" }.into()),
                    meta: BTreeMap::from([("tier".to_string(), (i % 2).to_string())]),
                    ..HostInfo::default()
                },
                ..CreateRequest::default()
            })
            .unwrap();
        ids.push(c.records[0].id);
        r.advance(3_600_000);
    }
    let q = |q: Query| -> Vec<arca_backup::BackupId> {
        r.backups
            .list(&Query {
                limit: if q.limit == 0 { 100 } else { q.limit },
                ..q
            })
            .unwrap()
            .into_iter()
            .map(|x| x.id)
            .collect()
    };
    let pick = |f: &dyn Fn(u64) -> bool| -> Vec<arca_backup::BackupId> {
        (0..12u64)
            .rev()
            .filter(|&i| f(i))
            .map(|i| ids[i as usize])
            .collect()
    };
    let a = r.pool.volume("a").unwrap().id;
    assert_eq!(q(Query::default()), pick(&|_| true), "newest first");
    assert_eq!(
        q(Query {
            volume_id: Some(a),
            ..Query::default()
        }),
        pick(&|i| i % 2 == 0)
    );
    assert_eq!(
        q(Query {
            label: Some("daily".into()),
            ..Query::default()
        }),
        pick(&|i| i % 3 == 0)
    );
    assert_eq!(
        q(Query {
            host: Some("host1".into()),
            ..Query::default()
        }),
        pick(&|i| i % 4 == 1)
    );
    assert_eq!(
        q(Query {
            application: Some("mysql".into()),
            ..Query::default()
        }),
        pick(&|i| i >= 6)
    );
    assert_eq!(
        q(Query {
            meta: vec![("tier".into(), "1".into())],
            ..Query::default()
        }),
        pick(&|i| i % 2 == 1)
    );
    assert_eq!(
        q(Query {
            volume_id: Some(a),
            label: Some("daily".into()),
            application: Some("pg".into()),
            ..Query::default()
        }),
        pick(&|i| i % 2 == 0 && i % 3 == 0 && i < 6)
    );
    let hour = 3_600_000;
    assert_eq!(
        q(Query {
            since_ms: Some(EPOCH_MS + 3 * hour),
            until_ms: Some(EPOCH_MS + 7 * hour),
            ..Query::default()
        }),
        pick(&|i| (3..=7).contains(&i))
    );
    assert_eq!(
        q(Query {
            status: Some(Status::Failed),
            ..Query::default()
        }),
        Vec::<arca_backup::BackupId>::new()
    );
    assert_eq!(
        q(Query {
            status: Some(Status::Complete),
            ..Query::default()
        })
        .len(),
        12
    );
    // Pages of 5, each continuing below the last id of the previous one.
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = q(Query {
            limit: 5,
            before_id: before,
            ..Query::default()
        });
        if page.is_empty() {
            break;
        }
        before = page.last().copied();
        all.extend(page);
    }
    assert_eq!(all, pick(&|_| true));
}

#[test]
fn bad_requests_change_nothing() {
    let r = rig_with(&[24 * MIB], &[("v", 8, None)]);
    let bad = [
        CreateRequest::default(),
        CreateRequest {
            volumes: vec!["v".into(), "v".into()],
            ..CreateRequest::default()
        },
        CreateRequest {
            volumes: vec!["nope".into()],
            ..CreateRequest::default()
        },
        CreateRequest {
            volumes: vec!["v".into()],
            to: Some("v".into()),
            method: Some(Method::Snapshot),
            ..CreateRequest::default()
        },
        CreateRequest {
            volumes: vec!["v".into()],
            info: HostInfo {
                label: Some("x".repeat(1000)),
                ..HostInfo::default()
            },
            ..CreateRequest::default()
        },
        CreateRequest {
            volumes: vec!["v".into()],
            to: Some("v".into()),
            ..CreateRequest::default()
        },
    ];
    for req in bad {
        assert!(r.backups.create(req.clone()).is_err(), "{req:?} accepted");
    }
    assert!(
        r.backups
            .list(&Query {
                limit: 10,
                ..Query::default()
            })
            .unwrap()
            .is_empty()
    );
    assert!(r.pool.snapshots("v").unwrap().is_empty());
    assert_eq!(r.pool.volumes().len(), 1);
    assert_eq!(
        r.backups
            .get(arca_backup::BackupId(12345))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    r.assert_clean();
}

/// Regression: the map from backups to their digest jobs (which verify waits on) kept every
/// entry for the daemon's life.
#[test]
fn finished_digest_jobs_are_forgotten() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    r.write("v", 0, &pattern(1, (16 * ES) as usize));
    for _ in 0..20 {
        r.snapshot_backup("v", None);
    }
    // snapshot_backup waited for each digest job; the last ones end their bookkeeping as
    // their threads finish.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while r.backups.digests_running() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(r.backups.digests_running(), 0);
}
