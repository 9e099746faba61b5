//! engine-mux binary: parse the config, start the instance, stop on SIGINT/SIGTERM.

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use engine_api::{Upstream, UpstreamConfig, upstream::DEFAULT_MAX_RESPONSE_BYTES};
use engine_mux::{
    Args, BuilderStatus, Command, Config, DebugCommand, ExecutionModeBody, init_telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let args = Args::parse();
    if let Some(Command::Debug { command }) = &args.command {
        return debug_command(&args, command).await;
    }
    let config = match Config::try_from(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("engine-mux: {e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = match init_telemetry(&config.log) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("engine-mux: {e}");
            return ExitCode::from(2);
        }
    };
    let running = match engine_mux::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("engine-mux: {e}");
            return ExitCode::from(1);
        }
    };
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight calls");
    running.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => tracing::info!("received SIGINT"),
                _ = term.recv() => tracing::info!("received SIGTERM"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `engine-mux debug ...`: talks to a running instance's debug server.
async fn debug_command(args: &Args, command: &DebugCommand) -> ExitCode {
    let url = format!("http://{}:{}", args.debug_host, args.debug_server_port);
    let Ok(url) = url.parse() else {
        eprintln!("engine-mux: --debug-host: invalid address {url:?}");
        return ExitCode::from(2);
    };
    let client = Upstream::new(UpstreamConfig {
        name: "debug",
        url,
        secret: None,
        timeout: Duration::from_secs(5),
        max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
    });
    let timeout = client.timeout();
    let res = match command {
        DebugCommand::SetExecutionMode { execution_mode } => client
            .call::<ExecutionModeBody>(
                "debug_setExecutionMode",
                &(ExecutionModeBody {
                    execution_mode: *execution_mode,
                },),
                timeout,
            )
            .await
            .map(|body| format!("execution mode: {}", body.execution_mode)),
        DebugCommand::ExecutionMode => client
            .call::<ExecutionModeBody>("debug_getExecutionMode", &(), timeout)
            .await
            .map(|body| format!("execution mode: {}", body.execution_mode)),
        DebugCommand::Builders => client
            .call::<Vec<BuilderStatus>>("debug_getBuilders", &(), timeout)
            .await
            .map(|list| list.iter().map(describe).collect::<Vec<_>>().join("\n")),
        DebugCommand::SetBuilderEnabled { name, enabled } => client
            .call::<BuilderStatus>("debug_setBuilderEnabled", &(name, enabled), timeout)
            .await
            .map(|b| describe(&b)),
    };
    match res {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("engine-mux: {e}");
            ExitCode::from(1)
        }
    }
}

fn describe(b: &BuilderStatus) -> String {
    let head = match (b.head, b.behind) {
        (Some(head), Some(behind)) => format!("head {head} ({behind} behind)"),
        _ => "head unknown".to_string(),
    };
    format!(
        "{}\t{}\t{}\t{}\t{:?} since {} ms\t{}\tlast: {}",
        b.name,
        b.url,
        if b.healthy { "healthy" } else { "unhealthy" },
        if b.enabled { "enabled" } else { "disabled" },
        b.state,
        b.since_unix_ms,
        head,
        b.last_outcome
    )
}
