//! Targets and pair warnings reason from where the source's data lies, not from its placement
//! preference (issue 12: a volume created without a device was taken to be on device 0).

use arca_backup::{NoHosts, Pairs, TargetKind};

use crate::util::{ES, MIB, pattern, rig};

/// Two devices, device 0 mostly full through a pinned volume, and `v` (no device) whose data
/// the pool put on device 1: the rig of the reproduction.
fn v_on_device_1() -> crate::util::Rig {
    let r = rig(&[24 * MIB, 24 * MIB]);
    r.pool.create_volume("fill", 16 * MIB, Some(0)).unwrap();
    r.write("fill", 0, &pattern(1, 14 * MIB as usize));
    r.pool.create_volume("v", 64 * ES, None).unwrap();
    r.write("v", 0, &pattern(2, 32 * ES as usize));
    let v = r.pool.volume("v").unwrap();
    assert_eq!((v.placement, v.data_devices()), (None, vec![1]));
    r
}

#[test]
fn targets_of_a_volume_without_a_device_follow_its_data() {
    let r = v_on_device_1();
    let t = r.backups.targets("v").unwrap();
    let summary: Vec<(TargetKind, Option<String>, Option<u32>, bool)> = t
        .iter()
        .map(|x| (x.kind.clone(), x.volume.clone(), x.device, x.other_device))
        .collect();
    assert_eq!(
        summary,
        vec![
            // fill lies on device 0 and prefers it: it holds none of v's data.
            (
                TargetKind::ExistingVolume,
                Some("fill".into()),
                Some(0),
                true
            ),
            (TargetKind::NewVolume, None, Some(0), true),
            (TargetKind::NewSnapshot, None, Some(1), false),
            (TargetKind::NewVolume, None, Some(1), false),
        ]
    );
    // Before the fix: "new volume on device 1 ... survives the loss of the source's device".
    for x in &t {
        let claims = x.reason.contains("survives") || x.reason.contains("independent copy");
        assert_eq!(claims, x.other_device, "{x:?}");
        if x.device == Some(1) {
            assert!(!x.other_device, "{x:?}");
        }
    }
    assert!(
        t[1].reason
            .contains("holds none of the source's data (on device 1)")
    );
    assert!(
        t[1].reason.contains("no device preference"),
        "{}",
        t[1].reason
    );
    // A copy backup with no destination goes where the data is not.
    let c = r
        .backups
        .create(arca_backup::CreateRequest {
            volumes: vec!["v".into()],
            method: Some(arca_backup::Method::Copy),
            ..Default::default()
        })
        .unwrap();
    r.wait_ok(c.jobs[0]);
    let arca_backup::Destination::Volume { volume, .. } = &c.records[0].destination else {
        panic!("a copy goes to a volume");
    };
    assert_eq!(r.pool.volume(volume).unwrap().data_devices(), vec![0]);
    r.assert_clean();
}

#[test]
fn a_source_spread_over_devices_says_so_and_no_device_is_independent_of_it() {
    let r = v_on_device_1();
    // Device 1 fills past device 0's free space: v's next data goes to device 0.
    r.pool.create_volume("fill1", 24 * MIB, Some(1)).unwrap();
    r.write("fill1", 0, &pattern(3, 20 * MIB as usize));
    r.write("v", 32 * ES, &pattern(4, 8 * ES as usize));
    let v = r.pool.volume("v").unwrap();
    assert_eq!(v.data_devices(), vec![0, 1]);
    let t = r.backups.targets("v").unwrap();
    assert!(t.iter().all(|x| !x.other_device), "{t:#?}");
    let snap = t
        .iter()
        .find(|x| x.kind == TargetKind::NewSnapshot)
        .unwrap();
    assert_eq!(snap.device, None);
    assert!(
        snap.reason.ends_with("on devices 0 and 1"),
        "{}",
        snap.reason
    );
    let new: Vec<_> = t
        .iter()
        .filter(|x| x.kind == TargetKind::NewVolume)
        .collect();
    assert!(!new.is_empty());
    for x in new {
        assert!(x.reason.contains("not independent"), "{}", x.reason);
    }
}

#[test]
fn a_pair_warns_when_its_copy_lands_on_a_device_holding_the_primarys_data() {
    let r = v_on_device_1();
    let pairs = Pairs::open(r.pool.clone(), r.jobs.clone()).unwrap();
    r.backups.attach_pairs(pairs.clone()).unwrap();
    // Before the fix v counted as device 0, so a secondary on device 1 raised no warning.
    r.pool.create_volume("s1", 64 * ES, Some(1)).unwrap();
    let (_, warning) = pairs.create("v", "s1", None, &NoHosts).unwrap();
    assert_eq!(
        warning.as_deref(),
        Some("v and s1 share device 1: one device loss takes both")
    );
    // And a secondary on device 0 (holding none of v's data) is warned of v's own spreading.
    r.pool.create_volume("w", 64 * ES, Some(1)).unwrap();
    r.write("w", 0, &pattern(5, 4 * ES as usize));
    r.pool.create_volume("s0", 64 * ES, Some(0)).unwrap();
    let (_, warning) = pairs.create("w", "s0", None, &NoHosts).unwrap();
    assert_eq!(warning, None);
}
