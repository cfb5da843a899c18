//! Restores: in place with an undo point, costing what changed; as a new volume; sets.

use arca_backup::catalog::Query;
use arca_backup::{CreateRequest, Destination, Event, Method, RestoreTo, Status};
use arca_store::ErrorKind;

use crate::util::*;

#[test]
fn restore_in_place_puts_back_only_what_changed_and_keeps_an_undo_point() {
    let r = rig_with(&[24 * MIB], &[("v", 256, None)]);
    r.write("v", 0, &pattern(1, 100 * ES as usize));
    let before = r.image("v");
    let id = r.snapshot_backup("v", Some("daily"));
    // Change 5 extents: overwrite, trim, and write into a hole.
    r.write("v", 3 * ES, &[7; 100]);
    r.write("v", 50 * ES, &pattern(2, 2 * ES as usize));
    r.pool
        .export("v")
        .unwrap()
        .trim(70 * ES, ES, false)
        .unwrap();
    r.write("v", 200 * ES, &[8; 10]);
    let after_changes = r.image("v");
    r.advance(60_000);
    let out = r.backups.restore(id, IN_PLACE).unwrap();
    assert_eq!(out.volumes, vec!["v".to_string()]);
    let result = r.wait_ok(out.job.expect("a restore job")).unwrap();
    assert!(
        result.contains(&format!("\"bytes_rewritten\":{}", 5 * ES)),
        "only the 5 changed extents are rewritten: {result}"
    );
    assert!(r.image("v") == before, "the volume is back as backed up");
    // The undo point is a catalogued snapshot backup labelled pre-restore, holding the
    // content from just before the restore.
    assert_eq!(out.undo_backups.len(), 1);
    let undo = r.backups.get(out.undo_backups[0]).unwrap();
    assert_eq!(undo.method, Method::Snapshot);
    assert_eq!(undo.info.label.as_deref(), Some("pre-restore"));
    let Destination::Snapshot { snapshot, .. } = &undo.destination else {
        panic!()
    };
    assert!(r.image(&format!("v@{snapshot}")) == after_changes);
    let rec = r.backups.get(id).unwrap();
    assert!(rec.history.iter().any(|h| matches!(
        &h.event,
        Event::Restored { to, in_place: true, from: arca_backup::RestoredFrom::Array } if to == "v"
    )));
    // The volume is writable again, and undoing the restore works the same way.
    r.write("v", 0, &[1; 10]);
    let undo_out = r.backups.restore(undo.id, IN_PLACE).unwrap();
    r.wait_ok(undo_out.job.unwrap());
    assert!(r.image("v") == after_changes);
    r.assert_clean();
}

#[test]
fn restore_as_a_new_volume_is_instant_for_snapshots_and_copies_otherwise() {
    let r = rig_with(&[24 * MIB, 24 * MIB], &[("v", 64, Some(0))]);
    r.write("v", 0, &pattern(3, 10 * ES as usize));
    let want = r.image("v");
    let snap = r.snapshot_backup("v", None);
    let c = r.create_ok(copy_request("v"));
    let copy = c.records[0].id;
    r.write("v", 0, &[0xAB; 4096]);
    let a = r
        .backups
        .restore(
            snap,
            RestoreTo::New {
                name: "from-snap".into(),
            },
        )
        .unwrap();
    assert!(a.job.is_none(), "a snapshot restores instantly, as a clone");
    assert!(r.image("from-snap") == want);
    let b = r
        .backups
        .restore(
            copy,
            RestoreTo::New {
                name: "from-copy".into(),
            },
        )
        .unwrap();
    r.wait_ok(b.job.unwrap());
    assert!(r.image("from-copy") == want);
    // The restored volumes are ordinary writable volumes.
    r.write("from-snap", 0, &[1; 512]);
    r.write("from-copy", 0, &[1; 512]);
    // A backup whose data a restored clone still shares cannot be deleted.
    let e = r.backups.delete(snap, false).unwrap_err();
    assert!(e.to_string().contains("from-snap"), "{e}");
    // Names in use are refused.
    let e = r
        .backups
        .restore(snap, RestoreTo::New { name: "v".into() })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    r.assert_clean();
}

#[test]
fn a_backup_set_restores_as_a_unit() {
    let r = rig(&[24 * MIB]);
    for v in ["a", "b", "c"] {
        r.pool.create_volume(v, 16 * ES, None).unwrap();
        r.write(v, 0, v.as_bytes());
    }
    let c = r.create_ok(CreateRequest {
        volumes: vec!["a".into(), "b".into(), "c".into()],
        ..CreateRequest::default()
    });
    let set = c.records[0].set_id.unwrap();
    for v in ["a", "b", "c"] {
        r.write(v, 0, b"changed");
    }
    let out = r.backups.restore_set(set, false).unwrap();
    r.wait_ok(out.job.unwrap());
    for v in ["a", "b", "c"] {
        assert_eq!(r.read(v, 0, 7), [v.as_bytes(), &[0u8; 6]].concat());
    }
    // One undo point for all three: itself a set.
    assert_eq!(out.undo_backups.len(), 3);
    let undo_set = r.backups.get(out.undo_backups[0]).unwrap().set_id.unwrap();
    let members = r.set_members(undo_set);
    assert_eq!(members.len(), 3);
    assert_eq!(
        r.backups.restore_set(12345, false).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    r.assert_clean();
}

#[test]
fn restore_refuses_what_it_cannot_do_and_changes_nothing() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None), ("small", 8, None)]);
    let id = r.snapshot_backup("v", None);
    let e = r
        .backups
        .restore(id, in_place(Some("small"), false))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    r.backups.delete(id, false).unwrap();
    let e = r.backups.restore(id, IN_PLACE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert!(e.to_string().contains("deleted"), "{e}");
    assert_eq!(r.backups.get(id).unwrap().status, Status::Deleted);
    // Nothing was taken as an undo point.
    let all = r
        .backups
        .list(&Query {
            limit: 10,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(all.len(), 1);
    r.assert_clean();
}

/// Hosts connected to a volume, as the NBD server would report them.
struct FakeHosts {
    connected: parking_lot::Mutex<Vec<String>>,
    disconnects: std::sync::atomic::AtomicUsize,
}

impl arca_backup::Hosts for FakeHosts {
    fn connected(&self, export: &str) -> Vec<String> {
        if export == "v" {
            self.connected.lock().clone()
        } else {
            Vec::new()
        }
    }
    fn disconnect(&self, export: &str) -> usize {
        if export != "v" {
            return 0;
        }
        self.disconnects
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::mem::take(&mut *self.connected.lock()).len()
    }
    fn wait_disconnected(&self, _: &str, _: std::time::Duration) -> bool {
        self.connected.lock().is_empty()
    }
}

#[test]
fn restore_in_place_refuses_connected_hosts_unless_forced() {
    let r = rig_with(&[24 * MIB], &[("v", 16, None)]);
    r.write("v", 0, b"old");
    let hosts = std::sync::Arc::new(FakeHosts {
        connected: parking_lot::Mutex::new(vec!["10.0.0.7:5000".into()]),
        disconnects: Default::default(),
    });
    let b = arca_backup::Backups::open(r.pool.clone(), r.jobs.clone(), hosts.clone()).unwrap();
    let id = b
        .create(CreateRequest {
            volumes: vec!["v".into()],
            ..CreateRequest::default()
        })
        .unwrap()
        .records[0]
        .id;
    r.write("v", 0, b"new");
    let e = b.restore(id, IN_PLACE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert!(e.to_string().contains("10.0.0.7:5000"), "{e}");
    assert_eq!(r.read("v", 0, 3), b"new", "a refusal changes nothing");
    assert_eq!(
        b.list(&Query {
            limit: 10,
            ..Query::default()
        })
        .unwrap()
        .len(),
        1
    );
    let out = b.restore(id, in_place(None, true)).unwrap();
    r.wait_ok(out.job.unwrap());
    assert_eq!(
        hosts.disconnects.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(r.read("v", 0, 3), b"old");
    assert!(
        !r.pool.export("v").unwrap().read_only(),
        "the restore guard is lifted"
    );
}

/// A whole-image restore in place (from a copy backup) writes only the extents that differ:
/// the rest stays shared with the undo point.
#[test]
fn an_in_place_restore_of_a_copy_writes_only_what_differs() {
    let r = rig(&[24 * MIB, 24 * MIB]);
    r.pool.create_volume("v", 64 * ES, Some(0)).unwrap();
    r.write("v", 0, &pattern(4, 20 * ES as usize));
    let want = r.image("v");
    let c = r.backups.create(copy_request("v")).unwrap();
    r.wait_ok(c.jobs[0]);
    // Two extents overwritten, one written where the image has a hole.
    r.write("v", 2 * ES, &[7; 100]);
    r.write("v", 11 * ES, &pattern(5, ES as usize));
    r.write("v", 40 * ES, &[9; 10]);
    let out = r.backups.restore(c.records[0].id, IN_PLACE).unwrap();
    r.wait_ok(out.job.unwrap());
    assert!(r.image("v") == want);
    let undo = r.backups.get(out.undo_backups[0]).unwrap();
    let Destination::Snapshot { snapshot, .. } = &undo.destination else {
        panic!()
    };
    assert_eq!(r.pool.changed_extents("v", snapshot).unwrap(), [2, 11, 40]);
    r.assert_clean();
}
