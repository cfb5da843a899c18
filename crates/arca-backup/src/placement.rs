//! Which devices a volume's data lies on, as backups and pairs reason about losing one.
//!
//! A volume's placement is only a preference for where its *new* extents go; without one the
//! pool takes the device with the most free space. So these rules read where the data lies
//! (`VolumeInfo::device_bytes`): a copy survives the loss of a device only when that device
//! holds none of the source's data, and is independent of the source only when it shares no
//! device with it.

use arca_store::VolumeInfo;

/// Devices holding the source's data: what a backup must not share to survive their loss.
/// A volume with no data yet counts its preferred device or, lacking one, every device (its
/// data may land on any of them); a one-device pool always has the one device.
pub(crate) fn source_devices(v: &VolumeInfo, devices: usize) -> Vec<u32> {
    let data = v.data_devices();
    if !data.is_empty() {
        return data;
    }
    match v.placement {
        Some(d) => vec![d],
        None => (0..devices as u32).collect(),
    }
}

/// Devices a copy written into `dest` would lie on: those holding its data now and its
/// preferred device. `None` when that cannot be told: with no preference the pool chooses.
pub(crate) fn destination_devices(dest: &VolumeInfo, devices: usize) -> Option<Vec<u32>> {
    if devices == 1 {
        return Some(vec![0]);
    }
    let preferred = dest.placement?;
    let mut out = dest.data_devices();
    if !out.contains(&preferred) {
        out.push(preferred);
        out.sort_unstable();
    }
    Some(out)
}

/// Devices in both lists.
pub(crate) fn shared(a: &[u32], b: &[u32]) -> Vec<u32> {
    a.iter().copied().filter(|d| b.contains(d)).collect()
}

/// "device 1", "devices 0 and 1", "devices 0, 1 and 2".
pub(crate) fn devices_text(devices: &[u32]) -> String {
    match devices {
        [] => "no device".to_string(),
        [d] => format!("device {d}"),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(u32::to_string).collect();
            format!("devices {} and {last}", rest.join(", "))
        }
    }
}

/// Where the source's data lies, for a reason: "device 1", or "devices 0 and 1" for a volume
/// spread over several, said so because nothing else would tell.
pub(crate) fn source_text(source: &VolumeInfo, devices: &[u32]) -> String {
    if source.referenced_bytes == 0 && source.placement.is_none() && devices.len() > 1 {
        return "any device (it holds no data yet and has no device preference)".to_string();
    }
    devices_text(devices)
}

/// Why a pair of `primary` and `secondary` may lose both copies to one device, if it may.
pub(crate) fn pair_warning(
    primary: &VolumeInfo,
    secondary: &VolumeInfo,
    devices: usize,
) -> Option<String> {
    let (p, s) = (&primary.name, &secondary.name);
    let held = source_devices(primary, devices);
    let Some(copy) = destination_devices(secondary, devices) else {
        return Some(format!(
            "{s} has no device preference: the pool may place the copy on {}, which holds \
             {p}'s data, and one device loss would take both",
            source_text(primary, &held)
        ));
    };
    let both = shared(&held, &copy);
    if !both.is_empty() {
        return Some(format!(
            "{p} and {s} share {}: one device loss takes both",
            devices_text(&both)
        ));
    }
    primary.placement.is_none().then(|| {
        format!(
            "{p} has no device preference: its new data may land on {}, where {s} lies, and \
             one device loss would then take both",
            devices_text(&copy)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(name: &str, placement: Option<u32>, device_bytes: Vec<u64>) -> VolumeInfo {
        VolumeInfo {
            id: 1,
            name: name.into(),
            size: 1 << 20,
            created_unix: 0,
            placement,
            origin: None,
            snapshots: 0,
            referenced_bytes: device_bytes.iter().sum(),
            device_bytes,
            unique_bytes: 0,
            owned_bytes: 0,
            tag: None,
            guard: None,
            guards: Vec::new(),
        }
    }

    #[test]
    fn devices_are_named_as_people_read_them() {
        assert_eq!(devices_text(&[1]), "device 1");
        assert_eq!(devices_text(&[0, 1]), "devices 0 and 1");
        assert_eq!(devices_text(&[0, 2, 3]), "devices 0, 2 and 3");
    }

    #[test]
    fn the_source_is_where_its_data_lies_not_where_it_prefers() {
        let v = volume("v", None, vec![0, 4096]);
        assert_eq!(source_devices(&v, 2), vec![1]);
        let pinned_but_spilled = volume("w", Some(0), vec![4096, 4096]);
        assert_eq!(source_devices(&pinned_but_spilled, 2), vec![0, 1]);
        assert_eq!(
            source_devices(&volume("e", Some(1), vec![0, 0]), 2),
            vec![1]
        );
        assert_eq!(
            source_devices(&volume("e", None, vec![0, 0]), 2),
            vec![0, 1]
        );
        assert_eq!(source_devices(&volume("e", None, vec![0]), 1), vec![0]);
    }

    #[test]
    fn pair_warnings_follow_the_data() {
        let p = volume("p", None, vec![0, 4096]);
        let s0 = volume("s", Some(0), vec![0, 0]);
        let s1 = volume("s", Some(1), vec![0, 0]);
        let w = pair_warning(&p, &s1, 2).unwrap();
        assert_eq!(w, "p and s share device 1: one device loss takes both");
        // Apart now, but p's new data may go anywhere.
        let w = pair_warning(&p, &s0, 2).unwrap();
        assert!(w.starts_with("p has no device preference"), "{w}");
        let pinned = volume("p", Some(1), vec![0, 4096]);
        assert_eq!(pair_warning(&pinned, &s0, 2), None);
        let w = pair_warning(&pinned, &volume("s", None, vec![0, 0]), 2).unwrap();
        assert!(w.starts_with("s has no device preference"), "{w}");
        let one = volume("p", None, vec![4096]);
        let w = pair_warning(&one, &volume("s", None, vec![0]), 1).unwrap();
        assert_eq!(w, "p and s share device 0: one device loss takes both");
    }
}
