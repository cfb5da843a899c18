//! Crash tests: power fails at a random operation; the restart finds what was synced plus none
//! (or a random subset) of the writes since. After reopening, fsck is clean, every byte written
//! before the last completed flush reads back exactly, later bytes read as one of the values
//! written since, and every acknowledged snapshot is intact.
//!
//! `ARCA_CRASH_POINTS` sets the number of crash points (default 1000); raise it for a soak.

use std::collections::BTreeMap;

use arca_store::PoolConfig;
use arca_store::sim::CrashMode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::*;

const ES: u64 = 4096;

struct VolModel {
    /// Content as of the last completed flush.
    durable: Vec<u8>,
    /// Content if every write since landed.
    current: Vec<u8>,
    /// Writes since the last completed flush: (offset, bytes); zeroing writes zeros.
    since: Vec<(usize, Vec<u8>)>,
}

impl VolModel {
    fn new(size: usize) -> VolModel {
        VolModel {
            durable: vec![0; size],
            current: vec![0; size],
            since: Vec::new(),
        }
    }
    fn apply(&mut self, off: usize, data: Vec<u8>) {
        self.current[off..off + data.len()].copy_from_slice(&data);
        self.since.push((off, data));
    }
    fn flushed(&mut self) {
        self.durable = self.current.clone();
        self.since.clear();
    }
    /// Checks content read after a crash; the error names the first bad byte.
    fn verify(&self, name: &str, got: &[u8]) -> Result<(), String> {
        let mut covered = vec![false; got.len()];
        for (off, d) in &self.since {
            covered[*off..off + d.len()].fill(true);
        }
        for i in 0..got.len() {
            if got[i] == self.durable[i] {
                continue;
            }
            if !covered[i] {
                return Err(format!(
                    "{name}: byte {i} was flushed as {} but reads {}",
                    self.durable[i], got[i]
                ));
            }
            let ok = self
                .since
                .iter()
                .any(|(off, d)| i >= *off && i < off + d.len() && d[i - off] == got[i]);
            if !ok {
                return Err(format!(
                    "{name}: byte {i} reads {}, never written there",
                    got[i]
                ));
            }
        }
        Ok(())
    }
}

/// Acknowledged snapshot contents; `None` while a create or delete of it had no answer.
type Snaps = BTreeMap<(String, String), (Vec<u8>, bool)>;

fn crash_once(seed: u64, mode: CrashMode) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let config = PoolConfig {
        extent_size: ES as u32,
        meta_len: Some(2 * MIB),
    };
    let sp = sim_pool(&[6 * MIB, 2 * MIB], &config);
    let pool = &sp.pool;
    let vols = [("a", 96 * 1024usize), ("b", 40 * 1024 + 512)];
    let mut models: BTreeMap<&str, VolModel> = BTreeMap::new();
    for (name, size) in vols {
        pool.create_volume(name, size as u64, None).unwrap();
        models.insert(name, VolModel::new(size));
    }
    let mut snaps: Snaps = BTreeMap::new();
    let mut next_snap = 0;
    sp.power.fail_after(rng.random_range(0..160));
    for _ in 0..30 {
        let (vname, size) = vols[rng.random_range(0..vols.len())];
        let export = pool.export(vname).unwrap();
        let model = models.get_mut(vname).unwrap();
        let off = rng.random_range(0..size);
        let len = rng.random_range(1..=(size - off).min(3 * ES as usize));
        // (result, whether success means everything so far is durable)
        let (r, flushes) = match rng.random_range(0..10) {
            0..=4 => {
                let data = pattern(rng.random(), len);
                model.apply(off, data.clone());
                let fua = rng.random_range(0..8) == 0;
                (export.write(off as u64, &data, fua), fua)
            }
            5 => {
                model.apply(off, vec![0; len]);
                (
                    export.write_zeroes(
                        off as u64,
                        len as u64,
                        arca_store::ZeroOptions {
                            may_unmap: rng.random(),
                            fua: false,
                        },
                    ),
                    false,
                )
            }
            6 => {
                model.apply(off, vec![0; len]);
                (export.trim(off as u64, len as u64, false), false)
            }
            7 => (pool.flush(), true),
            8 => {
                next_snap += 1;
                let sname = format!("s{next_snap}");
                let content = model.current.clone();
                let r = pool.create_snapshot(vname, &sname).map(|_| ());
                snaps.insert((vname.to_string(), sname), (content, r.is_ok()));
                (r, true)
            }
            _ => {
                let Some(key) = snaps.keys().find(|k| k.0 == vname).cloned() else {
                    continue;
                };
                let r = pool.delete_snapshot(&key.0, &key.1);
                if r.is_ok() {
                    snaps.remove(&key);
                } else {
                    snaps.get_mut(&key).unwrap().1 = false;
                }
                (r, true)
            }
        };
        match r {
            Ok(()) if flushes => models.values_mut().for_each(VolModel::flushed),
            Ok(()) => {}
            Err(e) if !sp.power.failed() => {
                return Err(format!("operation failed with power on: {e}"));
            }
            // Power is off: every later operation fails too.
            Err(_) => break,
        }
    }
    let pool = sp
        .crash_and_reopen(mode)
        .map_err(|e| format!("reopen: {e}"))?
        .pool;
    let report = pool.fsck().map_err(|e| format!("fsck: {e}"))?;
    if !report.is_clean() {
        return Err(format!("fsck: {:?}", report.problems));
    }
    for (name, model) in &models {
        let e = pool.export(name).map_err(|e| e.to_string())?;
        let mut got = vec![0u8; model.current.len()];
        e.read(0, &mut got).map_err(|e| e.to_string())?;
        model.verify(name, &got)?;
    }
    let present: Vec<String> = pool.exports().into_iter().map(|e| e.name).collect();
    for ((v, s), (content, acknowledged)) in &snaps {
        let name = format!("{v}@{s}");
        if !present.contains(&name) {
            if *acknowledged {
                return Err(format!("acknowledged snapshot {name} is missing"));
            }
            continue;
        }
        let e = pool.export(&name).map_err(|e| e.to_string())?;
        let mut got = vec![0u8; content.len()];
        e.read(0, &mut got).map_err(|e| e.to_string())?;
        if &got != content {
            return Err(format!("snapshot {name} content differs"));
        }
    }
    Ok(())
}

fn run(points: u64, seed_base: u64) {
    let mut failures = Vec::new();
    for i in 0..points {
        let seed = seed_base + i;
        let mode = if i % 2 == 0 {
            CrashMode::LoseAll
        } else {
            CrashMode::RandomSubset(seed)
        };
        if let Err(e) = crash_once(seed, mode) {
            failures.push(format!("seed {seed} {mode:?}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {points} crash points failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn crash_at_random_points_keeps_flushed_data() {
    let points = std::env::var("ARCA_CRASH_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    run(points, 0);
}
