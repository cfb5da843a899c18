//! Waiting for a job: a progress bar when stderr is a terminal, plain lines otherwise (logs and
//! CI keep a readable record instead of redraw codes), and the job's outcome as an exit status.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use arca_api::types::{CheckReport, Job, JobResult, JobState};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::client::Client;
use super::format;

/// Quick jobs finish within the first polls; slow ones are not polled more than twice a second.
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(500);
/// Plain progress lines: at most one per this interval while the job runs.
const LINE_EVERY: Duration = Duration::from_secs(2);
/// Progress is shown for jobs still running after this long.
const SHOW_AFTER: Duration = Duration::from_millis(300);

pub fn is_running(job: &Job) -> bool {
    job.state == JobState::Running
}

fn describe(job: &Job) -> String {
    format!("job {} ({} {})", job.id, job.kind, job.target)
}

fn progress_text(job: &Job) -> String {
    let mut s = format!(
        "{} of {}",
        format::size(job.bytes_done),
        format::size(job.bytes_total)
    );
    if job.rate > 0.0 {
        s.push_str(&format!(", {}/s", format::size(job.rate as u64)));
    }
    if let Some(eta) = job.eta_seconds {
        s.push_str(&format!(", {}s left", eta.ceil() as u64));
    }
    s
}

enum Display {
    Bar(ProgressBar),
    Lines { last: Option<Instant> },
}

impl Display {
    fn new(job: &Job) -> Display {
        if !std::io::stderr().is_terminal() {
            return Display::Lines { last: None };
        }
        let bar =
            ProgressBar::with_draw_target(Some(job.bytes_total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(describe(job));
        Display::Bar(bar)
    }

    fn update(&mut self, job: &Job) {
        match self {
            Display::Bar(bar) => {
                bar.set_length(job.bytes_total);
                bar.set_position(job.bytes_done.min(job.bytes_total));
                bar.set_message(progress_text(job));
            }
            Display::Lines { last } => {
                if last.is_none_or(|t| t.elapsed() >= LINE_EVERY) {
                    *last = Some(Instant::now());
                    eprintln!(
                        "{}: running, {} ({})",
                        describe(job),
                        format::percent(job.bytes_done, job.bytes_total, false),
                        progress_text(job)
                    );
                }
            }
        }
    }

    fn finish(self, job: &Job) {
        match self {
            Display::Bar(bar) => bar.finish_and_clear(),
            Display::Lines { last } => {
                // A job that was never shown running needs no closing line either.
                if last.is_some() {
                    eprintln!("{}: {}", describe(job), job.state);
                }
            }
        }
    }
}

/// Polls the job until it is no longer running; the last state seen.
pub fn wait(client: &Client, mut job: Job) -> Result<Job> {
    let started = Instant::now();
    let mut delay = POLL_FIRST;
    // Created only once the job has taken a moment: a quick job shows no bar and no lines.
    let mut display: Option<Display> = None;
    while is_running(&job) {
        std::thread::sleep(delay);
        delay = (delay * 2).min(POLL_MAX);
        job = match client.get(&format!("/v1/jobs/{}", job.id), &[]) {
            Ok(j) => j,
            Err(e) => {
                if let Some(d) = display {
                    d.finish(&job);
                }
                return Err(e);
            }
        };
        if is_running(&job) && started.elapsed() >= SHOW_AFTER {
            display
                .get_or_insert_with(|| Display::new(&job))
                .update(&job);
        }
    }
    if let Some(d) = display {
        d.finish(&job);
    }
    Ok(job)
}

/// Fetches a job by id and waits for it (see [`wait`]).
pub fn wait_id(client: &Client, id: arca_backup::JobId) -> Result<Job> {
    let job: Job = client.get(&format!("/v1/jobs/{id}"), &[])?;
    wait(client, job)
}

/// The check report a finished pool-check job carries.
pub fn check_report(job: &Job) -> Option<&CheckReport> {
    match &job.result {
        Some(JobResult::PoolCheck(r)) => Some(r),
        _ => None,
    }
}

/// An error unless a finished job succeeded, naming the job and why.
pub fn succeeded(job: &Job) -> Result<()> {
    match job.state {
        JobState::Succeeded => Ok(()),
        JobState::Failed => bail!(
            "{} failed: {}",
            describe(job),
            job.error.as_deref().unwrap_or("no reason given")
        ),
        JobState::Cancelled => bail!("{} was cancelled", describe(job)),
        JobState::Running => bail!("{} is still running", describe(job)),
    }
}

/// Prints a finished job's outcome (the job's JSON with `--json`) and fails unless it
/// succeeded cleanly: a failed or cancelled job, or a check that found problems.
pub fn report(job: &Job, json: bool) -> Result<()> {
    if json {
        super::print_json(job)?;
    }
    succeeded(job)?;
    if let Some(report) = check_report(job) {
        if !json {
            print!("{}", check_text(report));
        }
        if !report.clean {
            let n = report.problems.len().max(1) as u64;
            bail!("pool check found {}", format::count(n, "problem"));
        }
    } else if !json {
        println!("{}: succeeded", describe(job));
    }
    Ok(())
}

/// One line per problem, then the summary.
pub fn check_text(r: &CheckReport) -> String {
    let mut out = String::new();
    if !r.problems.is_empty() {
        let mut t = format::Table::new(&[
            ("PROBLEM", format::Align::Left),
            ("MESSAGE", format::Align::Left),
        ]);
        for p in &r.problems {
            // A message must stay on its row.
            t.row(vec![p.code.clone(), p.message.replace('\n', " ")]);
        }
        out.push_str(&t.render());
    }
    out.push_str(&format!(
        "pool check: {} ({}, {}, {} checked)\n",
        if r.clean { "clean" } else { "PROBLEMS FOUND" },
        format::count(r.volumes, "volume"),
        format::count(r.snapshots, "snapshot"),
        format::count(r.extents, "extent"),
    ));
    out
}
