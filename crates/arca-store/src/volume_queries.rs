//! Per-volume queries and settings the layers above use: write hooks, what changed since a
//! snapshot or between two, what deleting snapshots would free, and guards set outside a larger transaction.

use std::sync::atomic::Ordering;

use crate::error::{Error, ErrorKind, Result, not_found};
use crate::guards::{Guard, GuardOwner};
use crate::pool::Pool;

impl Pool {
    /// Puts `guard` on a volume in a transaction of its own ([`crate::Txn::add_volume_guard`]).
    pub fn add_volume_guard(&self, volume: &str, guard: Guard) -> Result<()> {
        let mut t = self.transaction();
        t.add_volume_guard(volume, guard)?;
        t.commit()
    }

    /// Removes `owner`'s guard from a volume in a transaction of its own.
    pub fn remove_volume_guard(&self, volume: &str, owner: GuardOwner) -> Result<()> {
        let mut t = self.transaction();
        t.remove_volume_guard(volume, owner)?;
        t.commit()
    }

    /// Puts `guard` on a snapshot in a transaction of its own.
    pub fn add_snapshot_guard(&self, volume: &str, snapshot: &str, guard: Guard) -> Result<()> {
        let mut t = self.transaction();
        t.add_snapshot_guard(volume, snapshot, guard)?;
        t.commit()
    }

    /// Removes `owner`'s guard from a snapshot in a transaction of its own.
    pub fn remove_snapshot_guard(
        &self,
        volume: &str,
        snapshot: &str,
        owner: GuardOwner,
    ) -> Result<()> {
        let mut t = self.transaction();
        t.remove_snapshot_guard(volume, snapshot, owner)?;
        t.commit()
    }

    /// Sets (or removes) the hook told of every completed write to a volume. Not stored.
    pub fn set_write_hook(
        &self,
        volume: &str,
        hook: Option<std::sync::Arc<dyn crate::io::WriteHook>>,
    ) -> Result<()> {
        let h = self.lookup_family(volume)?;
        let mut f = h.cell.write();
        if f.deleted {
            return Err(not_found(format_args!("volume {volume}")));
        }
        // Counted before a hook is visible and after it is gone, so a write that sees no
        // count sees no hook.
        let had = f.hook.0.is_some();
        if !had && hook.is_some() {
            self.inner.hooks.fetch_add(1, Ordering::SeqCst);
        }
        let has = hook.is_some();
        f.hook = crate::family::HookSlot(hook);
        if had && !has {
            self.inner.hooks.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Logical extents (in extent units, ascending) where the live volume may differ from its
    /// snapshot: those written or trimmed since. Costs what changed, not the volume's size.
    pub fn changed_extents(&self, volume: &str, snapshot: &str) -> Result<Vec<u64>> {
        let h = self.lookup_family(volume)?;
        let f = h.cell.read();
        let i = f.snap_named(volume, snapshot)?;
        let generation = f.snaps[i].generation;
        // Entries born since the snapshot are changes; entries the snapshot saw that were
        // replaced or trimmed since sit in its own delta or a newer one.
        let mut out: Vec<u64> = f
            .live
            .iter()
            .filter(|(_, e)| e.birth >= generation)
            .map(|(l, _)| l)
            .collect();
        for s in &f.snaps[i..] {
            out.extend(
                s.delta
                    .iter()
                    .filter(|(_, e)| e.birth < generation)
                    .map(|(l, _)| l),
            );
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Logical extents (in extent units, ascending) where snapshot `newer` may differ from the
    /// older snapshot `older` of the same volume: what an incremental copy from one to the
    /// other must read. A superset of what differs (a rewrite of equal bytes counts); costs
    /// the deltas of the snapshots from `older` on plus one pass over the live map.
    pub fn changed_between(&self, volume: &str, older: &str, newer: &str) -> Result<Vec<u64>> {
        let h = self.lookup_family(volume)?;
        let f = h.cell.read();
        let (i, j) = (f.snap_named(volume, older)?, f.snap_named(volume, newer)?);
        if i > j {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("snapshot {volume}@{older} is newer than {volume}@{newer}"),
            ));
        }
        let (from, to) = (f.snaps[i].generation, f.snaps[j].generation);
        // Entries replaced or trimmed between the two snapshots sit in the deltas of the
        // snapshots from `older` up to `newer`: each names an extent that changed.
        let mut out: Vec<u64> = f.snaps[i..j]
            .iter()
            .flat_map(|s| s.delta.iter().map(|(l, _)| l))
            .collect();
        // Entries born between the two (written in that window) are live still, or were
        // replaced after `newer` was taken and sit in a newer delta.
        let born_between = |e: &crate::extent_map::Entry| e.birth >= from && e.birth < to;
        out.extend(
            f.live
                .iter()
                .filter(|(_, e)| born_between(e))
                .map(|(l, _)| l),
        );
        for s in &f.snaps[j..] {
            out.extend(
                s.delta
                    .iter()
                    .filter(|(_, e)| born_between(e))
                    .map(|(l, _)| l),
            );
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Bytes that deleting all of `snapshots` (of one volume) together would free: extents
    /// that only they see. Exact, and more than the sum of their unique bytes when they share
    /// extents only with each other.
    pub fn bytes_freed_by_deleting(&self, volume: &str, snapshots: &[&str]) -> Result<u64> {
        let h = self.lookup_family(volume)?;
        let f = h.cell.read();
        let mut doomed = vec![false; f.snaps.len()];
        for name in snapshots {
            doomed[f.snap_named(volume, name)?] = true;
        }
        // An entry in snapshot T's delta born at b is seen by exactly the snapshots up to T
        // whose generation is above b; it is freed when every one of them goes.
        let mut freed = 0u64;
        for (t, s) in f.snaps.iter().enumerate() {
            for (_, e) in s.delta.iter() {
                if e.phys().is_none() {
                    continue;
                }
                let seers_start = f.snaps[..=t].partition_point(|x| x.generation <= e.birth);
                if doomed[seers_start..=t].iter().all(|&d| d) {
                    freed += 1;
                }
            }
        }
        Ok(freed * self.inner.extent_size)
    }

    pub(crate) fn lookup_family(
        &self,
        name: &str,
    ) -> Result<std::sync::Arc<crate::family::FamilyHandle>> {
        self.inner.registry.read().volume(name)
    }
}
