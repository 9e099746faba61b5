//! `flashblocks-rpc` binary: parse flags, start, run until Ctrl-C / SIGTERM.

use clap::Parser;
use flashblocks_rpc::{Config, cli::Args, config::LogFormat};

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let config = match Config::try_from(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flashblocks-rpc: {e}");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::new(&config.log_level);
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let running = match flashblocks_rpc::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flashblocks-rpc: {e}");
            std::process::exit(1);
        }
    };
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
