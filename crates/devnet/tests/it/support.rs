//! Shared helpers: start a devnet with short slots, collect driver events with deadlines,
//! query `/healthz` and the engines.

use std::time::Duration;

use alloy_primitives::B256;
use alloy_rpc_types_engine::PayloadId;
use devnet::{
    app::{Devnet, DevnetConfig, metric_value},
    node::{DriverEvent, ProposedBlock},
};
use op_alloy_rpc_types_engine::{OpExecutionData, OpFlashblockPayload};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::broadcast,
};
use tokio_tungstenite::tungstenite::Message;

/// Slot length used by every scenario: short so the suite is quick.
pub const BLOCK_TIME: Duration = Duration::from_millis(250);

/// A devnet config with short slots and the given extras.
pub fn config() -> DevnetConfig {
    DevnetConfig {
        block_time: BLOCK_TIME,
        tx_rate: 20.0,
        mux_args: vec!["--health-check-interval".into(), "1".into()],
        ..DevnetConfig::default()
    }
}

/// One observed slot with the engine-mux counters right after it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub event: DriverEvent,
    pub builder_blocks: f64,
    pub local_blocks: f64,
    pub fallbacks: f64,
    pub health: u16,
}

impl Observed {
    pub fn proposed(&self) -> Option<&ProposedBlock> {
        match &self.event {
            DriverEvent::Proposed(b) => Some(b),
            DriverEvent::Missed { .. } => None,
        }
    }
}

/// Snapshot of engine-mux's counters.
pub fn counters(devnet: &Devnet) -> (f64, f64, f64) {
    let text = devnet.mux.metrics_text();
    (
        metric_value(
            &text,
            "engine_mux_blocks_proposed_total",
            &[("source", "builder")],
        ),
        metric_value(
            &text,
            "engine_mux_blocks_proposed_total",
            &[("source", "local")],
        ),
        metric_value(&text, "engine_mux_fallbacks_total", &[]),
    )
}

/// Collects slots until `n` blocks were proposed (missed slots are recorded too), failing
/// after `deadline`. `on_slot` runs after each observed slot.
pub async fn observe(
    devnet: &Devnet,
    events: &mut broadcast::Receiver<DriverEvent>,
    n: usize,
    deadline: Duration,
    mut on_slot: impl FnMut(&Observed),
) -> Vec<Observed> {
    let mut out = Vec::new();
    let run = async {
        while out
            .iter()
            .filter(|o: &&Observed| o.proposed().is_some())
            .count()
            < n
        {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let (builder_blocks, local_blocks, fallbacks) = counters(devnet);
            let o = Observed {
                event,
                builder_blocks,
                local_blocks,
                fallbacks,
                health: healthz(devnet).await,
            };
            on_slot(&o);
            out.push(o);
        }
    };
    if tokio::time::timeout(deadline, run).await.is_err() {
        panic!(
            "deadline {deadline:?} passed after {} slots: {out:#?}",
            out.len()
        );
    }
    out
}

/// `GET /healthz` on engine-mux's RPC port; returns the HTTP status (0 if unreachable).
pub async fn healthz(devnet: &Devnet) -> u16 {
    healthz_at(devnet.mux.rpc_addr).await
}

/// `GET /healthz` on `addr`; returns the HTTP status (0 if unreachable).
pub async fn healthz_at(addr: std::net::SocketAddr) -> u16 {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// How many times each hash occurs in the local engine's canonical chain.
pub fn canonical_occurrences(devnet: &Devnet, hashes: &[B256]) -> Vec<usize> {
    let head = devnet.local.engine.head().number();
    let wanted: std::collections::HashMap<B256, usize> =
        hashes.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    let mut counts = vec![0; hashes.len()];
    devnet.local.engine.with_chain(|chain| {
        for n in 1..=head {
            if let Some(block) = chain.canonical_block(n) {
                for tx in &block.transactions {
                    if let Some(i) = wanted.get(&tx.tx_hash()) {
                        counts[*i] += 1;
                    }
                }
            }
        }
    });
    counts
}

/// Missed slots in `slots`.
pub fn missed(slots: &[Observed]) -> Vec<&DriverEvent> {
    slots
        .iter()
        .filter(|o| o.proposed().is_none())
        .map(|o| &o.event)
        .collect()
}

/// Flashblocks every 50 ms in 250 ms slots: several land in every block.
pub const FLASHBLOCKS_INTERVAL: Duration = Duration::from_millis(50);

/// [`config`] with flashblocks end to end (ephemeral ports).
pub fn flashblocks_config() -> DevnetConfig {
    DevnetConfig {
        tx_rate: 40.0,
        flashblocks: Some(devnet::app::DevnetFlashblocks {
            builder_port: 0,
            interval: FLASHBLOCKS_INTERVAL,
            mux_port: 0,
            rpc_port: None,
        }),
        ..config()
    }
}

/// Most frames a test subscriber records (a test that needs more is broken).
const MAX_RECORDED: usize = 20_000;

#[derive(Debug, Default)]
struct Recorded {
    frames: Vec<OpFlashblockPayload>,
    unparsed: usize,
    overflow: bool,
    closed: bool,
}

/// A WebSocket subscriber recording every flashblock frame in arrival order.
#[derive(Debug)]
pub struct FlashblocksSubscriber {
    recorded: std::sync::Arc<std::sync::Mutex<Recorded>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FlashblocksSubscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FlashblocksSubscriber {
    /// Connects to `ws://addr`.
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
            .await
            .expect("flashblocks subscriber connects");
        Self::record(ws)
    }

    /// Records frames from an established WebSocket.
    pub fn record<S>(mut ws: tokio_tungstenite::WebSocketStream<S>) -> Self
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use futures::StreamExt;
        let recorded = std::sync::Arc::new(std::sync::Mutex::new(Recorded::default()));
        let rec = recorded.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let text = match msg {
                    Message::Text(t) => t.as_str().to_owned(),
                    Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                let mut r = rec.lock().unwrap();
                match serde_json::from_str::<OpFlashblockPayload>(&text) {
                    Ok(fb) if r.frames.len() < MAX_RECORDED => r.frames.push(fb),
                    Ok(_) => r.overflow = true,
                    Err(_) => r.unparsed += 1,
                }
            }
            rec.lock().unwrap().closed = true;
        });
        Self { recorded, task }
    }

    /// Every frame received so far, in arrival order.
    pub fn frames(&self) -> Vec<OpFlashblockPayload> {
        let r = self.recorded.lock().unwrap();
        assert!(
            !r.overflow,
            "subscriber recorded more than {MAX_RECORDED} frames"
        );
        assert_eq!(r.unparsed, 0, "every frame is a flashblock");
        r.frames.clone()
    }

    /// `(payload id, index)` of every frame, in arrival order.
    pub fn ids(&self) -> Vec<(PayloadId, u64)> {
        self.frames()
            .iter()
            .map(|f| (f.payload_id, f.index))
            .collect()
    }

    /// Frames received so far.
    pub fn len(&self) -> usize {
        self.recorded.lock().unwrap().frames.len()
    }

    /// Whether the server closed the connection.
    pub fn is_closed(&self) -> bool {
        self.recorded.lock().unwrap().closed
    }
}

/// Asserts that `ids` holds each `(payload, index)` once and that every payload's indices
/// arrive as 0, 1, 2, ... except that the first payload may start late (the subscriber joined
/// mid-block).
pub fn assert_in_order_without_duplicates(ids: &[(PayloadId, u64)]) {
    let mut seen = std::collections::HashSet::new();
    let mut next: std::collections::HashMap<PayloadId, u64> = std::collections::HashMap::new();
    let first = ids.first().map(|(id, _)| *id);
    for (id, index) in ids {
        assert!(
            seen.insert((*id, *index)),
            "({id}, {index}) published twice: {ids:?}"
        );
        match next.get(id) {
            Some(expected) => {
                assert_eq!(index, expected, "payload {id}: index out of order: {ids:?}")
            }
            None if Some(*id) == first => {}
            None => assert_eq!(*index, 0, "payload {id} starts at index 0: {ids:?}"),
        }
        next.insert(*id, index + 1);
    }
}

/// The flashblocks of block `number`, one payload's worth, in arrival order; `None` when the
/// subscriber has none for it. Panics when two payloads published flashblocks for one height.
pub fn flashblocks_of_block(
    frames: &[OpFlashblockPayload],
    number: u64,
) -> Option<Vec<OpFlashblockPayload>> {
    let of_block: Vec<OpFlashblockPayload> = frames
        .iter()
        .filter(|f| f.metadata.block_number == number)
        .cloned()
        .collect();
    let first = of_block.first()?.payload_id;
    assert!(
        of_block.iter().all(|f| f.payload_id == first),
        "one payload per height (block {number})"
    );
    Some(of_block)
}

/// Block `number` from the local engine's `eth_getBlockByNumber` (transaction hashes only).
pub async fn local_block(devnet: &Devnet, number: u64) -> serde_json::Value {
    let rpc = engine_api::Upstream::new(engine_api::UpstreamConfig {
        name: "test",
        url: devnet.local.http_url().parse().unwrap(),
        secret: None,
        timeout: Duration::from_secs(5),
        max_response_bytes: 1 << 24,
    });
    rpc.call(
        "eth_getBlockByNumber",
        &serde_json::json!([format!("{number:#x}"), false]),
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|e| panic!("eth_getBlockByNumber {number}: {e}"))
}

/// Asserts that the local engine's block `number` is exactly the assembly of `flashblocks`:
/// same hash, roots and gas, and the same transactions in the same order.
pub async fn assert_block_is_its_flashblocks(
    devnet: &Devnet,
    number: u64,
    flashblocks: &[OpFlashblockPayload],
) {
    let block = local_block(devnet, number).await;
    let assembled = OpExecutionData::from_flashblocks(flashblocks)
        .unwrap_or_else(|e| panic!("block {number}: flashblocks do not assemble: {e}"));
    let hex = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        hex(&block, "hash"),
        assembled.payload.block_hash().to_string(),
        "block {number}: the final block is the one its flashblocks assemble to"
    );
    let last = &flashblocks[flashblocks.len() - 1].diff;
    assert_eq!(hex(&block, "stateRoot"), last.state_root.to_string());
    assert_eq!(hex(&block, "receiptsRoot"), last.receipts_root.to_string());
    assert_eq!(hex(&block, "gasUsed"), format!("{:#x}", last.gas_used));
    let (in_block, preconfirmed) = (block_tx_hashes(&block), preconfirmed_strings(flashblocks));
    assert_eq!(
        in_block, preconfirmed,
        "block {number}: its transactions are its flashblocks' in order"
    );
}

/// Asserts that the local engine's block `number` keeps every preconfirmation of
/// `flashblocks`: their transactions are its first ones, in order. When it has no more
/// transactions than they do, it is exactly their assembly ([`assert_block_is_its_flashblocks`]);
/// it may have more when the builder's block includes a flashblock that had not reached
/// engine-mux when op-node asked (op-rbuilder's getPayload, like the devnet builder's, answers its
/// latest build): engine-mux never re-published that one, so nothing promised is missing.
pub async fn assert_block_keeps_its_flashblocks(
    devnet: &Devnet,
    number: u64,
    flashblocks: &[OpFlashblockPayload],
) {
    let block = local_block(devnet, number).await;
    let (in_block, preconfirmed) = (block_tx_hashes(&block), preconfirmed_strings(flashblocks));
    if in_block.len() <= preconfirmed.len() {
        return assert_block_is_its_flashblocks(devnet, number, flashblocks).await;
    }
    assert_eq!(
        in_block[..preconfirmed.len()],
        preconfirmed[..],
        "block {number}: its first transactions are its flashblocks' in order"
    );
}

/// The frames `sub` received for blocks up to the last one proposed in `after` (the block
/// still in progress is left out: it is not sealed yet).
pub fn sealed_frames(sub: &FlashblocksSubscriber, after: &[Observed]) -> Vec<OpFlashblockPayload> {
    let sealed = after
        .iter()
        .filter_map(|o| o.proposed().map(|b| b.number))
        .max()
        .expect("blocks after the fault");
    sub.frames()
        .into_iter()
        .filter(|f| f.metadata.block_number <= sealed)
        .collect()
}

/// The transaction hashes of a block as `eth_getBlockByNumber` gives it (hashes only).
pub fn block_tx_hashes(block: &serde_json::Value) -> Vec<String> {
    block["transactions"]
        .as_array()
        .expect("transaction hashes")
        .iter()
        .map(|h| h.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// [`preconfirmed_hashes`] as the strings [`block_tx_hashes`] gives.
pub fn preconfirmed_strings(frames: &[OpFlashblockPayload]) -> Vec<String> {
    preconfirmed_hashes(frames)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// [`assert_block_keeps_its_flashblocks`] for every block proposed in `slots` but the first
/// (it may have been decided before a fault went on) that has frames in `frames`; returns how
/// many were checked.
pub async fn assert_blocks_keep_their_flashblocks(
    devnet: &Devnet,
    slots: &[Observed],
    frames: &[OpFlashblockPayload],
) -> usize {
    let mut kept = 0;
    for n in slots
        .iter()
        .filter_map(|o| o.proposed().map(|b| b.number))
        .skip(1)
    {
        if let Some(fbs) = flashblocks_of_block(frames, n) {
            assert_block_keeps_its_flashblocks(devnet, n, &fbs).await;
            kept += 1;
        }
    }
    kept
}

/// Every transaction of every frame, by hash.
pub fn preconfirmed_hashes(frames: &[OpFlashblockPayload]) -> Vec<B256> {
    frames
        .iter()
        .flat_map(|f| f.diff.transactions.iter())
        .map(alloy_primitives::keccak256)
        .collect()
}

/// Reads one engine-mux metric (summing label sets that match).
pub fn mux_metric(devnet: &Devnet, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&devnet.mux.metrics_text(), name, labels)
}

/// engine-mux's count of blocks proposed from builder `name`
/// (`engine_mux_builder_blocks_total{builder, outcome="proposed"}`).
pub fn proposed_from(devnet: &Devnet, name: &str) -> f64 {
    mux_metric(
        devnet,
        "engine_mux_builder_blocks_total",
        &[("builder", name), ("outcome", "proposed")],
    )
}

/// [`proposed_from`] for b1..=bN, in order.
pub fn proposed_per_builder(devnet: &Devnet) -> Vec<f64> {
    (1..=devnet.builders().count())
        .map(|n| proposed_from(devnet, &devnet::app::builder_name(n)))
        .collect()
}

/// For each proposed slot in `slots` (with `per_slot[i]` the per-builder proposed counts read
/// right after slot `i`, and `start` the counts before the first), the 1-based builder whose
/// proposed count grew, `Some(0)` when none did (a local block), and `None` when more than one
/// grew (which would be a bug: one block, one source).
pub fn chosen_per_slot(start: &[f64], per_slot: &[Vec<f64>]) -> Vec<Option<usize>> {
    let mut before = start.to_vec();
    per_slot
        .iter()
        .map(|now| {
            let grew: Vec<usize> = now
                .iter()
                .zip(&before)
                .enumerate()
                .filter(|(_, (n, b))| n > b)
                .map(|(i, _)| i + 1)
                .collect();
            before = now.clone();
            match grew.as_slice() {
                [] => Some(0),
                [one] => Some(*one),
                _ => None,
            }
        })
        .collect()
}

/// A JSON-RPC client for engine-mux's debug server (no JWT, as rollup-boost's).
pub fn mux_debug(devnet: &Devnet) -> engine_api::Upstream {
    engine_api::Upstream::new(engine_api::UpstreamConfig {
        name: "debug",
        url: format!("http://{}", devnet.mux.debug_addr).parse().unwrap(),
        secret: None,
        timeout: Duration::from_secs(5),
        max_response_bytes: 1 << 20,
    })
}

/// Drops the events already queued on `events`, so the next [`observe`] reads counters for the
/// slots it sees (not for slots that passed while the test waited on something else).
pub fn drain(events: &mut broadcast::Receiver<DriverEvent>) {
    while !matches!(
        events.try_recv(),
        Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
    ) {}
}

/// [`proposed_per_builder`] at the end of the next slot, after dropping the events already
/// queued: counted at a slot's end, not at an arbitrary moment, so a block proposed before the
/// drain but announced after it is not read later as a local block.
pub async fn proposed_at_next_slot(
    devnet: &Devnet,
    events: &mut broadcast::Receiver<DriverEvent>,
) -> Vec<f64> {
    drain(events);
    let mut counts = Vec::new();
    observe(devnet, events, 1, Duration::from_secs(30), |_| {
        counts = proposed_per_builder(devnet);
    })
    .await;
    counts
}

/// Slots the driver missed since it started.
pub fn missed_so_far(devnet: &Devnet) -> u64 {
    devnet
        .driver
        .stats
        .missed
        .load(std::sync::atomic::Ordering::Relaxed)
}
