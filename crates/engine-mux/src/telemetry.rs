//! Logging setup: text or JSON, stdout or a file, filtered by --log-level.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::{cli::LogFormat, config::LogConfig};

/// Keeps the non-blocking log writer flushing; drop it last.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global subscriber (the one piece of process-wide state, owned by `main`).
pub fn init(config: &LogConfig) -> Result<LogGuard, String> {
    let filter = EnvFilter::try_new(&config.level)
        .map_err(|e| format!("--log-level: invalid filter {:?}: {e}", config.level))?;
    let (writer, guard) = match &config.file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("--log-file: cannot open {}: {e}", path.display()))?;
            tracing_appender::non_blocking(file)
        }
        None => tracing_appender::non_blocking(std::io::stdout()),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = config.file.is_none();
    match config.format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(writer))
            .try_init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(ansi).with_writer(writer))
            .try_init(),
    }
    .map_err(|e| format!("installing the log subscriber failed: {e}"))?;
    if let Some(endpoint) = &config.otlp {
        tracing::warn!(%endpoint, "--tracing: OTLP export is not built into this version of engine-mux; traces are not exported (logs are unaffected)");
    }
    Ok(guard)
}
