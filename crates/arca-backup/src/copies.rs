//! Where a backup lives besides the array: its copies in vaults (made by Arca, recorded when a
//! copy finishes) and the copies hosts made themselves and told the array about
//! (`backup record-copy`, e.g. a tape written by their own program). Both are part of the
//! backup's record ([`crate::BackupRecord`]), bounded like the rest of it.

use serde::{Deserialize, Serialize};

use crate::record::{TEXT_LEN_MAX, check_text};

/// Vault copies one record lists: one per vault (a new copy into a vault replaces the entry),
/// and the registry holds at most [`crate::vaults::VAULTS_MAX`] vaults.
pub const VAULT_COPIES_MAX: usize = 32;
/// Host-made copies one record lists; more are refused (none is silently dropped).
pub const HOST_COPIES_MAX: usize = 16;

/// A finished copy of the backup in a vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultCopy {
    /// The vault's name in this array's registry.
    pub vault: String,
    /// The vault's own id (written in the vault when it was made): tells a vault from
    /// another one later registered under the same name or URL.
    pub vault_id: [u8; 16],
    /// The manifest object naming the copy inside the vault.
    pub manifest: String,
    pub copied_ms: u64,
    /// Bytes read from the array for this copy (less than the image for an incremental one).
    pub bytes_read: u64,
    /// Bytes of chunks the vault did not hold before.
    pub bytes_new: u64,
    /// Bytes the copy added to the vault's storage (compressed, sealed).
    pub bytes_stored: u64,
    /// The digest root of the copied image, as the manifest records it.
    pub digest_root: [u8; 32],
}

impl VaultCopy {
    pub fn validate(&self) -> Result<(), String> {
        arca_store::names::validate("vault", &self.vault).map_err(|e| e.to_string())?;
        check_text("manifest name", &self.manifest, TEXT_LEN_MAX)
    }
}

/// A copy a host made by itself (its own program, its own medium).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCopy {
    /// What holds it: `tape`, `usb disk`, `cloud`...
    pub medium: String,
    /// Where: a tape label, a path, a bucket.
    pub location: Option<String>,
    /// The program that made it.
    pub by: Option<String>,
    pub copied_ms: u64,
}

impl HostCopy {
    pub fn validate(&self) -> Result<(), String> {
        check_text("medium", &self.medium, TEXT_LEN_MAX)?;
        if let Some(l) = &self.location {
            check_text("location", l, TEXT_LEN_MAX)?;
        }
        if let Some(b) = &self.by {
            check_text("program (by)", b, TEXT_LEN_MAX)?;
        }
        Ok(())
    }
}

/// Where a restore read the backup from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoredFrom {
    /// The array's own image (a snapshot or a copy volume).
    Array,
    /// The copy in this vault.
    Vault(String),
}

impl RestoredFrom {
    pub fn describe(&self) -> String {
        match self {
            RestoredFrom::Array => "array".into(),
            RestoredFrom::Vault(v) => format!("vault {v}"),
        }
    }
}
