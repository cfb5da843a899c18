//! Catalog check names each kind of disagreement; rebuild restores the records from the
//! descriptors on the destinations.

use arca_backup::catalog::{self, CATALOG_TABLES};
use arca_backup::digest_store::DIGEST_INDEX;
use arca_backup::{BackupRecord, CreateRequest, HostInfo, Method, Status};

use crate::util::*;

fn codes(r: &Rig) -> Vec<&'static str> {
    let mut c: Vec<&'static str> = r
        .backups
        .check()
        .unwrap()
        .problems
        .iter()
        .map(|p| p.code)
        .collect();
    c.sort_unstable();
    c
}

fn populate(r: &Rig) -> Vec<arca_backup::BackupId> {
    r.pool.create_volume("a", 32 * ES, None).unwrap();
    r.pool.create_volume("b", 32 * ES, None).unwrap();
    r.write("a", 0, &pattern(1, 5 * ES as usize));
    let mut ids = vec![r.snapshot_backup("a", Some("x"))];
    let c = r.create_ok(CreateRequest {
        volumes: vec!["a".into()],
        method: Some(Method::Copy),
        info: HostInfo {
            host: Some("h".into()),
            ..HostInfo::default()
        },
        ..CreateRequest::default()
    });
    ids.push(c.records[0].id);
    let c = r.create_ok(CreateRequest {
        volumes: vec!["a".into(), "b".into()],
        ..CreateRequest::default()
    });
    ids.extend(c.records.iter().map(|x| x.id));
    let gone = r.snapshot_backup("b", None);
    r.backups.delete(gone, false).unwrap();
    ids.push(gone);
    ids
}

/// A rig with [`populate`]d backups: their ids and the catalog's records of them.
fn populated() -> (Rig, Vec<arca_backup::BackupId>, Vec<BackupRecord>) {
    let r = rig(&[32 * MIB]);
    let ids = populate(&r);
    let (records, _) = catalog::all(&r.pool).unwrap();
    (r, ids, records)
}

#[test]
fn check_names_missing_and_orphan_destinations_and_damaged_digests() {
    let r = rig(&[32 * MIB]);
    let ids = populate(&r);
    assert!(codes(&r).is_empty());
    // A destination removed behind the catalog's back.
    let rec = r.backups.get(ids[0]).unwrap();
    let snap = arca_backup::snapshot_name(rec.id);
    r.pool
        .remove_snapshot_guard("a", &snap, arca_store::GuardOwner::Backup(rec.id.get()))
        .unwrap();
    r.pool.delete_snapshot("a", &snap).unwrap();
    assert_eq!(codes(&r), vec!["missing-destination"]);
    // A volume carrying a descriptor the catalog does not know.
    let mut ghost: BackupRecord = r.backups.get(ids[1]).unwrap();
    ghost.id = arca_backup::BackupId(42);
    r.pool.create_volume("ghost", 8 * ES, None).unwrap();
    let mut t = r.pool.transaction();
    t.set_volume_tag("ghost", Some(ghost.encode())).unwrap();
    // A digest index naming a chunk that is not stored (which also leaves the chunk it named
    // counted once too often), and an index row of no record.
    let key = [ids[2].to_be_bytes().as_slice(), &0u32.to_be_bytes()].concat();
    let mut index = r.pool.app_get(DIGEST_INDEX, &key).unwrap().unwrap();
    index[5..21].copy_from_slice(&[0xee; 16]);
    t.put(DIGEST_INDEX, key, index);
    t.put(
        catalog::BY_HOST,
        [b"zz\0".as_slice(), &7u64.to_be_bytes()].concat(),
        Vec::new(),
    );
    t.commit().unwrap();
    let report = r.backups.check().unwrap();
    let mut found: Vec<(&str, Option<arca_backup::BackupId>)> =
        report.problems.iter().map(|p| (p.code, p.backup)).collect();
    found.sort_unstable();
    assert_eq!(
        found,
        vec![
            ("digest-mismatch", Some(ids[2])),
            ("digest-refcount", None),
            ("index-orphan", Some(arca_backup::BackupId(7))),
            ("missing-destination", Some(ids[0])),
            ("orphan-destination", Some(arca_backup::BackupId(42))),
        ]
    );
    assert!(report.problems.iter().all(|p| !p.message.is_empty()));
}

#[test]
fn rebuild_after_the_catalog_tables_are_dropped_gives_back_the_same_records() {
    let (r, ids, before) = populated();
    assert_eq!(before.len(), ids.len());
    // Lose the catalog: every record and index table emptied.
    let mut t = r.pool.transaction();
    for table in CATALOG_TABLES {
        t.clear(table);
    }
    t.commit().unwrap();
    assert!(catalog::all(&r.pool).unwrap().0.is_empty());
    let report = r.backups.rebuild(true).unwrap();
    assert_eq!(report.from_descriptors, ids.len() - 1);
    let (after, _) = catalog::all(&r.pool).unwrap();
    let live: Vec<&BackupRecord> = before
        .iter()
        .filter(|x| x.status != Status::Deleted)
        .collect();
    assert_eq!(
        after.iter().collect::<Vec<_>>(),
        live,
        "live records come back exactly"
    );
    assert!(
        codes(&r).is_empty(),
        "{:?}",
        r.backups.check().unwrap().problems
    );
    // Queries work again through the rebuilt indexes, and generations continue.
    let host = r
        .backups
        .list(&catalog::Query {
            host: Some("h".into()),
            limit: 10,
            ..catalog::Query::default()
        })
        .unwrap();
    assert_eq!(host.len(), 1);
    let next = r.snapshot_backup("a", None);
    assert_eq!(r.backups.get(next).unwrap().generation, 4);
    // Without discarding, the history of deleted backups is kept too.
    let report = r.backups.rebuild(false).unwrap();
    assert_eq!(
        report.kept_history, 0,
        "the deleted record was lost with the tables"
    );
    assert!(codes(&r).is_empty());
}

#[test]
fn rebuild_keeps_history_when_the_catalog_is_readable() {
    let (r, ids, before) = populated();
    let report = r.backups.rebuild(false).unwrap();
    assert_eq!(report.kept_history, 1);
    let (after, _) = catalog::all(&r.pool).unwrap();
    assert_eq!(after, before);
    assert_eq!(after.len(), ids.len());
    assert!(codes(&r).is_empty());
}

#[test]
fn a_restart_keeps_the_catalog_and_its_protections() {
    let (r, ids, before) = populated();
    r.pool.flush().unwrap();
    let r2 = r.reopen_on(r.devices.clone());
    assert_eq!(catalog::all(&r2.pool).unwrap().0, before);
    let snap = arca_backup::snapshot_name(ids[0]);
    let e = r2.pool.delete_snapshot("a", &snap).unwrap_err();
    assert!(e.to_string().contains(&ids[0].to_string()), "{e}");
    r2.assert_clean();
}
