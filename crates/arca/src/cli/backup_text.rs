//! What `arca backup ...` prints without `--json`: tables of targets and backups, a backup's
//! whole record, verification lines and the prune report.

use arca_api::types::{Backup, BackupEvent, BackupStatus, BackupTarget, PruneReport, Verification};

use super::format::{self, Align, Table, fields, or_dash};

pub(super) fn target_table(list: &[BackupTarget]) -> String {
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
pub(super) fn destination(b: &Backup) -> String {
    if let Some(e) = &b.destination.export {
        return e.clone();
    }
    if b.off_array_since.is_some() {
        return "-".into();
    }
    match (b.status, &b.destination.snapshot) {
        (BackupStatus::Deleted, _) => "-".into(),
        (_, Some(snap)) => format!("{}@{snap}", b.destination.volume),
        (_, None) => b.destination.volume.clone(),
    }
}

pub(super) fn verified(b: &Backup) -> &'static str {
    match b.verified {
        Some(true) => "ok",
        Some(false) => "DAMAGED",
        None => "-",
    }
}

pub(super) fn backup_table(list: &[Backup]) -> String {
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
        ("LOCATIONS", Align::Left),
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
            locations(b),
        ]);
    }
    t.render()
}

/// Where a backup lives (`array`, `vault:NAME`, `host:MEDIUM`), or `-`.
pub(super) fn locations(b: &Backup) -> String {
    if b.locations.is_empty() {
        "-".into()
    } else {
        b.locations.join(",")
    }
}

/// Damaged ranges, `(offset, length)` each, as `start..end`.
pub(super) fn damaged_text(damaged: impl IntoIterator<Item = (u64, u64)>) -> String {
    damaged
        .into_iter()
        .map(|(o, l)| format!("{o}..{}", o + l))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn event_text(e: &BackupEvent) -> String {
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
                    damaged_text(damaged.iter().map(|&[o, l]| (o, l))),
                    if more { ", ..." } else { "" }
                )
            }
        }
        BackupEvent::Restored { to, in_place, from } => format!(
            "restored into {to}{} from {}",
            if *in_place {
                " (in place)"
            } else {
                " (new volume)"
            },
            from.replace(':', " ")
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
        BackupEvent::CopiedToVault { vault, manifest } => {
            format!("copied to vault {vault} (manifest {manifest})")
        }
        BackupEvent::HostCopyRecorded { medium, location } => match location {
            Some(l) => format!("host copy recorded: {medium} at {l}"),
            None => format!("host copy recorded: {medium}"),
        },
        BackupEvent::Annotated { what } => format!("annotated: {what}"),
        BackupEvent::Imported { vault } => format!("imported from vault {vault}"),
        BackupEvent::VaultCopyForgotten { vault } => {
            format!("copy in vault {vault} forgotten: the vault was removed with --force")
        }
    }
}

/// The copies lines of `backup show`: one per vault copy and host copy.
fn copies_text(b: &Backup) -> String {
    let mut out = String::new();
    for c in &b.vault_copies {
        out.push_str(&format!(
            "  vault {}: {} (manifest {}; read {}, new {}, stored {})\n",
            c.vault,
            c.copied,
            c.manifest,
            format::size(c.bytes_read),
            format::size(c.bytes_new),
            format::size(c.bytes_stored)
        ));
    }
    for c in &b.host_copies {
        out.push_str(&format!(
            "  {}{}: {}{}\n",
            c.medium,
            c.location
                .as_ref()
                .map_or(String::new(), |l| format!(" at {l}")),
            c.copied,
            c.by.as_ref().map_or(String::new(), |p| format!(" by {p}"))
        ));
    }
    if out.is_empty() {
        out.push_str("  -\n");
    }
    out
}

pub(super) fn backup_text(b: &Backup) -> String {
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
        (
            "lives in",
            match &b.off_array_since {
                Some(t) => format!("{} (the array's image is gone since {t})", locations(b)),
                None => locations(b),
            },
        ),
    ];
    let mut out = fields(&rows);
    out.push_str("copies:\n");
    out.push_str(&copies_text(b));
    out.push_str("history:\n");
    if b.history.is_empty() {
        out.push_str("  -\n");
    }
    for h in &b.history {
        out.push_str(&format!("  {}  {}\n", h.at, event_text(&h.event)));
    }
    out
}

pub(super) fn verification_line(v: &Verification) -> String {
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
            damaged_text(v.damaged.iter().copied())
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

pub(super) fn prune_text(r: &PruneReport) -> String {
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
