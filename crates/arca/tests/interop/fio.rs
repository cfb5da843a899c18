//! fio's NBD engine (libnbd): two connections writing at random with crc32c verification,
//! in clear and over TLS.

use std::path::Path;
use std::process::Command;

use crate::require;
use crate::util::{Daemon, MIB, json, run_cmd};

#[test]
fn fio_randwrite_verify_two_connections() {
    require!("fio");
    let d = Daemon::with_volumes(&["vol=128M"]);
    fio_randwrite_verify(&d, &d.uri("vol"), 64, None);
    d.stop();
}

/// fio on `uri`: two jobs, each writing its own `mib_per_job` MiB at random and reading every
/// block back with crc32c verification. `home`: the client's `$HOME` (libnbd finds TLS
/// credentials in `$HOME/.pki/libnbd`).
pub fn fio_randwrite_verify(d: &Daemon, uri: &str, mib_per_job: u64, home: Option<&Path>) {
    let mut cmd = Command::new("fio");
    if let Some(h) = home {
        cmd.env("HOME", h);
    }
    // Each job writes its own range (offset_increment) so the two do not overwrite each other's
    // verification headers; runtime bounds the run on a slow machine.
    cmd.current_dir(d.dir()).args([
        "--name=arca",
        "--ioengine=nbd",
        &format!("--uri={uri}"),
        "--rw=randwrite",
        "--bs=4k",
        &format!("--size={mib_per_job}m"),
        &format!("--offset_increment={mib_per_job}m"),
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
        assert_eq!(written, mib_per_job * MIB, "{}", out.describe());
        assert_eq!(
            verified, written,
            "every written block read back and verified"
        );
    }
}
