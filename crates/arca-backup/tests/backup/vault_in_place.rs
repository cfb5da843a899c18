//! In-place restores from a vault onto a volume that still holds an earlier generation: only
//! what differs is fetched and written, under the protections of every in-place restore.

use arca_backup::{BackupId, DeleteOptions, Event, JobState, Method, RestoreTo, RestoredFrom};

use crate::util::*;
use crate::vault_wire::{EXTENTS, change, copied, copy, filled, snap, vault_req};

fn in_place(volume: Option<&str>) -> RestoreTo {
    RestoreTo::InPlace {
        volume: volume.map(str::to_string),
        force: false,
    }
}

/// Restores `id` in place from vault `dr`; returns the bytes rewritten and the undo point.
fn restore_in_place(r: &Rig, id: BackupId, volume: Option<&str>) -> (u64, BackupId) {
    let out = r
        .backups
        .restore_from(id, in_place(volume), Some("dr"))
        .unwrap();
    assert_eq!(out.undo_backups.len(), 1);
    let result = r.wait_ok(out.job.expect("a restore job")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&result).unwrap();
    let bytes = v[0]["bytes_rewritten"]
        .as_u64()
        .unwrap_or_else(|| panic!("bytes_rewritten in {result}"));
    (bytes, out.undo_backups[0])
}

fn restored_from_vault_last(r: &Rig, id: BackupId, volume: &str) {
    match &r.backups.get(id).unwrap().history.last().unwrap().event {
        Event::Restored { from, to, in_place } => {
            assert_eq!(from, &RestoredFrom::Vault("dr".into()));
            assert_eq!(to, volume);
            assert!(in_place);
        }
        e => panic!("last event {e:?}"),
    }
}

#[test]
fn an_in_place_restore_from_a_vault_fetches_and_writes_only_the_changed_extents() {
    let (r, _dir, b1, _) = copied();
    let want = r.image(&snap(b1));
    // 1% of the extents change (some in the backup's holes).
    let changed = change(&r, 7, 10);
    let before = r.image("v");
    r.advance(60_000);
    let (rewritten, undo) = restore_in_place(&r, b1, None);
    assert_eq!(rewritten, changed.len() as u64 * ES);
    assert!(r.image("v") == want, "the volume is back as backed up");
    let m = r.backups.vault_metrics();
    assert!(m["dr"].bytes_restored <= changed.len() as u64 * ES);
    assert_eq!(m["dr"].restores, 1);
    restored_from_vault_last(&r, b1, "v");
    // The undo point holds the content from just before the restore.
    let u = r.backups.get(undo).unwrap();
    assert_eq!(u.method, Method::Snapshot);
    assert_eq!(u.info.label.as_deref(), Some("pre-restore"));
    assert!(r.image(&snap(undo)) == before);
    assert!(
        r.pool.volume("v").unwrap().guard.is_none(),
        "hosts may write again"
    );
    r.assert_clean();
}

#[test]
fn a_vault_only_backup_restores_in_place_through_a_newer_generation_and_onto_another_volume() {
    let (r, _dir, b1, _) = copied();
    let want = r.image(&snap(b1));
    let first = change(&r, 11, 10);
    let b2 = r.snapshot_backup("v", None);
    copy(&r, b2, "dr");
    // b1 lives in the vault only; b2 (on the array, in the vault) is what the volume is
    // known to hold where unchanged since.
    let keep = DeleteOptions {
        force: false,
        keep_vault_copies: true,
    };
    r.backups.delete_with(b1, keep).unwrap();
    assert!(!r.backups.get(b1).unwrap().on_array());
    let second = change(&r, 12, 10);
    let differ: std::collections::BTreeSet<u64> = first.iter().chain(&second).copied().collect();
    let (rewritten, _) = restore_in_place(&r, b1, None);
    assert_eq!(rewritten, differ.len() as u64 * ES);
    assert!(r.image("v") == want, "the volume is back as backed up");
    restored_from_vault_last(&r, b1, "v");

    // Another volume, no reference there: it is read to compare, and only what differs is
    // written (its first half already holds the backup's data).
    r.pool.create_volume("w", EXTENTS * ES, None).unwrap();
    r.write("w", 0, &want[..(EXTENTS / 2 * ES) as usize]);
    let (rewritten, _) = restore_in_place(&r, b1, Some("w"));
    let data_beyond: u64 = (EXTENTS / 2..EXTENTS)
        .filter(|&l| {
            let e = &want[(l * ES) as usize..((l + 1) * ES) as usize];
            e.iter().any(|&x| x != 0)
        })
        .count() as u64;
    assert_eq!(rewritten, data_beyond * ES);
    assert!(r.image("w") == want);
    restored_from_vault_last(&r, b1, "w");
    r.assert_clean();
}

#[test]
fn a_vault_whose_chunks_are_not_the_pools_extents_is_refused_at_import_copy_and_restore() {
    let r = filled();
    let dir = tempfile::tempdir().unwrap();
    let chunk = 2 * ES as u32;
    arca_vault::Vault::create(&arca_vault::VaultSpec::dir(dir.path()), None, chunk).unwrap();
    r.backups
        .add_vault(vault_req("dr", dir.path(), false))
        .unwrap();
    let e = r.backups.import_vault("dr", None).unwrap_err();
    let says = format!("vault dr holds {chunk}-byte chunks and this pool's extents are {ES}");
    assert!(e.to_string().contains(&says), "{e}");
    let b1 = r.snapshot_backup("v", None);
    let job = r.backups.copy_to_vault(&[b1], "dr").unwrap();
    assert_eq!(r.wait(job), JobState::Failed);
    let err = r.jobs.get(job).unwrap().snapshot().error.unwrap();
    assert!(err.contains("they must match"), "{err}");
    // A copy recorded there (as by a host) cannot be restored either; nothing changes.
    let mut copy = crate::vaults::copy_of(&r, b1, "dr");
    copy.vault_id = r.backups.vault("dr").unwrap().vault_id.unwrap();
    r.backups.record_vault_copy(b1, copy).unwrap();
    let before = r.image("v");
    for to in [in_place(None), RestoreTo::New { name: "n".into() }] {
        let e = r.backups.restore_from(b1, to, Some("dr")).unwrap_err();
        assert!(e.to_string().contains(&says), "{e}");
    }
    assert!(r.image("v") == before && r.pool.volume("n").is_err());
    assert!(r.pool.volume("v").unwrap().guard.is_none());
}
