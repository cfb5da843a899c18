//! One function per command: call the API, print a table or the JSON.

use anyhow::Result;
use arca_api::types::{
    CheckHistory, CheckOutcome, CheckRecord, CloneSnapshot, CreateSnapshot, CreateVolume,
    DeviceBytes, Export, Job, JobState, PoolStatus, RenameVolume, ResizeVolume, Snapshot, Volume,
};

use super::client::{Client, seg};
use super::format::{self, Align, Table, fields, or_dash};
use super::{
    CloneArgs, Command, ExportCmd, JobCmd, PoolCmd, Settings, SnapshotCmd, VolumeCmd, backups,
    jobs, pairs, show_or, vaults,
};

pub fn run(c: &Client, s: &Settings, cmd: Command) -> Result<()> {
    match cmd {
        Command::Pool(a) => match a.cmd {
            PoolCmd::Status => pool_status(c, s),
            PoolCmd::Check { no_wait } => pool_check(c, s, no_wait),
        },
        Command::Volume(a) => run_volume(c, s, a.cmd),
        Command::Snapshot(a) => run_snapshot(c, s, a.cmd),
        Command::Clone(a) => run_clone(c, s, a),
        Command::Export(a) => match a.cmd {
            ExportCmd::List => {
                let list: Vec<Export> = c.get("/v1/exports", &[])?;
                show_or(s, &list, || print!("{}", export_table(&list)))
            }
        },
        Command::Backup(a) => backups::run_backup(c, s, a.cmd),
        Command::Restore(a) => backups::run_restore(c, s, a),
        Command::Catalog(a) => backups::run_catalog(c, s, a.cmd),
        Command::Pair(a) => pairs::run(c, s, a.cmd),
        Command::Token(a) => super::tokens::run(c, s, a.cmd),
        Command::Audit(a) => super::audit::run(c, s, a.cmd),
        Command::Policy(a) => super::policies::run(c, s, a.cmd),
        Command::Vault(a) => vaults::run(c, s, a.cmd),
        Command::Job(a) => run_job(c, s, a.cmd),
    }
}

fn run_volume(c: &Client, s: &Settings, cmd: VolumeCmd) -> Result<()> {
    match cmd {
        VolumeCmd::Create { name, size, device } => {
            let v: Volume = c.post_json("/v1/volumes", &CreateVolume { name, size, device })?;
            show_or(s, &v, || {
                println!("created volume {} ({})", v.name, format::size(v.size))
            })
        }
        VolumeCmd::List => {
            let list: Vec<Volume> = c.get("/v1/volumes", &[])?;
            show_or(s, &list, || print!("{}", volume_table(&list)))
        }
        VolumeCmd::Show { name } => {
            let v: Volume = c.get(&format!("/v1/volumes/{}", seg(&name)), &[])?;
            show_or(s, &v, || print!("{}", volume_fields(&v)))
        }
        VolumeCmd::Resize { name, size } => {
            let path = format!("/v1/volumes/{}/resize", seg(&name));
            let v: Volume = c.post_json(&path, &ResizeVolume { size })?;
            show_or(s, &v, || {
                println!("resized volume {} to {}", v.name, format::size(v.size))
            })
        }
        VolumeCmd::Rename { old, new } => {
            let path = format!("/v1/volumes/{}/rename", seg(&old));
            let v: Volume = c.post_json(&path, &RenameVolume { name: new })?;
            show_or(s, &v, || println!("renamed volume {old} to {}", v.name))
        }
        VolumeCmd::Delete {
            name,
            with_snapshots,
            force,
        } => {
            let flag = |b: bool| if b { "true" } else { "false" };
            c.delete(
                &format!("/v1/volumes/{}", seg(&name)),
                &[
                    ("with_snapshots", flag(with_snapshots)),
                    ("force", flag(force)),
                ],
            )?;
            // The API answers 204 without a body: with --json there is nothing to print.
            if !s.json {
                let extra = if with_snapshots {
                    " and its snapshots"
                } else {
                    ""
                };
                println!("deleted volume {name}{extra}");
            }
            Ok(())
        }
    }
}

fn run_snapshot(c: &Client, s: &Settings, cmd: SnapshotCmd) -> Result<()> {
    match cmd {
        SnapshotCmd::Create { volume, name } => {
            let path = format!("/v1/volumes/{}/snapshots", seg(&volume));
            let snap: Snapshot = c.post_json(&path, &CreateSnapshot { name })?;
            show_or(s, &snap, || {
                println!("created snapshot {}@{}", snap.volume, snap.name)
            })
        }
        SnapshotCmd::List { volume } => {
            let query: Vec<(&str, &str)> = match &volume {
                Some(v) => vec![("volume", v.as_str())],
                None => Vec::new(),
            };
            let list: Vec<Snapshot> = c.get("/v1/snapshots", &query)?;
            show_or(s, &list, || print!("{}", snapshot_table(&list)))
        }
        SnapshotCmd::Delete { snapshot } => {
            let path = format!(
                "/v1/volumes/{}/snapshots/{}",
                seg(&snapshot.volume),
                seg(&snapshot.snapshot)
            );
            c.delete(&path, &[])?;
            if !s.json {
                println!("deleted snapshot {}@{}", snapshot.volume, snapshot.snapshot);
            }
            Ok(())
        }
    }
}

fn run_clone(c: &Client, s: &Settings, a: CloneArgs) -> Result<()> {
    let path = format!(
        "/v1/volumes/{}/snapshots/{}/clone",
        seg(&a.snapshot.volume),
        seg(&a.snapshot.snapshot)
    );
    let body = CloneSnapshot {
        name: a.name,
        device: a.device,
    };
    let v: Volume = c.post_json(&path, &body)?;
    show_or(s, &v, || {
        println!(
            "created volume {} from {}@{}",
            v.name, a.snapshot.volume, a.snapshot.snapshot
        )
    })
}

fn run_job(c: &Client, s: &Settings, cmd: JobCmd) -> Result<()> {
    match cmd {
        JobCmd::List => {
            let list: Vec<Job> = c.get("/v1/jobs", &[])?;
            show_or(s, &list, || print!("{}", job_table(&list)))
        }
        JobCmd::Show { id } => {
            let job: Job = c.get(&format!("/v1/jobs/{id}"), &[])?;
            show_or(s, &job, || print!("{}", job_fields(&job)))
        }
        JobCmd::Wait { id } => {
            let job: Job = c.get(&format!("/v1/jobs/{id}"), &[])?;
            let job = jobs::wait(c, job)?;
            jobs::report(&job, s.json)
        }
        JobCmd::Cancel { id } => {
            let job: Job = c.post_empty(&format!("/v1/jobs/{id}/cancel"))?;
            show_or(s, &job, || {
                if jobs::is_running(&job) {
                    println!("job {id}: cancel requested; it stops at its next step");
                } else {
                    println!("job {id}: {}", job.state);
                }
            })
        }
    }
}

fn pool_status(c: &Client, s: &Settings) -> Result<()> {
    let p: PoolStatus = c.get("/v1/pool", &[])?;
    // `--json` stays the pool's document; the checks are `GET /v1/checks`.
    let checks: Option<CheckHistory> = if s.json {
        None
    } else {
        Some(c.get("/v1/checks", &[])?)
    };
    show_or(s, &p, || {
        print!(
            "{}",
            fields(&[
                ("pool", p.id.clone()),
                ("extent size", format::size(p.extent_size)),
                ("capacity", format::size(p.capacity)),
                ("used", format::size(p.used)),
                ("free", format::size(p.free)),
                (
                    "metadata",
                    format!(
                        "{} used of {} ({} region), {} held back, {} available",
                        format::size(p.metadata_used),
                        format::size(p.metadata_reachable),
                        format::size(p.metadata_capacity),
                        format::size(p.metadata_reserved),
                        format::size(p.metadata_available),
                    ),
                ),
                ("volumes", p.volumes.to_string()),
                ("snapshots", p.snapshots.to_string()),
                (
                    "last pool check",
                    check_line(checks.as_ref().and_then(|c| c.pool.first())),
                ),
                (
                    "last catalog check",
                    check_line(checks.as_ref().and_then(|c| c.catalog.first())),
                ),
            ])
        );
        let mut t = Table::new(&[
            ("DEVICE", Align::Right),
            ("PATH", Align::Left),
            ("CAPACITY", Align::Right),
            ("USED", Align::Right),
            ("FREE", Align::Right),
        ]);
        for d in &p.devices {
            t.row(vec![
                d.index.to_string(),
                d.path.clone(),
                format::size(d.capacity),
                format::size(d.used),
                format::size(d.free),
            ]);
        }
        println!();
        print!("{}", t.render());
    })
}

/// What a recorded check found, when, how long it took and who ran it.
fn check_line(c: Option<&CheckRecord>) -> String {
    let Some(c) = c else {
        return "none recorded".to_string();
    };
    let found = match c.outcome {
        CheckOutcome::Clean => "clean".to_string(),
        CheckOutcome::Problems => {
            let first = c
                .first_problems
                .first()
                .map(|p| p.message.replace('\n', " "));
            format!(
                "{} found (first: {})",
                format::count(c.problems, "problem"),
                or_dash(first)
            )
        }
        CheckOutcome::Failed => format!("FAILED: {}", or_dash(c.error.as_ref())),
    };
    format!(
        "{found}; {} ({:.1}s, by {})",
        c.finished,
        c.duration_ms as f64 / 1000.0,
        c.by
    )
}

fn pool_check(c: &Client, s: &Settings, no_wait: bool) -> Result<()> {
    let job: Job = c.post_empty("/v1/pool/check")?;
    if no_wait {
        // The bare id, so that `id=$(arca pool check --no-wait)` works.
        return show_or(s, &job, || println!("{}", job.id));
    }
    let job = jobs::wait(c, job)?;
    jobs::report(&job, s.json)
}

fn origin(v: &Volume) -> String {
    or_dash(
        v.origin
            .as_ref()
            .map(|o| format!("{}@{}", o.volume, o.snapshot)),
    )
}

/// The placement preference, which says where new data goes, not where data lies.
fn placement(device: Option<u32>) -> String {
    device.map_or_else(
        || "none (new data goes to the device with the most free space)".to_string(),
        |d| format!("device {d} preferred"),
    )
}

/// Where the data lies: `device 0 1.2G, device 1 300.0M`, or `none`.
fn data_devices(list: &[DeviceBytes]) -> String {
    if list.is_empty() {
        return "none".to_string();
    }
    let parts: Vec<String> = list
        .iter()
        .map(|d| format!("device {} {}", d.device, format::size(d.bytes)))
        .collect();
    parts.join(", ")
}

fn volume_table(list: &[Volume]) -> String {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("SIZE", Align::Right),
        ("USED", Align::Right),
        ("UNIQUE", Align::Right),
        ("OWNED", Align::Right),
        ("SNAPSHOTS", Align::Right),
        ("DEVICE", Align::Right),
        ("ORIGIN", Align::Left),
        ("CREATED", Align::Left),
    ]);
    for v in list {
        t.row(vec![
            v.name.clone(),
            format::size(v.size),
            format::size(v.used),
            format::size(v.unique),
            format::size(v.owned),
            v.snapshots.to_string(),
            or_dash(v.device),
            origin(v),
            v.created.clone(),
        ]);
    }
    t.render()
}

fn volume_fields(v: &Volume) -> String {
    fields(&[
        ("name", v.name.clone()),
        (
            "size",
            format!("{} ({} bytes)", format::size(v.size), v.size),
        ),
        ("used", format::size(v.used)),
        ("unique", format::size(v.unique)),
        ("owned", format::size(v.owned)),
        ("placement", placement(v.device)),
        ("data", data_devices(&v.device_bytes)),
        ("origin", origin(v)),
        ("snapshots", v.snapshots.to_string()),
        ("created", v.created.clone()),
        ("protection", or_dash(v.protection.as_ref())),
    ])
}

fn snapshot_table(list: &[Snapshot]) -> String {
    let mut t = Table::new(&[
        ("VOLUME", Align::Left),
        ("SNAPSHOT", Align::Left),
        ("SIZE", Align::Right),
        ("USED", Align::Right),
        ("UNIQUE", Align::Right),
        ("CLONES", Align::Left),
        ("CREATED", Align::Left),
    ]);
    for sn in list {
        t.row(vec![
            sn.volume.clone(),
            sn.name.clone(),
            format::size(sn.size),
            format::size(sn.used),
            format::size(sn.unique),
            if sn.clones.is_empty() {
                "-".to_string()
            } else {
                sn.clones.join(",")
            },
            sn.created.clone(),
        ]);
    }
    t.render()
}

fn export_table(list: &[Export]) -> String {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("SIZE", Align::Right),
        ("ACCESS", Align::Left),
        ("URI", Align::Left),
    ]);
    for e in list {
        t.row(vec![
            e.name.clone(),
            format::size(e.size),
            if e.read_only { "ro" } else { "rw" }.to_string(),
            e.uri.clone(),
        ]);
    }
    t.render()
}

fn job_table(list: &[Job]) -> String {
    let mut t = Table::new(&[
        ("ID", Align::Right),
        ("KIND", Align::Left),
        ("TARGET", Align::Left),
        ("STATE", Align::Left),
        ("PROGRESS", Align::Right),
        ("CREATED", Align::Left),
        ("FINISHED", Align::Left),
    ]);
    for j in list {
        t.row(vec![
            j.id.to_string(),
            j.kind.to_string(),
            j.target.clone(),
            j.state.to_string(),
            format::percent(j.bytes_done, j.bytes_total, j.state == JobState::Succeeded),
            j.created.clone(),
            or_dash(j.finished.as_ref()),
        ]);
    }
    t.render()
}

fn job_fields(j: &Job) -> String {
    let mut rows = vec![
        ("id", j.id.to_string()),
        ("kind", j.kind.to_string()),
        ("target", j.target.clone()),
        ("state", j.state.to_string()),
        (
            "progress",
            format!(
                "{} ({} of {})",
                format::percent(j.bytes_done, j.bytes_total, j.state == JobState::Succeeded),
                format::size(j.bytes_done),
                format::size(j.bytes_total)
            ),
        ),
        ("rate", format!("{}/s", format::size(j.rate as u64))),
        (
            "eta",
            or_dash(j.eta_seconds.map(|e| format!("{}s", e.ceil() as u64))),
        ),
        ("error", or_dash(j.error.as_ref())),
        ("created", j.created.clone()),
        ("finished", or_dash(j.finished.as_ref())),
    ];
    if let Some(r) = jobs::check_report(j) {
        let summary = format!(
            "{} ({} found; {}, {}, {})",
            if r.clean { "clean" } else { "problems" },
            format::count(r.problems.len() as u64, "problem"),
            format::count(r.volumes, "volume"),
            format::count(r.snapshots, "snapshot"),
            format::count(r.extents, "extent")
        );
        rows.push(("result", summary));
    } else if let Some(v) = &j.result {
        let text = serde_json::to_string(v).expect("a job result serialises");
        rows.push(("result", text));
    }
    let mut out = fields(&rows);
    if let Some(r) = jobs::check_report(j)
        && !r.problems.is_empty()
    {
        out.push('\n');
        out.push_str(&jobs::check_text(r));
    }
    out
}
