//! `arca serve`: open (or create) the pool, serve it over NBD, stop cleanly on SIGINT/SIGTERM.

use std::net::TcpListener;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, anyhow, bail};
use arca_store::{OpenOptions, Pool, PoolConfig};

use crate::nbd_exports::{NbdHosts, PoolExports};
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
    /// Management API listen address (HTTP)
    #[arg(long, default_value = "127.0.0.1:7410")]
    pub api: String,
    /// File holding the API's bearer token (ARCA_TOKEN also sets it); required when the API
    /// listens on a non-loopback address
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Open the pool although device INDEX holds an old copy of itself (the start refused it
    /// as stale): what was written to it since that copy is lost. The log records it, and the
    /// device is current from then on (repeatable)
    #[arg(long = "accept-stale-device", value_name = "INDEX")]
    pub accept_stale_devices: Vec<u32>,
    /// Make sure a volume exists: NAME=SIZE (created when missing; repeatable)
    #[arg(long = "volume", value_parser = parse_volume)]
    pub volumes: Vec<(String, u64)>,
    /// Export served to clients that ask for the empty name (default: the only volume)
    #[arg(long)]
    pub default_export: Option<String>,
    /// Close an NBD connection after this many seconds without a request (0: never, the
    /// default: a mounted disk nobody writes to is idle too; vanished peers are found by TCP
    /// keepalive, and one address holds at most --nbd-max-connections-per-host)
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub nbd_idle_timeout: u64,
    /// Most NBD connections served at once from one client address (128 from all addresses)
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub nbd_max_connections_per_host: u64,
    /// API requests per second allowed to each token (and to each remote address for
    /// requests without a valid one); 0 turns the limit off. 100 is far above what the CLI,
    /// the console and job polling send, yet keeps one runaway or leaked token from taking
    /// the daemon's API workers from the others
    #[arg(long, value_name = "N", default_value_t = 100.0, value_parser = parse_rate)]
    pub api_rate_limit: f64,
    /// Requests a caller may send at once, above --api-rate-limit, after an idle spell
    #[arg(long, value_name = "N", default_value_t = 200.0, value_parser = parse_burst)]
    pub api_rate_burst: f64,
    /// For tests only: the backup layer's clock reads the time (integer milliseconds since the
    /// epoch) from this file on every call, falling back to the system clock when the file is
    /// missing or does not hold a number. Lets tests script a calendar of backups.
    #[arg(long, value_name = "PATH", hide = true)]
    pub test_clock_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: crate::tls_setup::TlsArgs,
}

/// A finite rate, 0 or more.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a number of requests per second (0 or more)"
        )),
    }
}

/// A burst of at least one request.
fn parse_burst(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 1.0 => Ok(r),
        _ => Err(format!("{s:?} is not a number of requests (1 or more)")),
    }
}

/// How long an orderly stop waits for running restores to stop at their next step.
const RESTORE_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The backup layer's clock: the system's, or (for tests) the one in `--test-clock-file`.
fn backup_clock(args: &ServeArgs) -> arca_backup::Clock {
    let Some(path) = args.test_clock_file.clone() else {
        return arca_backup::system_clock();
    };
    tracing::warn!(path = %path.display(), "the backup clock reads a test clock file");
    let system = arca_backup::system_clock();
    Arc::new(move || {
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or_else(|| system())
    })
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
    // Told apart by kind, not by their text: a locked device file, and a stale device.
    let in_use = |e: arca_store::Error| {
        let locked =
            e.io_error().map(std::io::Error::kind) == Some(std::io::ErrorKind::ResourceBusy);
        if locked {
            anyhow!("{e}: is another arca serve running on this pool?")
        } else if e.kind() == arca_store::ErrorKind::StaleDevice {
            anyhow!("{e} (--accept-stale-device INDEX)")
        } else {
            anyhow!(e.to_string())
        }
    };
    let options = OpenOptions {
        accept_stale_devices: args.accept_stale_devices.clone(),
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
        return Pool::open_paths_with(&paths, &options).map_err(in_use);
    }
    let files = device_files(&args.pool)?;
    if files.is_empty() {
        // Only the daemon's user may look into a new pool (its device files are 0600 too).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&args.pool)
            .with_context(|| format!("creating pool directory {}", args.pool.display()))?;
        let path = args.pool.join("device-0.img");
        tracing::info!(path = %path.display(), size = args.size, "creating a new pool");
        return Pool::create_files(&[&path], args.size, &config(args)?).map_err(in_use);
    }
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    Pool::open_paths_with(&paths, &options).map_err(in_use)
}

fn nbd_limits(args: &ServeArgs) -> arca_nbd::Limits {
    let defaults = arca_nbd::Limits::default();
    arca_nbd::Limits {
        idle_timeout: (args.nbd_idle_timeout > 0)
            .then(|| std::time::Duration::from_secs(args.nbd_idle_timeout)),
        connections_per_host_max: usize::try_from(args.nbd_max_connections_per_host)
            .unwrap_or(usize::MAX),
        ..defaults
    }
}

/// The API token: from --token-file, else ARCA_TOKEN; refused when empty.
fn api_token(args: &ServeArgs) -> Result<Option<String>> {
    let token = match &args.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading token file {}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("ARCA_TOKEN")
            .ok()
            .map(|t| t.trim().to_string()),
    };
    match token {
        Some(t) if t.is_empty() => bail!("the API token is empty"),
        t => Ok(t),
    }
}

/// The volumes `--volume NAME=SIZE` asks for: made when missing, refused when smaller.
fn ensure_volumes(pool: &Pool, volumes: &[(String, u64)]) -> Result<()> {
    for (name, size) in volumes {
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
    Ok(())
}

/// How long a stop waits for backup policy runs in progress.
const POLICY_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// After the data path and the API have stopped: restores paused, the last writes made
/// durable, pairs closed cleanly when that worked, and the pool closed.
fn stop_services(
    pool: Pool,
    backups: &arca_backup::Backups,
    pairs: &arca_backup::Pairs,
) -> Result<()> {
    // Running restores stop where they are: their markers stay, and the next start resumes
    // them (the volumes stay read-only until then).
    backups.stop(RESTORE_STOP_WAIT);
    // The data path and the API have stopped: make the last writes durable, then mark the
    // pairs in `pair` state closed cleanly (both sides hold the same durable image), so that
    // the next start resumes mirroring without a full copy. Not after a failed flush: then the
    // two sides may differ, and the full copy at the next start is what makes them equal.
    match pool.flush() {
        Ok(()) => {
            if let Err(e) = pairs.close() {
                tracing::error!(
                    "closing the copy pairs (they get a full copy at the next start): {e}"
                );
            }
        }
        Err(e) => tracing::error!(
            "the last flush failed; the copy pairs are not closed cleanly (full copy at the \
             next start): {e}"
        ),
    }
    pool.close().context("flushing the pool")?;
    Ok(())
}

pub fn run(args: ServeArgs) -> Result<()> {
    let token = api_token(&args)?;
    let api_addr: std::net::SocketAddr = args
        .api
        .parse()
        .with_context(|| format!("invalid --api address {}", args.api))?;
    if !api_addr.ip().is_loopback() && token.is_none() {
        bail!(
            "refusing to serve the API on non-loopback address {api_addr} without a token: \
             use --token-file or ARCA_TOKEN"
        );
    }
    // Refused before touching the pool: exposure without TLS, unusable credentials.
    let api_tls = args.tls.api_tls()?;
    args.tls.check_api_exposure(api_addr, api_tls.is_some())?;
    let nbd_tls = args.tls.nbd_tls()?;
    args.tls.check_nbd_exposure(&args.nbd)?;
    let access = args.tls.nbd_access()?;
    let pool = open_pool(&args)?;
    ensure_volumes(&pool, &args.volumes)?;
    let listener =
        TcpListener::bind(&args.nbd).with_context(|| format!("listening on {}", args.nbd))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let metrics = Arc::new(arca_api::Metrics::default());
    let exports = Arc::new(PoolExports::new(
        pool.clone(),
        args.default_export.clone(),
        metrics.clone(),
    ));
    let server = Arc::new(arca_nbd::Server::new(exports, nbd_limits(&args)).with_tls(nbd_tls));
    if let Some(path) = &args.tls.nbd_access {
        tracing::info!(rules = access.len(), path = %path.display(), "NBD export access rules");
        server.set_access(access);
        crate::tls_setup::reload_access_on_hup(path.clone(), Arc::downgrade(&server))?;
    }
    let nbd_addr = listener.local_addr()?;
    // The backup service: recovers copies a stop interrupted and guards every destination
    // before any client or API request can touch them.
    let jobs = Arc::new(arca_backup::JobManager::new());
    let hosts: Arc<dyn arca_backup::Hosts> = Arc::new(NbdHosts::new(server.clone()));
    let backups = arca_backup::Backups::open_with_clock(
        pool.clone(),
        jobs.clone(),
        hosts.clone(),
        backup_clock(&args),
    )
    .map_err(|e| anyhow!("opening the backup catalog: {e}"))?;
    // The copy pairs: installs their mirrors and guards before any client can write, and
    // resumes the copies a stop interrupted (jobs in the same manager).
    let pairs = arca_backup::Pairs::open(pool.clone(), jobs.clone())
        .map_err(|e| anyhow!("opening the copy pairs: {e}"))?;
    // Backups may then use pair secondaries (a copy backup to one splits its pair), and
    // resyncs go through the backup service, which guards a backup held on a secondary.
    backups
        .attach_pairs(pairs.clone())
        .map_err(|e| anyhow!("attaching the copy pairs to the backups: {e}"))?;

    // Backup policies: runs a stop interrupted are recorded as such; the scheduler thread
    // ticks on the backups' clock.
    let policies = arca_backup::Policies::open(backups.clone())
        .map_err(|e| anyhow!("opening the backup policies: {e}"))?;
    let scheduler = policies
        .start_scheduler()
        .context("starting the backup policy scheduler")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the API runtime")?;
    let api_listener = runtime
        .block_on(tokio::net::TcpListener::bind(api_addr))
        .with_context(|| format!("listening on {api_addr}"))?;
    let api_local = api_listener.local_addr()?;
    let state = Arc::new(arca_api::ApiState {
        pool: pool.clone(),
        jobs,
        backups: backups.clone(),
        pairs: pairs.clone(),
        policies: policies.clone(),
        hosts,
        metrics,
        tokens: Arc::new(
            arca_api::tokens::Tokens::open(pool.clone(), token.clone())
                .map_err(|e| anyhow!("reading the API tokens: {e}"))?,
        ),
        audit: Arc::new(
            arca_api::audit::Audit::open(pool.clone(), backup_clock(&args))
                .map_err(|e| anyhow!("opening the audit trail: {e}"))?,
        ),
        checks: Arc::new(
            arca_api::checks::Checks::open(pool.clone(), backup_clock(&args))
                .map_err(|e| anyhow!("opening the record of checks: {e}"))?,
        ),
        rate: Arc::new(arca_api::rate::RateLimiter::new(
            arca_api::rate::RateLimit {
                per_second: args.api_rate_limit,
                burst: args.api_rate_burst,
            },
        )),
        token,
        api_addr: api_local,
        nbd_addr: nbd_addr.to_string(),
    });
    let api_stop = stop.clone();
    let api_stopped = async move {
        while !api_stop.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let api_scheme = if api_tls.is_some() { "https" } else { "http" };
    let api = match api_tls {
        Some(tls) => runtime.spawn(arca_api::serve_tls(api_listener, tls, state, api_stopped)),
        None => runtime.spawn(arca_api::serve(api_listener, state, api_stopped)),
    };

    // Scripts and tests wait for these lines; they carry the ports when 0 was asked for.
    println!("arca: serving NBD on {nbd_addr}");
    println!("arca: serving API on {api_scheme}://{api_local}");
    use std::io::Write;
    std::io::stdout().flush()?;
    let nbd_result = server.serve(&listener, &stop);
    drop(server);
    match runtime.block_on(api) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("API server failed: {e}"),
        Err(e) => tracing::error!("API server task failed: {e}"),
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    nbd_result?;
    // No new runs; one still going after the wait is recorded as interrupted at the next
    // start.
    scheduler.stop();
    if !policies.wait_idle(POLICY_STOP_WAIT) {
        tracing::warn!("a backup policy run is still going; it is recorded as interrupted");
    }
    stop_services(pool, &backups, &pairs)?;
    tracing::info!("stopped cleanly");
    Ok(())
}
