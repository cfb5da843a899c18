//! A daemon started with `--token-file` answers only clients that present the token.

use crate::util::{Daemon, arca_cmd, run_cmd};

const TOKEN: &str = "cli-test-token-0123456789";

#[test]
fn token_from_flag_or_environment() {
    let d = Daemon::start_with_token(TOKEN);

    // Without a token: refused, one line that says what is missing.
    let err = d.arca(&["volume", "list"]).error_line();
    let lower = err.to_lowercase();
    assert!(
        lower.contains("unauthorized") && lower.contains("token"),
        "{err}"
    );
    // A wrong token is refused too, and nothing was created by either attempt.
    let err = d
        .arca(&["volume", "create", "v", "--size", "1G", "--token", "wrong"])
        .error_line();
    assert!(err.to_lowercase().contains("token"), "{err}");

    // --token after the subcommand, before it, or ARCA_TOKEN.
    let v = d.json(&["volume", "create", "v", "--size", "1G", "--token", TOKEN]);
    assert_eq!(v["name"], "v");
    let list = d.json(&["--token", TOKEN, "volume", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let mut cmd = arca_cmd();
    cmd.args(["pool", "status", "--json", "--api", &d.api])
        .env("ARCA_TOKEN", TOKEN);
    assert_eq!(run_cmd(cmd).json()["volumes"], 1);
    // The flag wins over the environment.
    let mut cmd = arca_cmd();
    cmd.args(["volume", "list", "--api", &d.api, "--token", TOKEN])
        .env("ARCA_TOKEN", "wrong");
    assert!(run_cmd(cmd).ok().stdout.contains("1.0G"));
    // Jobs too: a check started with the token can be waited for with it.
    let mut cmd = arca_cmd();
    cmd.args(["pool", "check", "--api", &d.api])
        .env("ARCA_TOKEN", TOKEN);
    assert!(run_cmd(cmd).ok().stdout.contains("pool check: clean"));
    d.stop();
}
