//! `arca backup ...`, `arca restore` and `arca catalog ...`: the backups the array manages.

use anyhow::{Result, bail};
use arca_api::types::{
    Backup, BackupEvent, BackupList, BackupMethod, BackupStatus, BackupTarget, CatalogReport,
    CreateBackup, CreatedBackups, JobResult, JobState, PruneBackups, PruneReport, RebuildCatalog,
    RebuildReport, RestoreBackup, RestoreSet, Restored, SetRetention, Verification, VerifyBackups,
    VerifyStarted,
};
use clap::builder::TypedValueParser;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};

use super::client::{Client, seg};
use super::format::{self, Align, Table, fields, or_dash};
use super::{ClientOptions, Settings, jobs, print_json};

/// An RFC 3339 time (or a date), checked here so that a bad one is a usage error.
fn parse_time_arg(s: &str) -> Result<String, String> {
    arca_backup::time::parse_time(s).map(|_| s.to_string())
}

fn parse_duration_arg(s: &str) -> Result<String, String> {
    arca_backup::time::parse_duration(s).map(|_| s.to_string())
}

/// A status named on the command line (clap has checked it is one of the names).
fn status_arg(s: String) -> Result<BackupStatus, String> {
    BackupStatus::ALL
        .iter()
        .copied()
        .find(|x| x.as_str() == s)
        .ok_or_else(|| format!("unknown status {s:?}"))
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    /// A snapshot of the volume: instant, on the source's device
    Snapshot,
    /// A full copy into another volume
    Copy,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: BackupCmd,
}

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Where a volume can be backed up to, best first
    Targets { volume: String },
    /// Back up volumes (several at once make a backup set, taken at one point in time)
    Create(Box<CreateArgs>),
    /// List backups, newest first
    List(ListArgs),
    /// Show one backup's whole record, with its history
    Show { id: u64 },
    /// Re-read backups and compare them with their digests; exits 1 when any is damaged
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "all"])))]
    Verify {
        /// The backups to verify
        ids: Vec<u64>,
        /// Verify every complete backup
        #[arg(long)]
        all: bool,
        /// Print the job id and return instead of waiting for the result
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete a backup's data; its record stays as history
    Delete {
        id: u64,
        /// Delete before its keep-until time (never under a hold or a retention lock)
        #[arg(long)]
        force: bool,
    },
    /// Put a backup on hold: it is never deleted or pruned until released
    Hold { id: u64 },
    /// Release a backup's hold
    Release { id: u64 },
    /// Change a backup's retention: keep-until, and the retention lock (only ever extended)
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["keep_until", "keep_for", "clear_keep_until", "lock_until"])))]
    Retain {
        id: u64,
        /// Keep until this time (RFC 3339, e.g. 2027-01-01T00:00:00Z, or a date)
        #[arg(long, value_name = "TIME", value_parser = parse_time_arg,
              conflicts_with_all = ["keep_for", "clear_keep_until"])]
        keep_until: Option<String>,
        /// Keep for this long from now (e.g. 30d, 12h)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg,
              conflicts_with = "clear_keep_until")]
        keep_for: Option<String>,
        /// Remove the keep-until time
        #[arg(long)]
        clear_keep_until: bool,
        /// Lock until this time: deletion before is refused, even forced
        #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
        lock_until: Option<String>,
    },
    /// Apply a retention policy to a volume's backups (each label on its own)
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The volumes to back up
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
    /// Copy into this existing free volume (implies --method copy)
    #[arg(long, value_name = "VOLUME")]
    pub to: Option<String>,
    /// snapshot (default) or copy (default with --to)
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// A label to find and prune the backup by (e.g. nightly)
    #[arg(long)]
    pub label: Option<String>,
    /// The program taking the backup
    #[arg(long)]
    pub program: Option<String>,
    /// The host taking the backup
    #[arg(long)]
    pub host: Option<String>,
    /// The application whose data the volume holds
    #[arg(long)]
    pub app: Option<String>,
    /// Your identifier of the content
    #[arg(long)]
    pub content_id: Option<String>,
    /// Free text about the backup
    #[arg(long)]
    pub description: Option<String>,
    /// Free key/value information (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
    /// Keep for this long (e.g. 30d, 12h): deleting earlier needs --force, prune keeps it
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg,
          conflicts_with = "keep_until")]
    pub keep_for: Option<String>,
    /// Keep until this time (RFC 3339 or a date)
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub keep_until: Option<String>,
    /// Put the backup on hold
    #[arg(long)]
    pub hold: bool,
    /// Retention lock: no deletion before this time, even forced
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub lock_until: Option<String>,
    /// Do not wait for copies to finish: print the backups (copying) and their jobs
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Backups of this volume
    #[arg(long)]
    pub volume: Option<String>,
    /// Backups with this label
    #[arg(long)]
    pub label: Option<String>,
    /// Backups taken by this host
    #[arg(long)]
    pub host: Option<String>,
    /// Backups of this application
    #[arg(long)]
    pub app: Option<String>,
    /// Only backups with this key/value (repeatable: all must match)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
    /// Point in time at or after this (RFC 3339 or a date)
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub since: Option<String>,
    /// Point in time at or before this (RFC 3339 or a date)
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub until: Option<String>,
    /// Only backups in this state
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        BackupStatus::ALL.iter().map(|x| x.as_str())).try_map(status_arg))]
    pub status: Option<BackupStatus>,
    /// Backups of this backup set
    #[arg(long, value_name = "ID")]
    pub set: Option<u64>,
    /// At most this many (default 100, at most 100000)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub limit: Option<u64>,
    /// Only backups older than this id (the next page)
    #[arg(long, value_name = "ID")]
    pub before: Option<u64>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// The volume whose backups are pruned
    #[arg(long)]
    pub volume: String,
    /// Only backups with this label
    #[arg(long)]
    pub label: Option<String>,
    /// Keep the N newest
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest of each of the last N hours that have backups
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest of each of the last N days that have backups (UTC)
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest of each of the last N ISO weeks that have backups
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest of each of the last N months that have backups
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest of each of the last N years that have backups
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Do not keep the newest backup that verified good unless a rule keeps it
    #[arg(long)]
    pub no_keep_verified: bool,
    /// Say what would be removed and freed; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `arca restore`: a backup in place (into its source, or --to VOLUME), as a new volume
/// (--as NAME), or a whole backup set in place (--set ID).
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("what").required(true).args(["id", "set"])))]
pub struct RestoreArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    /// The backup to restore
    pub id: Option<u64>,
    /// Restore in place into this volume instead of the backup's source
    #[arg(long, value_name = "VOLUME", conflicts_with_all = ["as_name", "set"])]
    pub to: Option<String>,
    /// Restore into a new volume of this name
    #[arg(long = "as", value_name = "NAME", conflicts_with_all = ["force", "set"])]
    pub as_name: Option<String>,
    /// Restore every backup of this backup set in place
    #[arg(long, value_name = "SETID")]
    pub set: Option<u64>,
    /// Disconnect the volume's NBD clients instead of refusing
    #[arg(long)]
    pub force: bool,
    /// Print what was started and return instead of waiting for the job
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Args, Debug)]
pub struct CatalogArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: CatalogCmd,
}

#[derive(Subcommand, Debug)]
pub enum CatalogCmd {
    /// Check the catalog against the backups' data; exits 1 when it finds problems
    Check,
    /// Rebuild the catalog from the descriptors stored with the backups' data
    Rebuild {
        /// Ignore the old catalog entirely (for a damaged one): history of deleted backups is
        /// lost
        #[arg(long)]
        discard: bool,
    },
}

/// The JSON with `--json`, else what `human` prints.
fn show_or<T: serde::Serialize>(s: &Settings, value: &T, human: impl FnOnce()) -> Result<()> {
    if s.json {
        print_json(value)
    } else {
        human();
        Ok(())
    }
}

fn backup_path(id: u64) -> String {
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
        BackupCmd::Delete { id, force } => {
            let flag = if force { "true" } else { "false" };
            let b: Backup = c.delete_json(&backup_path(id), &[("force", flag)])?;
            show_or(s, &b, || {
                println!(
                    "deleted backup {id} ({} of {}); its record stays as history",
                    b.method, b.source.volume_name
                )
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

fn target_table(list: &[BackupTarget]) -> String {
    let mut t = Table::new(&[
        ("#", Align::Right),
        ("KIND", Align::Left),
        ("METHOD", Align::Left),
        ("VOLUME", Align::Left),
        ("DEVICE", Align::Right),
        ("REASON", Align::Left),
    ]);
    for (i, x) in list.iter().enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            x.kind.to_string(),
            x.method.to_string(),
            or_dash(x.volume.as_ref()),
            or_dash(x.device),
            x.reason.clone(),
        ]);
    }
    t.render()
}

/// Where a backup's image is: its export while it is complete, else where it was.
fn destination(b: &Backup) -> String {
    if let Some(e) = &b.destination.export {
        return e.clone();
    }
    match (b.status, &b.destination.snapshot) {
        (BackupStatus::Deleted, _) => "-".into(),
        (_, Some(snap)) => format!("{}@{snap}", b.destination.volume),
        (_, None) => b.destination.volume.clone(),
    }
}

fn verified(b: &Backup) -> &'static str {
    match b.verified {
        Some(true) => "ok",
        Some(false) => "DAMAGED",
        None => "-",
    }
}

fn backup_table(list: &[Backup]) -> String {
    let mut t = Table::new(&[
        ("ID", Align::Right),
        ("VOLUME", Align::Left),
        ("GEN", Align::Right),
        ("METHOD", Align::Left),
        ("STATUS", Align::Left),
        ("POINT IN TIME", Align::Left),
        ("LABEL", Align::Left),
        ("DESTINATION", Align::Left),
        ("VERIFIED", Align::Left),
    ]);
    for b in list {
        t.row(vec![
            b.id.to_string(),
            b.source.volume_name.clone(),
            b.generation.to_string(),
            b.method.to_string(),
            b.status.to_string(),
            b.point_in_time.clone(),
            or_dash(b.info.label.as_ref()),
            destination(b),
            verified(b).to_string(),
        ]);
    }
    t.render()
}

fn damaged_text(damaged: &[[u64; 2]]) -> String {
    damaged
        .iter()
        .map(|[o, l]| format!("{o}..{}", o + l))
        .collect::<Vec<_>>()
        .join(", ")
}

fn event_text(e: &BackupEvent) -> String {
    match e {
        BackupEvent::Verified { ok: true, .. } => "verified: ok".into(),
        BackupEvent::Verified {
            ok: false,
            damaged,
            damaged_ranges,
        } => {
            if damaged.is_empty() {
                "verified: FAILED (see the verify job's error)".into()
            } else {
                let more = *damaged_ranges as usize > damaged.len();
                format!(
                    "verified: DAMAGED, {} (bytes {}{})",
                    format::count(*damaged_ranges, "range"),
                    damaged_text(damaged),
                    if more { ", ..." } else { "" }
                )
            }
        }
        BackupEvent::Restored { to, in_place } => format!(
            "restored into {to}{}",
            if *in_place {
                " (in place)"
            } else {
                " (new volume)"
            }
        ),
        BackupEvent::Copied { to } => format!("copied to {to}"),
        BackupEvent::Consumed { by } => format!("consumed by {by}"),
        BackupEvent::Retention { what } => format!("retention: {what}"),
        BackupEvent::RestoreResumed { to } => {
            format!("restore into {to} resumed after a restart")
        }
        BackupEvent::RestoreRolledBack {
            to,
            undo_backup,
            reason,
        } => format!("restore into {to} rolled back to undo point {undo_backup}: {reason}"),
        BackupEvent::RestoreFailed { to, reason } => {
            format!("restore as new volume {to} failed, the volume was removed: {reason}")
        }
    }
}

fn backup_text(b: &Backup) -> String {
    let d = &b.destination;
    let dest = match (&d.snapshot, d.created) {
        (Some(snap), _) => format!("snapshot {}@{snap}", d.volume),
        (None, Some(true)) => format!("volume {} (made for the backup)", d.volume),
        (None, _) => format!("volume {}", d.volume),
    };
    let dest = match d.device {
        Some(n) => format!("{dest}, device {n}"),
        None => dest,
    };
    let meta = if b.info.meta.is_empty() {
        "-".to_string()
    } else {
        b.info
            .meta
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let digest = match (&b.digest, b.status) {
        (Some(g), _) => format!(
            "{} ({} of {})",
            g.root,
            format::count(g.extents, "extent"),
            format::size(g.extent_size)
        ),
        (None, BackupStatus::Complete | BackupStatus::Copying) => "pending".into(),
        (None, _) => "-".into(),
    };
    let status = match &b.status_reason {
        Some(r) => format!("{} ({r})", b.status),
        None => b.status.to_string(),
    };
    let rows = vec![
        ("id", b.id.to_string()),
        ("status", status),
        (
            "volume",
            format!(
                "{} (id {}, {})",
                b.source.volume_name,
                b.source.volume_id,
                format::size(b.source.size)
            ),
        ),
        ("generation", b.generation.to_string()),
        ("method", b.method.to_string()),
        ("destination", dest),
        (
            "export",
            match (&d.export, &d.uri) {
                (Some(_), Some(uri)) => format!("{uri} (read-only)"),
                (Some(e), None) => e.clone(),
                _ => "-".into(),
            },
        ),
        (
            "point in time",
            match &b.previous_point_in_time {
                Some(prev) if b.clock_stepped_back => format!(
                    "{} (earlier than generation {}'s {prev}: the clock was moved back)",
                    b.point_in_time,
                    b.generation.saturating_sub(1)
                ),
                _ => b.point_in_time.clone(),
            },
        ),
        ("started", b.started.clone()),
        ("completed", or_dash(b.completed.as_ref())),
        (
            "allocated",
            format!(
                "{} of {}",
                format::size(b.allocated_bytes),
                format::size(b.logical_bytes)
            ),
        ),
        (
            "unique",
            b.unique_bytes.map_or_else(|| "-".to_string(), format::size),
        ),
        ("label", or_dash(b.info.label.as_ref())),
        ("program", or_dash(b.info.program.as_ref())),
        ("host", or_dash(b.info.host.as_ref())),
        ("application", or_dash(b.info.application.as_ref())),
        ("content id", or_dash(b.info.content_id.as_ref())),
        ("description", or_dash(b.info.description.as_ref())),
        ("meta", meta),
        ("keep until", or_dash(b.retention.keep_until.as_ref())),
        (
            "hold",
            if b.retention.hold { "yes" } else { "no" }.to_string(),
        ),
        ("lock until", or_dash(b.retention.lock_until.as_ref())),
        ("set", or_dash(b.set_id)),
        ("digest", digest),
        (
            "verified",
            match b.verified {
                Some(true) => "ok".into(),
                Some(false) => "DAMAGED".into(),
                None => "never".into(),
            },
        ),
        ("job", or_dash(b.job)),
    ];
    let mut out = fields(&rows);
    out.push_str("history:\n");
    if b.history.is_empty() {
        out.push_str("  -\n");
    }
    for h in &b.history {
        out.push_str(&format!("  {}  {}\n", h.at, event_text(&h.event)));
    }
    out
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

fn verification_line(v: &Verification) -> String {
    if v.ok {
        return format!("backup {}: ok", v.backup);
    }
    let mut parts = Vec::new();
    if !v.damaged.is_empty() {
        parts.push(format!(
            "DAMAGED, {} ({} bytes) in {}: {}",
            format::size(v.damaged_bytes),
            v.damaged_bytes,
            format::count(v.damaged.len() as u64, "range"),
            damaged_text(&v.damaged)
        ));
    }
    if v.unreadable_extents > 0 {
        parts.push(format!(
            "{} unreadable",
            format::count(v.unreadable_extents, "extent")
        ));
    }
    if let Some(e) = &v.error {
        parts.push(format!("error: {e}"));
    }
    if parts.is_empty() {
        parts.push("FAILED".into());
    }
    format!("backup {}: {}", v.backup, parts.join("; "))
}

fn verify(c: &Client, s: &Settings, ids: Vec<u64>, all: bool, no_wait: bool) -> Result<()> {
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

fn prune_text(r: &PruneReport) -> String {
    let mut t = Table::new(&[
        ("ACTION", Align::Left),
        ("ID", Align::Right),
        ("POINT IN TIME", Align::Left),
        ("LABEL", Align::Left),
        ("REASONS", Align::Left),
        ("FREES", Align::Right),
    ]);
    for i in &r.items {
        let (action, why) = match (&i.error, i.keep) {
            (_, true) => ("KEEP", i.reasons.join(", ")),
            (Some(e), false) => ("REFUSED", e.replace('\n', " ")),
            (None, false) => ("REMOVE", "-".to_string()),
        };
        t.row(vec![
            action.to_string(),
            i.backup.to_string(),
            i.point_in_time.clone(),
            or_dash(i.label.as_ref()),
            why,
            format::size(i.frees_alone_bytes),
        ]);
    }
    let mut out = if r.items.is_empty() {
        "no complete backup to prune\n".to_string()
    } else {
        t.render()
    };
    let verb = if r.dry_run {
        "dry run: would remove"
    } else {
        "removed"
    };
    let freed = if r.dry_run { "would free" } else { "freed" };
    out.push_str(&format!(
        "{verb} {} of {}, kept {}; {freed} {} ({} bytes)\n",
        r.removed,
        format::count(r.removed + r.kept, "backup"),
        r.kept,
        format::size(r.freed_bytes),
        r.freed_bytes
    ));
    out
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
    let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
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
