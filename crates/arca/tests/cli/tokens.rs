//! `arca token create|list|revoke`: the secret printed once, roles enforced on what it runs.

use crate::util::Daemon;

const BOOTSTRAP: &str = "cli-bootstrap-token-0123456789";

#[test]
fn token_create_list_revoke_and_roles() {
    let d = Daemon::start_with_token(BOOTSTRAP);
    let admin = ["--token", BOOTSTRAP];
    let out = d
        .arca(
            &[
                &["token", "create", "reader", "--role", "read-only"][..],
                &admin,
            ]
            .concat(),
        )
        .ok();
    let secret = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("secret (shown only now): "))
        .unwrap_or_else(|| panic!("{}", out.describe()))
        .to_string();
    let list = d.arca(&[&["token", "list"][..], &admin].concat()).ok();
    assert!(list.stdout.contains("reader") && list.stdout.contains("read-only"));
    assert!(!list.stdout.contains(&secret), "{}", list.stdout);
    // The read-only token reads, and is refused a change with its role named.
    d.arca(&["volume", "list", "--token", &secret]).ok();
    let err = d
        .arca(&["volume", "create", "v", "--size", "1G", "--token", &secret])
        .error_line();
    assert!(
        err.contains("read-only") && err.contains("operator"),
        "{err}"
    );
    // An unknown role is a usage error.
    d.arca(&[&["token", "create", "x", "--role", "root"][..], &admin].concat())
        .usage_error();
    d.arca(&[&["token", "revoke", "reader"][..], &admin].concat())
        .ok();
    let err = d.arca(&["volume", "list", "--token", &secret]).error_line();
    assert!(err.to_lowercase().contains("token"), "{err}");
    // The audit trail names who did what: the refused create under the reader's name.
    let trail = d
        .arca(&[&["audit", "list", "--token-name", "reader"][..], &admin].concat())
        .ok();
    assert!(
        trail.stdout.contains("403") && trail.stdout.contains("POST /v1/volumes"),
        "{}",
        trail.describe()
    );
    let all = d
        .arca(&[&["audit", "list", "--since", "2000-01-01"][..], &admin].concat())
        .ok();
    assert!(
        all.stdout.contains("DELETE /v1/tokens/reader"),
        "{}",
        all.describe()
    );
    assert!(!all.stdout.contains(&secret), "{}", all.stdout);
    d.stop();
}
