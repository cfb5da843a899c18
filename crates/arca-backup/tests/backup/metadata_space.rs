//! Backups never wedge the pool by filling the metadata region.

use std::collections::BTreeMap;

use arca_backup::record::{META_KEY_LEN_MAX, META_PAIRS_MAX, TEXT_LEN_MAX};
use arca_backup::{CreateRequest, HostInfo};
use arca_store::ErrorKind;

use crate::util::*;

/// Regression: snapshot backups carrying 32 maximum-length key/value pairs filled a small
/// pool's metadata region in a few dozen backups; then host flushes failed with ENOSPC and
/// every delete answered "no space", so room could never be made again.
#[test]
fn backups_are_refused_before_the_metadata_region_fills_and_deletes_still_work() {
    let r = rig(&[24 * MIB]);
    let size = 8 * MIB;
    r.pool.create_volume("v", size, None).unwrap();
    r.write("v", 0, &pattern(1, (size / 2) as usize));
    let meta: BTreeMap<String, String> = (0..META_PAIRS_MAX)
        .map(|i| {
            let key = format!("{i:02}{}", "k".repeat(META_KEY_LEN_MAX - 2));
            (key, "v".repeat(TEXT_LEN_MAX))
        })
        .collect();
    let mut ids = Vec::new();
    let refusal = loop {
        let made = r.backups.create(CreateRequest {
            volumes: vec!["v".into()],
            info: HostInfo {
                meta: meta.clone(),
                ..HostInfo::default()
            },
            ..CreateRequest::default()
        });
        match made {
            Ok(c) => {
                for j in &c.jobs {
                    r.wait_ok(*j);
                }
                ids.push(c.records[0].id);
            }
            Err(e) => break e,
        }
        assert!(ids.len() < 5_000, "no backup was ever refused");
        r.advance(1000);
    };
    assert_eq!(refusal.kind(), ErrorKind::NoSpace, "{refusal}");
    assert!(
        refusal.to_string().contains("metadata region nearly full"),
        "{refusal}"
    );
    assert!(ids.len() >= 5, "only {} backups fitted", ids.len());
    // The refused backup left nothing: no snapshot, no record.
    assert_eq!(r.pool.snapshots("v").unwrap().len(), ids.len());
    r.assert_clean();

    // The catalog can be rebuilt from the descriptors (it rewrites only what differs).
    let report = r
        .backups
        .rebuild(false)
        .expect("rebuild with the region nearly full");
    assert_eq!(report.from_descriptors, ids.len());
    r.backups
        .rebuild(true)
        .expect("rebuild --discard with the region nearly full");
    r.assert_clean();

    // Hosts can still write the rest of the volume and flush it.
    r.write("v", size / 2, &pattern(2, (size / 2) as usize));
    r.pool
        .flush()
        .expect("host writes commit with the region nearly full");
    // Every backup can be deleted, which makes room for new ones.
    for id in &ids {
        r.backups.delete(*id, false).expect("a deletion commits");
    }
    r.assert_clean();
    r.snapshot_backup("v", None);
    let r = r.reopen_on(r.devices.clone());
    r.assert_clean();
}

/// Successive backups of a volume share the digest chunks of the data they have in common, so
/// a backup of an unchanged volume costs its record and index, not its size again; deleting
/// them in any order keeps every shared chunk counted right.
#[test]
fn backups_share_digest_chunks_and_deletes_in_any_order_keep_counts() {
    let r = rig(&[32 * MIB]);
    let size = 24 * MIB;
    r.pool.create_volume("v", size, None).unwrap();
    r.write("v", 0, &pattern(1, size as usize));
    let first = r.snapshot_backup("v", None);
    let used_after_first = r.pool.status().metadata.used_bytes;
    let mut ids = vec![first];
    for i in 0..8u64 {
        // One extent changes between backups, in one of the 6 chunks of 1,024 extents.
        r.write(
            "v",
            ((i % 6) * 1024 + i) * ES,
            &pattern(10 + i, ES as usize),
        );
        ids.push(r.snapshot_backup("v", None));
    }
    let per_backup = (r.pool.status().metadata.used_bytes - used_after_first) / 8;
    let full = (size / ES) * 24;
    eprintln!("metadata per backup: {per_backup} bytes; a full digest: {full}");
    assert!(
        per_backup < full / 3,
        "a backup of a mostly unchanged volume costs {per_backup} bytes of metadata; a full \
         digest is {full}"
    );
    r.assert_clean();
    for id in [ids[4], ids[0], ids[8], ids[2]] {
        r.backups.delete(id, false).unwrap();
        r.assert_clean();
    }
    for id in [ids[1], ids[3], ids[5], ids[6], ids[7]] {
        let (job, _) = r.backups.verify(&[id], false).unwrap();
        r.wait_ok(job);
        let rec = r.backups.get(id).unwrap();
        assert_eq!(rec.last_verified_ok(), Some(true), "{:?}", rec.history);
    }
}

/// Digests stored before chunks were shared (one row per 1,024 entries of extent and hash) are
/// still read, verified, checked and removed.
#[test]
fn digests_in_the_earlier_layout_still_verify_and_are_removed_with_their_backup() {
    use std::ops::Bound;

    use arca_backup::catalog::DIGESTS;
    use arca_backup::digest_store::{self, DIGEST_CHUNKS, DIGEST_INDEX};

    let r = rig(&[24 * MIB]);
    r.pool.create_volume("v", 6 * MIB, None).unwrap();
    r.write("v", 0, &pattern(3, 5 * MIB as usize));
    let id = r.snapshot_backup("v", None);
    let hashes = digest_store::load(&r.pool, id).unwrap().unwrap();
    assert!(hashes.len() > 1024, "the digest spans several legacy rows");
    // Rewrite it as the earlier layout would have stored it.
    let scan = |table: &str| {
        let mut keys = Vec::new();
        r.pool
            .app_scan(table, Bound::Unbounded, Bound::Unbounded, false, |k, _| {
                keys.push(k.to_vec());
                true
            })
            .unwrap();
        keys
    };
    let mut t = r.pool.transaction();
    for k in scan(DIGEST_INDEX) {
        t.delete(DIGEST_INDEX, k);
    }
    for k in scan(DIGEST_CHUNKS) {
        t.delete(DIGEST_CHUNKS, k);
    }
    for (c, rows) in hashes.chunks(1024).enumerate() {
        let key = [id.to_be_bytes().as_slice(), &(c as u32).to_be_bytes()].concat();
        let value: Vec<u8> = rows
            .iter()
            .flat_map(|(l, h)| l.to_be_bytes().into_iter().chain(*h))
            .collect();
        t.put(DIGESTS, key, value);
    }
    t.commit().unwrap();
    assert_eq!(digest_store::load(&r.pool, id).unwrap().unwrap(), hashes);
    r.assert_clean();
    let (job, _) = r.backups.verify(&[id], false).unwrap();
    r.wait_ok(job);
    assert_eq!(r.backups.get(id).unwrap().last_verified_ok(), Some(true));
    r.backups.delete(id, false).unwrap();
    assert!(
        scan(DIGESTS).is_empty(),
        "the earlier rows went with the backup"
    );
    r.assert_clean();
}

/// What hosts add to records after the fact (host copies, annotations) asks for metadata room
/// like a new backup: on a nearly full region it is refused whole, and deletions still work.
#[test]
fn host_copies_and_annotations_are_refused_before_the_metadata_region_fills() {
    let r = rig(&[24 * MIB]);
    r.pool.create_volume("v", 4 * MIB, None).unwrap();
    // Backups with the most metadata until the region refuses one.
    let meta: BTreeMap<String, String> = (0..META_PAIRS_MAX)
        .map(|i| {
            (
                format!("{i:02}{}", "k".repeat(20)),
                "v".repeat(TEXT_LEN_MAX),
            )
        })
        .collect();
    let mut ids = Vec::new();
    loop {
        match r.backups.create(CreateRequest {
            volumes: vec!["v".into()],
            info: HostInfo {
                meta: meta.clone(),
                ..HostInfo::default()
            },
            ..CreateRequest::default()
        }) {
            Ok(c) => {
                for j in &c.jobs {
                    r.wait_ok(*j);
                }
                ids.push(c.records[0].id);
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
                break;
            }
        }
        assert!(ids.len() < 5_000, "no backup was ever refused");
        r.advance(1000);
    }
    // The little room left goes to what hosts add, until that is refused too.
    let copy = |n: usize| arca_backup::HostCopy {
        medium: format!("{n:04}{}", "m".repeat(TEXT_LEN_MAX - 4)),
        location: Some("l".repeat(TEXT_LEN_MAX)),
        by: Some("b".repeat(TEXT_LEN_MAX)),
        copied_ms: EPOCH_MS,
    };
    let note = arca_backup::Annotation {
        description: Some("d".repeat(arca_backup::record::DESCRIPTION_LEN_MAX)),
        ..Default::default()
    };
    let mut refusal = None;
    'fill: for id in &ids {
        for n in 0..arca_backup::HOST_COPIES_MAX {
            let before = r.backups.get(*id).unwrap();
            if let Err(e) = r.backups.record_host_copy(*id, copy(n)) {
                refusal = Some((e, *id, before));
                break 'fill;
            }
        }
        let before = r.backups.get(*id).unwrap();
        if let Err(e) = r.backups.annotate(*id, &note) {
            refusal = Some((e, *id, before));
            break 'fill;
        }
    }
    let (refusal, id, before) = refusal.expect("nothing hosts add was ever refused");
    assert_eq!(refusal.kind(), ErrorKind::NoSpace, "{refusal}");
    assert!(
        refusal.to_string().contains("metadata region nearly full"),
        "{refusal}"
    );
    assert_eq!(r.backups.get(id).unwrap(), before, "refused whole");
    r.assert_clean();
    for id in &ids {
        r.backups.delete(*id, false).expect("a deletion commits");
    }
    r.assert_clean();
}
