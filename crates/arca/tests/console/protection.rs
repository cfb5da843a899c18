//! Scenarios of the protection views: a backup policy's life (create, run, change, pause,
//! resume, delete), vaults (add, show, remove), and on a backup's page where it lives, its
//! annotation and a host's copy.

use serde_json::{Value, json};

use crate::common::daemon::Daemon;
use crate::flows::{click, dialog_text, fill};
use crate::webdriver::Browser;
use crate::{api, assert_accessible, browser_installed, http, open_list, open_page, wait_gone};

/// The API's error message for a request it must refuse (a 4xx).
fn refusal(d: &Daemon, method: &str, path: &str, body: Value) -> String {
    let (got, _, text) = http(d, method, path, &[], Some(body));
    assert!((400..500).contains(&got), "{got} {text}");
    serde_json::from_str::<Value>(&text).unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

fn alert_in(b: &Browser, css: &str) -> String {
    let css = format!("{css} [role=alert]");
    b.wait("the API's error", |b| {
        Some(b.text_of(&css)).filter(|t| !t.is_empty())
    })
}

#[test]
fn a_policy_is_created_run_changed_paused_resumed_and_deleted_through_the_console() {
    if !browser_installed() {
        return;
    }
    let d = Daemon::with_volumes(&["db=64M", "web=64M"]);
    let b = open_list(&d, "#/policies", "Policies");
    fill(&b, "#create-policy", "Name", "nightly");
    fill(
        &b,
        "#create-policy",
        "Volumes (patterns, space-separated)",
        "db",
    );
    fill(&b, "#create-policy", "Snapshot calendar", "daily");
    fill(&b, "#create-policy", "Keep last", "2");
    click(&b, "#create-policy button", "Create policy");
    b.wait_text("#policy-list a", "nightly");
    let p = api(&d, "GET", "/v1/policies/nightly", None);
    assert_eq!(
        (&p["volumes"], &p["snapshot"], &p["keep"], &p["paused"]),
        (
            &json!(["db"]),
            &json!("daily"),
            &json!({"last": 2}),
            &json!(false)
        )
    );
    b.screenshot("policies");
    assert_accessible(&b, "policies");
    b.set_size(390, 844);
    b.wait_for("#policy-list table");
    b.screenshot("policies-phone");
    assert_accessible(&b, "policies on a phone");
    b.set_size(1280, 800);

    b.click(&b.wait_text("#policy-list a", "nightly"));
    b.wait_text("h1", "Policy nightly");
    // The next slots as the scheduler computes them, in the policy's zone.
    let next = api(&d, "GET", "/v1/policies/nightly/next", None);
    let first = next["schedules"][0]["local"][0]
        .as_str()
        .unwrap()
        .to_string();
    b.wait("the next slots", |b| {
        b.text_of("#policy-next").contains(&first).then_some(())
    });

    click(&b, "#policy-actions button", "Run now…");
    let text = dialog_text(&b);
    for what in ["nightly", "db", "last 2"] {
        assert!(
            text.contains(what),
            "the confirmation lacks {what:?}: {text}"
        );
    }
    assert!(!text.contains("web"), "{text}");
    click(&b, "dialog[open] button", "Run now");
    b.wait("the run in the history", |b| {
        b.text_of("#policy-history")
            .contains("succeeded")
            .then_some(())
    });
    let made = api(&d, "GET", "/v1/backups?volume=db", None);
    assert_eq!(made["backups"][0]["info"]["label"], "nightly");
    assert_eq!(
        api(&d, "GET", "/v1/backups?volume=web", None)["backups"],
        json!([])
    );

    // A change the API refuses shows its message and changes nothing.
    fill(&b, "#update-policy", "Snapshot calendar", "every blue moon");
    click(&b, "#update-policy button", "Save changes");
    let want = refusal(
        &d,
        "PATCH",
        "/v1/policies/nightly",
        json!({"snapshot": "every blue moon"}),
    );
    assert_eq!(alert_in(&b, "#update-policy"), want);
    fill(&b, "#update-policy", "Snapshot calendar", "daily");
    fill(&b, "#update-policy", "Keep last", "3");
    click(&b, "#update-policy button", "Save changes");
    b.wait("the change", |_| {
        (api(&d, "GET", "/v1/policies/nightly", None)["keep"] == json!({"last": 3})).then_some(())
    });
    let p = api(&d, "GET", "/v1/policies/nightly", None);
    assert_eq!(p["snapshot"], "daily");
    b.wait("the record to show the change", |b| {
        b.text_of("#policy-record").contains("last 3").then_some(())
    });

    click(&b, "#policy-actions button", "Pause…");
    let text = dialog_text(&b);
    assert!(text.contains("until it is resumed"), "{text}");
    click(&b, "dialog[open] button", "Pause");
    b.wait("the pause", |_| {
        (api(&d, "GET", "/v1/policies/nightly", None)["paused"] == true).then_some(())
    });
    b.wait_text("#policy-actions button", "Resume");
    b.screenshot("policy");
    assert_accessible(&b, "a policy");
    click(&b, "#policy-actions button", "Resume");
    b.wait("the resume", |_| {
        (api(&d, "GET", "/v1/policies/nightly", None)["paused"] == false).then_some(())
    });
    // Redrawn as resumed before its buttons are used again.
    b.wait_text("#policy-actions button", "Pause…");

    click(&b, "#policy-actions button", "Delete policy…");
    let text = dialog_text(&b);
    assert!(text.contains("backups it made stay"), "{text}");
    assert_accessible(&b, "the policy delete confirmation");
    click(&b, "dialog[open] button", "Delete policy");
    wait_gone(&b, &d, "policy", "/v1/policies/nightly", "Policies");
    assert_eq!(
        api(&d, "GET", "/v1/backups?volume=db", None)["backups"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the policy's backup stays"
    );
}

#[test]
fn vaults_are_added_shown_and_removed_through_the_console() {
    if !browser_installed() {
        return;
    }
    let d = Daemon::with_volumes(&["db=64M"]);
    let dir = d.dir().join("vault");
    std::fs::create_dir(&dir).unwrap();
    let url = format!("file://{}", dir.display());
    let b = open_list(&d, "#/vaults", "Vaults");
    fill(&b, "#add-vault", "Name", "offsite");
    fill(
        &b,
        "#add-vault",
        "URL (file:///PATH or s3://BUCKET/PREFIX)",
        "ftp://nope",
    );
    click(&b, "#add-vault button", "Add vault");
    let want = refusal(
        &d,
        "POST",
        "/v1/vaults",
        json!({"name": "offsite", "url": "ftp://nope"}),
    );
    assert_eq!(alert_in(&b, "#add-vault"), want);
    fill(
        &b,
        "#add-vault",
        "URL (file:///PATH or s3://BUCKET/PREFIX)",
        &url,
    );
    click(&b, "#add-vault button", "Add vault");
    b.wait_text("#vault-list a", "offsite");
    let v = api(&d, "GET", "/v1/vaults/offsite", None);
    assert_eq!((&v["url"], &v["kind"]), (&json!(url), &json!("directory")));
    b.screenshot("vaults");
    assert_accessible(&b, "vaults");

    b.click(&b.wait_text("#vault-list a", "offsite"));
    b.wait_text("h1", "Vault offsite");
    b.wait("the registration", |b| {
        b.text_of("#vault-record").contains(&url).then_some(())
    });
    b.wait_for("#timeline p.muted, #timeline table");
    assert!(
        b.find("a[href*='key-export'], button[data-key-export]")
            .is_none(),
        "no key export from the console"
    );
    assert!(!b.text_of("main").contains("Export key"));
    b.screenshot("vault");
    assert_accessible(&b, "a vault");
    click(&b, "main button", "Remove vault…");
    let text = dialog_text(&b);
    for what in ["offsite", &url, "No backup lists a copy"] {
        assert!(
            text.contains(what),
            "the confirmation lacks {what:?}: {text}"
        );
    }
    click(&b, "dialog[open] button", "Remove vault");
    wait_gone(&b, &d, "vault", "/v1/vaults/offsite", "Vaults");
}

/// A backup of volume `db` labelled nightly; its id.
fn nightly_backup(d: &Daemon) -> u64 {
    let made = api(
        d,
        "POST",
        "/v1/backups",
        Some(json!({"volumes": ["db"], "label": "nightly"})),
    );
    made["backups"][0]["id"].as_u64().unwrap()
}

#[test]
fn a_backup_s_page_shows_where_it_lives_and_takes_annotations_and_host_copies() {
    if !browser_installed() {
        return;
    }
    let d = Daemon::with_volumes(&["db=64M"]);
    let id = nightly_backup(&d);
    let b = open_page(&d, &format!("#/backups/{id}"));
    b.wait("where it lives", |b| {
        let t = b.text_of("#backup-where");
        (t.contains("array") && t.contains("No host copy recorded")).then_some(())
    });

    fill(&b, "#host-copy", "Medium", "tape");
    fill(&b, "#host-copy", "Where (label, path)", "T-0042");
    fill(&b, "#host-copy", "Made by", "bacula");
    click(&b, "#host-copy button", "Record copy");
    b.wait("the host copy", |b| {
        b.text_of("#backup-where").contains("T-0042").then_some(())
    });
    let r = api(&d, "GET", &format!("/v1/backups/{id}"), None);
    assert_eq!(r["host_copies"][0]["medium"], "tape");
    assert_eq!(r["host_copies"][0]["by"], "bacula");
    assert!(
        r["locations"]
            .as_array()
            .unwrap()
            .contains(&json!("host:tape")),
        "{}",
        r["locations"]
    );
    b.wait("the record's place", |b| {
        b.text_of("#backup-record")
            .contains("host: tape")
            .then_some(())
    });

    let long = "x".repeat(300);
    fill(&b, "#annotate", "Label", &long);
    click(&b, "#annotate button", "Annotate");
    let want = refusal(
        &d,
        "POST",
        &format!("/v1/backups/{id}/annotate"),
        json!({"label": long}),
    );
    assert_eq!(alert_in(&b, "#annotate"), want);
    fill(&b, "#annotate", "Label", "weekly");
    fill(
        &b,
        "#annotate",
        "Set meta (KEY=VALUE, comma-separated)",
        "ticket=42",
    );
    click(&b, "#annotate button", "Annotate");
    b.wait("the annotation", |_| {
        let r = api(&d, "GET", &format!("/v1/backups/{id}"), None);
        (r["info"]["label"] == "weekly" && r["info"]["meta"]["ticket"] == "42").then_some(())
    });
    b.wait("the history to name the annotation", |b| {
        b.text_of("main").contains("annotated:").then_some(())
    });
    b.screenshot("backup-copies");
    assert_accessible(&b, "a backup with a host copy");
}

/// Polls job `id` until it has finished; its final state.
fn finished_job(d: &Daemon, id: &Value) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let j = api(d, "GET", &format!("/v1/jobs/{id}"), None);
        if j["state"] != "running" {
            return j;
        }
        assert!(std::time::Instant::now() < deadline, "job {id} hangs");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_backup_s_page_shows_its_copy_in_a_vault() {
    if !browser_installed() || !crate::common::tools::tools(&["qemu-io"]) {
        return;
    }
    let d = Daemon::with_volumes(&["db=64M"]);
    crate::common::qemu::qemu_io(&d, "db", &["write -P 0x5a 0 2M", "write -P 0xa5 40M 1M"]);
    let dir = d.dir().join("vault");
    std::fs::create_dir(&dir).unwrap();
    let url = format!("file://{}", dir.display());
    api(
        &d,
        "POST",
        "/v1/vaults",
        Some(json!({"name": "offsite", "url": url})),
    );
    let id = nightly_backup(&d);
    let started = api(
        &d,
        "POST",
        "/v1/vaults/offsite/copies",
        Some(json!({"backups": [id]})),
    );
    let job = finished_job(&d, &started["job"]);
    assert_eq!(job["state"], "succeeded", "{job}");
    let r = api(&d, "GET", &format!("/v1/backups/{id}"), None);
    assert_eq!(r["locations"], json!(["array", "vault:offsite"]), "{r}");
    let copy = &r["vault_copies"][0];
    assert!(copy["bytes_read"].as_u64().unwrap() >= 3 << 20, "{copy}");

    let b = open_page(&d, &format!("#/backups/{id}"));
    let row = "#backup-where tbody tr";
    b.wait("the vault copy, and in the history", |b| {
        (b.text_of(row).contains("offsite")
            && b.text_of("main").contains("copied to vault offsite"))
        .then_some(())
    });
    assert_eq!(
        b.attribute_of(&format!("{row} a"), "href").as_deref(),
        Some("#/vaults/offsite")
    );
    // The time as the console writes it: "2026-12-03 15:40:01 UTC".
    let copied = copy["copied"].as_str().unwrap();
    let when = format!("{} UTC", copied[..19].replace('T', " "));
    let text = b.text_of(row);
    assert!(
        text.contains(&when),
        "{text:?} lacks the copy's time {when:?}"
    );
    assert!(text.contains(copy["manifest"].as_str().unwrap()), "{text}");
    // Read, new and stored bytes, each exact in its <data value>.
    let shown: Vec<u64> = b
        .script(
            "return [...document.querySelectorAll(arguments[0])].map(e => Number(e.value));",
            vec![json!(format!("{row} data"))],
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let want: Vec<u64> = ["bytes_read", "bytes_new", "bytes_stored"]
        .iter()
        .map(|f| copy[*f].as_u64().unwrap())
        .collect();
    assert_eq!(shown, want);
    for (n, size) in want.iter().enumerate() {
        let cell = b.text_of(&format!("{row} td:nth-child({}) data", n + 3));
        assert_eq!(cell, crate::shown(*size));
    }
    // One of its locations in the record.
    let record = b.text_of("#backup-record");
    assert!(record.contains("vault: offsite"), "{record}");
    assert!(record.contains("array: "), "{record}");
    b.script(
        "document.querySelector('#backup-where').scrollIntoView();",
        vec![],
    );
    b.screenshot("backup-vault-copy");
    assert_accessible(&b, "a backup with a vault copy");
}
