//! How the backup layer stores a value in the pool's metadata: a version byte, then postcard.
//! A value's type changes only with a new version (postcard is not self-describing).

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) fn encode<T: Serialize>(version: u8, v: &T) -> Vec<u8> {
    let mut out = vec![version];
    out.extend(postcard::to_stdvec(v).expect("stored values serialize"));
    out
}

/// Decodes a value of `version`; `what` names it in errors.
pub(crate) fn decode<T: DeserializeOwned>(version: u8, what: &str, b: &[u8]) -> Result<T, String> {
    match b.split_first() {
        Some((v, rest)) if *v == version => {
            postcard::from_bytes(rest).map_err(|e| format!("{what}: {e}"))
        }
        Some((v, _)) => Err(format!("{what} version {v} is not supported")),
        None => Err(format!("empty {what}")),
    }
}
