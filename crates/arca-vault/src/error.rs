//! The vault's typed errors. No variant carries a key or a credential: the spec's secrets
//! never reach an error message (object_store's own errors name paths and HTTP statuses only).

/// What went wrong, by kind, so callers (the copy job, the API) can map it to a code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The vault's URL or options are not usable (bad scheme, empty bucket, ...).
    #[error("invalid vault location: {0}")]
    InvalidSpec(String),
    /// `Vault::create` found a vault (its config object) already there.
    #[error("a vault already exists at {0}")]
    AlreadyExists(String),
    /// `Vault::open` found no config object.
    #[error("no vault at {0} (its config object is missing)")]
    NotAVault(String),
    /// The vault is encrypted and no key was given.
    #[error("vault {0} is encrypted: its key is needed")]
    KeyMissing(String),
    /// A key was given for a vault that is not encrypted.
    #[error("vault {0} is not encrypted: it takes no key")]
    KeyNotNeeded(String),
    /// The key does not open the vault's key check.
    #[error("wrong key for vault {0}")]
    WrongKey(String),
    /// A hex key of the wrong length or with non-hex characters.
    #[error("invalid vault key: {0}")]
    InvalidKey(&'static str),
    /// The vault was written by a format this build does not read.
    #[error(
        "vault object {object} has format version {version}; this build reads version {supported}"
    )]
    UnsupportedVersion {
        object: String,
        version: u16,
        supported: u16,
    },
    /// An object needed to read a backup is not in the vault.
    #[error("{}object {object} is missing from the vault", backup_prefix(*.backup_id))]
    MissingObject {
        backup_id: Option<u64>,
        object: String,
    },
    /// An object is in the vault but its bytes are not what was written (altered, truncated,
    /// sealed under another key or for another name).
    #[error("{}object {object} is damaged: {detail}", backup_prefix(*.backup_id))]
    Corrupt {
        backup_id: Option<u64>,
        object: String,
        detail: String,
    },
    /// `finish` found a manifest for this backup already (objects are written once).
    #[error("backup {0} is already in the vault")]
    ManifestExists(u64),
    /// No manifest for this backup.
    #[error("backup {0} is not in the vault")]
    NoManifest(u64),
    /// A copy was driven against its contract (chunks out of range, a base entry asked for
    /// without a base, an image size that does not match, ...).
    #[error("invalid copy: {0}")]
    InvalidCopy(String),
    /// The object store failed (I/O, network, HTTP status) on the named object. `detail`
    /// is the store's message with credential echoes removed (see `scrub`).
    #[error("vault storage error on {object}: {detail}")]
    Store { object: String, detail: String },
    /// The vault's runtime could not be started.
    #[error("vault runtime: {0}")]
    Runtime(std::io::Error),
}

fn backup_prefix(backup_id: Option<u64>) -> String {
    match backup_id {
        Some(id) => format!("backup {id}: "),
        None => String::new(),
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// S3 error bodies that some servers return echo request details; AWS's
/// `SignatureDoesNotMatch` names the access key id. Their contents are cut from messages.
const ECHOED_ELEMENTS: [&str; 6] = [
    "AWSAccessKeyId",
    "StringToSign",
    "StringToSignBytes",
    "CanonicalRequest",
    "CanonicalRequestBytes",
    "SignatureProvided",
];

/// `message` with the contents of the echoed XML elements above replaced by `<redacted>`.
pub(crate) fn scrub(message: &str) -> String {
    let mut out = message.to_string();
    for tag in ECHOED_ELEMENTS {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut from = 0;
        while let Some(start) = out[from..].find(&open).map(|i| from + i + open.len()) {
            let Some(end) = out[start..].find(&close).map(|i| start + i) else {
                break;
            };
            out.replace_range(start..end, "<redacted>");
            from = start + "<redacted>".len() + close.len();
        }
    }
    out
}

impl Error {
    /// A store error on `object`; a missing object becomes `MissingObject` so that callers
    /// can tell "not there" from "could not ask".
    pub(crate) fn store(
        object: &str,
        backup_id: Option<u64>,
        source: object_store::Error,
    ) -> Error {
        match source {
            object_store::Error::NotFound { .. } => Error::MissingObject {
                backup_id,
                object: object.to_string(),
            },
            source => Error::Store {
                object: object.to_string(),
                detail: scrub(&source.to_string()),
            },
        }
    }

    pub(crate) fn corrupt(
        object: &str,
        backup_id: Option<u64>,
        detail: impl Into<String>,
    ) -> Error {
        Error::Corrupt {
            backup_id,
            object: object.to_string(),
            detail: detail.into(),
        }
    }

    /// Attaches the backup being read to an error that did not know it.
    pub(crate) fn for_backup(self, id: u64) -> Error {
        match self {
            Error::MissingObject {
                backup_id: None,
                object,
            } => Error::MissingObject {
                backup_id: Some(id),
                object,
            },
            Error::Corrupt {
                backup_id: None,
                object,
                detail,
            } => Error::Corrupt {
                backup_id: Some(id),
                object,
                detail,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_cuts_echoed_credentials_from_store_messages() {
        let body = "403: <Error><Code>SignatureDoesNotMatch</Code><AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId>\
                    <StringToSign>AWS4 x</StringToSign><SignatureProvided>abc</SignatureProvided></Error>";
        let clean = scrub(body);
        assert!(
            !clean.contains("AKIDEXAMPLE") && !clean.contains("AWS4 x") && !clean.contains("abc")
        );
        assert!(
            clean.contains("SignatureDoesNotMatch") && clean.contains("<AWSAccessKeyId><redacted>")
        );
        assert_eq!(
            scrub("plain <AWSAccessKeyId>unterminated"),
            "plain <AWSAccessKeyId>unterminated"
        );
    }
}
