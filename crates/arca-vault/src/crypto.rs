//! Chunk ids, sealing and random numbers.
//!
//! - A chunk's id is BLAKE3 in keyed mode over the chunk's plaintext, keyed with the vault's
//!   32-byte chunk-id key (random per vault, kept in the config object). Identical data in
//!   one vault gets one id (dedup across volumes, clones and generations), but ids reveal
//!   nothing to whoever lacks the key (no dictionary of known-content hashes).
//! - Sealing is XChaCha20-Poly1305: a fresh random 24-byte nonce per sealed blob (192-bit
//!   nonces make random choice safe for any number of objects), the 16-byte tag after the
//!   ciphertext. The sealing key is derived from the `VaultKey` with BLAKE3's key derivation
//!   under the context string `OBJECT_KEY_CONTEXT`, so the user's key is never used directly.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::spec::VaultKey;

pub(crate) const NONCE_LEN: usize = 24;
pub(crate) const TAG_LEN: usize = 16;
/// Bytes a sealed blob adds to its plaintext.
pub(crate) const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const OBJECT_KEY_CONTEXT: &str = "arca-vault format 1 object sealing key";

/// A 32-byte chunk id.
pub type ChunkId = [u8; 32];

/// `N` bytes from the operating system's generator. A machine that cannot give random
/// numbers cannot make keys, nonces or ids safely: that is an environment fault, not input.
pub(crate) fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random number generator failed");
    out
}

pub(crate) fn chunk_id(chunk_key: &[u8; 32], data: &[u8]) -> ChunkId {
    *blake3::keyed_hash(chunk_key, data).as_bytes()
}

/// Seals and opens objects of one vault; `None` for a vault without encryption, where
/// `seal` is the identity (integrity then comes from the checksums of `format`).
#[derive(Clone)]
pub(crate) struct Sealer {
    cipher: Option<XChaCha20Poly1305>,
}

impl Sealer {
    pub(crate) fn plain() -> Sealer {
        Sealer { cipher: None }
    }

    pub(crate) fn from_key(key: &VaultKey) -> Sealer {
        let derived = blake3::derive_key(OBJECT_KEY_CONTEXT, key.as_bytes());
        Sealer {
            cipher: Some(XChaCha20Poly1305::new((&derived).into())),
        }
    }

    pub(crate) fn encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// `nonce (24) || ciphertext || tag (16)`, or the plaintext itself when not encrypted.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let Some(cipher) = &self.cipher else {
            return plaintext.to_vec();
        };
        let nonce: [u8; NONCE_LEN] = random_array();
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext, or `None` when the blob was not sealed by this key for this `aad`
    /// (altered, truncated, another key, another object).
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let Some(cipher) = &self.cipher else {
            return Some(sealed.to_vec());
        };
        if sealed.len() < SEAL_OVERHEAD {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_blobs_open_only_with_their_key_and_aad() {
        let key = VaultKey::generate();
        let sealer = Sealer::from_key(&key);
        let blob = sealer.seal(b"name", b"hello world");
        assert_eq!(blob.len(), 11 + SEAL_OVERHEAD);
        assert_eq!(sealer.open(b"name", &blob).unwrap(), b"hello world");
        assert!(sealer.open(b"other", &blob).is_none());
        assert!(
            Sealer::from_key(&VaultKey::generate())
                .open(b"name", &blob)
                .is_none()
        );
        let mut flipped = blob.clone();
        flipped[30] ^= 1;
        assert!(sealer.open(b"name", &flipped).is_none());
        assert!(sealer.open(b"name", &blob[..10]).is_none());
        // Two seals of one plaintext differ (random nonces): no equality leaks.
        assert_ne!(sealer.seal(b"name", b"hello world"), blob);
    }

    #[test]
    fn chunk_ids_depend_on_the_vault_key() {
        assert_ne!(chunk_id(&[1; 32], b"data"), chunk_id(&[2; 32], b"data"));
        assert_eq!(chunk_id(&[1; 32], b"data"), chunk_id(&[1; 32], b"data"));
    }
}
