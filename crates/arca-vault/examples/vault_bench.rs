//! The issue's vault benchmark on a directory vault, as a user would see it:
//!
//! ```text
//! cargo run --release -p arca-vault --example vault_bench -- WORKDIR [--encrypt] [--peers]
//! ```
//!
//! With `--peers`, restic and borg (Debian's `restic` and `borgbackup`) back up the same
//! image file into the same file system, before and after the change, and restore it.
//!
//! Makes WORKDIR/image (2 GiB: 1 GiB random data, then 1 GiB of zeros as a hole), copies it
//! to WORKDIR/vault (full copy), rewrites 1 % of its 64 KiB blocks at random, copies again
//! incrementally (only the changed blocks are read, the rest come from the base manifest,
//! as the array's change tracking gives them), restores both generations to files and
//! checks them, and runs `tar --sparse -cf - | zstd -1` of the same image into the same file
//! system for comparison. Prints times, bytes, requests and memory.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arca_vault::{ChunkContent, CopyStats, Manifest, Vault, VaultKey, VaultSpec};

const CHUNK: u64 = 64 * 1024;
const DATA: u64 = 1 << 30;
const SIZE: u64 = 2 << 30;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let work = PathBuf::from(args.get(1).expect("usage: vault_bench WORKDIR [--encrypt]"));
    let encrypt = args.iter().any(|a| a == "--encrypt");
    let peers = args.iter().any(|a| a == "--peers");
    std::fs::create_dir_all(&work).unwrap();
    let image = work.join("image");
    make_image(&image);
    let vault_dir = work.join("vault");
    let _ = std::fs::remove_dir_all(&vault_dir);
    let key = encrypt.then(VaultKey::generate);
    let vault = Vault::create(&VaultSpec::dir(&vault_dir), key.as_ref(), CHUNK as u32).unwrap();
    let rss0 = rss_kib("VmRSS");
    let mut peer_lines = vec![];
    let peer_first = if peers { peer_round(&work, 1) } else { vec![] };

    let t = Instant::now();
    let first = copy(&vault, 1, &image, None);
    let first_s = t.elapsed().as_secs_f64();
    let rss_copy = rss_kib("VmHWM");
    reset_peak_rss();

    let changed = change_one_percent(&image);
    if peers {
        let second = peer_round(&work, 2);
        for (a, b) in peer_first.iter().zip(&second) {
            peer_lines.push(format!(
                "{}: first copy {:.2} s, incremental {:.2} s, stored by the incremental +{:.1} MiB, restore {:.2} s",
                a.0,
                a.1,
                b.1,
                (b.2 - a.2) as f64 / (1 << 20) as f64,
                b.3
            ));
        }
    }
    let base = vault.read_manifest(1).unwrap();
    let t = Instant::now();
    let incr = copy(&vault, 2, &image, Some((&base, &changed)));
    let incr_s = t.elapsed().as_secs_f64();

    let out = work.join("restored");
    let rss_incr = rss_kib("VmHWM");
    reset_peak_rss();
    let t = Instant::now();
    restore(&vault, 2, &out);
    let restore_s = t.elapsed().as_secs_f64();
    assert!(same_file(&image, &out), "generation 2 restores bit-exact");
    let rss_end = rss_kib("VmHWM");

    let t = Instant::now();
    let tar = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "tar --sparse -C {} -cf - image | zstd -1 -q -f -o {}/image.tar.zst",
            work.display(),
            work.display()
        ))
        .status()
        .unwrap();
    let tar_s = t.elapsed().as_secs_f64();
    assert!(tar.success());

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let info = vault.info();
    println!("image: 2 GiB (1 GiB random, 1 GiB hole), chunk 64 KiB, encrypted: {encrypt}");
    report("first copy", first_s, &first);
    report("incremental", incr_s, &incr);
    println!(
        "  changed: {} blocks = {:.1} MiB; read {:.1} MiB ({:.3}x); stored {:.1} MiB",
        changed.len(),
        mib(changed.len() as u64 * CHUNK),
        mib(incr.bytes_given),
        incr.bytes_given as f64 / (changed.len() as u64 * CHUNK) as f64,
        mib(incr.bytes_stored)
    );
    println!(
        "  incremental / first copy time: {:.2} %",
        100.0 * incr_s / first_s
    );
    println!(
        "restore (generation 2): {restore_s:.2} s, {:.0} MiB/s of data",
        mib(DATA) / restore_s
    );
    println!(
        "tar --sparse | zstd -1: {tar_s:.2} s; vault first copy is {:.2}x its speed",
        tar_s / first_s
    );
    println!(
        "index in memory: {} chunks, {} packs, {} bytes ({:.2} bytes a chunk incl. fixed)",
        info.indexed_chunks,
        info.indexed_packs,
        info.index_memory_bytes,
        info.index_memory_bytes as f64 / info.indexed_chunks.max(1) as f64
    );
    for l in &peer_lines {
        println!("{l}");
    }
    println!(
        "RSS: {} MiB at start; peak {} MiB in the first copy, {} MiB in the incremental, {} MiB in the restore",
        rss0 / 1024,
        rss_copy / 1024,
        rss_incr / 1024,
        rss_end / 1024
    );
}

/// Backs up WORKDIR/image with restic and borg (round 1 initialises the repositories) and,
/// in round 2, restores it: (tool, backup seconds, repository bytes after, restore seconds).
fn peer_round(work: &Path, round: u32) -> Vec<(&'static str, f64, u64, f64)> {
    let w = work.display();
    let sh = |cmd: String| {
        let t = Instant::now();
        let ok = std::process::Command::new("bash")
            .arg("-c")
            .arg(&cmd)
            .env("RESTIC_PASSWORD", "bench")
            .env("BORG_PASSPHRASE", "bench")
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .status()
            .unwrap()
            .success();
        assert!(ok, "{cmd}");
        t.elapsed().as_secs_f64()
    };
    if round == 1 {
        sh(format!(
            "rm -rf {w}/restic {w}/borg {w}/peer-out && mkdir -p {w}/peer-out"
        ));
        sh(format!("restic -q init -r {w}/restic"));
        sh(format!("borg init -e repokey {w}/borg"));
    }
    let restic = sh(format!("cd {w} && restic -q -r {w}/restic backup image"));
    let borg = sh(format!(
        "cd {w} && borg create --compression zstd,1 {w}/borg::gen{round} image"
    ));
    let size = |d: &str| -> u64 {
        let out = std::process::Command::new("du")
            .args(["-sb", d])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (rs, bs) = (size(&format!("{w}/restic")), size(&format!("{w}/borg")));
    let (mut rr, mut br) = (0.0, 0.0);
    if round == 2 {
        rr = sh(format!(
            "restic -q -r {w}/restic restore latest --target {w}/peer-out/restic"
        ));
        br = sh(format!(
            "mkdir -p {w}/peer-out/borg && cd {w}/peer-out/borg && borg extract {w}/borg::gen2"
        ));
        sh(format!(
            "cmp {w}/image {w}/peer-out/restic/image && cmp {w}/image {w}/peer-out/borg/image"
        ));
    }
    vec![
        ("restic 0.14 (encrypted)", restic, rs, rr),
        ("borg 1.2 (repokey, zstd 1)", borg, bs, br),
    ]
}

fn report(what: &str, secs: f64, s: &CopyStats) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "{what}: {secs:.2} s; given {:.1} MiB, new {:.1} MiB, stored {:.1} MiB; chunks new {} reused {} hole {}; \
         write requests {} (one per {:.1} MiB new)",
        mib(s.bytes_given),
        mib(s.bytes_new),
        mib(s.bytes_stored),
        s.chunks_new,
        s.chunks_reused,
        s.chunks_hole,
        s.put_requests,
        mib(s.bytes_new) / s.put_requests.max(1) as f64
    );
}

/// 1 GiB of random data, then a 1 GiB hole.
fn make_image(path: &Path) {
    let mut f = File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut seed = 1u64;
    for _ in 0..DATA >> 20 {
        fill(&mut buf, &mut seed);
        f.write_all(&buf).unwrap();
    }
    f.set_len(SIZE).unwrap();
}

fn fill(buf: &mut [u8], seed: &mut u64) {
    for c in buf.chunks_mut(8) {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        c.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes()[..c.len()]);
    }
}

/// Rewrites 1 % of the image's 64 KiB blocks, chosen at random, with new random data.
fn change_one_percent(path: &Path) -> Vec<u64> {
    let blocks = SIZE / CHUNK;
    let f = File::options().write(true).open(path).unwrap();
    let mut picked = std::collections::BTreeSet::new();
    let mut s = 12345u64;
    while (picked.len() as u64) < blocks / 100 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        picked.insert((s >> 33) % blocks);
    }
    let mut buf = vec![0u8; CHUNK as usize];
    for &b in &picked {
        fill(&mut buf, &mut s);
        f.write_all_at(&buf, b * CHUNK).unwrap();
    }
    f.sync_all().unwrap();
    picked.into_iter().collect()
}

fn copy(vault: &Vault, id: u64, image: &Path, base: Option<(&Manifest, &[u64])>) -> CopyStats {
    let f = File::open(image).unwrap();
    let mut w = vault.begin_copy(id, SIZE, base.map(|b| b.0)).unwrap();
    let mut buf = vec![0u8; CHUNK as usize];
    // Holes are known without reading them, as the array knows its unallocated extents
    // (and as `tar --sparse` finds them): here from SEEK_DATA.
    let mut next_data = seek_data(&f, 0);
    for i in 0..SIZE / CHUNK {
        let at = i * CHUNK;
        if next_data < at {
            next_data = seek_data(&f, at);
        }
        let hole = next_data >= at + CHUNK;
        match base {
            Some((_, changed)) if changed.binary_search(&i).is_err() => w.same_as_base(i).unwrap(),
            _ if hole => w.hole(i).unwrap(),
            _ => {
                f.read_exact_at(&mut buf, i * CHUNK).unwrap();
                w.data(i, &buf).unwrap();
            }
        }
    }
    w.finish(format!("backup {id}").into_bytes()).unwrap()
}

/// The first offset at or after `from` that holds data, or `u64::MAX` past the last data.
fn seek_data(f: &File, from: u64) -> u64 {
    use std::os::fd::AsRawFd;
    // SAFETY: lseek on a file descriptor this function borrows; no memory is passed.
    let r = unsafe { libc::lseek(f.as_raw_fd(), from as libc::off_t, libc::SEEK_DATA) };
    if r < 0 { u64::MAX } else { r as u64 }
}

fn restore(vault: &Vault, id: u64, out: &Path) {
    let m = vault.read_manifest(id).unwrap();
    let f = File::create(out).unwrap();
    f.set_len(m.image_size).unwrap();
    for c in vault.reader(&m) {
        let c = c.unwrap();
        if let ChunkContent::Data(d) = c.content {
            f.write_all_at(&d, c.index * CHUNK).unwrap();
        }
    }
    f.sync_all().unwrap();
}

fn same_file(a: &Path, b: &Path) -> bool {
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    (0..SIZE >> 20).all(|i| {
        fa.read_exact_at(&mut x, i << 20).unwrap();
        fb.read_exact_at(&mut y, i << 20).unwrap();
        x == y
    })
}

/// Resets the kernel's peak-RSS counter (VmHWM) so each phase reports its own peak.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
