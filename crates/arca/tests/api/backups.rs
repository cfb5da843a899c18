//! The backup endpoints against a real daemon: targets, snapshot and copy backups, list
//! filters and paging, digests, verify, restore (new volume, in place with its undo point, a
//! set), hold/release/delete/retention, prune (on a scripted calendar), the catalog, and the
//! 400/404/409 answers to bad input.

use serde_json::{Value, json};

use crate::common::qemu::qemu_io_if_installed;
use crate::{
    Daemon, assert_documented, assert_error, assert_error_mentions, assert_refusals, call, delete,
    get, post, retry_while_refused, served_openapi, wait_job,
};

const M: u64 = 1 << 20;

fn id_of(v: &Value) -> u64 {
    v["id"].as_u64().unwrap_or_else(|| panic!("no id in {v}"))
}

fn list(d: &Daemon, query: &str) -> Value {
    let (s, v) = get(d, &format!("/v1/backups{query}"));
    assert_eq!(s, 200, "{query}: {v}");
    v
}

fn list_ids(d: &Daemon, query: &str) -> Vec<u64> {
    list(d, query)["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

fn backup(d: &Daemon, id: u64) -> Value {
    let (s, v) = get(d, &format!("/v1/backups/{id}"));
    assert_eq!(s, 200, "{v}");
    v
}

fn create(d: &Daemon, body: Value) -> Value {
    let (s, v) = post(d, "/v1/backups", body.clone());
    assert_eq!(s, 201, "{body}: {v}");
    v
}

/// Waits for every job of a create answer; they must succeed.
fn wait_all(d: &Daemon, created: &Value) {
    for j in created["jobs"].as_array().unwrap() {
        let j = wait_job(d, j.as_u64().unwrap());
        assert_eq!(j["state"], "succeeded", "{j}");
    }
}

#[test]
fn backups_every_endpoint_and_error() {
    let d = Daemon::start_with_args(&["--volume", "v=64M", "--volume", "w=32M"]);
    let data = qemu_io_if_installed(&d, "v", &["write -P 7 0 64k", "write -P 9 1M 64k"]);

    // Targets: the new snapshot is always offered; every entry says why.
    let (s, targets) = get(&d, "/v1/volumes/v/backup-targets");
    assert_eq!(s, 200, "{targets}");
    let targets = targets.as_array().unwrap();
    assert!(
        targets
            .iter()
            .any(|t| t["kind"] == "new-snapshot" && t["method"] == "snapshot")
    );
    // w is smaller than v: no destination for it.
    assert!(!targets.iter().any(|t| t["volume"] == "w"), "{targets:?}");
    for t in targets {
        assert!(!t["reason"].as_str().unwrap().is_empty(), "{t}");
        assert!(
            ["new-snapshot", "existing-volume", "new-volume"]
                .contains(&t["kind"].as_str().unwrap())
        );
    }
    assert_error(
        &get(&d, "/v1/volumes/nope/backup-targets"),
        404,
        "not_found",
    );

    // A snapshot backup with the host's information.
    let created = create(
        &d,
        json!({"volumes": ["v"], "label": "nightly", "program": "pgbackup", "host": "db1",
               "app": "postgres", "content_id": "cluster-7", "description": "before upgrade",
               "meta": {"tier": "gold", "ticket": "42"}, "keep_for": "1h"}),
    );
    assert!(created["set_id"].is_null(), "{created}");
    let snap = &created["backups"][0];
    let snap_id = id_of(snap);
    assert_eq!(snap["method"], "snapshot");
    assert_eq!(snap["status"], "complete");
    assert_eq!(snap["generation"], 1);
    assert_eq!(snap["source"]["volume_name"], "v");
    assert_eq!(snap["source"]["size"], 64 * M);
    assert_eq!(snap["info"]["application"], "postgres");
    assert_eq!(
        snap["info"]["meta"],
        json!({"tier": "gold", "ticket": "42"})
    );
    assert_eq!(snap["destination"]["kind"], "snapshot");
    let export = format!("v@backup-{snap_id}");
    assert_eq!(snap["destination"]["export"], export);
    assert_eq!(
        snap["destination"]["uri"],
        format!("nbd://{}/{export}", d.nbd)
    );
    // Times: RFC 3339 UTC with milliseconds; keep_for counted from now.
    let pit = snap["point_in_time"].as_str().unwrap();
    assert!(
        pit.len() == 24 && pit.ends_with('Z') && &pit[19..20] == ".",
        "{pit}"
    );
    let keep = snap["retention"]["keep_until"].as_str().unwrap();
    assert!(keep > pit, "{keep} {pit}");
    assert_eq!(snap["retention"]["hold"], false);
    assert_eq!(created["jobs"].as_array().unwrap().len(), 1);
    wait_all(&d, &created);
    let b = backup(&d, snap_id);
    let digest = &b["digest"];
    assert_eq!(digest["root"].as_str().unwrap().len(), 64, "{b}");
    if data {
        assert_eq!(digest["extents"], 2, "{b}");
        assert_eq!(b["allocated_bytes"], 128 * 1024);
        // The image is readable, read-only, where the record says.
        qemu_io_if_installed(&d, &export, &["read -P 7 0 64k", "read -P 9 1M 64k"]);
    }
    assert!(b["verified"].is_null());

    // A copy backup: a new volume, copied by a job.
    let created = create(
        &d,
        json!({"volumes": ["v"], "method": "copy", "label": "weekly"}),
    );
    let copy_id = id_of(&created["backups"][0]);
    assert_eq!(created["backups"][0]["job"], created["jobs"][0]);
    wait_all(&d, &created);
    let c = backup(&d, copy_id);
    assert_eq!(
        (c["status"].as_str(), c["method"].as_str()),
        (Some("complete"), Some("copy"))
    );
    assert_eq!(c["generation"], 2);
    assert_eq!(c["destination"]["kind"], "volume");
    assert_eq!(c["destination"]["created"], true);
    // The copy's volume holds exactly the allocated bytes, and only this backup holds them.
    assert_eq!(c["unique_bytes"], c["allocated_bytes"]);
    let copy_volume = c["destination"]["volume"].as_str().unwrap().to_string();
    assert_eq!(c["destination"]["export"], copy_volume);
    assert!(c["completed"].as_str().unwrap() >= c["point_in_time"].as_str().unwrap());
    if data {
        assert_eq!(
            c["digest"]["root"], digest["root"],
            "same data, same digest"
        );
        qemu_io_if_installed(&d, &copy_volume, &["read -P 7 0 64k", "read -P 9 1M 64k"]);
    }
    // The copy is protected: not deletable as a volume.
    assert_error(
        &delete(&d, &format!("/v1/volumes/{copy_volume}")),
        409,
        "busy",
    );

    // Lists and filters, newest first.
    assert_eq!(list_ids(&d, ""), [copy_id, snap_id]);
    assert_eq!(list_ids(&d, "?volume=v"), [copy_id, snap_id]);
    assert_eq!(list_ids(&d, "?volume=w"), Vec::<u64>::new());
    assert_eq!(list_ids(&d, "?label=nightly"), [snap_id]);
    assert_eq!(list_ids(&d, "?host=db1"), [snap_id]);
    assert_eq!(list_ids(&d, "?app=postgres"), [snap_id]);
    assert_eq!(list_ids(&d, "?meta=tier%3Dgold&meta=ticket=42"), [snap_id]);
    assert_eq!(list_ids(&d, "?meta=tier=silver"), Vec::<u64>::new());
    assert_eq!(list_ids(&d, "?status=complete"), [copy_id, snap_id]);
    assert_eq!(list_ids(&d, "?status=deleted"), Vec::<u64>::new());
    let since = urlencode(pit);
    assert_eq!(list_ids(&d, &format!("?since={since}")), [copy_id, snap_id]);
    assert_eq!(list_ids(&d, &format!("?until={since}")), [snap_id]);
    assert_eq!(list_ids(&d, "?since=2999-01-01"), Vec::<u64>::new());
    assert_eq!(
        list_ids(&d, "?until=2000-01-01T00:00:00Z"),
        Vec::<u64>::new()
    );
    let page = list(&d, "?limit=1");
    assert_eq!(page["backups"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_before"], copy_id);
    let page = list(&d, &format!("?limit=1&before={copy_id}"));
    assert_eq!(id_of(&page["backups"][0]), snap_id);
    assert_eq!(page["next_before"], snap_id);
    let page = list(&d, &format!("?limit=5&before={snap_id}"));
    assert_eq!(page, json!({"backups": [], "next_before": null}));
    assert_error(&get(&d, "/v1/backups?volume=nope"), 404, "not_found");
    assert_error(&get(&d, "/v1/backups?status=bogus"), 400, "invalid");
    assert_error(&get(&d, "/v1/backups?since=yesterday"), 400, "invalid");
    assert_error(&get(&d, "/v1/backups?limit=0"), 400, "invalid");
    assert_error(&get(&d, "/v1/backups?limit=100001"), 400, "invalid");
    assert_error(&get(&d, "/v1/backups?limit=x"), 400, "invalid");
    assert_error(&get(&d, "/v1/backups?meta=novalue"), 400, "invalid");
    assert_error(&get(&d, "/v1/backups?colour=red"), 400, "invalid");
    assert_error(&get(&d, "/v1/backups?label=a&label=b"), 400, "invalid");

    // Verify both: one job, a Verification each, recorded on the history.
    let (s, v) = post(&d, "/v1/backups/verify", json!({"ids": [snap_id, copy_id]}));
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["backups"], json!([snap_id, copy_id]));
    let job = wait_job(&d, v["job"].as_u64().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "verify");
    let results = job["result"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{job}");
    for r in results {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["damaged"], json!([]));
        assert_eq!(r["damaged_bytes"], 0);
        assert!(r["error"].is_null());
    }
    let b = backup(&d, snap_id);
    assert_eq!(b["verified"], true);
    let last = b["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"]["type"], "verified", "{b}");
    assert_eq!(last["event"]["ok"], true);
    let (s, v) = post(&d, "/v1/backups/verify", json!({"all": true}));
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["backups"].as_array().unwrap().len(), 2, "{v}");
    wait_job(&d, v["job"].as_u64().unwrap());

    // Restore as a new volume: instant from a snapshot, a job from a copy.
    let (s, r) = post(
        &d,
        &format!("/v1/backups/{snap_id}/restore"),
        json!({"as": "r1"}),
    );
    assert_eq!(s, 202, "{r}");
    assert_eq!(
        r,
        json!({"backups": [snap_id], "volumes": ["r1"], "undo_backups": [], "job": null})
    );
    let (s, r) = post(
        &d,
        &format!("/v1/backups/{copy_id}/restore"),
        json!({"as": "r2"}),
    );
    assert_eq!(s, 202, "{r}");
    let job = wait_job(&d, r["job"].as_u64().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(get(&d, "/v1/volumes/r2").1["size"], 64 * M);
    if data {
        qemu_io_if_installed(&d, "r1", &["read -P 7 0 64k", "read -P 9 1M 64k"]);
        qemu_io_if_installed(&d, "r2", &["read -P 7 0 64k", "read -P 9 1M 64k"]);
        // In place, with an undo point: overwrite, restore, and the old data is back.
        qemu_io_if_installed(&d, "v", &["write -P 1 0 64k"]);
    }
    // No body: in place into the source. qemu-io has exited, but the server may take a moment
    // to see its connection end; until then the restore is refused, naming the host.
    let (s, r) = retry_while_refused("host connection", || {
        call(
            &d,
            "POST",
            &format!("/v1/backups/{snap_id}/restore"),
            None,
            None,
        )
    });
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["volumes"], json!(["v"]));
    let undo = r["undo_backups"][0].as_u64().unwrap();
    let job = wait_job(&d, r["job"].as_u64().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let u = backup(&d, undo);
    assert_eq!(u["info"]["label"], "pre-restore");
    assert_eq!(u["method"], "snapshot");
    if data {
        qemu_io_if_installed(&d, "v", &["read -P 7 0 64k"]);
        qemu_io_if_installed(&d, &format!("v@backup-{undo}"), &["read -P 1 0 64k"]);
    }
    let history = backup(&d, snap_id)["history"].clone();
    let restored: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"]["type"] == "restored")
        .collect();
    assert_eq!(restored.len(), 2, "{history}");
    assert_eq!(
        restored[0]["event"],
        json!({"type": "restored", "to": "r1", "in_place": false, "from": "array"})
    );
    assert_eq!(
        restored[1]["event"],
        json!({"type": "restored", "to": "v", "in_place": true, "from": "array"})
    );
    let p = format!("/v1/backups/{snap_id}/restore");
    assert_error(&post(&d, &p, json!({"to": "w", "as": "x"})), 400, "invalid");
    assert_error(
        &post(&d, &p, json!({"as": "x", "force": true})),
        400,
        "invalid",
    );
    assert_error(&post(&d, &p, json!({"as": "r1"})), 409, "conflict");
    assert_error(&post(&d, &p, json!({"to": "nope"})), 404, "not_found");
    assert_error(&post(&d, &p, json!({"into": "w"})), 422, "invalid");
    assert_error(
        &post(&d, "/v1/backups/12345/restore", json!({})),
        404,
        "not_found",
    );

    // Hold, release, keep-until, force.
    let (s, h) = post(&d, &format!("/v1/backups/{snap_id}/hold"), json!({}));
    assert_eq!((s, &h["retention"]["hold"]), (200, &json!(true)), "{h}");
    let refused = delete(&d, &format!("/v1/backups/{snap_id}"));
    assert_error_mentions(&refused, 409, "busy", "hold");
    let (s, h) = post(&d, &format!("/v1/backups/{snap_id}/release"), json!({}));
    assert_eq!((s, &h["retention"]["hold"]), (200, &json!(false)), "{h}");
    let refused = delete(&d, &format!("/v1/backups/{snap_id}"));
    assert_error_mentions(&refused, 409, "busy", "kept until");
    // The clone r1 still shares the snapshot's data.
    assert_error(
        &delete(&d, &format!("/v1/backups/{snap_id}?force=true")),
        409,
        "busy",
    );
    assert_eq!(delete(&d, "/v1/volumes/r1").0, 204);
    let (s, gone) = delete(&d, &format!("/v1/backups/{snap_id}?force=true"));
    assert_eq!(s, 200, "{gone}");
    assert_eq!(gone["status"], "deleted");
    assert!(gone["destination"]["export"].is_null());
    assert_eq!(backup(&d, snap_id)["status"], "deleted");
    assert_error(&delete(&d, &format!("/v1/backups/{snap_id}")), 409, "busy");
    assert_error(
        &post(&d, &format!("/v1/backups/{snap_id}/hold"), json!({})),
        409,
        "busy",
    );
    assert_error(
        &delete(&d, &format!("/v1/backups/{snap_id}?force=maybe")),
        400,
        "invalid",
    );

    // Retention: keep-until set, cleared, lock only extended.
    let rp = format!("/v1/backups/{copy_id}/retention");
    let (s, b) = post(&d, &rp, json!({"keep_until": "2999-01-01T00:00:00+01:00"}));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["retention"]["keep_until"], "2998-12-31T23:00:00.000Z");
    let (s, b) = post(
        &d,
        &rp,
        json!({"clear_keep_until": true, "lock_until": "2030-01-01"}),
    );
    assert_eq!(s, 200, "{b}");
    assert!(b["retention"]["keep_until"].is_null(), "{b}");
    assert_eq!(b["retention"]["lock_until"], "2030-01-01T00:00:00.000Z");
    assert_error(
        &post(&d, &rp, json!({"lock_until": "2029-01-01"})),
        422,
        "invalid",
    );
    assert_error(
        &post(
            &d,
            &rp,
            json!({"keep_until": "2030-01-01", "keep_for": "1d"}),
        ),
        422,
        "invalid",
    );
    assert_error(
        &post(&d, &rp, json!({"keep_for": "1d", "clear_keep_until": true})),
        400,
        "invalid",
    );
    assert_error(
        &post(&d, &rp, json!({"keep_until": "soon"})),
        400,
        "invalid",
    );
    assert_error(
        &post(&d, &rp, json!({"keep_for": "forever"})),
        400,
        "invalid",
    );
    assert_error(&post(&d, &rp, json!({})), 400, "invalid");
    let locked = delete(&d, &format!("/v1/backups/{copy_id}?force=true"));
    assert_error_mentions(&locked, 409, "busy", "locked until");

    // A backup set: two volumes at one point in time, restored together.
    let set = create(&d, json!({"volumes": ["v", "w"], "label": "set"}));
    let set_id = set["set_id"].as_u64().unwrap();
    assert_eq!(set["backups"].as_array().unwrap().len(), 2);
    assert_eq!(
        set["backups"][0]["point_in_time"],
        set["backups"][1]["point_in_time"]
    );
    assert_eq!(set["backups"][1]["set_id"], set_id);
    wait_all(&d, &set);
    assert_eq!(list_ids(&d, &format!("?set={set_id}")).len(), 2);
    let (s, r) = retry_while_refused("host connection", || {
        post(&d, &format!("/v1/backup-sets/{set_id}/restore"), json!({}))
    });
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["undo_backups"].as_array().unwrap().len(), 2, "{r}");
    let job = wait_job(&d, r["job"].as_u64().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_error(
        &post(&d, "/v1/backup-sets/7/restore", json!({})),
        404,
        "not_found",
    );

    // Prune: a dry run says what and how much, and changes nothing.
    let before = list_ids(&d, "?status=complete");
    let (s, p) = post(
        &d,
        "/v1/volumes/v/prune",
        json!({"keep_last": 1, "dry_run": true}),
    );
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["dry_run"], true);
    let items = p["items"].as_array().unwrap();
    assert_eq!(
        p["removed"].as_u64().unwrap() + p["kept"].as_u64().unwrap(),
        items.len() as u64
    );
    for i in items {
        assert_eq!(
            i["keep"].as_bool().unwrap(),
            !i["reasons"].as_array().unwrap().is_empty()
        );
        assert!(i["error"].is_null());
    }
    assert_eq!(list_ids(&d, "?status=complete"), before);
    assert_error(
        &post(&d, "/v1/volumes/v/prune", json!({"dry_run": true})),
        422,
        "invalid",
    );
    assert_error(
        &post(&d, "/v1/volumes/nope/prune", json!({"keep_last": 1})),
        404,
        "not_found",
    );

    // The catalog agrees with the destinations; a rebuild finds them all.
    let (s, c) = get(&d, "/v1/catalog/check");
    assert_eq!(s, 200);
    assert_eq!(c["clean"], true, "{c}");
    assert_eq!(c["problems"], json!([]));
    let live = c["live"].as_u64().unwrap();
    assert_eq!(live, before.len() as u64);
    let (s, r) = call(&d, "POST", "/v1/catalog/rebuild", None, None);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["from_descriptors"], live);
    assert_eq!(r["kept_history"], 1, "the deleted snapshot backup: {r}");
    assert_eq!(get(&d, "/v1/catalog/check").1["clean"], true);

    // Bad input: 400 for what cannot be read, 404 for what does not exist.
    assert_error(&get(&d, "/v1/backups/abc"), 400, "invalid");
    assert_error(&get(&d, "/v1/backups/5"), 404, "not_found");
    assert_error(&delete(&d, "/v1/backups/5"), 404, "not_found");
    let bad = |body: Value| post(&d, "/v1/backups", body);
    assert_refusals(
        bad,
        &[
            (
                json!({"volumes": ["v"], "keep_until": "tomorrow"}),
                400,
                "invalid",
            ),
            (
                json!({"volumes": ["v"], "lock_until": "2026-02-30"}),
                400,
                "invalid",
            ),
            (
                json!({"volumes": ["v"], "keep_until": "2030-01-01", "keep_for": "1d"}),
                422,
                "invalid",
            ),
            (
                json!({"volumes": ["v"], "keep_for": "10000y"}),
                422,
                "invalid",
            ),
            (json!({"volumes": ["nope"]}), 404, "not_found"),
            (json!({"volumes": []}), 422, "invalid"),
            (json!({"volumes": ["v", "v"]}), 422, "invalid"),
            (json!({"volumes": ["v"], "method": "tape"}), 422, "invalid"),
            (json!({"volumes": ["v"], "colour": "red"}), 422, "invalid"),
            (
                json!({"volumes": ["v"], "label": "a\u{1}b"}),
                422,
                "invalid",
            ),
            (json!({"volumes": ["v"], "to": "w"}), 422, "invalid"),
        ],
    );
    assert_error(
        &post(&d, "/v1/backups/verify", json!({"ids": [5]})),
        404,
        "not_found",
    );
    assert_error(&post(&d, "/v1/backups/verify", json!({})), 422, "invalid");
    assert_error(
        &post(
            &d,
            "/v1/backups/verify",
            json!({"ids": [copy_id], "all": true}),
        ),
        400,
        "invalid",
    );
    assert_error(
        &call(
            &d,
            "POST",
            "/v1/catalog/rebuild",
            Some("{\"discard\": "),
            None,
        ),
        400,
        "invalid",
    );
    // Nothing above left a trace, and the daemon still serves.
    assert_eq!(get(&d, "/v1/catalog/check").1["clean"], true);
    d.stop();
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

/// Backups on a calendar (the daemon's backup clock reads a file), then prune: a dry run
/// says exactly what goes and why, the real run removes exactly that.
#[test]
fn prune_follows_a_scripted_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock");
    let d = Daemon::start_with_args(&[
        "--volume",
        "v=16M",
        "--test-clock-file",
        clock.to_str().unwrap(),
    ]);
    // Noon on 2026-01-01 (a Thursday, ISO week 2026-W01) to 2026-01-10 (W02).
    let noon_jan_1: u64 = 1_767_268_800_000;
    const DAY: u64 = 86_400_000;
    let mut ids = Vec::new();
    for day in 0..10 {
        std::fs::write(&clock, (noon_jan_1 + day * DAY).to_string()).unwrap();
        // Each day overwrites the same extent, so each day's backup alone holds its version.
        let data = qemu_io_if_installed(&d, "v", &[&format!("write -P {} 0 64k", day + 1)]);
        let c = create(&d, json!({"volumes": ["v"], "label": "daily"}));
        assert_eq!(
            c["backups"][0]["point_in_time"],
            format!("2026-01-{:02}T12:00:00.000Z", day + 1)
        );
        wait_all(&d, &c);
        ids.push((id_of(&c["backups"][0]), data));
    }
    std::fs::write(&clock, (noon_jan_1 + 9 * DAY + 3_600_000).to_string()).unwrap();
    let policy = json!({"keep_daily": 3, "keep_weekly": 2, "dry_run": true});
    let (s, p) = post(&d, "/v1/volumes/v/prune", policy);
    assert_eq!(s, 200, "{p}");
    let keep = |day: usize| {
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["backup"] == ids[day].0)
            .unwrap()
            .clone()
    };
    // Kept: the last three days, and the newest of each of the last two ISO weeks.
    assert_eq!(
        keep(9)["reasons"],
        json!(["keep-daily 2026-01-10", "keep-weekly 2026-W02"])
    );
    assert_eq!(keep(8)["reasons"], json!(["keep-daily 2026-01-09"]));
    assert_eq!(keep(7)["reasons"], json!(["keep-daily 2026-01-08"]));
    assert_eq!(keep(3)["reasons"], json!(["keep-weekly 2026-W01"]));
    for day in [0, 1, 2, 4, 5, 6] {
        assert_eq!(keep(day)["keep"], false, "day {day}: {p}");
        assert_eq!(keep(day)["reasons"], json!([]));
    }
    assert_eq!(
        (p["removed"].as_u64(), p["kept"].as_u64()),
        (Some(6), Some(4))
    );
    assert_eq!(keep(0)["point_in_time"], "2026-01-01T12:00:00.000Z");
    let freed = p["freed_bytes"].as_u64().unwrap();
    if ids[0].1 {
        // Each removed day's version was overwritten the next day: only its backup held it.
        assert_eq!(freed, 6 * 65536, "{p}");
        assert_eq!(keep(0)["frees_alone_bytes"], 65536);
    }
    assert_eq!(
        list_ids(&d, "?status=complete").len(),
        10,
        "a dry run changes nothing"
    );

    let (s, r) = post(
        &d,
        "/v1/volumes/v/prune",
        json!({"keep_daily": 3, "keep_weekly": 2}),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["dry_run"], false);
    assert_eq!(r["freed_bytes"].as_u64(), Some(freed));
    let mut left = list_ids(&d, "?status=complete");
    left.sort();
    assert_eq!(left, [ids[3].0, ids[7].0, ids[8].0, ids[9].0]);
    assert_eq!(list_ids(&d, "?status=deleted").len(), 6);
    assert_eq!(get(&d, "/v1/catalog/check").1["clean"], true);
    d.stop();
}

/// The empty export name means the only volume; volumes holding copy backups do not count,
/// so taking a backup does not break clients that use the default.
#[test]
fn default_export_ignores_backup_copies() {
    let d = Daemon::start_with_args(&["--volume", "only=16M"]);
    if !qemu_io_if_installed(&d, "", &["write -P 5 0 64k"]) {
        return;
    }
    let c = create(&d, json!({"volumes": ["only"], "method": "copy"}));
    wait_all(&d, &c);
    assert_eq!(get(&d, "/v1/volumes").1.as_array().unwrap().len(), 2);
    qemu_io_if_installed(&d, "", &["read -P 5 0 64k"]);
    d.stop();
}

/// Every backup endpoint is in the OpenAPI document, with its error statuses, and the
/// response links are spelled as OpenAPI spells them (schemathesis follows them).
#[test]
fn openapi_documents_the_backup_endpoints() {
    let doc = served_openapi();
    assert_documented(
        &doc,
        &[
            (
                "/v1/volumes/{name}/backup-targets",
                "get",
                &["200", "404"][..],
            ),
            ("/v1/backups", "post", &["201", "400", "404", "409", "422"]),
            ("/v1/backups", "get", &["200", "400", "404"]),
            ("/v1/backups/{id}", "get", &["200", "400", "404"]),
            ("/v1/backups/{id}", "delete", &["200", "400", "404", "409"]),
            (
                "/v1/backups/verify",
                "post",
                &["202", "400", "404", "409", "422"],
            ),
            (
                "/v1/backups/{id}/restore",
                "post",
                &["202", "400", "404", "409"],
            ),
            (
                "/v1/backup-sets/{id}/restore",
                "post",
                &["202", "404", "409"],
            ),
            ("/v1/backups/{id}/hold", "post", &["200", "404", "409"]),
            ("/v1/backups/{id}/release", "post", &["200", "404", "409"]),
            (
                "/v1/backups/{id}/retention",
                "post",
                &["200", "400", "404", "422"],
            ),
            ("/v1/volumes/{name}/prune", "post", &["200", "400", "404"]),
            ("/v1/catalog/check", "get", &["200"]),
            ("/v1/catalog/rebuild", "post", &["200", "400"]),
        ],
    );
    let meta = doc["paths"]["/v1/backups"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "meta")
        .unwrap()
        .clone();
    assert_eq!(meta["schema"]["type"], "array", "{meta}");
    assert_eq!(meta["explode"], true, "{meta}");
    let links = &doc["paths"]["/v1/backups"]["post"]["responses"]["201"]["links"];
    assert_eq!(links["Get"]["operationId"], "get_backup", "{links}");
    assert!(links["Get"]["operation_id"].is_null());
    assert_eq!(
        links["Verify"]["requestBody"],
        json!({"ids": ["$response.body#/backups/0/id"]})
    );
    for schema in [
        "Backup",
        "BackupEvent",
        "Verification",
        "PruneReport",
        "CatalogReport",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // A point in time before the previous generation's is flagged.
    let backup = &doc["components"]["schemas"]["Backup"];
    assert_eq!(
        backup["properties"]["clock_stepped_back"]["type"], "boolean",
        "{backup:#}"
    );
    let previous = &backup["properties"]["previous_point_in_time"];
    assert!(previous["format"] == "date-time", "{previous:#}");
}
