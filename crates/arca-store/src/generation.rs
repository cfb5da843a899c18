//! Device generations: an old copy of a device is refused by name instead of served.
//!
//! Superblocks never change after creation, so they cannot tell a current device from a copy
//! of it taken earlier. Each device therefore carries a small generation record (two slots,
//! layout in layout.rs), and the metadata store records the generation of its last commit:
//!
//! - A flush that has anything to make durable (a data write since the last flush, or a
//!   metadata change) takes generation `g = synced + 1` and writes record `g` to every device
//!   *before* it syncs them, so the record becomes durable with the sync the flush does anyway:
//!   no extra sync per flush, one 4 KiB write per device. Once every device is synced,
//!   `synced = g`; a metadata commit that follows stores `g` as `commit_generation`. A flush
//!   with nothing to make durable writes no record. A failed flush leaves `synced` alone, so its
//!   retry takes the same `g` again.
//! - Invariant: every device's durable record is `synced` or `synced + 1` (a record `g` is only
//!   written after every device durably holds `g - 1`), and `commit_generation <= synced`.
//! - Except for a device whose writes fail: its record write failing does not fail the flush
//!   (logged), because the other devices' data must still become durable: a failing pair
//!   secondary must not stop its primary. Its record then lags; fsck reports it, the next flush
//!   that can write it catches up, and a pool reopened before then refuses the device as
//!   stale (the message says its record may have failed to be written): its writes failed,
//!   so someone should look at it before it is used.
//!
//! At open, with `G` the highest device generation and `M` the metadata's commit generation, a
//! device is stale when its generation is below `G - 1` (it missed a flush every other device
//! completed) or below `M` (it missed a flush whose metadata commit completed, which came after
//! every device was synced). A crash in the middle of a flush leaves devices at `G` and `G - 1`,
//! which is accepted. A stale device 0 (the metadata device) is refused by the same rule: its
//! record is as old as its metadata, and the other devices are newer.
//!
//! What this cannot see: a copy exactly one flush old when that flush changed no metadata (data
//! overwritten in place), which looks like a crash in the middle of that flush. Telling the two
//! apart needs a second write-and-sync per flush, after the first; two flushes later the copy is
//! refused.
//!
//! A pool labelled before records existed has none (both slots zero): it reads as generation 0
//! everywhere with no `commit_generation`, opens as before, and its first flush writes
//! generation 1. So the layout version did not change (the records use space version 1 left
//! unused), and an older build still opens a pool this one wrote (it ignores the records).
//!
//! A stale or unreadable device can be accepted on purpose ([`crate::OpenOptions`]): the open
//! logs it, then rewrites every device's record to a new generation at once (synced), so the
//! pool is consistent again and the next open needs no force.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::device::BlockDevice;
use crate::error::{Error, ErrorKind, Result};
use crate::layout::{GEN_RECORD_OFFSETS, GEN_RECORD_SIZE, GenRecord, Superblock};
use crate::pool::{CommitState, Pool};

/// What a device's record slots hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceGen {
    /// The newer valid record's generation; 0 when the device has none.
    Known(u64),
    /// Both slots damaged: why.
    Damaged(String),
}

/// Reads a device's generation. A slot written by another pool or device (a reused disk that
/// was not relabelled by this build) counts as empty.
pub(crate) fn read(dev: &dyn BlockDevice, sb: &Superblock) -> Result<DeviceGen> {
    let mut newest: Option<u64> = None;
    let mut damaged = Vec::new();
    for (slot, off) in GEN_RECORD_OFFSETS.iter().enumerate() {
        let mut b = vec![0u8; GEN_RECORD_SIZE];
        dev.read_at(&mut b, *off).map_err(|e| {
            Error::io(
                format!("device {}: reading its generation record", dev.name()),
                e,
            )
        })?;
        match GenRecord::decode(&b) {
            Ok(Some(r)) if r.pool_id == sb.pool_id && r.device_id == sb.device_id => {
                newest = newest.max(Some(r.generation));
            }
            Ok(_) => {}
            Err(m) => damaged.push(format!("slot {slot}: {m}")),
        }
    }
    Ok(match newest {
        None if damaged.len() == GEN_RECORD_OFFSETS.len() => DeviceGen::Damaged(damaged.join("; ")),
        n => DeviceGen::Known(n.unwrap_or(0)),
    })
}

fn write(dev: &dyn BlockDevice, sb: &Superblock, generation: u64) -> Result<()> {
    let r = GenRecord {
        pool_id: sb.pool_id,
        device_id: sb.device_id,
        device_index: sb.device_index,
        generation,
    };
    let off = GEN_RECORD_OFFSETS[(generation % 2) as usize];
    dev.write_at(&r.encode(), off).map_err(|e| {
        Error::io(
            format!(
                "device {}: writing its generation record {generation}",
                dev.name()
            ),
            e,
        )
    })
}

/// Clears both slots of a device being labelled for a new pool.
pub(crate) fn clear(dev: &dyn BlockDevice) -> Result<()> {
    let zeros = vec![0u8; GEN_RECORD_SIZE * GEN_RECORD_OFFSETS.len()];
    dev.write_at(&zeros, GEN_RECORD_OFFSETS[0]).map_err(|e| {
        Error::io(
            format!("device {}: clearing its generation records", dev.name()),
            e,
        )
    })
}

/// The outcome of the check at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    /// The generation every device durably holds (or holds one more than).
    pub synced: u64,
    /// Devices were accepted as stale: every record must be rewritten before use.
    pub forced: bool,
    /// What was accepted, for the log.
    pub accepted: Vec<String>,
}

/// Applies the rules of the module doc to the devices' generations and the metadata's commit
/// generation. `accept` lists device indexes that may be stale or unreadable (forced open).
pub(crate) fn check(
    devices: &[Arc<dyn BlockDevice>],
    gens: &[DeviceGen],
    meta_gen: u64,
    accept: &[u32],
) -> Result<Checked> {
    if let Some(&bad) = accept.iter().find(|&&i| i as usize >= devices.len()) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "cannot accept device {bad} as stale: the pool has {} devices",
                devices.len()
            ),
        ));
    }
    let newest = gens
        .iter()
        .filter_map(|g| match g {
            DeviceGen::Known(n) => Some(*n),
            DeviceGen::Damaged(_) => None,
        })
        .max()
        .unwrap_or(0);
    let mut refused = Vec::new();
    let mut accepted = Vec::new();
    for (i, (dev, g)) in devices.iter().zip(gens).enumerate() {
        let why = match g {
            DeviceGen::Damaged(m) => format!("its generation record is unreadable ({m})"),
            DeviceGen::Known(n) if *n < meta_gen || n.saturating_add(1) < newest => format!(
                "it is an old copy: generation {n}, while the pool is at generation {newest} \
                 and its metadata at {meta_gen} (or writing its generation record failed)"
            ),
            DeviceGen::Known(_) => continue,
        };
        let what = format!("device {} (index {i}) is stale: {why}", dev.name());
        if accept.contains(&(i as u32)) {
            accepted.push(format!(
                "{what}; accepted as it is, as asked: its newer data is lost"
            ));
        } else {
            refused.push(what);
        }
    }
    if !refused.is_empty() {
        return Err(Error::new(
            ErrorKind::StaleDevice,
            format!(
                "{}. Put the current copy back, or accept the device as stale to open the pool \
                 with what it holds",
                refused.join("; ")
            ),
        ));
    }
    let forced = !accepted.is_empty();
    let synced = if forced {
        newest.max(meta_gen)
    } else {
        gens.iter()
            .filter_map(|g| match g {
                DeviceGen::Known(n) => Some(*n),
                DeviceGen::Damaged(_) => None,
            })
            .min()
            .unwrap_or(0)
    };
    Ok(Checked {
        synced,
        forced,
        accepted,
    })
}

impl Pool {
    /// A flush's syncs: every device, after the next generation's record when `meta_changes`
    /// or data was written since the last flush (module doc).
    pub(crate) fn sync_devices(&self, state: &mut CommitState, meta_changes: bool) -> Result<()> {
        let inner = &self.inner;
        let bump = inner.data_written.swap(false, Ordering::SeqCst) || meta_changes;
        let run = || -> Result<Option<u64>> {
            let g = bump.then(|| self.write_generation(state));
            for d in &inner.devices {
                d.sync()
                    .map_err(|e| Error::io(format!("flushing device {}", d.name()), e))?;
            }
            Ok(g)
        };
        match run() {
            Ok(g) => {
                if let Some(g) = g {
                    state.synced_gen = g;
                }
                Ok(())
            }
            Err(e) => {
                // The retry must take a generation again.
                if bump {
                    inner.data_written.store(true, Ordering::SeqCst);
                }
                Err(e)
            }
        }
    }

    /// The first step of a flush that has something to make durable: writes the next
    /// generation's record to every device, to become durable with the syncs that follow.
    /// Returns that generation; the caller sets `synced` to it once every device is synced.
    /// A device that fails the write is logged and left behind (module doc).
    pub(crate) fn write_generation(&self, state: &CommitState) -> u64 {
        let inner = &self.inner;
        let g = state.synced_gen + 1;
        for (dev, sb) in inner.devices.iter().zip(&inner.superblocks) {
            if let Err(e) = write(&**dev, sb, g) {
                tracing::warn!("{e}: the device's generation record lags until a later flush");
            }
        }
        g
    }

    /// After a forced open: every device gets a new generation, synced now, so the accepted
    /// device is current from here on.
    pub(crate) fn rewrite_generations(&self) -> Result<()> {
        let mut state = self.inner.commit.lock();
        // Unlike a flush's, a failed record write fails this: the open was forced to make the
        // accepted device current, and it would not be.
        let g = state.synced_gen + 1;
        for (dev, sb) in self.inner.devices.iter().zip(&self.inner.superblocks) {
            write(&**dev, sb, g)?;
        }
        for dev in &self.inner.devices {
            dev.sync()
                .map_err(|e| Error::io(format!("flushing device {}", dev.name()), e))?;
        }
        state.synced_gen = g;
        tracing::warn!("every device's generation record now says {g}");
        Ok(())
    }

    /// For fsck, under the commit lock: every device's record is `synced` or `synced + 1`.
    pub(crate) fn check_generations(
        &self,
        state: &CommitState,
        problem: &mut dyn FnMut(&'static str, String),
    ) {
        let inner = &self.inner;
        let s = state.synced_gen;
        for (dev, sb) in inner.devices.iter().zip(&inner.superblocks) {
            match read(&**dev, sb) {
                Ok(DeviceGen::Known(n)) if n == s || n == s + 1 => {}
                Ok(DeviceGen::Known(n)) => problem(
                    "generation-record",
                    format!(
                        "device {}: generation record {n}, the pool is at {s}",
                        dev.name()
                    ),
                ),
                Ok(DeviceGen::Damaged(m)) => problem(
                    "generation-record",
                    format!("device {}: generation record unreadable: {m}", dev.name()),
                ),
                Err(e) => problem("generation-record", format!("device {}: {e}", dev.name())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{PowerDomain, SimDevice};

    fn devices(n: usize) -> Vec<Arc<dyn BlockDevice>> {
        let power = PowerDomain::new();
        (0..n)
            .map(|i| {
                Arc::new(SimDevice::new(&format!("d{i}"), 1 << 16, power.clone()))
                    as Arc<dyn BlockDevice>
            })
            .collect()
    }

    use DeviceGen::{Damaged, Known};

    #[test]
    fn a_crash_in_the_middle_of_a_flush_is_accepted() {
        let d = devices(3);
        let c = check(&d, &[Known(7), Known(6), Known(7)], 6, &[]).unwrap();
        assert_eq!((c.synced, c.forced), (6, false));
        // A pool from before records: all zero, no commit generation.
        let c = check(&d, &[Known(0), Known(0), Known(0)], 0, &[]).unwrap();
        assert_eq!(c.synced, 0);
    }

    #[test]
    fn stale_devices_are_refused_by_name_with_both_generations() {
        let d = devices(3);
        // Two flushes behind the others.
        let e = check(&d, &[Known(9), Known(7), Known(9)], 8, &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StaleDevice);
        let text = e.to_string();
        assert!(
            text.contains("device d1 (index 1) is stale") && text.contains("generation 7"),
            "{text}"
        );
        assert!(
            text.contains("generation 9") && !text.contains("d0"),
            "{text}"
        );
        // One flush behind, but that flush's metadata commit completed.
        let e = check(&d, &[Known(9), Known(8), Known(9)], 9, &[]).unwrap_err();
        assert!(e.to_string().contains("d1 (index 1)"), "{e}");
        // The metadata device is the old one: its metadata is as old as its record.
        let e = check(&d, &[Known(3), Known(9), Known(9)], 3, &[]).unwrap_err();
        assert!(e.to_string().contains("d0 (index 0) is stale"), "{e}");
        // Unreadable records.
        let e = check(&d, &[Known(3), Damaged("x".into()), Known(3)], 3, &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("d1 (index 1) is stale: its generation record is unreadable")
        );
    }

    #[test]
    fn accepted_stale_devices_open_forced_at_the_newest_generation() {
        let d = devices(2);
        let c = check(&d, &[Known(9), Known(2)], 9, &[1]).unwrap();
        assert_eq!((c.synced, c.forced), (9, true));
        assert!(
            c.accepted[0].contains("d1 (index 1) is stale"),
            "{:?}",
            c.accepted
        );
        let e = check(&d, &[Known(9), Known(9)], 9, &[2]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        // Accepting a device that is current changes nothing.
        let c = check(&d, &[Known(9), Known(9)], 9, &[1]).unwrap();
        assert!(!c.forced);
    }

    #[test]
    fn records_alternate_slots_and_a_torn_slot_falls_back() {
        let d = devices(1);
        let sb = crate::layout::sample_superblock();
        assert_eq!(read(&*d[0], &sb).unwrap(), Known(0));
        write(&*d[0], &sb, 1).unwrap();
        write(&*d[0], &sb, 2).unwrap();
        assert_eq!(read(&*d[0], &sb).unwrap(), Known(2));
        // Generation 2 torn: generation 1 remains.
        d[0].write_at(b"torn", GEN_RECORD_OFFSETS[0] + 100).unwrap();
        assert_eq!(read(&*d[0], &sb).unwrap(), Known(1));
        // Another device's record counts as none.
        let other = Superblock {
            device_id: [7; 16],
            ..sb.clone()
        };
        assert_eq!(read(&*d[0], &other).unwrap(), Known(0));
        d[0].write_at(b"torn", GEN_RECORD_OFFSETS[1] + 100).unwrap();
        assert!(matches!(read(&*d[0], &sb).unwrap(), Damaged(_)));
        clear(&*d[0]).unwrap();
        assert_eq!(read(&*d[0], &sb).unwrap(), Known(0));
    }
}
