//! Transactions: control changes, guards and the layers above's table rows, committed in one
//! metadata transaction, or not at all.
//!
//! The backup catalog needs "a crash leaves both or neither": a backup's snapshot, its guard
//! and its catalog record become durable in the same commit. A [`Txn`] holds the commit lock
//! from its start to its end, so no other commit can take half of it.
//!
//! Plan, then apply. Each method checks its change against the pool as the transaction's
//! earlier changes would leave it (a staged view: memory plus the planned ops) and records it;
//! memory is untouched, so other threads see nothing of a transaction before its commit.
//! Dropping a transaction without [`Txn::commit`] leaves the pool as if it never started.
//! `commit` applies the ops to memory in order (checking each again), then flushes; when the
//! flush fails (a device sync or the metadata commit), every applied op is undone, so memory
//! is what it was before the call. Ids handed out stay consumed, and a volume's generation
//! counter may have moved on: neither is visible.
//!
//! Undo with host I/O running (see txn_undo.rs for each op):
//! - a created volume or clone is removed as a delete would (host writes to it meanwhile are
//!   freed, after the next durable commit, like any deleted volume's);
//! - a created snapshot is deleted: host writes meanwhile pushed old data into its delta, and
//!   deleting it moves that data where it would have gone without it;
//! - a deleted volume refuses I/O while deleted, so it comes back exactly as it went; its
//!   commit holds the volume's lock like a snapshot deletion's (below), so hosts wait for the
//!   outcome instead of seeing the volume gone by a transaction that may still fail;
//! - a deleted snapshot cannot be undone exactly once writes have moved on (deleting the
//!   newest snapshot lets overwrites free data it held). So a transaction that deletes a
//!   snapshot holds the write locks of the families it touches, and of their clones, from
//!   before applying until its flush ends (and the registry lock, in write mode, the same
//!   time): I/O to those volumes waits for the commit, and undo restores exactly what moved.
//!   This cannot deadlock: registry then families is the pool's lock order; families are
//!   taken by descending id as everywhere; a thread holding a family lock waits only for its
//!   ancestors' locks (a clone reading through its origin), and clones of held families are
//!   held too, so no thread holding a lock the flush needs waits for one the transaction
//!   holds. The flush drains held families through the held guards.

use parking_lot::MutexGuard;

use crate::app_tables::{AppOp, check_table};
use crate::error::{Error, ErrorKind, Result, not_found};
use crate::guards::{self, Guard, GuardEffect, GuardOwner};
use crate::names;
use crate::pool::{CommitState, Pool, SNAPSHOTS_PER_VOLUME_MAX, check_size};

/// A planned control change.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    CreateVolume {
        id: u64,
        name: String,
        size: u64,
        placement: Option<u32>,
    },
    Clone {
        id: u64,
        volume: String,
        snapshot: String,
        name: String,
        placement: Option<u32>,
    },
    /// (volume, snapshot name, snapshot id), taken at one instant.
    CreateSnapshots {
        items: Vec<(String, String, u64)>,
    },
    DeleteSnapshot {
        volume: String,
        name: String,
    },
    DeleteVolume {
        name: String,
        with_snapshots: bool,
    },
    VolumeTag {
        volume: String,
        tag: Option<Vec<u8>>,
    },
    SnapshotTag {
        volume: String,
        snapshot: String,
        tag: Option<Vec<u8>>,
    },
    /// Puts `guard` (`Some`) or removes `owner`'s guard (`None`) on a volume, or on one of its
    /// snapshots.
    Guard {
        volume: String,
        snapshot: Option<String>,
        owner: GuardOwner,
        guard: Option<Guard>,
    },
}

/// A transaction: see the module documentation.
pub struct Txn<'a> {
    pub(crate) pool: &'a Pool,
    pub(crate) lock: Option<MutexGuard<'a, CommitState>>,
    pub(crate) ops: Vec<Op>,
    pub(crate) app: Vec<AppOp>,
    /// Metadata room admitted so far ([`Txn::admit`]).
    admitted_bytes: u64,
}

impl Pool {
    /// Starts a transaction. Commits and other transactions wait until it ends.
    pub fn transaction(&self) -> Txn<'_> {
        Txn {
            pool: self,
            lock: Some(self.inner.commit.lock()),
            ops: Vec::new(),
            app: Vec::new(),
            admitted_bytes: 0,
        }
    }
}

/// Metadata room counted for one new volume or snapshot record (the record, its key and the
/// table pages it touches); a tag attached later is counted by its size.
const RECORD_ROOM_BYTES: u64 = 512;

/// A volume as the transaction's planned ops would leave it.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    pub id: u64,
    pub guards: Vec<Guard>,
    /// (name, id, guards), oldest first.
    pub snaps: Vec<(String, u64, Vec<Guard>)>,
    /// Whether memory holds this volume (not one the transaction creates).
    pub in_memory: bool,
    pub gen_exhausted: bool,
}

impl Staged {
    fn snap(&self, name: &str) -> Option<&(String, u64, Vec<Guard>)> {
        self.snaps.iter().find(|s| s.0 == name)
    }
}

impl Txn<'_> {
    /// The volume `name` as memory plus the planned ops show it, or `None`.
    pub(crate) fn staged(&self, name: &str) -> Option<Staged> {
        let mut cur = self.pool.lookup_family(name).ok().map(|h| {
            let f = h.cell.read();
            Staged {
                id: h.id,
                guards: f.guards.clone(),
                snaps: f
                    .snaps
                    .iter()
                    .map(|s| (s.name.clone(), s.id, s.guards.clone()))
                    .collect(),
                in_memory: !f.deleted,
                gen_exhausted: f.gen_current >= u32::MAX - 1,
            }
        });
        if cur.as_ref().is_some_and(|c| !c.in_memory) {
            cur = None;
        }
        let fresh = |id: u64| Staged {
            id,
            guards: Vec::new(),
            snaps: Vec::new(),
            in_memory: false,
            gen_exhausted: false,
        };
        for op in &self.ops {
            match op {
                Op::CreateVolume { id, name: n, .. } | Op::Clone { id, name: n, .. }
                    if n == name =>
                {
                    cur = Some(fresh(*id));
                }
                Op::DeleteVolume { name: n, .. } if n == name => cur = None,
                Op::CreateSnapshots { items } => {
                    if let Some(c) = cur.as_mut() {
                        for (v, s, id) in items {
                            if v == name {
                                c.snaps.push((s.clone(), *id, Vec::new()));
                            }
                        }
                    }
                }
                Op::DeleteSnapshot { volume, name: s } if volume == name => {
                    if let Some(c) = cur.as_mut() {
                        c.snaps.retain(|x| &x.0 != s);
                    }
                }
                Op::Guard {
                    volume,
                    snapshot,
                    owner,
                    guard,
                } if volume == name => {
                    if let Some(c) = cur.as_mut() {
                        let set = match snapshot {
                            None => Some(&mut c.guards),
                            Some(s) => c.snaps.iter_mut().find(|x| &x.0 == s).map(|x| &mut x.2),
                        };
                        if let Some(set) = set {
                            match guard {
                                // Checked when planned.
                                Some(g) => drop(guards::put(set, g.clone())),
                                None => guards::remove(set, *owner),
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        cur
    }

    /// Names of the clones of `volume`'s snapshot `snap` (or of any of its snapshots) as the
    /// planned ops leave them.
    fn staged_clones(&self, volume: &str, v: &Staged, snap: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        let snap_id = snap.map(|s| v.snap(s).map(|x| x.1));
        // A snapshot only planned (no id in memory yet) has no clones in memory.
        if v.in_memory && snap_id != Some(None) {
            let reg = self.pool.inner.registry.read();
            out = crate::control::clones_of(&reg, v.id, snap_id.flatten());
        }
        for op in &self.ops {
            if let Op::Clone {
                volume: from,
                snapshot,
                name,
                ..
            } = op
                && from == volume
                && snap.is_none_or(|s| s == snapshot)
            {
                out.push(name.clone());
            }
        }
        // Only those the planned ops leave standing.
        out.retain(|n| self.staged(n).is_some());
        out.sort();
        out.dedup();
        out
    }

    fn staged_volume(&self, name: &str) -> Result<Staged> {
        self.staged(name)
            .ok_or_else(|| not_found(format_args!("volume {name}")))
    }

    /// Whether the volume exists as the planned ops leave it.
    pub fn volume_exists(&self, name: &str) -> bool {
        self.staged(name).is_some()
    }

    /// Whether the snapshot exists as the planned ops leave it.
    pub fn snapshot_exists(&self, volume: &str, snapshot: &str) -> bool {
        self.staged(volume)
            .is_some_and(|v| v.snap(snapshot).is_some())
    }

    /// The guards of a volume (or of one of its snapshots) as the planned ops leave them.
    pub fn guards(&self, volume: &str, snapshot: Option<&str>) -> Result<Vec<Guard>> {
        let v = self.staged_volume(volume)?;
        match snapshot {
            None => Ok(v.guards),
            Some(s) => v
                .snap(s)
                .map(|x| x.2.clone())
                .ok_or_else(|| not_found(format_args!("snapshot {volume}@{s}"))),
        }
    }

    /// Asks for room for about `bytes` of new metadata (see `meta_space.rs`); refused with
    /// [`crate::ErrorKind::NoSpace`] when the metadata region is nearly full. Room asked for
    /// earlier in the same transaction counts too.
    pub fn admit(&mut self, what: &str, bytes: u64) -> Result<()> {
        let total = self.admitted_bytes.saturating_add(bytes);
        self.pool.admit_metadata(what, total)?;
        self.admitted_bytes = total;
        Ok(())
    }

    fn new_id(&self) -> u64 {
        self.pool
            .inner
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// Plans a thin volume of `size` bytes; returns its id.
    pub fn create_volume(&mut self, name: &str, size: u64, placement: Option<u32>) -> Result<u64> {
        names::validate("volume", name)?;
        check_size(size)?;
        self.pool.check_placement(placement)?;
        if self.staged(name).is_some() {
            return Err(exists("volume", name));
        }
        self.admit(&format!("creating volume {name}"), RECORD_ROOM_BYTES)?;
        let id = self.new_id();
        self.ops.push(Op::CreateVolume {
            id,
            name: name.to_string(),
            size,
            placement,
        });
        Ok(id)
    }

    /// Plans snapshots of every `(volume, snapshot name)` at one instant (see
    /// [`Pool::create_snapshot`]); returns their ids. All or none.
    pub fn create_snapshots(&mut self, items: &[(&str, &str)]) -> Result<Vec<u64>> {
        let mut seen: Vec<u64> = Vec::new();
        for &(volume, name) in items {
            names::validate("snapshot", name)?;
            let v = self.staged_volume(volume)?;
            if seen.contains(&v.id) {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("volume {volume} is named twice"),
                ));
            }
            seen.push(v.id);
            if v.snap(name).is_some() {
                return Err(exists("snapshot", &format!("{volume}@{name}")));
            }
            if v.snaps.len() >= SNAPSHOTS_PER_VOLUME_MAX || v.gen_exhausted {
                return Err(Error::new(
                    ErrorKind::NoSpace,
                    format!(
                        "volume {volume} has reached its limit of {SNAPSHOTS_PER_VOLUME_MAX} \
                         snapshots"
                    ),
                ));
            }
        }
        let what = match items {
            [(v, s)] => format!("creating snapshot {v}@{s}"),
            _ => format!("creating {} snapshots", items.len()),
        };
        self.admit(&what, RECORD_ROOM_BYTES * items.len() as u64)?;
        let items: Vec<(String, String, u64)> = items
            .iter()
            .map(|(v, s)| (v.to_string(), s.to_string(), self.new_id()))
            .collect();
        let ids = items.iter().map(|x| x.2).collect();
        self.ops.push(Op::CreateSnapshots { items });
        Ok(ids)
    }

    /// Plans a writable volume made from a snapshot; returns its id.
    pub fn clone_snapshot(
        &mut self,
        volume: &str,
        snapshot: &str,
        name: &str,
        placement: Option<u32>,
    ) -> Result<u64> {
        names::validate("volume", name)?;
        self.pool.check_placement(placement)?;
        if self.staged(name).is_some() {
            return Err(exists("volume", name));
        }
        let v = self.staged_volume(volume)?;
        if v.snap(snapshot).is_none() {
            return Err(not_found(format_args!("snapshot {volume}@{snapshot}")));
        }
        self.admit(
            &format!("cloning {volume}@{snapshot} as {name}"),
            RECORD_ROOM_BYTES,
        )?;
        let id = self.new_id();
        self.ops.push(Op::Clone {
            id,
            volume: volume.to_string(),
            snapshot: snapshot.to_string(),
            name: name.to_string(),
            placement,
        });
        Ok(id)
    }

    /// Plans deleting a snapshot. Refused while clones of it exist or a guard refuses it.
    pub fn delete_snapshot(&mut self, volume: &str, name: &str) -> Result<()> {
        let v = self.staged_volume(volume)?;
        let s = v
            .snap(name)
            .ok_or_else(|| not_found(format_args!("snapshot {volume}@{name}")))?;
        let what = format!("snapshot {volume}@{name}");
        if let Some(e) = guards::refusal(&what, &s.2, GuardEffect::NO_DELETE) {
            return Err(e);
        }
        let clones = self.staged_clones(volume, &v, Some(name));
        if !clones.is_empty() {
            return Err(clones_refusal(&format!("{what} has clones"), &clones));
        }
        self.ops.push(Op::DeleteSnapshot {
            volume: volume.to_string(),
            name: name.to_string(),
        });
        Ok(())
    }

    /// Plans deleting a volume: see [`Pool::delete_volume`].
    pub fn delete_volume(&mut self, name: &str, with_snapshots: bool) -> Result<()> {
        let v = self.staged_volume(name)?;
        let clones = self.staged_clones(name, &v, None);
        let snaps: Vec<&str> = v.snaps.iter().map(|s| s.0.as_str()).collect();
        let guards: Vec<(String, &[Guard])> =
            std::iter::once((format!("volume {name}"), &v.guards[..]))
                .chain(
                    v.snaps
                        .iter()
                        .map(|s| (format!("snapshot {name}@{}", s.0), &s.2[..])),
                )
                .collect();
        if let Some(e) = delete_refusal(name, &clones, &guards, &snaps, with_snapshots) {
            return Err(e);
        }
        self.ops.push(Op::DeleteVolume {
            name: name.to_string(),
            with_snapshots,
        });
        Ok(())
    }

    /// Attaches a descriptor to a volume, stored with its record.
    pub fn set_volume_tag(&mut self, volume: &str, tag: Option<Vec<u8>>) -> Result<()> {
        self.staged_volume(volume)?;
        self.ops.push(Op::VolumeTag {
            volume: volume.to_string(),
            tag,
        });
        Ok(())
    }

    /// Attaches a descriptor to a snapshot, stored with its record.
    pub fn set_snapshot_tag(
        &mut self,
        volume: &str,
        snapshot: &str,
        tag: Option<Vec<u8>>,
    ) -> Result<()> {
        if !self.snapshot_exists(volume, snapshot) {
            return Err(not_found(format_args!("snapshot {volume}@{snapshot}")));
        }
        self.ops.push(Op::SnapshotTag {
            volume: volume.to_string(),
            snapshot: snapshot.to_string(),
            tag,
        });
        Ok(())
    }

    fn plan_guard(
        &mut self,
        volume: &str,
        snapshot: Option<&str>,
        owner: GuardOwner,
        guard: Option<Guard>,
    ) -> Result<()> {
        let mut set = self.guards(volume, snapshot)?;
        if let Some(g) = &guard {
            guards::check_guard(g)?;
            guards::put(&mut set, g.clone())?;
        } else if !set.iter().any(|g| g.owner == owner) {
            // Nothing to remove: no op, so a no-op transaction commits nothing.
            return Ok(());
        }
        self.ops.push(Op::Guard {
            volume: volume.to_string(),
            snapshot: snapshot.map(str::to_string),
            owner,
            guard,
        });
        Ok(())
    }

    /// Puts `guard` on a volume, replacing its owner's guard there if any.
    pub fn add_volume_guard(&mut self, volume: &str, guard: Guard) -> Result<()> {
        self.plan_guard(volume, None, guard.owner, Some(guard))
    }

    /// Removes `owner`'s guard from a volume (nothing when it has none).
    pub fn remove_volume_guard(&mut self, volume: &str, owner: GuardOwner) -> Result<()> {
        self.plan_guard(volume, None, owner, None)
    }

    /// Puts `guard` on a snapshot, replacing its owner's guard there if any.
    pub fn add_snapshot_guard(&mut self, volume: &str, snapshot: &str, guard: Guard) -> Result<()> {
        self.plan_guard(volume, Some(snapshot), guard.owner, Some(guard))
    }

    /// Removes `owner`'s guard from a snapshot (nothing when it has none).
    pub fn remove_snapshot_guard(
        &mut self,
        volume: &str,
        snapshot: &str,
        owner: GuardOwner,
    ) -> Result<()> {
        self.plan_guard(volume, Some(snapshot), owner, None)
    }

    pub fn put(&mut self, table: &str, key: Vec<u8>, value: Vec<u8>) {
        check_table(table);
        self.app.push(AppOp::Put {
            table: table.to_string(),
            key,
            value,
        });
    }

    pub fn delete(&mut self, table: &str, key: Vec<u8>) {
        check_table(table);
        self.app.push(AppOp::Delete {
            table: table.to_string(),
            key,
        });
    }

    pub fn clear(&mut self, table: &str) {
        check_table(table);
        self.app.push(AppOp::Clear {
            table: table.to_string(),
        });
    }
}

/// Deleting is refused while clones (named) depend on what is deleted.
fn clones_refusal(subject: &str, clones: &[String]) -> Error {
    let names = clones.join(", ");
    Error::new(
        ErrorKind::Busy,
        format!("{subject}: {names}; delete them first"),
    )
}

/// Why a volume cannot be deleted: clones of its snapshots, a guard refusing deletion on it or
/// on one of its snapshots (`guards`: what, guards), or snapshots when they are not to go
/// with it.
pub(crate) fn delete_refusal(
    name: &str,
    clones: &[String],
    guards: &[(String, &[Guard])],
    snaps: &[&str],
    with_snapshots: bool,
) -> Option<Error> {
    if !clones.is_empty() {
        let subject = format!("volume {name} has clones of its snapshots");
        return Some(clones_refusal(&subject, clones));
    }
    for (what, set) in guards {
        if let Some(e) = guards::refusal(what, set, GuardEffect::NO_DELETE) {
            return Some(e);
        }
    }
    if !snaps.is_empty() && !with_snapshots {
        return Some(Error::new(
            ErrorKind::Busy,
            format!(
                "volume {name} has {} snapshot(s): {}; delete them first or delete with its \
                 snapshots",
                snaps.len(),
                snaps.join(", ")
            ),
        ));
    }
    None
}

pub(crate) fn exists(what: &str, name: &str) -> Error {
    Error::new(
        ErrorKind::AlreadyExists,
        format!("{what} {name} already exists"),
    )
}
