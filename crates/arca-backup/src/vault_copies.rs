//! The catalog's side of copies off the array and of host-written information: recording a
//! finished vault copy, listing a vault's backups, adding a vault-only backup from an imported
//! record, `annotate` and `record-copy`. Each change is one metadata transaction with a history
//! entry (through [`Backups::update`], which also rewrites the descriptor and the index rows).

use std::collections::BTreeMap;
use std::ops::Bound;

use arca_store::{Error, ErrorKind, Result};

use crate::backups::{Backups, busy, invalid};
use crate::catalog;
use crate::create::backup_room_bytes;
use crate::ids::BackupId;
use crate::record::{
    BackupRecord, Event, HOST_COPIES_MAX, HostCopy, Status, TEXT_LEN_MAX, VAULT_COPIES_MAX,
    VaultCopy,
};

/// What `backup annotate` changes: each given field is set; `meta_set` pairs are set and
/// `meta_unset` keys removed (an absent key is no change).
#[derive(Debug, Clone, Default)]
pub struct Annotation {
    pub label: Option<String>,
    pub description: Option<String>,
    pub content_id: Option<String>,
    pub meta_set: BTreeMap<String, String>,
    pub meta_unset: Vec<String>,
}

/// `what` of an `Annotated` event: the fields and keys that changed, cut to the text bound.
fn changed_text(parts: &[String]) -> String {
    let mut what = parts.join(", ");
    if what.len() > TEXT_LEN_MAX {
        let mut cut = TEXT_LEN_MAX - 3;
        while !what.is_char_boundary(cut) {
            cut -= 1;
        }
        what.truncate(cut);
        what.push_str("...");
    }
    what
}

/// Whether two records describe the same backup (an import of one this catalog has).
fn same_backup(a: &BackupRecord, b: &BackupRecord) -> bool {
    a.id == b.id
        && a.source == b.source
        && a.generation == b.generation
        && a.method == b.method
        && a.point_in_time_ms == b.point_in_time_ms
        && a.logical_bytes == b.logical_bytes
        && a.digest.as_ref().map(|d| d.root) == b.digest.as_ref().map(|d| d.root)
}

impl Backups {
    /// Records a finished copy of backup `id` into a registered vault: the copy entry (a new
    /// copy into the same vault replaces the old entry) and a `CopiedToVault` event, in one
    /// transaction. Only a complete backup has copies.
    pub fn record_vault_copy(&self, id: BackupId, copy: VaultCopy) -> Result<BackupRecord> {
        copy.validate().map_err(invalid)?;
        let now = self.now_ms();
        self.update_growing(id, |r| {
            // Under the catalog lock, which removing a vault takes too.
            let vault = self.vault(&copy.vault)?;
            if vault.vault_id.is_some_and(|v| v != copy.vault_id) {
                return Err(busy(format!(
                    "vault {} has id {}, not the copy's {}",
                    copy.vault,
                    crate::vaults::hex(&vault.vault_id.unwrap_or_default()),
                    crate::vaults::hex(&copy.vault_id)
                )));
            }
            if r.status != Status::Complete {
                return Err(busy(format!(
                    "backup {id} is {}; only a complete backup has vault copies",
                    r.status.as_str()
                )));
            }
            if let Some(digest) = &r.digest
                && digest.root != copy.digest_root
            {
                return Err(invalid(format!(
                    "the copy of backup {id} in vault {} has another digest root than the backup",
                    copy.vault
                )));
            }
            r.vault_copies.retain(|c| c.vault != copy.vault);
            if r.vault_copies.len() >= VAULT_COPIES_MAX {
                return Err(invalid(format!(
                    "backup {id} lists {VAULT_COPIES_MAX} vault copies already"
                )));
            }
            r.push_history(
                now,
                Event::CopiedToVault {
                    vault: copy.vault.clone(),
                    manifest: copy.manifest.clone(),
                },
            );
            r.vault_copies.push(copy);
            Ok(())
        })
    }

    /// Every backup (of any status) listing a copy in vault `name`, oldest first.
    pub fn backups_in_vault(&self, name: &str) -> Result<Vec<BackupRecord>> {
        let _c = self.catalog_lock.lock();
        self.backups_in_vault_locked(name)
    }

    pub(crate) fn backups_in_vault_locked(&self, name: &str) -> Result<Vec<BackupRecord>> {
        let from = [name.as_bytes(), &[0]].concat();
        let to = [name.as_bytes(), &[0], &[0xFF; 8]].concat();
        let mut ids = Vec::new();
        self.pool.app_scan(
            catalog::BY_VAULT,
            Bound::Included(&from),
            Bound::Included(&to),
            false,
            |k, _| {
                let id = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("id suffix"));
                ids.push(BackupId(id));
                true
            },
        )?;
        let mut out = Vec::new();
        for id in ids {
            let r = self.get(id)?;
            if r.vault_copies.iter().any(|c| c.vault == name) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Adds a backup read from vault `copy.vault`'s manifest to this catalog as a vault-only
    /// backup (disaster recovery): its original id and information, its history noting the
    /// import, `copy` as its one vault copy (copies in vaults this array does not know are not
    /// listed), no image on this array. An id this catalog has already is refused when that
    /// record describes another backup; for the same backup the copy is recorded on it.
    pub fn add_imported(&self, record: BackupRecord, copy: VaultCopy) -> Result<BackupRecord> {
        copy.validate().map_err(invalid)?;
        self.vault(&copy.vault)?;
        let id = record.id;
        if record.status != Status::Complete {
            return Err(invalid(format!(
                "backup {id} is {} in the vault's record; only complete backups are imported",
                record.status.as_str()
            )));
        }
        record
            .info
            .validate()
            .map_err(|e| invalid(format!("backup {id}: {e}")))?;
        if record.host_copies.len() > HOST_COPIES_MAX {
            return Err(invalid(format!(
                "backup {id} lists {} host copies; at most {HOST_COPIES_MAX}",
                record.host_copies.len()
            )));
        }
        for c in &record.host_copies {
            c.validate()
                .map_err(|e| invalid(format!("backup {id}: {e}")))?;
        }
        if let Some(d) = &record.digest
            && d.root != copy.digest_root
        {
            return Err(invalid(format!(
                "backup {id}: the vault copy's digest root differs from the record's"
            )));
        }
        match catalog::get(&self.pool, id)? {
            Some(Ok(existing)) if same_backup(&existing, &record) => {
                if existing.vault_copies.iter().any(|c| c == &copy) {
                    return Ok(existing);
                }
                return self.record_vault_copy(id, copy);
            }
            Some(Ok(existing)) => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "backup {id} exists in this catalog with other content ({} generation \
                         {} here, {} generation {} in the vault)",
                        existing.source.volume_name,
                        existing.generation,
                        record.source.volume_name,
                        record.generation
                    ),
                ));
            }
            Some(Err(e)) => {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!("backup {id}: this catalog's record is unreadable ({e})"),
                ));
            }
            None => {}
        }
        let now = self.now_ms();
        let mut r = record;
        r.job = None;
        r.off_array_since_ms = Some(r.off_array_since_ms.unwrap_or(now));
        r.vault_copies = vec![copy];
        r.push_history(
            now,
            Event::Imported {
                vault: r.vault_copies[0].vault.clone(),
            },
        );
        let _c = self.catalog_lock.lock();
        // Under the lock, which removing a vault takes too.
        self.vault(&r.vault_copies[0].vault)?;
        if catalog::get(&self.pool, id)?.is_some() {
            return Err(busy(format!(
                "backup {id} was added meanwhile; import again"
            )));
        }
        // New ids stay above it (another array's clock gave it), and so does the volume's
        // generation counter (the counter of a volume id this array uses too only jumps).
        self.raise_last_id(id.get());
        let mut t = self.pool.transaction();
        t.admit(&format!("backup {id}"), backup_room_bytes(&r.info, 0))?;
        let generation = self
            .pool
            .app_read(|rd| catalog::generation(rd, r.source.volume_id))?;
        if generation < r.generation {
            catalog::set_generation(&mut t, r.source.volume_id, r.generation);
        }
        catalog::put(&mut t, None, &r);
        self.mark_ids(&mut t);
        t.commit()?;
        Ok(r)
    }

    /// Changes the information the host supplied (`backup annotate`), checked against the
    /// same bounds as at creation; index rows follow the label and metadata. A change that
    /// changes nothing adds no history entry.
    pub fn annotate(&self, id: BackupId, a: &Annotation) -> Result<BackupRecord> {
        if a.label.is_none()
            && a.description.is_none()
            && a.content_id.is_none()
            && a.meta_set.is_empty()
            && a.meta_unset.is_empty()
        {
            return Err(invalid(
                "nothing to change: give a label, description, content id or metadata",
            ));
        }
        if let Some(k) = a.meta_unset.iter().find(|k| a.meta_set.contains_key(*k)) {
            return Err(invalid(format!("metadata key {k:?} is both set and unset")));
        }
        let now = self.now_ms();
        self.update_growing(id, |r| {
            if r.status == Status::Copying {
                return Err(busy(format!(
                    "backup {id} is still copying; annotate it once it is complete"
                )));
            }
            let mut info = r.info.clone();
            let mut what = Vec::new();
            for (name, field, value) in [
                ("label", &mut info.label, &a.label),
                ("description", &mut info.description, &a.description),
                ("content id", &mut info.content_id, &a.content_id),
            ] {
                if let Some(v) = value
                    && field.as_ref() != Some(v)
                {
                    *field = Some(v.clone());
                    what.push(name.to_string());
                }
            }
            for (k, v) in &a.meta_set {
                if info.meta.get(k) != Some(v) {
                    info.meta.insert(k.clone(), v.clone());
                    what.push(format!("meta {k}"));
                }
            }
            for k in &a.meta_unset {
                if info.meta.remove(k).is_some() {
                    what.push(format!("meta {k} removed"));
                }
            }
            info.validate()
                .map_err(|e| invalid(format!("backup {id}: {e}")))?;
            if !what.is_empty() {
                r.info = info;
                r.push_history(
                    now,
                    Event::Annotated {
                        what: changed_text(&what),
                    },
                );
            }
            Ok(())
        })
    }

    /// Records a copy a host made itself (`backup record-copy`); its time may not be in the
    /// future (callers pass [`Backups::now_ms`] when the host gave none).
    pub fn record_host_copy(&self, id: BackupId, copy: HostCopy) -> Result<BackupRecord> {
        copy.validate().map_err(invalid)?;
        let now = self.now_ms();
        // A minute of slack for the host's clock.
        if copy.copied_ms > now.saturating_add(60_000) {
            return Err(invalid(format!(
                "the copy's time {} is in the future",
                crate::time::format_ms(copy.copied_ms)
            )));
        }
        self.update_growing(id, |r| {
            if r.status != Status::Complete {
                return Err(busy(format!(
                    "backup {id} is {}; only a complete backup can have copies recorded",
                    r.status.as_str()
                )));
            }
            if r.host_copies.len() >= HOST_COPIES_MAX {
                return Err(invalid(format!(
                    "backup {id} lists {HOST_COPIES_MAX} host copies already; at most \
                     {HOST_COPIES_MAX}"
                )));
            }
            r.push_history(
                now,
                Event::HostCopyRecorded {
                    medium: copy.medium.clone(),
                    location: copy.location.clone(),
                },
            );
            r.host_copies.push(copy);
            Ok(())
        })
    }
}
