//! Backup benchmark, on file devices in one directory, each figure beside its peer:
//!
//! - catalog queries over 100,000 records (library level: the API adds JSON encoding);
//! - snapshot backup end to end, small volume against a large one (flat in size?);
//! - copy backup throughput against `cp --sparse=always` of the same data, fsynced;
//! - in-place restore after 1 % of a volume changed, against a full copy of it;
//! - a paired primary's write throughput against an unpaired volume's, and a pair's resync
//!   after 1 % changed against its initial copy.
//!
//! `cargo bench -p arca-backup --bench backup`. Environment:
//! - `ARCA_BENCH_DIR`: where the files go [target/arca-bench-backup]
//! - `ARCA_BENCH_RECORDS`: catalog records [100000]
//! - `ARCA_BENCH_SIZE_MIB`: volume size for copies and restores [4096]
//! - `ARCA_BENCH_KEEP_POOL`: leave the catalog pool file (device-0.img) for an API run
//! - `ARCA_BENCH_ONLY`: `catalog`, `snapshot`, `copy` or `pairs` to run one part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arca_backup::catalog::{self, Query};
use arca_backup::record::{BackupRecord, Method, Status};
use arca_backup::{Backups, CreateRequest, JobManager, JobState, NoHosts, RestoreTo};
use arca_store::{Pool, PoolConfig};
use arca_testkit::bench::{env_u64, fresh_dir, median, time_ms};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "common/records.rs"]
mod records;
use records::snapshot_record;

const MIB: u64 = 1 << 20;

fn pool_at(dir: &Path, size: u64) -> Pool {
    fresh_dir(dir);
    let path = dir.join("device-0.img");
    Pool::create_files(&[path.as_path()], size, &PoolConfig::default()).unwrap()
}

fn wait(jobs: &JobManager, id: arca_backup::JobId) {
    let j = jobs.get(id).unwrap();
    let s = j.wait(Duration::from_secs(3600));
    assert_eq!(s, JobState::Succeeded, "{:?}", j.snapshot().error);
}

/// Record `i` of the catalog benchmark: one a minute from `t0` over ten volumes of 10 GiB,
/// with varied host information and a failure now and then.
fn synthetic(i: u64, t0: u64) -> BackupRecord {
    let volume = i % 10;
    let at = t0 + i * 60_000;
    let mut r = snapshot_record(i, 1000 + volume, &format!("vol{volume}"), i / 10 + 1, at);
    r.id = arca_backup::BackupId(at * 1000);
    r.source.size = 10 << 30;
    if i % 1000 == 7 {
        r.status = Status::Failed;
    }
    r.info.application = Some(["pg", "mysql", "files"][(i % 3) as usize].into());
    r.info.content_id = Some(format!("c{i}"));
    r.info.label = Some(["hourly", "daily", "weekly", "monthly"][(i % 4) as usize].into());
    r.info.meta = BTreeMap::from([
        (
            "env".to_string(),
            ["prod", "test"][(i % 2) as usize].to_string(),
        ),
        ("ticket".to_string(), format!("T{}", i % 997)),
    ]);
    r.logical_bytes = 10 << 30;
    r.allocated_bytes = 1 << 30;
    r
}

fn catalog_bench(dir: &Path, records: u64) {
    let pool = pool_at(dir, 8 << 30);
    let t0 = 1_767_225_600_000;
    let load = Instant::now();
    for batch in 0..records.div_ceil(1000) {
        let mut t = pool.transaction();
        for i in batch * 1000..((batch + 1) * 1000).min(records) {
            catalog::put(&mut t, None, &synthetic(i, t0));
        }
        t.commit().unwrap();
    }
    println!(
        "catalog: {records} records loaded in {:.1} s ({} MiB of metadata)",
        load.elapsed().as_secs_f64(),
        pool.status().metadata.used_bytes / MIB
    );
    let day = 86_400_000;
    let queries: Vec<(&str, Query)> = vec![
        (
            "newest 100",
            Query {
                limit: 100,
                ..Query::default()
            },
        ),
        (
            "volume, newest 100",
            Query {
                volume_id: Some(1003),
                limit: 100,
                ..Query::default()
            },
        ),
        (
            "label daily, newest 100",
            Query {
                label: Some("daily".into()),
                limit: 100,
                ..Query::default()
            },
        ),
        (
            "host + app (7 + pg)",
            Query {
                host: Some("host7".into()),
                application: Some("pg".into()),
                limit: 100_000,
                ..Query::default()
            },
        ),
        (
            "meta ticket=T5",
            Query {
                meta: vec![("ticket".into(), "T5".into())],
                limit: 100_000,
                ..Query::default()
            },
        ),
        (
            "one day of one volume",
            Query {
                volume_id: Some(1001),
                since_ms: Some(t0 + 30 * day),
                until_ms: Some(t0 + 31 * day),
                limit: 100_000,
                ..Query::default()
            },
        ),
        (
            "status failed",
            Query {
                status: Some(Status::Failed),
                limit: 100_000,
                ..Query::default()
            },
        ),
        (
            "all records",
            Query {
                limit: 100_000,
                ..Query::default()
            },
        ),
    ];
    for (name, q) in queries {
        let mut n = 0;
        let ms = median(
            (0..5)
                .map(|_| time_ms(|| n = catalog::query(&pool, &q).unwrap().len()))
                .collect(),
        );
        println!("catalog query {name:<26} {n:>6} records  {ms:>8.2} ms");
    }
    if std::env::var_os("ARCA_BENCH_KEEP_POOL").is_some() {
        println!("catalog pool kept at {}", dir.display());
    }
}

fn snapshot_backup_bench(dir: &Path) {
    let pool = pool_at(dir, 4 << 30);
    let jobs = Arc::new(JobManager::new());
    let b = Backups::open(pool.clone(), jobs.clone(), Arc::new(NoHosts)).unwrap();
    pool.create_volume("small", 1 << 30, None).unwrap();
    pool.create_volume("large", 1 << 50, None).unwrap();
    for v in ["small", "large"] {
        // Some data, so the snapshot has extents to share.
        let e = pool.export(v).unwrap();
        for i in 0..256u64 {
            e.write(i * (4 << 20), &[i as u8; 65536], false).unwrap();
        }
    }
    pool.flush().unwrap();
    for v in ["small", "large"] {
        let mut times = Vec::new();
        for _ in 0..20 {
            let mut jobs_started = Vec::new();
            times.push(time_ms(|| {
                let c = b
                    .create(CreateRequest {
                        volumes: vec![v.into()],
                        ..CreateRequest::default()
                    })
                    .unwrap();
                jobs_started = c.jobs;
            }));
            for j in jobs_started {
                wait(&jobs, j);
            }
        }
        let size = pool.volume(v).unwrap().size;
        println!(
            "snapshot backup of a {} GiB volume: median {:.2} ms, max {:.2} ms (20 runs)",
            size >> 30,
            median(times.clone()),
            times.iter().cloned().fold(0.0, f64::max)
        );
    }
}

fn fill(pool: &Pool, volume: &str, size: u64, seed: u64) {
    let e = pool.export(volume).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; 4 << 20];
    let mut off = 0;
    while off < size {
        rng.fill(&mut buf[..]);
        // Every eighth 4 MiB left as a hole, as real volumes have some.
        if (off / buf.len() as u64) % 8 != 7 {
            e.write(off, &buf, false).unwrap();
        }
        off += buf.len() as u64;
    }
    pool.flush().unwrap();
}

fn copy_and_restore_bench(dir: &Path, size: u64) {
    let pool = pool_at(dir, size * 5 + (1 << 30));
    let jobs = Arc::new(JobManager::new());
    let b = Backups::open(pool.clone(), jobs.clone(), Arc::new(NoHosts)).unwrap();
    pool.create_volume("v", size, None).unwrap();
    fill(&pool, "v", size, 1);
    let allocated = pool.volume("v").unwrap().referenced_bytes;
    // The same data as a sparse file, for cp.
    let src = dir.join("plain-src.img");
    {
        let f = std::fs::File::create(&src).unwrap();
        f.set_len(size).unwrap();
        let e = pool.export("v").unwrap();
        let mut buf = vec![0u8; 4 << 20];
        let mut off = 0;
        use std::os::unix::fs::FileExt;
        while off < size {
            if (off / buf.len() as u64) % 8 != 7 {
                e.read(off, &mut buf).unwrap();
                f.write_all_at(&buf, off).unwrap();
            }
            off += buf.len() as u64;
        }
        f.sync_all().unwrap();
    }
    let mut ratios = Vec::new();
    let mut copy_ms_all = Vec::new();
    let mut backups = Vec::new();
    for round in 0..3 {
        // A new file each round, all kept to the end: ext4 would otherwise hand cp the blocks
        // it just freed, already written on the disk below, while the pool writes into space
        // it never used. Both sides write fresh space.
        let dst = dir.join(format!("plain-dst-{round}.img"));
        let cp_ms = time_ms(|| {
            let ok = Command::new("cp")
                .arg("--sparse=always")
                .arg(&src)
                .arg(&dst)
                .status()
                .unwrap()
                .success();
            assert!(ok);
            assert!(Command::new("sync").arg(&dst).status().unwrap().success());
        });
        let mut backup = arca_backup::BackupId(0);
        let copy_ms = time_ms(|| {
            let c = b
                .create(CreateRequest {
                    volumes: vec!["v".into()],
                    method: Some(Method::Copy),
                    ..CreateRequest::default()
                })
                .unwrap();
            wait(&jobs, c.jobs[0]);
            backup = c.records[0].id;
        });
        let mb = allocated as f64 / MIB as f64;
        println!(
            "copy round {round}: arca copy backup {:.0} MiB/s ({copy_ms:.0} ms), cp --sparse=always + fsync {:.0} MiB/s ({cp_ms:.0} ms): ratio {:.2}",
            mb / (copy_ms / 1000.0),
            mb / (cp_ms / 1000.0),
            cp_ms / copy_ms
        );
        ratios.push(cp_ms / copy_ms);
        copy_ms_all.push(copy_ms);
        backups.push(backup);
    }
    for id in backups {
        b.delete(id, false).unwrap();
    }
    pool.flush().unwrap();
    println!("copy backup / cp ratio, median of 3: {:.2}", median(ratios));
    // In-place restore after 1 % of the volume changed.
    let id = {
        let c = b
            .create(CreateRequest {
                volumes: vec!["v".into()],
                ..CreateRequest::default()
            })
            .unwrap();
        wait(&jobs, c.jobs[0]);
        c.records[0].id
    };
    let es = pool.extent_size();
    let extents = size / es;
    let mut rng = StdRng::seed_from_u64(9);
    let e = pool.export("v").unwrap();
    let changed = extents / 100;
    let block = vec![0x5Au8; es as usize];
    for _ in 0..changed {
        e.write(rng.random_range(0..extents) * es, &block, false)
            .unwrap();
    }
    pool.flush().unwrap();
    let restore_ms = time_ms(|| {
        let r = b
            .restore(
                id,
                RestoreTo::InPlace {
                    volume: None,
                    force: false,
                },
            )
            .unwrap();
        wait(&jobs, r.job.unwrap());
    });
    let full = median(copy_ms_all);
    println!(
        "in-place restore after {changed} of {extents} extents changed: {restore_ms:.0} ms; full copy {full:.0} ms; ratio {:.1} %",
        100.0 * restore_ms / full
    );
}

fn write_seq(pool: &Pool, volume: &str, size: u64, seed: u64) -> f64 {
    let e = pool.export(volume).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; 1 << 20];
    rng.fill(&mut buf[..]);
    let t = Instant::now();
    let mut off = 0;
    while off < size {
        buf[..8].copy_from_slice(&off.to_le_bytes());
        e.write(off, &buf, false).unwrap();
        off += buf.len() as u64;
    }
    pool.flush().unwrap();
    t.elapsed().as_secs_f64() * 1000.0
}

fn pairs_bench(dir: &Path, size: u64) {
    let pool = pool_at(dir, size * 7 + (1 << 30));
    let jobs = Arc::new(JobManager::new());
    let pairs = arca_backup::Pairs::open(pool.clone(), jobs.clone()).unwrap();
    let wait_pair = |name: &str| {
        if let Some(j) = pairs.job(name).unwrap() {
            wait(&jobs, j);
        }
    };
    // Write throughput: a paired primary against an unpaired volume, both into fresh space.
    let mut ratios = Vec::new();
    for round in 0..4u64 {
        let plain = format!("plain{round}");
        let primary = format!("primary{round}");
        let secondary = format!("secondary{round}");
        for v in [&plain, &primary, &secondary] {
            pool.create_volume(v, size / 4, None).unwrap();
        }
        pairs.create(&primary, &secondary, None, &NoHosts).unwrap();
        wait_pair(&secondary);
        // Alternating which goes first, as writeback throttling favours whoever writes first.
        let (plain_ms, paired_ms) = if round % 2 == 0 {
            let a = write_seq(&pool, &plain, size / 4, round);
            (a, write_seq(&pool, &primary, size / 4, round))
        } else {
            let b = write_seq(&pool, &primary, size / 4, round);
            (write_seq(&pool, &plain, size / 4, round), b)
        };
        let mib = (size / 4) as f64 / MIB as f64;
        println!(
            "pair write round {round}: unpaired {:.0} MiB/s, paired {:.0} MiB/s: ratio {:.2}",
            mib / (plain_ms / 1000.0),
            mib / (paired_ms / 1000.0),
            plain_ms / paired_ms
        );
        ratios.push(plain_ms / paired_ms);
        // Kept to the end, so that every round writes fresh space on both sides.
        pairs.delete(&secondary).unwrap();
    }
    println!(
        "paired / unpaired write throughput, median of 4: {:.2}",
        median(ratios)
    );
    // Resync after 1 % changed against the initial copy.
    pool.create_volume("p", size, None).unwrap();
    pool.create_volume("s", size, None).unwrap();
    fill(&pool, "p", size, 3);
    let t = Instant::now();
    pairs.create("p", "s", None, &NoHosts).unwrap();
    wait_pair("s");
    let initial_ms = t.elapsed().as_secs_f64() * 1000.0;
    pairs.split("s").unwrap();
    let es = pool.extent_size();
    let extents = size / es;
    let changed = extents / 100;
    let mut rng = StdRng::seed_from_u64(5);
    let e = pool.export("p").unwrap();
    let block = vec![0x77u8; es as usize];
    for _ in 0..changed {
        e.write(rng.random_range(0..extents) * es, &block, false)
            .unwrap();
    }
    pool.flush().unwrap();
    let t = Instant::now();
    let job = pairs.resync("s", false).unwrap();
    wait(&jobs, job);
    let resync_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "pair resync after {changed} of {extents} extents changed: {resync_ms:.0} ms; initial copy {initial_ms:.0} ms; ratio {:.1} %",
        100.0 * resync_ms / initial_ms
    );
}

fn main() {
    let dir: PathBuf = std::env::var_os("ARCA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/arca-bench-backup"));
    let records = env_u64("ARCA_BENCH_RECORDS", 100_000);
    let size = env_u64("ARCA_BENCH_SIZE_MIB", 4096) * MIB;
    let only = std::env::var("ARCA_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "catalog" {
        catalog_bench(&dir.join("catalog"), records);
    }
    if only.is_empty() || only == "snapshot" {
        snapshot_backup_bench(&dir.join("snapshot"));
    }
    if only.is_empty() || only == "copy" {
        copy_and_restore_bench(&dir.join("copy"), size);
    }
    if only.is_empty() || only == "pairs" {
        pairs_bench(&dir.join("pairs"), size);
    }
    if std::env::var_os("ARCA_BENCH_KEEP_POOL").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
