//! engine-mux with the local EL in process (`LocalElConfig::InProcess`): a node that links
//! engine-mux and has its own engine (a reth-based sequencer) passes it as a `LocalEngine`.
//! Every decision still works through it (FCU ids, validation of the builder's block, the
//! INVALID fallback, the raw proxy, health probes), and the HTTP EL the command line named
//! never gets a request.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use alloy_primitives::{B256, Bytes as EthBytes, U64, U256};
use alloy_rpc_types_engine::{
    BlobsBundleV1, ExecutionPayloadV3, ForkchoiceState, ForkchoiceUpdated, PayloadId,
    PayloadStatus, PayloadStatusEnum,
};
use engine_api::{UpstreamError, codes};
use engine_mux::{
    config::LocalElConfig,
    local_engine::{LOCAL_LABEL, LocalEngine, LocalFuture},
};
use jsonrpsee::types::ErrorObjectOwned;
use op_alloy_rpc_types_engine::{OpExecutionPayloadEnvelopeV3, OpPayloadAttributes};
use serde::de::DeserializeOwned;
use serde_json::{Value, json, value::RawValue};

use engine_mux::sample;

use crate::{
    harness::{attributes, client, eventually, forkchoice, http_get, start_mux_configured},
    mock_engine::{MockEngine, now, payload_v3},
};

/// The embedding node's engine, answering as op-geth and op-reth do the calls engine-mux makes:
/// FCU starts a build under a payload id of its own, getPayload returns that build shaped as
/// the attributes asked (unknown id: -38001), newPayload is VALID unless the test marked the
/// block INVALID, and `eth_getBlockByNumber("latest")` is its head. Everything is recorded.
#[derive(Debug, Default)]
struct NodeEngine {
    state: Mutex<NodeState>,
}

#[derive(Debug, Default)]
struct NodeState {
    methods: Vec<String>,
    builds: HashMap<PayloadId, (ForkchoiceState, OpPayloadAttributes)>,
    next_id: u64,
    validated: Vec<B256>,
    invalid: HashSet<B256>,
    /// Calls fail below JSON-RPC (the node's engine stopped).
    stopped: bool,
}

/// The hash of the block this engine builds at `number` (its own tag, 0xdd).
fn node_block_hash(number: u64) -> B256 {
    let mut h = [0xdd; 32];
    h[24..].copy_from_slice(&number.to_be_bytes());
    B256::from(h)
}

fn rpc_error(code: i32, message: &str) -> UpstreamError {
    UpstreamError::Rpc {
        upstream: LOCAL_LABEL,
        error: ErrorObjectOwned::owned(code, message.to_string(), None::<()>),
    }
}

fn params<T: DeserializeOwned>(raw: &RawValue) -> Result<T, UpstreamError> {
    serde_json::from_str(raw.get()).map_err(|e| rpc_error(codes::INVALID_PARAMS, &e.to_string()))
}

fn result(v: impl serde::Serialize) -> Result<Box<RawValue>, UpstreamError> {
    Ok(serde_json::value::to_raw_value(&v).unwrap())
}

impl NodeEngine {
    fn answer(&self, method: &str, raw: &RawValue) -> Result<Box<RawValue>, UpstreamError> {
        let mut st = self.state.lock().unwrap();
        st.methods.push(method.to_string());
        if st.stopped {
            return Err(UpstreamError::Transport {
                upstream: LOCAL_LABEL,
                detail: "the node's engine stopped".into(),
            });
        }
        match method {
            "engine_forkchoiceUpdatedV3" => {
                let (fcs, attrs): (ForkchoiceState, Option<OpPayloadAttributes>) = params(raw)?;
                let payload_id = attrs.map(|attrs| {
                    st.next_id += 1;
                    let mut id = [0x03; 8];
                    id[1..].copy_from_slice(&st.next_id.to_be_bytes()[1..]);
                    let id = PayloadId::new(id);
                    st.builds.insert(id, (fcs, attrs));
                    id
                });
                result(ForkchoiceUpdated {
                    payload_status: PayloadStatus::new(
                        PayloadStatusEnum::Valid,
                        Some(fcs.head_block_hash),
                    ),
                    payload_id,
                })
            }
            "engine_getPayloadV3" => {
                let (id,): (PayloadId,) = params(raw)?;
                let Some((fcs, attrs)) = st.builds.get(&id) else {
                    return Err(rpc_error(codes::UNKNOWN_PAYLOAD, "Unknown payload"));
                };
                result(built_as_asked(fcs, attrs))
            }
            "engine_newPayloadV3" => {
                let (payload, _, _): (ExecutionPayloadV3, Vec<B256>, B256) = params(raw)?;
                let hash = payload.payload_inner.payload_inner.block_hash;
                st.validated.push(hash);
                let status = if st.invalid.contains(&hash) {
                    PayloadStatusEnum::Invalid {
                        validation_error: "state root mismatch".into(),
                    }
                } else {
                    PayloadStatusEnum::Valid
                };
                result(PayloadStatus::new(status, Some(hash)))
            }
            "eth_getBlockByNumber" => result(json!({
                "number": U64::from(100u64),
                "hash": node_block_hash(100),
                "timestamp": U64::from(now()),
            })),
            "eth_chainId" => result("0x385"),
            _ => Err(rpc_error(codes::METHOD_NOT_FOUND, "method not found")),
        }
    }
}

/// The block built on `fcs`'s head as `attrs` asked: its parent, timestamp, prevRandao, fee
/// recipient, gas limit, Holocene extraData and the attributes' transactions first.
fn built_as_asked(
    fcs: &ForkchoiceState,
    attrs: &OpPayloadAttributes,
) -> OpExecutionPayloadEnvelopeV3 {
    let head = u64::from_be_bytes(fcs.head_block_hash.0[24..].try_into().unwrap());
    let mut payload = payload_v3(node_block_hash(head + 1), head + 1, 400_000, 20);
    let v1 = &mut payload.payload_inner.payload_inner;
    let pa = &attrs.payload_attributes;
    v1.parent_hash = fcs.head_block_hash;
    v1.timestamp = pa.timestamp;
    v1.prev_randao = pa.prev_randao;
    v1.fee_recipient = pa.suggested_fee_recipient;
    v1.gas_limit = attrs.gas_limit.unwrap_or(v1.gas_limit);
    if let Some(params) = attrs.eip_1559_params {
        let mut extra = vec![0u8];
        extra.extend_from_slice(params.as_slice());
        v1.extra_data = EthBytes::from(extra);
    }
    let forced = attrs.transactions.clone().unwrap_or_default();
    v1.transactions.splice(0..0, forced);
    OpExecutionPayloadEnvelopeV3 {
        execution_payload: payload,
        block_value: U256::from(1u64),
        blobs_bundle: BlobsBundleV1::empty(),
        should_override_builder: false,
        parent_beacon_block_root: pa.parent_beacon_block_root.unwrap_or_default(),
    }
}

/// Shared so the test keeps a view of what engine-mux asked.
#[derive(Debug, Clone, Default)]
struct Shared(std::sync::Arc<NodeEngine>);

impl LocalEngine for Shared {
    fn call<'a>(
        &'a self,
        method: &'a str,
        params: &'a RawValue,
        _timeout: Duration,
    ) -> LocalFuture<'a, Box<RawValue>> {
        let answer = self.0.answer(method, params);
        Box::pin(async move { answer })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(2)
    }
}

/// op-node's side of the test: its calls over the RPC port, signed with the secret the
/// command line gave.
struct OpNode {
    client: engine_api::Upstream,
    mux: engine_mux::RunningMux,
}

impl OpNode {
    async fn call(&self, method: &'static str, params: Value) -> Result<Value, UpstreamError> {
        self.client
            .call(method, &params, self.client.timeout())
            .await
    }

    /// FCU with attributes on `head`: the payload id op-node gets.
    async fn build_on(&self, head: u64) -> String {
        let res = self
            .call(
                "engine_forkchoiceUpdatedV3",
                json!([forkchoice(head), attributes(false)]),
            )
            .await
            .unwrap();
        res["payloadId"].as_str().expect("a payload id").to_string()
    }

    /// getPayload, then the block imported as op-node does (newPayload, FCU to it): its hash.
    async fn propose(&self, id: &str, head: u64) -> B256 {
        let envelope = self.call("engine_getPayloadV3", json!([id])).await.unwrap();
        let payload = envelope["executionPayload"].clone();
        let status = self
            .call(
                "engine_newPayloadV3",
                json!([payload, [], envelope["parentBeaconBlockRoot"]]),
            )
            .await
            .unwrap();
        assert_eq!(status["status"], "VALID");
        self.call(
            "engine_forkchoiceUpdatedV3",
            json!([forkchoice(head + 1), null]),
        )
        .await
        .unwrap();
        serde_json::from_value(payload["blockHash"].clone()).unwrap()
    }

    fn metric(&self, series: &str) -> f64 {
        sample(&self.mux.metrics_text(), series).unwrap_or(0.0)
    }

    async fn healthz(&self) -> u16 {
        http_get(self.mux.rpc_addr, "/healthz").await
    }
}

#[tokio::test]
async fn decisions_work_through_an_in_process_local_engine_without_any_http_to_the_el() {
    // The EL the command line names over HTTP: with an in-process engine it must never be asked.
    let http_el = MockEngine::start("local", 0x03, 0xaa).await;
    let builder = MockEngine::start("builder", 0x04, 0xbb).await;
    let node = Shared::default();
    let engine = node.clone();
    let mux = start_mux_configured(&http_el, &builder, &[], move |c| {
        c.l2 = LocalElConfig::in_process(engine);
    })
    .await;
    let op_node = OpNode {
        client: client(&mux, Some(http_el.secret), Duration::from_secs(5)),
        mux,
    };
    let state = || node.0.state.lock().unwrap();

    // Health probes reach the in-process engine: its head is fresh, so 200.
    eventually(Duration::from_secs(5), "healthy", || async {
        op_node.healthz().await == 200
    })
    .await;

    // Block 101: op-node gets the node engine's payload id; the builder's block is validated
    // on the node engine (newPayload with its hash) and proposed.
    let id = op_node.build_on(100).await;
    assert!(
        state()
            .builds
            .contains_key(&id.parse::<PayloadId>().unwrap()),
        "{id}"
    );
    let hash = op_node.propose(&id, 100).await;
    assert_eq!(hash, builder.block_hash(101), "the builder's block");
    assert!(state().validated.contains(&hash));

    // Block 102: the node engine finds the builder's block INVALID; op-node gets the node
    // engine's own block.
    let bad = builder.block_hash(102);
    state().invalid.insert(bad);
    let id = op_node.build_on(101).await;
    let hash = op_node.propose(&id, 101).await;
    assert_eq!(hash, node_block_hash(102), "the node engine's own block");
    assert!(state().validated.contains(&bad));
    assert_eq!(
        op_node.metric("engine_mux_fallbacks_total{reason=\"invalid\"}"),
        1.0
    );

    // The raw proxy and a spec error come back as the node engine answered them.
    assert_eq!(
        op_node.call("eth_chainId", json!([])).await.unwrap(),
        "0x385"
    );
    let err = op_node
        .call("engine_getPayloadV3", json!(["0x0300000000000063"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, UpstreamError::Rpc { error, .. } if error.code() == codes::UNKNOWN_PAYLOAD),
        "{err}"
    );
    // Calls are timed under the local EL's label, as over HTTP: two validations of the
    // builder's blocks and op-node's two imports.
    assert_eq!(state().validated.len(), 4);
    assert_eq!(
        op_node.metric(
            "engine_mux_upstream_requests_total{upstream=\"l2\",method=\"engine_newPayloadV3\",outcome=\"ok\"}"
        ),
        4.0
    );

    // The node engine stops: its failures are the local EL's health evidence (503).
    state().stopped = true;
    eventually(Duration::from_secs(8), "local EL failing", || async {
        op_node.healthz().await == 503
    })
    .await;

    let methods = state().methods.clone();
    for m in [
        "engine_forkchoiceUpdatedV3",
        "engine_getPayloadV3",
        "engine_newPayloadV3",
        "eth_getBlockByNumber",
        "eth_chainId",
    ] {
        assert!(methods.iter().any(|x| x == m), "{m} not asked: {methods:?}");
    }
    assert!(
        http_el.calls().is_empty(),
        "the HTTP EL got requests: {:?}",
        http_el.calls()
    );
}
