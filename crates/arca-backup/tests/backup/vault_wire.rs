//! Backups copied into a directory vault and restored from it: full and incremental copies
//! (reading only the changed extents), restores of each generation, encryption, import into
//! a fresh pool, deletion of vault copies, a damaged vault object, base pins left by a crash.

use std::path::Path;

use arca_backup::{
    BackupId, DeleteOptions, Event, JobState, NewVault, RestoreTo, RestoredFrom,
    vault_copy::BASE_PIN_REASON,
};
use arca_store::{Guard, GuardEffect, GuardOwner};
use rand::{Rng, SeedableRng};

use crate::util::*;

pub(crate) const EXTENTS: u64 = 1024;
/// Extents 0..DATA hold data; extent ZEROS holds written zeros; the rest are holes.
const DATA: u64 = 700;
const ZEROS: u64 = 800;

pub(crate) fn vault_req(name: &str, dir: &Path, encrypt: bool) -> NewVault {
    NewVault {
        name: name.into(),
        url: format!("file://{}", dir.display()),
        encrypt,
        ..NewVault::default()
    }
}

/// A rig with volume `v`: data, one extent of written zeros, holes.
pub(crate) fn filled() -> Rig {
    let r = rig_with(&[64 * MIB], &[("v", EXTENTS, None)]);
    r.write("v", 0, &pattern(1, (DATA * ES) as usize));
    r.write("v", ZEROS * ES, &vec![0u8; ES as usize]);
    r
}

/// Rewrites `n` distinct random extents (some in the holes); returns them, ascending.
pub(crate) fn change(r: &Rig, seed: u64, n: usize) -> Vec<u64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut picked = std::collections::BTreeSet::new();
    while picked.len() < n {
        picked.insert(rng.random_range(0..EXTENTS));
    }
    for &l in &picked {
        r.write("v", l * ES, &pattern(seed * 10_000 + l, ES as usize));
    }
    picked.into_iter().collect()
}

/// [`filled`], with directory vault `dr` and a first snapshot backup of `v` copied into it
/// (the copy's result last).
pub(crate) fn copied() -> (Rig, tempfile::TempDir, BackupId, serde_json::Value) {
    let (r, dir) = with_vault("dr", false);
    let b1 = r.snapshot_backup("v", None);
    let first = copy(&r, b1, "dr");
    (r, dir, b1, first)
}

pub(crate) fn copy(r: &Rig, id: BackupId, vault: &str) -> serde_json::Value {
    let job = r.backups.copy_to_vault(&[id], vault).unwrap();
    let out = r.wait_ok(job).expect("a vault copy has a result");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["copies"][0].clone()
}

fn restore_as(r: &Rig, id: BackupId, name: &str, vault: Option<&str>) {
    let done = r
        .backups
        .restore_from(id, RestoreTo::New { name: name.into() }, vault)
        .unwrap();
    r.wait_ok(done.job.expect("a restore from a vault is a job"));
}

/// `filled()` with vault `name` in a new tempdir (kept with the rig).
fn with_vault(name: &str, encrypt: bool) -> (Rig, tempfile::TempDir) {
    let r = filled();
    let dir = tempfile::tempdir().unwrap();
    r.backups
        .add_vault(vault_req(name, dir.path(), encrypt))
        .unwrap();
    (r, dir)
}

pub(crate) fn snap(id: BackupId) -> String {
    format!("v@backup-{id}")
}

#[test]
fn an_incremental_copy_reads_only_the_changed_extents_and_every_generation_restores() {
    let (r, _dir, b1, first) = copied();
    // Every allocated extent is read (the written zeros too), holes are not.
    assert_eq!(first["bytes_read"], (DATA + 1) * ES);
    assert!(first["base"].is_null());
    let rec = r.backups.get(b1).unwrap();
    assert_eq!(rec.vault_copies.len(), 1);
    assert_eq!(rec.vault_copies[0].bytes_read, (DATA + 1) * ES);
    assert!(matches!(
        rec.history.last().unwrap().event,
        Event::CopiedToVault { .. }
    ));

    // 1% of the extents change.
    let changed = change(&r, 2, 10);
    let b2 = r.snapshot_backup("v", None);
    let second = copy(&r, b2, "dr");
    assert_eq!(second["base"], b1.get());
    assert_eq!(second["bytes_read"], changed.len() as u64 * ES);
    assert!(second["bytes_new"].as_u64().unwrap() <= changed.len() as u64 * ES);
    // The base's pin is lifted once the copy is done.
    let base = r.pool.snapshot("v", &format!("backup-{b1}")).unwrap();
    assert!(
        base.guards
            .iter()
            .all(|g| !g.reason.starts_with(BASE_PIN_REASON))
    );

    for (id, name) in [(b1, "r1"), (b2, "r2")] {
        restore_as(&r, id, name, Some("dr"));
        assert_eq!(r.image(name), r.image(&snap(id)), "backup {id} restored");
        let rec = r.backups.get(id).unwrap();
        match &rec.history.last().unwrap().event {
            Event::Restored { from, to, .. } => {
                assert_eq!(from, &RestoredFrom::Vault("dr".into()));
                assert_eq!(to, name);
            }
            e => panic!("last event {e:?}"),
        }
    }
    // Holes stay holes: the restored volume holds what the data needs, not the whole size.
    let alloc = r.pool.export("r1").unwrap().allocated_extents().unwrap();
    assert_eq!(alloc.len() as u64, DATA);
    let m = r.backups.vault_metrics();
    assert_eq!(m["dr"].copies, 2);
    assert_eq!(m["dr"].restores, 2);
    assert_eq!(m["dr"].bytes_read, (DATA + 1 + changed.len() as u64) * ES);
}

#[test]
fn an_encrypted_vault_holds_no_plaintext_and_imports_into_a_fresh_pool_with_its_key() {
    let (r, dir) = with_vault("sealed", true);
    let b1 = r.snapshot_backup("v", Some("first"));
    copy(&r, b1, "sealed");
    change(&r, 3, 10);
    let b2 = r.snapshot_backup("v", None);
    copy(&r, b2, "sealed");
    let needle = &pattern(1, (DATA * ES) as usize)[5000..5064];
    for e in walk(dir.path()) {
        let bytes = std::fs::read(&e).unwrap();
        assert!(
            find(&bytes, needle).is_none(),
            "plaintext in {}",
            e.display()
        );
    }
    let key = r.backups.vault_key("sealed").unwrap().to_hex();
    let want = [r.image(&snap(b1)), r.image(&snap(b2))];

    // Another array: an empty pool, the vault added plainly, imported with the key.
    let fresh = rig(&[64 * MIB]);
    fresh
        .backups
        .add_vault(vault_req("sealed", dir.path(), false))
        .unwrap();
    let wrong = "00".repeat(32);
    let e = fresh
        .backups
        .import_vault("sealed", Some(&wrong))
        .unwrap_err();
    assert!(e.to_string().contains("wrong key"), "{e}");
    let report = fresh.backups.import_vault("sealed", Some(&key)).unwrap();
    assert_eq!(report.imported, vec![b1, b2]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let rec = fresh.backups.get(b1).unwrap();
    assert_eq!(rec.info.label.as_deref(), Some("first"));
    assert!(!rec.on_array());
    // Local first: none here, so the vault copy is used without naming it.
    restore_as(&fresh, b1, "back1", None);
    restore_as(&fresh, b2, "back2", None);
    assert_eq!(fresh.image("back1"), want[0]);
    assert_eq!(fresh.image("back2"), want[1]);
    // Importing again changes nothing.
    let again = fresh.backups.import_vault("sealed", None).unwrap();
    assert_eq!((again.imported.len(), again.known.len()), (0, 2));
}

#[test]
fn deleting_a_backup_without_keeping_vault_copies_deletes_its_manifest() {
    let (r, _dir, b1, _) = copied();
    let v = r.backups.open_vault("dr").unwrap();
    assert_eq!(v.list_manifests().unwrap(), vec![b1.get()]);
    let o = DeleteOptions {
        force: true,
        keep_vault_copies: false,
    };
    let gone = r.backups.delete_with(b1, o).unwrap();
    assert_eq!(gone.status, arca_backup::Status::Deleted);
    assert!(gone.vault_copies.is_empty());
    assert!(v.list_manifests().unwrap().is_empty());
}

#[test]
fn a_damaged_vault_object_fails_the_restore_naming_the_backup_and_leaves_no_volume() {
    let (r, dir, b1, _) = copied();
    let pack = walk(dir.path())
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/packs/"))
        .expect("a pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&pack, bytes).unwrap();
    let done = r
        .backups
        .restore_from(b1, RestoreTo::New { name: "r".into() }, Some("dr"))
        .unwrap();
    let job = done.job.unwrap();
    assert_eq!(r.wait(job), JobState::Failed);
    let err = r.jobs.get(job).unwrap().snapshot().error.unwrap();
    assert!(err.contains(&format!("backup {b1}")), "{err}");
    assert!(
        r.pool.volume("r").is_err(),
        "the failed restore's volume is gone"
    );
}

#[test]
fn a_base_pin_left_by_a_crash_is_lifted_at_open() {
    let r = filled();
    let b1 = r.snapshot_backup("v", None);
    let pin = Guard::new(
        GuardOwner::Backup(b1.get() + 1),
        GuardEffect::NO_DELETE,
        format!("{BASE_PIN_REASON} of backup {}", b1.get() + 1),
    );
    r.pool
        .add_snapshot_guard("v", &format!("backup-{b1}"), pin)
        .unwrap();
    let again = r.reopen_on(r.crash_devices(arca_store::sim::CrashMode::LoseAll));
    let s = again.pool.snapshot("v", &format!("backup-{b1}")).unwrap();
    assert_eq!(s.guards.len(), 1, "{:?}", s.guards);
    assert_eq!(s.guards[0].owner, GuardOwner::Backup(b1.get()));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A crash between the manifest and the catalog's transaction leaves a manifest the catalog
/// does not list (here: its copy entry forgotten with the vault, the vault added again); the
/// next copy of that backup records it instead of failing or writing it again.
#[test]
fn a_manifest_the_catalog_does_not_list_is_adopted_by_the_next_copy() {
    let (r, dir, b1, _) = copied();
    r.backups.remove_vault("dr", true).unwrap();
    assert!(r.backups.get(b1).unwrap().vault_copies.is_empty());
    r.backups
        .add_vault(vault_req("dr", dir.path(), false))
        .unwrap();
    let again = copy(&r, b1, "dr");
    assert_eq!(again["bytes_read"], 0, "{again}");
    let rec = r.backups.get(b1).unwrap();
    assert_eq!(rec.vault_copies.len(), 1);
    restore_as(&r, b1, "back", Some("dr"));
    assert_eq!(r.image("back"), r.image(&snap(b1)));
}
