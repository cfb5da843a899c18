//! `arca vault ...`: the vaults backups are copied to (a directory or an S3 bucket and prefix).
//! Secrets are read from files and sent to the daemon, never printed; the key of an encrypted
//! vault leaves the daemon only through `vault key export`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use arca_api::types::{AddVault, RemovedVault, Vault, VaultKeyExport};
use clap::{Args, Subcommand};

use super::client::{Client, seg};
use super::format::{Align, Table, fields, or_dash};
use super::{ClientOptions, Settings, show_or};

#[derive(Args, Debug)]
pub struct VaultArgs {
    #[command(flatten)]
    pub opts: ClientOptions,
    #[command(subcommand)]
    pub cmd: VaultCmd,
}

#[derive(Subcommand, Debug)]
pub enum VaultCmd {
    /// Register a vault: file:///PATH (a directory) or s3://BUCKET/PREFIX. Nothing contacts it
    /// yet.
    Add {
        name: String,
        /// file:///ABSOLUTE/PATH or s3://BUCKET/PREFIX
        #[arg(long)]
        url: String,
        /// S3 only: the service's URL (https://...; http:// needs --allow-http)
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// S3 only: the region
        #[arg(long)]
        region: Option<String>,
        /// S3 only: a file holding the access key (surrounding whitespace ignored)
        #[arg(long, value_name = "FILE", requires = "secret_key_file")]
        access_key_file: Option<PathBuf>,
        /// S3 only: a file holding the secret key
        #[arg(long, value_name = "FILE", requires = "access_key_file")]
        secret_key_file: Option<PathBuf>,
        /// Encrypt what is written to the vault; the key is made now and kept in the pool
        /// (export it with `arca vault key export` and keep it apart from the vault)
        #[arg(long)]
        encrypt: bool,
        /// S3 only: accept a plain http:// endpoint (data and credentials in clear)
        #[arg(long)]
        allow_http: bool,
    },
    /// List the vaults
    List,
    /// Show one vault (never its secrets)
    Show { name: String },
    /// Remove a vault from the registry (its data stays where it is)
    Remove {
        name: String,
        /// Remove even though backups list copies in it: those copy entries are dropped from
        /// their records (a backup living only there becomes deleted)
        #[arg(long)]
        force: bool,
    },
    /// An encrypted vault's key
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Print the key (hex), or write it to a new file (mode 0600): what another array needs
    /// to read the vault after a disaster
    Export {
        name: String,
        /// Write the key to this new file instead of stdout
        #[arg(long, value_name = "FILE")]
        to: Option<PathBuf>,
    },
}

/// A secret from a file, without surrounding whitespace; errors name the file, never the
/// content.
fn read_secret(what: &str, path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} file {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    Ok(secret.to_string())
}

fn vault_table(list: &[Vault]) -> String {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("KIND", Align::Left),
        ("URL", Align::Left),
        ("ENCRYPTED", Align::Left),
        ("BACKUPS", Align::Right),
        ("ADDED", Align::Left),
    ]);
    for v in list {
        t.row(vec![
            v.name.clone(),
            v.kind.to_string(),
            v.url.clone(),
            if v.encrypted { "yes" } else { "no" }.into(),
            v.backups.to_string(),
            v.added.clone(),
        ]);
    }
    t.render()
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn vault_fields(v: &Vault) -> String {
    fields(&[
        ("name", v.name.clone()),
        ("kind", v.kind.to_string()),
        ("url", v.url.clone()),
        ("endpoint", or_dash(v.endpoint.as_ref())),
        ("region", or_dash(v.region.as_ref())),
        ("allow http", yes_no(v.allow_http)),
        (
            "credentials",
            if v.credentials { "stored" } else { "none" }.into(),
        ),
        ("encrypted", yes_no(v.encrypted)),
        ("vault id", or_dash(v.vault_id.as_ref())),
        ("added", v.added.clone()),
        ("backups", v.backups.to_string()),
    ])
}

/// Writes the key to a new file only its owner reads; an existing file is never overwritten.
fn write_key_file(path: &Path, key_hex: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} for the key (it must not exist)",
                path.display()
            )
        })?;
    f.write_all(format!("{key_hex}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing the key to {}", path.display()))
}

pub fn run(c: &Client, s: &Settings, cmd: VaultCmd) -> Result<()> {
    match cmd {
        VaultCmd::Add {
            name,
            url,
            endpoint,
            region,
            access_key_file,
            secret_key_file,
            encrypt,
            allow_http,
        } => {
            let access_key = access_key_file
                .map(|p| read_secret("access key", &p))
                .transpose()?;
            let secret_key = secret_key_file
                .map(|p| read_secret("secret key", &p))
                .transpose()?;
            let body = AddVault {
                name,
                url,
                endpoint,
                region,
                allow_http,
                access_key,
                secret_key,
                encrypt,
            };
            let v: Vault = c.post_json("/v1/vaults", &body)?;
            show_or(s, &v, || {
                println!("added vault {} ({} at {})", v.name, v.kind, v.url);
                if v.encrypted {
                    println!(
                        "it is encrypted: export its key now and keep it apart from the vault \
                         (arca vault key export {} --to FILE)",
                        v.name
                    );
                }
            })
        }
        VaultCmd::List => {
            let list: Vec<Vault> = c.get("/v1/vaults", &[])?;
            show_or(s, &list, || print!("{}", vault_table(&list)))
        }
        VaultCmd::Show { name } => {
            let v: Vault = c.get(&format!("/v1/vaults/{}", seg(&name)), &[])?;
            show_or(s, &v, || print!("{}", vault_fields(&v)))
        }
        VaultCmd::Remove { name, force } => {
            let flag = if force { "true" } else { "false" };
            let r: RemovedVault =
                c.delete_json(&format!("/v1/vaults/{}", seg(&name)), &[("force", flag)])?;
            show_or(s, &r, || {
                println!("removed vault {} (its data stays at {})", name, r.vault.url);
                if !r.dropped_from.is_empty() {
                    let ids: Vec<String> = r.dropped_from.iter().map(|i| i.to_string()).collect();
                    println!("copy entries dropped from backups {}", ids.join(", "));
                }
            })
        }
        VaultCmd::Key {
            cmd: KeyCmd::Export { name, to },
        } => {
            let path = format!("/v1/vaults/{}/key-export", seg(&name));
            let k: VaultKeyExport = c.post_empty(&path)?;
            match to {
                Some(file) => {
                    write_key_file(&file, &k.key)?;
                    if s.json {
                        super::print_json(&serde_json::json!({
                            "vault": k.vault, "written_to": file.display().to_string()
                        }))
                    } else {
                        println!(
                            "wrote the key of vault {} to {} (mode 0600); keep it apart from the \
                             vault",
                            k.vault,
                            file.display()
                        );
                        Ok(())
                    }
                }
                None => show_or(s, &k, || println!("{}", k.key)),
            }
        }
    }
}
