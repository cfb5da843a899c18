//! Backup records as the API shows them: current volume names (destinations are found by id,
//! so renames are followed), the export holding a complete backup, and times in RFC 3339.

use std::collections::HashMap;
use std::sync::Arc;

use arca_backup::record::{BackupRecord, Destination, Event, RestoredFrom, Status};
use arca_backup::time::format_ms;
use arca_store::Pool;
use axum::Json;

use crate::ApiState;
use crate::error::ApiError;
use crate::server::blocking;
use crate::types::*;

/// Runs a change to one backup off the async threads and answers with the record it leaves,
/// as the API shows it: what every handler that changes a single backup answers.
pub(crate) async fn changed_backup(
    s: Arc<ApiState>,
    change: impl FnOnce(&ApiState) -> Result<BackupRecord, ApiError> + Send + 'static,
) -> Result<Json<Backup>, ApiError> {
    let b = blocking(move || {
        let r = change(&s)?;
        Ok(backup_json(r, &Names::new(&s.pool, &s.nbd_addr)))
    })
    .await?;
    Ok(Json(b))
}

/// What turning records into JSON needs from the pool: current volume names (destinations
/// are found by id, so renames are followed) and the NBD address.
pub(crate) struct Names {
    pool: Pool,
    volumes: HashMap<u64, String>,
    nbd_addr: String,
}

impl Names {
    pub(crate) fn new(pool: &Pool, nbd_addr: &str) -> Names {
        Names {
            pool: pool.clone(),
            volumes: pool.volumes().into_iter().map(|v| (v.id, v.name)).collect(),
            nbd_addr: nbd_addr.to_string(),
        }
    }

    /// The export holding a complete backup's image, when it exists.
    fn export(&self, r: &BackupRecord) -> Option<String> {
        if r.status != Status::Complete || !r.on_array() {
            return None;
        }
        match &r.destination {
            Destination::Snapshot { snapshot, .. } => {
                let volume = self.volumes.get(&r.source.volume_id)?;
                self.pool.snapshot(volume, snapshot).ok()?;
                Some(format!("{volume}@{snapshot}"))
            }
            Destination::Volume { volume_id, .. } => self.volumes.get(volume_id).cloned(),
        }
    }
}

pub(crate) use arca_backup::vaults::hex;

fn pairs(v: &[(u64, u64)]) -> Vec<[u64; 2]> {
    v.iter().map(|&(o, l)| [o, l]).collect()
}

pub(crate) fn backup_json(r: BackupRecord, names: &Names) -> Backup {
    let export = names.export(&r);
    let uri = export
        .as_ref()
        .map(|e| format!("nbd://{}/{e}", names.nbd_addr));
    let verified = r.last_verified_ok();
    let locations = r.locations();
    let destination = match r.destination {
        Destination::Snapshot { volume, snapshot } => BackupDestination {
            kind: DestinationKind::Snapshot,
            volume,
            snapshot: Some(snapshot),
            volume_id: None,
            device: None,
            created: None,
            export,
            uri,
        },
        Destination::Volume {
            volume,
            volume_id,
            device,
            created,
        } => BackupDestination {
            kind: DestinationKind::Volume,
            volume,
            snapshot: None,
            volume_id: Some(volume_id),
            device,
            created: Some(created),
            export,
            uri,
        },
    };
    Backup {
        id: r.id,
        source: BackupSource {
            volume_id: r.source.volume_id,
            volume_name: r.source.volume_name,
            size: r.source.size,
        },
        generation: r.generation,
        method: r.method,
        destination,
        point_in_time: format_ms(r.point_in_time_ms),
        clock_stepped_back: r.stepped_back_from_ms.is_some(),
        previous_point_in_time: r.stepped_back_from_ms.map(format_ms),
        started: format_ms(r.started_ms),
        completed: r.completed_ms.map(format_ms),
        status: r.status,
        status_reason: r.status_reason,
        info: BackupInfo {
            program: r.info.program,
            host: r.info.host,
            application: r.info.application,
            content_id: r.info.content_id,
            label: r.info.label,
            description: r.info.description,
            meta: r.info.meta,
        },
        retention: BackupRetention {
            keep_until: r.retention.keep_until_ms.map(format_ms),
            hold: r.retention.hold,
            lock_until: r.retention.lock_until_ms.map(format_ms),
        },
        digest: r.digest.map(|d| BackupDigest {
            extent_size: d.extent_size,
            root: hex(&d.root),
            extents: d.extents,
        }),
        logical_bytes: r.logical_bytes,
        allocated_bytes: r.allocated_bytes,
        unique_bytes: None,
        set_id: r.set_id,
        verified,
        history: r
            .history
            .into_iter()
            .map(|h| BackupHistoryEntry {
                at: format_ms(h.at_ms),
                event: match h.event {
                    Event::Verified {
                        ok,
                        damaged,
                        damaged_ranges,
                    } => BackupEvent::Verified {
                        ok,
                        damaged: pairs(&damaged),
                        damaged_ranges,
                    },
                    Event::Restored { to, in_place, from } => BackupEvent::Restored {
                        to,
                        in_place,
                        from: match from {
                            RestoredFrom::Array => "array".into(),
                            RestoredFrom::Vault(v) => format!("vault:{v}"),
                        },
                    },
                    Event::Copied { to } => BackupEvent::Copied { to },
                    Event::Consumed { by } => BackupEvent::Consumed { by },
                    Event::Retention { what } => BackupEvent::Retention { what },
                    Event::RestoreResumed { to } => BackupEvent::RestoreResumed { to },
                    Event::RestoreRolledBack { to, undo, reason } => {
                        BackupEvent::RestoreRolledBack {
                            to,
                            undo_backup: undo,
                            reason,
                        }
                    }
                    Event::RestoreFailed { to, reason } => {
                        BackupEvent::RestoreFailed { to, reason }
                    }
                    Event::CopiedToVault { vault, manifest } => {
                        BackupEvent::CopiedToVault { vault, manifest }
                    }
                    Event::HostCopyRecorded { medium, location } => {
                        BackupEvent::HostCopyRecorded { medium, location }
                    }
                    Event::Annotated { what } => BackupEvent::Annotated { what },
                    Event::Imported { vault } => BackupEvent::Imported { vault },
                    Event::VaultCopyForgotten { vault } => {
                        BackupEvent::VaultCopyForgotten { vault }
                    }
                },
            })
            .collect(),
        job: r.job,
        locations,
        off_array_since: r.off_array_since_ms.map(format_ms),
        vault_copies: r
            .vault_copies
            .into_iter()
            .map(|c| BackupVaultCopy {
                vault: c.vault,
                vault_id: hex(&c.vault_id),
                manifest: c.manifest,
                copied: format_ms(c.copied_ms),
                bytes_read: c.bytes_read,
                bytes_new: c.bytes_new,
                bytes_stored: c.bytes_stored,
                digest_root: hex(&c.digest_root),
            })
            .collect(),
        host_copies: r
            .host_copies
            .into_iter()
            .map(|c| BackupHostCopy {
                medium: c.medium,
                location: c.location,
                by: c.by,
                copied: format_ms(c.copied_ms),
            })
            .collect(),
    }
}
