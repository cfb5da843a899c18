//! qemu-img and qemu-io (QEMU's NBD client) against the daemon.

use crate::common::qemu::qemu_io;
use crate::require;
use crate::util::{
    Daemon, KIB, MIB, Serve, assert_same, flag_at, json, random_bytes, run, tool_map,
};

/// (start, length, data) runs of `qemu-img map --output=json`, checked to tile [0, size).
fn qemu_map(d: &Daemon, export: &str, size: u64) -> Vec<(u64, u64, bool)> {
    let uri = d.uri(export);
    let args = ["map", "--output=json", "-f", "raw", &uri];
    tool_map("qemu-img", &args, export, size, |e| {
        (
            e["start"].as_u64().unwrap(),
            e["length"].as_u64().unwrap(),
            e["data"].as_bool().unwrap(),
        )
    })
}

fn data_at(runs: &[(u64, u64, bool)], off: u64) -> bool {
    flag_at(runs, off)
}

#[test]
fn qemu_img_info_reports_virtual_size() {
    require!("qemu-img");
    let d = Daemon::with_volumes(&["small=64M", "big=100G"]);
    for (name, size) in [("small", 64 * MIB), ("big", 100 * 1024 * MIB)] {
        let out = run(
            "qemu-img",
            &["info", "--output=json", "-f", "raw", &d.uri(name)],
        )
        .ok();
        let info = json(&out.stdout);
        assert_eq!(
            info["virtual-size"].as_u64().unwrap(),
            size,
            "{}",
            out.describe()
        );
        assert_eq!(info["format"].as_str().unwrap(), "raw");
    }
    d.stop();
}

#[test]
fn qemu_img_convert_in_and_out() {
    require!("qemu-img");
    let d = Daemon::with_volumes(&["vol=32M"]);
    let size = 32 * MIB as usize;
    // Random data with a zero stretch, so qemu-img's zero detection is exercised too.
    let mut data = random_bytes(1, size);
    data[4 * MIB as usize..12 * MIB as usize].fill(0);
    let src = d.dir().join("in.raw");
    let dst = d.dir().join("out.raw");
    std::fs::write(&src, &data).unwrap();
    let (src_s, dst_s) = (src.to_str().unwrap(), dst.to_str().unwrap());
    let uri = d.uri("vol");
    run(
        "qemu-img",
        &["convert", "-n", "-f", "raw", "-O", "raw", src_s, &uri],
    )
    .ok();
    run(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "raw", &uri, dst_s],
    )
    .ok();
    assert_same("export copied out", &std::fs::read(&dst).unwrap(), &data);
    d.stop();
}

#[test]
fn qemu_img_compare_equal_and_different() {
    require!("qemu-img");
    let d = Daemon::with_volumes(&["vol=8M"]);
    let mut data = random_bytes(2, 8 * MIB as usize);
    let local = d.dir().join("local.raw");
    std::fs::write(&local, &data).unwrap();
    let (local_s, uri) = (local.to_str().unwrap(), d.uri("vol"));
    run(
        "qemu-img",
        &["convert", "-n", "-f", "raw", "-O", "raw", local_s, &uri],
    )
    .ok();
    let cmp = || {
        run(
            "qemu-img",
            &["compare", "-f", "raw", "-F", "raw", &uri, local_s],
        )
    };
    let same = cmp();
    assert_eq!(same.code(), Some(0), "expected equal:\n{}", same.describe());
    data[5 * MIB as usize + 3] ^= 0xff;
    std::fs::write(&local, &data).unwrap();
    let differ = cmp();
    assert_eq!(
        differ.code(),
        Some(1),
        "expected a difference:\n{}",
        differ.describe()
    );
    assert!(
        differ.stdout.contains(&(5 * MIB).to_string()),
        "compare should name the first differing sector's offset:\n{}",
        differ.describe()
    );
    d.stop();
}

#[test]
fn qemu_img_map_shows_holes_and_data() {
    require!("qemu-img", "qemu-io");
    let d = Daemon::with_volumes(&["vol=16M"]);
    let size = 16 * MIB;
    let fresh = qemu_map(&d, "vol", size);
    assert!(
        fresh.iter().all(|r| !r.2),
        "a new volume is all holes: {fresh:?}"
    );
    qemu_io(
        &d,
        "vol",
        &["write -P 0x5a 0 64k", "write -P 0x5a 1M 128k", "flush"],
    );
    let runs = qemu_map(&d, "vol", size);
    for off in [0, 64 * KIB - 1, MIB, MIB + 128 * KIB - 1] {
        assert!(
            data_at(&runs, off),
            "written offset {off} not data: {runs:?}"
        );
    }
    for off in [64 * KIB, MIB - 1, MIB + 128 * KIB, size - 1] {
        assert!(
            !data_at(&runs, off),
            "unwritten offset {off} not a hole: {runs:?}"
        );
    }
    // Arca unmaps trimmed whole extents: they read as zeros and report as holes again.
    qemu_io(&d, "vol", &["discard 0 64k", "flush"]);
    let runs = qemu_map(&d, "vol", size);
    assert!(!data_at(&runs, 0), "discarded extent still data: {runs:?}");
    assert!(data_at(&runs, MIB), "untouched data lost: {runs:?}");
    d.stop();
}

#[test]
fn qemu_io_write_zero_fua_discard_aio() {
    require!("qemu-io");
    let d = Daemon::with_volumes(&["vol=16M"]);
    let io = |cmds: &[&str]| qemu_io(&d, "vol", cmds);
    io(&["write -P 0xab 0 64k"]);
    io(&["read -P 0xab 0 64k"]);
    // Unaligned offset and length inside written data, checked with its neighbours.
    io(&["write -P 0xcd 1000 3000"]);
    io(&[
        "read -P 0xab 0 1000",
        "read -P 0xcd 1000 3000",
        "read -P 0xab 4000 61536",
    ]);
    // Zeroing with NO_HOLE (-z) and with may-unmap (-z -u), inside and across extents.
    io(&["write -P 0x11 128k 192k"]);
    io(&[
        "write -z 128k 64k",
        "write -z -u 192k 64k",
        "write -z -u 260k 8k",
    ]);
    io(&[
        "read -P 0 128k 128k",
        "read -P 0x11 256k 4k",
        "read -P 0 260k 8k",
        "read -P 0x11 268k 52k",
    ]);
    // FUA writes.
    io(&["write -f -P 0x77 512k 64k", "write -f -P 0x78 600k 100"]);
    io(&["read -P 0x77 512k 64k", "read -P 0x78 600k 100"]);
    // Discard: Arca reads trimmed ranges as zeros, partial extents included.
    io(&["write -P 0x99 1M 192k"]);
    io(&["discard 1M 64k", "discard 1100k 10k"]);
    io(&[
        "read -P 0 1M 64k",
        "read -P 0x99 1088k 12k",
        "read -P 0 1100k 10k",
        "read -P 0x99 1110k 106k",
    ]);
    // Asynchronous writes in flight together, then a flush.
    io(&[
        "aio_write -P 0x21 2M 64k",
        "aio_write -P 0x22 2112k 64k",
        "aio_write -P 0x23 3M 1M",
        "aio_flush",
        "read -P 0x21 2M 64k",
        "read -P 0x22 2112k 64k",
        "read -P 0x23 3M 1M",
    ]);
    // Untouched space reads as zeros.
    io(&["read -P 0 8M 8M"]);
    d.stop();
}

#[test]
fn data_survives_daemon_restart() {
    require!("qemu-io");
    let d = Daemon::with_volumes(&["vol=16M"]);
    qemu_io(
        &d,
        "vol",
        &["write -P 0x42 0 1M", "write -f -P 0x43 4M 64k", "flush"],
    );
    qemu_io(&d, "vol", &["write -P 0x44 8M 64k"]);
    let d = d.restart();
    qemu_io(
        &d,
        "vol",
        &[
            "read -P 0x42 0 1M",
            "read -P 0x43 4M 64k",
            "read -P 0x44 8M 64k",
            "read -P 0 9M 7M",
        ],
    );
    d.stop();
}

#[test]
fn qemu_nbd_lists_600_exports() {
    require!("qemu-nbd");
    // qemu-nbd --list sends INFO and LIST_META_CONTEXT for every listed export: over 1,000
    // options for 600 exports, more than a handshake's plain cap.
    const N: usize = 600;
    let tmp = crate::util::tempdir();
    crate::util::prepare_pool(tmp.path(), |pool| {
        for i in 0..N {
            pool.create_volume(&format!("v{i:03}"), MIB, None).unwrap();
        }
    });
    let d = Serve::in_tempdir(tmp).start();
    let port = d.port().to_string();
    let out = run("qemu-nbd", &["--list", "-b", "127.0.0.1", "-p", &port]).ok();
    assert!(
        out.stdout.contains(&format!("exports available: {N}")),
        "{}",
        out.describe()
    );
    for i in 0..N {
        let line = format!("export: 'v{i:03}'");
        assert!(
            out.stdout.contains(&line),
            "{line} missing:\n{}",
            out.describe()
        );
    }
    assert_eq!(out.stdout.matches("base:allocation").count(), N);
    d.stop();
}
