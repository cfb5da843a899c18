//! Where a volume can be backed up, best first, and why: copies that share no device with the
//! source's data before those that share one, reasoned from where the data lies (placement.rs),
//! never from the placement preference alone.

use arca_store::{DeviceStatus, Result, VolumeInfo};
use serde::{Deserialize, Serialize};

use crate::backups::Backups;
use crate::placement::{destination_devices, devices_text, shared, source_devices, source_text};
use crate::record::Method;

/// What kind of place a backup target is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// The secondary of one of the volume's pairs (split at the backup's instant).
    PairSecondary,
    NewSnapshot,
    ExistingVolume,
    NewVolume,
}

crate::wire_names!(TargetKind {
    PairSecondary => "pair-secondary",
    NewSnapshot => "new-snapshot",
    ExistingVolume => "existing-volume",
    NewVolume => "new-volume",
});

/// A place a volume can be backed up to (`GET /v1/volumes/{name}/backup-targets`), best first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(as = BackupTarget))]
pub struct Target {
    pub kind: TargetKind,
    /// The method a backup to this target uses.
    pub method: Method,
    /// The existing volume, for `existing-volume`.
    pub volume: Option<String>,
    /// The device the copy's data goes to (a new volume's placement, an existing volume's
    /// preference; for a snapshot, the one device the source's data lies on); null when there
    /// is no one such device.
    pub device: Option<u32>,
    /// Shares no device with the source's data (as `device_bytes` reports it): survives the
    /// loss of any device that holds the source's data.
    pub other_device: bool,
    /// Why it ranks where it does.
    pub reason: String,
}

/// What ranking a volume's targets starts from.
struct Source<'a> {
    volume: &'a VolumeInfo,
    /// Devices holding its data (placement::source_devices).
    devices: Vec<u32>,
    /// How the reasons name those devices.
    text: String,
    device_count: usize,
}

impl Source<'_> {
    /// Said of an independent copy when the source may still spread to its device later.
    fn may_spread(&self, device: &str) -> String {
        if self.volume.placement.is_none() && self.device_count > 1 {
            format!(
                " (the source has no device preference: its new data may still land on {device})"
            )
        } else {
            String::new()
        }
    }
}

impl Backups {
    /// Where `volume` can be backed up, best first: pair secondaries, then copies sharing no
    /// device with the source's data, a snapshot, and copies on a device that holds some of it.
    pub fn targets(&self, volume: &str) -> Result<Vec<Target>> {
        let source = self.pool.volume(volume)?;
        let mut devices = self.pool.device_status();
        let src_devices = source_devices(&source, devices.len());
        let src = Source {
            volume: &source,
            text: source_text(&source, &src_devices),
            devices: src_devices,
            device_count: devices.len(),
        };
        let sources = self.live_sources()?;
        let mut other = Vec::new();
        let mut same = Vec::new();
        for v in self.pool.volumes() {
            if self.unfit_destination(&source, &v, &sources).is_some() {
                continue;
            }
            let t = existing_target(&src, &v);
            if t.other_device {
                other.push(t)
            } else {
                same.push(t)
            }
        }
        devices.sort_by_key(|d| std::cmp::Reverse(d.free_bytes));
        let need = source.referenced_bytes;
        let room: Vec<&DeviceStatus> = devices.iter().filter(|d| d.free_bytes >= need).collect();
        let mut out = self.pair_targets(&source);
        out.extend(other);
        for d in room.iter().filter(|d| !src.devices.contains(&d.index)) {
            out.push(new_volume_target(&src, d, true));
        }
        out.push(snapshot_target(&src));
        out.extend(same);
        for d in room.iter().filter(|d| src.devices.contains(&d.index)) {
            out.push(new_volume_target(&src, d, false));
        }
        Ok(out)
    }

    /// A pair secondary as a target: independent when its data shares no device with the
    /// source's.
    pub(crate) fn secondary_target(
        &self,
        pair: &str,
        source: &VolumeInfo,
        secondary: &VolumeInfo,
    ) -> Target {
        let n = self.pool.device_status().len();
        let src = source_devices(source, n);
        let (other_device, where_) = match destination_devices(secondary, n) {
            Some(copy) if shared(&src, &copy).is_empty() => (
                true,
                format!(
                    "; on {}, which holds none of the source's data",
                    devices_text(&copy)
                ),
            ),
            Some(copy) => (
                false,
                format!(
                    "; but it shares {} with the source's data",
                    devices_text(&shared(&src, &copy))
                ),
            ),
            None => (
                false,
                "; but it has no device preference, so it may share a device with the source"
                    .to_string(),
            ),
        };
        Target {
            kind: TargetKind::PairSecondary,
            method: Method::Copy,
            volume: Some(secondary.name.clone()),
            device: secondary.placement,
            other_device,
            reason: format!(
                "secondary of pair {pair}: a full copy, ready at the instant of the split, \
                 nothing more to copy{where_}"
            ),
        }
    }
}

fn existing_target(src: &Source<'_>, v: &VolumeInfo) -> Target {
    let (other_device, reason) = match destination_devices(v, src.device_count) {
        Some(copy) if shared(&src.devices, &copy).is_empty() => (
            true,
            format!(
                "existing free volume of {} bytes on {}, which holds none of the source's data \
                 (on {}): a full, independent copy",
                v.size,
                devices_text(&copy),
                src.text
            ),
        ),
        Some(copy) => (
            false,
            format!(
                "existing free volume of {} bytes: a full copy, but on {}, which also holds \
                 the source's data",
                v.size,
                devices_text(&shared(&src.devices, &copy))
            ),
        ),
        None => (
            false,
            format!(
                "existing free volume of {} bytes: a full copy, but it has no device \
                 preference, so the pool may place it on {}, where the source's data lies",
                v.size, src.text
            ),
        ),
    };
    Target {
        kind: TargetKind::ExistingVolume,
        method: Method::Copy,
        volume: Some(v.name.clone()),
        device: v.placement,
        other_device,
        reason,
    }
}

fn new_volume_target(src: &Source<'_>, d: &DeviceStatus, independent: bool) -> Target {
    let need = src.volume.referenced_bytes;
    let reason = if independent {
        let here = format!("device {}", d.index);
        format!(
            "new volume on {here} ({} bytes free, {need} needed): holds none of the source's \
             data (on {}), so it survives the loss of {}{}",
            d.free_bytes,
            src.text,
            if src.devices.len() > 1 {
                "any of those devices"
            } else {
                "that device"
            },
            src.may_spread(&here)
        )
    } else {
        format!(
            "new volume on device {} ({} bytes free): a full copy, but not independent of that \
             device, which holds {}the source's data",
            d.index,
            d.free_bytes,
            if src.devices.len() > 1 {
                "some of "
            } else {
                ""
            }
        )
    };
    Target {
        kind: TargetKind::NewVolume,
        method: Method::Copy,
        volume: None,
        device: Some(d.index),
        other_device: independent,
        reason,
    }
}

fn snapshot_target(src: &Source<'_>) -> Target {
    Target {
        kind: TargetKind::NewSnapshot,
        method: Method::Snapshot,
        volume: None,
        device: match src.devices[..] {
            [d] => Some(d),
            _ => None,
        },
        other_device: false,
        reason: format!(
            "new snapshot: instant and space-efficient, but shares the source's data on {}",
            src.text
        ),
    }
}
