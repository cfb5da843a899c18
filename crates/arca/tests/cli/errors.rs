//! Exit statuses and messages: usage errors exit 2 before any request, API errors and an
//! unreachable daemon exit 1 with one `error:` line.

use crate::util::{Daemon, arca, assert_help, assert_usage_error, closed_url};

/// Usage errors must not depend on a daemon: the API URL given here answers nothing, so a
/// command that got as far as a request would exit 1, not 2.
#[test]
fn usage_errors_exit_2() {
    let api = closed_url();
    let cases: &[(&[&str], &str)] = &[
        (&["frobnicate"], "frobnicate"),
        (&["volume"], "Usage"),
        (&["volume", "frobnicate"], "frobnicate"),
        (&["volume", "create"], "NAME"),
        (&["volume", "create", "v"], "--size"),
        (&["volume", "create", "v", "--size"], "--size"),
        (&["volume", "create", "v", "--size", "-1"], "negative"),
        (&["volume", "create", "v", "--size", "10X"], "10X"),
        (
            &["volume", "create", "v", "--size", "99999999T"],
            "too large",
        ),
        (&["volume", "create", "v", "--size", "1.5G"], "1.5G"),
        (
            &["volume", "create", "v", "--size", "1G", "--device", "x"],
            "--device",
        ),
        (&["volume", "resize", "v", "--size", "-5G"], "negative"),
        (&["volume", "rename", "v"], "NEW"),
        (&["snapshot", "delete", "novolume"], "VOLUME@SNAPSHOT"),
        (&["snapshot", "delete", "vol@"], "VOLUME@SNAPSHOT"),
        (&["clone", "vol@snap"], "NAME"),
        (&["clone", "vol", "new"], "VOLUME@SNAPSHOT"),
        (&["job", "show", "notanumber"], "notanumber"),
        (&["job", "wait"], "ID"),
        (&["pool", "check", "--frobnicate"], "--frobnicate"),
        (&["volume", "list", "--api", "ftp://host"], "ftp"),
        // Client options before `serve` mean nothing to the daemon.
        (&["--json", "serve"], "serve"),
    ];
    for (args, want) in cases {
        let mut full: Vec<&str> = args.to_vec();
        if !args.contains(&"--api") && args != &["--json", "serve"] {
            full.extend(["--api", &api]);
        }
        assert_usage_error(&full, want);
    }
    // Help is not an error, and each level keeps its own description.
    assert_help(&[], "A software disk array", &[]);
    assert_help(
        &["volume"],
        "Create, list, show",
        &[
            "create", "list", "show", "resize", "rename", "delete", "--json", "--api",
        ],
    );
}

#[test]
fn unreachable_daemon_is_one_error_line() {
    let api = closed_url();
    let err = arca(&["volume", "list", "--api", &api]).error_line();
    assert!(
        err.contains("could not be reached") && err.contains(&api),
        "{err}"
    );
    // From the environment too, and the same with --json.
    let mut cmd = crate::util::arca_cmd();
    cmd.args(["--json", "pool", "status"]).env("ARCA_API", &api);
    let err = crate::util::run_cmd(cmd).error_line();
    assert!(
        err.contains("could not be reached") && err.contains(&api),
        "{err}"
    );
}

#[test]
fn api_errors_exit_1_with_the_api_message() {
    let d = Daemon::start();
    d.arca(&["volume", "create", "dup", "--size", "1G"]).ok();

    // Each refused with one line naming the object; `setup` runs first (the order matters).
    let cases: &[(&[&str], &[&str], &str)] = &[
        (&[], &["volume", "show", "nosuch"], "nosuch"),
        (&[], &["volume", "show", "nosuch", "--json"], "nosuch"),
        (&[], &["volume", "delete", "nosuch"], "nosuch"),
        (
            &[],
            &["volume", "resize", "nosuch", "--size", "2G"],
            "nosuch",
        ),
        (&[], &["snapshot", "create", "nosuch"], "nosuch"),
        (&[], &["clone", "dup@nosnap", "c"], "nosnap"),
        (&[], &["volume", "create", "dup", "--size", "1G"], "dup"),
        (
            &["volume", "create", "other", "--size", "1G"],
            &["volume", "rename", "other", "dup"],
            "dup",
        ),
        (
            &["snapshot", "create", "dup", "--name", "s"],
            &["snapshot", "create", "dup", "--name", "s"],
            "dup",
        ),
    ];
    for (setup, args, want) in cases {
        if !setup.is_empty() {
            d.arca(setup).ok();
        }
        let err = d.arca(args).error_line();
        assert!(err.contains(want), "{args:?}: {err}");
    }

    // Invalid per the API (names, sizes, devices): one line, exit 1.
    for args in [
        &["volume", "create", "bad/name", "--size", "1G"][..],
        &["volume", "create", "odd", "--size", "1000"][..],
        &["volume", "create", "far", "--size", "1G", "--device", "7"][..],
    ] {
        d.arca(args).error_line();
    }
    // A snapshot with clones cannot be deleted; the error names the clone.
    d.arca(&["clone", "dup@s", "kid"]).ok();
    let err = d.arca(&["snapshot", "delete", "dup@s"]).error_line();
    assert!(err.contains("kid"), "{err}");
    // Nothing above changed the pool.
    let list = d.json(&["volume", "list"]);
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dup", "kid", "other"]);
    d.stop();
}
