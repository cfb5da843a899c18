//! nbdcopy (libnbd's parallel copier: several connections, many requests in flight).

use std::os::unix::fs::MetadataExt;

use crate::require;
use crate::util::{Daemon, MIB, assert_same, flag_at, nbdinfo_map, random_bytes, run};

#[test]
fn nbdcopy_round_trip_64m() {
    require!("nbdcopy");
    let d = Daemon::with_volumes(&["vol=64M"]);
    let data = random_bytes(64, 64 * MIB as usize);
    let src = d.dir().join("in.raw");
    let dst = d.dir().join("out.raw");
    std::fs::write(&src, &data).unwrap();
    let uri = d.uri("vol");
    // Four connections with many requests each: multi-conn and a deep queue at once.
    run(
        "nbdcopy",
        &[
            "--connections=4",
            "--requests=32",
            src.to_str().unwrap(),
            &uri,
        ],
    )
    .ok();
    run("nbdcopy", &[&uri, dst.to_str().unwrap()]).ok();
    assert_same("64 MiB round trip", &std::fs::read(&dst).unwrap(), &data);
    d.stop();
}

#[test]
fn nbdcopy_sparse_copy_keeps_holes() {
    require!("nbdcopy", "nbdinfo");
    let d = Daemon::with_volumes(&["vol=64M"]);
    let size = 64 * MIB;
    // A sparse source: data at [10M, 14M) and [40M, 41M), zeros elsewhere.
    let src = d.dir().join("sparse.raw");
    let mut data = vec![0u8; size as usize];
    for (at, len, seed) in [(10 * MIB, 4 * MIB, 1), (40 * MIB, MIB, 2)] {
        let r = (at as usize)..(at + len) as usize;
        data[r].copy_from_slice(&random_bytes(seed, len as usize));
    }
    std::fs::write(&src, &data).unwrap();
    let uri = d.uri("vol");
    run(
        "nbdcopy",
        &["--destination-is-zero", src.to_str().unwrap(), &uri],
    )
    .ok();
    // Zeros were skipped, so only the data ranges are allocated in the volume.
    let runs = nbdinfo_map(&d, "vol", size);
    let data_at = |off: u64| !flag_at(&runs, off);
    for off in [10 * MIB, 14 * MIB - 1, 40 * MIB, 41 * MIB - 1] {
        assert!(data_at(off), "{off} should be data: {runs:?}");
    }
    for off in [0, 10 * MIB - 1, 14 * MIB, 39 * MIB, 41 * MIB, size - 1] {
        assert!(!data_at(off), "{off} should be a hole: {runs:?}");
    }
    // Copying out follows the holes: the local file is sparse and equal.
    let dst = d.dir().join("out.raw");
    run("nbdcopy", &[&uri, dst.to_str().unwrap()]).ok();
    assert_same("sparse copy", &std::fs::read(&dst).unwrap(), &data);
    let allocated = std::fs::metadata(&dst).unwrap().blocks() * 512;
    assert!(
        allocated < 16 * MIB,
        "copy out allocated {allocated} bytes for 5 MiB of data"
    );
    d.stop();
}
