//! Shared by the vault tests: where a vault lives (a directory, or a real S3 server: s3s-fs
//! from arca-testkit), test images, copies and restores, and a store wrapper that fails the
//! Nth write request.

#![allow(dead_code)]

pub mod proxy;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub use arca_testkit::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use arca_vault::{ChunkContent, CopyStats, Manifest, Tuning, Vault, VaultSpec};
use futures::stream::BoxStream;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

pub const CHUNK: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Dir,
    S3,
}

pub const BUCKET: &str = "vault-bucket";

/// A place for one test's vault.
pub struct Place {
    pub backend: Backend,
    pub spec: VaultSpec,
    /// Where the vault's objects lie as files (the directory, or s3s-fs's root).
    pub files: PathBuf,
    pub server: Option<S3Server>,
    _tmp: tempfile::TempDir,
}

impl Place {
    /// None when the backend cannot run here (s3s-fs missing outside CI: a printed skip; under
    /// CI=true its absence fails the test).
    pub fn new(backend: Backend) -> Option<Place> {
        let tmp = tempfile::tempdir().unwrap();
        match backend {
            Backend::Dir => {
                let dir = tmp.path().join("vault");
                let spec = VaultSpec::dir(&dir);
                Some(Place {
                    backend,
                    spec,
                    files: dir,
                    server: None,
                    _tmp: tmp,
                })
            }
            Backend::S3 => {
                let root = tmp.path().join("s3");
                let server = S3Server::start(&root, &[BUCKET], ACCESS_KEY, SECRET_KEY)?;
                let spec = VaultSpec {
                    url: format!("s3://{BUCKET}/arrays/one"),
                    endpoint: Some(server.endpoint()),
                    region: Some("us-east-1".into()),
                    access_key: Some(ACCESS_KEY.into()),
                    secret_key: Some(SECRET_KEY.into()),
                    allow_http: true,
                };
                Some(Place {
                    backend,
                    spec,
                    files: root,
                    server: Some(server),
                    _tmp: tmp,
                })
            }
        }
    }

    /// Every regular file under the vault's storage, with its bytes.
    pub fn all_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = vec![];
        let mut stack = vec![self.files.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let t = e.file_type().unwrap();
                if t.is_dir() {
                    stack.push(e.path());
                } else if t.is_file() {
                    out.push((e.path(), std::fs::read(e.path()).unwrap()));
                }
            }
        }
        out
    }
}

/// Small packs so that a few MiB make several packs (and several write requests).
pub fn small_tuning() -> Tuning {
    Tuning {
        pack_target_bytes: 256 << 10,
        ..Tuning::default()
    }
}

/// Deterministic pseudo-random bytes (splitmix64).
pub fn fill_random(buf: &mut [u8], seed: u64) {
    let mut s = seed;
    for c in buf.chunks_mut(8) {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        c.copy_from_slice(&z.to_le_bytes()[..c.len()]);
    }
}

/// A test image: its bytes and which chunks are holes (unallocated: zeros, never given).
#[derive(Clone)]
pub struct Image {
    pub bytes: Vec<u8>,
    pub holes: Vec<bool>,
}

impl Image {
    /// `chunks` chunks of random data, every 7th chunk a hole, every 11th all zeros (as data).
    pub fn new(chunks: usize, tail: usize, seed: u64) -> Image {
        let len = chunks * CHUNK as usize + tail;
        let mut bytes = vec![0u8; len];
        fill_random(&mut bytes, seed);
        let n = len.div_ceil(CHUNK as usize);
        let holes: Vec<bool> = (0..n).map(|i| i % 7 == 3).collect();
        for (i, &hole) in holes.iter().enumerate() {
            if hole || i % 11 == 5 {
                let r = range(len, i);
                bytes[r].fill(0);
            }
        }
        Image { bytes, holes }
    }

    pub fn chunks(&self) -> usize {
        self.holes.len()
    }

    /// Rewrites `count` data chunks picked by `seed` with new random bytes; their indexes.
    pub fn change(&mut self, count: usize, seed: u64) -> Vec<usize> {
        let mut changed = vec![];
        let mut s = seed;
        while changed.len() < count {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (s >> 33) as usize % self.chunks();
            if self.holes[i] || changed.contains(&i) {
                continue;
            }
            let r = range(self.bytes.len(), i);
            fill_random(&mut self.bytes[r], s);
            changed.push(i);
        }
        changed.sort_unstable();
        changed
    }
}

pub fn range(len: usize, i: usize) -> std::ops::Range<usize> {
    let start = i * CHUNK as usize;
    start..(start + CHUNK as usize).min(len)
}

/// Copies `image` as backup `id`. With a base, chunks not in `changed` are taken from it.
pub fn copy(
    vault: &Vault,
    id: u64,
    image: &Image,
    base: Option<(&Manifest, &[usize])>,
) -> arca_vault::Result<CopyStats> {
    let mut w = vault.begin_copy(id, image.bytes.len() as u64, base.map(|b| b.0))?;
    for i in 0..image.chunks() {
        let unchanged = base.is_some_and(|(_, changed)| !changed.contains(&i));
        if unchanged {
            w.same_as_base(i as u64)?;
        } else if image.holes[i] {
            w.hole(i as u64)?;
        } else {
            w.data(i as u64, &image.bytes[range(image.bytes.len(), i)])?;
        }
    }
    w.finish(format!("record of backup {id}").into_bytes())
}

/// Restores backup `id`: its bytes and which chunks came back as holes.
pub fn restore(vault: &Vault, id: u64) -> arca_vault::Result<(Vec<u8>, Vec<bool>)> {
    let m = vault.read_manifest(id)?;
    let mut bytes = vec![0u8; m.image_size as usize];
    let mut holes = vec![];
    for (expect, chunk) in vault.reader(&m).enumerate() {
        let chunk = chunk?;
        assert_eq!(chunk.index, expect as u64, "chunks come in order");
        let start = (chunk.index * u64::from(m.chunk_size)) as usize;
        match chunk.content {
            ChunkContent::Hole => holes.push(true),
            ChunkContent::Data(d) => {
                assert_eq!(d.len() as u64, chunk.len);
                bytes[start..start + d.len()].copy_from_slice(&d);
                holes.push(false);
            }
        }
    }
    assert_eq!(holes.len() as u64, m.chunk_count());
    Ok((bytes, holes))
}

/// Test-side requests to the store (S3 needs a tokio runtime).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs `body` for a backend, or skips (see `Place::new`).
pub fn with_place(backend: Backend, body: impl FnOnce(&Place)) {
    if let Some(place) = Place::new(backend) {
        let started = Instant::now();
        body(&place);
        eprintln!("{backend:?}: {:?}", started.elapsed());
    }
}

/// One test per backend: `both!(name)` makes `name::dir` and `name::s3` from `fn name(&Place)`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn dir() {
                $crate::common::with_place($crate::common::Backend::Dir, super::$name);
            }
            #[test]
            fn s3() {
                $crate::common::with_place($crate::common::Backend::S3, super::$name);
            }
        }
    };
}

/// Wraps a store and fails its Nth write request (put, multipart create, part upload;
/// counted from 1) and every write after it, as a server that went away would. It also
/// counts the bytes its reads return (`u64::MAX` as `fail_at`: a counter only).
#[derive(Debug)]
pub struct FailingStore {
    inner: Arc<dyn ObjectStore>,
    writes: Arc<AtomicU64>,
    fail_at: u64,
    read_bytes: AtomicU64,
}

impl FailingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, fail_at: u64) -> FailingStore {
        FailingStore {
            inner,
            writes: Arc::new(AtomicU64::new(0)),
            fail_at,
            read_bytes: AtomicU64::new(0),
        }
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Bytes of object data the store's reads have returned so far.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes.load(Ordering::SeqCst)
    }
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "FailingStore",
        source: "injected write failure".into(),
    }
}

/// True when this write is the Nth or later.
fn fails(writes: &AtomicU64, fail_at: u64) -> bool {
    writes.fetch_add(1, Ordering::SeqCst) + 1 >= fail_at
}

impl std::fmt::Display for FailingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FailingStore({})", self.inner)
    }
}

#[derive(Debug)]
struct FailingUpload {
    inner: Box<dyn MultipartUpload>,
    writes: Arc<AtomicU64>,
    fail_at: u64,
}

#[async_trait::async_trait]
impl MultipartUpload for FailingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        if fails(&self.writes, self.fail_at) {
            return Box::pin(async { Err(injected()) });
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait::async_trait]
impl ObjectStore for FailingStore {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if fails(&self.writes, self.fail_at) {
            return Err(injected());
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if fails(&self.writes, self.fail_at) {
            return Err(injected());
        }
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FailingUpload {
            inner,
            writes: self.writes.clone(),
            fail_at: self.fail_at,
        }))
    }

    async fn get_opts(
        &self,
        location: &ObjPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let r = self.inner.get_opts(location, options).await?;
        let len = r.range.end - r.range.start;
        self.read_bytes.fetch_add(len, Ordering::SeqCst);
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
