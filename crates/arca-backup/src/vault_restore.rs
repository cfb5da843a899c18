//! Restores from vaults (local first, the vault copy otherwise), disaster recovery
//! (`vault import`: a vault's backups into this array's catalog) and the removal of vault
//! copies when a backup is deleted.
//!
//! A restore from a vault streams the manifest's chunks into a new volume (holes stay
//! holes), hashing each chunk as the digest does; the job succeeds only when the root of those
//! hashes (with the extents the manifest's record lists as data of zeros) is the backup's
//! digest root.

use std::sync::Arc;

use arca_store::{Error, ErrorKind, Result};
use arca_vault::ChunkContent;
use serde::Serialize;

use crate::backups::{Backups, UseGuard, busy, invalid};
use crate::digest::{self, ExtentHash};
use crate::ids::BackupId;
use crate::jobs::{JobContext, JobError};
use crate::record::{BackupRecord, RestoredFrom, Status, VaultCopy};
use crate::restore::{Plan, RestoreTo, Restored};
use crate::vault_copy::{decode_meta, vault_error, vault_id_of};
use crate::vaults::VaultKey;

/// What `vault import` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Backups added to the catalog (vault-only).
    pub imported: Vec<BackupId>,
    /// Backups the catalog had already (their copy in this vault is recorded on them).
    pub known: Vec<BackupId>,
    /// Manifests that could not be imported, with why.
    pub failed: Vec<(u64, String)>,
}

impl Backups {
    /// `restore ID [--from-vault NAME]`: from the array's image when it is there and its last
    /// verification did not find it damaged (and no vault was named), from a vault copy
    /// otherwise (the named one, or the first registered one the record lists).
    pub fn restore_from(
        self: &Arc<Self>,
        id: BackupId,
        to: RestoreTo,
        from_vault: Option<&str>,
    ) -> Result<Restored> {
        let r = self.get(id)?;
        let local = r.on_array() && r.last_verified_ok() != Some(false);
        let vault = match from_vault {
            Some(v) => v.to_string(),
            None if local || r.vault_copies.is_empty() => return self.restore(id, to),
            None => {
                let registered = self.vaults()?;
                r.vault_copies
                    .iter()
                    .find(|c| registered.iter().any(|v| v.name == c.vault))
                    .map(|c| c.vault.clone())
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "backup {id} is not on the array and none of its vaults ({}) is \
                                 registered",
                                r.vault_names().join(", ")
                            ),
                        )
                    })?
            }
        };
        match to {
            RestoreTo::New { name } => self.restore_new_from_vault(id, &vault, &name),
            RestoreTo::InPlace { volume, force } => {
                self.restore_in_place_from_vault(id, &vault, volume, force)
            }
        }
    }

    /// Claims backup `id` for a restore from its copy in `vault` (it must be complete and
    /// have a digest to check against; its image need not be on the array), then reads and
    /// checks the copy's manifest.
    fn claim_vault_copy(
        &self,
        id: BackupId,
        vault: &str,
    ) -> Result<(
        BackupRecord,
        UseGuard,
        Arc<arca_vault::Vault>,
        arca_vault::Manifest,
    )> {
        if self.stopping() {
            return Err(busy("the array is stopping; restore after it starts again"));
        }
        let (r, uses) = {
            let _c = self.catalog_lock.lock();
            let r = self.get(id)?;
            if r.status != Status::Complete {
                return Err(busy(format!(
                    "backup {id} is {}; only a complete backup can be restored",
                    r.status.as_str()
                )));
            }
            if !r.vault_copies.iter().any(|c| c.vault == vault) {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("backup {id} has no copy in vault {vault}"),
                ));
            }
            if r.digest.is_none() {
                return Err(invalid(format!(
                    "backup {id} has no digest to check a restore against"
                )));
            }
            let uses = self.register_use(&[id], "a restore from a vault".into());
            (r, uses)
        };
        // Reachable and holding the manifest before a volume is touched.
        let v = self.open_vault(vault)?;
        self.check_chunk_size(vault, &v, "restored")?;
        let m = v
            .read_manifest(id.get())
            .map_err(|e| vault_error(vault, e))?;
        check_manifest(&r, &m, vault)?;
        Ok((r, uses, v, m))
    }

    fn restore_new_from_vault(
        self: &Arc<Self>,
        id: BackupId,
        vault: &str,
        name: &str,
    ) -> Result<Restored> {
        let (r, uses, v, m) = self.claim_vault_copy(id, vault)?;
        let name_v = vault.to_string();
        let record = r.clone();
        self.restore_new_by_job(
            &r,
            name,
            uses,
            RestoredFrom::Vault(vault.to_string()),
            move |me, to, ctx| {
                let written = fill_from_vault(&v, &m, &record, to, &name_v, ctx)?;
                me.count(&name_v, |x| {
                    x.bytes_restored += written;
                    x.restores += 1;
                });
                Ok(())
            },
        )
    }

    /// In place from a vault, into `volume` (the backup's source when `None`): the protections
    /// of an in-place restore from the array (guard, hosts disconnected, undo point, markers),
    /// rewriting only what differs (`vault_rewrite.rs`).
    fn restore_in_place_from_vault(
        self: &Arc<Self>,
        id: BackupId,
        vault: &str,
        volume: Option<String>,
        force: bool,
    ) -> Result<Restored> {
        let (r, uses, _, _) = self.claim_vault_copy(id, vault)?;
        let volume = self.in_place_target(&r, volume)?;
        let plan = Plan {
            record: r,
            volume,
            vault: Some(vault.to_string()),
        };
        self.restore_in_place(vec![plan], uses, force)
    }

    /// `vault import NAME [--key-file F]`: every backup the vault holds a manifest of is added
    /// to this catalog (vault-only, original ids and information), or has its copy recorded
    /// when the catalog knows it. With a key (an exported one), the vault is opened with it
    /// and the key is kept in the registry.
    pub fn import_vault(&self, name: &str, key_hex: Option<&str>) -> Result<ImportReport> {
        let entry = self.vault(name)?;
        if let Some(text) = key_hex {
            let key = VaultKey::from_hex(text)?;
            let spec = crate::vault_copy::spec_of(&entry);
            // Checked before it is kept: a wrong key is refused and changes nothing.
            arca_vault::Vault::open(&spec, Some(&key.to_repository()))
                .map_err(|e| vault_error(name, e))?;
            self.set_vault_key(name, key)?;
        }
        let v = self.open_existing_vault(name)?;
        self.check_chunk_size(name, &v, "imported")?;
        let vault_id = vault_id_of(&v);
        let mut report = ImportReport::default();
        let ids = v.list_manifests().map_err(|e| vault_error(name, e))?;
        for mid in ids {
            let one = (|| -> Result<(BackupRecord, VaultCopy)> {
                let m = v.read_manifest(mid).map_err(|e| vault_error(name, e))?;
                let (rec, _) = decode_meta(&m.meta).map_err(|e| {
                    Error::new(ErrorKind::Corrupt, format!("manifest of backup {mid}: {e}"))
                })?;
                if rec.id.get() != mid {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        format!(
                            "manifest of backup {mid} carries backup {}'s record",
                            rec.id
                        ),
                    ));
                }
                let copy = VaultCopy {
                    vault: name.to_string(),
                    vault_id,
                    manifest: arca_vault::format::manifest_name(mid),
                    copied_ms: m.created_unix_s.saturating_mul(1000),
                    bytes_read: 0,
                    bytes_new: 0,
                    bytes_stored: 0,
                    digest_root: rec.digest.as_ref().map(|d| d.root).unwrap_or_default(),
                };
                Ok((rec, copy))
            })();
            match one {
                Ok((rec, copy)) => {
                    let known = crate::catalog::get(&self.pool, rec.id)?.is_some();
                    match self.add_imported(rec, copy) {
                        Ok(r) if known => report.known.push(r.id),
                        Ok(r) => report.imported.push(r.id),
                        Err(e) => report.failed.push((mid, e.to_string())),
                    }
                }
                Err(e) => report.failed.push((mid, e.to_string())),
            }
        }
        Ok(report)
    }

    /// A vault's chunks must be this pool's extents: restores write them extent by extent
    /// and check them against digests of extents.
    fn check_chunk_size(&self, name: &str, v: &arca_vault::Vault, verb: &str) -> Result<()> {
        let es = self.pool.extent_size();
        if u64::from(v.chunk_size()) != es {
            return Err(invalid(format!(
                "vault {name} holds {}-byte chunks and this pool's extents are {es} bytes: its \
                 copies cannot be {verb} here (a pool with {}-byte extents can)",
                v.chunk_size(),
                v.chunk_size()
            )));
        }
        Ok(())
    }

    /// [`Backups::open_vault`] that never creates: import needs a vault that is there.
    fn open_existing_vault(&self, name: &str) -> Result<Arc<arca_vault::Vault>> {
        let entry = self.vault(name)?;
        if entry.vault_id.is_none() {
            let spec = crate::vault_copy::spec_of(&entry);
            let key = entry.key.as_ref().map(VaultKey::to_repository);
            arca_vault::Vault::open(&spec, key.as_ref()).map_err(|e| vault_error(name, e))?;
        }
        self.open_vault(name)
    }

    /// Deletes the manifests of `old`'s vault copies (`backup delete` without
    /// `--keep-vault-copies`; the chunks stay until the vault's garbage collection), under the
    /// catalog lock the caller holds. The record, without the copies that are gone, is stored
    /// (one transaction) and returned; when a vault fails, what went is still recorded and the
    /// error names the vault.
    pub(crate) fn drop_vault_copies(&self, old: BackupRecord) -> Result<BackupRecord> {
        self.drop_vault_copies_in(old, None)
    }

    /// [`Backups::drop_vault_copies`] of the copy in vault `only`, or of all. A backup whose
    /// last copy goes this way while it has no image on the array is deleted in the same
    /// transaction (with `only`: `backup delete` records that itself).
    fn drop_vault_copies_in(&self, old: BackupRecord, only: Option<&str>) -> Result<BackupRecord> {
        let id = old.id;
        let mut gone = Vec::new();
        let mut failure = None;
        for c in old
            .vault_copies
            .iter()
            .filter(|c| only.is_none_or(|v| v == c.vault))
        {
            let deleted = self.open_existing_vault(&c.vault).and_then(|v| {
                match v.delete_manifest(id.get()) {
                    Ok(()) | Err(arca_vault::Error::NoManifest(_)) => Ok(()),
                    Err(e) => Err(vault_error(&c.vault, e)),
                }
            });
            match deleted {
                Ok(()) => gone.push(c.vault.clone()),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let mut new = old.clone();
        if !gone.is_empty() {
            new.vault_copies.retain(|c| !gone.contains(&c.vault));
            for v in &gone {
                new.push_history(
                    self.now_ms(),
                    crate::record::Event::VaultCopyForgotten { vault: v.clone() },
                );
            }
            if only.is_some() && new.vault_copies.is_empty() && new.off_array_since_ms.is_some() {
                new.status = Status::Deleted;
                new.push_history(
                    self.now_ms(),
                    crate::record::Event::Retention {
                        what: format!("deleted: its last copy (in vault {}) was pruned", gone[0]),
                    },
                );
            }
            let mut t = self.pool.transaction();
            crate::catalog::put(&mut t, Some(&old), &new);
            self.tag_destination(&mut t, &new)?;
            t.commit()?;
        }
        match failure {
            Some(e) => Err(Error::new(
                e.kind(),
                format!("backup {id}: its vault copy could not be deleted: {e}"),
            )),
            None => Ok(new),
        }
    }

    /// Deletes backup `id`'s copy in vault `vault` (a policy's vault prune): its manifest,
    /// then the copy entry and a `vault_copy_forgotten` event, as `backup delete` does for
    /// every copy. Refused, saying why, while the backup is held, locked, kept, or in use.
    /// A backup with no image on the array and no other copy is then deleted.
    pub fn delete_vault_copy(&self, id: BackupId, vault: &str) -> Result<BackupRecord> {
        let _c = self.catalog_lock.lock();
        let old = self.get(id)?;
        if let Some(why) = self.in_use_refusal(id) {
            return Err(busy(why));
        }
        if old.status != Status::Complete {
            return Err(busy(format!(
                "backup {id} is {}; only a complete backup has vault copies",
                old.status.as_str()
            )));
        }
        if !old.vault_copies.iter().any(|c| c.vault == vault) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("backup {id} has no copy in vault {vault}"),
            ));
        }
        if let Some(why) = crate::expire::deletion_refusal(&old, self.now_ms(), false) {
            return Err(busy(why));
        }
        self.drop_vault_copies_in(old, Some(vault))
    }
}

/// The manifest must be this backup's image, in chunks of its digest's extents.
fn check_manifest(r: &BackupRecord, m: &arca_vault::Manifest, vault: &str) -> Result<()> {
    let info = r.digest.as_ref().expect("checked by the caller");
    if m.image_size != r.source.size || u64::from(m.chunk_size) != info.extent_size {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "vault {vault}: the manifest of backup {} describes a {}-byte image in {}-byte \
                 chunks, not the backup's {} bytes in {}-byte extents",
                r.id, m.image_size, m.chunk_size, r.source.size, info.extent_size
            ),
        ));
    }
    Ok(())
}

/// Writes the manifest's chunks into `to` (a new volume: holes need no writes), then checks
/// the digest. Returns the bytes written.
fn fill_from_vault(
    v: &arca_vault::Vault,
    m: &arca_vault::Manifest,
    r: &BackupRecord,
    to: &arca_store::Export,
    vault: &str,
    ctx: &JobContext,
) -> Result<u64, JobError> {
    let info = r.digest.as_ref().expect("checked before the job");
    let es = info.extent_size;
    let size = r.source.size;
    let (_, zeros) = decode_meta(&m.meta)
        .map_err(|e| JobError::Failed(format!("vault {vault}: backup {}: {e}", r.id)))?;
    let mut hashes: Vec<ExtentHash> = Vec::new();
    let mut written = 0;
    for c in v.reader(m) {
        ctx.check()?;
        let c = c.map_err(|e| vault_error(vault, e))?;
        if let ChunkContent::Data(b) = &c.content {
            to.write(c.index * es, b, false)?;
            hashes.push((c.index, digest::hash_extent(b)));
            written += b.len() as u64;
        }
        ctx.add_done(c.len);
    }
    let zero = digest::ZeroHashes::new(size, es);
    hashes.extend(zeros.iter().map(|&l| (l, zero.of(l))));
    hashes.sort_unstable_by_key(|(l, _)| *l);
    if digest::root(es, size, &hashes) != info.root {
        return Err(JobError::Failed(format!(
            "the image restored from vault {vault} does not match backup {}'s digest; the \
             restore is discarded",
            r.id
        )));
    }
    Ok(written)
}
