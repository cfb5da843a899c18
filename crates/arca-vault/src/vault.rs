//! `Vault`: create or open a vault, read its config, list, read and delete manifests, and
//! the chunk lookup a copy dedups with. The API is synchronous: a vault owns a small tokio
//! runtime and blocks on it, so thread-based callers (arca-backup's jobs) need no async.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::crypto::{ChunkId, Sealer, chunk_id, random_array};
use crate::error::{Error, Result};
use crate::format::{
    self, BlobRef, CONFIG_NAME, ConfigPayload, INDEX_DIR, KEY_CHECK_AAD, KeyField, MAGIC_CONFIG,
    MAGIC_INDEX, MAGIC_MANIFEST, MANIFESTS_DIR, PackId, PackIndex,
};
use crate::index::{ChunkMap, PackCache};
use crate::manifest::Manifest;
use crate::spec::{VaultKey, VaultSpec};

/// Smallest and largest chunk sizes a vault accepts (an extent of the array is 64 KiB by
/// default; a blob's length must fit the format's u32 fields).
pub const MIN_CHUNK_SIZE: u32 = 4096;
pub const MAX_CHUNK_SIZE: u32 = 16 << 20;

/// How a vault sizes its requests. The defaults meet the bounds (see FORMAT.md);
/// tests shrink packs to exercise many of them.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// A pack is closed once it holds this many bytes.
    pub pack_target_bytes: u64,
    /// Bytes per multipart part (S3 wants at least 5 MiB for all but the last).
    pub part_bytes: usize,
    /// Ranged GETs a reader keeps in flight.
    pub reads_in_flight: usize,
    /// Most bytes one ranged GET of a reader asks for.
    pub read_span_bytes: u64,
    /// Pack indexes kept in memory for dedup lookups.
    pub index_cache_packs: usize,
    /// Objects fetched at once while loading indexes.
    pub fetches_in_flight: usize,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            pack_target_bytes: 64 << 20,
            part_bytes: 16 << 20,
            reads_in_flight: 4,
            read_span_bytes: 4 << 20,
            index_cache_packs: 32,
            fetches_in_flight: 8,
        }
    }
}

/// What `info` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultInfo {
    pub vault_id: String,
    pub format_version: u16,
    pub chunk_size: u32,
    pub encrypted: bool,
    pub created_unix_s: u64,
    /// Packs and chunks the in-memory index knows (after the last copy or `load_index`).
    pub indexed_packs: u64,
    pub indexed_chunks: u64,
    /// Heap bytes of the in-memory index.
    pub index_memory_bytes: u64,
}

/// What every task of a vault shares.
pub(crate) struct Inner {
    pub store: Arc<dyn ObjectStore>,
    /// The URL, for messages (never carries credentials).
    pub label: String,
    pub sealer: Sealer,
    pub chunk_key: [u8; 32],
    pub vault_id: [u8; 16],
    pub chunk_size: u32,
    pub created_unix_s: u64,
    /// GET requests sent since the vault was opened (after its config), and bytes received.
    pub gets: AtomicU64,
    pub got_bytes: AtomicU64,
}

impl Inner {
    pub(crate) fn count_get(&self, bytes: usize) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.got_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Reads a vault made since it was opened (see [`Vault::reads`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub get_requests: u64,
    pub bytes: u64,
}

pub struct Vault {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) inner: Arc<Inner>,
    pub(crate) map: Mutex<ChunkMap>,
    pub(crate) cache: Mutex<PackCache>,
    pub(crate) tuning: Tuning,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("url", &self.inner.label)
            .field("vault_id", &format::hex(&self.inner.vault_id))
            .field("encrypted", &self.inner.sealer.encrypted())
            .finish_non_exhaustive()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("arca-vault")
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

pub(crate) fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Vault {
    /// Makes a new vault at `spec` (a directory is created when missing). With a key, every
    /// chunk, index and manifest is sealed. Refuses when a vault is already there.
    pub fn create(spec: &VaultSpec, key: Option<&VaultKey>, chunk_size: u32) -> Result<Vault> {
        let store = spec.build_store(true)?;
        Vault::create_in(store, &spec.url, key, chunk_size)
    }

    /// `create` on a store the caller built (a wrapper that counts or injects faults).
    pub fn create_in(
        store: Arc<dyn ObjectStore>,
        label: &str,
        key: Option<&VaultKey>,
        chunk_size: u32,
    ) -> Result<Vault> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(Error::InvalidSpec(format!(
                "chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}"
            )));
        }
        let rt = runtime()?;
        let path = Path::from(CONFIG_NAME);
        match rt.block_on(store.head(&path)) {
            Ok(_) => return Err(Error::AlreadyExists(label.to_string())),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::store(CONFIG_NAME, None, e)),
        }
        let vault_id: [u8; 16] = random_array();
        let chunk_key: [u8; 32] = random_array();
        let (sealer, key_field) = match key {
            None => (Sealer::plain(), KeyField::Plain(chunk_key)),
            Some(key) => {
                let sealer = Sealer::from_key(key);
                let aad = [KEY_CHECK_AAD, &vault_id].concat();
                let sealed = sealer.seal(&aad, &chunk_key);
                (sealer, KeyField::Sealed(sealed))
            }
        };
        let config = ConfigPayload {
            vault_id,
            chunk_size,
            created_unix_s: now_unix_s(),
            key_field,
        };
        let bytes = format::seal_object(
            MAGIC_CONFIG,
            &Sealer::plain(),
            CONFIG_NAME,
            &config.encode(),
        );
        // Written once: a concurrent `create` at the same place loses here, not silently.
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match rt.block_on(store.put_opts(&path, PutPayload::from(bytes), opts)) {
            Ok(_) => {}
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                return Err(Error::AlreadyExists(label.to_string()));
            }
            Err(e) => return Err(Error::store(CONFIG_NAME, None, e)),
        }
        let inner = Inner {
            store,
            label: label.to_string(),
            sealer,
            chunk_key,
            vault_id,
            chunk_size,
            created_unix_s: config.created_unix_s,
            gets: AtomicU64::new(0),
            got_bytes: AtomicU64::new(0),
        };
        Ok(Vault::assemble(rt, inner))
    }

    /// Opens the vault at `spec`; an encrypted vault needs its key.
    pub fn open(spec: &VaultSpec, key: Option<&VaultKey>) -> Result<Vault> {
        let store = spec.build_store(false)?;
        Vault::open_in(store, &spec.url, key)
    }

    /// `open` on a store the caller built.
    pub fn open_in(
        store: Arc<dyn ObjectStore>,
        label: &str,
        key: Option<&VaultKey>,
    ) -> Result<Vault> {
        let rt = runtime()?;
        let bytes =
            match rt.block_on(async { store.get(&Path::from(CONFIG_NAME)).await?.bytes().await }) {
                Ok(b) => b,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(Error::NotAVault(label.to_string()));
                }
                Err(e) => return Err(Error::store(CONFIG_NAME, None, e)),
            };
        let payload = format::open_object(MAGIC_CONFIG, &Sealer::plain(), CONFIG_NAME, &bytes)?;
        let config = ConfigPayload::decode(&payload)?;
        let (sealer, chunk_key) = match (&config.key_field, key) {
            (KeyField::Plain(_), Some(_)) => return Err(Error::KeyNotNeeded(label.to_string())),
            (KeyField::Plain(k), None) => (Sealer::plain(), *k),
            (KeyField::Sealed(_), None) => return Err(Error::KeyMissing(label.to_string())),
            (KeyField::Sealed(sealed), Some(key)) => {
                let sealer = Sealer::from_key(key);
                let aad = [KEY_CHECK_AAD, &config.vault_id].concat();
                let opened = sealer
                    .open(&aad, sealed)
                    .ok_or_else(|| Error::WrongKey(label.to_string()))?;
                let chunk_key: [u8; 32] = opened.try_into().map_err(|_| {
                    Error::corrupt(CONFIG_NAME, None, "sealed key has the wrong length")
                })?;
                (sealer, chunk_key)
            }
        };
        let inner = Inner {
            store,
            label: label.to_string(),
            sealer,
            chunk_key,
            vault_id: config.vault_id,
            chunk_size: config.chunk_size,
            created_unix_s: config.created_unix_s,
            gets: AtomicU64::new(0),
            got_bytes: AtomicU64::new(0),
        };
        Ok(Vault::assemble(rt, inner))
    }

    fn assemble(rt: tokio::runtime::Runtime, inner: Inner) -> Vault {
        let tuning = Tuning::default();
        Vault {
            rt,
            inner: Arc::new(inner),
            map: Mutex::new(ChunkMap::new()),
            cache: Mutex::new(PackCache::new(tuning.index_cache_packs)),
            tuning,
        }
    }

    pub fn set_tuning(&mut self, tuning: Tuning) {
        self.cache = Mutex::new(PackCache::new(tuning.index_cache_packs));
        self.tuning = tuning;
    }

    pub fn info(&self) -> VaultInfo {
        let map = self.map.lock().expect("index lock");
        VaultInfo {
            vault_id: format::hex(&self.inner.vault_id),
            format_version: format::FORMAT_VERSION,
            chunk_size: self.inner.chunk_size,
            encrypted: self.inner.sealer.encrypted(),
            created_unix_s: self.inner.created_unix_s,
            indexed_packs: map.packs() as u64,
            indexed_chunks: map.chunks(),
            index_memory_bytes: map.memory_bytes(),
        }
    }

    /// The id this vault gives a chunk of `data` (keyed BLAKE3): equal to a manifest's
    /// [`Manifest::chunk_id`] exactly when the data is that chunk's.
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        chunk_id(&self.inner.chunk_key, data)
    }

    /// GET requests (manifests, pack indexes, pack ranges) and the bytes they returned since
    /// this vault was opened: the read side of its request count.
    pub fn reads(&self) -> ReadStats {
        ReadStats {
            get_requests: self.inner.gets.load(Ordering::Relaxed),
            bytes: self.inner.got_bytes.load(Ordering::Relaxed),
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.inner.chunk_size
    }

    /// Whether the vault is still there now: one request for its config object (an open
    /// vault caches everything else, and a directory store would recreate a removed
    /// directory on the next write).
    pub fn probe(&self) -> Result<()> {
        let path = Path::from(CONFIG_NAME);
        match self.rt.block_on(self.inner.store.head(&path)) {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => {
                Err(Error::NotAVault(self.inner.label.clone()))
            }
            Err(e) => Err(Error::store(CONFIG_NAME, None, e)),
        }
    }

    /// The backup ids that have a manifest, ascending.
    pub fn list_manifests(&self) -> Result<Vec<u64>> {
        let names = self.list_names(MANIFESTS_DIR)?;
        let mut ids: Vec<u64> = names
            .iter()
            .filter_map(|n| n.strip_prefix("manifests/"))
            .filter(|n| n.len() == 16)
            .filter_map(|n| u64::from_str_radix(n, 16).ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    pub fn read_manifest(&self, backup_id: u64) -> Result<Manifest> {
        let name = format::manifest_name(backup_id);
        let bytes = match self.rt.block_on(get_bytes(&self.inner, &name)) {
            Err(object_store::Error::NotFound { .. }) => return Err(Error::NoManifest(backup_id)),
            other => other.map_err(|e| Error::store(&name, Some(backup_id), e))?,
        };
        let decode = || -> Result<Manifest> {
            let payload = format::open_object(MAGIC_MANIFEST, &self.inner.sealer, &name, &bytes)?;
            let m = Manifest::decode(&name, &payload, &self.inner.chunk_key)?;
            if m.backup_id != backup_id || m.vault_id != self.inner.vault_id {
                return Err(Error::corrupt(
                    &name,
                    None,
                    "manifest names another backup or vault",
                ));
            }
            if m.chunk_size != self.inner.chunk_size {
                return Err(Error::corrupt(
                    &name,
                    None,
                    "manifest chunk size differs from the vault's",
                ));
            }
            Ok(m)
        };
        decode().map_err(|e| e.for_backup(backup_id))
    }

    /// Removes a backup's manifest. Packs it alone referred to stay until garbage collection
    /// (issue 14): another copy may be using them at this moment.
    pub fn delete_manifest(&self, backup_id: u64) -> Result<()> {
        let name = format::manifest_name(backup_id);
        let path = Path::from(name.as_str());
        match self.rt.block_on(self.inner.store.head(&path)) {
            Err(object_store::Error::NotFound { .. }) => return Err(Error::NoManifest(backup_id)),
            other => other.map_err(|e| Error::store(&name, Some(backup_id), e))?,
        };
        self.rt
            .block_on(self.inner.store.delete(&path))
            .map_err(|e| Error::store(&name, Some(backup_id), e))
    }

    pub(crate) fn list_names(&self, dir: &str) -> Result<Vec<String>> {
        Ok(self.list_sizes(dir)?.into_iter().map(|(n, _)| n).collect())
    }

    /// Every object under `dir` (all of the vault for ""), with its size in bytes.
    pub(crate) fn list_sizes(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let prefix = (!dir.is_empty()).then(|| Path::from(dir));
        self.rt
            .block_on(async {
                self.inner
                    .store
                    .list(prefix.as_ref())
                    .map_ok(|m| (m.location.to_string(), m.size))
                    .try_collect()
                    .await
            })
            .map_err(|e| Error::store(dir, None, e))
    }

    /// Brings the in-memory index up to date with every pack index in the vault, including
    /// those of copies that failed before their manifest (so a retry reuses their packs).
    /// A damaged index object is skipped: its pack is then not used for dedup (the data is
    /// uploaded again), which costs space but never correctness.
    pub fn load_index(&self) -> Result<()> {
        let names = self.list_names(INDEX_DIR)?;
        let unknown: Vec<PackId> = {
            let map = self.map.lock().expect("index lock");
            names
                .iter()
                .filter_map(|n| n.strip_prefix("index/"))
                .filter_map(format::parse_hex::<16>)
                .filter(|p| !map.knows_pack(p))
                .collect()
        };
        if unknown.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        let results: Vec<Result<PackIndex>> = self.rt.block_on(
            futures::stream::iter(unknown)
                .map(|pack| fetch_index(inner.clone(), pack))
                .buffer_unordered(self.tuning.fetches_in_flight.max(1))
                .collect(),
        );
        let mut map = self.map.lock().expect("index lock");
        for r in results {
            match r {
                Ok(index) => {
                    map.add_pack(&index);
                }
                Err(Error::Corrupt { .. } | Error::MissingObject { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        map.shrink();
        Ok(())
    }

    /// Where `id` lies in the vault, if anywhere (a pack whose index was loaded), outside
    /// the packs in `avoid` (those garbage collection has marked).
    pub(crate) fn lookup(
        &self,
        id: &ChunkId,
        avoid: &HashSet<PackId>,
    ) -> Result<Option<(PackId, BlobRef)>> {
        let candidates = self.map.lock().expect("index lock").candidates(id);
        for (ordinal, pack) in candidates {
            if avoid.contains(&pack) {
                continue;
            }
            let cached = self.cache.lock().expect("cache lock").get(ordinal);
            let table = match cached {
                Some(t) => t,
                None => match self.rt.block_on(fetch_index(self.inner.clone(), pack)) {
                    Ok(index) => self.cache.lock().expect("cache lock").put(ordinal, &index),
                    // An index gone or damaged since it was loaded: that pack is not
                    // used for dedup (the chunk is stored again), never trusted.
                    Err(Error::MissingObject { .. } | Error::Corrupt { .. }) => continue,
                    Err(e) => return Err(e),
                },
            };
            if let Some(blob) = table.get(id) {
                return Ok(Some((pack, *blob)));
            }
        }
        Ok(None)
    }

    /// Records a pack this process wrote (its index object is in the vault).
    pub(crate) fn add_written_pack(&self, index: &PackIndex) {
        let ordinal = self.map.lock().expect("index lock").add_pack(index);
        self.cache.lock().expect("cache lock").put(ordinal, index);
    }
}

pub(crate) async fn get_bytes(inner: &Inner, name: &str) -> object_store::Result<bytes::Bytes> {
    let b = inner.store.get(&Path::from(name)).await?.bytes().await?;
    inner.count_get(b.len());
    Ok(b)
}

pub(crate) async fn fetch_index(inner: Arc<Inner>, pack: PackId) -> Result<PackIndex> {
    let name = format::index_name(&pack);
    let bytes = get_bytes(inner.as_ref(), &name)
        .await
        .map_err(|e| Error::store(&name, None, e))?;
    let payload = format::open_object(MAGIC_INDEX, &inner.sealer, &name, &bytes)?;
    let index = PackIndex::decode(&name, &payload)?;
    if index.pack_id != pack {
        return Err(Error::corrupt(&name, None, "index names another pack"));
    }
    Ok(index)
}
