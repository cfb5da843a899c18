//! Scenarios that act through the console: a volume's life from creation to a verified backup
//! restored as a new volume, errors and confirmations, prune.

use serde_json::{Value, json};

use crate::common::daemon::Daemon;
use crate::common::qemu;
use crate::webdriver::Browser;
use crate::{api, assert_accessible, browser_installed, http, open_page, shown, wait_gone};

/// Fills the field labelled `label` in `scope`.
pub(crate) fn fill(b: &Browser, scope: &str, label: &str, text: &str) {
    let f = b.field(scope, label);
    b.type_into(&f, text);
}

pub(crate) fn click(b: &Browser, css: &str, text: &str) {
    let e = b.wait_text(css, text);
    b.click(&e);
}

/// The open confirmation's text.
pub(crate) fn dialog_text(b: &Browser) -> String {
    b.wait("the confirmation", |b| {
        Some(b.text_of("dialog[open]")).filter(|t| !t.is_empty())
    })
}

#[test]
fn a_volume_is_created_backed_up_verified_and_restored_through_the_console() {
    if !browser_installed() || !crate::common::tools::tools(&["qemu-io", "qemu-img"]) {
        return;
    }
    let d = Daemon::start();
    let b = open_page(&d, "#/volumes");
    fill(&b, "#create-volume", "Name", "web");
    fill(&b, "#create-volume", "Size", "64M");
    click(&b, "#create-volume button", "Create volume");
    b.wait_text("#volume-list a", "web");
    assert_eq!(api(&d, "GET", "/v1/volumes/web", None)["size"], 64 << 20);
    let uri = b.wait("the NBD URI", |b| {
        b.attribute_of("#volume-list .uri input", "value")
    });
    assert_eq!(uri, d.uri("web"));
    b.screenshot("volumes");
    assert_accessible(&b, "volumes");

    qemu::qemu_io(&d, "web", &["write -P 0x5a 0 1M", "write -P 0xa5 40M 3M"]);

    b.click(&b.wait_text("#volume-list a", "web"));
    fill(&b, "#backup-now", "Label", "nightly");
    fill(&b, "#backup-now", "Host", "db1");
    click(&b, "#backup-now button", "Back up now");
    // On the timeline once its digest job has finished: complete, with its label.
    b.wait("the backup on the timeline, complete", |b| {
        let t = b.text_of("#timeline table");
        (t.contains("nightly") && t.contains("complete")).then_some(())
    });
    assert!(b.find("#timeline .timeline a.complete").is_some(), "no dot");
    let list = api(&d, "GET", "/v1/backups?volume=web", None);
    let backup = &list["backups"][0];
    assert_eq!(backup["info"]["label"], "nightly");
    assert_eq!(backup["info"]["host"], "db1");
    let id = backup["id"].as_u64().unwrap();
    b.screenshot("volume");
    assert_accessible(&b, "a volume");

    b.click(&b.wait("the backup's link", |b| {
        b.find(&format!("#timeline table a[href='#/backups/{id}']"))
    }));
    b.wait_text("h1", &format!("Backup {id}"));
    click(&b, "button", "Verify");
    b.wait("the verify job to succeed", |b| {
        b.find("#backup-jobs .job-line[data-state='succeeded']")
    });
    b.wait("the record to say verified good", |b| {
        b.text_of("#backup-record").contains("good").then_some(())
    });
    assert_eq!(
        api(&d, "GET", &format!("/v1/backups/{id}"), None)["verified"],
        true
    );

    fill(&b, "main", "New volume name", "web-restored");
    click(&b, "button", "Restore as new");
    b.wait("the restored volume", |_| {
        let (status, _, _) = http(&d, "GET", "/v1/volumes/web-restored", &[], None);
        (status == 200 && !restore_running(&d)).then_some(())
    });
    if restore_running(&d) || has_restore_job(&d) {
        b.wait("the restore job to show as succeeded", |b| {
            b.find("#backup-jobs .job-line[data-kind='restore'][data-state='succeeded']")
        });
    }
    b.wait("the history to name the restore", |b| {
        b.text_of("main")
            .contains("restored as web-restored")
            .then_some(())
    });
    b.screenshot("backup");
    assert_accessible(&b, "a backup");
    qemu::identical(&d, "web", "web-restored");
}

fn restore_running(d: &Daemon) -> bool {
    api(d, "GET", "/v1/jobs", None)
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["kind"] == "restore" && j["state"] == "running")
}

/// Whether the restore ran as a job (the console then follows it on the backup's page).
fn has_restore_job(d: &Daemon) -> bool {
    api(d, "GET", "/v1/jobs", None)
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["kind"] == "restore")
}

#[test]
fn a_refused_action_shows_the_api_message_and_deleting_names_what_is_lost() {
    if !browser_installed() {
        return;
    }
    let d = Daemon::with_volumes(&["db=64M"]);
    api(
        &d,
        "POST",
        "/v1/volumes/db/snapshots",
        Some(json!({"name": "before-upgrade"})),
    );
    let b = open_page(&d, "#/volumes");
    b.wait_text("#volume-list a", "db");
    fill(&b, "#create-volume", "Name", "db");
    fill(&b, "#create-volume", "Size", "64M");
    click(&b, "#create-volume button", "Create volume");
    let (status, _, text) = http(
        &d,
        "POST",
        "/v1/volumes",
        &[],
        Some(json!({"name": "db", "size": 64 << 20, "device": null})),
    );
    assert_eq!(status, 409);
    let message = serde_json::from_str::<Value>(&text).unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    let shown_error = b.wait("the API's error", |b| {
        Some(b.text_of("#create-volume [role=alert]")).filter(|t| !t.is_empty())
    });
    assert_eq!(shown_error, message);
    b.screenshot("error");
    assert_accessible(&b, "a volume list with an error");

    b.click(&b.wait_text("#volume-list a", "db"));
    b.click(&b.wait_text("#delete-volume", "Delete volume…"));
    let text = dialog_text(&b);
    for what in ["db", "before-upgrade", &shown(64 << 20), "cannot be undone"] {
        assert!(
            text.contains(what),
            "the confirmation does not name {what:?}: {text}"
        );
    }
    b.screenshot("delete-confirmation");
    assert_accessible(&b, "the delete confirmation");
    click(&b, "dialog[open] button", "Cancel");
    assert_eq!(
        http(&d, "GET", "/v1/volumes/db", &[], None).0,
        200,
        "cancel deleted"
    );
    b.click(&b.wait_text("#delete-volume", "Delete volume…"));
    dialog_text(&b);
    click(&b, "dialog[open] button", "Delete volume");
    wait_gone(&b, &d, "volume", "/v1/volumes/db", "Volumes");
}

#[test]
fn prune_shows_its_dry_run_as_a_table_and_removes_only_after_confirming() {
    if !browser_installed() {
        return;
    }
    let d = Daemon::with_volumes(&["db=64M"]);
    for _ in 0..4 {
        api(
            &d,
            "POST",
            "/v1/backups",
            Some(json!({"volumes": ["db"], "label": "daily"})),
        );
    }
    let policy = json!({"keep_last": 2, "keep_newest_verified": true, "dry_run": true});
    let want = api(&d, "POST", "/v1/volumes/db/prune", Some(policy));
    let b = open_page(&d, "#/volumes/db");
    fill(&b, "#prune", "keep last", "2");
    click(&b, "#prune button", "Dry run");
    b.wait_for("#prune-report table");
    let rows = b.script(
        "return [...document.querySelectorAll('#prune-report tbody tr')].map(r =>
            [...r.cells].map(c => c.innerText));",
        vec![],
    );
    let items = want["items"].as_array().unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), items.len());
    for (row, item) in rows.iter().zip(items) {
        assert_eq!(row[0], item["backup"].to_string());
        let decision = if item["keep"] == true {
            "keep"
        } else {
            "remove"
        };
        assert_eq!(row[3], decision, "backup {}", item["backup"]);
        let reasons: Vec<&str> = item["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let why = if reasons.is_empty() {
            "—".to_string()
        } else {
            reasons.join(", ")
        };
        assert_eq!(row[4], why.as_str());
    }
    let freed = b.attribute_of("#prune-summary data", "value");
    assert_eq!(freed, Some(want["freed_bytes"].to_string()));
    assert_eq!(complete_backups(&d), 4, "a dry run removed backups");
    b.screenshot("prune-dry-run");
    assert_accessible(&b, "prune's dry run");

    click(&b, "#prune button", "Prune…");
    let text = dialog_text(&b);
    let removed: Vec<&Value> = items.iter().filter(|i| i["keep"] == false).collect();
    assert_eq!(removed.len(), 2);
    for i in &removed {
        assert!(text.contains(&format!("Backup {}", i["backup"])), "{text}");
    }
    assert_accessible(&b, "the prune confirmation");
    click(&b, "dialog[open] button", "Prune");
    b.wait("the prune to finish", |b| {
        b.text_of("#prune-summary")
            .starts_with("Pruned")
            .then_some(())
    });
    assert_eq!(complete_backups(&d), 2);
}

fn complete_backups(d: &Daemon) -> usize {
    api(d, "GET", "/v1/backups?volume=db&status=complete", None)["backups"]
        .as_array()
        .unwrap()
        .len()
}
