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
