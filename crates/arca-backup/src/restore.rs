//! Restores: in place (with an undo point) or as a new volume, one backup or a whole set.
//!
//! In place from a snapshot backup into its own volume costs what changed since the backup:
//! the store names the extents written or trimmed since the snapshot, and only those are put
//! back (copied from the snapshot, or unmapped where it had a hole). Other in-place restores
//! copy the whole image, skipping holes. While a restore runs its volume is guarded, so hosts
//! that reconnect get it read-only.

use std::sync::Arc;

use arca_store::{Error, Export, Result};
use serde::Serialize;

use crate::backups::{
    Backups, DISCONNECT_WAIT, RESTORE_GUARD_PREFIX, backup_not_found, busy, invalid,
};
use crate::catalog;
use crate::create::CreateRequest;
use crate::digest::{self, Piece};
use crate::jobs::{JobContext, JobError};
use crate::record::{BackupRecord, Destination, Event, HostInfo, Method, Status};

#[derive(Debug, Clone)]
pub enum RestoreTo {
    /// Into a volume (the source when `None`), replacing its content.
    InPlace { volume: Option<String>, force: bool },
    /// Into a new volume.
    New { name: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub backups: Vec<u64>,
    pub volumes: Vec<String>,
    /// The automatic undo point (a catalogued snapshot backup labelled `pre-restore`).
    pub undo_backups: Vec<u64>,
    /// The job doing the work; `None` when the restore was instant.
    pub job: Option<u64>,
}

struct Plan {
    record: BackupRecord,
    volume: String,
}

impl Backups {
    fn restorable(&self, id: u64) -> Result<BackupRecord> {
        let r = self.get(id)?;
        if r.status != Status::Complete {
            return Err(busy(format!(
                "backup {id} is {}; only a complete backup can be restored",
                r.status.as_str()
            )));
        }
        Ok(r)
    }

    /// Restores one backup, or (with `set`) every backup of a backup set in place into its
    /// source volume.
    pub fn restore(self: &Arc<Self>, id: u64, to: RestoreTo) -> Result<Restored> {
        let r = self.restorable(id)?;
        match to {
            RestoreTo::New { name } => self.restore_new(r, &name),
            RestoreTo::InPlace { volume, force } => {
                let volume = match volume {
                    Some(v) => v,
                    None => {
                        self.volume_by_id(r.source.volume_id)
                            .ok_or_else(|| {
                                invalid(format!(
                                    "the source of backup {id} ({}) no longer exists; name a \
                                     volume to restore into",
                                    r.source.volume_name
                                ))
                            })?
                            .name
                    }
                };
                self.restore_in_place(vec![Plan { record: r, volume }], force)
            }
        }
    }

    /// Restores every complete backup of a set in place, as a unit: one undo point for all of
    /// them (itself a set), then one job.
    pub fn restore_set(self: &Arc<Self>, set_id: u64, force: bool) -> Result<Restored> {
        let q = catalog::Query {
            set_id: Some(set_id),
            limit: catalog::QUERY_LIMIT_MAX,
            ..catalog::Query::default()
        };
        let members = catalog::query(&self.pool, &q)?;
        if members.is_empty() {
            return Err(Error::new(
                arca_store::ErrorKind::NotFound,
                format!("backup set {set_id} does not exist"),
            ));
        }
        let mut plans = Vec::new();
        for m in members {
            let r = self.restorable(m.id)?;
            let v = self.volume_by_id(r.source.volume_id).ok_or_else(|| {
                invalid(format!(
                    "volume {} of set {set_id} no longer exists",
                    r.source.volume_name
                ))
            })?;
            plans.push(Plan {
                record: r,
                volume: v.name,
            });
        }
        self.restore_in_place(plans, force)
    }

    fn restore_new(self: &Arc<Self>, r: BackupRecord, name: &str) -> Result<Restored> {
        let id = r.id;
        match &r.destination {
            Destination::Snapshot { snapshot, .. } => {
                // Instant: a clone shares the snapshot's extents.
                let src = self
                    .volume_by_id(r.source.volume_id)
                    .ok_or_else(|| backup_not_found(id))?;
                self.pool.clone_snapshot(&src.name, snapshot, name, None)?;
                self.note_restored(id, name, false)?;
                Ok(Restored {
                    backups: vec![id],
                    volumes: vec![name.to_string()],
                    undo_backups: Vec::new(),
                    job: None,
                })
            }
            Destination::Volume { .. } => {
                let (_, image) = self.image(&r)?;
                self.pool.create_volume(name, r.source.size, None)?;
                // Hosts see it read-only until it is whole; a failed copy removes it.
                self.pool.set_volume_guard(
                    name,
                    Some(format!("{RESTORE_GUARD_PREFIX} from backup {id}")),
                )?;
                let me = self.clone();
                let target = name.to_string();
                let started = self.jobs.start("restore", name, move |ctx| {
                    let copy = (|| -> Result<(), JobError> {
                        let to = me.pool.export_unguarded(&target)?;
                        let es = me.pool.status().extent_size;
                        ctx.set_total(r.source.size);
                        copy_image(&image, &to, r.source.size, es, true, ctx)?;
                        me.pool.flush()?;
                        Ok(())
                    })();
                    let _ = me.pool.set_volume_guard(&target, None);
                    if let Err(e) = copy {
                        if let Err(x) = me.pool.delete_volume(&target, false) {
                            tracing::warn!(volume = %target, "removing a failed restore: {x}");
                        }
                        return Err(e);
                    }
                    me.note_restored(id, &target, false)?;
                    Ok(Some(format!("{{\"backup\":{id},\"volume\":\"{target}\"}}")))
                });
                let job = match started {
                    Ok(j) => j,
                    Err(e) => {
                        let _ = self.pool.set_volume_guard(name, None);
                        let _ = self.pool.delete_volume(name, false);
                        return Err(Error::io("starting a restore job", e));
                    }
                };
                Ok(Restored {
                    backups: vec![id],
                    volumes: vec![name.to_string()],
                    undo_backups: Vec::new(),
                    job: Some(job.id()),
                })
            }
        }
    }

    fn note_restored(&self, id: u64, to: &str, in_place: bool) -> Result<()> {
        self.update(id, |r| {
            r.push_history(
                self.now_ms(),
                Event::Restored {
                    to: to.to_string(),
                    in_place,
                },
            );
            Ok(())
        })
        .map(|_| ())
    }

    fn restore_in_place(self: &Arc<Self>, plans: Vec<Plan>, force: bool) -> Result<Restored> {
        // Checks first, so a refusal changes nothing.
        for p in &plans {
            let v = self.pool.volume(&p.volume)?;
            if let Some(g) = &v.guard {
                return Err(busy(format!("cannot restore into {}: {g}", v.name)));
            }
            if v.size < p.record.source.size {
                return Err(invalid(format!(
                    "volume {} is {} bytes, smaller than backup {} ({} bytes)",
                    v.name, v.size, p.record.id, p.record.source.size
                )));
            }
            let hosts = self.hosts.connected(&v.name);
            if !hosts.is_empty() && !force {
                return Err(busy(format!(
                    "volume {} has {} host connection(s) ({}); disconnect them first, or \
                     restore with --force to disconnect them",
                    v.name,
                    hosts.len(),
                    hosts.join(", ")
                )));
            }
        }
        let why = |p: &Plan| format!("{RESTORE_GUARD_PREFIX} from backup {}", p.record.id);
        for p in &plans {
            self.pool.set_volume_guard(&p.volume, Some(why(p)))?;
        }
        let lift = |me: &Backups, plans: &[Plan]| {
            for p in plans {
                if let Err(e) = me.pool.set_volume_guard(&p.volume, None) {
                    tracing::warn!(volume = %p.volume, "lifting the restore guard: {e}");
                }
            }
        };
        for p in &plans {
            // The guard already refuses their writes; now they go.
            if self.hosts.disconnect(&p.volume) > 0
                && !self.hosts.wait_disconnected(&p.volume, DISCONNECT_WAIT)
            {
                lift(self, &plans);
                return Err(busy(format!(
                    "hosts of {} did not disconnect within {} s",
                    p.volume,
                    DISCONNECT_WAIT.as_secs()
                )));
            }
        }
        // The undo point: one catalogued snapshot backup (a set when several volumes).
        let source_ids: Vec<String> = plans.iter().map(|p| p.record.id.to_string()).collect();
        let undo = self.create(CreateRequest {
            volumes: plans.iter().map(|p| p.volume.clone()).collect(),
            to: None,
            method: Some(Method::Snapshot),
            info: HostInfo {
                program: Some("arca".into()),
                label: Some("pre-restore".into()),
                description: Some(format!(
                    "undo point taken before restoring backup {}",
                    source_ids.join(", ")
                )),
                ..HostInfo::default()
            },
            retention: Default::default(),
        });
        let undo = match undo {
            Ok(u) => u,
            Err(e) => {
                lift(self, &plans);
                return Err(e);
            }
        };
        let undo_ids: Vec<u64> = undo.records.iter().map(|r| r.id).collect();
        let me = self.clone();
        let backups: Vec<u64> = plans.iter().map(|p| p.record.id).collect();
        let volumes: Vec<String> = plans.iter().map(|p| p.volume.clone()).collect();
        let target = volumes.join(",");
        let started = self.jobs.start("restore", &target, move |ctx| {
            let r = me.restore_body(&plans, ctx);
            lift(&me, &plans);
            r
        });
        match started {
            Ok(job) => Ok(Restored {
                backups,
                volumes,
                undo_backups: undo_ids,
                job: Some(job.id()),
            }),
            Err(e) => {
                for v in &volumes {
                    let _ = self.pool.set_volume_guard(v, None);
                }
                Err(Error::io("starting a restore job", e))
            }
        }
    }

    fn restore_body(&self, plans: &[Plan], ctx: &JobContext) -> Result<Option<String>, JobError> {
        let es = self.pool.status().extent_size;
        let mut report = Vec::new();
        // Progress over the whole set: what each volume will rewrite, known up front.
        let mut total = 0;
        let mut diffs = Vec::new();
        for p in plans {
            let r = &p.record;
            let v = self.pool.volume(&p.volume)?;
            let diff = match &r.destination {
                Destination::Snapshot { snapshot, .. } if v.id == r.source.volume_id => {
                    Some(self.pool.changed_extents(&v.name, snapshot)?)
                }
                _ => None,
            };
            total += diff.as_ref().map_or(v.size, |d| d.len() as u64 * es);
            diffs.push(diff);
        }
        ctx.set_total(total);
        for (p, diff) in plans.iter().zip(diffs) {
            let r = &p.record;
            let v = self.pool.volume(&p.volume)?;
            let to = self.pool.export_unguarded(&p.volume)?;
            let (_, image) = self.image(r)?;
            let bytes = match diff {
                Some(changed) => {
                    restore_extents(&image, &to, r.source.size, v.size, es, &changed, ctx)?;
                    changed.len() as u64 * es
                }
                None => {
                    copy_image(&image, &to, r.source.size, es, false, ctx)?;
                    if v.size > r.source.size {
                        to.write_zeroes(r.source.size, v.size - r.source.size, true, false)?;
                    }
                    v.size
                }
            };
            self.pool.flush()?;
            self.note_restored(r.id, &p.volume, true)?;
            report.push(format!(
                "{{\"backup\":{},\"volume\":\"{}\",\"bytes_rewritten\":{bytes}}}",
                r.id, p.volume
            ));
        }
        Ok(Some(format!("[{}]", report.join(","))))
    }
}

/// Puts back the listed extents from the image: its data, or a hole where it had none (and
/// beyond its end, when the volume has grown since).
fn restore_extents(
    image: &Export,
    to: &Export,
    image_size: u64,
    volume_size: u64,
    es: u64,
    changed: &[u64],
    ctx: &JobContext,
) -> Result<(), JobError> {
    let mut buf = vec![0u8; es as usize];
    // Runs of consecutive extents, so large changes go in large requests.
    let mut i = 0;
    while i < changed.len() {
        ctx.check()?;
        let start = changed[i];
        let mut end = start + 1;
        while i + 1 < changed.len() && changed[i + 1] == end && end - start < 64 {
            i += 1;
            end += 1;
        }
        i += 1;
        let off = start * es;
        let stop = (end * es).min(volume_size);
        if off >= stop {
            continue;
        }
        let in_image = stop.min(image_size).saturating_sub(off);
        if in_image > 0 {
            let mut at = off;
            for run in image.block_status(off, in_image)? {
                if run.allocated {
                    let mut o = at;
                    while o < at + run.length {
                        let n = (at + run.length - o).min(es);
                        let b = &mut buf[..n as usize];
                        image.read(o, b)?;
                        to.write(o, b, false)?;
                        o += n;
                    }
                } else {
                    to.write_zeroes(at, run.length, true, false)?;
                }
                at += run.length;
            }
        }
        if stop > off + in_image {
            to.write_zeroes(off + in_image, stop - off - in_image, true, false)?;
        }
        ctx.add_done(stop - off);
    }
    Ok(())
}

/// Copies an image into a volume: data written, holes unmapped (skipped when `fresh`: a new
/// volume has nothing there).
fn copy_image(
    image: &Export,
    to: &Export,
    size: u64,
    es: u64,
    fresh: bool,
    ctx: &JobContext,
) -> Result<(), JobError> {
    digest::walk::<JobError>(image, size, es, false, |p| {
        ctx.check()?;
        match p {
            Piece::Data { offset, data } => {
                to.write(offset, data, false)?;
                ctx.add_done(data.len() as u64);
            }
            Piece::Hole { offset, len } => {
                if !fresh {
                    to.write_zeroes(offset, len, true, false)?;
                }
                ctx.add_done(len);
            }
            Piece::Unreadable { error, .. } => return Err(error.into()),
        }
        Ok(())
    })
}
