//! `arca token ...`: named API tokens with roles. The secret is printed once, at creation.

use anyhow::Result;
use arca_api::roles::Role;
use arca_api::tokens::{CreateToken, CreatedToken, TokenInfo};
use clap::{Args, Subcommand};

use super::client::{Client, seg};
use super::format::{Align, Table};
use super::{ClientOptions, Settings, show_or};

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: TokenCmd,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token and print its secret (shown only now; the daemon keeps its hash)
    Create {
        name: String,
        /// admin (everything), operator (volumes, snapshots, backups, restores; no deleting
        /// backups or weakening retention), backup (take, list, verify, hold backups),
        /// read-only
        #[arg(long)]
        role: Role,
    },
    /// List the tokens (names and roles)
    List,
    /// Revoke a token: requests with it are refused from now on
    Revoke { name: String },
}

pub fn run(c: &Client, s: &Settings, cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Create { name, role } => {
            let t: CreatedToken = c.post_json("/v1/tokens", &CreateToken { name, role })?;
            show_or(s, &t, || {
                println!("created token {} with role {}", t.name, t.role);
                println!("secret (shown only now): {}", t.secret);
            })
        }
        TokenCmd::List => {
            let list: Vec<TokenInfo> = c.get("/v1/tokens", &[])?;
            show_or(s, &list, || {
                let mut t = Table::new(&[
                    ("NAME", Align::Left),
                    ("ROLE", Align::Left),
                    ("CREATED", Align::Left),
                ]);
                for i in &list {
                    t.row(vec![i.name.clone(), i.role.to_string(), i.created.clone()]);
                }
                print!("{}", t.render());
            })
        }
        TokenCmd::Revoke { name } => {
            c.delete(&format!("/v1/tokens/{}", seg(&name)), &[])?;
            if !s.json {
                println!("revoked token {name}");
            }
            Ok(())
        }
    }
}
