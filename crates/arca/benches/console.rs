//! Web console benchmark: time to first render and bytes transferred per page, in headless
//! Chromium (driven over WebDriver, as the console tests do), against `arca serve` on a pool
//! holding many volumes and a catalog of many backups.
//!
//! `cargo bench -p arca --bench console`. Environment:
//! - `ARCA_BENCH_DIR`: where the pool goes [target/arca-bench-console]
//! - `ARCA_BENCH_VOLUMES`: volumes [1000]
//! - `ARCA_BENCH_BACKUPS`: catalog records, spread evenly over the volumes [100000]
//! - `ARCA_BENCH_RUNS`: page loads per page; the median is reported [5]
//!
//! Records are written straight into the catalog (as the catalog benchmark of arca-backup
//! does), with a digest so that the daemon starts no job for them; their snapshots do not
//! exist, which changes nothing a listing reads.

#[path = "../tests/common/mod.rs"]
mod common;
// The console tests' client; the benchmark uses only part of it.
#[allow(dead_code)]
#[path = "../tests/console/webdriver.rs"]
mod webdriver;
// The catalog records of arca-backup's catalog benchmark.
#[path = "../../arca-backup/benches/common/records.rs"]
mod records;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arca_backup::catalog;
use arca_store::{Pool, PoolConfig};
use arca_testkit::bench::{env_u64, fresh_dir, median};
use serde_json::{Value, json};

use common::daemon::Serve;
use records::snapshot_record;
use webdriver::Browser;

/// A pool with `volumes` volumes and `backups` catalog records: each volume's backups an hour
/// apart up to an hour ago, every tenth volume's ending three days ago (the attention list).
fn build_pool(dir: &Path, volumes: u64, backups: u64) -> PathBuf {
    fresh_dir(dir);
    let path = dir.join("device-0.img");
    let pool = Pool::create_files(&[path.as_path()], 16 << 30, &PoolConfig::default()).unwrap();
    let t = Instant::now();
    let mut ids = Vec::new();
    for batch in 0..volumes.div_ceil(100) {
        let mut txn = pool.transaction();
        for v in batch * 100..((batch + 1) * 100).min(volumes) {
            let name = format!("vol{v:04}");
            ids.push((txn.create_volume(&name, 1 << 30, None).unwrap(), name));
        }
        txn.commit().unwrap();
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let per_volume = backups / volumes.max(1);
    let hour = 3_600_000;
    let mut i = 0;
    for (v, (id, name)) in ids.iter().enumerate() {
        let end = now_ms - if v % 10 == 0 { 72 * hour } else { hour };
        let mut txn = pool.transaction();
        for g in 1..=per_volume {
            let at = end - (per_volume - g) * hour + v as u64;
            catalog::put(&mut txn, None, &snapshot_record(i, *id, name, g, at));
            i += 1;
        }
        catalog::set_generation(&mut txn, *id, per_volume);
        txn.commit().unwrap();
    }
    println!(
        "pool: {volumes} volumes, {i} backups written in {:.1} s ({} MiB of metadata)",
        t.elapsed().as_secs_f64(),
        pool.status().metadata.used_bytes >> 20
    );
    pool.close().unwrap();
    path
}

/// Loads `url` in a fresh document and waits for `ready`: (ms from navigation start to the
/// first poll that found it, bytes transferred up to then, the API requests' durations).
fn load(b: &Browser, url: &str, ready: &str) -> (f64, u64, Vec<(String, f64)>) {
    b.goto("about:blank");
    b.goto(url);
    let deadline = Instant::now() + Duration::from_secs(120);
    let probe = "if (!document.querySelector(arguments[0])) return null;
        const nav = performance.getEntriesByType('navigation')[0];
        const res = performance.getEntriesByType('resource');
        return {
            ms: performance.now(),
            bytes: nav.transferSize + res.reduce((s, r) => s + r.transferSize, 0),
            api: res.filter(r => r.name.includes('/v1/'))
                .map(r => [new URL(r.name).pathname + new URL(r.name).search, r.duration]),
        };";
    loop {
        let v = b.script(probe, vec![json!(ready)]);
        if !v.is_null() {
            let api = v["api"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_f64().unwrap()))
                .collect();
            return (v["ms"].as_f64().unwrap(), v["bytes"].as_u64().unwrap(), api);
        }
        assert!(Instant::now() < deadline, "{url} never showed {ready}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    if !common::tools::tools(&[webdriver::CHROMIUM, webdriver::CHROMEDRIVER]) {
        return;
    }
    let dir = std::env::var_os("ARCA_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_TARGET_TMPDIR")).join("../arca-bench-console"),
        PathBuf::from,
    );
    let volumes = env_u64("ARCA_BENCH_VOLUMES", 1000);
    let backups = env_u64("ARCA_BENCH_BACKUPS", 100_000);
    let runs = env_u64("ARCA_BENCH_RUNS", 5).max(1);
    let device = build_pool(&dir, volumes, backups);
    let d = Serve::new()
        .without_pool()
        .args(&["--device", device.to_str().unwrap()])
        .start();
    let b = Browser::start(1280, 800);
    let middle = format!("vol{:04}", volumes / 2);
    let pages = [
        ("overview", "/".to_string(), "#attention-list table"),
        ("volumes", "/#/volumes".to_string(), "#volume-list table"),
        (
            "backup timeline",
            format!("/#/volumes/{middle}"),
            "#timeline table",
        ),
    ];
    println!("page | first render ms: cold, median of {runs} | bytes cold / warm | API ms (warm)");
    for (name, path, ready) in pages {
        let url = format!("{}{path}", d.api);
        let (cold_ms, cold_bytes, _) = load(&b, &url, ready);
        let mut times = Vec::new();
        let mut last: (u64, Vec<(String, f64)>) = (0, Vec::new());
        for _ in 0..runs {
            let (ms, bytes, api) = load(&b, &url, ready);
            times.push(ms);
            last = (bytes, api);
        }
        let api: Vec<String> = last
            .1
            .iter()
            .map(|(p, ms)| format!("{p} {ms:.0}"))
            .collect();
        println!(
            "{name} | {cold_ms:.0}, {:.0} | {cold_bytes} / {} | {}",
            median(times),
            last.0,
            api.join(", ")
        );
    }
    let pool: Value = ureq::get(format!("{}/v1/pool", d.api))
        .call()
        .unwrap()
        .into_body()
        .read_json()
        .unwrap();
    println!("pool: {} volumes", pool["volumes"]);
}
