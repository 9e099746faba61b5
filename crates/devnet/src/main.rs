//! `devnet`: the whole OP Stack devnet (or one component of it) in one process.

use clap::Parser;
use devnet::app::{
    cli::{Cli, Command},
    commands,
};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The all-in-one run prints status lines; logs stay quiet unless RUST_LOG asks.
    let default_filter = if cli.command.is_none() {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        None => commands::run_all(cli.all).await,
        Some(Command::Engine(a)) => commands::run_engine(a).await,
        Some(Command::Builder(a)) => commands::run_builder(a).await,
        Some(Command::Driver(a)) => commands::run_driver(a).await,
        Some(Command::Spam(a)) => commands::run_spam(a).await,
        Some(Command::Genesis(a)) => commands::run_genesis(a),
        Some(Command::Ha(a)) => devnet::app::ha::run(a).await,
        Some(Command::Soak(a)) => devnet::app::soak::run(a).await,
    };
    if let Err(e) = result {
        eprintln!("devnet: {e}");
        std::process::exit(1);
    }
}
