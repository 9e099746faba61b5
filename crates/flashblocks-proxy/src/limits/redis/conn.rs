//! The connection to Redis (one server or a Redis Cluster, connected lazily) and the error of
//! an operation on it, every operation bounded by `--redis-timeout-ms`.

use std::{sync::Arc, time::Duration};

use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
};
use tokio::sync::OnceCell;

use crate::config::RedisConfig;

/// A Redis operation that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RedisLimitError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within `--redis-timeout-ms`.
    #[error("redis operation timed out after {0:?}")]
    Timeout(Duration),
    /// The script answered something unexpected.
    #[error("unexpected script reply `{0}`")]
    Reply(String),
}

/// A connection to one Redis server or to a Redis Cluster. Both connect lazily: startup does
/// not wait for Redis, and a failed connect is an error of the operation that needed it (the
/// next one tries again).
#[derive(Clone)]
pub enum RedisConn {
    /// One server, reconnecting on its own.
    Single(ConnectionManager),
    /// A cluster; commands are routed by key slot.
    Cluster(Arc<LazyCluster>),
}

/// A cluster connection made on first use.
pub struct LazyCluster {
    client: redis::cluster::ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

impl RedisConn {
    /// A lazy connection for `cfg`.
    pub fn new(cfg: &RedisConfig) -> Result<Self, RedisLimitError> {
        if cfg.cluster {
            let client = redis::cluster::ClusterClient::builder(
                cfg.urls.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(),
            )
            .connection_timeout(cfg.timeout)
            .response_timeout(cfg.timeout)
            .retries(1)
            .build()?;
            return Ok(Self::Cluster(Arc::new(LazyCluster {
                client,
                conn: OnceCell::new(),
            })));
        }
        let url = cfg.urls.first().map(|u| u.0.as_str()).unwrap_or_default();
        let client = redis::Client::open(url)?;
        let mgr_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        Ok(Self::Single(ConnectionManager::new_lazy_with_config(
            client, mgr_cfg,
        )?))
    }

    /// A handle that can run commands, connecting first if needed.
    pub(super) async fn ready(&self) -> redis::RedisResult<Ready> {
        match self {
            Self::Single(c) => Ok(Ready::Single(c.clone())),
            Self::Cluster(lazy) => {
                let conn = lazy
                    .conn
                    .get_or_try_init(|| lazy.client.get_async_connection())
                    .await?;
                Ok(Ready::Cluster(conn.clone()))
            }
        }
    }
}

/// A connected handle of either kind.
pub(super) enum Ready {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Ready {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// `fut`, failed with [`RedisLimitError::Timeout`] when it takes longer than `timeout`.
pub(super) async fn with_timeout<T>(
    timeout: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisLimitError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RedisLimitError::Timeout(timeout)),
    }
}
