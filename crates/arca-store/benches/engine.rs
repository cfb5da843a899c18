//! Engine benchmark: the pool through its API against pread/pwrite on a plain file of the same
//! size in the same directory, side by side in one run.
//!
//! `cargo bench -p arca-store --bench engine`. Environment:
//! - `ARCA_BENCH_DIR`: where the files go [target/arca-bench]
//! - `ARCA_BENCH_SIZE_MIB`: data set and volume size [1024]
//! - `ARCA_BENCH_SECONDS`: seconds per random-I/O test [4]
//! - `ARCA_BENCH_BIG_GIB`: size of the "large volume" for snapshot timing [64]
//!
//! Sequential reads are cold (pages evicted with fadvise after the sync); random reads are
//! warm (page cache), which shows the engine's own CPU cost. The large-volume snapshot test maps
//! every extent of a volume on a device whose data region discards writes: snapshot creation
//! touches only metadata, and this keeps a 64 GiB "fully written" volume off the disk.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arca_store::{BlockDevice, Export, FileDevice, Pool, PoolConfig};
use arca_testkit::bench::{env_u64, median};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MIB: u64 = 1 << 20;
const BLOCK_SEQ: usize = 1 << 20;
const BLOCK_RAND: usize = 4096;

fn evict(path: &Path) {
    let f = File::open(path).expect("open for fadvise");
    // SAFETY: posix_fadvise on an open descriptor; only a hint to the kernel's page cache.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// The operations both sides implement.
trait Target {
    fn write(&self, off: u64, buf: &[u8]);
    fn read(&self, off: u64, buf: &mut [u8]);
    fn sync(&self);
}

struct Plain(File);

impl Target for Plain {
    fn write(&self, off: u64, buf: &[u8]) {
        self.0.write_all_at(buf, off).unwrap();
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        self.0.read_exact_at(buf, off).unwrap();
    }
    fn sync(&self) {
        self.0.sync_data().unwrap();
    }
}

struct Engine(Export);

impl Target for Engine {
    fn write(&self, off: u64, buf: &[u8]) {
        self.0.write(off, buf, false).unwrap();
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        self.0.read(off, buf).unwrap();
    }
    fn sync(&self) {
        self.0.flush().unwrap();
    }
}

fn seq_write(t: &dyn Target, size: u64) -> f64 {
    let buf: Vec<u8> = (0..BLOCK_SEQ).map(|i| (i * 7 + 3) as u8).collect();
    let start = Instant::now();
    for off in (0..size).step_by(BLOCK_SEQ) {
        t.write(off, &buf);
    }
    t.sync();
    size as f64 / MIB as f64 / start.elapsed().as_secs_f64()
}

fn seq_read(t: &dyn Target, size: u64) -> f64 {
    let mut buf = vec![0u8; BLOCK_SEQ];
    let start = Instant::now();
    for off in (0..size).step_by(BLOCK_SEQ) {
        t.read(off, &mut buf);
    }
    size as f64 / MIB as f64 / start.elapsed().as_secs_f64()
}

/// Offsets of random 4 KiB blocks of a target of `size` bytes, the same for the same `seed`.
fn random_blocks(size: u64, seed: u64) -> impl Iterator<Item = u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let blocks = size / BLOCK_RAND as u64;
    std::iter::repeat_with(move || rng.random_range(0..blocks) * BLOCK_RAND as u64)
}

/// Runs `op` in batches of 256 for `secs`, then `end`; calls per second, `end` included.
fn ops_per_sec(secs: f64, mut op: impl FnMut(), end: impl FnOnce()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..256 {
            op();
        }
        n += 256;
    }
    end();
    n as f64 / start.elapsed().as_secs_f64()
}

/// 4 KiB random writes for `secs`, then a sync; IOPS.
fn rand_write(t: &dyn Target, size: u64, secs: f64, seed: u64) -> f64 {
    let buf = vec![0x5au8; BLOCK_RAND];
    let mut at = random_blocks(size, seed);
    ops_per_sec(secs, || t.write(at.next().unwrap(), &buf), || t.sync())
}

/// `count` 4 KiB random writes then a sync; IOPS (for the copy-on-write comparison, where
/// only the first write to each extent after the snapshot copies).
fn rand_write_count(t: &dyn Target, size: u64, count: u64, seed: u64) -> f64 {
    let buf = vec![0xa5u8; BLOCK_RAND];
    let start = Instant::now();
    for off in random_blocks(size, seed).take(count as usize) {
        t.write(off, &buf);
    }
    t.sync();
    count as f64 / start.elapsed().as_secs_f64()
}

/// 4 KiB write then sync, `count` times at queue depth 1: median microseconds per pair.
fn sync_write_us(t: &dyn Target, size: u64, count: u64, seed: u64) -> f64 {
    let buf = vec![0x3cu8; BLOCK_RAND];
    let mut times = Vec::with_capacity(count as usize);
    for off in random_blocks(size, seed).take(count as usize) {
        let start = Instant::now();
        t.write(off, &buf);
        t.sync();
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    median(times)
}

/// 4 KiB random reads for `secs`; IOPS.
fn rand_read(t: &dyn Target, size: u64, secs: f64, seed: u64) -> f64 {
    let mut buf = vec![0u8; BLOCK_RAND];
    let mut at = random_blocks(size, seed);
    ops_per_sec(secs, || t.read(at.next().unwrap(), &mut buf), || {})
}

/// A file device whose data region (past `keep_bytes`) discards writes and reads zeros: the
/// superblocks and metadata region are real.
#[derive(Debug)]
struct MetadataOnly {
    inner: FileDevice,
    keep_bytes: u64,
    len: u64,
}

impl BlockDevice for MetadataOnly {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn size_bytes(&self) -> io::Result<u64> {
        Ok(self.len)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset >= self.keep_bytes {
            buf.fill(0);
            return Ok(());
        }
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if offset >= self.keep_bytes {
            return Ok(());
        }
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

/// Median snapshot creation time (ms) on a volume, over `n` snapshots.
fn snapshot_ms(pool: &Pool, volume: &str, n: usize) -> f64 {
    let mut times = Vec::new();
    let first = pool.snapshots(volume).unwrap().len();
    for i in first..first + n {
        let start = Instant::now();
        pool.create_snapshot(volume, &format!("bench{i}")).unwrap();
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    median(times)
}

fn big_volume_snapshot(dir: &Path, gib: u64, es: u32) -> (f64, f64, usize, u64) {
    let size = gib << 30;
    let meta = 256 * MIB + (size / es as u64) * 64;
    let path = dir.join(format!("big-{gib}g.dev"));
    let _ = std::fs::remove_file(&path);
    let keep = 64 * 1024 + meta;
    let dev = MetadataOnly {
        inner: FileDevice::create(&path, keep).unwrap(),
        keep_bytes: keep,
        len: keep + size + 64 * MIB,
    };
    let config = PoolConfig {
        extent_size: es,
        meta_len: Some(meta),
    };
    let pool = Pool::create(vec![Arc::new(dev)], &config).unwrap();
    pool.create_volume("big", size, None).unwrap();
    let e = pool.export("big").unwrap();
    // Map every extent: one sector per extent (the engine fills the rest of a new extent).
    let fill_start = Instant::now();
    for off in (0..size).step_by(es as usize) {
        e.write(off, &[1u8; 512], false).unwrap();
    }
    pool.flush().unwrap();
    let fill_s = fill_start.elapsed().as_secs_f64();
    let ms = snapshot_ms(&pool, "big", 5);
    let (bytes, entries) = pool.map_memory();
    drop(e);
    drop(pool);
    let _ = std::fs::remove_file(&path);
    (ms, fill_s, bytes, entries)
}

fn main() {
    let dir = PathBuf::from(
        std::env::var("ARCA_BENCH_DIR").unwrap_or_else(|_| "target/arca-bench".into()),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let size = env_u64("ARCA_BENCH_SIZE_MIB", 1024) * MIB;
    let secs = env_u64("ARCA_BENCH_SECONDS", 4) as f64;
    let big_gib = env_u64("ARCA_BENCH_BIG_GIB", 64);
    let es = 64 * 1024u32;

    let plain_path = dir.join("plain.img");
    let dev_path = dir.join("pool.dev");
    let _ = std::fs::remove_file(&plain_path);
    let _ = std::fs::remove_file(&dev_path);
    let plain_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&plain_path)
        .unwrap();
    plain_file.set_len(size).unwrap();
    let plain = Plain(plain_file);
    let config = PoolConfig {
        extent_size: es,
        meta_len: Some(64 * MIB),
    };
    // Room for the volume and a full copy-on-write of it after the snapshot.
    let dev_size = 2 * size + 64 * MIB + 16 * MIB;
    let pool = Pool::create(
        vec![Arc::new(FileDevice::create(&dev_path, dev_size).unwrap())],
        &config,
    )
    .unwrap();
    pool.create_volume("vol", size, None).unwrap();
    let engine = Engine(pool.export("vol").unwrap());

    let mut rows: Vec<(&str, f64, f64, &str)> = Vec::new();
    let w_p = seq_write(&plain, size);
    let w_e = seq_write(&engine, size);
    rows.push(("seq write 1 MiB (first write)", w_p, w_e, "MiB/s"));
    // Cold reads in the order plain, arca, arca, plain, so neither side always goes first.
    let cold = |t: &dyn Target, path: &Path| {
        evict(path);
        seq_read(t, size)
    };
    let r_p1 = cold(&plain, &plain_path);
    let r_e1 = cold(&engine, &dev_path);
    let r_e2 = cold(&engine, &dev_path);
    let r_p2 = cold(&plain, &plain_path);
    eprintln!(
        "cold reads (MiB/s): plain {r_p1:.0}, arca {r_e1:.0}, arca {r_e2:.0}, plain {r_p2:.0}"
    );
    let (r_p, r_e) = ((r_p1 + r_p2) / 2.0, (r_e1 + r_e2) / 2.0);
    rows.push(("seq read 1 MiB (cold)", r_p, r_e, "MiB/s"));
    let rw_p = rand_write(&plain, size, secs, 1);
    let rw_e = rand_write(&engine, size, secs, 1);
    rows.push(("rand write 4 KiB, allocated", rw_p, rw_e, "IOPS"));
    let rr_p = rand_read(&plain, size, secs, 2);
    let rr_e = rand_read(&engine, size, secs, 2);
    rows.push(("rand read 4 KiB, allocated (warm)", rr_p, rr_e, "IOPS"));
    let sw_p = sync_write_us(&plain, size, 2000, 5);
    let sw_e = sync_write_us(&engine, size, 2000, 5);
    rows.push((
        "write 4 KiB + sync, QD1 (median)",
        sw_p,
        sw_e,
        "us, lower is better",
    ));
    // Copy-on-write: the same count of random writes before and right after a snapshot.
    let cow_count = 20_000.min(size / BLOCK_RAND as u64);
    let before = rand_write_count(&engine, size, cow_count, 3);
    let snap_1g_ms = snapshot_ms(&pool, "vol", 1);
    let after = rand_write_count(&engine, size, cow_count, 4);

    println!(
        "{:<36} {:>12} {:>12} {:>7}  unit",
        "test", "plain file", "arca", "ratio"
    );
    for (name, p, e, unit) in &rows {
        println!("{name:<36} {p:>12.0} {e:>12.0} {:>7.2}  {unit}", e / p);
    }
    println!();
    println!(
        "copy-on-write: {cow_count} rand 4 KiB writes before snapshot {before:.0} IOPS, right after {after:.0} IOPS, ratio {:.2}",
        after / before
    );
    let snap_ms = snapshot_ms(&pool, "vol", 5);
    println!(
        "snapshot create on {} MiB fully written volume (real device): median {snap_ms:.2} ms (first {snap_1g_ms:.2} ms)",
        size / MIB
    );
    drop(engine);
    drop(pool);
    let _ = std::fs::remove_file(&plain_path);
    let _ = std::fs::remove_file(&dev_path);

    let (small_ms, small_fill, _, _) = big_volume_snapshot(&dir, 1, es);
    let (big_ms, big_fill, bytes, entries) = big_volume_snapshot(&dir, big_gib, es);
    println!(
        "snapshot create, every extent mapped (metadata-only device): 1 GiB {small_ms:.2} ms, {big_gib} GiB {big_ms:.2} ms (fills took {small_fill:.1} s and {big_fill:.1} s)"
    );
    println!(
        "metadata memory: {bytes} bytes for {entries} mapped extents = {:.2} bytes per mapped extent",
        bytes as f64 / entries.max(1) as f64
    );
    let _ = Duration::ZERO;
}
