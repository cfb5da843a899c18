//! The vault registry and the catalog's record of copies off the array: vault copies, host
//! copies, annotations, backups that outlive their image on the array, imports.

use arca_backup::catalog::Query;
use arca_backup::retention::Policy;
use arca_backup::{
    Annotation, BackupId, BackupRecord, DeleteOptions, Event, HOST_COPIES_MAX, HostCopy, NewVault,
    PruneRequest, Secret, Status, VaultCopy,
};
use arca_store::ErrorKind;

use crate::util::*;

pub(crate) fn dir_vault(name: &str) -> NewVault {
    NewVault {
        name: name.into(),
        url: format!("file:///srv/vaults/{name}"),
        ..NewVault::default()
    }
}

pub(crate) fn copy_of(r: &Rig, id: BackupId, vault: &str) -> VaultCopy {
    let rec = r.backups.get(id).unwrap();
    VaultCopy {
        vault: vault.into(),
        vault_id: [3; 16],
        manifest: format!("manifests/{id}"),
        copied_ms: r.backups.now_ms(),
        bytes_read: 100,
        bytes_new: 50,
        bytes_stored: 20,
        digest_root: rec.digest.map(|d| d.root).unwrap_or_default(),
    }
}

fn in_vault(r: &Rig, vault: &str, inside: bool) -> Vec<BackupId> {
    let q = Query {
        in_vault: inside.then(|| vault.to_string()),
        not_in_vault: (!inside).then(|| vault.to_string()),
        limit: 100,
        ..Query::default()
    };
    r.backups.list(&q).unwrap().iter().map(|b| b.id).collect()
}

#[test]
fn the_registry_keeps_vaults_and_keys_across_restarts() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    let plain = r.backups.add_vault(dir_vault("plain")).unwrap();
    assert!(plain.key.is_none());
    let sealed = r
        .backups
        .add_vault(NewVault {
            name: "sealed".into(),
            url: "s3://bkt/arca/".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            allow_http: true,
            access_key: Some(Secret::new("AKID".into())),
            secret_key: Some(Secret::new("SKEY".into())),
            encrypt: true,
            ..NewVault::default()
        })
        .unwrap();
    assert_eq!(sealed.url, "s3://bkt/arca");
    let other = r
        .backups
        .add_vault(NewVault {
            encrypt: true,
            ..dir_vault("other")
        })
        .unwrap();
    assert_ne!(sealed.key, other.key, "keys come from randomness");
    assert_ne!(sealed.key.as_ref().unwrap().0, [0; 32]);
    let e = r.backups.add_vault(dir_vault("plain")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let e = r
        .backups
        .add_vault(NewVault {
            name: "again".into(),
            ..dir_vault("plain")
        })
        .unwrap_err();
    assert!(
        e.to_string().contains("vault plain is registered at"),
        "{e}"
    );
    let e = r.backups.vault_key("plain").unwrap_err();
    assert!(e.to_string().contains("not encrypted"), "{e}");
    assert_eq!(
        r.backups.vault("nope").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Bound once, the vault's id never changes.
    r.backups.bind_vault_id("plain", [1; 16]).unwrap();
    r.backups.bind_vault_id("plain", [1; 16]).unwrap();
    let e = r.backups.bind_vault_id("plain", [2; 16]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    let r2 = r.reopen_on(r.devices.clone());
    let names: Vec<String> = r2
        .backups
        .vaults()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["other", "plain", "sealed"]);
    assert_eq!(r2.backups.vault_key("sealed").unwrap(), sealed.key.unwrap());
    assert_eq!(
        r2.backups.vault("sealed").unwrap().credentials,
        sealed.credentials
    );
    assert_eq!(r2.backups.vault("plain").unwrap().vault_id, Some([1; 16]));
    r2.backups.remove_vault("other", false).unwrap();
    assert_eq!(r2.backups.vaults().unwrap().len(), 2);
}

#[test]
fn a_vault_copy_is_recorded_listed_and_replaced_by_a_newer_copy() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    r.write("v", 0, &pattern(1, ES as usize));
    let a = r.snapshot_backup("v", None);
    let b = r.snapshot_backup("v", None);
    let e = r
        .backups
        .record_vault_copy(a, copy_of(&r, a, "off"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "an unregistered vault: {e}");
    r.backups.add_vault(dir_vault("off")).unwrap();
    let mut bad = copy_of(&r, a, "off");
    bad.digest_root = [0xEE; 32];
    let e = r.backups.record_vault_copy(a, bad).unwrap_err();
    assert!(e.to_string().contains("digest root"), "{e}");
    let rec = r
        .backups
        .record_vault_copy(a, copy_of(&r, a, "off"))
        .unwrap();
    assert_eq!(rec.vault_copies.len(), 1);
    assert!(matches!(
        &rec.history.last().unwrap().event,
        Event::CopiedToVault { vault, .. } if vault == "off"
    ));
    assert_eq!(rec.locations(), ["array", "vault:off"]);
    r.advance(1000);
    let mut newer = copy_of(&r, a, "off");
    newer.manifest = "manifests/again".into();
    let rec = r.backups.record_vault_copy(a, newer.clone()).unwrap();
    assert_eq!(rec.vault_copies, [newer], "one entry per vault");
    assert_eq!(in_vault(&r, "off", true), [a]);
    assert_eq!(in_vault(&r, "off", false), [b]);
    assert_eq!(r.backups.backups_in_vault("off").unwrap().len(), 1);
    r.assert_clean();
}

#[test]
fn removing_a_vault_with_copies_is_refused_unless_forced_which_drops_them() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    let a = r.snapshot_backup("v", None);
    let b = r.snapshot_backup("v", None);
    r.backups.add_vault(dir_vault("off")).unwrap();
    r.backups
        .record_vault_copy(a, copy_of(&r, a, "off"))
        .unwrap();
    r.backups
        .record_vault_copy(b, copy_of(&r, b, "off"))
        .unwrap();
    // b lives only in the vault now.
    let o = DeleteOptions {
        force: false,
        keep_vault_copies: true,
    };
    r.backups.delete_with(b, o).unwrap();
    let e = r.backups.remove_vault("off", false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert!(
        e.to_string().contains(&format!("{b}, {a}"))
            || e.to_string().contains(&format!("{a}, {b}")),
        "{e}"
    );
    assert_eq!(r.backups.vaults().unwrap().len(), 1, "nothing changed");
    let removed = r.backups.remove_vault("off", true).unwrap();
    assert_eq!(removed.dropped_from.len(), 2);
    let ra = r.backups.get(a).unwrap();
    assert!(ra.vault_copies.is_empty() && ra.status == Status::Complete);
    assert!(matches!(
        &ra.history.last().unwrap().event,
        Event::VaultCopyForgotten { vault } if vault == "off"
    ));
    let rb = r.backups.get(b).unwrap();
    assert_eq!(
        rb.status,
        Status::Deleted,
        "its only copy is no longer known"
    );
    assert!(in_vault(&r, "off", true).is_empty());
    r.assert_clean();
}

#[test]
fn deleting_the_image_of_a_backup_with_vault_copies_keeps_it_complete_in_the_vault() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    r.write("v", 0, &pattern(2, 3 * ES as usize));
    let a = r.snapshot_backup("v", Some("n"));
    r.backups.add_vault(dir_vault("off")).unwrap();
    r.backups
        .record_vault_copy(a, copy_of(&r, a, "off"))
        .unwrap();
    // Deleting the vault copies too needs the vault: it is not there, so nothing changes.
    let e = r.backups.delete(a, true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.to_string().contains("vault copy could not be deleted"),
        "{e}"
    );
    assert_eq!(r.backups.get(a).unwrap().vault_copies.len(), 1);
    let o = DeleteOptions {
        force: false,
        keep_vault_copies: true,
    };
    let rec = r.backups.delete_with(a, o).unwrap();
    assert_eq!(rec.status, Status::Complete);
    assert!(rec.off_array_since_ms.is_some() && !rec.on_array());
    assert_eq!(rec.locations(), ["vault:off"]);
    assert!(
        r.pool.snapshots("v").unwrap().is_empty(),
        "the image is gone"
    );
    assert!(matches!(
        &rec.history.last().unwrap().event,
        Event::Retention { what } if what.contains("vault copies in off remain")
    ));
    // What reads the image says where the backup lives instead.
    let e = r.backups.restore(a, IN_PLACE).unwrap_err();
    assert!(e.to_string().contains("lives in vault(s) off"), "{e}");
    let e = r.backups.verify(&[a], false).unwrap_err();
    assert!(e.to_string().contains("lives in vault(s) off"), "{e}");
    let e = r.backups.delete_with(a, o).unwrap_err();
    assert!(e.to_string().contains("only in vault(s) off"), "{e}");
    assert_eq!(r.backups.unique_bytes(&rec).unwrap(), 0);
    r.assert_clean();
    // A rebuild keeps it though no descriptor carries it.
    let report = r.backups.rebuild(false).unwrap();
    assert_eq!(report.kept_history, 1);
    assert_eq!(r.backups.get(a).unwrap(), rec);
    r.assert_clean();
}

#[test]
fn prune_gives_up_the_array_image_of_a_backup_with_vault_copies_and_keeps_its_record() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    r.backups.add_vault(dir_vault("off")).unwrap();
    let old = r.snapshot_backup("v", None);
    r.advance(1000);
    let plain = r.snapshot_backup("v", None);
    r.advance(1000);
    let newest = r.snapshot_backup("v", None);
    r.backups
        .record_vault_copy(old, copy_of(&r, old, "off"))
        .unwrap();
    let req = PruneRequest {
        volume: "v".into(),
        policy: Policy {
            keep_last: Some(1),
            keep_newest_verified: false,
            ..Policy::default()
        },
        ..PruneRequest::default()
    };
    let report = r.backups.prune(&req).unwrap();
    assert_eq!(report.removed, 2);
    assert!(report.items.iter().all(|i| i.error.is_none()), "{report:?}");
    let o = r.backups.get(old).unwrap();
    assert_eq!((o.status, o.on_array()), (Status::Complete, false));
    assert_eq!(r.backups.get(plain).unwrap().status, Status::Deleted);
    assert!(r.backups.get(newest).unwrap().on_array());
    // The vault-only backup is no prune candidate any more.
    let again = r.backups.prune(&req).unwrap();
    assert_eq!(again.items.len(), 1);
    r.assert_clean();
}

fn imported_record(r: &Rig, id: u64) -> BackupRecord {
    // A backup as another array recorded it (its vault's manifest carries the record).
    let other = rig_with(&[24 * MIB], &[("db", 16, None)]);
    other.now_ms.store(
        r.now_ms.load(std::sync::atomic::Ordering::SeqCst) + 5_000,
        std::sync::atomic::Ordering::SeqCst,
    );
    let b = other.snapshot_backup("db", Some("nightly"));
    let mut rec = other.backups.get(b).unwrap();
    rec.id = BackupId(id);
    rec.generation = 9;
    rec
}

#[test]
fn an_imported_backup_keeps_its_id_and_information_and_lives_in_the_vault() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    r.backups.add_vault(dir_vault("dr")).unwrap();
    let future_id = (EPOCH_MS + 3_600_000) * arca_backup::IDS_PER_MS;
    let rec = imported_record(&r, future_id);
    let copy = VaultCopy {
        digest_root: rec.digest.as_ref().unwrap().root,
        ..copy_of(&r, r.snapshot_backup("v", None), "dr")
    };
    let mut unknown = copy.clone();
    unknown.vault = "elsewhere".into();
    assert_eq!(
        r.backups
            .add_imported(rec.clone(), unknown)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let got = r.backups.add_imported(rec.clone(), copy.clone()).unwrap();
    assert_eq!(got.id, rec.id);
    assert_eq!(got.info, rec.info);
    assert_eq!(got.destination, rec.destination, "history of where it was");
    assert_eq!(got.status, Status::Complete);
    assert!(!got.on_array());
    assert_eq!(got.vault_copies, std::slice::from_ref(&copy));
    assert!(
        matches!(&got.history.last().unwrap().event, Event::Imported { vault } if vault == "dr")
    );
    // Importing it again changes nothing; another backup under its id is refused.
    assert_eq!(
        r.backups.add_imported(rec.clone(), copy.clone()).unwrap(),
        got
    );
    let mut clash = rec.clone();
    clash.generation = 10;
    let e = r.backups.add_imported(clash, copy.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(e.to_string().contains("other content"), "{e}");
    // Ids given later stay above the imported one, across a restart too.
    let r2 = r.reopen_on(r.devices.clone());
    let next = r2.snapshot_backup("v", None);
    assert!(next > got.id, "{next} after {}", got.id);
    assert!(
        r2.backups
            .list(&Query {
                label: Some("nightly".into()),
                limit: 9,
                ..Query::default()
            })
            .unwrap()
            .iter()
            .any(|b| b.id == got.id)
    );
    r2.assert_clean();
}

#[test]
fn annotate_changes_host_information_and_its_indexes_with_history() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    let a = r.snapshot_backup("v", Some("daily"));
    let by_label = |l: &str| {
        r.backups
            .list(&Query {
                label: Some(l.into()),
                limit: 9,
                ..Query::default()
            })
            .unwrap()
            .len()
    };
    let e = r.backups.annotate(a, &Annotation::default()).unwrap_err();
    assert!(e.to_string().contains("nothing to change"), "{e}");
    let rec = r
        .backups
        .annotate(
            a,
            &Annotation {
                label: Some("weekly".into()),
                description: Some("before the upgrade".into()),
                meta_set: [("ticket".to_string(), "42".to_string())].into(),
                ..Annotation::default()
            },
        )
        .unwrap();
    assert_eq!(rec.info.label.as_deref(), Some("weekly"));
    assert_eq!((by_label("daily"), by_label("weekly")), (0, 1));
    assert!(matches!(
        &rec.history.last().unwrap().event,
        Event::Annotated { what } if what == "label, description, meta ticket"
    ));
    let rec = r
        .backups
        .annotate(
            a,
            &Annotation {
                meta_unset: vec!["ticket".into(), "absent".into()],
                ..Annotation::default()
            },
        )
        .unwrap();
    assert!(rec.info.meta.is_empty());
    let n = rec.history.len();
    // No change, no history entry; a bad value changes nothing.
    let same = r
        .backups
        .annotate(
            a,
            &Annotation {
                label: Some("weekly".into()),
                ..Annotation::default()
            },
        )
        .unwrap();
    assert_eq!(same.history.len(), n);
    let e = r
        .backups
        .annotate(
            a,
            &Annotation {
                label: Some("x".repeat(arca_backup::TEXT_LEN_MAX + 1)),
                ..Annotation::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(r.backups.get(a).unwrap(), same);
    r.assert_clean();
}

#[test]
fn host_copies_are_recorded_bounded_and_never_in_the_future() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    let a = r.snapshot_backup("v", None);
    let tape = |n: usize| HostCopy {
        medium: "tape".into(),
        location: Some(format!("T{n:04}")),
        by: Some("bacula".into()),
        copied_ms: EPOCH_MS,
    };
    let rec = r.backups.record_host_copy(a, tape(0)).unwrap();
    assert_eq!(rec.locations(), ["array", "host:tape"]);
    assert!(matches!(
        &rec.history.last().unwrap().event,
        Event::HostCopyRecorded { medium, location: Some(l) } if medium == "tape" && l == "T0000"
    ));
    let mut future = tape(1);
    future.copied_ms = EPOCH_MS + 3_600_000;
    let e = r.backups.record_host_copy(a, future).unwrap_err();
    assert!(e.to_string().contains("future"), "{e}");
    let e = r
        .backups
        .record_host_copy(
            a,
            HostCopy {
                medium: String::new(),
                ..tape(1)
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("medium"), "{e}");
    for n in 1..HOST_COPIES_MAX {
        r.backups.record_host_copy(a, tape(n)).unwrap();
    }
    let e = r.backups.record_host_copy(a, tape(99)).unwrap_err();
    assert!(e.to_string().contains("host copies already"), "{e}");
    assert_eq!(r.backups.get(a).unwrap().host_copies.len(), HOST_COPIES_MAX);
    r.backups.delete(a, false).unwrap();
    let e = r.backups.record_host_copy(a, tape(1)).unwrap_err();
    assert!(e.to_string().contains("is deleted"), "{e}");
    r.assert_clean();
}
