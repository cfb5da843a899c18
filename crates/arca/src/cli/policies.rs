//! `arca policy ...`: backup policies, backups the array takes, prunes, copies to a vault
//! and verifies on its own calendar.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use arca_api::types::{
    CreatePolicy, Job, Policy, PolicyKeep, PolicyNext, PolicyRun, PolicyRunResult,
    PolicyRunStarted, PolicyStep, RunPolicy, UpdatePolicy,
};
use clap::{Args, Subcommand, ValueEnum};

use super::client::{Client, seg};
use super::format::{Align, Table, fields, or_dash};
use super::{ClientOptions, Settings, jobs, show_or};

fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: PolicyCmd,
}

/// The settings `create` and `update` share.
#[derive(Args, Debug, Default)]
pub struct PolicySettings {
    /// Volume name patterns (`*` any run of characters, `?` one), matched at each run
    #[arg(long, num_args = 1.., value_name = "PATTERN")]
    volumes: Option<Vec<String>>,
    /// Back the matched volumes up as one backup set, at one instant
    #[arg(long)]
    set: bool,
    /// Calendar of the snapshot backups, e.g. hourly, 'mon..fri 02:00', '*:0/15' (update:
    /// none removes it)
    #[arg(long, value_name = "CALENDAR")]
    snapshot: Option<String>,
    /// Keep the N newest backups (the keep rules replace all others when any is given)
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Calendar of the rolling verification (update: none removes it)
    #[arg(long, value_name = "CALENDAR")]
    verify: Option<String>,
    /// Bytes of images one verification reads at most: 512M, 10G (update: 0 removes it)
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size_arg)]
    verify_budget: Option<u64>,
    /// Label of the backups (default: the policy's name)
    #[arg(long)]
    label: Option<String>,
    /// KEY=VALUE recorded with every backup (repeatable; update: replaces them all)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
    /// IANA time zone of the calendars (default UTC), e.g. Europe/Berlin
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
    /// Registered vault the copy step copies the policy's backups to (with --copy; update:
    /// none removes the copy step)
    #[arg(long, value_name = "VAULT")]
    copy_to: Option<String>,
    /// Calendar of the copy to the vault, then the vault prune (update: none removes the
    /// copy step)
    #[arg(long, value_name = "CALENDAR")]
    copy: Option<String>,
    /// Keep the N newest copies in the vault (the vault keep rules replace all others when
    /// any is given; independent of the array's)
    #[arg(long, value_name = "N")]
    vault_keep_last: Option<u32>,
    #[arg(long, value_name = "N")]
    vault_keep_hourly: Option<u32>,
    #[arg(long, value_name = "N")]
    vault_keep_daily: Option<u32>,
    #[arg(long, value_name = "N")]
    vault_keep_weekly: Option<u32>,
    #[arg(long, value_name = "N")]
    vault_keep_monthly: Option<u32>,
    #[arg(long, value_name = "N")]
    vault_keep_yearly: Option<u32>,
}

/// Keep rules from the six counts (last, hourly, daily, weekly, monthly, yearly); `None`
/// when none is given.
fn keep_of([last, hourly, daily, weekly, monthly, yearly]: [Option<u32>; 6]) -> Option<PolicyKeep> {
    let k = PolicyKeep {
        last,
        hourly,
        daily,
        weekly,
        monthly,
        yearly,
    };
    (k != PolicyKeep::default()).then_some(k)
}

impl PolicySettings {
    fn keep(&self) -> Option<PolicyKeep> {
        keep_of([
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ])
    }

    fn vault_keep(&self) -> Option<PolicyKeep> {
        keep_of([
            self.vault_keep_last,
            self.vault_keep_hourly,
            self.vault_keep_daily,
            self.vault_keep_weekly,
            self.vault_keep_monthly,
            self.vault_keep_yearly,
        ])
    }

    fn meta(&self) -> Option<BTreeMap<String, String>> {
        (!self.meta.is_empty()).then(|| self.meta.iter().cloned().collect())
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StepArg {
    Snapshot,
    Prune,
    Verify,
    Copy,
    VaultPrune,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Create a policy: NAME --volumes PATTERN... with --snapshot, --copy and/or --verify
    /// calendars
    Create {
        name: String,
        #[command(flatten)]
        settings: PolicySettings,
        /// Create it paused
        #[arg(long)]
        paused: bool,
    },
    /// List the policies
    List,
    /// Show one policy: its calendars, next and last runs, why the last run failed
    Show { name: String },
    /// Change a policy's settings (those given change)
    Update {
        name: String,
        #[command(flatten)]
        settings: PolicySettings,
        /// Back the volumes up one by one, not as a set
        #[arg(long, conflicts_with = "set")]
        no_set: bool,
    },
    /// Delete a policy and its history; its backups stay
    Delete { name: String },
    /// Pause a policy: it does nothing until resumed
    Pause { name: String },
    /// Resume a policy: its calendars go on from now
    Resume { name: String },
    /// Run a policy now, as a job, and wait for it (exit 1 when the run fails)
    Run {
        name: String,
        /// Only this step
        #[arg(long, value_enum)]
        step: Option<StepArg>,
        /// Print the job id and return instead of waiting
        #[arg(long)]
        no_wait: bool,
    },
    /// The next run times of each calendar, as the daemon computes them
    Next {
        name: String,
        #[arg(long, default_value_t = 5)]
        count: u32,
    },
    /// The policy's runs, newest first
    History {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

fn policy_path(name: &str) -> String {
    format!("/v1/policies/{}", seg(name))
}

pub fn run(c: &Client, s: &Settings, cmd: PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::Create {
            name,
            settings: st,
            paused,
        } => {
            let Some(volumes) = st.volumes.clone() else {
                bail!("give the volumes to back up: --volumes PATTERN...");
            };
            let body = CreatePolicy {
                name,
                volumes,
                set: st.set.then_some(true),
                snapshot: st.snapshot.clone(),
                keep: st.keep(),
                verify: st.verify.clone(),
                verify_budget: st.verify_budget,
                label: st.label.clone(),
                meta: st.meta(),
                tz: st.tz.clone(),
                paused: paused.then_some(true),
                copy_to: st.copy_to.clone(),
                copy: st.copy.clone(),
                vault_keep: st.vault_keep(),
            };
            let p: Policy = c.post_json("/v1/policies", &body)?;
            show_or(s, &p, || {
                println!("created policy {}", p.name);
                print!("{}", policy_fields(&p));
            })
        }
        PolicyCmd::List => {
            let list: Vec<Policy> = c.get("/v1/policies", &[])?;
            show_or(s, &list, || print!("{}", policy_table(&list)))
        }
        PolicyCmd::Show { name } => {
            let p: Policy = c.get(&policy_path(&name), &[])?;
            show_or(s, &p, || print!("{}", policy_fields(&p)))
        }
        PolicyCmd::Update {
            name,
            settings: st,
            no_set,
        } => {
            let body = UpdatePolicy {
                volumes: st.volumes.clone(),
                set: if st.set {
                    Some(true)
                } else {
                    no_set.then_some(false)
                },
                snapshot: st.snapshot.clone(),
                keep: st.keep(),
                verify: st.verify.clone(),
                verify_budget: st.verify_budget,
                label: st.label.clone(),
                meta: st.meta(),
                tz: st.tz.clone(),
                copy_to: st.copy_to.clone(),
                copy: st.copy.clone(),
                vault_keep: st.vault_keep(),
            };
            let p: Policy = c.patch_json(&policy_path(&name), &body)?;
            show_or(s, &p, || print!("{}", policy_fields(&p)))
        }
        PolicyCmd::Delete { name } => {
            c.delete(&policy_path(&name), &[])?;
            if !s.json {
                println!("deleted policy {name}; the backups it made stay");
            }
            Ok(())
        }
        PolicyCmd::Pause { name } => pause(c, s, &name, "pause"),
        PolicyCmd::Resume { name } => pause(c, s, &name, "resume"),
        PolicyCmd::Run {
            name,
            step,
            no_wait,
        } => run_now(c, s, &name, step, no_wait),
        PolicyCmd::Next { name, count } => {
            let n: PolicyNext = c.get(
                &format!("{}/next", policy_path(&name)),
                &[("count", &count.to_string())],
            )?;
            show_or(s, &n, || print_next(&n))
        }
        PolicyCmd::History { name, limit } => {
            let runs: Vec<PolicyRun> = c.get(
                &format!("{}/history", policy_path(&name)),
                &[("limit", &limit.to_string())],
            )?;
            show_or(s, &runs, || print!("{}", history_table(&runs)))
        }
    }
}

fn pause(c: &Client, s: &Settings, name: &str, verb: &str) -> Result<()> {
    let p: Policy = c.post_empty(&format!("{}/{verb}", policy_path(name)))?;
    show_or(s, &p, || {
        if p.paused {
            println!("policy {} paused: it does nothing until resumed", p.name);
        } else {
            println!("policy {} resumed; next runs:", p.name);
            for sc in &p.schedules {
                println!("  {}: {}", sc.track, or_dash(sc.next.as_ref()));
            }
        }
    })
}

fn run_now(
    c: &Client,
    s: &Settings,
    name: &str,
    step: Option<StepArg>,
    no_wait: bool,
) -> Result<()> {
    let body = RunPolicy {
        step: step.map(|st| match st {
            StepArg::Snapshot => PolicyStep::Snapshot,
            StepArg::Prune => PolicyStep::Prune,
            StepArg::Verify => PolicyStep::Verify,
            StepArg::Copy => PolicyStep::Copy,
            StepArg::VaultPrune => PolicyStep::VaultPrune,
        }),
    };
    let started: PolicyRunStarted = c.post_json(&format!("{}/run", policy_path(name)), &body)?;
    let job = started.job;
    if no_wait {
        return show_or(s, &started, || {
            println!("policy {name}: running in job {job} (arca job wait {job})")
        });
    }
    let done: Job = jobs::wait_id(c, job)?;
    let runs: Vec<PolicyRun> =
        c.get(&format!("{}/history", policy_path(name)), &[("limit", "1")])?;
    let run = runs.into_iter().find(|r| r.job == Some(job));
    match &run {
        Some(r) => show_or(s, r, || print!("{}", run_fields(r)))?,
        None => show_or(s, &done, || println!("job {job} {}", done.state))?,
    }
    jobs::succeeded(&done)
}

fn print_next(n: &PolicyNext) {
    if n.paused {
        println!(
            "policy {} is paused: nothing runs until it is resumed",
            n.policy
        );
    }
    for sc in &n.schedules {
        println!("{} ({}, {}):", sc.track, sc.calendar, n.tz);
        for (utc, local) in sc.times.iter().zip(&sc.local) {
            println!("  {utc}  {local}");
        }
        if sc.times.is_empty() {
            println!("  (no more runs)");
        }
    }
}

fn keep_text(k: &PolicyKeep) -> String {
    let parts: Vec<String> = [
        ("last", k.last),
        ("hourly", k.hourly),
        ("daily", k.daily),
        ("weekly", k.weekly),
        ("monthly", k.monthly),
        ("yearly", k.yearly),
    ]
    .iter()
    .filter_map(|(n, v)| v.map(|v| format!("{n} {v}")))
    .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn state_text(p: &Policy) -> String {
    match (&p.running, p.paused) {
        (Some(r), _) => format!(
            "running (run {}{})",
            r.run,
            r.job.map(|j| format!(", job {j}")).unwrap_or_default()
        ),
        (None, true) => "paused".into(),
        (None, false) => "active".into(),
    }
}

fn policy_table(list: &[Policy]) -> String {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("VOLUMES", Align::Left),
        ("SNAPSHOT", Align::Left),
        ("VERIFY", Align::Left),
        ("COPY", Align::Left),
        ("TZ", Align::Left),
        ("STATE", Align::Left),
        ("NEXT", Align::Left),
        ("LAST", Align::Left),
        ("LAST SUCCESS", Align::Left),
    ]);
    for p in list {
        let next = p.schedules.iter().filter_map(|s| s.next.clone()).min();
        let last = p
            .schedules
            .iter()
            .filter_map(|s| Some((s.last_run.clone()?, s.last_result?)))
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, r)| r.to_string());
        t.row(vec![
            p.name.clone(),
            p.volumes.join(","),
            or_dash(p.snapshot.as_ref()),
            or_dash(p.verify.as_ref()),
            or_dash(copy_text(p)),
            p.tz.clone(),
            state_text(p),
            or_dash(next),
            or_dash(last),
            or_dash(p.last_success.as_ref()),
        ]);
    }
    t.render()
}

/// `CALENDAR to VAULT`, when the policy copies.
fn copy_text(p: &Policy) -> Option<String> {
    Some(format!("{} to {}", p.copy.as_ref()?, p.copy_to.as_ref()?))
}

fn policy_fields(p: &Policy) -> String {
    let mut rows = vec![
        ("name", p.name.clone()),
        ("volumes", p.volumes.join(", ")),
        (
            "matched",
            or_dash((!p.matched_volumes.is_empty()).then(|| p.matched_volumes.join(", "))),
        ),
        ("set", if p.set { "yes" } else { "no" }.to_string()),
        ("label", p.label.clone()),
        ("program", p.program.clone()),
        ("keep", keep_text(&p.keep)),
        ("copy to", or_dash(p.copy_to.as_ref())),
        ("vault keep", keep_text(&p.vault_keep)),
        (
            "verify budget",
            or_dash(p.verify_budget.map(super::format::size)),
        ),
        ("time zone", p.tz.clone()),
        ("state", state_text(p)),
        ("last success", or_dash(p.last_success.as_ref())),
    ];
    if !p.meta.is_empty() {
        let m: Vec<String> = p.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("meta", m.join(", ")));
    }
    let mut out = fields(&rows);
    for sc in &p.schedules {
        let steps: Vec<&str> = sc.steps.iter().map(|s| s.as_str()).collect();
        out += &format!(
            "{}: {} ({})\n  next {}, last run {}{}\n",
            sc.track,
            sc.calendar,
            steps.join(", "),
            or_dash(sc.next.as_ref()),
            or_dash(sc.last_run.as_ref()),
            match (&sc.last_result, &sc.last_reason) {
                (Some(r), Some(why)) => format!(" {r}: {why}"),
                (Some(r), None) => format!(" {r}"),
                _ => String::new(),
            }
        );
    }
    out
}

fn run_fields(r: &PolicyRun) -> String {
    let mut out = fields(&[
        ("run", r.run.to_string()),
        ("trigger", r.trigger.to_string()),
        ("started", r.started.clone()),
        ("ended", or_dash(r.ended.as_ref())),
        ("result", r.result.to_string()),
        ("reason", or_dash(r.reason.as_ref())),
    ]);
    for st in &r.steps {
        out += &format!(
            "{} {}: {}\n",
            st.step,
            if st.ok { "ok" } else { "FAILED" },
            st.summary
        );
    }
    out
}

fn history_table(runs: &[PolicyRun]) -> String {
    let mut t = Table::new(&[
        ("RUN", Align::Right),
        ("TRIGGER", Align::Left),
        ("STARTED", Align::Left),
        ("RESULT", Align::Left),
        ("STEPS", Align::Left),
        ("REASON", Align::Left),
    ]);
    for r in runs {
        let steps: Vec<String> = r
            .steps
            .iter()
            .map(|s| format!("{}: {}", s.step, s.summary))
            .collect();
        let result = match r.result {
            PolicyRunResult::Succeeded => "succeeded".to_string(),
            other => other.to_string().to_uppercase(),
        };
        t.row(vec![
            r.run.to_string(),
            r.trigger.to_string(),
            r.started.clone(),
            result,
            or_dash((!steps.is_empty()).then(|| steps.join("; "))),
            or_dash(r.reason.as_ref()),
        ]);
    }
    t.render()
}
