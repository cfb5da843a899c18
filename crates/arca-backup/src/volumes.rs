//! Volume operations with the array's rules on top of the store's: a snapshot's default name,
//! and the refusals that keep pairs whole (a paired volume is neither resized nor deleted) and
//! hosts told (deleting a volume first frees its exports). The API and any other front end
//! call these instead of the pool's own operations.

use arca_store::{Pool, Result, SnapshotInfo, VolumeInfo};

use crate::backups::{Hosts, free_exports};
use crate::pairs::Pairs;
use crate::time;

/// Takes a snapshot of `volume`, named `name` or by default after the time (see
/// [`default_snapshot_name`]).
pub fn create_snapshot(pool: &Pool, volume: &str, name: Option<&str>) -> Result<SnapshotInfo> {
    let name = match name {
        Some(n) => n.to_string(),
        None => default_snapshot_name(pool, volume, time::now_ms())?,
    };
    pool.create_snapshot(volume, &name)
}

/// `snap-20261128T230501Z` for `now_ms`, with `-2`, `-3`... when the volume already has a
/// snapshot of that name (several taken within one second).
pub fn default_snapshot_name(pool: &Pool, volume: &str, now_ms: u64) -> Result<String> {
    let base = format!("snap-{}", time::format_compact(now_ms / 1000));
    let taken: Vec<String> = pool
        .snapshots(volume)?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name) {
        n += 1;
        name = format!("{base}-{n}");
    }
    Ok(name)
}

/// Grows a volume; refused for a volume in a pair (the pair's volumes keep one size).
pub fn resize_volume(pool: &Pool, pairs: &Pairs, name: &str, size: u64) -> Result<VolumeInfo> {
    pairs.check_volume_change(name, "resize")?;
    pool.resize_volume(name, size)
}

/// Deletes a volume (with its snapshots when `with_snapshots`). Refused for a volume in a
/// pair, and while hosts have it (or a snapshot deleted with it) open unless `force`, which
/// disconnects them first.
pub fn delete_volume(
    pool: &Pool,
    pairs: &Pairs,
    hosts: &dyn Hosts,
    name: &str,
    with_snapshots: bool,
    force: bool,
) -> Result<()> {
    pairs.check_volume_change(name, "delete")?;
    // Refused for its own reason before any host is disconnected for nothing.
    pool.check_delete_volume(name, with_snapshots)?;
    let mut exports = vec![name.to_string()];
    if with_snapshots {
        let snaps = pool.snapshots(name)?;
        exports.extend(snaps.into_iter().map(|sn| format!("{name}@{}", sn.name)));
    }
    free_exports(hosts, &format!("volume {name}"), &exports, force, "delete")?;
    pool.delete_volume(name, with_snapshots)?;
    // A host that connected between the check and the delete holds an export that no longer
    // exists (its requests fail): it goes too. Only then, as every disconnect leaves a fence
    // entry in the NBD server.
    for e in &exports {
        if !hosts.connected(e).is_empty() {
            hosts.disconnect(e);
        }
    }
    Ok(())
}
