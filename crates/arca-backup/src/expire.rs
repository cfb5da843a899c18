//! Expiry: delete, holds, retention times and prune.
//!
//! Deletion is refused under a hold, before lock-until (never overridable) and before
//! keep-until (unless forced), and the error says which and until when. The destination and
//! the record's change to `deleted` go in one transaction; the record stays as history.
//!
//! The same rule, [`deletion_refusal`], guards every way a live backup's image is given up:
//! deletion, prune, and consuming it (a pair resync over the secondary holding it).

use std::collections::BTreeMap;
use std::sync::Arc;

use arca_store::{GuardOwner, Result};
use serde::Serialize;

use crate::backups::{Backups, busy, invalid};
use crate::catalog;
use crate::digest_store;
use crate::ids::BackupId;
use crate::record::{BackupRecord, Destination, Event, Status};
use crate::retention::{self, Candidate, Policy};

#[derive(Debug, Clone, Serialize)]
pub struct PruneItem {
    pub backup: BackupId,
    pub label: Option<String>,
    pub point_in_time_ms: u64,
    pub keep: bool,
    /// Why it is kept (empty when removed).
    pub reasons: Vec<String>,
    /// What removing this backup alone would free.
    pub frees_alone_bytes: u64,
    /// Set when the removal was attempted and refused.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub items: Vec<PruneItem>,
    pub removed: usize,
    pub kept: usize,
    /// Exactly what removing every removed backup together frees.
    pub freed_bytes: u64,
}

/// How [`Backups::delete_with`] deletes.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteOptions {
    /// Delete before keep-until (never under a hold or before lock-until).
    pub force: bool,
    /// For a backup with vault copies: delete the array's image only, keeping the backup.
    pub keep_vault_copies: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PruneRequest {
    pub volume: String,
    pub label: Option<String>,
    pub policy: Policy,
    pub dry_run: bool,
}

fn rfc3339_ms(ms: u64) -> String {
    crate::time::format_secs(ms / 1000)
}

/// Why `r`'s image may not be given up now (deleted, pruned or consumed), or `None`. `force`
/// is the caller's explicit consent: it overrides keep-until, never a hold or a lock.
pub fn deletion_refusal(r: &BackupRecord, now: u64, force: bool) -> Option<String> {
    let id = r.id;
    if r.retention.hold {
        return Some(format!(
            "backup {id} is on hold; release it first (arca backup release {id})"
        ));
    }
    if let Some(t) = r.retention.lock_until_ms
        && t > now
    {
        return Some(format!(
            "backup {id} is locked until {}; a retention lock cannot be overridden",
            rfc3339_ms(t)
        ));
    }
    if let Some(t) = r.retention.keep_until_ms
        && t > now
        && !force
    {
        return Some(format!(
            "backup {id} is kept until {}; delete with force to override",
            rfc3339_ms(t)
        ));
    }
    None
}

impl Backups {
    /// Deletes a backup's destination and marks its record deleted.
    pub fn delete(&self, id: BackupId, force: bool) -> Result<BackupRecord> {
        self.delete_with(
            id,
            DeleteOptions {
                force,
                keep_vault_copies: false,
            },
        )
    }

    /// Deletes a backup's image on the array. A backup without vault copies is then deleted
    /// (its record stays as history). One with vault copies is refused, naming them, unless
    /// `keep_vault_copies`: then only the array's image goes and the backup stays `complete`,
    /// living in its vault copies; without it the vault copies' manifests are deleted too.
    pub fn delete_with(&self, id: BackupId, o: DeleteOptions) -> Result<BackupRecord> {
        let _c = self.catalog_lock.lock();
        let old = self.get(id)?;
        if let Some(why) = self.in_use_refusal(id) {
            return Err(busy(why));
        }
        match old.status {
            Status::Copying => {
                return Err(busy(format!(
                    "backup {id} is still copying; cancel its job first"
                )));
            }
            Status::Deleted => return Err(busy(format!("backup {id} is already deleted"))),
            Status::Complete | Status::Failed | Status::Consumed => {}
        }
        if old.status == Status::Complete
            && let Some(why) = deletion_refusal(&old, self.now_ms(), o.force)
        {
            return Err(busy(why));
        }
        let vaults = old.vault_names().join(", ");
        let mut old = old;
        if old.status == Status::Complete && !old.vault_copies.is_empty() && !o.keep_vault_copies {
            // The vault copies go first, under the catalog lock (no copy is recorded
            // meanwhile); the record then lists only copies that still exist.
            old = self.drop_vault_copies(old)?;
        }
        let keeps_record = old.status == Status::Complete && !old.vault_copies.is_empty();
        if keeps_record && old.off_array_since_ms.is_some() {
            return Err(busy(format!(
                "backup {id} has no image on the array any more; it lives only in vault(s) \
                 {vaults}: delete it without keeping the vault copies"
            )));
        }
        let forced = if o.force { " (forced)" } else { "" };
        let mut new = old.clone();
        if keeps_record {
            new.off_array_since_ms = Some(self.now_ms());
            new.push_history(
                self.now_ms(),
                Event::Retention {
                    what: format!(
                        "array image deleted{forced}; the vault copies in {vaults} remain"
                    ),
                },
            );
        } else {
            new.status = Status::Deleted;
            new.push_history(
                self.now_ms(),
                Event::Retention {
                    what: format!("deleted{forced}"),
                },
            );
        }
        if old.off_array_since_ms.is_some() {
            // Nothing of it is on this array: only the record changes.
            let mut t = self.pool.transaction();
            catalog::put(&mut t, Some(&old), &new);
            t.commit()?;
            return Ok(new);
        }
        let digest_plan = digest_store::plan_remove(&self.pool, id)?;
        // The guard goes in the same transaction as what it protected: all or nothing.
        let owner = GuardOwner::Backup(id.get());
        let mut t = self.pool.transaction();
        match &old.destination {
            Destination::Snapshot { snapshot, .. } => {
                if let Some(v) = self.volume_by_id(old.source.volume_id)
                    && let Ok(s) = self.pool.snapshot(&v.name, snapshot)
                {
                    if !s.clones.is_empty() {
                        return Err(busy(format!(
                            "backup {id} cannot be deleted: volume(s) {} were restored from it \
                             and still share its data; delete them first",
                            s.clones.join(", ")
                        )));
                    }
                    t.remove_snapshot_guard(&v.name, snapshot, owner)?;
                    t.delete_snapshot(&v.name, snapshot)?;
                }
            }
            Destination::Volume {
                volume_id, created, ..
            } => {
                // Only while the volume still carries this backup's descriptor: a failed or
                // consumed backup's volume may hold another backup, or be a pair's, by now.
                let ours = |v: &arca_store::VolumeInfo| {
                    v.tag
                        .as_deref()
                        .and_then(|t| BackupRecord::decode(t).ok())
                        .is_some_and(|d| d.id == id)
                };
                if let Some(v) = self.volume_by_id(*volume_id).filter(|v| ours(v)) {
                    t.remove_volume_guard(&v.name, owner)?;
                    if *created {
                        t.delete_volume(&v.name, false)?;
                    } else {
                        // A volume the host lent us: it stays, free again.
                        t.set_volume_tag(&v.name, None)?;
                    }
                }
            }
        }
        digest_plan.apply(&mut t);
        catalog::put(&mut t, Some(&old), &new);
        t.commit()?;
        Ok(new)
    }

    pub fn hold(&self, id: BackupId, hold: bool) -> Result<BackupRecord> {
        self.update(id, |r| {
            if !r.status.live() {
                return Err(busy(format!("backup {id} is {}", r.status.as_str())));
            }
            r.retention.hold = hold;
            r.push_history(
                self.now_ms(),
                Event::Retention {
                    what: if hold { "hold" } else { "released" }.into(),
                },
            );
            Ok(())
        })
    }

    /// Sets keep-until and/or extends lock-until (a lock is never shortened or removed).
    /// When a keep-until given as a time or as a duration from now (the backups' clock) ends;
    /// `None` when neither is given. Both at once are refused: they set the same time.
    pub fn keep_until(&self, at_ms: Option<u64>, for_ms: Option<u64>) -> Result<Option<u64>> {
        match (at_ms, for_ms) {
            (Some(_), Some(_)) => Err(invalid(
                "give keep-until or keep-for, not both: they set the same time",
            )),
            (Some(t), None) => Ok(Some(t)),
            (None, Some(d)) => crate::time::after(self.now_ms(), d, "keep-for")
                .map(Some)
                .map_err(invalid),
            (None, None) => Ok(None),
        }
    }

    pub fn retain(
        &self,
        id: BackupId,
        keep_until_ms: Option<Option<u64>>,
        lock_until_ms: Option<u64>,
    ) -> Result<BackupRecord> {
        self.update(id, |r| {
            if !r.status.live() {
                return Err(busy(format!("backup {id} is {}", r.status.as_str())));
            }
            let mut what = Vec::new();
            if let Some(k) = keep_until_ms {
                r.retention.keep_until_ms = k;
                what.push(match k {
                    Some(t) => format!("keep until {}", rfc3339_ms(t)),
                    None => "keep-until cleared".into(),
                });
            }
            if let Some(l) = lock_until_ms {
                if let Some(old) = r.retention.lock_until_ms
                    && l < old
                {
                    return Err(invalid(format!(
                        "backup {id} is locked until {}; a lock can only be extended",
                        rfc3339_ms(old)
                    )));
                }
                r.retention.lock_until_ms = Some(l);
                what.push(format!("locked until {}", rfc3339_ms(l)));
            }
            if what.is_empty() {
                return Err(invalid("give keep-until or lock-until"));
            }
            r.push_history(
                self.now_ms(),
                Event::Retention {
                    what: what.join(", "),
                },
            );
            Ok(())
        })
    }

    /// Applies a retention policy to one volume's complete backups, per label (or to one
    /// label): says for each whether it is kept and why, and what removal frees, exactly.
    pub fn prune(self: &Arc<Self>, req: &PruneRequest) -> Result<PruneReport> {
        // Checked before anything else: a volume without backups would never reach the plan.
        req.policy.check().map_err(invalid)?;
        let volume = self.pool.volume(&req.volume)?;
        let q = catalog::Query {
            volume_id: Some(volume.id),
            status: Some(Status::Complete),
            label: req.label.clone(),
            limit: catalog::QUERY_LIMIT_MAX,
            ..catalog::Query::default()
        };
        // A backup living only in vaults has no image here to prune.
        let mut records = catalog::query(&self.pool, &q)?;
        records.retain(BackupRecord::on_array);
        let now = self.now_ms();
        // Labels never mix: each is pruned on its own.
        let mut groups: BTreeMap<Option<String>, Vec<&BackupRecord>> = BTreeMap::new();
        for r in &records {
            groups.entry(r.info.label.clone()).or_default().push(r);
        }
        let mut items = Vec::new();
        for group in groups.values() {
            let candidates: Vec<Candidate> = group.iter().map(|r| candidate(r)).collect();
            let decisions =
                retention::plan(&candidates, &req.policy, now / 1000).map_err(invalid)?;
            for (r, d) in group.iter().zip(decisions) {
                debug_assert_eq!(r.id.get(), d.id, "plan keeps the input order");
                items.push(PruneItem {
                    backup: r.id,
                    label: r.info.label.clone(),
                    point_in_time_ms: r.point_in_time_ms,
                    keep: d.keep,
                    reasons: d.reasons.iter().map(|x| x.describe()).collect(),
                    frees_alone_bytes: self.frees_alone(r)?,
                    error: None,
                });
            }
        }
        items.sort_by_key(|i| std::cmp::Reverse(i.backup));
        let removed: Vec<&BackupRecord> = records
            .iter()
            .filter(|r| items.iter().any(|i| i.backup == r.id && !i.keep))
            .collect();
        let freed_bytes = self.frees_together(&removed)?;
        if !req.dry_run {
            for item in items.iter_mut().filter(|i| !i.keep) {
                if let Err(e) = self.delete_with(item.backup, RETENTION_DELETE) {
                    item.error = Some(e.to_string());
                }
            }
        }
        let kept = items.iter().filter(|i| i.keep).count();
        Ok(PruneReport {
            dry_run: req.dry_run,
            removed: items.len() - kept,
            kept,
            items,
            freed_bytes,
        })
    }

    fn frees_alone(&self, r: &BackupRecord) -> Result<u64> {
        self.frees_together(&[r])
    }

    /// Bytes only this backup holds now: what deleting it alone would free (0 once deleted).
    pub fn unique_bytes(&self, r: &BackupRecord) -> Result<u64> {
        if !r.on_array() {
            return Ok(0);
        }
        self.frees_alone(r)
    }

    /// Bytes freed by deleting these backups together.
    fn frees_together(&self, records: &[&BackupRecord]) -> Result<u64> {
        let mut total = 0;
        let mut by_source: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for r in records.iter().filter(|r| r.off_array_since_ms.is_none()) {
            match &r.destination {
                Destination::Snapshot { snapshot, .. } => {
                    by_source
                        .entry(r.source.volume_id)
                        .or_default()
                        .push(snapshot.clone());
                }
                Destination::Volume {
                    volume_id,
                    created: true,
                    ..
                } => {
                    if let Some(v) = self.volume_by_id(*volume_id) {
                        total += v.owned_bytes;
                    }
                }
                Destination::Volume { .. } => {}
            }
        }
        for (source, snaps) in by_source {
            if let Some(v) = self.volume_by_id(source) {
                let names: Vec<&str> = snaps.iter().map(String::as_str).collect();
                total += self.pool.bytes_freed_by_deleting(&v.name, &names)?;
            }
        }
        Ok(total)
    }
}

/// A backup as the retention planner sees it (times in whole seconds; retention ends rounded
/// up, so a backup is never released early).
pub(crate) fn candidate(r: &BackupRecord) -> Candidate {
    Candidate {
        id: r.id.get(),
        generation: r.generation,
        time_unix: r.point_in_time_ms / 1000,
        verified_good: r.last_verified_ok() == Some(true),
        hold: r.retention.hold,
        keep_until_unix: r.retention.keep_until_ms.map(|t| t.div_ceil(1000)),
        lock_until_unix: r.retention.lock_until_ms.map(|t| t.div_ceil(1000)),
    }
}

/// How retention deletes: it gives up the array's image; a backup with vault copies stays
/// `complete` with them (vault copies have their own retention).
pub(crate) const RETENTION_DELETE: DeleteOptions = DeleteOptions {
    force: false,
    keep_vault_copies: true,
};
