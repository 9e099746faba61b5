//! Starting and stopping one engine-mux instance: the engine API port (with /healthz,
//! /livez, /readyz), the debug server, the metrics server and the background tasks.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown, service::TowerToHyperService};
use jsonrpsee::server::ServerHandle;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tower::{ServiceBuilder, ServiceExt, service_fn, util::BoxCloneService};

use crate::{
    builder::{
        Builder,
        prevalidate::{self, Prevalidation},
        recent::RecentPayloads,
        set::Builders,
    },
    config::Config,
    execution_mode::ModeCell,
    flashblocks::{self, inbound::InboundConfig, store::FlashblocksStore},
    health::{Debounce, HealthStatus, Upstreams, endpoints, probe},
    local::LocalEl,
    metrics::Metrics,
    mux::Mux,
};

use super::{
    debug_api,
    layers::{AuthScope, BodyLimitLayer, InboundMetricsLayer, MethodAuthLayer},
    router,
};

/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why startup failed; the message names the flag.
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
}

/// A running instance.
pub struct RunningMux {
    /// Engine API, proxy and health address.
    pub rpc_addr: SocketAddr,
    /// Debug server address.
    pub debug_addr: SocketAddr,
    /// Metrics server address, when serving metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// Outbound flashblocks WebSocket address, when flashblocks are on.
    pub flashblocks_addr: Option<SocketAddr>,
    state: Arc<Mux>,
    upstreams: Upstreams,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    debug: ServerHandle,
}

impl std::fmt::Debug for RunningMux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningMux")
            .field("rpc_addr", &self.rpc_addr)
            .field("debug_addr", &self.debug_addr)
            .finish_non_exhaustive()
    }
}

impl RunningMux {
    /// Prometheus text of this instance's metrics.
    pub fn metrics_text(&self) -> String {
        self.state.metrics.render()
    }

    /// Current health, as `/healthz` would answer.
    pub fn health(&self) -> HealthStatus {
        self.upstreams.status()
    }

    /// Current health with every component's state and the evidence behind it, as
    /// `/healthz` answers it to `Accept: application/json`.
    pub fn health_report(&self) -> crate::health::report::HealthReport {
        let (status, pending) = self.upstreams.status_and_pending();
        crate::health::report::report(&self.upstreams, status, pending)
    }

    /// The Engine API of this instance as typed async methods, in process (no HTTP, no JWT):
    /// the same routing and decisions as a request on the RPC port.
    pub fn engine(&self) -> crate::embed::EngineHandle {
        crate::embed::EngineHandle::new(self.state.clone(), self.upstreams.clone())
    }

    /// The multiplexer (for embedding and tests).
    pub fn state(&self) -> &Arc<Mux> {
        &self.state
    }

    /// Stops accepting, lets in-flight calls finish (up to a drain timeout), stops the tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.debug.stop();
        for task in self.tasks {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, task).await;
        }
        self.debug.stopped().await;
    }
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { flag, addr, source })
}

/// Starts an instance from a validated config.
pub async fn start(config: Config) -> Result<RunningMux, StartError> {
    let rpc_listener = bind("rpc-port", config.rpc_addr).await?;
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(bind("metrics-port", addr).await?),
        None => None,
    };

    let metrics = Arc::new(Metrics::new());
    let mode = Arc::new(ModeCell::new(config.execution_mode));
    let (frames, _) = tokio::sync::broadcast::channel(flashblocks::OUTBOUND_BUFFER);
    let local = Arc::new(LocalEl::new(
        config.l2.connect(&config.tls_roots),
        metrics.clone(),
    ));
    // op-node's history is the same for every builder: one window serves all their catch-ups.
    let recent = config
        .catch_up_depth
        .map(|depth| Arc::new(RecentPayloads::new(depth).with_run_budget(config.catch_up_budget)));
    let mut list = Vec::new();
    let mut builder_tasks = Vec::new();
    let mut streams = Vec::new();
    for b in &config.builders {
        let store = match (&config.flashblocks, &b.flashblocks_url) {
            (Some(fb), Some(url)) => {
                let labelled = Arc::new(metrics.for_builder(b.name));
                let store = Arc::new(FlashblocksStore::new(
                    frames.clone(),
                    labelled.clone(),
                    mode.clone(),
                ));
                let inbound = InboundConfig {
                    url: url.clone(),
                    ..fb.inbound.clone()
                };
                streams.push((b.name, inbound, store.clone(), labelled));
                Some(store)
            }
            _ => None,
        };
        let (builder, tasks) = Builder::new(
            &config,
            b,
            local.clone(),
            store,
            recent.clone(),
            &metrics,
            mode.clone(),
        );
        builder_tasks.push((builder.clone(), tasks));
        list.push(builder);
    }
    let mut builders = Builders::new(
        list,
        recent,
        metrics.clone(),
        config.builder_policy,
        config.builder_grace,
    );
    let mut prevalidation_jobs = None;
    if let Some(lead) = config.prevalidate_lead {
        let (p, jobs) = Prevalidation::new(lead, metrics.clone());
        builders = builders.with_prevalidation(p);
        prevalidation_jobs = Some(jobs);
    }
    let builders = Arc::new(builders);
    let upstreams = Upstreams {
        local: local.clone(),
        builders: builders.clone(),
        mode: mode.clone(),
        metrics: metrics.clone(),
        debounce: Arc::new(Debounce::new(config.health.tolerance)),
        max_unsafe_interval: config.health.max_unsafe_interval,
    };
    // Failover carry-over: the peers' preconfirmations, when peers are configured.
    let failover = config.failover.clone().map(|f| {
        Arc::new(crate::failover::Failover::new(
            f,
            local.clone(),
            metrics.clone(),
        ))
    });
    let (accountability, accountability_jobs) =
        crate::accountability::Accountability::new(metrics.clone());
    let state = Arc::new(
        Mux::new(
            local,
            builders.clone(),
            mode,
            metrics.clone(),
            config.selection,
            config.get_payload_deadline,
            config.external_state_root,
        )
        .with_failover(failover.clone())
        .with_accountability(accountability),
    );
    metrics.execution_mode(config.execution_mode);

    let (debug_addr, debug) = debug_api::start(config.debug_addr, state.clone())
        .await
        .map_err(|source| StartError::Bind {
            flag: "debug-server-port",
            addr: config.debug_addr,
            source,
        })?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let rpc_addr = rpc_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            flag: "rpc-port",
            addr: config.rpc_addr,
            source,
        })?;
    let mut tasks = Vec::new();
    for (builder, queues) in builder_tasks {
        tasks.extend(crate::builder::spawn(&builder, queues, &shutdown_rx));
    }
    tasks.push(tokio::spawn(crate::accountability::run(
        accountability_jobs,
        shutdown_rx.clone(),
    )));
    if let Some(failover) = &failover {
        tasks.extend(failover.spawn(&shutdown_rx, &config.tls_roots));
    }
    if let Some(jobs) = prevalidation_jobs {
        let cx = prevalidate::Context {
            local: state.local.clone(),
            policy: config.builder_policy,
            grace: config.builder_grace,
            metrics: metrics.clone(),
        };
        tasks.push(tokio::spawn(prevalidate::run(
            jobs,
            cx,
            shutdown_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(probe::run(
        upstreams.clone(),
        config.health.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(serve(
        rpc_listener,
        rpc_service(state.clone(), upstreams.clone(), &config),
        shutdown_rx.clone(),
    )));
    let mut flashblocks_addr = None;
    if let Some(fb) = &config.flashblocks {
        let (addr, task) = flashblocks::outbound::start(
            fb.outbound_addr,
            frames,
            metrics.clone(),
            config.peer_key.clone(),
            shutdown_rx.clone(),
        )
        .await
        .map_err(|source| StartError::Bind {
            flag: "flashblocks-port",
            addr: fb.outbound_addr,
            source,
        })?;
        flashblocks_addr = Some(addr);
        tasks.push(task);
        for (name, inbound, store, labelled) in streams {
            tracing::info!(builder = name, url = %inbound.url, "following the builder's flashblocks");
            tasks.push(tokio::spawn(flashblocks::inbound::run(
                inbound,
                config.tls_roots.clone(),
                store,
                labelled,
                shutdown_rx.clone(),
            )));
        }
    }
    let mut metrics_addr = None;
    if let Some(listener) = metrics_listener {
        metrics_addr = listener.local_addr().ok();
        tasks.push(tokio::spawn(serve(
            listener,
            metrics_service(state.clone()),
            shutdown_rx.clone(),
        )));
    }
    tracing::info!(
        %rpc_addr,
        %debug_addr,
        metrics = ?metrics_addr,
        flashblocks = ?flashblocks_addr,
        l2 = %config.l2.describe(),
        builders = %config
            .builders
            .iter()
            .map(|b| format!("{}={}", b.name, b.upstream.url))
            .collect::<Vec<_>>()
            .join(","),
        policy = ?config.builder_policy,
        mode = %config.execution_mode,
        inbound_auth = match (config.inbound_secret.is_some(), config.require_auth_all) {
            (false, _) => "off",
            (true, false) => "engine_methods",
            (true, true) => "all_methods",
        },
        "engine-mux started"
    );
    Ok(RunningMux {
        rpc_addr,
        debug_addr,
        metrics_addr,
        flashblocks_addr,
        state,
        upstreams,
        shutdown,
        tasks,
        debug,
    })
}

type HttpService = BoxCloneService<Request<Incoming>, Response<Full<Bytes>>, Infallible>;

/// The engine API port: health endpoints without auth, everything else through the layers
/// (metrics → body limit → method-aware JWT check → router).
fn rpc_service(state: Arc<Mux>, upstreams: Upstreams, config: &Config) -> HttpService {
    let router_state = state.clone();
    let router = service_fn(move |req: Request<Bytes>| {
        let state = router_state.clone();
        async move {
            let (parts, body) = req.into_parts();
            let res = router::handle(&state, &parts.headers, body).await;
            Ok::<_, Infallible>(res.map(Full::new))
        }
    });
    let scope = if config.require_auth_all {
        AuthScope::All
    } else {
        AuthScope::EngineOnly
    };
    let rpc = ServiceBuilder::new()
        .layer(InboundMetricsLayer::new(state.metrics.clone()))
        .layer(BodyLimitLayer::new(
            config.max_request_body,
            state.metrics.clone(),
        ))
        .option_layer(
            config
                .inbound_secret
                .map(|secret| MethodAuthLayer::new(secret, scope, state.metrics.clone())),
        )
        .service(router);
    let rpc: HttpService = BoxCloneService::new(rpc);
    BoxCloneService::new(service_fn(move |req: Request<Incoming>| {
        let upstreams = upstreams.clone();
        let rpc = rpc.clone();
        async move {
            if req.method() == Method::GET
                && let Some(res) = endpoints::respond(&upstreams, req.uri().path(), req.headers())
            {
                return Ok(res);
            }
            rpc.oneshot(req).await
        }
    }))
}

fn metrics_service(state: Arc<Mux>) -> HttpService {
    BoxCloneService::new(service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move {
            if req.uri().path() != "/metrics" {
                let mut res =
                    Response::new(Full::new(Bytes::from_static(b"not found; try /metrics")));
                *res.status_mut() = StatusCode::NOT_FOUND;
                return Ok(res);
            }
            state.builders.report_gauges();
            let mut res = Response::new(Full::new(Bytes::from(state.metrics.render())));
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok(res)
        }
    }))
}

/// Accepts HTTP/1.1 connections until shutdown, then drains in-flight requests.
async fn serve(listener: TcpListener, service: HttpService, mut shutdown: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()));
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the drain timeout");
    }
}
