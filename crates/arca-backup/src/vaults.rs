//! The vault registry: the repositories outside the pool that backups are copied to (a
//! directory, or an S3-compatible bucket and prefix), with what reaching them needs and, for an
//! encrypted vault, its key. Nothing here contacts a vault: the repository layer does, given an
//! entry.
//!
//! Table (an application table of the store, like the catalog's):
//!
//! | table    | key             | value                                    |
//! |----------|-----------------|------------------------------------------|
//! | `vaults` | the vault name  | version byte 1, then postcard [`VaultEntry`] |
//!
//! Version 1's postcard layout, fields in order: `name` (length-prefixed UTF-8), `url`
//! (likewise, the normalized URL), `endpoint` and `region` (each 0, or 1 then a string),
//! `allow_http` (one byte 0/1), `credentials` (0, or 1 then the access key and the secret key as
//! strings), `key` (0, or 1 then 32 raw bytes), `vault_id` (0, or 1 then 16 raw bytes),
//! `added_ms` (varint).
//!
//! Secrets (the S3 keys and the vault key) are kept only here: [`Secret`] and [`VaultKey`]
//! print as `<redacted>` in Debug output, the API never returns them (the key leaves only by
//! `vault key export`), and no error message quotes them.

use std::fmt;
use std::ops::Bound;

use arca_store::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use crate::backups::{Backups, invalid};

pub const VAULTS: &str = "vaults";
const VAULT_VERSION: u8 = 1;
/// Vaults one pool registers.
pub const VAULTS_MAX: usize = 32;
pub const URL_LEN_MAX: usize = 1024;
pub const ENDPOINT_LEN_MAX: usize = 256;
pub const REGION_LEN_MAX: usize = 64;
pub const SECRET_LEN_MAX: usize = 1024;
/// Bytes of a vault's encryption key.
pub const KEY_LEN: usize = 32;
/// Metadata one registry entry may take (admitted before it is written).
const ENTRY_ROOM_BYTES: u64 = 8192;

/// A credential: stored and used, never shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself, for the code that uses it (never for messages).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An encrypted vault's key: made from the OS's randomness at `vault add`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultKey(pub [u8; KEY_LEN]);

impl VaultKey {
    fn generate() -> Result<VaultKey> {
        let mut k = [0u8; KEY_LEN];
        getrandom::fill(&mut k).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("the operating system gave no random bytes for a vault key: {e}"),
            )
        })?;
        Ok(VaultKey(k))
    }

    /// Lowercase hex, as `vault key export` writes it.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The repository layer's form of the same key (one key, two crates: the registry keeps
    /// it with serde, the repository seals with it).
    pub fn to_repository(&self) -> arca_vault::VaultKey {
        arca_vault::VaultKey::from_bytes(self.0)
    }

    /// Parses an exported key (`vault import --key-file`): 64 hex digits.
    pub fn from_hex(text: &str) -> Result<VaultKey> {
        arca_vault::VaultKey::from_hex(text.trim())
            .map(|k| VaultKey(*k.as_bytes()))
            .map_err(|e| invalid(e.to_string()))
    }
}

impl fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// S3 credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub access_key: Secret,
    pub secret_key: Secret,
}

/// Where a vault is, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultLocation {
    /// `file:///PATH`: a directory (the path is taken literally: no percent-decoding).
    Directory { path: String },
    /// `s3://BUCKET/PREFIX`: objects under the prefix (may be empty) in the bucket.
    S3 { bucket: String, prefix: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultEntry {
    pub name: String,
    /// Normalized: no trailing `/`.
    pub url: String,
    /// S3 only: the service's URL (default: the provider's own).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// S3 only: an `http://` endpoint is accepted (data and credentials in clear).
    pub allow_http: bool,
    pub credentials: Option<Credentials>,
    /// Set for an encrypted vault.
    pub key: Option<VaultKey>,
    /// The id the vault carries, once the repository layer has opened it.
    pub vault_id: Option<[u8; 16]>,
    pub added_ms: u64,
}

impl VaultEntry {
    pub fn encode(&self) -> Vec<u8> {
        crate::stored::encode(VAULT_VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> std::result::Result<VaultEntry, String> {
        crate::stored::decode(VAULT_VERSION, "vault entry", bytes)
    }

    pub fn location(&self) -> VaultLocation {
        parse_url(&self.url).expect("registered URLs were checked when added")
    }

    pub fn encrypted(&self) -> bool {
        self.key.is_some()
    }
}

/// What `vault add` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewVault {
    pub name: String,
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: bool,
    pub access_key: Option<Secret>,
    pub secret_key: Option<Secret>,
    pub encrypt: bool,
}

fn no_control(what: &str, s: &str) -> std::result::Result<(), String> {
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(())
}

/// Path segments: none empty, `.` or `..` (the place must be what it says).
fn check_segments(what: &str, path: &str) -> std::result::Result<(), String> {
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!(
                "{what} {path:?} has an empty, '.' or '..' segment; give the place plainly"
            ));
        }
    }
    Ok(())
}

fn check_bucket(b: &str) -> std::result::Result<(), String> {
    let ok_chars = b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
    let ends = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&b.len())
        || !ok_chars
        || !ends(b.bytes().next())
        || !ends(b.bytes().last())
        || b.contains("..")
    {
        return Err(format!(
            "bucket {b:?} is not a valid bucket name (3 to 63 lowercase letters, digits, '.' and \
             '-', starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// Parses and checks a vault URL: `file:///ABSOLUTE/PATH` or `s3://BUCKET[/PREFIX]`.
pub fn parse_url(url: &str) -> std::result::Result<VaultLocation, String> {
    if url.len() > URL_LEN_MAX {
        return Err(format!(
            "the URL is {} bytes; at most {URL_LEN_MAX}",
            url.len()
        ));
    }
    no_control("the URL", url)?;
    // Not quoted: `user:password@` would put a secret in the message.
    let authority = url
        .split_once("://")
        .map_or("", |(_, r)| r.split('/').next().unwrap_or(""));
    if authority.contains('@') {
        return Err("the URL must not carry credentials (user@...); give key files instead".into());
    }
    let trimmed = url.trim_end_matches('/');
    if let Some(rest) = url.strip_prefix("file://") {
        let path = rest.trim_end_matches('/');
        if !rest.starts_with('/') {
            return Err(format!(
                "{url:?}: a directory vault is file:///ABSOLUTE/PATH (no host, an absolute path)"
            ));
        }
        if path.is_empty() {
            return Err("the root directory cannot be a vault; name a directory".into());
        }
        check_segments("path", &path[1..])?;
        return Ok(VaultLocation::Directory {
            path: path.to_string(),
        });
    }
    if let Some(rest) = trimmed.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket)?;
        if !prefix.is_empty() {
            check_segments("prefix", prefix)?;
            if prefix.contains('\\') {
                return Err(format!("prefix {prefix:?} must not contain '\\'"));
            }
        }
        return Ok(VaultLocation::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        });
    }
    // Quoted only when it cannot hold credentials (text without a scheme might be one).
    let shown = if url.contains('@') || url.contains(':') && !url.contains("://") {
        "the URL".to_string()
    } else {
        format!("{url:?}")
    };
    Err(format!(
        "{shown}: a vault URL is file:///PATH (a directory) or s3://BUCKET/PREFIX"
    ))
}

fn check_secret(what: &str, s: &Secret) -> std::result::Result<(), String> {
    // Never quote the value.
    let v = s.expose();
    if v.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if v.len() > SECRET_LEN_MAX {
        return Err(format!("the {what} is longer than {SECRET_LEN_MAX} bytes"));
    }
    if v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "the {what} must not contain spaces or control characters"
        ));
    }
    Ok(())
}

fn check_endpoint(e: &str, allow_http: bool) -> std::result::Result<(), String> {
    if e.len() > ENDPOINT_LEN_MAX {
        return Err(format!(
            "the endpoint is longer than {ENDPOINT_LEN_MAX} bytes"
        ));
    }
    if e.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the endpoint must not contain spaces or control characters".into());
    }
    let (http, rest) = match (e.strip_prefix("https://"), e.strip_prefix("http://")) {
        (Some(r), _) => (false, r),
        (None, Some(r)) => (true, r),
        _ => return Err("the endpoint must be an http:// or https:// URL".into()),
    };
    let authority = rest.split('/').next().unwrap_or("");
    // Not quoted: it could hold a password.
    if authority.contains('@') {
        return Err(
            "the endpoint must not carry credentials (user@host); give key files instead".into(),
        );
    }
    if authority.is_empty() {
        return Err(format!("the endpoint {e:?} names no host"));
    }
    if http && !allow_http {
        return Err(format!(
            "the endpoint {e:?} is plain http (credentials and data readable on the network); \
             allow http to accept that"
        ));
    }
    Ok(())
}

impl NewVault {
    /// Checks everything; the URL normalized.
    pub fn validate(&self) -> Result<String> {
        arca_store::names::validate("vault", &self.name)?;
        let location = parse_url(&self.url).map_err(invalid)?;
        let s3 = matches!(location, VaultLocation::S3 { .. });
        let s3_only = |what: &str| {
            invalid(format!(
                "{what} applies to S3 vaults only; {} is a directory",
                self.url
            ))
        };
        match &self.endpoint {
            Some(_) if !s3 => return Err(s3_only("an endpoint")),
            Some(e) => check_endpoint(e, self.allow_http).map_err(invalid)?,
            None => {}
        }
        if self.allow_http && !s3 {
            return Err(s3_only("allowing http"));
        }
        if let Some(r) = &self.region {
            if !s3 {
                return Err(s3_only("a region"));
            }
            let ok = !r.is_empty()
                && r.len() <= REGION_LEN_MAX
                && r.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
            if !ok {
                return Err(invalid(format!(
                    "region {r:?}: 1 to {REGION_LEN_MAX} lowercase letters, digits and '-'"
                )));
            }
        }
        match (&self.access_key, &self.secret_key) {
            (None, None) => {}
            (Some(a), Some(s)) => {
                if !s3 {
                    return Err(s3_only("credentials"));
                }
                check_secret("access key", a).map_err(invalid)?;
                check_secret("secret key", s).map_err(invalid)?;
            }
            _ => {
                return Err(invalid(
                    "give both the access key and the secret key, or neither",
                ));
            }
        }
        Ok(self.url.trim_end_matches('/').to_string())
    }
}

/// A vault removed from the registry, and the backups whose copy entries went with it.
#[derive(Debug, Clone)]
pub struct RemovedVault {
    pub entry: VaultEntry,
    pub dropped_from: Vec<crate::BackupId>,
}

fn vault_not_found(name: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("vault {name} does not exist"))
}

fn read_entry(name: &str, bytes: &[u8]) -> Result<VaultEntry> {
    VaultEntry::decode(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("vault {name}: registry entry unreadable: {e}"),
        )
    })
}

impl Backups {
    /// Registers a vault (nothing contacts it here). With `encrypt`, makes its key.
    pub fn add_vault(&self, req: NewVault) -> Result<VaultEntry> {
        let url = req.validate()?;
        let key = if req.encrypt {
            Some(VaultKey::generate()?)
        } else {
            None
        };
        let _c = self.catalog_lock.lock();
        let existing = self.vaults()?;
        if existing.iter().any(|v| v.name == req.name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("vault {} exists already", req.name),
            ));
        }
        if let Some(v) = existing
            .iter()
            .find(|v| v.url == url && v.endpoint == req.endpoint)
        {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("vault {} is registered at {url} already", v.name),
            ));
        }
        if existing.len() >= VAULTS_MAX {
            return Err(invalid(format!(
                "{} vaults are registered; at most {VAULTS_MAX}",
                existing.len()
            )));
        }
        let entry = VaultEntry {
            name: req.name,
            url,
            endpoint: req.endpoint,
            region: req.region,
            allow_http: req.allow_http,
            credentials: req
                .access_key
                .zip(req.secret_key)
                .map(|(a, s)| Credentials {
                    access_key: a,
                    secret_key: s,
                }),
            key,
            vault_id: None,
            added_ms: self.now_ms(),
        };
        let mut t = self.pool.transaction();
        t.admit(&format!("vault {}", entry.name), ENTRY_ROOM_BYTES)?;
        t.put(VAULTS, entry.name.as_bytes().to_vec(), entry.encode());
        t.commit()?;
        Ok(entry)
    }

    /// Every registered vault, by name.
    pub fn vaults(&self) -> Result<Vec<VaultEntry>> {
        let mut rows = Vec::new();
        self.pool
            .app_scan(VAULTS, Bound::Unbounded, Bound::Unbounded, false, |k, v| {
                rows.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
                true
            })?;
        rows.iter().map(|(k, v)| read_entry(k, v)).collect()
    }

    pub fn vault(&self, name: &str) -> Result<VaultEntry> {
        match self.pool.app_get(VAULTS, name.as_bytes())? {
            Some(v) => read_entry(name, &v),
            None => Err(vault_not_found(name)),
        }
    }

    /// The key of an encrypted vault: the only way it leaves the registry.
    pub fn vault_key(&self, name: &str) -> Result<VaultKey> {
        self.vault(name)?.key.ok_or_else(|| {
            invalid(format!(
                "vault {name} is not encrypted: it has no key to export"
            ))
        })
    }

    /// Records the id the vault carries (the repository layer reads it when it first opens
    /// the vault). Once set it never changes: another id means the URL now points elsewhere.
    pub fn bind_vault_id(&self, name: &str, id: [u8; 16]) -> Result<VaultEntry> {
        let _c = self.catalog_lock.lock();
        let mut e = self.vault(name)?;
        match e.vault_id {
            Some(known) if known == id => return Ok(e),
            Some(known) => {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "vault {name} at {} holds vault id {}, but {} was registered there",
                        e.url,
                        hex(&id),
                        hex(&known)
                    ),
                ));
            }
            None => e.vault_id = Some(id),
        }
        let mut t = self.pool.transaction();
        t.put(VAULTS, name.as_bytes().to_vec(), e.encode());
        t.commit()?;
        Ok(e)
    }

    /// Gives a registered vault the key an exported key file holds (`vault import
    /// --key-file` on another array). The caller checks the key against the vault first.
    pub fn set_vault_key(&self, name: &str, key: VaultKey) -> Result<VaultEntry> {
        let _c = self.catalog_lock.lock();
        let mut e = self.vault(name)?;
        if e.key.as_ref() == Some(&key) {
            return Ok(e);
        }
        e.key = Some(key);
        let mut t = self.pool.transaction();
        t.put(VAULTS, name.as_bytes().to_vec(), e.encode());
        t.commit()?;
        self.close_vault(name);
        Ok(e)
    }

    /// Removes a vault from the registry (its data stays where it is). Refused while any
    /// backup lists a copy in it, naming them, unless `force`: then those copy entries are
    /// dropped from the records, each noting it in its history, in the same transaction (a
    /// backup that lived only in that vault becomes `deleted`).
    pub fn remove_vault(&self, name: &str, force: bool) -> Result<RemovedVault> {
        let _c = self.catalog_lock.lock();
        let entry = self.vault(name)?;
        let holding = self.backups_in_vault_locked(name)?;
        if !holding.is_empty() && !force {
            let ids: Vec<String> = holding.iter().map(|r| r.id.to_string()).collect();
            return Err(Error::new(
                ErrorKind::Busy,
                format!(
                    "vault {name} holds copies of backup(s) {}; remove it with force to drop \
                     those copy entries from their records",
                    ids.join(", ")
                ),
            ));
        }
        let now = self.now_ms();
        let mut t = self.pool.transaction();
        let mut dropped_from = Vec::new();
        for old in holding {
            let mut new = old.clone();
            new.vault_copies.retain(|c| c.vault != name);
            new.push_history(
                now,
                crate::Event::VaultCopyForgotten {
                    vault: name.to_string(),
                },
            );
            if new.off_array_since_ms.is_some() && new.vault_copies.is_empty() {
                // Its last copy is no longer known anywhere: the backup is gone for this array.
                new.status = crate::Status::Deleted;
                new.status_reason = Some(format!(
                    "its only copy was in vault {name}, removed from the registry"
                ));
            }
            crate::catalog::put(&mut t, Some(&old), &new);
            if new.on_array() {
                self.tag_destination(&mut t, &new)?;
            }
            dropped_from.push(new.id);
        }
        t.delete(VAULTS, name.as_bytes().to_vec());
        t.commit()?;
        self.close_vault(name);
        Ok(RemovedVault {
            entry,
            dropped_from,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> VaultEntry {
        VaultEntry {
            name: "v".into(),
            url: "s3://b-1/p".into(),
            endpoint: None,
            region: None,
            allow_http: false,
            credentials: Some(Credentials {
                access_key: Secret::new("AKIDSECRETVALUE".into()),
                secret_key: Secret::new("SKSECRETVALUE".into()),
            }),
            key: Some(VaultKey([0xAB; KEY_LEN])),
            vault_id: None,
            added_ms: 300,
        }
    }

    #[test]
    fn entries_encode_as_documented_and_round_trip() {
        let e = entry();
        let b = e.encode();
        let mut want = vec![1, 1, b'v', 10];
        want.extend(b"s3://b-1/p");
        want.extend([0, 0, 0, 1, 15]);
        want.extend(b"AKIDSECRETVALUE");
        want.push(13);
        want.extend(b"SKSECRETVALUE");
        want.push(1);
        want.extend([0xAB; KEY_LEN]);
        want.extend([0, 0xAC, 0x02]);
        assert_eq!(b, want);
        assert_eq!(VaultEntry::decode(&b).unwrap(), e);
        assert!(VaultEntry::decode(&b[..b.len() - 1]).is_err());
        let mut other = b.clone();
        other[0] = 2;
        assert!(
            VaultEntry::decode(&other)
                .unwrap_err()
                .contains("version 2")
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let text = format!("{:?}", entry());
        for secret in ["AKIDSECRETVALUE", "SKSECRETVALUE", "abab", "171, 171"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("<redacted>"));
        let req = NewVault {
            access_key: Some(Secret::new("AKIDSECRETVALUE".into())),
            ..NewVault::default()
        };
        assert!(!format!("{req:?}").contains("AKIDSECRETVALUE"));
    }

    #[test]
    fn urls_are_checked_and_normalized() {
        assert_eq!(
            parse_url("file:///mnt/backup/arca/").unwrap(),
            VaultLocation::Directory {
                path: "/mnt/backup/arca".into()
            }
        );
        assert_eq!(
            parse_url("s3://my.bucket-1/a/b/").unwrap(),
            VaultLocation::S3 {
                bucket: "my.bucket-1".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            parse_url("s3://bkt").unwrap(),
            VaultLocation::S3 {
                bucket: "bkt".into(),
                prefix: String::new()
            }
        );
        for (bad, why) in [
            ("http://x/y", "file:///PATH"),
            ("file://host/x", "absolute"),
            ("file://relative", "absolute"),
            ("file:///", "root"),
            ("file:///a/../b", "'..'"),
            ("file:///a//b", "empty"),
            ("s3://B/x", "bucket"),
            ("s3://ab", "bucket"),
            ("s3://-ab/x", "bucket"),
            ("s3://bkt/a/./b", "'.'"),
            ("s3://bkt/a\nb", "control"),
            ("s3://AKID:pw@bkt/x", "credentials"),
            ("https://AKID:pw@host/x", "credentials"),
            ("AKID:pw@bkt", "the URL: a vault URL"),
            ("", "file:///PATH"),
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(!e.contains("pw@"), "{bad:?}: {e}");
        }
        assert!(parse_url(&format!("file:///{}", "a".repeat(URL_LEN_MAX))).is_err());
    }

    #[test]
    fn requests_are_checked_without_quoting_secrets() {
        let ok = NewVault {
            name: "off".into(),
            url: "s3://bkt/p/".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            allow_http: true,
            region: Some("us-east-1".into()),
            access_key: Some(Secret::new("AK".into())),
            secret_key: Some(Secret::new("SK".into())),
            encrypt: true,
        };
        assert_eq!(ok.validate().unwrap(), "s3://bkt/p");
        let dir = NewVault {
            name: "d".into(),
            url: "file:///srv/v".into(),
            ..NewVault::default()
        };
        assert!(dir.validate().is_ok());
        let err = |v: NewVault| v.validate().unwrap_err().to_string();
        assert!(
            err(NewVault {
                name: "a b".into(),
                ..dir.clone()
            })
            .contains("vault name")
        );
        for (v, why) in [
            (
                NewVault {
                    endpoint: Some("https://e".into()),
                    ..dir.clone()
                },
                "S3 vaults only",
            ),
            (
                NewVault {
                    region: Some("r".into()),
                    ..dir.clone()
                },
                "S3 vaults only",
            ),
            (
                NewVault {
                    allow_http: true,
                    ..dir.clone()
                },
                "S3 vaults only",
            ),
            (
                NewVault {
                    allow_http: false,
                    ..ok.clone()
                },
                "allow http",
            ),
            (
                NewVault {
                    endpoint: Some("ftp://e".into()),
                    ..ok.clone()
                },
                "http:// or https://",
            ),
            (
                NewVault {
                    endpoint: Some("https://u:pw@e".into()),
                    ..ok.clone()
                },
                "credentials",
            ),
            (
                NewVault {
                    region: Some("US".into()),
                    ..ok.clone()
                },
                "region",
            ),
            (
                NewVault {
                    secret_key: None,
                    ..ok.clone()
                },
                "both",
            ),
        ] {
            let e = err(v);
            assert!(e.contains(why), "{e}");
            assert!(!e.contains("pw"), "{e}");
        }
        let bad_secret = NewVault {
            secret_key: Some(Secret::new("TOP SECRET".into())),
            ..ok.clone()
        };
        let e = err(bad_secret);
        assert!(e.contains("secret key") && !e.contains("TOP"), "{e}");
    }
}
