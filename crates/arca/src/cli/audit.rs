//! `arca audit list`: who changed what, from the daemon's audit trail.

use anyhow::Result;
use arca_api::audit::AuditEntry;
use clap::{Args, Subcommand};

use super::client::Client;
use super::format::{Align, Table};
use super::{ClientOptions, Settings, show_or};

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: AuditCmd,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// The requests that changed (or tried to change) something, oldest first (at most the
    /// newest 1000 that match)
    List {
        /// Only entries at or after this time (RFC 3339 or a date)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only entries of the token with this name (--token is the bearer token itself)
        #[arg(long, value_name = "NAME")]
        token_name: Option<String>,
    },
}

pub fn run(c: &Client, s: &Settings, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::List { since, token_name } => {
            let mut query = Vec::new();
            if let Some(t) = &since {
                query.push(("since", t.as_str()));
            }
            if let Some(t) = &token_name {
                query.push(("token", t.as_str()));
            }
            let list: Vec<AuditEntry> = c.get("/v1/audit", &query)?;
            show_or(s, &list, || {
                let mut t = Table::new(&[
                    ("TIME", Align::Left),
                    ("TOKEN", Align::Left),
                    ("REMOTE", Align::Left),
                    ("STATUS", Align::Right),
                    ("OPERATION", Align::Left),
                ]);
                for e in &list {
                    t.row(vec![
                        e.time.clone(),
                        e.token.clone(),
                        e.remote.clone(),
                        e.status.to_string(),
                        e.operation.clone(),
                    ]);
                }
                print!("{}", t.render());
            })
        }
    }
}
