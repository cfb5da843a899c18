//! Backup policies on a simulated clock: every scheduling and safety rule.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use arca_backup::catalog::Query;
use arca_backup::policy::{Keep, PolicySpec, RunRecord, RunResult, Step, Track, Trigger};
use arca_backup::{BackupRecord, CreateRequest, HostInfo, Policies, Status};
use arca_store::sim::CrashMode;

use crate::util::*;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

fn open(r: &Rig) -> Arc<Policies> {
    Policies::open(r.backups.clone()).unwrap()
}

fn spec(volumes: &[&str], snapshot: &str) -> PolicySpec {
    PolicySpec {
        volumes: Some(volumes.iter().map(|v| v.to_string()).collect()),
        snapshot: Some(Some(snapshot.into())),
        ..PolicySpec::default()
    }
}

/// A rig with volumes `volumes` (16 extents each) and its policies.
fn policy_rig(volumes: &[&str]) -> (Rig, Arc<Policies>) {
    let specs: Vec<_> = volumes.iter().map(|v| (*v, 16, None)).collect();
    let r = rig_with(&[64 * MIB], &specs);
    let p = open(&r);
    (r, p)
}

/// An hourly policy over `volumes` that keeps the newest `n` backups.
fn hourly_keeping_last(volumes: &[&str], n: u32) -> PolicySpec {
    PolicySpec {
        keep: Some(Keep {
            last: Some(n),
            ..Keep::default()
        }),
        ..spec(volumes, "hourly")
    }
}

/// One tick at the rig's time; waits for the runs and the jobs they started.
fn tick(r: &Rig, p: &Arc<Policies>) -> usize {
    let n = p.tick().unwrap();
    assert!(p.wait_idle(Duration::from_secs(60)), "runs did not end");
    r.wait_all();
    n
}

/// Moves the clock to `until_ms` in steps of `step_ms`, ticking at each; returns the runs.
fn drive(r: &Rig, p: &Arc<Policies>, until_ms: u64, step_ms: u64) -> usize {
    let mut runs = 0;
    while r.now_ms.load(Ordering::SeqCst) < until_ms {
        r.advance(step_ms);
        runs += tick(r, p);
    }
    runs
}

fn set_time(r: &Rig, ms: u64) {
    r.now_ms.store(ms, Ordering::SeqCst);
}

fn own_backups(r: &Rig, policy: &str) -> Vec<BackupRecord> {
    let program = format!("arca-policy/{policy}");
    let mut v = r
        .backups
        .list(&Query {
            status: Some(Status::Complete),
            limit: 100_000,
            ..Query::default()
        })
        .unwrap();
    v.retain(|b| b.info.program.as_deref() == Some(program.as_str()));
    v
}

fn history(p: &Policies, name: &str) -> Vec<RunRecord> {
    p.history(name, 1000).unwrap()
}

fn count(p: &Policies, name: &str, result: RunResult) -> u64 {
    p.run_counts()
        .into_iter()
        .find(|(n, r, _)| n == name && *r == result)
        .map_or(0, |(_, _, c)| c)
}

/// The hours (since the epoch) of the policy's complete backups: those with an image on the
/// array, and those with a copy in vault `vault`.
fn hours_left(r: &Rig, policy: &str, vault: &str) -> (Vec<u64>, Vec<u64>) {
    let hour = |b: &BackupRecord| (b.point_in_time_ms - EPOCH_MS) / HOUR_MS;
    let all = own_backups(r, policy);
    let mut array: Vec<u64> = all.iter().filter(|b| b.on_array()).map(hour).collect();
    let mut in_vault: Vec<u64> = all
        .iter()
        .filter(|b| b.vault_copies.iter().any(|c| c.vault == vault))
        .map(hour)
        .collect();
    array.sort();
    in_vault.sort();
    (array, in_vault)
}

pub(crate) fn dir_vault(r: &Rig, name: &str, dir: &std::path::Path) {
    r.backups
        .add_vault(arca_backup::NewVault {
            name: name.into(),
            url: format!("file://{}", dir.display()),
            ..arca_backup::NewVault::default()
        })
        .unwrap();
}

#[test]
fn a_simulated_week_of_an_hourly_policy_leaves_exactly_the_expected_backups() {
    let (r, p) = policy_rig(&["db", "web"]);
    let dir = tempfile::tempdir().unwrap();
    dir_vault(&r, "off", &dir.path().join("off"));
    let mut s = spec(&["db"], "hourly");
    s.keep = Some(Keep {
        last: Some(6),
        daily: Some(7),
        ..Keep::default()
    });
    s.copy_to = Some(Some("off".into()));
    s.copy = Some(Some("daily".into()));
    // A day more than the array keeps: the first day lives on in the vault only.
    s.vault_keep = Some(Keep {
        daily: Some(8),
        ..Keep::default()
    });
    p.create("hourly", s).unwrap();
    let mut hour = 0;
    while hour < 7 * 24 {
        hour += 1;
        // Some change every hour: each copy has new data.
        r.write("db", (hour % 16) * ES, &pattern(hour, 512));
        drive(&r, &p, EPOCH_MS + hour * HOUR_MS, 15 * MINUTE_MS);
    }
    assert_eq!(
        count(&p, "hourly", RunResult::Succeeded),
        168,
        "one run per hour, from 01:00 on day 1 to 00:00 on day 8; the daily copies ran \
         with the hourly snapshots"
    );
    let (array, vault) = hours_left(&r, "hourly", "off");
    // keep-last 6: hours 163..=168; keep-daily 7: 168 (day 8) and the last hour of days 2..7.
    assert_eq!(array, [47, 71, 95, 119, 143, 163, 164, 165, 166, 167, 168]);
    // Copied each midnight: what the array held then and the vault did not; vault keep-daily
    // 8: the last hour of days 1..7 and day 8's midnight (hour 23 is on no array any more).
    assert_eq!(vault, [23, 47, 71, 95, 119, 143, 167, 168]);
    // What is in neither place was deleted; what the vault holds is in its manifests.
    let listed = r
        .backups
        .open_vault("off")
        .unwrap()
        .list_manifests()
        .unwrap();
    let mut in_vault: Vec<u64> = own_backups(&r, "hourly")
        .iter()
        .filter(|b| !b.vault_copies.is_empty())
        .map(|b| b.id.get())
        .collect();
    in_vault.sort();
    assert_eq!(listed, in_vault);
    // Every backup is the policy's, of db only, labelled with its name.
    for b in own_backups(&r, "hourly") {
        assert_eq!(b.source.volume_name, "db");
        assert_eq!(b.info.label.as_deref(), Some("hourly"));
    }
    let h = history(&p, "hourly");
    assert_eq!(
        h.len(),
        arca_backup::policy::record::HISTORY_MAX,
        "history is bounded"
    );
    assert!(h.iter().all(|x| x.result == RunResult::Succeeded));
    assert_eq!(h[0].seq, 167, "newest first");
    assert_eq!(
        h[0].planned,
        [Step::Snapshot, Step::Prune, Step::Copy, Step::VaultPrune]
    );
    assert_eq!(h[0].tracks, [Track::Snapshot, Track::Copy]);
    assert!(
        h[0].steps[2]
            .summary
            .starts_with("copied 6 backup(s) to vault off (6 incremental)"),
        "{}",
        h[0].steps[2].summary
    );
    assert_eq!(h[1].planned, [Step::Snapshot, Step::Prune]);
    assert_eq!(count(&p, "hourly", RunResult::Succeeded), 168);
    let (_, state) = p.get("hourly").unwrap();
    assert_eq!(state.last_success_ms, Some(EPOCH_MS + 7 * DAY_MS));
    r.assert_clean();
}

#[test]
fn downtime_gives_one_catch_up_run_per_calendar() {
    let (r, p) = policy_rig(&["db"]);
    let mut s = spec(&["db"], "hourly");
    s.verify = Some(Some("*:30".into()));
    p.create("p", s).unwrap();
    // 00:30 verifies (nothing yet), 01:00 takes a backup.
    assert_eq!(drive(&r, &p, EPOCH_MS + HOUR_MS, 10 * MINUTE_MS), 2);
    // The array stops for ten hours: a new service opens on the same metadata.
    drop(p);
    set_time(&r, EPOCH_MS + 11 * HOUR_MS + 5 * MINUTE_MS);
    let p = open(&r);
    assert_eq!(tick(&r, &p), 1, "one run for both calendars' missed slots");
    let h = history(&p, "p");
    assert_eq!(h[0].trigger, Trigger::CatchUp);
    assert_eq!(h[0].tracks, [Track::Snapshot, Track::Verify]);
    assert_eq!(h[0].slot_ms, Some(EPOCH_MS + HOUR_MS + 30 * MINUTE_MS));
    // Verify was due at 01:30, snapshot at 02:00: each passed nine more slots.
    assert_eq!(h[0].slots_missed, 9);
    assert_eq!(h[0].result, RunResult::Succeeded, "{:?}", h[0]);
    assert_eq!(tick(&r, &p), 0, "no second catch-up");
    assert_eq!(own_backups(&r, "p").len(), 2);
    // Then on the calendars again: 11:30 verify, 12:00 snapshot.
    assert_eq!(drive(&r, &p, EPOCH_MS + 12 * HOUR_MS, 5 * MINUTE_MS), 2);
}

#[test]
fn clock_jumps_neither_lose_nor_duplicate_runs() {
    let (r, p) = policy_rig(&["db"]);
    p.create("p", spec(&["db"], "hourly")).unwrap();
    assert_eq!(drive(&r, &p, EPOCH_MS + 2 * HOUR_MS, 10 * MINUTE_MS), 2);
    // A day forward: one catch-up, not 24 runs.
    r.advance(DAY_MS);
    assert_eq!(tick(&r, &p), 1);
    assert_eq!(tick(&r, &p), 0);
    assert_eq!(history(&p, "p")[0].trigger, Trigger::CatchUp);
    // Two days back: nothing at once, and the next run within the hour, not in two days.
    r.now_ms.fetch_sub(2 * DAY_MS, Ordering::SeqCst);
    let back = r.now_ms.load(Ordering::SeqCst);
    assert_eq!(tick(&r, &p), 0);
    let next = p.next_runs("p", 1).unwrap()[0].1[0];
    assert!(
        next > back && next <= back + HOUR_MS,
        "next {next}, now {back}"
    );
    assert_eq!(drive(&r, &p, back + 3 * HOUR_MS, 10 * MINUTE_MS), 3);
    assert_eq!(own_backups(&r, "p").len(), 2 + 1 + 3);
}

#[test]
fn a_slot_coming_while_a_run_goes_is_recorded_as_skipped() {
    let (r, p) = policy_rig(&["db"]);
    p.create("p", spec(&["db"], "*:*:00")).unwrap();
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    p.set_step_hook(Some(Arc::new(move |_: &str, step: Step| {
        if step == Step::Snapshot {
            entered_tx.send(()).unwrap();
            release_rx.lock().unwrap().recv().unwrap();
        }
    })));
    r.advance(MINUTE_MS);
    assert_eq!(p.tick().unwrap(), 1);
    entered.recv_timeout(Duration::from_secs(30)).unwrap();
    let (seq, job) = p.running("p").expect("running");
    assert_eq!(seq, 0);
    r.advance(MINUTE_MS);
    assert_eq!(
        p.tick().unwrap(),
        0,
        "the next slot does not start a second run"
    );
    let h = history(&p, "p");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].result, RunResult::Skipped);
    assert_eq!(h[0].seq, 1);
    let why = h[0].reason.as_deref().unwrap();
    assert!(
        why.contains("run 0") && why.contains(&job.unwrap().to_string()),
        "{why}"
    );
    assert!(
        p.delete("p")
            .unwrap_err()
            .to_string()
            .contains("is running")
    );
    assert!(
        p.run_now("p", None)
            .unwrap_err()
            .to_string()
            .contains("already running")
    );
    p.set_step_hook(None);
    release.send(()).unwrap();
    assert!(p.wait_idle(Duration::from_secs(30)));
    let h = history(&p, "p");
    assert_eq!(
        h.iter().map(|x| (x.seq, x.result)).collect::<Vec<_>>(),
        [(1, RunResult::Skipped), (0, RunResult::Succeeded)]
    );
    assert_eq!(count(&p, "p", RunResult::Skipped), 1);
    let (_, state) = p.get("p").unwrap();
    assert_eq!(
        state.tracks[&Track::Snapshot].last_result,
        Some(RunResult::Succeeded),
        "the run that ended last"
    );
}

#[test]
fn a_failing_step_is_recorded_and_retried_at_the_next_slot() {
    let (r, p) = policy_rig(&["web"]);
    p.create("dbs", hourly_keeping_last(&["db-*"], 3)).unwrap();
    assert_eq!(drive(&r, &p, EPOCH_MS + HOUR_MS, 10 * MINUTE_MS), 1);
    let h = history(&p, "dbs");
    assert_eq!(h[0].result, RunResult::Failed);
    assert_eq!(
        h[0].reason.as_deref(),
        Some("snapshot failed: no volume matches db-*")
    );
    assert_eq!(
        h[0].steps.len(),
        1,
        "prune is not attempted after a failed snapshot"
    );
    let (_, state) = p.get("dbs").unwrap();
    let t = &state.tracks[&Track::Snapshot];
    assert_eq!(t.last_result, Some(RunResult::Failed));
    assert!(
        t.last_reason
            .as_deref()
            .unwrap()
            .contains("no volume matches")
    );
    assert_eq!(state.last_success_ms, None);
    assert_eq!(count(&p, "dbs", RunResult::Failed), 1);
    // Volumes created after the policy are included from the next run.
    r.pool.create_volume("db-1", 16 * ES, None).unwrap();
    r.pool.create_volume("db-2", 16 * ES, None).unwrap();
    assert_eq!(drive(&r, &p, EPOCH_MS + 2 * HOUR_MS, 10 * MINUTE_MS), 1);
    let h = history(&p, "dbs");
    assert_eq!(h[0].result, RunResult::Succeeded, "{:?}", h[0]);
    assert_eq!(h[0].steps[0].backups.len(), 2);
    let mut sources: Vec<String> = own_backups(&r, "dbs")
        .into_iter()
        .map(|b| b.source.volume_name)
        .collect();
    sources.sort();
    assert_eq!(sources, ["db-1", "db-2"]);
    let (_, state) = p.get("dbs").unwrap();
    assert_eq!(state.last_success_ms, Some(EPOCH_MS + 2 * HOUR_MS));
}

#[test]
fn a_paused_policy_does_nothing_and_says_so() {
    let (r, p) = policy_rig(&["db"]);
    let mut s = spec(&["db"], "hourly");
    s.paused = Some(true);
    p.create("p", s).unwrap();
    assert_eq!(drive(&r, &p, EPOCH_MS + 5 * HOUR_MS, 10 * MINUTE_MS), 0);
    assert!(history(&p, "p").is_empty());
    let e = p.run_now("p", None).unwrap_err().to_string();
    assert!(e.contains("paused"), "{e}");
    assert!(own_backups(&r, "p").is_empty());
    // Resumed: on the calendar from now, without catching up the paused hours.
    p.set_paused("p", false).unwrap();
    assert_eq!(tick(&r, &p), 0);
    assert_eq!(drive(&r, &p, EPOCH_MS + 6 * HOUR_MS, 10 * MINUTE_MS), 1);
    assert_eq!(history(&p, "p")[0].trigger, Trigger::Schedule);
}

#[test]
fn prune_touches_only_the_policys_own_unprotected_backups() {
    let (r, p) = policy_rig(&["db"]);
    let mut s = hourly_keeping_last(&["db"], 1);
    s.label = Some("nightly".into());
    p.create("p", s).unwrap();
    // A backup made by hand with the same label, and the policy's first backup held.
    let manual = r.create_ok(CreateRequest {
        volumes: vec!["db".into()],
        info: HostInfo {
            label: Some("nightly".into()),
            ..HostInfo::default()
        },
        ..CreateRequest::default()
    });
    assert_eq!(drive(&r, &p, EPOCH_MS + HOUR_MS, 10 * MINUTE_MS), 1);
    let first = own_backups(&r, "p")[0].id;
    r.backups.hold(first, true).unwrap();
    assert_eq!(drive(&r, &p, EPOCH_MS + 4 * HOUR_MS, 10 * MINUTE_MS), 3);
    let left: Vec<_> = own_backups(&r, "p").into_iter().map(|b| b.id).collect();
    assert_eq!(left.len(), 2, "the newest and the held one");
    assert!(left.contains(&first));
    assert_eq!(
        r.backups.get(manual.records[0].id).unwrap().status,
        Status::Complete,
        "a backup the policy did not make is never pruned"
    );
    let h = history(&p, "p");
    let removed = h[0].steps[1].backups[0];
    assert_eq!(
        h[0].steps[1].summary,
        format!(
            "removed 1 ({removed}), kept 2 (hold 1, keep-last 1); kept for a protection: \
             {first} (hold)"
        )
    );
}

/// A policy's prune gives up only the array's image of a backup copied to a vault, as
/// `backup prune` does: the vault copy and the record stay (it used to delete with the
/// options of `backup delete`, which deletes vault copies too).
#[test]
fn a_policy_prune_keeps_the_vault_copies_of_what_it_prunes() {
    let (r, p) = policy_rig(&["db"]);
    p.create("p", hourly_keeping_last(&["db"], 1)).unwrap();
    assert_eq!(drive(&r, &p, EPOCH_MS + HOUR_MS, 10 * MINUTE_MS), 1);
    let first = own_backups(&r, "p")[0].id;
    r.backups
        .add_vault(crate::vaults::dir_vault("off"))
        .unwrap();
    r.backups
        .record_vault_copy(first, crate::vaults::copy_of(&r, first, "off"))
        .unwrap();
    assert_eq!(drive(&r, &p, EPOCH_MS + 2 * HOUR_MS, 10 * MINUTE_MS), 1);
    let h = history(&p, "p");
    assert_eq!(h[0].result, RunResult::Succeeded, "{:?}", h[0]);
    let rec = r.backups.get(first).unwrap();
    assert_eq!(rec.status, Status::Complete);
    assert!(
        rec.off_array_since_ms.is_some(),
        "the array's image is gone"
    );
    assert_eq!(rec.vault_copies.len(), 1, "the vault copy stays");
    // A backup living only in the vault is no longer the policy's to prune: the next run
    // succeeds and leaves it alone.
    assert_eq!(drive(&r, &p, EPOCH_MS + 3 * HOUR_MS, 10 * MINUTE_MS), 1);
    assert_eq!(history(&p, "p")[0].result, RunResult::Succeeded);
    assert_eq!(r.backups.get(first).unwrap().vault_copies.len(), 1);
}

#[test]
fn a_run_interrupted_by_a_crash_is_recorded_as_interrupted_and_state_survives() {
    let (r, p) = policy_rig(&["db"]);
    p.create("p", spec(&["db"], "hourly")).unwrap();
    assert_eq!(drive(&r, &p, EPOCH_MS + HOUR_MS, 10 * MINUTE_MS), 1);
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    p.set_step_hook(Some(Arc::new(move |_: &str, _: Step| {
        entered_tx.send(()).unwrap();
        let _ = release_rx.lock().unwrap().recv();
    })));
    r.advance(HOUR_MS);
    assert_eq!(p.tick().unwrap(), 1);
    entered.recv_timeout(Duration::from_secs(30)).unwrap();
    // The array crashes during the run.
    let r2 = r.reopen_on(r.crash_devices(CrashMode::LoseAll));
    drop(release);
    let p2 = open(&r2);
    let h = history(&p2, "p");
    assert_eq!(
        h.iter().map(|x| (x.seq, x.result)).collect::<Vec<_>>(),
        [(1, RunResult::Interrupted), (0, RunResult::Succeeded)]
    );
    assert!(h[0].reason.as_deref().unwrap().contains("interrupted"));
    assert_eq!(count(&p2, "p", RunResult::Interrupted), 1);
    let (record, state) = p2.get("p").unwrap();
    assert_eq!(record.snapshot.as_deref(), Some("hourly"));
    assert_eq!(state.running, None);
    assert_eq!(state.next_seq, 2);
    assert_eq!(state.last_success_ms, Some(EPOCH_MS + HOUR_MS));
    // The next slot runs as usual.
    assert_eq!(drive(&r2, &p2, EPOCH_MS + 3 * HOUR_MS, 10 * MINUTE_MS), 1);
    assert_eq!(history(&p2, "p")[0].result, RunResult::Succeeded);
}

#[test]
fn rolling_verify_stays_within_its_budget_and_covers_every_backup_in_turn() {
    let r = rig_with(
        &[64 * MIB],
        &[("a", 16, None), ("b", 16, None), ("c", 16, None)],
    );
    for v in ["a", "b", "c"] {
        r.write(v, 0, &pattern(v.as_bytes()[0] as u64, 8192));
    }
    let p = open(&r);
    let mut s = spec(&["*"], "*-*-01 00:00");
    s.verify = Some(Some("hourly".into()));
    s.verify_budget_bytes = Some(Some(20 * ES));
    p.create("p", s).unwrap();
    p.run_now("p", Some(Step::Snapshot)).unwrap();
    assert!(p.wait_idle(Duration::from_secs(30)));
    r.wait_all();
    let mut verified = Vec::new();
    for hour in 1..=4 {
        assert_eq!(drive(&r, &p, EPOCH_MS + hour * HOUR_MS, 10 * MINUTE_MS), 1);
        let h = history(&p, "p");
        assert_eq!(h[0].result, RunResult::Succeeded, "{:?}", h[0]);
        let step = &h[0].steps[0];
        assert_eq!(step.step, Step::Verify);
        assert_eq!(step.backups.len(), 1, "16 extents each, a budget of 20");
        verified.push(step.backups[0]);
    }
    let mut first_three = verified[..3].to_vec();
    first_three.sort();
    first_three.dedup();
    assert_eq!(first_three.len(), 3, "each backup once before any twice");
    assert_eq!(
        verified[3], verified[0],
        "then the least recently verified again"
    );
}

#[test]
fn a_daily_policy_in_a_zone_with_dst_runs_once_on_each_change_day() {
    let (r, p) = policy_rig(&["db"]);
    let mut s = spec(&["db"], "02:30");
    s.tz = Some("Europe/Berlin".into());
    // 2026-03-28T00:00Z, the day before spring forward.
    let march = 1_774_656_000_000;
    set_time(&r, march);
    p.create("p", s).unwrap();
    assert_eq!(drive(&r, &p, march + 3 * DAY_MS, 10 * MINUTE_MS), 3);
    let mut started: Vec<u64> = history(&p, "p")
        .iter()
        .map(|h| h.slot_ms.unwrap())
        .collect();
    started.sort();
    // 01:30Z (02:30 +01), 01:00Z (the gap: 03:00 +02), 00:30Z (02:30 +02).
    assert_eq!(
        started,
        [
            march + HOUR_MS + 30 * MINUTE_MS,
            march + DAY_MS + HOUR_MS,
            march + 2 * DAY_MS + 30 * MINUTE_MS
        ]
    );
    // 2026-10-24T00:00Z, the day before fall back.
    let october = 1_792_800_000_000;
    set_time(&r, october);
    assert_eq!(tick(&r, &p), 1, "the clock jumped: one catch-up");
    assert_eq!(drive(&r, &p, october + 3 * DAY_MS, 10 * MINUTE_MS), 3);
    let h = history(&p, "p");
    let mut slots: Vec<u64> = h[..3].iter().map(|h| h.slot_ms.unwrap()).collect();
    slots.sort();
    // 00:30Z (02:30 +02), 00:30Z on the change day (the first 02:30), 01:30Z (02:30 +01).
    assert_eq!(
        slots,
        [
            october + 30 * MINUTE_MS,
            october + DAY_MS + 30 * MINUTE_MS,
            october + 2 * DAY_MS + HOUR_MS + 30 * MINUTE_MS
        ]
    );
}
