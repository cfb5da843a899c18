//! A policy's copy calendar on a simulated clock: copies into a directory vault, the vault
//! prune and its protections, and the safety rule that keeps backups not yet copied while
//! the vault cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use arca_backup::policy::{Keep, PolicySpec, RunResult, Step};
use arca_backup::{BackupId, BackupRecord, Event, Policies, Status};
use arca_store::ErrorKind;

use crate::policies::dir_vault;
use crate::util::*;

const HOUR_MS: u64 = 3_600_000;

fn open(r: &Rig) -> Arc<Policies> {
    Policies::open(r.backups.clone()).unwrap()
}

/// Hourly snapshots keeping the last `keep_last`, copied to vault `off` on `copy`.
fn copying(keep_last: u32, copy: &str, vault_keep: Keep) -> PolicySpec {
    PolicySpec {
        volumes: Some(vec!["db".into()]),
        snapshot: Some(Some("hourly".into())),
        keep: Some(Keep {
            last: Some(keep_last),
            ..Keep::default()
        }),
        copy_to: Some(Some("off".into())),
        copy: Some(Some(copy.into())),
        vault_keep: Some(vault_keep),
        ..PolicySpec::default()
    }
}

/// Runs every hourly slot up to `hour` (one tick per hour, with a write before each).
fn run_to(r: &Rig, p: &Arc<Policies>, hour: u64) {
    while r.now_ms.load(std::sync::atomic::Ordering::SeqCst) < EPOCH_MS + hour * HOUR_MS {
        r.advance(HOUR_MS);
        let h = (r.now_ms.load(std::sync::atomic::Ordering::SeqCst) - EPOCH_MS) / HOUR_MS;
        r.write("db", (h % 16) * ES, &pattern(h, 512));
        p.tick().unwrap();
        assert!(p.wait_idle(Duration::from_secs(60)));
        r.wait_all();
    }
}

fn own(r: &Rig) -> Vec<BackupRecord> {
    let mut v = r
        .backups
        .list(&arca_backup::catalog::Query {
            status: Some(Status::Complete),
            limit: 10_000,
            ..Default::default()
        })
        .unwrap();
    v.retain(|b| b.info.program.as_deref() == Some("arca-policy/p"));
    v.sort_by_key(|b| b.id);
    v
}

fn hour_of(b: &BackupRecord) -> u64 {
    (b.point_in_time_ms - EPOCH_MS) / HOUR_MS
}

/// Hours of the backups with an image on the array, and of those with a copy in `off`.
fn where_(r: &Rig) -> (Vec<u64>, Vec<u64>) {
    let all = own(r);
    let array = all.iter().filter(|b| b.on_array()).map(hour_of).collect();
    let vault = all
        .iter()
        .filter(|b| b.vault_copies.iter().any(|c| c.vault == "off"))
        .map(hour_of)
        .collect();
    (array, vault)
}

fn ids_at(r: &Rig, hours: std::ops::RangeInclusive<u64>) -> String {
    let ids: Vec<String> = own(r)
        .iter()
        .filter(|b| hours.contains(&hour_of(b)))
        .map(|b| b.id.to_string())
        .collect();
    ids.join(", ")
}

#[test]
fn backups_not_yet_copied_stay_on_the_array_while_the_vault_is_unreachable() {
    let r = rig_with(&[64 * MIB], &[("db", 16, None)]);
    let dir = tempfile::tempdir().unwrap();
    let (place, away) = (dir.path().join("off"), dir.path().join("away"));
    dir_vault(&r, "off", &place);
    let p = open(&r);
    let vault_keep = Keep {
        last: Some(100),
        ..Keep::default()
    };
    p.create("p", copying(2, "daily", vault_keep)).unwrap();
    run_to(&r, &p, 24);
    assert_eq!(where_(&r), (vec![23, 24], vec![23, 24]));
    // The vault's directory goes away: the copied backups are pruned as usual, the others
    // stay, and the prune says why.
    std::fs::rename(&place, &away).unwrap();
    run_to(&r, &p, 30);
    assert_eq!(where_(&r), ((25..=30).collect(), vec![23, 24]));
    let h = p.history("p", 1).unwrap();
    assert_eq!(h[0].result, RunResult::Succeeded);
    let prune = &h[0].steps[1];
    assert_eq!(prune.step, Step::Prune);
    assert!(
        prune.summary.starts_with(&format!(
            "removed 0, kept 6 (keep-last 2); kept 4 not yet copied (vault off cannot be \
             reached: vault off: no vault at file://{}",
            place.display()
        )),
        "{}",
        prune.summary
    );
    assert!(
        prune
            .summary
            .ends_with(&format!("): {}", ids_at(&r, 25..=28))),
        "{}",
        prune.summary
    );
    // The copy slot fails, saying why; nothing was written where the vault was.
    run_to(&r, &p, 48);
    let h = p.history("p", 1).unwrap();
    assert_eq!(h[0].result, RunResult::Failed);
    assert!(
        h[0].reason
            .as_deref()
            .unwrap()
            .starts_with("copy failed: vault off cannot be reached"),
        "{:?}",
        h[0].reason
    );
    assert!(!place.exists());
    assert_eq!(where_(&r).0, (25..=48).collect::<Vec<_>>());
    // The vault is back, but its last copy failed: still kept until a copy succeeds.
    std::fs::rename(&away, &place).unwrap();
    run_to(&r, &p, 49);
    let h = p.history("p", 1).unwrap();
    assert_eq!(h[0].result, RunResult::Succeeded);
    assert!(
        h[0].steps[1]
            .summary
            .contains("not yet copied (the last copy to vault off, at "),
        "{}",
        h[0].steps[1].summary
    );
    assert_eq!(where_(&r).0, (25..=49).collect::<Vec<_>>());
    // A copy now takes all of them; the next prune gives up their array images.
    let job = p.run_now("p", Some(Step::Copy)).unwrap();
    assert!(p.wait_idle(Duration::from_secs(60)));
    r.wait_all();
    assert!(r.wait_ok(job).is_some());
    assert_eq!(where_(&r).1, (23..=49).collect::<Vec<_>>());
    run_to(&r, &p, 50);
    assert_eq!(where_(&r), (vec![49, 50], (23..=49).collect()));
    r.assert_clean();
}

#[test]
fn the_vault_prune_removes_copies_by_its_own_rules_and_keeps_held_ones() {
    let r = rig_with(&[64 * MIB], &[("db", 16, None)]);
    let dir = tempfile::tempdir().unwrap();
    dir_vault(&r, "off", &dir.path().join("off"));
    let p = open(&r);
    let vault_keep = Keep {
        last: Some(1),
        ..Keep::default()
    };
    p.create("p", copying(5, "hourly", vault_keep)).unwrap();
    run_to(&r, &p, 1);
    let first = own(&r)[0].id;
    r.backups.hold(first, true).unwrap();
    run_to(&r, &p, 3);
    // The array keeps its five; the vault its newest and the held one.
    assert_eq!(where_(&r), (vec![1, 2, 3], vec![1, 3]));
    let h = p.history("p", 1).unwrap();
    assert_eq!(
        h[0].planned,
        [Step::Snapshot, Step::Prune, Step::Copy, Step::VaultPrune]
    );
    let second: BackupId = h[0].steps[3].backups[0];
    assert_eq!(
        h[0].steps[3].summary,
        format!(
            "vault off: copies removed 1 ({second}), kept 2 (hold 1, keep-last 1); kept for a \
             protection: {first} (hold)"
        )
    );
    // The removed copy went as `backup delete` removes one: its manifest, then its entry.
    let b = r.backups.get(second).unwrap();
    assert_eq!(b.status, Status::Complete);
    assert!(b.on_array() && b.vault_copies.is_empty());
    assert!(b.history.iter().any(|e| e.event
        == Event::VaultCopyForgotten {
            vault: "off".into()
        }));
    let mut listed = r
        .backups
        .open_vault("off")
        .unwrap()
        .list_manifests()
        .unwrap();
    listed.sort();
    assert_eq!(listed, [first.get(), own(&r)[2].id.get()]);
    // It is not copied again at the next slot.
    run_to(&r, &p, 4);
    assert_eq!(where_(&r), (vec![1, 2, 3, 4], vec![1, 4]));
    // A copy whose backup has left the array goes with its last copy.
    r.backups
        .delete_with(
            own(&r)[3].id,
            arca_backup::DeleteOptions {
                force: false,
                keep_vault_copies: true,
            },
        )
        .unwrap();
    run_to(&r, &p, 5);
    assert_eq!(where_(&r), (vec![1, 2, 3, 5], vec![1, 5]));
    let gone = r
        .backups
        .list(&arca_backup::catalog::Query {
            status: Some(Status::Deleted),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(gone.iter().map(hour_of).collect::<Vec<_>>(), [4]);
    assert!(
        r.backups
            .delete_vault_copy(first, "elsewhere")
            .unwrap_err()
            .to_string()
            .contains("no copy in vault elsewhere")
    );
    assert_eq!(
        r.backups
            .delete_vault_copy(first, "off")
            .unwrap_err()
            .kind(),
        ErrorKind::Busy,
        "held"
    );
}

#[test]
fn copy_settings_are_checked_and_removed_whole() {
    let r = rig_with(&[64 * MIB], &[("db", 16, None)]);
    let dir = tempfile::tempdir().unwrap();
    let p = open(&r);
    let e = p
        .create("p", copying(2, "daily", Keep::default()))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("cannot copy to vault off"), "{e}");
    dir_vault(&r, "off", &dir.path().join("off"));
    let mut half = copying(2, "daily", Keep::default());
    half.copy = None;
    let e = p.create("p", half).unwrap_err();
    assert!(e.to_string().contains("needs a copy calendar"), "{e}");
    p.create("p", copying(2, "daily", Keep::default())).unwrap();
    let e = p.run_now("p", Some(Step::VaultPrune)).unwrap_err();
    assert!(e.to_string().contains("no vault keep rule"), "{e}");
    let (rec, _) = p.get("p").unwrap();
    assert_eq!(rec.copy.as_deref(), Some("daily"));
    let next = p.next_runs("p", 1).unwrap();
    assert_eq!(next.len(), 2, "the snapshot and the copy calendar");
    p.update(
        "p",
        PolicySpec {
            copy: Some(Some("none".into())),
            ..PolicySpec::default()
        },
    )
    .unwrap();
    let (rec, state) = p.get("p").unwrap();
    assert_eq!((rec.copy_to, rec.copy), (None, None));
    assert!(!state.tracks.contains_key(&arca_backup::policy::Track::Copy));
}
