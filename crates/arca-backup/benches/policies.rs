//! Backup policy scheduler benchmarks, on a pool in files (`ARCA_BENCH_DIR`, default
//! `target/arca-bench-policies`), with a clock the bench drives:
//!
//! - `scale`: 1,000 policies over 10,000 volumes: a tick with nothing due, a tick after the
//!   clock moved back (every policy's next slots computed afresh), next-slot computation
//!   alone, and matching every policy's patterns against the volumes (what each run does);
//! - `year`: a simulated year (`ARCA_BENCH_DAYS`, default 365) of an hourly policy with
//!   hourly/daily/monthly keep rules, a daily verification and a daily copy to a directory
//!   vault with daily/monthly vault keep rules: run time, backups left on the array and in
//!   the vault, metadata used, the vault's size.
//!
//! `ARCA_BENCH_ONLY=scale|year` runs one part.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arca_backup::policy::{Calendar, Keep, PolicySpec, RunResult};
use arca_backup::{Backups, Clock, JobManager, NoHosts, Policies};
use arca_store::{Pool, PoolConfig};
use arca_testkit::bench::{fresh_dir, median, time_ms};

const MIB: u64 = 1 << 20;
const HOUR_MS: u64 = 3_600_000;
/// 2026-01-02T00:00:00Z.
const START_MS: u64 = 1_767_312_000_000;

fn fresh_pool(dir: &Path, size: u64) -> Pool {
    fresh_dir(dir);
    let path = dir.join("device-0.img");
    Pool::create_files(&[path.as_path()], size, &PoolConfig::default()).unwrap()
}

fn service(pool: &Pool, now: &Arc<AtomicU64>) -> (Arc<JobManager>, Arc<Backups>, Arc<Policies>) {
    let jobs = Arc::new(JobManager::new());
    let n = now.clone();
    let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
    let b = Backups::open_with_clock(pool.clone(), jobs.clone(), Arc::new(NoHosts), clock).unwrap();
    let p = Policies::open(b.clone()).unwrap();
    (jobs, b, p)
}

fn spec(volumes: Vec<String>, snapshot: &str, verify: &str, tz: &str) -> PolicySpec {
    PolicySpec {
        volumes: Some(volumes),
        snapshot: Some(Some(snapshot.into())),
        verify: Some(Some(verify.into())),
        keep: Some(Keep {
            daily: Some(7),
            ..Keep::default()
        }),
        tz: Some(tz.into()),
        ..PolicySpec::default()
    }
}

fn scale_bench(dir: &Path) {
    let pool = fresh_pool(dir, 64 << 30);
    // 10,000 volumes, 500 to a transaction.
    let t = Instant::now();
    for batch in 0..20 {
        let mut txn = pool.transaction();
        for i in 0..500 {
            let n = batch * 500 + i;
            txn.create_volume(&format!("g{:03}-v{:05}", n % 1000, n), 64 * MIB, None)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    println!(
        "scale: 10,000 volumes created in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let now = Arc::new(AtomicU64::new(START_MS));
    let (_jobs, _b, p) = service(&pool, &now);
    // 1,000 policies, each over its group of 10 volumes; calendars and zones vary, none due
    // within the bench's ticks (the clock stays within minutes of 2 January 00:00, before
    // every first slot).
    let calendars = [
        "*-*-05 03:30",
        "mon..fri 22:00",
        "*-*-10,20 01:15",
        "monthly",
        "sat 23:45:30",
    ];
    let zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"];
    let t = Instant::now();
    for i in 0..1000usize {
        let cal = calendars[i % calendars.len()];
        p.create(
            &format!("p{i:04}"),
            spec(
                vec![format!("g{i:03}-*")],
                cal,
                "sun 04:00",
                zones[i % zones.len()],
            ),
        )
        .unwrap();
    }
    println!(
        "scale: 1,000 policies created in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut idle = Vec::new();
    for _ in 0..200 {
        now.fetch_add(1000, Ordering::SeqCst);
        idle.push(time_ms(|| assert_eq!(p.tick().unwrap(), 0)) * 1000.0);
    }
    println!(
        "scale: tick with nothing due (1,000 policies, 2,000 calendars): median {:.0} µs",
        median(idle)
    );
    let mut back = Vec::new();
    for _ in 0..20 {
        now.fetch_sub(60_000, Ordering::SeqCst);
        back.push(time_ms(|| assert_eq!(p.tick().unwrap(), 0)));
        now.fetch_add(1000, Ordering::SeqCst);
        p.tick().unwrap();
    }
    println!(
        "scale: tick after the clock moved back (2,000 next slots recomputed, none moved): \
         median {:.2} ms",
        median(back)
    );
    let cals: Vec<(Calendar, jiff::tz::TimeZone)> = (0..1000)
        .map(|i| {
            (
                Calendar::parse(calendars[i % calendars.len()]).unwrap(),
                arca_backup::policy::calendar::time_zone(zones[i % zones.len()]).unwrap(),
            )
        })
        .collect();
    let mut next = Vec::new();
    for _ in 0..10 {
        next.push(time_ms(|| {
            for (c, tz) in &cals {
                std::hint::black_box(c.next_after(tz, START_MS));
            }
        }));
    }
    println!(
        "scale: next slot of 1,000 calendars (5 kinds, 4 zones): median {:.2} ms",
        median(next)
    );
    let list = p.list();
    let t = Instant::now();
    let mut matched = 0;
    for (r, _) in &list {
        matched += p.matched_volumes(r).len();
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(matched, 10_000);
    println!(
        "scale: volumes matched for every policy (as each run does): {ms:.0} ms for 1,000 \
         policies, {:.2} ms per run",
        ms / 1000.0
    );
}

fn year_bench(dir: &Path) {
    let pool = fresh_pool(dir, 4 << 30);
    pool.create_volume("db", 256 * MIB, None).unwrap();
    let now = Arc::new(AtomicU64::new(START_MS));
    let (jobs, backups, p) = service(&pool, &now);
    let export = pool.export("db").unwrap();
    let mut s = spec(vec!["db".into()], "hourly", "daily", "UTC");
    s.keep = Some(Keep {
        hourly: Some(24),
        daily: Some(31),
        monthly: Some(12),
        ..Keep::default()
    });
    s.verify_budget_bytes = Some(Some(256 * MIB));
    // A directory vault's URL takes an absolute path.
    let vault_dir = std::fs::canonicalize(dir).unwrap().join("vault");
    backups
        .add_vault(arca_backup::NewVault {
            name: "off".into(),
            url: format!("file://{}", vault_dir.display()),
            ..arca_backup::NewVault::default()
        })
        .unwrap();
    s.copy_to = Some(Some("off".into()));
    s.copy = Some(Some("daily".into()));
    s.vault_keep = Some(Keep {
        daily: Some(14),
        monthly: Some(24),
        ..Keep::default()
    });
    p.create("year", s).unwrap();
    let used_before = pool.status().metadata.used_bytes;
    let t = Instant::now();
    let days = std::env::var("ARCA_BENCH_DAYS")
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
        .unwrap_or(365);
    let hours = days * 24;
    for h in 0..hours {
        // Some change every hour, so each backup differs from the one before.
        export
            .write((h % 4096) * 65536, &[h as u8; 4096], false)
            .unwrap();
        now.store(START_MS + (h + 1) * HOUR_MS + 1000, Ordering::SeqCst);
        p.tick().unwrap();
        assert!(p.wait_idle(Duration::from_secs(600)));
        if (h + 1) % (30 * 24) == 0 {
            eprintln!(
                "year: day {} after {:.0} s",
                (h + 1) / 24,
                t.elapsed().as_secs_f64()
            );
        }
        // The digest jobs the run started.
        for j in jobs.list().into_iter().filter(|j| !j.state.finished()) {
            if let Some(job) = jobs.get(j.id) {
                job.wait(Duration::from_secs(600));
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let counts = p.run_counts();
    let ok = counts
        .iter()
        .filter(|c| c.1 == RunResult::Succeeded)
        .map(|c| c.2)
        .sum::<u64>();
    let all: u64 = counts.iter().map(|c| c.2).sum();
    let q = arca_backup::catalog::Query {
        status: Some(arca_backup::Status::Complete),
        limit: 100_000,
        ..Default::default()
    };
    let complete = backups.list(&q).unwrap();
    let left = complete.iter().filter(|b| b.on_array()).count();
    let in_vault = complete
        .iter()
        .filter(|b| !b.vault_copies.is_empty())
        .count();
    let vault_bytes = dir_bytes(&vault_dir);
    let space = pool.status().metadata;
    println!(
        "year: {hours} hourly slots (and {days} daily verifications and copies) in {secs:.1} s \
         ({:.1} ms per simulated hour); runs {all}, succeeded {ok}",
        secs * 1000.0 / hours as f64
    );
    println!(
        "year: backups left {left} (keep-hourly 24, keep-daily 31, keep-monthly 12); \
         metadata used {:.1} MiB (from {:.1} MiB; deleted backups' records stay as history)",
        space.used_bytes as f64 / MIB as f64,
        used_before as f64 / MIB as f64
    );
    println!(
        "year: copies in the vault {in_vault} (vault keep-daily 14, keep-monthly 24), vault \
         directory {:.1} MiB (pruned copies' chunks wait for the vault's gc)",
        vault_bytes as f64 / MIB as f64
    );
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn main() {
    let dir: PathBuf = std::env::var_os("ARCA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/arca-bench-policies"));
    let only = std::env::var("ARCA_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "scale" {
        scale_bench(&dir.join("scale"));
    }
    if only.is_empty() || only == "year" {
        year_bench(&dir.join("year"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
