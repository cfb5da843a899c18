//! Garbage collection of a vault with many manifests, on a directory vault:
//!
//! ```text
//! cargo run --release -p arca-vault --example gc_bench -- WORKDIR [CHUNKS] [GENERATIONS]
//! ```
//!
//! Copies a volume of CHUNKS 64 KiB chunks of random data (default 4096: 256 MiB), then
//! GENERATIONS incremental copies (default 1000), each rewriting 1 % of the chunks at random
//! (the rest taken from the previous manifest, as the array's change tracking gives them).
//! Deletes the older half of the backups, runs gc's mark and then its sweep (no grace
//! period: nothing runs beside it), and a structural verify. Prints time, peak memory,
//! objects and bytes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arca_vault::{GcOptions, Vault, VaultSpec, VerifyOptions};

const CHUNK: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let work = PathBuf::from(
        args.get(1)
            .expect("usage: gc_bench WORKDIR [CHUNKS] [GENERATIONS]"),
    );
    let chunks: usize = args.get(2).map_or(4096, |a| a.parse().expect("CHUNKS"));
    let generations: u64 = args
        .get(3)
        .map_or(1000, |a| a.parse().expect("GENERATIONS"));
    let dir = work.join("gc-vault");
    let _ = std::fs::remove_dir_all(&dir);
    let vault = Vault::create(&VaultSpec::dir(&dir), None, CHUNK as u32).unwrap();
    let mut seed = 0x5eed_u64;
    let mut data = vec![0u8; CHUNK];
    let t = Instant::now();
    let mut w = vault.begin_copy(1, (chunks * CHUNK) as u64, None).unwrap();
    for i in 0..chunks {
        fill(&mut data, &mut seed);
        w.data(i as u64, &data).unwrap();
    }
    w.finish(vec![]).unwrap();
    let per_gen = (chunks / 100).max(1);
    for id in 2..=generations {
        let base = vault.read_manifest(id - 1).unwrap();
        let mut changed: Vec<usize> = (0..per_gen)
            .map(|_| next(&mut seed) as usize % chunks)
            .collect();
        changed.sort_unstable();
        let mut w = vault.begin_copy(id, base.image_size, Some(&base)).unwrap();
        for i in 0..chunks {
            if changed.binary_search(&i).is_ok() {
                fill(&mut data, &mut seed);
                w.data(i as u64, &data).unwrap();
            } else {
                w.same_as_base(i as u64).unwrap();
            }
        }
        w.finish(vec![]).unwrap();
    }
    let before = vault.status().unwrap();
    println!(
        "{generations} backups of {} MiB (1 % changed each) in {:.1} s: {} objects, {:.1} MiB, {} packs",
        (chunks * CHUNK) >> 20,
        t.elapsed().as_secs_f64(),
        before.objects,
        mib(before.bytes_stored),
        before.packs
    );
    for id in 1..=generations / 2 {
        vault.delete_manifest(id).unwrap();
    }
    let now = GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    };
    reset_peak_rss();
    let rss0 = vm_kib("VmRSS");
    let t = Instant::now();
    let mark = vault.gc(&now).unwrap();
    let mark_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sweep = vault.gc(&now).unwrap();
    let sweep_s = t.elapsed().as_secs_f64();
    let peak = vm_kib("VmHWM");
    println!(
        "gc mark: {mark_s:.2} s, {} manifests, {} packs, marked {} packs ({:.1} MiB), {} sparse packs ({:.1} MiB dead), live map {:.2} MiB",
        mark.manifests,
        mark.packs,
        mark.marked_packs,
        mib(mark.marked_bytes),
        mark.sparse_packs,
        mib(mark.sparse_dead_bytes),
        mib(mark.memory_bytes)
    );
    println!(
        "gc sweep: {sweep_s:.2} s, deleted {} packs with their indexes ({:.1} MiB)",
        sweep.deleted_packs,
        mib(sweep.deleted_bytes)
    );
    println!(
        "peak RSS during gc: {:.1} MiB (resident before: {:.1} MiB)",
        peak as f64 / 1024.0,
        rss0 as f64 / 1024.0
    );
    let t = Instant::now();
    let v = vault.verify(&VerifyOptions::default()).unwrap();
    println!(
        "structural verify: {:.2} s, {} manifests, clean {}",
        t.elapsed().as_secs_f64(),
        v.manifests,
        v.clean()
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fill(buf: &mut [u8], seed: &mut u64) {
    for c in buf.chunks_mut(8) {
        c.copy_from_slice(&next(seed).to_le_bytes()[..c.len()]);
    }
}

/// Linux: writing 5 to clear_refs resets the peak resident set (VmHWM).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(field));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
