//! flashblocks-proxy: WebSocket fan-out of the flashblocks stream to many subscribers, a drop-in
//! for rollup-boost's websocket-proxy.
//!
//! Upstream clients ([`upstream`]) feed one fan-out task ([`fanout`]) that de-duplicates
//! ([`dedup`]) and encodes each flashblock once into a WebSocket frame ([`frame`]); writer shards
//! ([`shard`]) write those same bytes to every subscriber socket. Connections are accepted,
//! checked and read by [`server`]; admission goes through [`auth`] and [`limits`] (in memory or
//! shared through Redis).

pub mod auth;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod dedup;
pub mod fanout;
pub mod frame;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod shard;
pub mod upstream;
pub mod uring;

use std::{net::SocketAddr, sync::Arc};

use tokio::{
    net::{TcpListener, TcpSocket},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

use crate::{
    client_ip::ClientIpResolver,
    config::Config,
    fanout::{Encoding, Hub},
    limits::{Limiter, redis::RedisLimitError},
    metrics::Metrics,
    server::Shared,
    shard::Shards,
};

/// Messages buffered between the upstream readers and the fan-out task.
pub const INBOUND_QUEUE: usize = 256;
/// Listen backlog for subscriber connections (bursts of reconnecting clients).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Failure to start the proxy.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// `--send-path io-uring` on a system where io_uring cannot be used.
    #[error("--send-path io-uring: io_uring unavailable: {0}")]
    IoUringUnavailable(std::io::Error),
    /// The Redis client could not be created.
    #[error("redis: {0}")]
    Redis(#[from] RedisLimitError),
}

/// A running proxy; dropping it stops every task (without Redis deregistration).
pub struct ProxyHandle {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    metrics: Metrics,
    limiter: Limiter,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Kept apart: on a graceful shutdown they get a moment to send close frames.
    shard_tasks: Vec<JoinHandle<()>>,
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let err = |source| StartError::Bind { what, addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(LISTEN_BACKLOG).map_err(err)
}

/// Binds the listeners and starts every task.
pub async fn start(config: Config) -> Result<ProxyHandle, StartError> {
    let metrics = Metrics::new(
        &config.metrics.global_labels,
        &config.api_keys,
        &config.upstream.urls,
    );
    let mut tasks = Vec::new();

    let (limiter, limiter_tasks) = Limiter::new(&config.limits, &config.api_keys, metrics.clone())?;
    tasks.extend(limiter_tasks);

    let hub = Hub::new();
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    tasks.push(tokio::spawn(fanout::run(
        rx,
        hub.clone(),
        config.upstream.urls.len(),
        metrics.clone(),
    )));
    for (i, url) in config.upstream.urls.iter().enumerate() {
        tasks.push(tokio::spawn(upstream::run(
            i,
            url.clone(),
            config.upstream.clone(),
            tx.clone(),
            metrics.upstreams[i].clone(),
        )));
    }
    drop(tx);

    let listener = bind("subscribers", config.listen_addr)?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        what: "subscribers",
        addr: config.listen_addr,
        source,
    })?;
    let metrics_addr = if config.metrics.enabled {
        let l = bind("metrics", config.metrics.addr)?;
        let addr = l.local_addr().unwrap_or(config.metrics.addr);
        tasks.push(tokio::spawn(serve_metrics(l, metrics.clone())));
        Some(addr)
    } else {
        None
    };

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (shards, shard_tasks) = Shards::start(
        &hub,
        config.fanout_shards,
        config.message_buffer_size,
        config.send_path,
        metrics.clone(),
        shutdown_rx.clone(),
    )
    .map_err(StartError::IoUringUnavailable)?;
    let shard_tasks_handles = shard_tasks;
    let shared = Arc::new(Shared {
        hub,
        shards,
        limiter: limiter.clone(),
        keys: config.api_keys.clone(),
        resolver: ClientIpResolver::new(&config.ip_header, config.trusted_proxies.clone()),
        metrics: metrics.clone(),
        client_ping: config.client_ping,
        shutdown: shutdown_rx,
        default_encoding: if config.compression {
            Encoding::Brotli
        } else {
            Encoding::Plain
        },
    });
    tasks.push(tokio::spawn(server::serve(listener, shared)));
    info!(%local_addr, ?metrics_addr, upstreams = config.upstream.urls.len(), "flashblocks-proxy listening");
    Ok(ProxyHandle {
        local_addr,
        metrics_addr,
        metrics,
        limiter,
        shutdown,
        tasks,
        shard_tasks: shard_tasks_handles,
    })
}

impl ProxyHandle {
    /// Address subscribers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Address of `/metrics`, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// This instance's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// This instance's limiter (active count, Redis keys).
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    fn stop_tasks(&mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..).chain(self.shard_tasks.drain(..)) {
            t.abort();
        }
    }

    /// Stops accepting, closes every subscriber (close code 1001) and removes this instance's
    /// Redis registration.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
        }
        for t in self.shard_tasks.drain(..) {
            if tokio::time::timeout(std::time::Duration::from_secs(1), &mut { t })
                .await
                .is_err()
            {
                // Abort-on-drop is not a JoinHandle behaviour; the task ends with the runtime.
            }
        }
        self.limiter.deregister().await;
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

async fn serve_metrics(listener: TcpListener, metrics: Metrics) {
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Scrapes are rare: one at a time, each bounded by the head timeout.
        match http::read_head(&mut stream).await {
            Ok(_) => {
                http::respond(
                    &mut stream,
                    200,
                    "OK",
                    &metrics.render(),
                    "text/plain; version=0.0.4",
                )
                .await
            }
            Err(e) => tracing::debug!(%peer, error = %e, "bad metrics request"),
        }
    }
}
