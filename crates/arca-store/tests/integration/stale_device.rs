//! An old copy of a device put back in place of the current one is refused by name (it would
//! serve old data while fsck found nothing wrong), unless accepted on purpose; crashes in the
//! middle of flushes are not mistaken for it.

use std::sync::Arc;

use arca_store::sim::{CrashMode, FaultOp, PowerDomain, SimDevice, crash_devices};
use arca_store::{ErrorKind, OpenOptions, Pool};

use crate::util::*;

/// A device with the same content under another name (the copy someone kept).
fn copy_of(image: Vec<u8>, name: &str, power: &Arc<PowerDomain>) -> Arc<SimDevice> {
    Arc::new(SimDevice::from_image(name, image, power.clone()))
}

/// A pool on two devices with volume `v` of `size` bytes on device 1.
fn two_devices_with_v(size: u64) -> SimPool {
    let sp = sim_pool(&[16 * MIB, 8 * MIB], &small_config());
    sp.pool.create_volume("v", size, Some(1)).unwrap();
    sp
}

/// The devices of `sp` with an old copy (`image`, named `simI-old`) in place of device `index`.
fn with_old_copy(sp: &SimPool, index: usize, image: Vec<u8>) -> Vec<Arc<SimDevice>> {
    let mut devices = sp.devices.clone();
    devices[index] = copy_of(image, &format!("sim{index}-old"), &sp.power);
    devices
}

/// A pool with `v` (of `size` bytes, on device 1) open, its first 64 KiB written and flushed;
/// and the bytes of device 1 then: the old copy someone kept.
fn written_with_old_copy(size: u64) -> (SimPool, arca_store::Export, Vec<u8>) {
    let sp = two_devices_with_v(size);
    let e = sp.pool.export("v").unwrap();
    e.write(0, &pattern(1, 64 * 1024), false).unwrap();
    sp.pool.flush().unwrap();
    let old1 = sp.devices[1].snapshot_bytes();
    (sp, e, old1)
}

/// Opening `devices` fails; the error.
fn open_err(devices: &[Arc<SimDevice>]) -> arca_store::Error {
    Pool::open(as_block(devices)).map(|_| ()).unwrap_err()
}

/// `err` is a stale-device error that says `says`.
fn assert_stale(err: &arca_store::Error, says: &str) {
    assert_eq!(err.kind(), ErrorKind::StaleDevice, "{err}");
    assert!(err.to_string().contains(says), "{err}");
}

fn read_all(pool: &Pool, volume: &str) -> Vec<u8> {
    let e = pool.export(volume).unwrap();
    let mut buf = vec![0u8; e.size().unwrap() as usize];
    e.read(0, &mut buf).unwrap();
    buf
}

#[test]
fn an_old_copy_of_a_data_device_is_refused_naming_it_and_both_generations() {
    let (sp, e, old1) = written_with_old_copy(256 * 1024);
    let pool = &sp.pool;
    // New data: allocates (a metadata commit) and overwrites in place.
    e.write(0, &pattern(2, 128 * 1024), false).unwrap();
    pool.flush().unwrap();
    let current = read_all(pool, "v");
    let err = open_err(&with_old_copy(&sp, 1, old1));
    assert_stale(&err, "device sim1-old (index 1) is stale");
    let text = err.to_string();
    assert!(text.contains("old copy"), "{text}");
    assert!(
        text.contains("generation 2") && text.contains("generation 3"),
        "both generations named: {text}"
    );
    assert!(
        !text.contains("sim0"),
        "only the stale device is named: {text}"
    );
    // The current device opens, with the current data.
    let pool = reopen(&sp);
    assert_eq!(read_all(&pool, "v"), current);
    assert_clean(&pool);
}

#[test]
fn an_old_copy_of_the_metadata_device_is_refused_too() {
    let sp = two_devices_with_v(256 * 1024);
    let pool = &sp.pool;
    pool.flush().unwrap();
    let old0 = sp.devices[0].snapshot_bytes();
    let e = pool.export("v").unwrap();
    for i in 0..3 {
        e.write(0, &pattern(i, 64 * 1024), false).unwrap();
        pool.flush().unwrap();
    }
    let err = open_err(&with_old_copy(&sp, 0, old0));
    assert_stale(&err, "device sim0-old (index 0) is stale");
}

#[test]
fn data_overwritten_in_place_still_makes_an_old_copy_stale() {
    let (sp, e, old1) = written_with_old_copy(64 * 1024);
    let pool = &sp.pool;
    let commits = pool.commit_count();
    // In place: no metadata changes, only data, over two flushes.
    for i in 2..4 {
        e.write(0, &pattern(i, 64 * 1024), false).unwrap();
        pool.flush().unwrap();
    }
    assert_eq!(pool.commit_count(), commits, "the writes went in place");
    // Flushes with nothing written take no generation: still two behind, not more.
    pool.flush().unwrap();
    let err = open_err(&with_old_copy(&sp, 1, old1));
    assert_stale(
        &err,
        "sim1-old (index 1) is stale: it is an old copy: generation 2, while the pool is at generation 4",
    );
}

#[test]
fn an_accepted_stale_device_opens_and_is_current_afterwards() {
    let (sp, e, old1) = written_with_old_copy(256 * 1024);
    let pool = &sp.pool;
    let first = read_all(pool, "v");
    e.write(64 * 1024, &pattern(2, 64 * 1024), false).unwrap();
    pool.flush().unwrap();
    let devices = with_old_copy(&sp, 1, old1);
    let bad = OpenOptions {
        accept_stale_devices: vec![5],
    };
    let err = Pool::open_with(as_block(&devices), &bad)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let accept = OpenOptions {
        accept_stale_devices: vec![1],
    };
    let forced = Pool::open_with(as_block(&devices), &accept).unwrap();
    // The first write's data is what the old copy holds; the metadata is current.
    assert_eq!(&read_all(&forced, "v")[..64 * 1024], &first[..64 * 1024]);
    forced.close().unwrap();
    // No force needed any more: the records were rewritten at the forced open.
    let again = Pool::open(as_block(&devices)).unwrap();
    assert_clean(&again);
}

#[test]
fn crashes_in_the_middle_of_flushes_are_not_mistaken_for_stale_devices() {
    // Power fails after every prefix of a flush's operations (records, syncs, commit), in two
    // flushes in a row with a restart between: each restart must open, and fsck be clean.
    for fail_after in 0..12u64 {
        let sp = two_devices_with_v(256 * 1024);
        let mut devices = sp.devices.clone();
        let mut power = sp.power.clone();
        for round in 0..2u64 {
            let at = format!("failing after {fail_after} ops, round {round}");
            let pool = Pool::open(as_block(&devices)).unwrap_or_else(|e| panic!("{at}: {e}"));
            let e = pool.export("v").unwrap();
            // One write in place, one that allocates.
            e.write(0, &pattern(round, 4096), false).unwrap();
            e.write((round + 1) * 65536, &pattern(round, 4096), false)
                .unwrap();
            power.fail_after(fail_after);
            let _ = pool.flush();
            let mode = if round == 0 {
                CrashMode::LoseAll
            } else {
                CrashMode::RandomSubset(fail_after)
            };
            let crashed = crash_devices(&devices, mode);
            drop(e);
            drop(pool);
            (power, devices) = crashed;
        }
        let pool = Pool::open(as_block(&devices)).unwrap_or_else(|e| panic!("{fail_after}: {e}"));
        assert_clean(&pool);
    }
}

#[test]
fn a_device_failing_its_record_write_does_not_fail_the_flush_and_catches_up() {
    let sp = sim_pool(&[16 * MIB, 8 * MIB], &small_config());
    let pool = &sp.pool;
    pool.create_volume("v", 256 * 1024, Some(0)).unwrap();
    let e = pool.export("v").unwrap();
    // Writes to device 1's record slots fail; its data region is untouched.
    sp.devices[1].inject_range(FaultOp::Write, 8192, 8192, u64::MAX);
    for i in 0..3 {
        e.write(0, &pattern(i, 8192), false).unwrap();
        pool.flush().unwrap();
    }
    let report = pool.fsck().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.code == "generation-record" && p.message.contains("sim1")),
        "{:?}",
        report.problems
    );
    // Reopened now, device 1 is refused, with the other possible cause named.
    let err = Pool::open(as_block(&sp.devices)).map(|_| ()).unwrap_err();
    assert!(
        err.to_string().contains("sim1 (index 1) is stale")
            && err
                .to_string()
                .contains("writing its generation record failed"),
        "{err}"
    );
    // Once writes work again, the next flush catches up.
    sp.devices[1].clear_faults();
    e.write(0, &pattern(9, 8192), false).unwrap();
    pool.flush().unwrap();
    assert_clean(pool);
    assert_clean(&reopen(&sp));
}
