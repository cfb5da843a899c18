//! Vaults: off-array copies of Arca's backup images, in a directory or an S3 bucket and
//! prefix, through one `object_store` code path.
//!
//! A vault is content-addressed: an image is cut into fixed chunks (the array's extent
//! size), each chunk is identified by a keyed BLAKE3 hash, compressed with zstd, sealed with
//! XChaCha20-Poly1305 when the vault is encrypted, and stored once in a pack of several MiB.
//! Each pack has an index object; each copied backup has a manifest, written last. The
//! byte layout is in `format` and FORMAT.md.
//!
//! The API is synchronous (the vault runs its own small tokio runtime):
//!
//! - `Vault::create` / `Vault::open`, `info`;
//! - `begin_copy` -> `CopyWriter` (`data`, `hole`, `same_as_base` per chunk, `finish`);
//! - `list_manifests`, `read_manifest`, `delete_manifest`;
//! - `reader` -> an iterator of checked chunks, several requests in flight;
//! - upkeep: `gc` (two phases, never blocks a copy), `verify` (structure, and data within a
//!   budget, least recently checked first), `status`, and the writer lease
//!   (`acquire_lease`, `renew_lease`, `release_lease`).
//!
//! Every call blocks on the vault's runtime, so call it from a plain thread (arca-backup's
//! jobs) or from `spawn_blocking`, never from inside an async task.

mod crypto;
mod error;
pub mod format;
mod gc;
mod index;
mod lease;
mod live;
mod manifest;
mod reader;
mod spec;
mod state;
mod status;
mod vault;
mod verify;
mod writer;

pub use crypto::ChunkId;
pub use error::{Error, Result};
pub use gc::{GcOptions, GcReport};
pub use lease::{Lease, LeaseError, LeaseResult};
pub use manifest::Manifest;
pub use reader::{Chunk, ChunkContent, ChunkReader};
pub use spec::{VaultKey, VaultSpec};
pub use status::VaultStatus;
pub use vault::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, ReadStats, Tuning, Vault, VaultInfo};
pub use verify::{Damage, VerifyOptions, VerifyReport};
pub use writer::{CopyStats, CopyWriter};

/// The chunk size the array's default extent gives (64 KiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
