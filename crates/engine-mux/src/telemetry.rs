//! Logging and tracing setup: text or JSON logs to stdout or a file, filtered by --log-level,
//! and with --tracing, spans exported over OTLP/gRPC with W3C trace context propagated to the
//! upstreams (see `engine_api::auth`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::config::{LogConfig, args::LogFormat};

/// Keeps log writing and span export alive; on drop, flushes what is buffered.
pub struct Telemetry {
    _log: tracing_appender::non_blocking::WorkerGuard,
    tracer: Option<SdkTracerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("otlp", &self.tracer.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.tracer.take().map(|p| p.shutdown()) {
            eprintln!("engine-mux: flushing traces failed: {e}");
        }
    }
}

fn otlp_provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| {
            format!("--otlp-endpoint: cannot build the OTLP exporter for {endpoint:?}: {e}")
        })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("engine-mux").build())
        .build())
}

/// Installs the global subscriber (the one piece of process-wide state, owned by `main`).
/// Must run inside the tokio runtime (the OTLP exporter spawns on it).
pub fn init(config: &LogConfig) -> Result<Telemetry, String> {
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
    let logs = match config.format {
        LogFormat::Json => fmt::layer().json().with_writer(writer).boxed(),
        LogFormat::Text => fmt::layer()
            .with_ansi(config.file.is_none())
            .with_writer(writer)
            .boxed(),
    };
    let tracer = config.otlp.as_deref().map(otlp_provider).transpose()?;
    let spans = tracer.as_ref().map(|provider| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing_opentelemetry::layer().with_tracer(provider.tracer("engine-mux"))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(|e| format!("installing the log subscriber failed: {e}"))?;
    if let Some(endpoint) = &config.otlp {
        tracing::info!(%endpoint, "exporting traces over OTLP/gRPC");
    }
    Ok(Telemetry {
        _log: guard,
        tracer,
    })
}
