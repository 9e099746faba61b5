//! Prometheus metrics with per-instance handles (no global recorder), so several proxies in one
//! process — as in the tests — each count their own traffic.

use metrics::{Counter, Gauge, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::auth::ApiKeys;

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Why a connection was refused with 429/503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `--instance-connection-limit` reached.
    Instance,
    /// `--per-ip-connection-limit` reached.
    Ip,
    /// The app's API-key limit reached.
    App,
    /// Redis unreachable under `--redis-failure-policy closed`.
    LimiterUnavailable,
}

impl RejectReason {
    /// Label value and response body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Instance => "instance connection limit reached",
            Self::Ip => "per-ip connection limit reached",
            Self::App => "per-app connection limit reached",
            Self::LimiterUnavailable => "connection limiter unavailable",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Instance => "instance",
            Self::Ip => "ip",
            Self::App => "app",
            Self::LimiterUnavailable => "limiter_unavailable",
        }
    }
}

/// Per-upstream handles.
#[derive(Clone)]
pub struct UpstreamMetrics {
    /// 1 while connected, 0 otherwise.
    pub connected: Gauge,
    /// Successful (re)connections.
    pub connects: Counter,
    /// Messages received (before de-duplication).
    pub messages: Counter,
    /// Messages that were neither flashblock JSON nor Brotli-compressed flashblock JSON.
    pub invalid: Counter,
}

/// All handles of one proxy instance.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    /// Open subscriber connections per app (index = `AppId`, last = public / no key).
    pub connections: Vec<Gauge>,
    /// Messages published to subscribers (after de-duplication).
    pub messages_published: Counter,
    /// Duplicate or stale messages dropped by de-duplication.
    pub messages_deduplicated: Counter,
    /// Frames written to subscriber sockets.
    pub messages_sent: Counter,
    /// Bytes written to subscriber sockets.
    pub bytes_sent: Counter,
    /// Subscribers disconnected for falling more than `--message-buffer-size` behind.
    pub lagged_disconnects: Counter,
    /// Subscribers disconnected for not answering pings.
    pub pong_timeouts: Counter,
    /// Rejections by reason.
    rate_limited: [Counter; 4],
    /// Connections refused for a missing or unknown API key.
    pub unauthorized: Counter,
    /// Failed Redis operations.
    pub redis_errors: Counter,
    /// Redis count releases waiting to be applied (bounded by twice the instance limit).
    pub redis_pending_releases: Gauge,
    /// Redis leases this instance holds for open connections (bounded by the instance limit).
    pub redis_leases: Gauge,
    /// Acquisitions whose answer never arrived, undone (their token removed from Redis).
    pub redis_leases_recovered: Counter,
    /// Leases of open connections that lapsed while Redis was unreachable, re-added on renewal.
    pub redis_leases_restored: Counter,
    /// Releases given up (queue full, or Redis unreachable until the lease lapsed on its own).
    pub redis_releases_lapsed: Counter,
    /// Capacity of the per-subscriber buffer in messages (queued `Bytes`, one copy per message).
    pub fanout_buffer_capacity: Gauge,
    /// Frames queued for subscribers whose sockets were full, summed over subscribers.
    pub subscriber_queued_frames: Gauge,
    /// Commands (registrations, control frames, removals) queued to the writer shards.
    pub shard_commands: Gauge,
    /// Messages queued between upstream readers and the fan-out task.
    pub inbound_queue: Gauge,
    /// Writer shards sending through io_uring batches (`send_path="io_uring"`).
    pub shards_io_uring: Gauge,
    /// Writer shards sending with one `send` call per subscriber (`send_path="write"`).
    pub shards_write: Gauge,
    /// Per upstream, in `--upstream-ws` order.
    pub upstreams: Vec<UpstreamMetrics>,
}

/// Name prefix of every series.
pub const PREFIX: &str = "flashblocks_proxy_";

fn name(n: &str) -> String {
    format!("{PREFIX}{n}")
}

impl Metrics {
    /// Registers every series up front so dashboards see zeros rather than gaps.
    pub fn new(global_labels: &[(String, String)], keys: &ApiKeys, upstreams: &[url::Url]) -> Self {
        let mut b = PrometheusBuilder::new();
        for (k, v) in global_labels {
            b = b.add_global_label(k, v);
        }
        let rec = b.build_recorder();
        let counter = |n: &str, desc: &'static str, labels: Vec<Label>| {
            rec.describe_counter(name(n).into(), None, desc.into());
            rec.register_counter(&Key::from_parts(name(n), labels), &METADATA)
        };
        let gauge = |n: &str, desc: &'static str, labels: Vec<Label>| {
            rec.describe_gauge(name(n).into(), None, desc.into());
            rec.register_gauge(&Key::from_parts(name(n), labels), &METADATA)
        };
        let mut connections: Vec<Gauge> = keys
            .apps()
            .iter()
            .map(|a| {
                gauge(
                    "connections",
                    "Open subscriber connections",
                    vec![Label::new("app", a.name.clone())],
                )
            })
            .collect();
        connections.push(gauge(
            "connections",
            "Open subscriber connections",
            vec![Label::new("app", "public")],
        ));
        let rate_limited = [
            RejectReason::Instance,
            RejectReason::Ip,
            RejectReason::App,
            RejectReason::LimiterUnavailable,
        ]
        .map(|r| {
            counter(
                "rate_limited_total",
                "Connections refused by a limit",
                vec![Label::new("reason", r.label())],
            )
        });
        let upstreams = upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let labels = || {
                    vec![
                        Label::new("upstream", i.to_string()),
                        Label::new("url", format!("{}://{}", u.scheme(), u.authority())),
                    ]
                };
                UpstreamMetrics {
                    connected: gauge(
                        "upstream_connected",
                        "1 while the upstream is connected",
                        labels(),
                    ),
                    connects: counter(
                        "upstream_connects_total",
                        "Upstream (re)connections",
                        labels(),
                    ),
                    messages: counter(
                        "upstream_messages_total",
                        "Messages received from the upstream",
                        labels(),
                    ),
                    invalid: counter(
                        "upstream_invalid_messages_total",
                        "Unparseable upstream messages",
                        labels(),
                    ),
                }
            })
            .collect();
        rec.describe_counter(
            name("bytes_sent_total").into(),
            Some(Unit::Bytes),
            "Bytes written to subscribers".into(),
        );
        let m = Self {
            connections,
            messages_published: counter(
                "messages_published_total",
                "Messages fanned out after de-duplication",
                vec![],
            ),
            messages_deduplicated: counter(
                "messages_deduplicated_total",
                "Duplicate or stale upstream messages dropped",
                vec![],
            ),
            messages_sent: counter(
                "messages_sent_total",
                "Frames written to subscribers",
                vec![],
            ),
            bytes_sent: counter("bytes_sent_total", "Bytes written to subscribers", vec![]),
            lagged_disconnects: counter(
                "lagged_disconnects_total",
                "Subscribers dropped for lagging",
                vec![],
            ),
            pong_timeouts: counter(
                "client_pong_timeouts_total",
                "Subscribers dropped for not answering pings",
                vec![],
            ),
            rate_limited,
            unauthorized: counter(
                "unauthorized_total",
                "Connections refused for a missing or unknown API key",
                vec![],
            ),
            redis_errors: counter("redis_errors_total", "Failed Redis operations", vec![]),
            redis_pending_releases: gauge(
                "redis_pending_releases",
                "Redis releases waiting to be applied",
                vec![],
            ),
            redis_leases: gauge(
                "redis_leases",
                "Redis leases held for open connections",
                vec![],
            ),
            redis_leases_recovered: counter(
                "redis_leases_recovered_total",
                "Redis acquisitions whose answer never arrived, undone",
                vec![],
            ),
            redis_leases_restored: counter(
                "redis_leases_restored_total",
                "Lapsed Redis leases of open connections re-added",
                vec![],
            ),
            redis_releases_lapsed: counter(
                "redis_releases_lapsed_total",
                "Redis releases given up, left to lapse with their lease",
                vec![],
            ),
            fanout_buffer_capacity: gauge(
                "fanout_buffer_capacity",
                "Per-subscriber buffer capacity in messages",
                vec![],
            ),
            subscriber_queued_frames: gauge(
                "subscriber_queued_frames",
                "Frames queued for subscribers with full sockets",
                vec![],
            ),
            shard_commands: gauge(
                "shard_commands",
                "Commands queued to the writer shards",
                vec![],
            ),
            inbound_queue: gauge(
                "inbound_queue",
                "Messages queued from upstreams to the fan-out",
                vec![],
            ),
            shards_io_uring: gauge(
                "writer_shards",
                "Writer shards by the way they send frames",
                vec![Label::new("send_path", "io_uring")],
            ),
            shards_write: gauge(
                "writer_shards",
                "Writer shards by the way they send frames",
                vec![Label::new("send_path", "write")],
            ),
            upstreams,
            handle: rec.handle(),
        };
        drop::<PrometheusRecorder>(rec);
        m
    }

    /// Counts a rejection.
    pub fn rate_limited(&self, r: RejectReason) {
        let i = match r {
            RejectReason::Instance => 0,
            RejectReason::Ip => 1,
            RejectReason::App => 2,
            RejectReason::LimiterUnavailable => 3,
        };
        self.rate_limited[i].increment(1);
    }

    /// Connection gauge of an app (`None` = public).
    pub fn connections(&self, app: Option<usize>) -> &Gauge {
        let last = self.connections.len() - 1;
        &self.connections[app.map_or(last, |a| a.min(last))]
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// Value of a series in a Prometheus text exposition (for tests and the benchmark).
pub use engine_api::prometheus::sample as scrape;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_registered_and_rendered() {
        let keys = ApiKeys::parse(&["a:k:1"]).unwrap();
        let m = Metrics::new(&[], &keys, &["ws://h:1".parse().unwrap()]);
        m.rate_limited(RejectReason::Ip);
        m.connections(Some(0)).increment(2.0);
        m.upstreams[0].connected.set(1.0);
        let text = m.render();
        assert_eq!(
            scrape(&text, "flashblocks_proxy_rate_limited_total{reason=\"ip\"}"),
            Some(1.0)
        );
        assert_eq!(
            scrape(&text, "flashblocks_proxy_connections{app=\"a\"}"),
            Some(2.0)
        );
        assert_eq!(
            scrape(&text, "flashblocks_proxy_connections{app=\"public\"}"),
            Some(0.0)
        );
        assert_eq!(
            scrape(
                &text,
                "flashblocks_proxy_upstream_connected{upstream=\"0\",url=\"ws://h:1\"}"
            ),
            Some(1.0)
        );
    }
}
