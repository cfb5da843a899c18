//! Transactions for the layers above: control changes plus writes to their own tables,
//! committed in one metadata transaction.
//!
//! The backup catalog needs "a crash leaves both or neither": a backup's snapshot and its
//! catalog record must become durable in the same commit. A [`Txn`] holds the commit lock from
//! its first change to its commit, so no other flush can commit half of it. Its table writes
//! ([`AppOp`]) ride with the pool's pending changes, so a failed commit retries them together
//! with the structural changes they describe.
//!
//! In-memory control changes cannot be rolled back yet: a transaction that made one commits
//! what it did, even when dropped without [`Txn::commit`] (an error there leaves the changes
//! pending for the next flush, which commits them together). Callers validate, and ask for
//! metadata room ([`Txn::admit`]), before they change anything. A transaction that only wrote
//! table rows aborts when dropped without a commit or when its commit fails: its rows are
//! dropped.
//!
//! The tables live in the metadata store as `app:NAME`, keyed and valued by bytes; keys sort
//! bytewise, so big-endian integers make ordered indexes.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::Ordering;

use parking_lot::MutexGuard;
use redb::ReadableDatabase;

use crate::error::{Result, not_found};
use crate::meta_guard::store_error;
use crate::pool::{CommitState, Pool};
use crate::records::APP_TABLE_PREFIX;

/// Longest table name the layers above may use (after the `app:` prefix).
pub const APP_TABLE_NAME_MAX: usize = 64;

/// A write to a table of the layers above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppOp {
    Put {
        table: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: String,
        key: Vec<u8>,
    },
    /// Removes every row of the table.
    Clear {
        table: String,
    },
}

fn check_table(table: &str) {
    // Table names are constants of the layer above: a bad one is a programmer error.
    assert!(
        !table.is_empty()
            && table.len() <= APP_TABLE_NAME_MAX
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "bad application table name {table:?}"
    );
}

fn definition(name: &str) -> redb::TableDefinition<'_, &'static [u8], &'static [u8]> {
    redb::TableDefinition::new(name)
}

pub(crate) fn apply_app_ops(
    txn: &redb::WriteTransaction,
    ops: &[AppOp],
) -> std::result::Result<(), redb::Error> {
    let mut tables: HashMap<String, redb::Table<'_, &'static [u8], &'static [u8]>> = HashMap::new();
    for op in ops {
        let name = match op {
            AppOp::Put { table, .. } | AppOp::Delete { table, .. } | AppOp::Clear { table } => {
                format!("{APP_TABLE_PREFIX}{table}")
            }
        };
        if !tables.contains_key(&name) {
            let t = txn.open_table(definition(&name))?;
            tables.insert(name.clone(), t);
        }
        let t = tables.get_mut(&name).expect("opened above");
        match op {
            AppOp::Put { key, value, .. } => {
                t.insert(key.as_slice(), value.as_slice())?;
            }
            AppOp::Delete { key, .. } => {
                t.remove(key.as_slice())?;
            }
            AppOp::Clear { .. } => {
                t.retain(|_, _| false)?;
            }
        }
    }
    Ok(())
}

const READ_CONTEXT: &str = "reading an application table";

/// A consistent read view of the application tables ([`Pool::app_read`]). Every call into the
/// store is guarded (meta_guard.rs); the caller's `visit` runs outside the guard, so its own
/// panics stay its own.
pub struct AppReader {
    txn: redb::ReadTransaction,
    pool: Pool,
}

impl AppReader {
    fn error(&self, e: impl Into<redb::Error>) -> crate::Error {
        store_error(&self.pool.inner.meta_label, READ_CONTEXT, e.into())
    }

    fn table(
        &self,
        table: &str,
    ) -> Result<Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>> {
        check_table(table);
        let name = format!("{APP_TABLE_PREFIX}{table}");
        self.pool.guarded(READ_CONTEXT, || {
            match self.txn.open_table(definition(&name)) {
                Ok(t) => Ok(Some(t)),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(self.error(e)),
            }
        })
    }

    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(t) = self.table(table)? else {
            return Ok(None);
        };
        self.pool.guarded(READ_CONTEXT, || {
            let v = t.get(key).map_err(|e| self.error(e))?;
            Ok(v.map(|v| v.value().to_vec()))
        })
    }

    /// Visits the rows whose keys lie in the range, in key order (or reverse order), until
    /// `visit` returns false. A table never written is empty.
    pub fn scan(
        &self,
        table: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let ctx = READ_CONTEXT;
        let Some(t) = self.table(table)? else {
            return Ok(());
        };
        if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
            (from, to)
            && a > b
        {
            // redb asserts on inverted ranges; an empty answer is the right one.
            return Ok(());
        }
        let mut range = self.pool.guarded(ctx, || {
            t.range::<&[u8]>((from, to)).map_err(|e| self.error(e))
        })?;
        loop {
            // The store's step is guarded, the caller's visit is not.
            let row = self.pool.guarded(ctx, || {
                let row = if reverse {
                    range.next_back()
                } else {
                    range.next()
                };
                row.transpose().map_err(|e| self.error(e))
            })?;
            match row {
                Some((k, v)) if visit(k.value(), v.value()) => {}
                _ => return Ok(()),
            }
        }
    }
}

/// A transaction: see the module documentation.
pub struct Txn<'a> {
    pool: &'a Pool,
    lock: Option<MutexGuard<'a, CommitState>>,
    ops: Vec<AppOp>,
    /// Metadata room admitted so far ([`Txn::admit`]).
    admitted_bytes: u64,
    /// Whether a control change (create, delete, tag) was made in memory: such a transaction
    /// cannot be undone yet, so a failed commit leaves it pending for the next flush.
    memory_changed: bool,
}

impl Pool {
    /// Starts a transaction. Commits and other transactions wait until it ends.
    pub fn transaction(&self) -> Txn<'_> {
        Txn {
            pool: self,
            lock: Some(self.inner.commit.lock()),
            ops: Vec::new(),
            admitted_bytes: 0,
            memory_changed: false,
        }
    }

    /// Reads one row of an application table.
    pub fn app_get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.app_read(|r| r.get(table, key))
    }

    /// Visits rows of an application table: see [`AppReader::scan`].
    pub fn app_scan(
        &self,
        table: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        self.app_read(|r| r.scan(table, from, to, reverse, visit))
    }

    /// Runs `f` on one consistent read view of the application tables.
    pub fn app_read<T>(&self, f: impl FnOnce(&AppReader) -> Result<T>) -> Result<T> {
        let db = self.db()?;
        let db = db.as_ref().expect("db() opens the store");
        let txn = self.guarded(READ_CONTEXT, || {
            db.begin_read()
                .map_err(|e| store_error(&self.inner.meta_label, READ_CONTEXT, e.into()))
        })?;
        let reader = AppReader {
            txn,
            pool: self.clone(),
        };
        let r = f(&reader);
        // Ending the read transaction is a call into the store too.
        self.guarded(READ_CONTEXT, move || {
            drop(reader);
            Ok(())
        })?;
        r
    }

    /// Protects a volume (or lifts the protection with `None`): while set, deleting or resizing
    /// it is refused and hosts get it read-only, with `why` in the error. Not stored: the layer
    /// above sets it again after every open. Writes through [`Pool::export_unguarded`] pass.
    pub fn set_volume_guard(&self, volume: &str, why: Option<String>) -> Result<()> {
        let h = self.lookup_family(volume)?;
        let mut f = h.cell.write();
        if f.deleted {
            return Err(not_found(format_args!("volume {volume}")));
        }
        f.guard = why;
        Ok(())
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

    /// Protects a snapshot from deletion (see [`Pool::set_volume_guard`]).
    pub fn set_snapshot_guard(
        &self,
        volume: &str,
        snapshot: &str,
        why: Option<String>,
    ) -> Result<()> {
        let h = self.lookup_family(volume)?;
        let mut f = h.cell.write();
        let s = f
            .snaps
            .iter_mut()
            .find(|s| s.name == snapshot)
            .ok_or_else(|| not_found(format_args!("snapshot {volume}@{snapshot}")))?;
        s.guard = why;
        Ok(())
    }

    /// Logical extents (in extent units, ascending) where the live volume may differ from its
    /// snapshot: those written or trimmed since. Costs what changed, not the volume's size.
    pub fn changed_extents(&self, volume: &str, snapshot: &str) -> Result<Vec<u64>> {
        let h = self.lookup_family(volume)?;
        let f = h.cell.read();
        let i = f
            .snaps
            .iter()
            .position(|s| s.name == snapshot)
            .ok_or_else(|| not_found(format_args!("snapshot {volume}@{snapshot}")))?;
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

    /// Bytes that deleting all of `snapshots` (of one volume) together would free: extents
    /// that only they see. Exact, and more than the sum of their unique bytes when they share
    /// extents only with each other.
    pub fn bytes_freed_by_deleting(&self, volume: &str, snapshots: &[&str]) -> Result<u64> {
        let h = self.lookup_family(volume)?;
        let f = h.cell.read();
        let mut doomed = vec![false; f.snaps.len()];
        for name in snapshots {
            let i = f
                .snaps
                .iter()
                .position(|s| s.name == *name)
                .ok_or_else(|| not_found(format_args!("snapshot {volume}@{name}")))?;
            doomed[i] = true;
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
        self.inner
            .registry
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(format_args!("volume {name}")))
    }
}

/// Metadata room counted for one new volume or snapshot record (the record, its key and the
/// table pages it touches); a tag attached later is counted by its size.
const RECORD_ROOM_BYTES: u64 = 512;

impl Txn<'_> {
    /// Asks for room for about `bytes` of new metadata (see `meta_space.rs`); refused with
    /// [`crate::ErrorKind::NoSpace`] when the metadata region is nearly full. Call it before
    /// changing anything: what adds must be refused whole. Room asked for earlier in the same
    /// transaction counts too.
    pub fn admit(&mut self, what: &str, bytes: u64) -> Result<()> {
        let total = self.admitted_bytes.saturating_add(bytes);
        self.pool.admit_metadata(what, total)?;
        self.admitted_bytes = total;
        Ok(())
    }

    pub fn create_volume(&mut self, name: &str, size: u64, placement: Option<u32>) -> Result<()> {
        self.admit(&format!("creating volume {name}"), RECORD_ROOM_BYTES)?;
        self.memory_changed = true;
        self.pool.create_volume_mem(name, size, placement)
    }

    /// Snapshots every `(volume, snapshot name)` at one instant (see
    /// [`Pool::create_snapshot`]). All or none.
    pub fn create_snapshots(&mut self, items: &[(&str, &str)]) -> Result<()> {
        let what = match items {
            [(v, s)] => format!("creating snapshot {v}@{s}"),
            _ => format!("creating {} snapshots", items.len()),
        };
        self.admit(&what, RECORD_ROOM_BYTES * items.len() as u64)?;
        self.memory_changed = true;
        self.pool.create_snapshots_mem(items).map(|_| ())
    }

    pub fn clone_snapshot(
        &mut self,
        volume: &str,
        snapshot: &str,
        name: &str,
        placement: Option<u32>,
    ) -> Result<()> {
        self.admit(
            &format!("cloning {volume}@{snapshot} as {name}"),
            RECORD_ROOM_BYTES,
        )?;
        self.memory_changed = true;
        self.pool
            .clone_snapshot_mem(volume, snapshot, name, placement)
    }

    pub fn delete_snapshot(&mut self, volume: &str, name: &str) -> Result<()> {
        self.memory_changed = true;
        self.pool.delete_snapshot_mem(volume, name)
    }

    pub fn delete_volume(&mut self, name: &str, with_snapshots: bool) -> Result<()> {
        self.memory_changed = true;
        self.pool.delete_volume_mem(name, with_snapshots)
    }

    /// Attaches a descriptor to a volume, stored with its record.
    pub fn set_volume_tag(&mut self, volume: &str, tag: Option<Vec<u8>>) -> Result<()> {
        let h = self.pool.lookup_family(volume)?;
        let mut f = h.cell.write();
        if f.deleted {
            return Err(not_found(format_args!("volume {volume}")));
        }
        f.tag = tag;
        f.dirty.record = true;
        self.memory_changed = true;
        Ok(())
    }

    /// Attaches a descriptor to a snapshot, stored with its record.
    pub fn set_snapshot_tag(
        &mut self,
        volume: &str,
        snapshot: &str,
        tag: Option<Vec<u8>>,
    ) -> Result<()> {
        let h = self.pool.lookup_family(volume)?;
        let mut f = h.cell.write();
        let s = f
            .snaps
            .iter_mut()
            .find(|s| s.name == snapshot)
            .ok_or_else(|| not_found(format_args!("snapshot {volume}@{snapshot}")))?;
        s.tag = tag;
        let id = s.id;
        f.dirty.snapshot_records.push(id);
        self.memory_changed = true;
        Ok(())
    }

    pub fn put(&mut self, table: &str, key: Vec<u8>, value: Vec<u8>) {
        check_table(table);
        self.ops.push(AppOp::Put {
            table: table.to_string(),
            key,
            value,
        });
    }

    pub fn delete(&mut self, table: &str, key: Vec<u8>) {
        check_table(table);
        self.ops.push(AppOp::Delete {
            table: table.to_string(),
            key,
        });
    }

    pub fn clear(&mut self, table: &str) {
        check_table(table);
        self.ops.push(AppOp::Clear {
            table: table.to_string(),
        });
    }

    /// Commits everything the transaction did, durably, in one metadata transaction.
    pub fn commit(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        let Some(mut lock) = self.lock.take() else {
            return Ok(());
        };
        let ops = self.ops.len();
        {
            // Under the registry lock, as every pool-level pending change is made.
            let _reg = self.pool.inner.registry.read();
            self.pool.inner.pending.lock().app_ops.append(&mut self.ops);
        }
        let result = self.pool.flush_locked(&mut lock);
        if result.is_err() && !self.memory_changed {
            // Only table rows: the transaction aborts. A failed commit put back exactly what it
            // tried, with these rows last, and nothing was added since: the commit lock is
            // still held. Left pending, rows that cannot fit would fail every later flush.
            let _reg = self.pool.inner.registry.read();
            let mut pending = self.pool.inner.pending.lock();
            let keep = pending.app_ops.len().saturating_sub(ops);
            pending.app_ops.truncate(keep);
        }
        result
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if self.lock.is_some() && !self.memory_changed {
            // Only table rows, never committed: the transaction aborts (dropping the lock and
            // the rows), as a caller returning early on an error expects.
            return;
        }
        if self.lock.is_some()
            && let Err(e) = self.finish()
        {
            tracing::warn!("a transaction's commit failed: {e}");
        }
    }
}
