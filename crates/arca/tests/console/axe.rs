//! The accessibility check: axe-core (the version pinned by `axe/package-lock.json`, which
//! scripts/test installs into target/axe with `npm ci`) injected into the page over WebDriver,
//! run on the whole document, and no violation of serious or critical impact allowed.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::common::tools::ci;
use crate::open_list;
use crate::webdriver::Browser;

/// target/axe/node_modules/axe-core/axe.min.js.
fn axe_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("axe/node_modules/axe-core/axe.min.js")
}

/// axe-core's source, or None (a skip, printed once) when it is not installed. Under CI=true
/// a missing axe-core fails the test.
fn axe_source() -> Option<&'static str> {
    static SOURCE: OnceLock<Option<String>> = OnceLock::new();
    SOURCE
        .get_or_init(|| {
            let path = axe_path();
            match std::fs::read_to_string(&path) {
                Ok(s) => Some(s),
                Err(e) => {
                    assert!(
                        !ci(),
                        "CI=true and axe-core is missing at {} ({e}); scripts/test installs it",
                        path.display()
                    );
                    eprintln!(
                        "SKIPPED the accessibility check: no axe-core at {} ({e}); run \
                         scripts/test to install it",
                        path.display()
                    );
                    None
                }
            }
        })
        .as_deref()
}

/// The violations of serious or critical impact, each as "rule (impact): help" followed by
/// the elements it found them on. Empty when there are none. Lesser ones are printed (seen
/// with `--nocapture`), not failed on.
fn serious_violations(b: &Browser) -> Vec<String> {
    let (serious, lesser): (Vec<String>, Vec<String>) = violations(b)
        .into_iter()
        .partition(|v| v.contains(" (serious): ") || v.contains(" (critical): "));
    for v in lesser {
        eprintln!("axe-core, minor or moderate: {v}");
    }
    serious
}

/// Every violation axe-core finds on the page now.
fn violations(b: &Browser) -> Vec<String> {
    let Some(source) = axe_source() else {
        return vec![];
    };
    // WebDriver's scripts run outside the page's content security policy, which allows no
    // script but the console's own.
    let loaded = b.script("return typeof window.axe === 'object';", vec![]);
    if loaded != json!(true) {
        b.script(&format!("{source}\n;return true;"), vec![]);
    }
    let result = b.script_async(
        "const done = arguments[arguments.length - 1];
         axe.run(document, { resultTypes: ['violations'] })
            .then((r) => done(r.violations
                .map((v) => `${v.id} (${v.impact}): ${v.help}\\n    ` + v.nodes
                    .map((n) => `${n.target.join(' ')}: ${n.failureSummary.replace(/\\n/g, ' ')}`)
                    .join('\\n    '))))
            .catch((e) => done({ error: String(e) }));",
        vec![],
    );
    match result {
        Value::Array(list) => list
            .into_iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        other => panic!("axe-core did not run: {other}"),
    }
}

/// Fails naming every serious or critical violation axe-core finds on the page now.
pub fn assert_axe_clean(b: &Browser, page: &str) {
    let found = serious_violations(b);
    assert!(
        found.is_empty(),
        "axe-core finds serious or critical violations on {page}:\n{}",
        found.join("\n")
    );
}

/// The check itself: a control without a name and text without contrast, planted in a real
/// console page, are reported (so a clean result means axe-core ran and found nothing).
#[test]
fn axe_reports_violations_planted_in_a_page() {
    if !crate::browser_installed() || axe_source().is_none() {
        return;
    }
    let d = crate::common::daemon::Daemon::start();
    let b = open_list(&d, "#/jobs", "Jobs");
    assert_eq!(serious_violations(&b), Vec::<String>::new());
    b.script(
        "const i = document.createElement('input');
         document.querySelector('main').append(i);
         const p = document.createElement('p');
         p.textContent = 'faint';
         p.setAttribute('class', 'planted');
         document.querySelector('main').append(p);",
        vec![],
    );
    b.script(
        "const p = document.querySelector('.planted');
         p.style.color = '#eee'; p.style.background = '#fff';",
        vec![],
    );
    let found = serious_violations(&b);
    assert!(
        found.iter().any(|v| v.starts_with("label (critical)")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|v| v.starts_with("color-contrast (serious)")),
        "{found:?}"
    );
}
