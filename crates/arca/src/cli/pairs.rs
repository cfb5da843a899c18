//! `arca pair ...`: copy pairs, a primary volume and a secondary kept as its copy.

use anyhow::Result;
use arca_api::types::{CreatePair, CreatedPair, Job, Pair, ResyncPair, ResyncStarted};
use clap::{Args, Subcommand};

use super::client::{Client, seg};
use super::format::{self, Align, Table, fields, or_dash};
use super::{ClientOptions, Settings, jobs, show_or};

/// A pace in bytes per second, with the units of sizes (`100M` is 100 MiB/s); 0 is refused.
fn parse_pace(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("/s")
        .or_else(|| t.strip_suffix("/S"))
        .unwrap_or(t);
    match super::parse_size_arg(t)? {
        0 => Err(format!(
            "invalid pace {s:?}: a pace of 0 would never copy (leave --pace out for no limit)"
        )),
        n => Ok(n),
    }
}

#[derive(Args, Debug)]
pub struct PairArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: PairCmd,
}

#[derive(Subcommand, Debug)]
pub enum PairCmd {
    /// Make SECONDARY a copy of PRIMARY (its content is overwritten) and wait for the initial
    /// copy; the pair is named after SECONDARY
    Create {
        primary: String,
        secondary: String,
        /// Copy at most this many bytes per second, with a binary unit: 512K, 100M, 1G
        #[arg(long, value_name = "SIZE", value_parser = parse_pace, allow_hyphen_values = true)]
        pace: Option<u64>,
        /// Print the pair and its copy job and return instead of waiting for the copy
        #[arg(long)]
        no_wait: bool,
    },
    /// List the pairs
    List,
    /// Show one pair
    Show { name: String },
    /// Split a pair at one instant: the secondary keeps that image and becomes writable
    Split { name: String },
    /// Copy what changed since the split, primary to secondary (or back with --reverse), and
    /// wait; the pair mirrors again when it ends
    Resync {
        name: String,
        /// Copy secondary to primary: the primary returns to the secondary's image
        #[arg(long)]
        reverse: bool,
        /// When the secondary holds a backup (taken by splitting the pair), record it as
        /// consumed and resync (refused without this; overrides its keep-until, never a hold
        /// or a lock)
        #[arg(long)]
        consume_backup: bool,
        /// Print the job and return instead of waiting for it
        #[arg(long)]
        no_wait: bool,
    },
    /// End a pair: mirroring stops, both volumes stay
    Delete { name: String },
}

fn pair_path(name: &str) -> String {
    format!("/v1/pairs/{}", seg(name))
}

fn volume(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "(deleted)".into())
}

fn pace(p: &Pair) -> String {
    p.pace_bytes_per_second
        .map_or_else(|| "-".to_string(), |b| format!("{}/s", format::size(b)))
}

fn state(p: &Pair) -> String {
    match &p.reason {
        Some(r) => format!("{} ({r})", p.state),
        None => p.state.to_string(),
    }
}

/// Waits for a pair's copy job; an error unless it succeeded.
fn wait_job(c: &Client, id: arca_backup::JobId) -> Result<Job> {
    let job = jobs::wait_id(c, id)?;
    jobs::succeeded(&job)?;
    Ok(job)
}

pub fn run(c: &Client, s: &Settings, cmd: PairCmd) -> Result<()> {
    match cmd {
        PairCmd::Create {
            primary,
            secondary,
            pace,
            no_wait,
        } => {
            let body = CreatePair {
                primary,
                secondary,
                pace,
            };
            create(c, s, body, no_wait)
        }
        PairCmd::List => {
            let list: Vec<Pair> = c.get("/v1/pairs", &[])?;
            show_or(s, &list, || print!("{}", pair_table(&list)))
        }
        PairCmd::Show { name } => {
            let p: Pair = c.get(&pair_path(&name), &[])?;
            show_or(s, &p, || print!("{}", pair_fields(&p)))
        }
        PairCmd::Split { name } => {
            let p: Pair = c.post_empty(&format!("{}/split", pair_path(&name)))?;
            show_or(s, &p, || {
                println!(
                    "split pair {} at {}: {} keeps the image of {} from then and is writable",
                    p.name,
                    or_dash(p.split.as_ref()),
                    volume(&p.secondary),
                    volume(&p.primary)
                )
            })
        }
        PairCmd::Resync {
            name,
            reverse,
            consume_backup,
            no_wait,
        } => {
            let body = ResyncPair {
                reverse,
                consume_backup,
            };
            resync(c, s, &name, body, no_wait)
        }
        PairCmd::Delete { name } => {
            c.delete(&pair_path(&name), &[])?;
            // 204 without a body: with --json there is nothing to print.
            if !s.json {
                println!("deleted pair {name}; both volumes stay");
            }
            Ok(())
        }
    }
}

/// `pair create`: starts the pair, then waits for its initial copy unless `no_wait`.
fn create(c: &Client, s: &Settings, body: CreatePair, no_wait: bool) -> Result<()> {
    let mut created: CreatedPair = c.post_json("/v1/pairs", &body)?;
    if let Some(w) = &created.warning {
        eprintln!("warning: {w}");
    }
    let p = &created.pair;
    match created.job {
        Some(job) if no_wait => show_or(s, &created, || {
            println!(
                "pair {}: copying {} to {} in job {job} (arca job wait {job})",
                p.name,
                volume(&p.primary),
                volume(&p.secondary)
            )
        }),
        Some(job) => {
            wait_job(c, job)?;
            created.pair = c.get(&pair_path(&created.pair.name), &[])?;
            let p = &created.pair;
            show_or(s, &created, || {
                copy_done(p, &p.secondary, "is a copy of", &p.primary)
            })
        }
        None => show_or(s, &created, || {
            println!("pair {}: state {}", p.name, state(p))
        }),
    }
}

/// Says that a copy between the pair's volumes ended: "pair NAME: TO WHAT FROM, state S".
fn copy_done(p: &Pair, to: &Option<String>, what: &str, from: &Option<String>) {
    println!(
        "pair {}: {} {what} {}, state {}",
        p.name,
        volume(to),
        volume(from),
        state(p)
    )
}

/// `pair resync`: starts the resync, then waits for it unless `no_wait`.
fn resync(c: &Client, s: &Settings, name: &str, body: ResyncPair, no_wait: bool) -> Result<()> {
    let reverse = body.reverse;
    let path = format!("{}/resync", pair_path(name));
    let mut started: ResyncStarted = c.post_json(&path, &body)?;
    let job = started.job;
    if no_wait {
        let p = &started.pair;
        return show_or(s, &started, || {
            println!(
                "pair {}: {} in job {job} (arca job wait {job})",
                p.name, p.state
            )
        });
    }
    wait_job(c, job)?;
    started.pair = c.get(&pair_path(name), &[])?;
    let p = &started.pair;
    show_or(s, &started, || {
        if reverse {
            copy_done(p, &p.primary, "restored from", &p.secondary)
        } else {
            copy_done(p, &p.secondary, "is again a copy of", &p.primary)
        }
    })
}

fn pair_table(list: &[Pair]) -> String {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("PRIMARY", Align::Left),
        ("SECONDARY", Align::Left),
        ("STATE", Align::Left),
        ("SPLIT", Align::Left),
        ("PACE", Align::Right),
        ("JOB", Align::Right),
        ("CREATED", Align::Left),
    ]);
    for p in list {
        t.row(vec![
            p.name.clone(),
            volume(&p.primary),
            volume(&p.secondary),
            p.state.to_string(),
            or_dash(p.split.as_ref()),
            pace(p),
            or_dash(p.job),
            p.created.clone(),
        ]);
    }
    t.render()
}

fn pair_fields(p: &Pair) -> String {
    fields(&[
        ("name", p.name.clone()),
        ("primary", volume(&p.primary)),
        ("secondary", volume(&p.secondary)),
        ("state", p.state.to_string()),
        ("reason", or_dash(p.reason.as_ref())),
        ("split", or_dash(p.split.as_ref())),
        ("pace", pace(p)),
        ("job", or_dash(p.job)),
        ("created", p.created.clone()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces() {
        assert_eq!(parse_pace("100M"), Ok(100 << 20));
        assert_eq!(parse_pace("64K/s"), Ok(64 << 10));
        assert_eq!(parse_pace("4096"), Ok(4096));
        assert!(parse_pace("0").unwrap_err().contains("never copy"));
        assert!(parse_pace("-1M").unwrap_err().contains("negative"));
        assert!(parse_pace("fast").is_err());
    }
}
