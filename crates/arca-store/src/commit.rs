//! Commits: the one way changes reach the metadata store.
//!
//! A flush drains every family's uncommitted changes, syncs every device (so data reaches
//! stable storage before the metadata that points to it; each device's generation record goes
//! with that sync, see generation.rs), then commits all changes in one redb transaction. Extents freed by those changes become allocatable only after that commit is
//! durable. One flush is one commit, however many writes preceded it; concurrent flushes queue
//! on the commit lock. A failed flush puts everything back, to be retried by the next one.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, ErrorKind, Result};
use crate::family::{Dirty, FamilyHandle};
use crate::meta_guard::store_error;
use crate::pool::{CommitState, Pool, PoolPending, Registry, open_db};
use crate::records::{self, SnapshotRecord, VolumeRecord};
use crate::txn_apply::Locks;

struct Drained {
    handle: Arc<FamilyHandle>,
    dirty: Dirty,
    volume: Option<Vec<u8>>,
    snapshots: Vec<(u64, Vec<u8>)>,
}

impl Pool {
    /// Makes every completed write and every control change durable.
    pub fn flush(&self) -> Result<()> {
        let mut state = self.inner.commit.lock();
        self.flush_locked(&mut state)
    }

    pub(crate) fn flush_locked(&self, state: &mut CommitState) -> Result<()> {
        self.flush_with(state, None, &mut Locks::default())
    }

    /// A flush by a committing transaction: `reg` is the registry it holds (else the flush
    /// takes it briefly), `locks` the family locks it holds (txn.rs), drained through them.
    pub(crate) fn flush_with(
        &self,
        state: &mut CommitState,
        reg: Option<&Registry>,
        locks: &mut Locks<'_>,
    ) -> Result<()> {
        let inner = &self.inner;
        let take = |reg: &Registry| {
            // Pool-level changes are made under the registry write lock, so this is a clean cut.
            let pending = std::mem::take(&mut *inner.pending.lock());
            (reg.by_id.values().cloned().collect::<Vec<_>>(), pending)
        };
        let (handles, pending) = match reg {
            Some(r) => take(r),
            None => take(&inner.registry.read()),
        };
        let mut drained = Vec::new();
        for h in handles {
            if let Some(d) = locks.with(&h, |f| drain(&h, f)) {
                drained.push(d);
            }
        }
        let result = self.commit(state, &drained, &pending);
        match result {
            Ok(()) => {
                let mut alloc = inner.alloc.lock();
                for p in pending
                    .frees
                    .iter()
                    .chain(drained.iter().flat_map(|d| d.dirty.frees.iter()))
                {
                    alloc.free(*p);
                }
                Ok(())
            }
            Err(e) => {
                self.restore(drained, pending, locks);
                Err(e)
            }
        }
    }

    fn commit(
        &self,
        state: &mut CommitState,
        drained: &[Drained],
        pending: &PoolPending,
    ) -> Result<()> {
        let inner = &self.inner;
        let empty = drained.is_empty()
            && pending.purge_owners.is_empty()
            && pending.deleted_volumes.is_empty()
            && pending.deleted_snapshots.is_empty()
            && pending.app_ops.is_empty()
            && inner.db.read().is_some();
        // Every device, with its generation record when there is anything to make durable.
        self.sync_devices(state, !empty)?;
        if empty {
            return Ok(());
        }
        let db_guard = self.db()?;
        let db = db_guard.as_ref().expect("db() opens the store");
        let ctx = "committing metadata";
        let synced_gen = state.synced_gen;
        let run = || -> std::result::Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut extents = txn.open_table(records::EXTENTS)?;
                let mut volumes = txn.open_table(records::VOLUMES)?;
                let mut snapshots = txn.open_table(records::SNAPSHOTS)?;
                let mut meta = txn.open_table(records::META)?;
                for d in drained {
                    for (&(owner, l), v) in &d.dirty.entries {
                        match v {
                            Some(e) => {
                                extents.insert((owner, l), e.to_parts())?;
                            }
                            None => {
                                extents.remove((owner, l))?;
                            }
                        }
                    }
                    if let Some(v) = &d.volume {
                        volumes.insert(d.handle.id, v.as_slice())?;
                    }
                    for (id, v) in &d.snapshots {
                        snapshots.insert(*id, v.as_slice())?;
                    }
                }
                let purge = pending.purge_owners.iter().chain(
                    drained
                        .iter()
                        .flat_map(|d| d.dirty.deleted_snapshots.iter()),
                );
                for &owner in purge {
                    extents.retain_in((owner, 0)..=(owner, u64::MAX), |_, _| false)?;
                }
                for id in &pending.deleted_volumes {
                    volumes.remove(id)?;
                }
                let deleted_snaps = pending.deleted_snapshots.iter().chain(
                    drained
                        .iter()
                        .flat_map(|d| d.dirty.deleted_snapshots.iter()),
                );
                for id in deleted_snaps {
                    snapshots.remove(id)?;
                }
                meta.insert(records::KEY_NEXT_ID, inner.next_id.load(Ordering::SeqCst))?;
                meta.insert(records::KEY_FORMAT, records::FORMAT)?;
                meta.insert(records::KEY_COMMIT_GENERATION, synced_gen)?;
            }
            crate::app_tables::apply_app_ops(&txn, &pending.app_ops)?;
            txn.commit()?;
            Ok(())
        };
        let result = self.guarded(ctx, || {
            run().map_err(|e| store_error(&inner.meta_label, ctx, e))
        });
        drop(db_guard);
        if let Err(e) = result {
            // After a failed commit redb may refuse further transactions; reopening recovers
            // the last durable state, onto which the retried changes apply again.
            self.discard_db();
            if self.commit_landed(synced_gen) {
                // The failure came after the commit reached the store (a sync after its
                // header was written): the store shows it, so it took effect. Undoing it in
                // memory would part memory from the store.
                tracing::warn!("a metadata commit reported {e} but is in the store: kept");
            } else {
                return Err(e);
            }
        }
        inner.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the store, reopened after a failed commit, holds the commit of generation
    /// `generation` (each commit writes a generation above every earlier one).
    fn commit_landed(&self, generation: u64) -> bool {
        let Ok(db) = self.db() else { return false };
        let db = db.as_ref().expect("db() opens the store");
        let label = &self.inner.meta_label;
        let read = self.guarded("checking a failed commit", || {
            crate::load::read_commit_generation(db, label)
        });
        read.is_ok_and(|g| g == generation)
    }

    /// Puts drained changes back after a failed commit. Newer changes made meanwhile win.
    fn restore(&self, drained: Vec<Drained>, pending: PoolPending, locks: &mut Locks<'_>) {
        let inner = &self.inner;
        let mut back = PoolPending::default();
        for d in drained {
            let handle = d.handle.clone();
            locks.with(&handle, |f| {
                if f.deleted {
                    // The deletion purges the family's entries; its frees wait for that commit.
                    back.frees.extend(d.dirty.frees);
                    back.purge_owners
                        .extend(d.dirty.deleted_snapshots.iter().copied());
                    back.deleted_snapshots.extend(d.dirty.deleted_snapshots);
                    return;
                }
                for (k, v) in d.dirty.entries {
                    f.dirty.entries.entry(k).or_insert(v);
                }
                f.dirty.frees.extend(d.dirty.frees);
                f.dirty.record |= d.dirty.record;
                f.dirty.snapshot_records.extend(d.dirty.snapshot_records);
                f.dirty.deleted_snapshots.extend(d.dirty.deleted_snapshots);
            });
        }
        // No registry lock: the caller holds the commit lock, and pool-level changes are made
        // only by transactions, which hold it too.
        let mut p = inner.pending.lock();
        // The failed commit's table writes come before any made since.
        let newer = std::mem::replace(&mut p.app_ops, pending.app_ops);
        p.app_ops.extend(newer);
        p.frees.extend(pending.frees);
        p.frees.extend(back.frees);
        p.purge_owners.extend(pending.purge_owners);
        p.purge_owners.extend(back.purge_owners);
        p.deleted_volumes.extend(pending.deleted_volumes);
        p.deleted_snapshots.extend(pending.deleted_snapshots);
        p.deleted_snapshots.extend(back.deleted_snapshots);
    }

    /// Commits pending changes and closes the pool. Other clones of this `Pool` stay usable.
    pub fn close(self) -> Result<()> {
        self.flush()
    }

    /// The metadata store, reopened first if a failed commit closed it.
    pub(crate) fn db(&self) -> Result<parking_lot::RwLockReadGuard<'_, Option<redb::Database>>> {
        let inner = &self.inner;
        if inner.db_broken.load(Ordering::SeqCst) {
            self.discard_db();
        }
        {
            let g = inner.db.read();
            if g.is_some() {
                return Ok(g);
            }
        }
        {
            let mut w = inner.db.write();
            if w.is_none() {
                *w = Some(open_db(&inner.meta, &inner.meta_label)?);
            }
        }
        let g = inner.db.read();
        if g.is_none() {
            // Closed again by a failed commit or a panic in the store meanwhile.
            return Err(Error::new(
                ErrorKind::Io,
                "the metadata store closed again while reopening; retry",
            ));
        }
        Ok(g)
    }

    /// Number of metadata commits since open (for tests and metrics).
    pub fn commit_count(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }
}

/// Takes a family's uncommitted changes, with its records encoded, or `None` when clean.
fn drain(h: &Arc<FamilyHandle>, f: &mut crate::family::Family) -> Option<Drained> {
    if f.deleted || f.dirty.is_empty() {
        return None;
    }
    let dirty = std::mem::take(&mut f.dirty);
    let volume = dirty.record.then(|| {
        records::encode(&VolumeRecord {
            name: f.name.clone(),
            size: f.size,
            gen_current: f.gen_current,
            placement: f.placement,
            parent: h.parent.as_ref().map(|(p, s)| (p.id, *s)),
            created_unix: f.created_unix,
            tag: f.tag.clone(),
            guards: f.guards.clone(),
        })
    });
    // Several changes to one snapshot in a commit name it several times: encode it once.
    let mut ids = dirty.snapshot_records.clone();
    ids.sort_unstable();
    ids.dedup();
    let snapshots = ids
        .iter()
        .filter_map(|id| f.snap_index(*id).map(|i| &f.snaps[i]))
        .map(|s| {
            (
                s.id,
                records::encode(&SnapshotRecord {
                    volume: h.id,
                    name: s.name.clone(),
                    generation: s.generation,
                    size: s.size,
                    referenced_extents: s.referenced,
                    created_unix: s.created_unix,
                    tag: s.tag.clone(),
                    guards: s.guards.clone(),
                }),
            )
        })
        .collect();
    Some(Drained {
        handle: h.clone(),
        dirty,
        volume,
        snapshots,
    })
}
