//! `arca serve`: open (or create) the pool, serve it over NBD, stop cleanly on SIGINT/SIGTERM.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, anyhow, bail};
use arca_store::{Pool, PoolConfig};

use crate::nbd_exports::PoolExports;
use crate::size::parse_size;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Directory holding the pool's devices as device-N.img (created with one sparse device
    /// on first start)
    #[arg(long, default_value = "arca-data")]
    pub pool: PathBuf,
    /// Serve the pool on these files or block devices instead of --pool (repeatable)
    #[arg(long = "device")]
    pub devices: Vec<PathBuf>,
    /// Create a new pool on the --device paths (files are created sparse with --size)
    #[arg(long)]
    pub create: bool,
    /// Size of each new device file
    #[arg(long, default_value = "16G", value_parser = parse_size)]
    pub size: u64,
    /// Extent size of a new pool
    #[arg(long, default_value = "64K", value_parser = parse_size)]
    pub extent_size: u64,
    /// NBD listen address
    #[arg(long, default_value = "127.0.0.1:10809")]
    pub nbd: String,
    /// Make sure a volume exists: NAME=SIZE (created when missing; repeatable)
    #[arg(long = "volume", value_parser = parse_volume)]
    pub volumes: Vec<(String, u64)>,
    /// Export served to clients that ask for the empty name (default: the only volume)
    #[arg(long)]
    pub default_export: Option<String>,
}

fn parse_volume(s: &str) -> Result<(String, u64), String> {
    let (name, size) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=SIZE, got {s:?}"))?;
    Ok((name.to_string(), parse_size(size)?))
}

fn config(args: &ServeArgs) -> Result<PoolConfig> {
    let extent_size =
        u32::try_from(args.extent_size).map_err(|_| anyhow!("extent size too large"))?;
    Ok(PoolConfig {
        extent_size,
        meta_len: None,
    })
}

fn device_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("reading pool directory {}", dir.display()));
        }
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(n) = name
            .strip_prefix("device-")
            .and_then(|r| r.strip_suffix(".img"))
            .and_then(|n| n.parse().ok())
        {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

fn open_pool(args: &ServeArgs) -> Result<Pool> {
    let in_use = |e: arca_store::Error| {
        let text = e.to_string();
        if text.contains("in use by another process") {
            anyhow!("{text}: is another arca serve running on this pool?")
        } else {
            anyhow!(text)
        }
    };
    if !args.devices.is_empty() {
        let paths: Vec<&Path> = args.devices.iter().map(|p| p.as_path()).collect();
        if args.create {
            let mut devices: Vec<Arc<dyn arca_store::BlockDevice>> = Vec::new();
            for p in &paths {
                let dev = if p.exists() {
                    arca_store::FileDevice::open(p)
                } else {
                    arca_store::FileDevice::create(p, args.size)
                }
                .with_context(|| format!("device {}", p.display()))?;
                devices.push(Arc::new(dev));
            }
            return Pool::create(devices, &config(args)?).map_err(in_use);
        }
        return Pool::open_paths(&paths).map_err(in_use);
    }
    let files = device_files(&args.pool)?;
    if files.is_empty() {
        std::fs::create_dir_all(&args.pool)
            .with_context(|| format!("creating pool directory {}", args.pool.display()))?;
        let path = args.pool.join("device-0.img");
        tracing::info!(path = %path.display(), size = args.size, "creating a new pool");
        return Pool::create_files(&[&path], args.size, &config(args)?).map_err(in_use);
    }
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    Pool::open_paths(&paths).map_err(in_use)
}

pub fn run(args: ServeArgs) -> Result<()> {
    let pool = open_pool(&args)?;
    for (name, size) in &args.volumes {
        match pool.volume(name) {
            Ok(v) if v.size >= *size => {}
            Ok(v) => bail!(
                "volume {name} exists with {} bytes, smaller than the {size} asked",
                v.size
            ),
            Err(e) if e.kind() == arca_store::ErrorKind::NotFound => {
                pool.create_volume(name, *size, None)
                    .with_context(|| format!("creating volume {name}"))?;
                tracing::info!(%name, size, "created volume");
            }
            Err(e) => return Err(anyhow!(e)),
        }
    }
    let listener =
        TcpListener::bind(&args.nbd).with_context(|| format!("listening on {}", args.nbd))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let exports = Arc::new(PoolExports::new(pool.clone(), args.default_export.clone()));
    let server = arca_nbd::Server::new(exports, arca_nbd::Limits::default());
    // Scripts and tests wait for this line; it carries the port when 0 was asked for.
    println!("arca: serving NBD on {}", listener.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;
    server.serve(&listener, &stop)?;
    drop(server);
    pool.close().context("flushing the pool")?;
    tracing::info!("stopped cleanly");
    Ok(())
}
