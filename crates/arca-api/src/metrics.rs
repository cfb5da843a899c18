//! Metrics in the Prometheus text format: per-volume operations, bytes and latency histograms
//! (recorded by the data path), pool capacity and use (read at scrape time).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS_S: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];

pub const OPS: [&str; 6] = ["read", "write", "flush", "trim", "zero", "status"];

#[derive(Default)]
pub struct OpStats {
    count: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    latency_ns_sum: AtomicU64,
    buckets: [AtomicU64; BUCKETS_S.len()],
}

impl OpStats {
    pub fn record(&self, bytes: u64, latency: Duration, ok: bool) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let ns = latency.as_nanos().min(u64::MAX as u128) as u64;
        self.latency_ns_sum.fetch_add(ns, Ordering::Relaxed);
        let s = latency.as_secs_f64();
        if let Some(i) = BUCKETS_S.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Stats of one export, one slot per operation in [`OPS`].
#[derive(Default)]
pub struct VolumeStats {
    ops: [OpStats; OPS.len()],
}

impl VolumeStats {
    /// `op` is one of [`OPS`].
    pub fn op(&self, op: &str) -> &OpStats {
        let i = OPS.iter().position(|o| *o == op).expect("known operation");
        &self.ops[i]
    }
}

#[derive(Default)]
pub struct Metrics {
    volumes: RwLock<BTreeMap<String, Arc<VolumeStats>>>,
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn volume(&self, name: &str) -> Arc<VolumeStats> {
        if let Some(s) = self.volumes.read().get(name) {
            return s.clone();
        }
        self.volumes
            .write()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The exposition text, with the pool's figures from `status`.
    pub fn render(&self, status: &arca_store::PoolStatus) -> String {
        let mut o = String::new();
        pool_gauges(&mut o, status);
        self.volume_families(&mut o);
        o
    }

    /// Per export and operation: request and error counts, bytes, and the latency histogram.
    fn volume_families(&self, o: &mut String) {
        let volumes: Vec<(String, Arc<VolumeStats>)> = self
            .volumes
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let families = [
            (
                "arca_volume_operations_total",
                "counter",
                "Requests per export and operation.",
            ),
            (
                "arca_volume_errors_total",
                "counter",
                "Failed requests per export and operation.",
            ),
            (
                "arca_volume_bytes_total",
                "counter",
                "Bytes read or written per export.",
            ),
            (
                "arca_volume_latency_seconds",
                "histogram",
                "Request latency per export and operation.",
            ),
        ];
        for (name, kind, help) in families {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
            for (vol, stats) in &volumes {
                let v = escape(vol);
                for (i, op) in OPS.iter().enumerate() {
                    let s = &stats.ops[i];
                    let count = s.count.load(Ordering::Relaxed);
                    match name {
                        "arca_volume_operations_total" => {
                            let _ = writeln!(o, "{name}{{volume=\"{v}\",op=\"{op}\"}} {count}");
                        }
                        "arca_volume_errors_total" => {
                            let e = s.errors.load(Ordering::Relaxed);
                            let _ = writeln!(o, "{name}{{volume=\"{v}\",op=\"{op}\"}} {e}");
                        }
                        "arca_volume_bytes_total" => {
                            if *op == "read" || *op == "write" {
                                let b = s.bytes.load(Ordering::Relaxed);
                                let _ = writeln!(o, "{name}{{volume=\"{v}\",op=\"{op}\"}} {b}");
                            }
                        }
                        _ => {
                            let mut cumulative = 0;
                            for (j, le) in BUCKETS_S.iter().enumerate() {
                                cumulative += s.buckets[j].load(Ordering::Relaxed);
                                let _ = writeln!(
                                    o,
                                    "{name}_bucket{{volume=\"{v}\",op=\"{op}\",le=\"{le}\"}} {cumulative}"
                                );
                            }
                            let _ = writeln!(
                                o,
                                "{name}_bucket{{volume=\"{v}\",op=\"{op}\",le=\"+Inf\"}} {count}"
                            );
                            let sum = s.latency_ns_sum.load(Ordering::Relaxed) as f64 / 1e9;
                            let _ = writeln!(o, "{name}_sum{{volume=\"{v}\",op=\"{op}\"}} {sum}");
                            let _ =
                                writeln!(o, "{name}_count{{volume=\"{v}\",op=\"{op}\"}} {count}");
                        }
                    }
                }
            }
        }
    }
}

/// The pool's and its devices' sizes, and the metadata room, as gauges.
fn pool_gauges(o: &mut String, status: &arca_store::PoolStatus) {
    let mut gauge = |name: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(o, "{name}{labels} {v}");
        }
    };
    let one = |v: u64| [(String::new(), v)];
    gauge(
        "arca_pool_capacity_bytes",
        "Data capacity of the pool.",
        &one(status.capacity_bytes),
    );
    gauge(
        "arca_pool_used_bytes",
        "Allocated data bytes.",
        &one(status.used_bytes),
    );
    gauge(
        "arca_pool_free_bytes",
        "Free data bytes.",
        &one(status.free_bytes),
    );
    let m = &status.metadata;
    gauge(
        "arca_pool_metadata_used_bytes",
        "Bytes of metadata pages in use.",
        &one(m.used_bytes),
    );
    gauge(
        "arca_pool_metadata_capacity_bytes",
        "Size of the metadata region.",
        &one(m.capacity_bytes),
    );
    gauge(
        "arca_pool_metadata_reachable_bytes",
        "What the metadata store can surely grow to inside the region.",
        &one(m.reachable_bytes),
    );
    gauge(
        "arca_pool_metadata_reserved_bytes",
        "Metadata room held back for host writes and deletions.",
        &one(m.reserved_bytes),
    );
    gauge(
        "arca_pool_metadata_available_bytes",
        "Metadata room left for new volumes, snapshots and backups.",
        &one(m.available_bytes),
    );
    let per_device = |f: fn(&arca_store::DeviceStatus) -> u64| -> Vec<(String, u64)> {
        status
            .devices
            .iter()
            .map(|d| (format!("{{device=\"{}\"}}", d.index), f(d)))
            .collect()
    };
    gauge(
        "arca_device_capacity_bytes",
        "Data capacity per device.",
        &per_device(|d| d.capacity_bytes),
    );
    gauge(
        "arca_device_used_bytes",
        "Allocated bytes per device.",
        &per_device(|d| d.used_bytes),
    );
    gauge(
        "arca_volumes",
        "Volumes in the pool.",
        &one(status.volumes as u64),
    );
    gauge(
        "arca_snapshots",
        "Snapshots in the pool.",
        &one(status.snapshots as u64),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let m = Metrics::default();
        let v = m.volume("db");
        v.op("read").record(4096, Duration::from_micros(80), true);
        v.op("read").record(4096, Duration::from_millis(3), true);
        v.op("write").record(512, Duration::from_secs(10), false);
        let status = arca_store::PoolStatus {
            pool_id: "x".into(),
            extent_size: 65536,
            devices: vec![],
            capacity_bytes: 10,
            used_bytes: 4,
            free_bytes: 6,
            metadata: arca_store::MetaSpace {
                capacity_bytes: 8,
                file_bytes: 7,
                reachable_bytes: 6,
                used_bytes: 1,
                reserved_bytes: 2,
                available_bytes: 3,
            },
            volumes: 1,
            snapshots: 0,
        };
        let text = m.render(&status);
        assert!(text.contains("arca_pool_used_bytes 4\n"));
        assert!(text.contains("arca_volume_operations_total{volume=\"db\",op=\"read\"} 2\n"));
        assert!(text.contains("arca_volume_bytes_total{volume=\"db\",op=\"read\"} 8192\n"));
        assert!(text.contains(
            "arca_volume_latency_seconds_bucket{volume=\"db\",op=\"read\",le=\"0.0001\"} 1\n"
        ));
        assert!(text.contains(
            "arca_volume_latency_seconds_bucket{volume=\"db\",op=\"read\",le=\"0.005\"} 2\n"
        ));
        // Slower than every bucket: only in +Inf.
        assert!(text.contains(
            "arca_volume_latency_seconds_bucket{volume=\"db\",op=\"write\",le=\"2.5\"} 0\n"
        ));
        assert!(text.contains(
            "arca_volume_latency_seconds_bucket{volume=\"db\",op=\"write\",le=\"+Inf\"} 1\n"
        ));
        assert!(text.contains("arca_volume_errors_total{volume=\"db\",op=\"write\"} 1\n"));
    }
}
