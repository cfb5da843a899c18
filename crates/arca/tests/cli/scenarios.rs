//! End-to-end scenarios: the real daemon (`arca serve`), the real `arca` client, and real NBD
//! clients as the hosts (libnbd's Python binding, as nbdsh runs it; qemu-io; qemu-img):
//! point-in-time copies under load, backup sets, restores, verification of damaged data, a
//! crash during a copy, a catalog rebuilt from the destinations, and the protections.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::daemon::tempdir;
use crate::common::data::random_bytes;
use crate::common::json::strs;
use crate::common::qemu::{qemu_io, qemu_io_run};
use crate::require;
use crate::util::{Daemon, HOST_INFO_ARGS, Out, PYTHON, device_in_tempdir, find, image, run_cmd};

const MIB: u64 = 1 << 20;
/// The daemon's default extent size.
const EXTENT: u64 = 64 << 10;

/// What every host script starts with: a connection to one export, and the stamps.
const PRELUDE: &str = r#"
import errno, os, struct, sys, time
import nbd

def connect(addr, export):
    host, port = addr.rsplit(':', 1)
    h = nbd.NBD()
    h.set_export_name(export)
    h.connect_tcp(host, port)
    return h

def stamp(n, size):
    return struct.pack('<Q', n) * (size // 8)
"#;

fn python_cmd(body: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.arg("-c").arg(format!("{PRELUDE}\n{body}")).args(args);
    cmd
}

/// Runs a host script to completion; it must exit 0.
fn python(body: &str, args: &[&str]) -> Out {
    run_cmd(python_cmd(body, args)).ok()
}

/// A host program running in the background, its output in files; killed by PID when dropped
/// while still running.
struct Host {
    child: Option<Child>,
    what: String,
    out: PathBuf,
    err: PathBuf,
}

impl Host {
    fn python(dir: &Path, name: &str, body: &str, args: &[&str]) -> Host {
        let out = dir.join(format!("{name}.stdout"));
        let err = dir.join(format!("{name}.stderr"));
        let mut cmd = python_cmd(body, args);
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let child = cmd.spawn().expect("spawning a host script");
        Host {
            child: Some(child),
            what: format!("host script {name}"),
            out,
            err,
        }
    }

    fn output(&self) -> (String, String) {
        (
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default(),
        )
    }

    /// Waits until `file` exists; panics when the host exits first or after `timeout`.
    fn wait_for_file(&mut self, file: &Path, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !file.exists() {
            let child = self.child.as_mut().unwrap();
            if let Some(s) = child.try_wait().unwrap() {
                let (o, e) = self.output();
                panic!("{} exited with {s} before {file:?}:\n{o}\n{e}", self.what);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not create {file:?} within {timeout:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts a writer host, `script ADDR READY STOP ARGS...`, that creates READY once it is
    /// writing and stops when STOP exists; returns once it is ready, with STOP.
    fn start_writer(dir: &Path, script: &str, addr: &str, args: &[&str]) -> (Host, PathBuf) {
        let (ready, stop) = (dir.join("ready"), dir.join("stop"));
        let paths = [addr, ready.to_str().unwrap(), stop.to_str().unwrap()];
        let mut writer = Host::python(dir, "writer", script, &[&paths[..], args].concat());
        writer.wait_for_file(&ready, Duration::from_secs(20));
        (writer, stop)
    }

    /// Tells a writer host to stop (by creating `stop`), waits for it and checks that it
    /// saw no error: the count of blocks it wrote, which it prints last.
    fn stop_writer(self, stop: &Path) -> u64 {
        std::fs::write(stop, "").unwrap();
        let out = self.finish(Duration::from_secs(20));
        assert!(
            out.status.success(),
            "the host got an error:\n{}",
            out.describe()
        );
        out.stdout.trim().parse().expect("the writer's count")
    }

    /// Waits for the host to finish (panics past `timeout`); its output.
    fn finish(mut self, timeout: Duration) -> Out {
        let mut child = self.child.take().unwrap();
        let status = crate::common::process::wait_timeout(&mut child, timeout);
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = self.output();
            panic!("{} did not finish within {timeout:?}:\n{o}\n{e}", self.what);
        };
        let (stdout, stderr) = self.output();
        Out {
            what: self.what.clone(),
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Panics at the first differing byte instead of printing megabytes.
fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i}: got {:#04x}, want {:#04x}",
            got[i], want[i]
        );
    }
}

/// Repeats a command refused because a host that just finished is still listed as connected
/// (the server takes a moment to see a connection end).
fn while_connected(mut f: impl FnMut() -> Out) -> Out {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = f();
        let connected = out.status.code() == Some(1) && out.stderr.contains("host connection");
        if !connected || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn id_of(b: &Value) -> u64 {
    b["id"].as_u64().unwrap_or_else(|| panic!("no id in {b:#}"))
}

fn ids(list: &Value) -> Vec<u64> {
    list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

fn u64_at(data: &[u8], offset: u64) -> u64 {
    u64::from_le_bytes(data[offset as usize..][..8].try_into().unwrap())
}

fn stamp(n: u64, size: u64) -> Vec<u8> {
    n.to_le_bytes().repeat((size / 8) as usize)
}

// ---------------------------------------------------------------------------------------------
// 1. A copy backup while a host writes.

const BLOCK: u64 = 4096;
const BLOCKS: u64 = 8192; // 32 MiB
/// Where the writer's n-th write goes: a permutation of the blocks (7919 is odd).
fn block_of(n: u64) -> u64 {
    (n * 7919) % BLOCKS
}

/// The writer's image after its m-th write: block k holds the stamp of the last write to it.
fn state_after(m: u64) -> Vec<u8> {
    let mut img = vec![0u8; (BLOCKS * BLOCK) as usize];
    for n in 1..=m {
        let at = (block_of(n) * BLOCK) as usize;
        img[at..at + BLOCK as usize].copy_from_slice(&stamp(n, BLOCK));
    }
    img
}

/// Writes stamp(n) to block (n * 7919) % blocks for n = 1, 2, ... on one connection, strictly
/// one after the other; creates `ready` after write `prefill`, stops at `stop` and prints the
/// last n written.
const STAMP_WRITER: &str = r#"
addr, ready, stop, export = sys.argv[1:5]
bs, blocks, prefill = (int(x) for x in sys.argv[5:8])
h = connect(addr, export)
n = 0
while True:
    n += 1
    h.pwrite(stamp(n, bs), ((n * 7919) % blocks) * bs)
    if n == prefill:
        open(ready, 'w').close()
    if n > prefill and n % 8 == 0 and os.path.exists(stop):
        break
h.flush()
h.shutdown()
print(n)
"#;

#[test]
fn copy_backup_while_a_host_writes_equals_the_point_in_time() {
    require!("python3-nbd", "qemu-img");
    let tmp = tempdir();
    let dir = tmp.path();
    let d = Daemon::start();
    d.arca(&["volume", "create", "src", "--size", "32M"]).ok();
    // Half the blocks written before the backup, then the host keeps writing through it.
    let prefill = BLOCKS / 2;
    let (writer, stop) = Host::start_writer(
        dir,
        STAMP_WRITER,
        &d.nbd,
        &[
            "src",
            &BLOCK.to_string(),
            &BLOCKS.to_string(),
            &prefill.to_string(),
        ],
    );
    let created = d.json(&["backup", "create", "src", "--method", "copy"]);
    let written = writer.stop_writer(&stop);

    let b = &created["backups"][0];
    assert_eq!(b["status"], "complete", "{created:#}");
    assert_eq!(b["method"], "copy");
    assert_eq!(b["destination"]["kind"], "volume");
    let dest = b["destination"]["volume"].as_str().unwrap().to_string();
    let id = id_of(b);
    assert_eq!(dest, format!("backup-{id}"));

    let copy = image(&d, &dest, dir);
    assert_eq!(copy.len() as u64, BLOCKS * BLOCK);
    let m = (0..BLOCKS).map(|k| u64_at(&copy, k * BLOCK)).max().unwrap();
    assert!(
        m >= prefill,
        "the copy lacks writes that completed before the backup: newest stamp {m}"
    );
    assert!(
        m < written,
        "the host wrote nothing after the point in time ({m} of {written}): no concurrency"
    );
    let want = state_after(m);
    if let Some(k) = (0..BLOCKS as usize).find(|&k| {
        let r = k * BLOCK as usize..(k + 1) * BLOCK as usize;
        copy[r.clone()] != want[r]
    }) {
        panic!(
            "the copy is not the image after write {m} ({written} written): block {k} holds \
             stamp {}, want {}",
            u64_at(&copy, k as u64 * BLOCK),
            u64_at(&want, k as u64 * BLOCK)
        );
    }
    // Its digest was taken from the same image.
    let out = d.arca(&["backup", "verify", &id.to_string()]).ok();
    assert_eq!(out.stdout, format!("backup {id}: ok\n"));
    d.stop();
}

// ---------------------------------------------------------------------------------------------
// 2. A backup set is one instant.

/// The daemon's backup clock (`--test-clock-file`) as a FIFO a thread feeds: every read of
/// it gets the next millisecond (from 2030-01-01), so no two reads give the same time and
/// whatever reads the clock twice where it means one instant shows it. Should a slow read ever
/// get two values at once, the daemon falls back to its system clock (years away): still
/// another time. Stopped when dropped: drop it after the daemon that reads it.
struct TickingClock {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TickingClock {
    fn new(dir: &Path) -> TickingClock {
        use std::os::unix::ffi::OsStrExt;
        let path = dir.join("clock");
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut t: u64 = 1_893_456_000_000;
                while !stop.load(Ordering::SeqCst) {
                    // Blocks until a reader opens the FIFO.
                    let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) else {
                        break;
                    };
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let _ = writeln!(f, "{t}");
                    drop(f);
                    t += 1;
                    // Time for the reader to see the end of its value and close, so that the
                    // next value goes to the next reader.
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        TickingClock {
            path,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TickingClock {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        self.stop.store(true, Ordering::SeqCst);
        // A reader of our own, held until the thread ends, unblocks its open.
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes the counter i = 1, 2, ... to offset 0 of each export in turn (one connection each,
/// each write answered before the next); `ready` after the first round; prints the last i.
const SET_WRITER: &str = r#"
addr, ready, stop = sys.argv[1:4]
hs = [connect(addr, e) for e in sys.argv[4:]]
i = 0
while not os.path.exists(stop):
    i += 1
    buf = stamp(i, 4096)
    for h in hs:
        h.pwrite(buf, 0)
    if i == 1:
        open(ready, 'w').close()
for h in hs:
    h.flush()
    h.shutdown()
print(i)
"#;

/// Prints the u64 at offset 0 of each export.
const READ_COUNTERS: &str = r#"
addr = sys.argv[1]
vals = []
for e in sys.argv[2:]:
    h = connect(addr, e)
    vals.append(str(struct.unpack('<Q', h.pread(8, 0))[0]))
    h.shutdown()
print(' '.join(vals))
"#;

#[test]
fn backup_set_of_three_volumes_is_one_instant() {
    require!("python3-nbd");
    let tmp = tempdir();
    let dir = tmp.path();
    let clock = TickingClock::new(dir);
    let d = Daemon::start_with_args(&["--test-clock-file", clock.path.to_str().unwrap()]);
    for v in ["a", "b", "c"] {
        d.arca(&["volume", "create", v, "--size", "16M"]).ok();
    }
    let (writer, stop) = Host::start_writer(dir, SET_WRITER, &d.nbd, &["a", "b", "c"]);
    let mut sets = Vec::new();
    for _ in 0..6 {
        sets.push(d.json(&["backup", "create", "a", "b", "c", "--label", "instant"]));
        std::thread::sleep(Duration::from_millis(20));
    }
    let last = writer.stop_writer(&stop);

    let mut seen = Vec::new();
    let mut split_times = Vec::new();
    for created in &sets {
        let set = created["set_id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no set id: {created:#}"));
        let backups = created["backups"].as_array().unwrap();
        let names: Vec<&str> = backups
            .iter()
            .map(|b| b["source"]["volume_name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"], "{created:#}");
        for b in backups {
            assert_eq!(b["set_id"], set, "{created:#}");
            assert_eq!(b["method"], "snapshot");
            // Checked last: the data decides whether the set is one instant.
            if b["point_in_time"] != backups[0]["point_in_time"] {
                split_times.push(format!(
                    "set {set}: backup {} of {} at {}, backup {} of a at {}",
                    b["id"],
                    b["source"]["volume_name"],
                    b["point_in_time"],
                    backups[0]["id"],
                    backups[0]["point_in_time"]
                ));
            }
        }
        let exports: Vec<&str> = backups
            .iter()
            .map(|b| b["destination"]["export"].as_str().unwrap())
            .collect();
        let mut args = vec![d.nbd.as_str()];
        args.extend(&exports);
        let vals: Vec<u64> = python(READ_COUNTERS, &args)
            .stdout
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let (a, b, c) = (vals[0], vals[1], vals[2]);
        assert!(
            a >= 1 && a >= b && b >= c && c + 1 >= a,
            "set {set} is not one instant: a={a} b={b} c={c} (exports {exports:?})"
        );
        assert!(a <= last);
        seen.push(a);
        // The catalog knows the set.
        let listed = d.json(&["backup", "list", "--set", &set.to_string()]);
        let mut got = ids(&listed);
        got.sort();
        let mut want: Vec<u64> = backups.iter().map(id_of).collect();
        want.sort();
        assert_eq!(got, want, "backup list --set {set}");
        for b in listed["backups"].as_array().unwrap() {
            assert_eq!(b["set_id"], set);
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]) && seen[0] < seen[seen.len() - 1],
        "the host must have been writing between the sets: {seen:?}"
    );
    // The records of one set state one point in time.
    assert!(
        split_times.is_empty(),
        "records of one backup set state different points in time:\n{}",
        split_times.join("\n")
    );
    d.stop();
}

// ---------------------------------------------------------------------------------------------
// 3. Restores: in place with an undo point, undone, as a new volume, and refused while a host
//    is connected unless forced.

/// Connects to an export, creates `ready`, then reads every 50 ms: prints DISCONNECTED when
/// the server closes the connection, STILL-CONNECTED (exit 3) after 30 s.
const HOLDER: &str = r#"
addr, export, ready = sys.argv[1:4]
h = connect(addr, export)
h.pread(512, 0)
open(ready, 'w').close()
deadline = time.time() + 30
while time.time() < deadline:
    try:
        h.pread(512, 0)
    except nbd.Error as e:
        print('DISCONNECTED', e)
        sys.exit(0)
    time.sleep(0.05)
print('STILL-CONNECTED')
sys.exit(3)
"#;

/// `restored backup ID into VOL` then `undo point: backup U (...)`: U.
fn undo_point(out: &Out, id: u64, volume: &str) -> u64 {
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("restored backup {id} into {volume}").as_str()),
        "{}",
        out.describe()
    );
    let undo: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("undo point: backup "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no undo point:\n{}", out.describe()));
    undo
}

#[test]
fn restore_in_place_with_undo_point_and_restore_as_new() {
    require!("python3-nbd", "qemu-io", "qemu-img");
    let tmp = tempdir();
    let dir = tmp.path();
    let d = Daemon::start();
    d.arca(&["volume", "create", "v", "--size", "16M"]).ok();
    qemu_io(&d, "v", &["write -P 0xa1 0 1M", "write -P 0xa2 8M 64k"]);
    let orig = image(&d, "v", dir);
    let id = id_of(&d.json(&["backup", "create", "v", "--label", "before"])["backups"][0]);
    let id_s = id.to_string();
    // Changed: overwritten, newly written, and trimmed where the backup has data.
    qemu_io(
        &d,
        "v",
        &[
            "write -P 0xb1 512k 1M",
            "write -P 0xb2 12M 64k",
            "discard 8M 64k",
        ],
    );
    let changed = image(&d, "v", dir);
    assert_ne!(orig, changed);

    // In place: the backup's content is back, and an undo point holds what was replaced.
    let out = while_connected(|| d.arca(&["restore", &id_s, "--to", "v"])).ok();
    let undo = undo_point(&out, id, "v");
    assert_same("v after restore", &image(&d, "v", dir), &orig);
    let pre = d.json(&["backup", "list", "--label", "pre-restore"]);
    assert_eq!(ids(&pre), [undo], "{pre:#}");
    let u = &pre["backups"][0];
    assert_eq!(u["method"], "snapshot");
    assert_eq!(u["source"]["volume_name"], "v");
    assert_eq!(u["status"], "complete");
    let undo_export = u["destination"]["export"].as_str().unwrap().to_string();
    assert_eq!(undo_export, format!("v@backup-{undo}"));
    assert_same("the undo point", &image(&d, &undo_export, dir), &changed);

    // Undone: the changed content is back.
    let out = while_connected(|| d.arca(&["restore", &undo.to_string(), "--to", "v"])).ok();
    undo_point(&out, undo, "v");
    assert_same(
        "v after undoing the restore",
        &image(&d, "v", dir),
        &changed,
    );

    // As a new volume: the backed-up content, the source untouched.
    let out = d.arca(&["restore", &id_s, "--as", "copy1"]).ok();
    assert_eq!(
        out.stdout,
        format!("restored backup {id} into new volume copy1\n")
    );
    assert_eq!(d.json(&["volume", "show", "copy1"])["size"], 16 * MIB);
    assert_same("copy1", &image(&d, "copy1", dir), &orig);
    assert_same("v after restoring as new", &image(&d, "v", dir), &changed);

    // A host holds a connection to v: refused, naming it; nothing changed.
    let ready = dir.join("ready");
    let mut holder = Host::python(
        dir,
        "holder",
        HOLDER,
        &[&d.nbd, "v", ready.to_str().unwrap()],
    );
    holder.wait_for_file(&ready, Duration::from_secs(20));
    let err = d.arca(&["restore", &id_s, "--to", "v"]).error_line();
    assert!(
        err.contains("host connection") && err.contains("127.0.0.1:") && err.contains("with force"),
        "{err}"
    );
    let pre_count = ids(&d.json(&["backup", "list", "--label", "pre-restore"])).len();
    assert_eq!(pre_count, 2, "a refused restore takes no undo point");
    assert_same("v after a refused restore", &image(&d, "v", dir), &changed);
    // Forced: the host is disconnected and the restore happens.
    let out = d.arca(&["restore", &id_s, "--to", "v", "--force"]).ok();
    undo_point(&out, id, "v");
    let held = holder.finish(Duration::from_secs(15));
    assert!(
        held.status.success() && held.stdout.starts_with("DISCONNECTED"),
        "the host's connection was not closed:\n{}",
        held.describe()
    );
    assert_same("v after the forced restore", &image(&d, "v", dir), &orig);
    // The history says where the backup went.
    let h = d.json(&["backup", "show", &id_s])["history"].clone();
    let restored: Vec<&Value> = h
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["type"] == "restored")
        .map(|e| &e["event"])
        .collect();
    assert_eq!(
        restored,
        [
            &serde_json::json!({"type": "restored", "to": "v", "in_place": true, "from": "array"}),
            &serde_json::json!({"type": "restored", "to": "copy1", "in_place": false, "from": "array"}),
            &serde_json::json!({"type": "restored", "to": "v", "in_place": true, "from": "array"}),
        ],
        "{h:#}"
    );
    d.arca(&["catalog", "check"]).ok();
    d.stop();
}

// ---------------------------------------------------------------------------------------------
// 4. Verification finds bytes corrupted behind the array's back.

/// Writes the file argv[3] at offset argv[4] of an export, then flushes.
const WRITE_FILE: &str = r#"
addr, export, path, offset = sys.argv[1:5]
h = connect(addr, export)
h.pwrite(open(path, 'rb').read(), int(offset))
h.flush()
h.shutdown()
"#;

/// Every offset where `needle` occurs in `hay`.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    let first = needle[0];
    (0..=hay.len() - needle.len())
        .filter(|&i| hay[i] == first && hay[i..i + needle.len()] == *needle)
        .collect()
}

#[test]
fn verify_catches_bytes_corrupted_in_the_device_file() {
    require!("python3-nbd");
    let tmp = tempdir();
    let dir = tmp.path();
    let dev = dir.join("device.img");
    let dev_s = dev.to_str().unwrap();
    let d = Daemon::serve(&["--device", dev_s, "--create", "--size", "256M"]);
    d.arca(&["volume", "create", "v", "--size", "16M"]).ok();
    // 1 MiB of a distinctive pattern at 4 MiB.
    let base = 4 * MIB;
    let pattern = random_bytes(0x5eed, MIB as usize);
    let pfile = dir.join("pattern");
    std::fs::write(&pfile, &pattern).unwrap();
    python(
        WRITE_FILE,
        &[&d.nbd, "v", pfile.to_str().unwrap(), &base.to_string()],
    );
    let created = d.json(&["backup", "create", "v"]);
    let id = id_of(&created["backups"][0]);
    let id_s = id.to_string();
    // Good before the damage (this also waits for its digest).
    let out = d.arca(&["backup", "verify", &id_s]).ok();
    assert_eq!(out.stdout, format!("backup {id}: ok\n"));

    // Find a piece of the pattern in the device file (once: the snapshot shares the volume's
    // extents) and flip a few bytes of it in place, the daemon running.
    let window = 327_680 + 4096; // inside the pattern's sixth extent
    let needle = &pattern[window..window + 4096];
    let file = std::fs::read(&dev).unwrap();
    let hits = find_all(&file, needle);
    assert_eq!(
        hits.len(),
        1,
        "the pattern's piece should be in the device file once: at {hits:?}"
    );
    drop(file);
    let (flip_at, flip_len) = (100u64, 8usize);
    let physical = hits[0] as u64 + flip_at;
    let logical = base + window as u64 + flip_at;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
        let bad: Vec<u8> = needle[flip_at as usize..][..flip_len]
            .iter()
            .map(|b| !b)
            .collect();
        f.write_all_at(&bad, physical).unwrap();
        f.sync_all().unwrap();
    }

    // Verify: exit 1, the damaged range is the extent holding the corrupted bytes.
    let extent = logical / EXTENT * EXTENT;
    let out = d.arca(&["backup", "verify", &id_s]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(
        out.stdout,
        format!(
            "backup {id}: DAMAGED, 64.0K (65536 bytes) in 1 range: {extent}..{}\n",
            extent + EXTENT
        ),
        "corrupted logical offset {logical}:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("failed verification"),
        "{}",
        out.describe()
    );
    let b = d.json(&["backup", "show", &id_s]);
    assert_eq!(b["verified"], false, "{b:#}");
    let last = b["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["event"],
        serde_json::json!({
            "type": "verified", "ok": false, "damaged": [[extent, EXTENT]], "damaged_ranges": 1
        }),
        "{b:#}"
    );
    let text = d.arca(&["backup", "show", &id_s]).ok().stdout;
    assert!(
        text.contains(&format!(
            "verified: DAMAGED, 1 range (bytes {extent}..{})",
            extent + EXTENT
        )),
        "{text}"
    );
    d.stop();
}

// ---------------------------------------------------------------------------------------------
// 5. The array dies in the middle of a copy backup.

#[test]
fn kill_during_copy_backup_then_restart() {
    require!("qemu-io");
    let (_tmp, dev_s) = device_in_tempdir();
    let mut d = Daemon::serve_new_device(&dev_s, "2G");
    d.arca(&["volume", "create", "v", "--size", "256M"]).ok();
    qemu_io(&d, "v", &["write -P 0x5a 0 256M"]);
    d.arca(&["backup", "create", "v", "--label", "before"]).ok();

    // Start a copy and kill -9 the daemon while its job runs (retried if it was too fast).
    let mut caught = None;
    for _attempt in 0..3 {
        let created = d.json(&["backup", "create", "v", "--method", "copy", "--no-wait"]);
        let b = &created["backups"][0];
        let (id, job) = (id_of(b), created["jobs"][0].as_u64().unwrap());
        let dest = b["destination"]["volume"].as_str().unwrap().to_string();
        assert_eq!(b["destination"]["created"], true);
        let j = d.json(&["job", "show", &job.to_string()]);
        let running = j["state"] == "running"
            && j["kind"] == "backup-copy"
            && j["bytes_done"].as_u64() < j["bytes_total"].as_u64();
        if !running {
            eprintln!("the copy was done before the kill: {j}");
            d.arca(&["job", "wait", &job.to_string()]).ok();
            continue;
        }
        let log = d.kill();
        assert!(!log.contains("panicked"), "{log}");
        caught = Some((id, dest, j));
        d = Daemon::serve(&["--device", &dev_s]);
        break;
    }
    let (id, dest, j) = caught.expect("the copy was never caught running: make the volume bigger");
    eprintln!("killed during the copy: {j}");

    // After the restart: failed with a reason, no debris, everything consistent.
    let list = d.json(&["backup", "list"]);
    let b = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("backup {id} is not listed: {list:#}"));
    assert_eq!(b["status"], "failed", "{b:#}");
    let reason = b["status_reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "a failed backup says why: {b:#}");
    assert!(b["destination"]["export"].is_null(), "{b:#}");
    assert!(b["job"].is_null(), "{b:#}");
    for other in list["backups"].as_array().unwrap() {
        assert!(
            other["status"] == "complete" || other["id"] == id,
            "only the interrupted copy failed: {list:#}"
        );
    }
    let volumes = d.json(&["volume", "list"]);
    let names = strs(&volumes, "name");
    assert!(
        !names.contains(&dest.as_str()),
        "the copy's volume {dest} remains: {names:?}"
    );
    let snaps = d.json(&["snapshot", "list", "v"]);
    let pit = format!("backup-{id}-pit");
    assert!(
        !snaps
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == pit.as_str()),
        "the copy's point-in-time snapshot remains: {snaps:#}"
    );
    let out = d.arca(&["pool", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    let out = d.arca(&["catalog", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    // The array is usable: a new copy completes.
    let again = d.json(&["backup", "create", "v", "--method", "copy"]);
    assert_eq!(again["backups"][0]["status"], "complete", "{again:#}");
    d.stop();
}

// ---------------------------------------------------------------------------------------------
// 6. The catalog rebuilt from the destinations' descriptors.

#[test]
fn catalog_rebuild_after_the_catalog_tables_are_dropped() {
    require!("qemu-io");
    let (_tmp, dev_s) = device_in_tempdir();
    let d = Daemon::serve_new_device(&dev_s, "512M");
    for (v, p) in [("a", "0x11"), ("b", "0x22"), ("c", "0x33")] {
        d.arca(&["volume", "create", v, "--size", "16M"]).ok();
        qemu_io(&d, v, &[&format!("write -P {p} 0 256k")]);
    }
    // A snapshot with every kind of host information, a copy, a set, a held one.
    d.arca(
        &[
            &["backup", "create", "a"][..],
            HOST_INFO_ARGS,
            &["--keep-for", "30d"],
        ]
        .concat(),
    )
    .ok();
    d.arca(&[
        "backup", "create", "a", "--method", "copy", "--label", "weekly", "--host", "db1",
    ])
    .ok();
    d.arca(&[
        "backup", "create", "b", "c", "--label", "set", "--meta", "group=bc",
    ])
    .ok();
    let held = id_of(
        &d.json(&[
            "backup",
            "create",
            "c",
            "--hold",
            "--lock-until",
            "2999-01-01",
        ])["backups"][0],
    );
    // History on every record: a verification of all, and a retention change.
    d.arca(&["backup", "verify", "--all"]).ok();
    d.arca(&["backup", "retain", &held.to_string(), "--keep-for", "7d"])
        .ok();
    let before = d.json(&["backup", "list"]);
    let n = ids(&before).len();
    assert_eq!(n, 5, "{before:#}");
    for b in before["backups"].as_array().unwrap() {
        assert_eq!(b["status"], "complete", "{b:#}");
        assert!(b["digest"].is_object() && b["job"].is_null(), "{b:#}");
    }
    assert_eq!(d.json(&["catalog", "check"])["clean"], true);
    let old_nbd = d.nbd.clone();
    d.stop();

    // Offline: every catalog table emptied in one transaction.
    {
        let pool = arca_store::Pool::open_paths(&[std::path::Path::new(&dev_s)])
            .expect("opening the pool");
        let mut t = pool.transaction();
        for table in arca_backup::catalog::CATALOG_TABLES {
            t.clear(table);
        }
        t.commit().expect("clearing the catalog");
        pool.close().expect("closing the pool");
    }

    let d = Daemon::serve(&["--device", &dev_s]);
    assert_eq!(ids(&d.json(&["backup", "list"])), Vec::<u64>::new());
    // Until the rebuild, the check names every destination the catalog lost...
    let out = d.arca(&["catalog", "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("orphan-destination "))
            .count(),
        n,
        "{}",
        out.describe()
    );
    // ...and those destinations, which still carry their descriptors, stay protected: the copy
    // read-only to hosts, the snapshots not deletable. (Checked without writing or deleting;
    // asserted at the end so that the rebuild is checked either way.)
    let mut unprotected = Vec::new();
    let copy_dest = before["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["method"] == "copy")
        .unwrap()["destination"]["volume"]
        .as_str()
        .unwrap()
        .to_string();
    let exports = d.json(&["export", "list"]);
    let e = find(&exports, "name", &copy_dest);
    if e["read_only"] != true {
        unprotected.push(format!(
            "the copy backup's volume {copy_dest} is exported read-write: {e}"
        ));
    }
    let err = d.arca(&["volume", "delete", "a"]).error_line();
    if !err.contains("protected") {
        unprotected.push(format!(
            "volume a's backup snapshot is not protected; deleting a says: {err}"
        ));
    }
    let out = d.arca(&["catalog", "rebuild"]).ok();
    assert_eq!(
        out.stdout,
        format!(
            "catalog rebuilt: {n} records from the destinations' descriptors, 0 kept as history\n"
        ),
        "{}",
        out.describe()
    );
    let after = d.json(&["backup", "list"]);
    // The same records; only the NBD address in the URIs is the new daemon's.
    let want: Value = serde_json::from_str(&before.to_string().replace(&old_nbd, &d.nbd)).unwrap();
    assert_eq!(after, want, "the rebuilt catalog differs");
    // The indexes are back: each filter finds exactly the records that match it.
    let field = |b: &Value, path: &[&str]| path.iter().fold(b.clone(), |v, k| v[*k].clone());
    for (filter, value, path) in [
        ("--label", "nightly", &["info", "label"][..]),
        ("--host", "db1", &["info", "host"]),
        ("--app", "postgres", &["info", "application"]),
        ("--meta", "group=bc", &["info", "meta", "group"]),
        ("--volume", "c", &["source", "volume_name"]),
    ] {
        let got = ids(&d.json(&["backup", "list", filter, value]));
        let matching = value.rsplit('=').next().unwrap();
        let want: Vec<u64> = after["backups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| field(b, path) == matching)
            .map(id_of)
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want, "backup list {filter} {value} after the rebuild");
    }
    let out = d.arca(&["catalog", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    let exports = d.json(&["export", "list"]);
    let e = find(&exports, "name", &copy_dest);
    assert_eq!(e["read_only"], true, "after the rebuild: {e}");
    let err = d
        .arca(&["backup", "delete", &held.to_string()])
        .error_line();
    assert!(
        err.contains("hold") && err.contains(&held.to_string()),
        "{err}"
    );
    // Generations go on from the rebuilt catalog.
    let newest_a = after["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["source"]["volume_name"] == "a")
        .map(|b| b["generation"].as_u64().unwrap())
        .max()
        .unwrap();
    let next = d.json(&["backup", "create", "a"]);
    assert_eq!(next["backups"][0]["generation"], newest_a + 1, "{next:#}");
    d.stop();
    assert!(
        unprotected.is_empty(),
        "with the catalog lost (before the rebuild), destinations of live backups lost their \
         protection:\n{}",
        unprotected.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Every protection refuses deletion, through the CLI.

/// Connects to an export that must be read-only and sends a write anyway (libnbd's own check
/// off): the server must refuse it with EPERM.
const WRITE_REFUSED: &str = r#"
addr, export = sys.argv[1:3]
h = connect(addr, export)
assert h.is_read_only(), 'the export is not advertised read-only'
h.set_strict_mode(0)
try:
    h.pwrite(b'\x01' * 4096, 0)
except nbd.Error as e:
    assert e.errnum == errno.EPERM, 'want EPERM, got %s (%s)' % (e.errnum, e.string)
    print('REFUSED', e.string)
else:
    raise AssertionError('the write succeeded')
"#;

#[test]
fn delete_refused_under_each_protection() {
    require!("python3-nbd", "qemu-io");
    let d = Daemon::start();
    d.arca(&["volume", "create", "v", "--size", "16M"]).ok();
    qemu_io(&d, "v", &["write -P 0x77 0 128k"]);
    let create = |args: &[&str]| {
        let mut full = vec!["backup", "create", "v"];
        full.extend(args);
        id_of(&d.json(&full)["backups"][0]).to_string()
    };

    // A hold: refused, naming the hold, forced or not.
    let held = create(&["--hold"]);
    let err = d.arca(&["backup", "delete", &held]).error_line();
    assert!(err.contains("hold") && err.contains(&held), "{err}");
    let err = d.arca(&["backup", "delete", &held, "--force"]).error_line();
    assert!(err.contains("hold"), "{err}");

    // Kept until a future time: refused, then forced.
    let kept = create(&["--keep-until", "2999-01-01"]);
    let err = d.arca(&["backup", "delete", &kept]).error_line();
    assert!(
        err.contains("kept until") && err.contains("with force"),
        "{err}"
    );
    let out = d.arca(&["backup", "delete", &kept, "--force"]).ok();
    assert!(
        out.stdout.starts_with(&format!("deleted backup {kept} ")),
        "{}",
        out.stdout
    );

    // A retention lock: refused even forced; it can only be extended.
    let locked = create(&["--lock-until", "2999-01-01"]);
    for force in [false, true] {
        let mut args = vec!["backup", "delete", &locked];
        if force {
            args.push("--force");
        }
        let err = d.arca(&args).error_line();
        assert!(err.contains("locked until"), "{err}");
    }
    let err = d
        .arca(&["backup", "retain", &locked, "--lock-until", "2998-01-01"])
        .error_line();
    assert!(err.contains("only be extended"), "{err}");
    let b = d.json(&["backup", "show", &locked]);
    assert_eq!(b["retention"]["lock_until"], "2999-01-01T00:00:00.000Z");
    assert_eq!(b["status"], "complete");

    // A snapshot backup's destination is not deletable as a snapshot, nor with its volume.
    let err = d
        .arca(&["snapshot", "delete", &format!("v@backup-{held}")])
        .error_line();
    assert!(err.contains(&format!("backup {held}")), "{err}");
    let err = d
        .arca(&["volume", "delete", "v", "--with-snapshots"])
        .error_line();
    assert!(
        err.contains(&format!("backup {held}")) || err.contains(&format!("backup {locked}")),
        "{err}"
    );

    // A copy backup's volume: read-only to hosts, not deletable.
    let created = d.json(&["backup", "create", "v", "--method", "copy"]);
    let copy = id_of(&created["backups"][0]).to_string();
    let dest = created["backups"][0]["destination"]["volume"]
        .as_str()
        .unwrap()
        .to_string();
    let out = qemu_io_run(&d, &dest, &["write -P 0x01 0 4k"]);
    assert!(
        !out.status.success() && !out.stdout.contains("wrote "),
        "a host wrote into a backup's copy:\n{}",
        out.describe()
    );
    // The export says read-only, and a write sent anyway gets EPERM from the server.
    let out = python(WRITE_REFUSED, &[&d.nbd, &dest]);
    assert!(out.stdout.starts_with("REFUSED"), "{}", out.describe());
    qemu_io(&d, &dest, &["read -P 0x77 0 128k"]);
    let err = d.arca(&["volume", "delete", &dest]).error_line();
    assert!(err.contains(&format!("backup {copy}")), "{err}");
    let err = d
        .arca(&["volume", "resize", &dest, "--size", "32M"])
        .error_line();
    assert!(err.contains(&format!("backup {copy}")), "{err}");

    // Every refusal left everything in place.
    let list = d.json(&["backup", "list", "--status", "complete"]);
    let mut live = ids(&list);
    live.sort();
    let mut want: Vec<u64> = [&held, &locked, &copy]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    want.sort();
    assert_eq!(live, want, "{list:#}");
    assert_eq!(d.json(&["catalog", "check"])["clean"], true);
    d.stop();
}

/// Issue 11, item 9: a clock that ran a day ahead is corrected; `prune --keep-last 1` keeps
/// the backup taken after the correction (the newest id and data, the earlier point in
/// time), and `backup show` says the clock stepped back.
#[test]
fn prune_keeps_the_newest_backup_after_the_clock_steps_back() {
    require!("qemu-io");
    let dir = tempdir();
    let clock = dir.path().join("clock");
    let set_clock = |ms: u64| std::fs::write(&clock, ms.to_string()).unwrap();
    // 2026-03-02T00:00:00Z, a day ahead of the true 2026-03-01.
    let ahead_ms = 1_772_409_600_000;
    set_clock(ahead_ms);
    let d = Daemon::start_with_args(&["--test-clock-file", clock.to_str().unwrap()]);
    d.arca(&["volume", "create", "v", "--size", "16M"]).ok();
    qemu_io(&d, "v", &["write -P 0x61 0 64k"]);
    let old = id_of(&d.json(&["backup", "create", "v"])["backups"][0]);
    set_clock(ahead_ms - 24 * 3_600_000 + 60_000);
    qemu_io(&d, "v", &["write -P 0x62 0 64k"]);
    let new = id_of(&d.json(&["backup", "create", "v"])["backups"][0]);
    assert!(new > old, "ids grow when the clock steps back");

    let b = d.json(&["backup", "show", &new.to_string()]);
    assert_eq!(b["point_in_time"], "2026-03-01T00:01:00.000Z", "{b:#}");
    assert_eq!(b["clock_stepped_back"], true, "{b:#}");
    assert_eq!(b["previous_point_in_time"], "2026-03-02T00:00:00.000Z");
    let shown = d.arca(&["backup", "show", &new.to_string()]).ok().stdout;
    assert!(
        shown.contains(
            "2026-03-01T00:01:00.000Z (earlier than generation 1's 2026-03-02T00:00:00.000Z: \
             the clock was moved back)"
        ),
        "{shown}"
    );
    let b = d.json(&["backup", "show", &old.to_string()]);
    assert_eq!(b["clock_stepped_back"], false, "{b:#}");
    assert_eq!(b["previous_point_in_time"], Value::Null);

    let report = d.json(&["backup", "prune", "--volume", "v", "--keep-last", "1"]);
    let kept: Vec<u64> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["keep"] == true)
        .map(|i| i["backup"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, vec![new], "{report:#}");
    assert_eq!(
        d.json(&["backup", "show", &old.to_string()])["status"],
        "deleted"
    );
    qemu_io(&d, &format!("v@backup-{new}"), &["read -P 0x62 0 64k"]);
    assert_eq!(d.json(&["catalog", "check"])["clean"], true);
    d.stop();
}
