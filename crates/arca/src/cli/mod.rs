//! The command-line client: every command is a call to the daemon's HTTP API
//! (`arca serve --api ADDR`). Tables for people by default, the API's JSON with `--json`.
//!
//! Exit status: 0 success, 1 error (one `error: MESSAGE` line on stderr), 2 usage error.

mod audit;
mod backup_args;
mod backup_text;
mod backups;
mod client;
mod commands;
mod format;
mod jobs;
mod pairs;
mod policies;
mod tls_roots;
mod tokens;
mod vaults;

use std::io::Write as _;

use clap::{Args, Subcommand};
use serde::Serialize;

use client::{Client, normalize_api_url};

/// Used when neither `--api` nor `ARCA_API` says otherwise.
pub const DEFAULT_API: &str = "http://127.0.0.1:7410";

// The client options given before the subcommand (`arca --json volume list`). They are
// separate from `ClientOptions` (accepted after the subcommand) because a global `--api` at the
// top would clash with `arca serve --api ADDR`. (Plain comments: a doc comment here would become
// the help text of `arca` itself.)
#[derive(Args, Debug, Default)]
pub struct LeadingOptions {
    /// API of the daemon for the client commands [env: ARCA_API] [default: http://127.0.0.1:7410]
    #[arg(id = "leading_api", long = "api", value_name = "URL", value_parser = normalize_api_url)]
    pub api: Option<String>,
    /// Bearer token for the API, when the daemon requires one [env: ARCA_TOKEN]
    #[arg(id = "leading_token", long = "token", value_name = "TOKEN")]
    pub token: Option<String>,
    /// Client commands print the API's JSON instead of tables
    #[arg(id = "leading_json", long = "json")]
    pub json: bool,
    /// PEM CA certificate(s) an https:// API's certificate must chain to (default: the
    /// system's roots) [env: ARCA_CA_FILE]
    #[arg(id = "leading_ca_file", long = "ca-file", value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl LeadingOptions {
    /// True when any was given (they mean nothing to `serve`).
    pub fn given(&self) -> bool {
        self.api.is_some() || self.token.is_some() || self.json || self.ca_file.is_some()
    }
}

// The client options given after the subcommand (`arca volume list --json`); plain comment
// for the same reason as above.
#[derive(Args, Debug, Default, Clone)]
pub struct ClientOptions {
    /// API of the daemon [env: ARCA_API] [default: http://127.0.0.1:7410]
    #[arg(long, value_name = "URL", global = true, value_parser = normalize_api_url)]
    pub api: Option<String>,
    /// Bearer token for the API, when the daemon requires one [env: ARCA_TOKEN]
    #[arg(long, value_name = "TOKEN", global = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM CA certificate(s) an https:// API's certificate must chain to (default: the
    /// system's roots) [env: ARCA_CA_FILE]
    #[arg(long, value_name = "FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// A snapshot named on the command line as `VOLUME@SNAPSHOT`.
#[derive(Clone, Debug)]
pub struct SnapshotRef {
    pub volume: String,
    pub snapshot: String,
}

fn parse_snapshot_ref(s: &str) -> Result<SnapshotRef, String> {
    match s.split_once('@') {
        Some((v, n)) if !v.is_empty() && !n.is_empty() && !n.contains('@') => Ok(SnapshotRef {
            volume: v.to_string(),
            snapshot: n.to_string(),
        }),
        _ => Err(format!("expected VOLUME@SNAPSHOT, got {s:?}")),
    }
}

/// Sizes as `arca serve` takes them, with a plain word for a negative one.
fn parse_size_arg(s: &str) -> Result<u64, String> {
    if s.trim_start().starts_with('-') {
        return Err(format!("invalid size {s:?}: a size cannot be negative"));
    }
    crate::size::parse_size(s)
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the pool's status or check its consistency
    Pool(PoolArgs),
    /// Create, list, show, resize, rename and delete volumes
    Volume(VolumeArgs),
    /// Create, list and delete snapshots
    Snapshot(SnapshotArgs),
    /// Make a new volume from a snapshot: arca clone VOLUME@SNAPSHOT NEWNAME
    Clone(CloneArgs),
    /// List what NBD clients can connect to
    Export(ExportArgs),
    /// List, show, wait for and cancel long-running jobs
    Job(JobArgs),
    /// Take, list, show, verify, delete, hold and prune the backups the array manages
    Backup(backups::BackupArgs),
    /// Restore a backup: arca restore ID [--to VOLUME] | ID --as NAME | --set SETID
    Restore(backups::RestoreArgs),
    /// Check the backup catalog against the backups' data, or rebuild it from them
    Catalog(backups::CatalogArgs),
    /// Create, list, show, split, resync and delete copy pairs (a volume and its full copy)
    Pair(pairs::PairArgs),
    /// Create, list and revoke named API tokens with roles
    Token(tokens::TokenArgs),
    /// List the audit trail: who changed what, when, from where
    Audit(audit::AuditArgs),
    /// Backup policies: backups taken, pruned and verified on the array's own calendar
    Policy(policies::PolicyArgs),
    /// Add, list, show and remove vaults (off-array places backups are copied to); export a
    /// vault's key
    Vault(vaults::VaultArgs),
}

#[derive(Args, Debug)]
pub struct PoolArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: PoolCmd,
}

#[derive(Subcommand, Debug)]
pub enum PoolCmd {
    /// Capacity, usage and devices of the pool
    Status,
    /// Check the whole pool's consistency (a job); exits 1 when it finds any problem
    Check {
        /// Print the job id and return instead of waiting for the result
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Args, Debug)]
pub struct VolumeArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: VolumeCmd,
}

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a thin volume
    Create {
        name: String,
        /// Size with an optional binary unit: 512, 64K, 512M, 10G, 1T
        #[arg(long, value_parser = parse_size_arg, allow_hyphen_values = true)]
        size: u64,
        /// Device index to take the volume's extents from
        #[arg(long, value_name = "N")]
        device: Option<u32>,
    },
    /// List the volumes
    List,
    /// Show one volume
    Show { name: String },
    /// Grow a volume (volumes do not shrink)
    Resize {
        name: String,
        /// New size with an optional binary unit: 512, 64K, 512M, 10G, 1T
        #[arg(long, value_parser = parse_size_arg, allow_hyphen_values = true)]
        size: u64,
    },
    /// Rename a volume
    Rename { old: String, new: String },
    /// Delete a volume
    Delete {
        name: String,
        /// Delete the volume's snapshots too (refused without it when it has any)
        #[arg(long)]
        with_snapshots: bool,
        /// Disconnect the NBD hosts using the volume (or a snapshot deleted with it) instead
        /// of refusing
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: SnapshotCmd,
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Take a snapshot of a volume
    Create {
        volume: String,
        /// Name of the snapshot (default: from the time, like snap-20261128T230501Z)
        #[arg(long)]
        name: Option<String>,
    },
    /// List the snapshots, of every volume or of one
    List { volume: Option<String> },
    /// Delete a snapshot (refused while clones of it exist)
    Delete {
        #[arg(value_name = "VOLUME@SNAPSHOT", value_parser = parse_snapshot_ref)]
        snapshot: SnapshotRef,
    },
}

#[derive(Args, Debug)]
pub struct CloneArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    /// The snapshot to clone
    #[arg(value_name = "VOLUME@SNAPSHOT", value_parser = parse_snapshot_ref)]
    pub snapshot: SnapshotRef,
    /// Name of the new volume
    pub name: String,
    /// Device index to take the clone's new extents from
    #[arg(long, value_name = "N")]
    pub device: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: ExportCmd,
}

#[derive(Subcommand, Debug)]
pub enum ExportCmd {
    /// Every volume (read-write) and snapshot (read-only) with the URI a client uses
    List,
}

#[derive(Args, Debug)]
pub struct JobArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: JobCmd,
}

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// List the jobs (running and recently finished)
    List,
    /// Show one job
    Show { id: arca_backup::JobId },
    /// Wait for a job to finish; exits 1 unless it succeeded (and, for a check, found nothing)
    Wait { id: arca_backup::JobId },
    /// Ask a running job to stop
    Cancel { id: arca_backup::JobId },
}

impl Command {
    fn options(&self) -> &ClientOptions {
        match self {
            Command::Pool(a) => &a.opts,
            Command::Volume(a) => &a.opts,
            Command::Snapshot(a) => &a.opts,
            Command::Clone(a) => &a.opts,
            Command::Export(a) => &a.opts,
            Command::Job(a) => &a.opts,
            Command::Backup(a) => &a.opts,
            Command::Restore(a) => &a.opts,
            Command::Catalog(a) => &a.opts,
            Command::Pair(a) => &a.opts,
            Command::Token(a) => &a.opts,
            Command::Audit(a) => &a.opts,
            Command::Policy(a) => &a.opts,
            Command::Vault(a) => &a.opts,
        }
    }
}

/// Where to connect and how to print, from the options after the subcommand, then those before
/// it, then the environment, then the default.
pub struct Settings {
    pub api: String,
    pub token: Option<String>,
    pub json: bool,
    pub ca_file: Option<std::path::PathBuf>,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn settings(leading: &LeadingOptions, cmd: &Command) -> Result<Settings, String> {
    let opts = cmd.options();
    let api = match opts.api.clone().or_else(|| leading.api.clone()) {
        Some(a) => a,
        None => match env_nonempty("ARCA_API") {
            Some(a) => normalize_api_url(&a).map_err(|e| format!("ARCA_API: {e}"))?,
            None => DEFAULT_API.to_string(),
        },
    };
    let token = opts
        .token
        .clone()
        .or_else(|| leading.token.clone())
        .or_else(|| env_nonempty("ARCA_TOKEN"))
        // As the daemon reads its token file: surrounding whitespace is not part of it.
        .map(|t| t.trim().to_string());
    let ca_file = opts
        .ca_file
        .clone()
        .or_else(|| leading.ca_file.clone())
        .or_else(|| env_nonempty("ARCA_CA_FILE").map(Into::into));
    Ok(Settings {
        api,
        token,
        json: opts.json || leading.json,
        ca_file,
    })
}

/// Pretty JSON on stdout, as the API gave it (through the shared types).
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// The JSON with `--json`, else what `human` prints.
pub fn show_or<T: Serialize>(s: &Settings, value: &T, human: impl FnOnce()) -> anyhow::Result<()> {
    if s.json {
        print_json(value)
    } else {
        human();
        Ok(())
    }
}

/// Runs one client command; the process exit status.
pub fn run(leading: LeadingOptions, cmd: Command) -> i32 {
    let settings = match settings(&leading, &cmd) {
        Ok(s) => s,
        Err(e) => {
            print_error(&e);
            return 2;
        }
    };
    let tls = match tls_roots::tls_config(settings.ca_file.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            print_error(&format!("{e:#}"));
            return 1;
        }
    };
    let client = Client::new(settings.api.clone(), settings.token.clone(), tls);
    let result = commands::run(&client, &settings, cmd);
    // The caller exits the process, which skips flushing stdout.
    let flushed = std::io::stdout().flush();
    match result.and(flushed.map_err(anyhow::Error::from)) {
        Ok(()) => 0,
        Err(e) => {
            print_error(&format!("{e:#}"));
            1
        }
    }
}

/// Exactly one line, whatever the message holds: scripts read the first line of stderr.
fn print_error(message: &str) {
    let one_line: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!("error: {}", one_line.join("; "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_refs_and_sizes() {
        let r = parse_snapshot_ref("vol@snap").unwrap();
        assert_eq!((r.volume.as_str(), r.snapshot.as_str()), ("vol", "snap"));
        for bad in ["vol", "@snap", "vol@", "a@b@c"] {
            assert!(parse_snapshot_ref(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size_arg("10G"), Ok(10 << 30));
        assert!(parse_size_arg("-1").unwrap_err().contains("negative"));
        assert!(parse_size_arg("10X").is_err());
        assert!(parse_size_arg("99999999T").is_err());
    }
}
