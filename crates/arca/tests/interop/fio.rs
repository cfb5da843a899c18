//! fio's NBD engine (libnbd): two connections writing at random with crc32c verification.

use std::process::Command;

use crate::require;
use crate::util::{Daemon, MIB, json, run_cmd};

#[test]
fn fio_randwrite_verify_two_connections() {
    require!("fio");
    let d = Daemon::with_volumes(&["vol=128M"]);
    let mut cmd = Command::new("fio");
    // Each job writes its own 64 MiB (offset_increment) so the two do not overwrite each other's
    // verification headers; runtime bounds the run on a slow machine.
    cmd.current_dir(d.dir()).args([
        "--name=arca",
        "--ioengine=nbd",
        &format!("--uri={}", d.uri("vol")),
        "--rw=randwrite",
        "--bs=4k",
        "--size=64m",
        "--offset_increment=64m",
        "--numjobs=2",
        "--iodepth=16",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--runtime=90",
        "--output-format=json",
    ]);
    let out = run_cmd(cmd).ok();
    assert!(
        !out.stderr.contains("verify") && !out.stdout.contains("verify:"),
        "verification errors:\n{}",
        out.describe()
    );
    // fio prints connection notices before the JSON document.
    let doc = &out.stdout[out.stdout.find('{').expect("fio JSON output")..];
    let v = json(doc);
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{}", out.describe());
    for job in jobs {
        assert_eq!(job["error"].as_u64().unwrap(), 0, "{}", out.describe());
        let written = job["write"]["io_bytes"].as_u64().unwrap();
        let verified = job["read"]["io_bytes"].as_u64().unwrap();
        assert_eq!(written, 64 * MIB, "{}", out.describe());
        assert_eq!(
            verified, written,
            "every written block read back and verified"
        );
    }
    d.stop();
}
