//! `arca`: the daemon and the command-line client.

mod cli;
mod nbd_exports;
mod serve;
mod size;
mod tls_setup;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "arca",
    version,
    about = "A software disk array that manages its own backups"
)]
struct Cli {
    #[command(flatten)]
    client: cli::LeadingOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: serve the pool's volumes and snapshots over NBD
    Serve(serve::ServeArgs),
    #[command(flatten)]
    Client(cli::Command),
}

fn main() {
    let cli = Cli::parse();
    // The client commands neither log nor share the daemon's error handling.
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Client(cmd) => {
            // `arca volume list | head` should end quietly, as other shell tools do, not
            // panic on a closed pipe: take the default SIGPIPE action back from Rust's ignore.
            // SAFETY: sets a signal disposition to SIG_DFL before any other thread exists.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            std::process::exit(cli::run(cli.client, cmd))
        }
    };
    if cli.client.given() {
        use clap::CommandFactory;
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--api, --token, --json and --ca-file before the subcommand are client options; \
                 serve takes its own options after `serve`",
            )
            .exit();
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = serve::run(args);
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
