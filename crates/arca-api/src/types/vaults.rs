//! Vaults (repositories outside the pool backups are copied to), and the copies and
//! host-written information of backups.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;

/// `POST /v1/vaults`: register a vault; the daemon opens (or creates) its repository and
/// refuses one it cannot reach. The credentials are stored and
/// never returned; with `encrypt`, a key is made and kept in the pool's metadata (only
/// `POST /v1/vaults/{name}/key-export` returns it).
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddVault {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// `file:///ABSOLUTE/PATH` (a directory, taken literally) or `s3://BUCKET/PREFIX`.
    #[schema(max_length = 1024)]
    pub url: String,
    /// S3 only: the service's `https://` URL (`http://` needs `allow_http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub endpoint: Option<String>,
    /// S3 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub region: Option<String>,
    /// S3 only: accept a plain `http://` endpoint (data and credentials in clear).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http: bool,
    /// S3 only, with `secret_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1024)]
    pub access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1024)]
    pub secret_key: Option<String>,
    /// Seal what is written to the vault under a key made now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypt: bool,
}

/// The credentials never show, even in Debug output.
impl fmt::Debug for AddVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("AddVault")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key", &redacted(&self.access_key))
            .field("secret_key", &redacted(&self.secret_key))
            .field("encrypt", &self.encrypt)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VaultKind {
    Directory,
    S3,
}

wire_names!(VaultKind {
    Directory => "directory",
    S3 => "s3",
});

/// A registered vault, without its secrets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Vault {
    pub name: String,
    pub url: String,
    pub kind: VaultKind,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: bool,
    /// Credentials are stored (they are never shown).
    pub credentials: bool,
    pub encrypted: bool,
    /// The id the vault carries (hex), once it has been opened.
    pub vault_id: Option<String>,
    #[schema(format = DateTime)]
    pub added: String,
    /// Backups listing a copy in it.
    pub backups: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RemovedVault {
    pub vault: Vault,
    /// Backups whose copy entries in this vault were dropped (with force).
    #[schema(value_type = Vec<u64>)]
    pub dropped_from: Vec<arca_backup::BackupId>,
}

/// An encrypted vault's key, for disaster recovery: with it, another array can read the vault.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct VaultKeyExport {
    pub vault: String,
    /// 32 bytes, lowercase hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub key: String,
}

impl fmt::Debug for VaultKeyExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultKeyExport")
            .field("vault", &self.vault)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A finished copy of a backup in a vault.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupVaultCopy {
    pub vault: String,
    /// The vault's own id, hex.
    pub vault_id: String,
    pub manifest: String,
    #[schema(format = DateTime)]
    pub copied: String,
    pub bytes_read: u64,
    pub bytes_new: u64,
    pub bytes_stored: u64,
    /// The copied image's digest root, hex.
    pub digest_root: String,
}

/// A copy a host made itself and recorded.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupHostCopy {
    pub medium: String,
    pub location: Option<String>,
    /// The program that made it.
    pub by: Option<String>,
    #[schema(format = DateTime)]
    pub copied: String,
}

/// `POST /v1/backups/{id}/annotate`: change what the host said about a backup. Given fields
/// are set; `meta` pairs are set and `unset_meta` keys removed. Bounds as at creation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnotateBackup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 1024)]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub content_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unset_meta: Vec<String>,
}

/// `POST /v1/backups/{id}/host-copies`: record a copy the host made itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordHostCopy {
    /// What holds it: `tape`, `usb disk`...
    #[schema(min_length = 1, max_length = 256)]
    pub medium: String,
    /// Where: a tape label, a path...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub location: Option<String>,
    /// The program that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub by: Option<String>,
    /// When (RFC 3339; default now; not in the future).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub copied: Option<String>,
}

/// `POST /v1/vaults/{name}/copies`: copy complete backups on the array into the vault, as one
/// `vault-copy` job (oldest first; each reads only what changed since an earlier backup of
/// its volume already in the vault, when that one is still on the array).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyToVault {
    #[schema(value_type = Vec<u64>)]
    pub backups: Vec<arca_backup::BackupId>,
}

/// The job a `POST /v1/vaults/{name}/copies` started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultCopyStarted {
    #[schema(value_type = u64)]
    pub job: arca_backup::JobId,
}

/// `POST /v1/vaults/{name}/import`: add the vault's backups to this array's catalog.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportVault {
    /// An encrypted vault's exported key (64 hex digits), when this array does not hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl std::fmt::Debug for ImportVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportVault")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A manifest `vault import` could not import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportFailure {
    pub backup: u64,
    pub error: String,
}

/// What `vault import` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultImported {
    pub vault: String,
    /// Backups added to the catalog (they live only in the vault).
    #[schema(value_type = Vec<u64>)]
    pub imported: Vec<arca_backup::BackupId>,
    /// Backups the catalog had already; their copy in the vault is recorded.
    #[schema(value_type = Vec<u64>)]
    pub known: Vec<arca_backup::BackupId>,
    pub failed: Vec<ImportFailure>,
}
