//! Where a vault lives (`VaultSpec`) and the key that seals it (`VaultKey`), and the one place
//! that turns a spec into an object store: a directory and an S3 bucket share every other
//! line of the crate.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

use crate::error::{Error, Result};

/// A vault's location and credentials. `url` is `file:///absolute/dir` or
/// `s3://bucket[/prefix]`; the other fields apply to S3 only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct VaultSpec {
    pub url: String,
    /// The S3 endpoint (`http://127.0.0.1:9000`); none means AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Plain HTTP to the endpoint (a loopback or lab server); off by default.
    pub allow_http: bool,
}

// Credentials are never printed: Debug shows only whether they are set.
impl fmt::Debug for VaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("VaultSpec")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &redact(&self.access_key))
            .field("secret_key", &redact(&self.secret_key))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// The parsed form of `VaultSpec::url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Dir(std::path::PathBuf),
    S3 { bucket: String, prefix: String },
}

/// Transient S3 faults are retried by object_store's client with exponential backoff and
/// jitter: HTTP 5xx, 429 and 408 on every request; a connection that cannot be made or that
/// closed before the request was sent on every request; a timeout or a reset after the
/// request was sent on idempotent requests only (reads, plain puts, multipart parts and
/// completion; not a create-if-absent put, whose retry could find its own first attempt).
/// Backoff starts at 100 ms and doubles to at most 8 s: 8 retries span about 30 s, within
/// `S3_RETRY_TIMEOUT_S`. A longer outage fails the request; the copy then fails cleanly and
/// its retry reuses every pack already uploaded.
fn s3_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(8),
            base: 2.0,
        },
        max_retries: 8,
        retry_timeout: Duration::from_secs(S3_RETRY_TIMEOUT_S),
    }
}
const S3_RETRY_TIMEOUT_S: u64 = 60;

/// A request may take 120 s (a 16 MiB part at 1.1 Mbit/s), a connection 5 s to open.
fn s3_client_options() -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_timeout(Duration::from_secs(120))
        .with_connect_timeout(Duration::from_secs(5))
}

impl VaultSpec {
    /// A spec for a directory vault.
    pub fn dir(path: impl AsRef<std::path::Path>) -> VaultSpec {
        VaultSpec {
            url: format!("file://{}", path.as_ref().display()),
            ..VaultSpec::default()
        }
    }

    pub(crate) fn location(&self) -> Result<Location> {
        if let Some(path) = self.url.strip_prefix("file://") {
            let path = std::path::PathBuf::from(path);
            if !path.is_absolute() {
                return Err(Error::InvalidSpec(format!(
                    "{}: a file:// URL takes an absolute path (file:///dir)",
                    self.url
                )));
            }
            return Ok(Location::Dir(path));
        }
        if let Some(rest) = self.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::InvalidSpec(format!("{}: no bucket", self.url)));
            }
            let prefix = prefix.trim_matches('/').to_string();
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        Err(Error::InvalidSpec(format!(
            "{}: the URL must start with file:// or s3://",
            self.url
        )))
    }

    /// The object store the spec names, rooted at the vault. `create_dir` makes a missing
    /// directory (for `Vault::create`); opening never creates anything.
    pub fn build_store(&self, create_dir: bool) -> Result<Arc<dyn ObjectStore>> {
        match self.location()? {
            Location::Dir(path) => {
                if create_dir {
                    std::fs::create_dir_all(&path).map_err(|e| {
                        Error::InvalidSpec(format!("{}: cannot create: {e}", path.display()))
                    })?;
                }
                if !path.is_dir() {
                    return Err(Error::NotAVault(self.url.clone()));
                }
                let store = LocalFileSystem::new_with_prefix(&path)
                    .map_err(|e| Error::store(&self.url, None, e))?
                    .with_automatic_cleanup(true);
                Ok(Arc::new(store))
            }
            Location::S3 { bucket, prefix } => {
                // TLS goes through rustls with the ring provider (no C toolchain beyond cc);
                // installing it twice is harmless, so the error is ignored.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&bucket)
                    .with_region(self.region.as_deref().unwrap_or("us-east-1"))
                    .with_client_options(s3_client_options())
                    .with_allow_http(self.allow_http)
                    .with_retry(s3_retry());
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = &self.access_key {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &self.secret_key {
                    builder = builder.with_secret_access_key(secret);
                }
                // The builder's own message names the option that is wrong, never its value.
                let store = builder.build().map_err(|e| {
                    Error::InvalidSpec(format!("{}: {}", self.url, redact_store_error(&e)))
                })?;
                if prefix.is_empty() {
                    Ok(Arc::new(store))
                } else {
                    Ok(Arc::new(PrefixStore::new(store, prefix.as_str())))
                }
            }
        }
    }
}

/// The builder error's kind without its details (which could echo a configured value).
fn redact_store_error(e: &object_store::Error) -> String {
    match e {
        object_store::Error::Generic { store, .. } => format!("{store} configuration rejected"),
        other => other.to_string(),
    }
}

/// A vault's 32-byte secret. It derives the key that seals every object of an encrypted
/// vault; losing it loses the vault. Debug never shows it; `to_hex` is the one export.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultKey([u8; 32]);

impl VaultKey {
    /// A new random key from the operating system.
    pub fn generate() -> VaultKey {
        VaultKey(crate::crypto::random_array())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> VaultKey {
        VaultKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits (surrounding white space is ignored on import).
    pub fn to_hex(&self) -> String {
        crate::format::hex(&self.0)
    }

    pub fn from_hex(text: &str) -> Result<VaultKey> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(Error::InvalidKey("a key is 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => out[i] = h << 4 | l,
                _ => return Err(Error::InvalidKey("a key has hex digits only")),
            }
        }
        Ok(VaultKey(out))
    }
}

impl fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_credentials_and_keys() {
        let spec = VaultSpec {
            url: "s3://b/p".into(),
            access_key: Some("AKIDSECRETACCESS".into()),
            secret_key: Some("verysecretsecret".into()),
            ..VaultSpec::default()
        };
        let shown = format!("{spec:?}");
        assert!(!shown.contains("AKIDSECRETACCESS") && !shown.contains("verysecretsecret"));
        assert!(shown.contains("<redacted>"));
        let key = VaultKey::from_bytes([0xab; 32]);
        assert!(!format!("{key:?}").contains("abab"));
    }

    #[test]
    fn key_hex_round_trip_and_rejects_bad_text() {
        let key = VaultKey::generate();
        assert_eq!(
            VaultKey::from_hex(&format!(" {}\n", key.to_hex())).unwrap(),
            key
        );
        assert!(matches!(
            VaultKey::from_hex("abc"),
            Err(Error::InvalidKey(_))
        ));
        assert!(matches!(
            VaultKey::from_hex(&"g".repeat(64)),
            Err(Error::InvalidKey(_))
        ));
    }

    #[test]
    fn urls_parse_to_locations() {
        let s = |url: &str| VaultSpec {
            url: url.into(),
            ..VaultSpec::default()
        };
        assert_eq!(
            s("file:///a/b").location().unwrap(),
            Location::Dir("/a/b".into())
        );
        assert_eq!(
            s("s3://bkt/x/y/").location().unwrap(),
            Location::S3 {
                bucket: "bkt".into(),
                prefix: "x/y".into()
            }
        );
        assert_eq!(
            s("s3://bkt").location().unwrap(),
            Location::S3 {
                bucket: "bkt".into(),
                prefix: String::new()
            }
        );
        assert!(matches!(
            s("file://rel").location(),
            Err(Error::InvalidSpec(_))
        ));
        assert!(matches!(
            s("s3:///p").location(),
            Err(Error::InvalidSpec(_))
        ));
        assert!(matches!(
            s("http://x").location(),
            Err(Error::InvalidSpec(_))
        ));
    }
}
