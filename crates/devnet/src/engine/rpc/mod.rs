//! The engine's two listeners: the JWT-protected auth RPC (engine_* and eth_*, what op-node and
//! engine-mux talk to) and the plain HTTP RPC (eth_* plus the `devnet_*` fault controls).

pub mod control;
pub mod engine;
pub mod eth;
#[cfg(test)]
mod eth_call_tests;
mod fees;
pub mod garbage;
mod params;
pub mod render;
pub mod simulate;
#[cfg(test)]
mod simulate_tests;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy_rpc_types_engine::JwtSecret;
use engine_api::AuthLayer;
use jsonrpsee::{
    RpcModule,
    server::{Server, ServerHandle},
};
use tokio::{sync::watch, task::JoinHandle};

use crate::engine::{Engine, Role, flashblocks::FlashblocksPublisher};

/// How long a stopping listener may take to drain (hung calls never drain).
const STOP_GRACE: Duration = Duration::from_secs(1);
/// Largest request body accepted (a block with thousands of transactions fits).
const MAX_REQUEST_BYTES: u32 = 64 * 1024 * 1024;

/// Why an engine's listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding a port failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// IO error.
        source: std::io::Error,
    },
    /// The flashblocks WebSocket could not listen.
    #[error("flashblocks listener: {0}")]
    Flashblocks(std::io::Error),
    /// A method name was registered twice (a programming error).
    #[error("registering RPC methods: {0}")]
    Register(#[from] jsonrpsee::core::RegisterMethodError),
}

/// Where an engine listens.
#[derive(Debug, Clone)]
pub struct EngineServerConfig {
    /// Auth RPC (engine API + eth), JWT-protected. Port 0 = ephemeral.
    pub auth_addr: SocketAddr,
    /// Plain RPC (eth + devnet controls). Port 0 = ephemeral.
    pub http_addr: SocketAddr,
    /// Secret for the auth RPC.
    pub jwt: JwtSecret,
    /// Publish flashblocks over WebSocket (builder mode).
    pub flashblocks: Option<crate::engine::flashblocks::FlashblocksConfig>,
}

/// A running engine with its listeners; the auth listener follows the `down` fault.
#[derive(Debug)]
pub struct RunningEngine {
    /// The engine itself (for in-process inspection and fault control).
    pub engine: Arc<Engine>,
    /// Bound auth RPC address.
    pub auth_addr: SocketAddr,
    /// Bound plain RPC address.
    pub http_addr: SocketAddr,
    /// Bound flashblocks WebSocket address, when publishing.
    pub flashblocks_addr: Option<SocketAddr>,
    flashblocks: Option<crate::engine::flashblocks::RunningPublisher>,
    http: ServerHandle,
    supervisor: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
}

impl RunningEngine {
    /// Auth RPC URL (`http://127.0.0.1:PORT`).
    pub fn auth_url(&self) -> String {
        format!("http://{}", self.auth_addr)
    }

    /// The flashblocks publisher, when publishing (send times for latency measurements).
    pub fn flashblocks_publisher(&self) -> Option<&Arc<FlashblocksPublisher>> {
        self.flashblocks.as_ref().map(|f| &f.publisher)
    }

    /// Plain RPC URL.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Restarts the engine as a process restart would: the listeners stop, and `engine` (a
    /// fresh one, normally at genesis) starts on the same addresses, the flashblocks publisher
    /// too when `flashblocks` is given (its address replaced by the one this engine had).
    pub async fn restart(
        &mut self,
        engine: Arc<Engine>,
        jwt: JwtSecret,
        flashblocks: Option<crate::engine::flashblocks::FlashblocksConfig>,
    ) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        let _ = (&mut self.supervisor).await;
        stop_handle(self.http.clone()).await;
        if let Some(publisher) = self.flashblocks.take() {
            publisher.stop().await;
        }
        let flashblocks = flashblocks.map(|mut fb| {
            if let Some(addr) = self.flashblocks_addr {
                fb.addr = addr;
            }
            fb
        });
        let config = EngineServerConfig {
            auth_addr: self.auth_addr,
            http_addr: self.http_addr,
            jwt,
            flashblocks,
        };
        *self = start_engine(engine, config).await?;
        Ok(())
    }

    /// Stops both listeners.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.supervisor.await;
        stop_handle(self.http).await;
        if let Some(publisher) = self.flashblocks {
            publisher.stop().await;
        }
    }
}

async fn stop_handle(handle: ServerHandle) {
    let _ = handle.stop();
    let _ = tokio::time::timeout(STOP_GRACE, handle.stopped()).await;
}

fn server_config() -> jsonrpsee::server::ServerConfig {
    jsonrpsee::server::ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BYTES)
        .max_response_body_size(MAX_REQUEST_BYTES)
        .build()
}

fn auth_module(
    engine: &Arc<Engine>,
    flashblocks: Option<Arc<FlashblocksPublisher>>,
) -> Result<RpcModule<Arc<Engine>>, ServerError> {
    let mut module = RpcModule::new(engine.clone());
    engine::register(&mut module, flashblocks)?;
    eth::register(&mut module)?;
    Ok(module)
}

async fn start_auth(
    engine: &Arc<Engine>,
    addr: SocketAddr,
    jwt: JwtSecret,
    flashblocks: Option<Arc<FlashblocksPublisher>>,
) -> Result<(SocketAddr, ServerHandle), ServerError> {
    // The `garbage` fault mangles a builder's answers after they were authenticated and served.
    let faults = (engine.role() == Role::Builder).then(|| engine.faults().clone());
    let middleware = tower::ServiceBuilder::new()
        .layer(AuthLayer::new(jwt))
        .layer(garbage::GarbageLayer::new(
            faults,
            MAX_REQUEST_BYTES as usize,
        ));
    let server = Server::builder()
        .set_config(server_config())
        .set_http_middleware(middleware)
        .build(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = server
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok((bound, server.start(auth_module(engine, flashblocks)?)))
}

/// Starts `engine`'s listeners. In builder role the auth listener is closed while the `down`
/// fault is on and re-opened on the same port when it goes off.
pub async fn start_engine(
    engine: Arc<Engine>,
    config: EngineServerConfig,
) -> Result<RunningEngine, ServerError> {
    let flashblocks = match config.flashblocks {
        Some(fb) => {
            let running = crate::engine::flashblocks::start_publisher(fb, engine.faults().clone())
                .await
                .map_err(ServerError::Flashblocks)?;
            Some(running)
        }
        None => None,
    };
    let flashblocks_addr = flashblocks.as_ref().map(|f| f.publisher.addr);
    let publisher = flashblocks.as_ref().map(|f| f.publisher.clone());
    let (auth_addr, auth_handle) =
        start_auth(&engine, config.auth_addr, config.jwt, publisher.clone()).await?;
    let mut http_module = RpcModule::new(engine.clone());
    eth::register(&mut http_module)?;
    control::register(&mut http_module)?;
    let http_server = Server::builder()
        .set_config(server_config())
        .build(config.http_addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.http_addr,
            source,
        })?;
    let http_addr = http_server
        .local_addr()
        .map_err(|source| ServerError::Bind {
            addr: config.http_addr,
            source,
        })?;
    let http = http_server.start(http_module);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let supervisor = tokio::spawn(supervise_auth(
        engine.clone(),
        auth_addr,
        config.jwt,
        publisher,
        auth_handle,
        shutdown_rx,
    ));
    tracing::info!(role = engine.role().as_str(), %auth_addr, %http_addr, "engine listening");
    Ok(RunningEngine {
        engine,
        auth_addr,
        http_addr,
        flashblocks_addr,
        flashblocks,
        http,
        supervisor,
        shutdown,
    })
}

async fn supervise_auth(
    engine: Arc<Engine>,
    addr: SocketAddr,
    jwt: JwtSecret,
    flashblocks: Option<Arc<FlashblocksPublisher>>,
    handle: ServerHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut handle = Some(handle);
    let mut changes = engine.faults().subscribe();
    loop {
        let want_up = !(engine.role() == Role::Builder && engine.faults().is_down());
        match (want_up, handle.take()) {
            (false, Some(h)) => {
                tracing::info!(%addr, "fault down: closing auth listener");
                stop_handle(h).await;
            }
            (true, None) => match start_auth(&engine, addr, jwt, flashblocks.clone()).await {
                Ok((_, h)) => {
                    tracing::info!(%addr, "auth listener re-opened");
                    handle = Some(h);
                }
                Err(e) => {
                    tracing::warn!(%e, "re-opening auth listener failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            (_, h) => handle = h,
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    if let Some(h) = handle {
        stop_handle(h).await;
    }
}
