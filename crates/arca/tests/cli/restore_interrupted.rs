//! An in-place restore cut by SIGTERM or kill -9 right after `restore --no-wait`: after the
//! restart the volume is entirely the backup (the restore was resumed) or entirely its undo
//! point (rolled back), never a mix, and the backup's history says which.
//!
//! The pool is prepared offline with the store and backup libraries, so no NBD tool is needed,
//! and the final content is read offline the same way.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::util::Daemon;

const MIB: u64 = 1 << 20;
/// Big enough that the restore is still running when the stop reaches it.
const VOLUME_BYTES: u64 = 512 * MIB;
const BLOCK: usize = 4096;

/// One MiB of content `tag`: every 4 KiB block stamped with its offset, so a block of one
/// content never equals a block of the other or one from elsewhere.
fn chunk(tag: u8, offset: u64) -> Vec<u8> {
    let mut b = vec![tag; MIB as usize];
    for (i, block) in b.chunks_mut(BLOCK).enumerate() {
        let at = offset + (i * BLOCK) as u64;
        block[..8].copy_from_slice(&at.to_le_bytes());
    }
    b
}

fn fill(pool: &arca_store::Pool, volume: &str, tag: u8) {
    let e = pool.export(volume).unwrap();
    for off in (0..VOLUME_BYTES).step_by(MIB as usize) {
        e.write(off, &chunk(tag, off), false).unwrap();
    }
}

/// A pool with volume `v`: a snapshot backup of content 0xAA, then every byte overwritten with
/// 0xBB. Also `w` with a copy backup, whose destination `volume show` describes. Returns the
/// snapshot backup's id and the copy's destination volume.
fn prepare(dev: &Path) -> (u64, String) {
    let config = arca_store::PoolConfig {
        extent_size: 64 << 10,
        meta_len: None,
    };
    let pool = arca_store::Pool::create_files(&[dev], 2 << 30, &config).unwrap();
    pool.create_volume("v", VOLUME_BYTES, None).unwrap();
    fill(&pool, "v", 0xAA);
    pool.create_volume("w", MIB, None).unwrap();
    let jobs = Arc::new(arca_backup::JobManager::new());
    let backups =
        arca_backup::Backups::open(pool.clone(), jobs.clone(), Arc::new(arca_backup::NoHosts))
            .unwrap();
    let create = |volume: &str, method| {
        backups
            .create(arca_backup::CreateRequest {
                volumes: vec![volume.to_string()],
                method: Some(method),
                ..Default::default()
            })
            .unwrap()
    };
    let c = create("v", arca_backup::Method::Snapshot);
    let copy = create("w", arca_backup::Method::Copy);
    for j in c.jobs.iter().chain(&copy.jobs) {
        let state = jobs.get(*j).unwrap().wait(Duration::from_secs(120));
        assert_eq!(state, arca_backup::JobState::Succeeded);
    }
    fill(&pool, "v", 0xBB);
    pool.close().unwrap();
    let arca_backup::Destination::Volume { volume, .. } = &copy.records[0].destination else {
        panic!("a copy backup has a volume destination")
    };
    (c.records[0].id.get(), volume.clone())
}

/// Which content `v` holds, entirely: 0xAA or 0xBB; panics on a mix.
fn content(dev: &Path) -> u8 {
    let pool = arca_store::Pool::open_paths(&[dev]).unwrap();
    let e = pool.export("v").unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut seen = None;
    for off in (0..VOLUME_BYTES).step_by(MIB as usize) {
        e.read(off, &mut buf).unwrap();
        let tag = [0xAA, 0xBB]
            .into_iter()
            .find(|&t| buf == chunk(t, off))
            .unwrap_or_else(|| panic!("MiB at {off} is neither the backup nor the undo point"));
        match seen {
            None => seen = Some(tag),
            Some(s) => assert_eq!(s, tag, "torn: MiB at {off} differs from the start"),
        }
    }
    pool.close().unwrap();
    seen.unwrap()
}

/// The restore-related event types of a backup's history, oldest first.
fn restore_events(d: &Daemon, id: u64) -> Vec<String> {
    let b = d.json(&["backup", "show", &id.to_string()]);
    b["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"]["type"].as_str().unwrap().to_string())
        .filter(|t| t.starts_with("restore"))
        .collect()
}

fn interrupted_restore_then_restart(kill: bool) {
    let tmp = crate::common::daemon::tempdir();
    let dev = tmp.path().join("device.img");
    let dev_s = dev.to_str().unwrap().to_string();
    let (id, copy_volume) = prepare(&dev);
    let id_s = id.to_string();

    let d = Daemon::serve(&["--device", &dev_s]);
    let w = d.json(&["volume", "show", &copy_volume]);
    let held = w["protection"].as_str().unwrap_or_default().to_string();
    assert!(held.starts_with("holds backup "), "{w:#}");
    let text = d.arca(&["volume", "show", &copy_volume]).ok().stdout;
    assert!(text.contains(&format!("protection:  {held}")), "{text}");

    let r = d.json(&["restore", &id_s, "--no-wait"]);
    let undo = r["undo_backups"][0].as_u64().unwrap();
    // Right away: the restore job is running when the daemon goes.
    if kill {
        d.kill();
    } else {
        let log = d.stop_with_log();
        assert!(
            log.contains("restore interrupted by the stop"),
            "the stop did not catch the restore running (make the volume bigger):\n{log}"
        );
    }

    let d = Daemon::serve(&["--device", &dev_s]);
    // Until the recovery is done the volume says why hosts get it read-only.
    let v = d.json(&["volume", "show", "v"]);
    if let Some(p) = v["protection"].as_str() {
        assert!(p.starts_with("being restored"), "{v:#}");
    }
    let jobs: Value = d.json(&["job", "list"]);
    for j in jobs.as_array().unwrap() {
        d.arca(&["job", "wait", &j["id"].to_string()]).ok();
    }
    let events = restore_events(&d, id);
    let v = d.json(&["volume", "show", "v"]);
    assert!(v["protection"].is_null(), "{v:#}");
    let out = d.arca(&["pool", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    let out = d.arca(&["catalog", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    d.stop();

    let tag = content(&dev);
    match events.as_slice() {
        [a, b] if a == "restore_resumed" && b == "restored" => {
            assert_eq!(tag, 0xAA, "resumed and restored, but not the backup")
        }
        [a] if a == "restore_rolled_back" => {
            assert_eq!(tag, 0xBB, "rolled back, but not undo point {undo}")
        }
        other => panic!("the history does not say what became of the restore: {other:?}"),
    }
}

#[test]
fn sigterm_right_after_restore_no_wait_then_restart_resumes_it() {
    interrupted_restore_then_restart(false);
}

#[test]
fn kill_right_after_restore_no_wait_then_restart_resumes_it() {
    interrupted_restore_then_restart(true);
}
