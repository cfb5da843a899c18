//! Deletion under holds, keep-until and locks; prune against a scripted calendar.

use arca_backup::catalog::Query;
use arca_backup::retention::Policy;
use arca_backup::{CreateRequest, HostInfo, PruneRequest, Retention, Status};
use arca_store::ErrorKind;

use crate::util::*;

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

#[test]
fn deletion_is_refused_under_each_protection_with_the_reason() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    let make = |retention: Retention| {
        let c = r
            .backups
            .create(CreateRequest {
                volumes: vec!["v".into()],
                retention,
                ..CreateRequest::default()
            })
            .unwrap();
        c.records[0].id
    };
    let held = make(Retention {
        hold: true,
        ..Retention::default()
    });
    let kept = make(Retention {
        keep_until_ms: Some(EPOCH_MS + DAY),
        ..Retention::default()
    });
    let locked = make(Retention {
        lock_until_ms: Some(EPOCH_MS + 2 * DAY),
        ..Retention::default()
    });
    let e = r.backups.delete(held, true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert!(e.to_string().contains("hold"), "{e}");
    let e = r.backups.delete(kept, false).unwrap_err();
    assert!(
        e.to_string().contains("kept until 2026-01-02T00:00:00Z"),
        "{e}"
    );
    let e = r.backups.delete(locked, true).unwrap_err();
    assert!(
        e.to_string().contains("locked until 2026-01-03T00:00:00Z"),
        "force does not override a lock: {e}"
    );
    // A lock is only ever extended.
    let e = r
        .backups
        .retain(locked, None, Some(EPOCH_MS + DAY))
        .unwrap_err();
    assert!(e.to_string().contains("only be extended"), "{e}");
    r.backups
        .retain(locked, None, Some(EPOCH_MS + 3 * DAY))
        .unwrap();
    // Releasing, forcing and time passing lift them.
    r.backups.hold(held, false).unwrap();
    r.backups.delete(held, false).unwrap();
    r.backups.delete(kept, true).unwrap();
    r.advance(3 * DAY - HOUR);
    let e = r.backups.delete(locked, false).unwrap_err();
    assert!(e.to_string().contains("2026-01-04"), "{e}");
    r.advance(HOUR);
    r.backups.delete(locked, false).unwrap();
    for id in [held, kept, locked] {
        assert_eq!(r.backups.get(id).unwrap().status, Status::Deleted);
    }
    assert_eq!(
        r.backups.delete(held, false).unwrap_err().kind(),
        ErrorKind::Busy
    );
    assert!(
        r.pool.snapshots("v").unwrap().is_empty(),
        "the destinations are gone"
    );
    r.assert_clean();
}

/// Four backups a day for 40 days, each after overwriting some data; the policy keeps the last 2,
/// 7 daily, 4 weekly and 2 monthly. The dry run and the real run agree, the real run frees
/// exactly the bytes announced, and other volumes and labels are untouched.
#[test]
fn prune_against_a_scripted_calendar() {
    let r = rig_with(&[32 * MIB], &[("v", 256, None), ("other", 16, None)]);
    let mut ids = Vec::new();
    let mut times = Vec::new();
    for day in 0..40u64 {
        for slot in 0..4u64 {
            let n = day * 4 + slot;
            // Overwrites, so that snapshots hold extents the volume no longer has.
            r.write("v", (n % 4) * ES, &pattern(n, 2048));
            let id = r.snapshot_backup("v", Some("auto"));
            ids.push(id);
            times.push(r.backups.now_ms());
            if slot == 0 && day % 10 == 0 {
                r.snapshot_backup("v", Some("manual"));
                r.snapshot_backup("other", Some("auto"));
            }
            r.advance(6 * HOUR);
        }
    }
    let policy = Policy {
        keep_last: Some(2),
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_monthly: Some(2),
        keep_newest_verified: true,
        ..Policy::default()
    };
    let req = PruneRequest {
        volume: "v".into(),
        label: Some("auto".into()),
        policy: policy.clone(),
        dry_run: true,
    };
    let dry = r.backups.prune(&req).unwrap();
    assert_eq!(dry.items.len(), 160);
    // Expected by hand: days start at 2026-01-01 (a Thursday). The newest backup is day 39
    // slot 3 (2026-02-09T18:00Z). Kept: the last 2; the newest of each of the last 7 days
    // (days 33..=39); the newest of each of the last 4 ISO weeks (weeks end on Sundays:
    // days 38 (Feb 8), 31 (Feb 1), 24 (Jan 25) and the current week's newest, day 39); the
    // newest of February (day 39) and of January (day 30).
    let newest_of_day = |d: u64| ids[(d * 4 + 3) as usize];
    let mut want: Vec<arca_backup::BackupId> = vec![ids[159], ids[158]];
    want.extend((33..=39).map(newest_of_day));
    want.extend([39, 38, 31, 24].map(newest_of_day));
    want.extend([39, 30].map(newest_of_day));
    want.sort_unstable();
    want.dedup();
    let mut kept: Vec<arca_backup::BackupId> = dry
        .items
        .iter()
        .filter(|i| i.keep)
        .map(|i| i.backup)
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, want);
    let day30 = dry
        .items
        .iter()
        .find(|i| i.backup == newest_of_day(30))
        .unwrap();
    assert_eq!(day30.reasons, vec!["keep-monthly 2026-01".to_string()]);
    assert!(
        dry.items
            .iter()
            .filter(|i| !i.keep)
            .all(|i| i.reasons.is_empty())
    );
    assert_eq!(dry.removed, 160 - want.len());
    assert!(dry.freed_bytes > 0);
    // The dry run removed nothing.
    let live = |label: &str, volume: &str| {
        let vid = r.pool.volume(volume).unwrap().id;
        r.backups
            .list(&Query {
                volume_id: Some(vid),
                label: Some(label.into()),
                status: Some(Status::Complete),
                limit: 1000,
                ..Query::default()
            })
            .unwrap()
            .len()
    };
    assert_eq!(live("auto", "v"), 160);
    r.pool.flush().unwrap();
    let used = r.pool.status().used_bytes;
    let real = r
        .backups
        .prune(&PruneRequest {
            dry_run: false,
            ..req
        })
        .unwrap();
    assert_eq!(real.freed_bytes, dry.freed_bytes);
    assert!(real.items.iter().all(|i| i.error.is_none()));
    r.pool.flush().unwrap();
    assert_eq!(
        used - r.pool.status().used_bytes,
        real.freed_bytes,
        "freed exactly as announced"
    );
    assert_eq!(live("auto", "v"), want.len());
    assert_eq!(live("manual", "v"), 4, "another label is untouched");
    assert_eq!(live("auto", "other"), 4, "another volume is untouched");
    let _ = times;
    r.assert_clean();
}

#[test]
fn prune_keeps_protected_and_newest_verified_backups() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let c = r.create_ok(CreateRequest {
            volumes: vec!["v".into()],
            info: HostInfo::default(),
            retention: Retention {
                hold: i == 0,
                ..Retention::default()
            },
            ..CreateRequest::default()
        });
        ids.push(c.records[0].id);
        r.advance(DAY);
    }
    // Only backup 1 was ever verified good.
    let (job, _) = r.backups.verify(&[ids[1]], false).unwrap();
    r.wait_ok(job);
    let report = r
        .backups
        .prune(&PruneRequest {
            volume: "v".into(),
            label: None,
            policy: Policy {
                keep_last: Some(1),
                keep_newest_verified: true,
                ..Policy::default()
            },
            dry_run: false,
        })
        .unwrap();
    let reasons = |id: arca_backup::BackupId| {
        report
            .items
            .iter()
            .find(|i| i.backup == id)
            .unwrap()
            .reasons
            .clone()
    };
    assert_eq!(reasons(ids[0]), vec!["hold".to_string()]);
    assert_eq!(reasons(ids[1]), vec!["newest verified backup".to_string()]);
    assert_eq!(reasons(ids[4]), vec!["keep-last #1".to_string()]);
    assert!(reasons(ids[2]).is_empty() && reasons(ids[3]).is_empty());
    assert_eq!(r.backups.get(ids[2]).unwrap().status, Status::Deleted);
    // No rule at all is refused.
    let e = r
        .backups
        .prune(&PruneRequest {
            volume: "v".into(),
            policy: Policy::default(),
            ..PruneRequest::default()
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    r.assert_clean();
}

/// A clock that ran a day ahead, then was corrected: the backup taken after the correction has
/// the earlier point in time but is the newest (higher generation, higher id). Prune keeps it,
/// its record says the clock stepped back, and time-range queries still find it.
#[test]
fn prune_after_the_clock_steps_back_keeps_the_newest_generation() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    r.write("v", 0, &[0x11; 4096]);
    let first = r.snapshot_backup("v", None);
    r.advance(DAY);
    r.write("v", 0, &[0x22; 4096]);
    let ahead = r.snapshot_backup("v", None);
    // Corrected: back to an hour after the first backup.
    r.now_ms
        .store(EPOCH_MS + HOUR, std::sync::atomic::Ordering::SeqCst);
    r.write("v", 0, &[0x33; 4096]);
    let newest = r.snapshot_backup("v", None);

    let (a, n) = (
        r.backups.get(ahead).unwrap(),
        r.backups.get(newest).unwrap(),
    );
    assert!(newest > ahead, "ids only grow");
    assert_eq!(n.generation, a.generation + 1);
    assert!(n.point_in_time_ms < a.point_in_time_ms);
    assert_eq!(n.point_in_time_ms, EPOCH_MS + HOUR);
    assert_eq!(
        n.started_ms,
        EPOCH_MS + HOUR,
        "the clock's time, not the id's"
    );
    assert_eq!(n.stepped_back_from_ms, Some(a.point_in_time_ms));
    assert_eq!(a.stepped_back_from_ms, None);
    assert_eq!(r.backups.get(first).unwrap().stepped_back_from_ms, None);

    // A time range ending at its point in time finds it, though its id is a day later.
    let until = r
        .backups
        .list(&Query {
            until_ms: Some(EPOCH_MS + HOUR),
            limit: 10,
            ..Query::default()
        })
        .unwrap();
    let ids: Vec<arca_backup::BackupId> = until.iter().map(|b| b.id).collect();
    assert_eq!(ids, vec![newest, first]);

    let report = r
        .backups
        .prune(&PruneRequest {
            volume: "v".into(),
            policy: Policy {
                keep_last: Some(1),
                ..Policy::default()
            },
            ..PruneRequest::default()
        })
        .unwrap();
    let kept: Vec<arca_backup::BackupId> = report
        .items
        .iter()
        .filter(|i| i.keep)
        .map(|i| i.backup)
        .collect();
    assert_eq!(kept, vec![newest], "{:#?}", report.items);
    assert_eq!(report.removed, 2);
    assert_eq!(r.backups.get(ahead).unwrap().status, Status::Deleted);
    assert_eq!(r.backups.get(newest).unwrap().status, Status::Complete);
    let image = r.read(&format!("v@backup-{newest}"), 0, 4096);
    assert!(image == [0x33; 4096], "the newest data survives");
    r.assert_clean();
}

/// Ids keep growing across a restart with the clock moved back, even after a rebuild that
/// did not read the old catalog dropped the records of the newest ids.
#[test]
fn ids_stay_above_every_id_given_after_a_rebuild_and_a_restart() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    r.advance(DAY);
    let gone = r.snapshot_backup("v", None);
    r.backups.delete(gone, false).unwrap();
    // Only the descriptors count: the deleted backup's record goes.
    r.backups.rebuild(true).unwrap();
    assert!(r.backups.get(gone).is_err());
    r.pool.flush().unwrap();
    r.now_ms
        .store(EPOCH_MS, std::sync::atomic::Ordering::SeqCst);
    let r2 = r.reopen_on(r.devices.clone());
    let next = r2.snapshot_backup("v", None);
    assert!(next > gone, "{next} after {gone}");
    r2.assert_clean();
}

/// Besides deletion, prune and a pair resync (which consume only through the deletion rule),
/// nothing overwrites a live backup's image: an in-place restore into its destination and a
/// copy into it are refused naming it, and a rebuild from the descriptors keeps its hold and
/// lock, so the rule still refuses afterwards.
#[test]
fn no_other_path_overwrites_a_held_and_locked_backup() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None), ("lent", 16, None)]);
    r.write("v", 0, &[0x44; 4096]);
    let retention = Retention {
        hold: true,
        lock_until_ms: Some(EPOCH_MS + 365 * DAY),
        ..Retention::default()
    };
    let c = r.create_ok(CreateRequest {
        volumes: vec!["v".into()],
        to: Some("lent".into()),
        retention: retention.clone(),
        ..CreateRequest::default()
    });
    let id = c.records[0].id;
    let snap = r.snapshot_backup("v", None);
    r.write("v", 0, &[0x45; 4096]);

    let e = r
        .backups
        .restore(snap, in_place(Some("lent"), true))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert!(e.to_string().contains(&format!("holds backup {id}")), "{e}");
    let e = r.backups.create(to_request("v", "lent")).unwrap_err();
    assert!(e.to_string().contains(&format!("holds backup {id}")), "{e}");

    r.backups.rebuild(true).unwrap();
    let after = r.backups.get(id).unwrap();
    assert_eq!(after.status, Status::Complete);
    assert_eq!(after.retention, retention);
    let e = r.backups.delete(id, true).unwrap_err();
    assert!(e.to_string().contains("on hold"), "{e}");
    assert!(
        r.read("lent", 0, 4096) == [0x44; 4096],
        "the image is intact"
    );
    r.assert_clean();
}

#[test]
fn a_prune_without_a_keep_rule_is_refused_even_with_nothing_to_prune() {
    // The rule lived only in the API: the service pruned a volume without backups (and a
    // label without backups) under a policy that would remove everything.
    let r = rig(&[64 * MIB]);
    r.pool.create_volume("v", MIB, None).unwrap();
    let e = r
        .backups
        .prune(&PruneRequest {
            volume: "v".into(),
            label: None,
            policy: Policy::default(),
            dry_run: true,
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("no keep rule"), "{e}");
}

#[test]
fn keep_for_counts_from_the_backups_clock_and_excludes_keep_until() {
    let r = rig(&[64 * MIB]);
    let day_ms = 86_400_000;
    assert_eq!(
        r.backups.keep_until(None, Some(day_ms)).unwrap(),
        Some(EPOCH_MS + day_ms)
    );
    r.advance(1000);
    assert_eq!(
        r.backups.keep_until(None, Some(day_ms)).unwrap(),
        Some(EPOCH_MS + 1000 + day_ms)
    );
    assert_eq!(r.backups.keep_until(Some(5), None).unwrap(), Some(5));
    assert_eq!(r.backups.keep_until(None, None).unwrap(), None);
    let both = r.backups.keep_until(Some(5), Some(day_ms)).unwrap_err();
    assert_eq!(both.kind(), ErrorKind::InvalidArgument);
    let past_9999 = r.backups.keep_until(None, Some(u64::MAX / 2)).unwrap_err();
    assert_eq!(past_9999.kind(), ErrorKind::InvalidArgument);
    assert!(past_9999.to_string().contains("9999"), "{past_9999}");
}

#[test]
fn default_snapshot_names_follow_the_time_and_never_collide() {
    let r = rig(&[64 * MIB]);
    r.pool.create_volume("v", MIB, None).unwrap();
    let at = 1_795_871_109_000; // 2026-11-28T13:05:09Z
    let name = arca_backup::volumes::default_snapshot_name(&r.pool, "v", at).unwrap();
    assert_eq!(name, "snap-20261128T130509Z");
    r.pool.create_snapshot("v", &name).unwrap();
    let second = arca_backup::volumes::default_snapshot_name(&r.pool, "v", at + 10).unwrap();
    assert_eq!(second, "snap-20261128T130509Z-2");
    let taken = arca_backup::volumes::create_snapshot(&r.pool, "v", None).unwrap();
    assert!(taken.name.starts_with("snap-"), "{}", taken.name);
}
