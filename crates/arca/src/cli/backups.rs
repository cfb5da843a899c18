//! `arca backup ...`, `arca restore` and `arca catalog ...`: the backups the array manages.

use anyhow::{Result, bail};
use arca_api::types::{
    AnnotateBackup, Backup, BackupList, BackupMethod, BackupTarget, CatalogReport, CreateBackup,
    CreatedBackups, JobResult, JobState, PruneBackups, PruneReport, RebuildCatalog, RebuildReport,
    RecordHostCopy, RestoreBackup, RestoreSet, Restored, SetRetention, Verification, VerifyBackups,
    VerifyStarted,
};

pub use super::backup_args::*;
use super::backup_text::*;
use super::client::{Client, seg};
use super::format::{self, Align, Table, or_dash};
use super::{Settings, jobs, print_json, show_or};

fn backup_path(id: arca_backup::BackupId) -> String {
    format!("/v1/backups/{id}")
}

pub fn run_backup(c: &Client, s: &Settings, cmd: BackupCmd) -> Result<()> {
    match cmd {
        BackupCmd::Targets { volume } => {
            let path = format!("/v1/volumes/{}/backup-targets", seg(&volume));
            let list: Vec<BackupTarget> = c.get(&path, &[])?;
            show_or(s, &list, || print!("{}", target_table(&list)))
        }
        BackupCmd::Create(a) => create(c, s, *a),
        BackupCmd::List(a) => list(c, s, a),
        BackupCmd::Show { id } => {
            let b: Backup = c.get(&backup_path(id), &[])?;
            show_or(s, &b, || print!("{}", backup_text(&b)))
        }
        BackupCmd::Verify { ids, all, no_wait } => verify(c, s, ids, all, no_wait),
        BackupCmd::Delete {
            id,
            force,
            keep_vault_copies,
        } => {
            let flag = |b: bool| if b { "true" } else { "false" };
            let b: Backup = c.delete_json(
                &backup_path(id),
                &[
                    ("force", flag(force)),
                    ("keep_vault_copies", flag(keep_vault_copies)),
                ],
            )?;
            show_or(s, &b, || {
                if b.off_array_since.is_some() {
                    println!(
                        "deleted the array's image of backup {id} ({} of {}); it lives on in {}",
                        b.method,
                        b.source.volume_name,
                        locations(&b)
                    )
                } else {
                    println!(
                        "deleted backup {id} ({} of {}); its record stays as history",
                        b.method, b.source.volume_name
                    )
                }
            })
        }
        BackupCmd::Annotate {
            id,
            label,
            description,
            content_id,
            meta,
            unset_meta,
        } => {
            let body = AnnotateBackup {
                label,
                description,
                content_id,
                meta: meta.into_iter().collect(),
                unset_meta,
            };
            let b: Backup = c.post_json(&format!("/v1/backups/{id}/annotate"), &body)?;
            show_or(s, &b, || println!("annotated backup {id}"))
        }
        BackupCmd::RecordCopy {
            id,
            medium,
            location,
            by,
            copied,
        } => {
            let body = RecordHostCopy {
                medium,
                location,
                by,
                copied,
            };
            let b: Backup = c.post_json(&format!("/v1/backups/{id}/host-copies"), &body)?;
            show_or(s, &b, || {
                println!("recorded the copy; backup {id} lives in {}", locations(&b))
            })
        }
        BackupCmd::Hold { id } => {
            let b: Backup = c.post_empty(&format!("/v1/backups/{id}/hold"))?;
            show_or(s, &b, || println!("backup {id} is on hold"))
        }
        BackupCmd::Release { id } => {
            let b: Backup = c.post_empty(&format!("/v1/backups/{id}/release"))?;
            show_or(s, &b, || println!("backup {id} is released from its hold"))
        }
        BackupCmd::Retain {
            id,
            keep_until,
            keep_for,
            clear_keep_until,
            lock_until,
        } => {
            let body = SetRetention {
                keep_until,
                keep_for,
                clear_keep_until,
                lock_until,
            };
            let b: Backup = c.post_json(&format!("/v1/backups/{id}/retention"), &body)?;
            show_or(s, &b, || {
                println!(
                    "backup {id}: keep until {}, lock until {}{}",
                    or_dash(b.retention.keep_until.as_ref()),
                    or_dash(b.retention.lock_until.as_ref()),
                    if b.retention.hold { ", on hold" } else { "" }
                )
            })
        }
        BackupCmd::Prune(a) => prune(c, s, a),
    }
}

fn create(c: &Client, s: &Settings, a: CreateArgs) -> Result<()> {
    let body = CreateBackup {
        volumes: a.volumes,
        to: a.to,
        method: a.method.map(|m| match m {
            MethodArg::Snapshot => BackupMethod::Snapshot,
            MethodArg::Copy => BackupMethod::Copy,
        }),
        label: a.label,
        program: a.program,
        host: a.host,
        app: a.app,
        content_id: a.content_id,
        description: a.description,
        meta: a.meta.into_iter().collect(),
        keep_until: a.keep_until,
        keep_for: a.keep_for,
        hold: a.hold,
        lock_until: a.lock_until,
    };
    let mut created: CreatedBackups = c.post_json("/v1/backups", &body)?;
    let copies = created
        .backups
        .iter()
        .any(|b| b.method == BackupMethod::Copy);
    if copies && !a.no_wait {
        // Wait for every copy, then show the records as they ended.
        let mut failures = Vec::new();
        for &job in &created.jobs {
            let j = jobs::wait_id(c, job)?;
            if j.state != JobState::Succeeded {
                failures.push(format!(
                    "job {job} {}: {}",
                    j.state,
                    j.error.as_deref().unwrap_or("no reason given")
                ));
            }
        }
        let mut fresh = Vec::new();
        for b in &created.backups {
            fresh.push(c.get::<Backup>(&backup_path(b.id), &[])?);
        }
        created.backups = fresh;
        print_created(s, &created, false)?;
        if !failures.is_empty() {
            bail!("the copy did not complete: {}", failures.join("; "));
        }
        return Ok(());
    }
    print_created(s, &created, copies)
}

fn print_created(s: &Settings, created: &CreatedBackups, running: bool) -> Result<()> {
    show_or(s, created, || {
        if let Some(set) = created.set_id {
            println!(
                "backup set {set}: {} taken at one point in time",
                format::count(created.backups.len() as u64, "volume")
            );
        }
        for (i, b) in created.backups.iter().enumerate() {
            let mut line = format!(
                "backup {}: {} of {} (generation {}) in {}, {}",
                b.id,
                b.method,
                b.source.volume_name,
                b.generation,
                destination(b),
                b.status
            );
            if let Some(r) = &b.status_reason {
                line.push_str(&format!(" ({r})"));
            }
            if running && let Some(job) = created.jobs.get(i) {
                line.push_str(&format!("; copying in job {job} (arca job wait {job})"));
            }
            println!("{line}");
        }
    })
}

fn list(c: &Client, s: &Settings, a: ListArgs) -> Result<()> {
    let mut q: Vec<(&str, String)> = Vec::new();
    let mut put = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            q.push((k, v));
        }
    };
    put("volume", a.volume);
    put("label", a.label);
    put("host", a.host);
    put("app", a.app);
    put("since", a.since);
    put("until", a.until);
    put("status", a.status.map(|x| x.to_string()));
    put("set", a.set.map(|x| x.to_string()));
    put("in_vault", a.in_vault);
    put("not_in_vault", a.not_in_vault);
    put("limit", a.limit.map(|x| x.to_string()));
    put("before", a.before.map(|x| x.to_string()));
    for (k, v) in a.meta {
        q.push(("meta", format!("{k}={v}")));
    }
    let query: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page: BackupList = c.get("/v1/backups", &query)?;
    show_or(s, &page, || {
        print!("{}", backup_table(&page.backups));
        if let Some(n) = page.next_before {
            eprintln!("(more backups: add --before {n} for the next page)");
        }
    })
}

fn verify(
    c: &Client,
    s: &Settings,
    ids: Vec<arca_backup::BackupId>,
    all: bool,
    no_wait: bool,
) -> Result<()> {
    let started: VerifyStarted = c.post_json("/v1/backups/verify", &VerifyBackups { ids, all })?;
    if no_wait {
        return show_or(s, &started, || println!("{}", started.job));
    }
    let job = jobs::wait_id(c, started.job)?;
    if s.json {
        print_json(&job)?;
    }
    jobs::succeeded(&job)?;
    let results: Vec<Verification> = match job.result.clone() {
        Some(JobResult::Verify(list)) => list,
        None => Vec::new(),
        Some(other) => bail!("the verify job's result is not a verification list: {other:?}"),
    };
    if !s.json {
        for v in &results {
            println!("{}", verification_line(v));
        }
    }
    let bad = results.iter().filter(|v| !v.ok).count();
    if bad > 0 {
        bail!(
            "{} of {} failed verification",
            bad,
            format::count(results.len() as u64, "backup")
        );
    }
    if !s.json && results.is_empty() {
        println!("no complete backup to verify");
    }
    Ok(())
}

fn prune(c: &Client, s: &Settings, a: PruneArgs) -> Result<()> {
    let body = PruneBackups {
        label: a.label,
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_newest_verified: a.no_keep_verified.then_some(false),
        dry_run: a.dry_run,
    };
    let path = format!("/v1/volumes/{}/prune", seg(&a.volume));
    let r: PruneReport = c.post_json(&path, &body)?;
    let refused = r.items.iter().filter(|i| i.error.is_some()).count();
    show_or(s, &r, || print!("{}", prune_text(&r)))?;
    if refused > 0 {
        bail!(
            "{} could not be removed",
            format::count(refused as u64, "backup")
        );
    }
    Ok(())
}

pub fn run_restore(c: &Client, s: &Settings, a: RestoreArgs) -> Result<()> {
    let r: Restored = match (a.set, a.id) {
        (Some(set), _) => c.post_json(
            &format!("/v1/backup-sets/{set}/restore"),
            &RestoreSet { force: a.force },
        )?,
        (None, Some(id)) => c.post_json(
            &format!("/v1/backups/{id}/restore"),
            &RestoreBackup {
                to: a.to,
                as_name: a.as_name.clone(),
                force: a.force,
            },
        )?,
        (None, None) => bail!("name a backup, or --set"),
    };
    let ids = |v: &[arca_backup::BackupId]| {
        v.iter()
            .map(arca_backup::BackupId::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let what = match a.set {
        Some(set) => format!("backup set {set} (backups {})", ids(&r.backups)),
        None => format!("backup {}", ids(&r.backups)),
    };
    let into = if a.as_name.is_some() {
        format!("new volume {}", r.volumes.join(", "))
    } else {
        r.volumes.join(", ")
    };
    // Several undo points are one backup set: undone together with `restore --set`.
    let undo_set = match r.undo_backups.as_slice() {
        [first, _, ..] if !s.json => c
            .get::<Backup>(&backup_path(*first), &[])
            .ok()
            .and_then(|b| b.set_id),
        _ => None,
    };
    let undo = || match (r.undo_backups.as_slice(), undo_set) {
        ([], _) => {}
        ([one], _) => println!("undo point: backup {one} (to undo: arca restore {one})"),
        (many, Some(set)) => println!(
            "undo point: backups {} (to undo: arca restore --set {set})",
            ids(many)
        ),
        (many, None) => println!("undo point: backups {}", ids(many)),
    };
    match r.job {
        Some(job) if a.no_wait => show_or(s, &r, || {
            println!("restoring {what} into {into} in job {job} (arca job wait {job})");
            undo();
        }),
        Some(job) => {
            let j = jobs::wait_id(c, job)?;
            if j.state != JobState::Succeeded {
                // Say where the undo point is even though the restore failed.
                if !s.json {
                    undo();
                }
                jobs::succeeded(&j)?;
            }
            show_or(s, &r, || {
                println!("restored {what} into {into}");
                undo();
            })
        }
        None => show_or(s, &r, || {
            println!("restored {what} into {into}");
            undo();
        }),
    }
}

pub fn run_catalog(c: &Client, s: &Settings, cmd: CatalogCmd) -> Result<()> {
    match cmd {
        CatalogCmd::Check => {
            let r: CatalogReport = c.get("/v1/catalog/check", &[])?;
            show_or(s, &r, || {
                if !r.problems.is_empty() {
                    let mut t = Table::new(&[
                        ("PROBLEM", Align::Left),
                        ("BACKUP", Align::Right),
                        ("MESSAGE", Align::Left),
                    ]);
                    for p in &r.problems {
                        t.row(vec![
                            p.code.clone(),
                            or_dash(p.backup),
                            p.message.replace('\n', " "),
                        ]);
                    }
                    print!("{}", t.render());
                }
                println!(
                    "catalog check: {} ({}, {} live, {})",
                    if r.clean { "clean" } else { "PROBLEMS FOUND" },
                    format::count(r.records, "record"),
                    r.live,
                    format::count(r.destinations, "destination")
                );
            })?;
            if !r.clean {
                let n = r.problems.len().max(1) as u64;
                bail!("catalog check found {}", format::count(n, "problem"));
            }
            Ok(())
        }
        CatalogCmd::Rebuild { discard } => {
            let r: RebuildReport =
                c.post_json("/v1/catalog/rebuild", &RebuildCatalog { discard })?;
            show_or(s, &r, || {
                println!(
                    "catalog rebuilt: {} from the destinations' descriptors, {} kept as history",
                    format::count(r.from_descriptors, "record"),
                    r.kept_history
                );
                for u in &r.unreadable_descriptors {
                    println!("unreadable descriptor: {u}");
                }
            })
        }
    }
}
