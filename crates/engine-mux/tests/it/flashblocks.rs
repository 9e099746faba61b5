//! Flashblocks through engine-mux: checking, holding, re-publishing, reconnecting, and
//! proposing blocks that keep every preconfirmation.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy_primitives::{B256, Bytes};
use alloy_rpc_types_engine::PayloadId;
use futures::{SinkExt, StreamExt};
use op_alloy_rpc_types_engine::{OpFlashblockPayload, OpFlashblockPayloadBase};
use parking_lot::Mutex;
use serde_json::json;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    harness::{Setup, eventually, setup},
    mock_engine::{Fault, payload_v3},
};

/// A scripted builder flashblocks endpoint, as op-rbuilder serves it (`ws://`, or `wss://` behind
/// TLS): frames pushed by the test go to the client that completed the handshakes, and pings
/// are answered.
pub(crate) struct FlashblocksSource {
    addr: SocketAddr,
    tls: bool,
    tx: Arc<Mutex<Option<mpsc::UnboundedSender<Message>>>>,
    connections: Arc<Mutex<usize>>,
}

type FrameSlot = Arc<Mutex<Option<mpsc::UnboundedSender<Message>>>>;

/// One WebSocket client of the source: the test's frames out, pings answered.
async fn serve_client<S>(stream: S, slot: FrameSlot, count: Arc<Mutex<usize>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (frames_tx, mut frames_rx) = mpsc::unbounded_channel();
    *slot.lock() = Some(frames_tx);
    *count.lock() += 1;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                frame = frames_rx.recv() => match frame {
                    Some(Message::Close(_)) | None => { let _ = sink.close().await; return; }
                    Some(m) => if sink.send(m).await.is_err() { return },
                },
                msg = source.next() => match msg {
                    Some(Ok(Message::Ping(p))) => { let _ = sink.send(Message::Pong(p)).await; }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    });
}

impl FlashblocksSource {
    pub(crate) async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A source serving `wss://` with `tls` when given, plain `ws://` otherwise.
    pub(crate) async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tx: FrameSlot = Arc::default();
        let connections: Arc<Mutex<usize>> = Arc::default();
        let (slot, count) = (tx.clone(), connections.clone());
        let is_tls = tls.is_some();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                match &tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve_client(stream, slot.clone(), count.clone()).await;
                        }
                    }
                    None => serve_client(stream, slot.clone(), count.clone()).await,
                }
            }
        });
        Self {
            addr,
            tls: is_tls,
            tx,
            connections,
        }
    }

    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}", self.addr)
    }

    fn send(&self, m: Message) {
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(m);
        }
    }

    pub(crate) fn text(&self, fb: &OpFlashblockPayload) {
        self.send(Message::Text(serde_json::to_string(fb).unwrap().into()));
    }

    /// Drops the current connection (the builder's socket dies).
    fn drop_connection(&self) {
        if let Some(tx) = self.tx.lock().take() {
            let _ = tx.send(Message::Close(None));
        }
    }

    /// Clients that completed the (TLS and) WebSocket handshakes.
    pub(crate) fn connections(&self) -> usize {
        *self.connections.lock()
    }
}

/// A flashblock as op-rbuilder builds it for the builder's latest FCU with attributes: index 0
/// carries the base taken from those attributes (parent = the FCU head, timestamp, prevRandao,
/// fee recipient, gas limit, Holocene extraData, beacon root) and starts with the attributes'
/// forced transactions, then `txs`.
pub(crate) fn flashblock(
    s: &Setup,
    id: PayloadId,
    index: u64,
    txs: Vec<Bytes>,
) -> OpFlashblockPayload {
    flashblock_of(&s.builder, id, index, txs)
}

/// [`flashblock`] for the build `builder` was asked for.
fn flashblock_of(
    builder: &crate::mock_engine::MockEngine,
    id: PayloadId,
    index: u64,
    mut txs: Vec<Bytes>,
) -> OpFlashblockPayload {
    let fcu = builder
        .calls_of("engine_forkchoiceUpdatedV3")
        .into_iter()
        .rfind(|c| !c.params[1].is_null())
        .expect("the builder was asked to build")
        .params;
    let attrs = &fcu[1];
    let quantity = |v: &serde_json::Value| -> u64 {
        serde_json::from_value::<alloy_primitives::U64>(v.clone())
            .unwrap()
            .to()
    };
    let base = (index == 0).then(|| {
        let params: alloy_primitives::B64 =
            serde_json::from_value(attrs["eip1559Params"].clone()).unwrap();
        let mut extra = vec![0u8];
        extra.extend_from_slice(params.as_slice());
        let forced: Vec<Bytes> = serde_json::from_value(attrs["transactions"].clone()).unwrap();
        txs.splice(0..0, forced);
        OpFlashblockPayloadBase {
            parent_hash: serde_json::from_value(fcu[0]["headBlockHash"].clone()).unwrap(),
            fee_recipient: serde_json::from_value(attrs["suggestedFeeRecipient"].clone()).unwrap(),
            prev_randao: serde_json::from_value(attrs["prevRandao"].clone()).unwrap(),
            block_number: 101,
            gas_limit: quantity(&attrs["gasLimit"]),
            timestamp: quantity(&attrs["timestamp"]),
            extra_data: extra.into(),
            parent_beacon_block_root: serde_json::from_value(
                attrs["parentBeaconBlockRoot"].clone(),
            )
            .unwrap(),
            ..Default::default()
        }
    });
    let mut fb = OpFlashblockPayload {
        payload_id: id,
        index,
        base,
        ..Default::default()
    };
    fb.diff.transactions = txs;
    // A real builder's root (the mock local EL refuses a zero one, as a real EL does).
    fb.diff.state_root = B256::repeat_byte(0x33);
    fb.diff.block_hash = B256::repeat_byte(0xf0u8.wrapping_add(index as u8));
    fb.diff.gas_used = 21_000 * (index + 1);
    fb
}

/// The forced transactions of the harness's payload attributes (the L1-info deposit).
fn forced() -> Vec<Bytes> {
    serde_json::from_value(crate::harness::attributes(false)["transactions"].clone()).unwrap()
}

pub(crate) fn tx(tag: u8) -> Bytes {
    Bytes::from(vec![0x7e, tag, tag])
}

pub(crate) async fn with_flashblocks(extra: &[&str]) -> (Setup, FlashblocksSource) {
    let source = FlashblocksSource::start().await;
    let url = source.url();
    let mut args = vec![
        "--flashblocks",
        "--flashblocks-builder-url",
        url.as_str(),
        "--flashblocks-port",
        "0",
    ];
    args.extend_from_slice(extra);
    // `setup` borrows its args only while starting.
    let s = setup(&args).await;
    eventually(
        Duration::from_secs(3),
        "engine-mux connected to the builder stream",
        || async { source.connections() == 1 },
    )
    .await;
    (s, source)
}

type Subscriber =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(s: &Setup) -> Subscriber {
    let addr = s.mux.flashblocks_addr.unwrap();
    tokio_tungstenite::connect_async(format!("ws://{addr}"))
        .await
        .unwrap()
        .0
}

async fn next_index(sub: &mut Subscriber) -> u64 {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(3), sub.next())
            .await
            .expect("a flashblock in time")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            return engine_api::flashblocks::parse(t.as_bytes()).unwrap().index;
        }
    }
}

/// The builder's payload id for the FCU op-node just made.
pub(crate) async fn builder_id(s: &Setup) -> PayloadId {
    eventually(
        Duration::from_secs(2),
        "builder answered the FCU",
        || async { !s.builder.issued_ids().is_empty() },
    )
    .await;
    serde_json::from_value(json!(s.builder.issued_ids().last().unwrap())).unwrap()
}

/// op-node starts a block and the builder streams one flashblock per entry of `txs`; returns
/// op-node's payload id once engine-mux has accepted them all.
async fn stream_block(s: &Setup, source: &FlashblocksSource, txs: Vec<Vec<Bytes>>) -> String {
    let local_id = s.fcu_build().await;
    let id = builder_id(s).await;
    let before = test_utils::metric(
        &s.mux.metrics_text(),
        r#"engine_mux_flashblocks_total{event="accepted"}"#,
    );
    let n = txs.len() as f64;
    for (i, t) in txs.into_iter().enumerate() {
        source.text(&flashblock(s, id, i as u64, t));
    }
    eventually(
        Duration::from_secs(2),
        "all flashblocks accepted",
        || async {
            test_utils::metric(
                &s.mux.metrics_text(),
                r#"engine_mux_flashblocks_total{event="accepted"}"#,
            ) == before + n
        },
    )
    .await;
    local_id
}

/// The first transactions of the mock builder's block, split into flashblocks of these sizes.
fn builder_prefix(sizes: &[usize]) -> Vec<Vec<Bytes>> {
    let txs = payload_v3(B256::ZERO, 101, 0, 100)
        .payload_inner
        .payload_inner
        .transactions;
    let mut at = 0;
    sizes
        .iter()
        .map(|n| {
            at += n;
            txs[at - n..at].to_vec()
        })
        .collect()
}

#[tokio::test]
async fn out_of_order_duplicate_equivocating_and_malformed_frames() {
    let (s, source) = with_flashblocks(&[]).await;
    let mut sub = subscribe(&s).await;
    // The builder id is known once its FCU answers; index 0 sent before is held, not lost.
    let local_id = s.fcu_build().await;
    let id = builder_id(&s).await;
    source.text(&flashblock(&s, id, 2, vec![tx(3)]));
    source.send(Message::Text("{\"not\":\"a flashblock\"}".into()));
    source.send(Message::Binary(
        serde_json::to_vec(&flashblock(&s, id, 0, vec![tx(1)]))
            .unwrap()
            .into(),
    ));
    source.text(&flashblock(&s, id, 0, vec![tx(1)]));
    source.text(&flashblock(&s, id, 1, vec![tx(2)]));
    source.text(&flashblock(&s, id, 1, vec![tx(99)]));
    source.text(&flashblock(&s, id, 3, vec![tx(4)]));
    let got = [
        next_index(&mut sub).await,
        next_index(&mut sub).await,
        next_index(&mut sub).await,
        next_index(&mut sub).await,
    ];
    assert_eq!(got, [0, 1, 2, 3], "re-published once each, in order");
    let m = s.mux.metrics_text();
    for (reason, n) in [
        ("malformed", 1.0),
        ("duplicate", 1.0),
        ("equivocation", 1.0),
    ] {
        assert_eq!(
            test_utils::metric(
                &s.mux.metrics_text(),
                &format!("engine_mux_flashblocks_rejected_total{{reason=\"{reason}\"}}")
            ),
            n,
            "{reason}\n{m}"
        );
    }
    assert_eq!(
        source.connections(),
        1,
        "bad frames do not drop the connection"
    );
    let _ = local_id;
}

#[tokio::test]
async fn builder_killed_after_flashblock_3_proposes_exactly_flashblocks_0_to_3() {
    let (s, source) = with_flashblocks(&["--health-check-interval", "60"]).await;
    let local_id = stream_block(
        &s,
        &source,
        (0..4u8).map(|i| vec![tx(2 * i), tx(2 * i + 1)]).collect(),
    )
    .await;
    s.builder.down();
    let env = s
        .call("engine_getPayloadV3", json!([local_id]))
        .await
        .unwrap();
    let payload = &env["executionPayload"];
    assert_eq!(
        payload["blockHash"],
        json!(B256::repeat_byte(0xf3)),
        "the last flashblock's block"
    );
    let txs: Vec<Bytes> = serde_json::from_value(payload["transactions"].clone()).unwrap();
    assert_eq!(
        txs,
        forced()
            .into_iter()
            .chain((0..8).map(tx))
            .collect::<Vec<_>>(),
        "exactly flashblocks 0–3, in order, after the attributes' deposit"
    );
    assert_eq!(
        s.local.calls_of("engine_newPayloadV3")[0].params[0]["blockHash"],
        json!(B256::repeat_byte(0xf3)),
        "validated first"
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_flashblocks_blocks_total{path="preserved"}"#
        ),
        1.0
    );
    assert_eq!(s.blocks("builder"), 1.0);
}

#[tokio::test]
async fn builder_block_dropping_preconfirmed_transactions_is_replaced_by_its_flashblocks() {
    let (s, source) = with_flashblocks(&[]).await;
    let local_id = stream_block(&s, &source, vec![vec![tx(1)], vec![tx(2)]]).await;
    let env = s
        .call("engine_getPayloadV3", json!([local_id]))
        .await
        .unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(B256::repeat_byte(0xf1))
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_flashblocks_blocks_total{path="assembled"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn builder_block_that_extends_its_flashblocks_is_used() {
    let (s, source) = with_flashblocks(&[]).await;
    // The mock builder's final block starts with these transactions.
    let local_id = stream_block(&s, &source, builder_prefix(&[3, 7])).await;
    let env = s
        .call("engine_getPayloadV3", json!([local_id]))
        .await
        .unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(s.builder.block_hash(101)),
        "the builder's final block"
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_flashblocks_blocks_total{path="builder_payload"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn dropped_stream_reconnects_and_nothing_is_republished_twice() {
    let (s, source) = with_flashblocks(&[]).await;
    let mut sub = subscribe(&s).await;
    s.fcu_build().await;
    let id = builder_id(&s).await;
    source.text(&flashblock(&s, id, 0, vec![tx(1)]));
    source.text(&flashblock(&s, id, 1, vec![tx(2)]));
    assert_eq!(
        [next_index(&mut sub).await, next_index(&mut sub).await],
        [0, 1]
    );
    source.drop_connection();
    eventually(Duration::from_secs(5), "engine-mux reconnected", || async {
        source.connections() == 2
    })
    .await;
    // A builder replaying its current block after a reconnect: 0 and 1 again, then 2.
    for (i, t) in [(0, 1), (1, 2), (2, 3)] {
        source.text(&flashblock(&s, id, i, vec![tx(t)]));
    }
    assert_eq!(
        next_index(&mut sub).await,
        2,
        "0 and 1 are not re-published"
    );
    assert!(
        test_utils::metric(
            &s.mux.metrics_text(),
            "engine_mux_flashblocks_reconnects_total"
        ) >= 1.0
    );
}

#[tokio::test]
async fn slow_subscriber_is_disconnected_while_fast_ones_keep_every_message() {
    let (s, source) = with_flashblocks(&[]).await;
    let mut fast = subscribe(&s).await;
    let _slow = subscribe(&s).await; // never reads
    // Two builds of 700 frames of ~16 KiB: more than loopback socket buffers absorb, each
    // build within the per-build byte budget.
    let (per_build, builds) = (700u64, 2u64);
    let total = per_build * builds;
    // 8 KiB of tx bytes is ~16 KiB of hex JSON per frame.
    let big = Bytes::from(vec![0xab; 8 * 1024]);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < total as usize {
            seen.push(next_index(&mut fast).await);
        }
        seen
    });
    for _ in 0..builds {
        let before = s.builder.issued_ids().len();
        s.fcu_build().await;
        eventually(Duration::from_secs(2), "builder answered", || async {
            s.builder.issued_ids().len() > before
        })
        .await;
        let id = builder_id(&s).await;
        // Index 0 first, and only once engine-mux accepted it (it knows the build), the rest:
        // a burst before that would only exercise the bounded hold.
        let accepted = test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_flashblocks_total{event="accepted"}"#,
        );
        source.text(&flashblock(&s, id, 0, vec![big.clone()]));
        eventually(Duration::from_secs(2), "index 0 accepted", || async {
            test_utils::metric(
                &s.mux.metrics_text(),
                r#"engine_mux_flashblocks_total{event="accepted"}"#,
            ) > accepted
        })
        .await;
        for i in 1..per_build {
            source.text(&flashblock(&s, id, i, vec![big.clone()]));
        }
    }
    let seen = reader.await.unwrap();
    let expected: Vec<u64> = (0..builds).flat_map(|_| 0..per_build).collect();
    assert_eq!(
        seen, expected,
        "the fast subscriber got every flashblock in order"
    );
    eventually(
        Duration::from_secs(10),
        "the slow subscriber was dropped",
        || async {
            test_utils::metric(
                &s.mux.metrics_text(),
                "engine_mux_flashblocks_lagging_disconnects_total",
            ) == 1.0
        },
    )
    .await;
}

#[tokio::test]
async fn invalid_builder_block_still_lands_its_valid_preconfirmations() {
    let (s, source) = with_flashblocks(&[]).await;
    let local_id = stream_block(&s, &source, builder_prefix(&[3, 7])).await;
    // The builder's final block extends its flashblocks but the local EL rejects it.
    s.local.invalid_for(s.builder.block_hash(101));
    let env = s
        .call("engine_getPayloadV3", json!([local_id]))
        .await
        .unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(B256::repeat_byte(0xf1)),
        "the flashblocks' block"
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_flashblocks_blocks_total{path="assembled"}"#
        ),
        1.0
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_flashblocks_blocks_total{path="builder_payload"}"#
        ),
        0.0,
        "counted only when used"
    );
    let validated: Vec<_> = s
        .local
        .calls_of("engine_newPayloadV3")
        .iter()
        .map(|c| c.params[0]["blockHash"].clone())
        .collect();
    assert_eq!(
        validated,
        vec![
            json!(s.builder.block_hash(101)),
            json!(B256::repeat_byte(0xf1))
        ]
    );
}

/// op-rbuilder answers the FCU only after getPayload gave up on it: the block was decided
/// without the builder, so none of the flashblocks it then streams for that build may be
/// re-published (they would preconfirm transactions of a block that will never exist).
#[tokio::test]
async fn builder_fcu_answered_after_the_decision_opens_no_build() {
    let (s, source) = with_flashblocks(&["--builder-timeout", "2000"]).await;
    s.builder.fault(
        "engine_forkchoiceUpdatedV3",
        Fault::Delay(Duration::from_millis(900)),
    );
    let local_id = s.fcu_build().await;
    let env = s
        .call("engine_getPayloadV3", json!([local_id]))
        .await
        .unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(s.local.block_hash(101))
    );
    assert_eq!(s.fallbacks("timeout"), 1.0);
    let id = builder_id(&s).await;
    for i in 0..3 {
        source.text(&flashblock(&s, id, i, vec![tx(i as u8)]));
    }
    eventually(Duration::from_secs(2), "frames received", || async {
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_flashblocks_total{event="received"}"#,
        ) == 3.0
    })
    .await;
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_flashblocks_total{event="accepted"}"#
        ),
        0.0,
        "nothing accepted (so nothing re-published) for a decided block"
    );
}

/// Under `gas-used`, a builder block far below the local block's gas would lose; once its
/// flashblocks were shown to subscribers it must win anyway, or preconfirmations vanish.
#[tokio::test]
async fn gas_policy_never_drops_published_preconfirmations() {
    let (s, source) = with_flashblocks(&["--block-selection-policy", "gas-used"]).await;
    s.builder.set_gas_used(1_000);
    s.local.set_gas_used(20_000_000);
    let local_id = stream_block(&s, &source, builder_prefix(&[2])).await;
    let env = s
        .call("engine_getPayloadV3", json!([local_id]))
        .await
        .unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(s.builder.block_hash(101)),
        "the preconfirmed builder block, despite its gas"
    );
    assert_eq!(s.fallbacks("policy"), 0.0);
}

/// Base's public stream sends metadata with only `block_number` (no receipts, no balances).
#[tokio::test]
async fn base_style_flashblocks_without_receipts_or_balances_are_accepted() {
    let (s, source) = with_flashblocks(&[]).await;
    let mut sub = subscribe(&s).await;
    s.fcu_build().await;
    let id = builder_id(&s).await;
    for i in 0..2 {
        let mut frame = serde_json::to_value(flashblock(&s, id, i, vec![tx(i as u8)])).unwrap();
        frame["metadata"] = json!({ "block_number": 101 });
        source.send(Message::Text(frame.to_string().into()));
    }
    assert_eq!(
        [next_index(&mut sub).await, next_index(&mut sub).await],
        [0, 1]
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_flashblocks_rejected_total{reason="malformed"}"#
        ),
        0.0
    );
}

/// Two builders streaming flashblocks (several builders): the first by priority is elected for the
/// block, so only its flashblocks reach subscribers; when it dies after flashblock 3, the block
/// its flashblocks assemble to is proposed, not the other builder's (heavier, valid) block.
#[tokio::test]
async fn only_the_elected_builders_flashblocks_are_published_and_kept() {
    use crate::{harness::setup_with, mock_engine::MockEngine};
    let (one, two) = (
        FlashblocksSource::start().await,
        FlashblocksSource::start().await,
    );
    let local = MockEngine::start("local", 0x03, 0xaa).await;
    let b1 = MockEngine::start("b1", 0x04, 0xb1).await;
    let b2 = MockEngine::start("b2", 0x05, 0xb2).await;
    b2.set_gas_used(5_000_000);
    let spec = format!(
        "name=b2,url={},jwt-token={},flashblocks-url={}",
        b2.url(),
        b2.secret_hex(),
        two.url()
    );
    let url1 = one.url();
    let s = setup_with(
        local,
        b1,
        &[
            "--builder-name",
            "b1",
            "--extra-builder",
            &spec,
            "--flashblocks",
            "--flashblocks-builder-url",
            &url1,
            "--flashblocks-port",
            "0",
            "--health-check-interval",
            "60",
        ],
    )
    .await;
    eventually(Duration::from_secs(3), "both streams connected", || async {
        one.connections() == 1 && two.connections() == 1
    })
    .await;
    let mut sub = subscribe(&s).await;
    let local_id = s.fcu_build().await;
    let id1 = builder_id(&s).await;
    eventually(Duration::from_secs(2), "b2 answered the FCU", || async {
        !b2.issued_ids().is_empty()
    })
    .await;
    let id2: PayloadId = serde_json::from_value(json!(b2.issued_ids().last().unwrap())).unwrap();
    for i in 0..4u8 {
        two.text(&flashblock_of(&b2, id2, u64::from(i), vec![tx(100 + i)]));
        one.text(&flashblock(
            &s,
            id1,
            u64::from(i),
            vec![tx(2 * i), tx(2 * i + 1)],
        ));
    }
    eventually(Duration::from_secs(2), "both streams accepted", || async {
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_flashblocks_total{event="accepted",builder="b1"}"#,
        ) == 4.0
            && test_utils::metric(
                &s.mux.metrics_text(),
                r#"engine_mux_flashblocks_total{event="accepted",builder="b2"}"#,
            ) == 4.0
    })
    .await;
    for want in 0..4u64 {
        let msg = tokio::time::timeout(Duration::from_secs(3), sub.next())
            .await
            .expect("a flashblock in time")
            .unwrap()
            .unwrap();
        let Message::Text(t) = msg else {
            panic!("text frames only")
        };
        let fb = engine_api::flashblocks::parse(t.as_bytes()).unwrap();
        assert_eq!(
            (fb.payload_id, fb.index),
            (id1, want),
            "only the elected builder's flashblocks, in order"
        );
    }
    s.builder.down();
    let env = s
        .call("engine_getPayloadV3", json!([local_id]))
        .await
        .unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(B256::repeat_byte(0xf3)),
        "the block the elected builder's flashblocks assemble to, not b2's"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err(),
        "nothing else reached subscribers"
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_builder_blocks_total{outcome="not_chosen",builder="b2"}"#
        ),
        1.0,
        "b2's block was never tried: the elected builder preconfirmed this block"
    );
}
