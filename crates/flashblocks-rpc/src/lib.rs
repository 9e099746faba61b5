//! flashblocks-rpc: a JSON-RPC overlay that answers `pending`-tag queries from a flashblocks
//! stream and forwards everything else, unchanged, to an ordinary EL RPC.

pub mod cli;
pub mod config;
pub mod context;
pub mod execute;
pub mod head;
pub mod metrics;
pub mod pending;
pub mod rpc;
pub mod server;
pub mod stream;

use std::{net::SocketAddr, sync::Arc};

use engine_api::{Upstream, UpstreamConfig};
use jsonrpsee::server::{Server, ServerConfig, ServerHandle};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

pub use crate::{config::Config, context::Context};

/// Why the service could not start; the message names the flag.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("--{flag}: cannot listen on {addr}: {source}")]
    Bind {
        /// The flag that set the address.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Method registration failed (a programming error).
    #[error("registering RPC methods: {0}")]
    Register(#[from] jsonrpsee::core::RegisterMethodError),
}

/// A running instance.
#[derive(Debug)]
pub struct Running {
    /// JSON-RPC address (HTTP and WebSocket).
    pub rpc_addr: SocketAddr,
    /// Prometheus address, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Shared state (for in-process inspection).
    pub ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: ServerHandle,
}

impl Running {
    /// Prometheus text of this instance's metrics.
    pub fn metrics_text(&self) -> String {
        self.ctx.metrics.render()
    }

    /// `http://` URL of the JSON-RPC listener.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    /// `ws://` URL of the JSON-RPC listener.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.rpc_addr)
    }

    /// Stops the listener and the background tasks.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.stop();
        self.server.stopped().await;
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts the listener, the stream client and the head poller.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let upstream = Upstream::with_roots(
        UpstreamConfig {
            name: "upstream",
            url: config.upstream.url.clone(),
            secret: config.upstream.jwt,
            timeout: config.upstream.timeout,
            max_response_bytes: config.upstream.max_response_bytes,
        },
        &config.tls_roots,
    );
    let ctx = Context::new(config.clone(), upstream);
    let server_config = ServerConfig::builder()
        .max_request_body_size(config.max_request_bytes)
        .max_connections(config.max_connections)
        .max_response_body_size(
            u32::try_from(config.upstream.max_response_bytes).unwrap_or(u32::MAX),
        )
        .build();
    let server = Server::builder()
        .set_config(server_config)
        .set_http_middleware(
            tower::ServiceBuilder::new().layer(server::RouteLayer::new(ctx.clone())),
        )
        .build(config.rpc_addr)
        .await
        .map_err(|source| StartError::Bind {
            flag: "rpc-addr",
            addr: config.rpc_addr,
            source,
        })?;
    let rpc_addr = server.local_addr().map_err(|source| StartError::Bind {
        flag: "rpc-addr",
        addr: config.rpc_addr,
        source,
    })?;
    let handle = server.start(rpc::module(ctx.clone())?);
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(stream::run(ctx.clone(), stop_rx.clone())),
        tokio::spawn(head::run(ctx.clone(), stop_rx.clone())),
        tokio::spawn(execute::run(ctx.clone(), stop_rx.clone())),
    ];
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics_addr {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                flag: "metrics-addr",
                addr,
                source,
            })?;
        metrics_addr = server::bound(&listener);
        tasks.push(tokio::spawn(server::serve_metrics(
            listener,
            ctx.clone(),
            stop_rx,
        )));
    }
    tracing::info!(%rpc_addr, upstream = %config.upstream.url, stream = %config.stream.url, "flashblocks-rpc listening");
    Ok(Running {
        rpc_addr,
        metrics_addr,
        ctx,
        stop,
        tasks,
        server: handle,
    })
}
