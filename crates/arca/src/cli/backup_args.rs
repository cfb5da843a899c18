//! The arguments of `arca backup ...`, `arca restore` and `arca catalog ...`.

use arca_api::types::BackupStatus;
use clap::builder::TypedValueParser;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};

use super::ClientOptions;

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
    Show { id: arca_backup::BackupId },
    /// Re-read backups and compare them with their digests; exits 1 when any is damaged
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "all"])))]
    Verify {
        /// The backups to verify
        ids: Vec<arca_backup::BackupId>,
        /// Verify every complete backup
        #[arg(long)]
        all: bool,
        /// Print the job id and return instead of waiting for the result
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete a backup's data; its record stays as history. A backup with vault copies is
    /// refused unless --keep-vault-copies (deleting vault copies is not available yet)
    Delete {
        id: arca_backup::BackupId,
        /// Delete before its keep-until time (never under a hold or a retention lock)
        #[arg(long)]
        force: bool,
        /// Delete only the array's image of a backup with vault copies: the backup stays
        /// complete, living in its vault copies (deleting the vault copies themselves is not
        /// available yet)
        #[arg(long)]
        keep_vault_copies: bool,
    },
    /// Change what was said about a backup (label, description, content id, metadata)
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["label", "description", "content_id", "meta", "unset_meta"])))]
    Annotate {
        id: arca_backup::BackupId,
        /// The new label
        #[arg(long)]
        label: Option<String>,
        /// The new description
        #[arg(long)]
        description: Option<String>,
        /// The new content identifier
        #[arg(long)]
        content_id: Option<String>,
        /// Set a key/value pair (repeatable)
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_meta)]
        meta: Vec<(String, String)>,
        /// Remove a key (repeatable)
        #[arg(long, value_name = "KEY")]
        unset_meta: Vec<String>,
    },
    /// Record a copy of a complete backup that you made yourself (a tape, a disk...)
    RecordCopy {
        id: arca_backup::BackupId,
        /// What holds the copy: tape, usb disk, ...
        #[arg(long)]
        medium: String,
        /// Where: a tape label, a path, ...
        #[arg(long)]
        location: Option<String>,
        /// The program that made the copy
        #[arg(long, value_name = "PROGRAM")]
        by: Option<String>,
        /// When the copy was made (RFC 3339 or a date; default now)
        #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
        copied: Option<String>,
    },
    /// Put a backup on hold: it is never deleted or pruned until released
    Hold { id: arca_backup::BackupId },
    /// Release a backup's hold
    Release { id: arca_backup::BackupId },
    /// Change a backup's retention: keep-until, and the retention lock (only ever extended)
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["keep_until", "keep_for", "clear_keep_until", "lock_until"])))]
    Retain {
        id: arca_backup::BackupId,
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
    /// Backups with a copy in this vault
    #[arg(long, value_name = "VAULT")]
    pub in_vault: Option<String>,
    /// Backups without a copy in this vault
    #[arg(long, value_name = "VAULT")]
    pub not_in_vault: Option<String>,
    /// At most this many (default 100, at most 100000)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub limit: Option<u64>,
    /// Only backups older than this id (the next page)
    #[arg(long, value_name = "ID")]
    pub before: Option<arca_backup::BackupId>,
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
    pub id: Option<arca_backup::BackupId>,
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
