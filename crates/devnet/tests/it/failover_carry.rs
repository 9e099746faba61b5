//! engine-mux's carry-over against a peer's stream (a stand-in for the dead leader's engine-mux)
//! with the test as op-node: what is carried, what is dropped and why, and that a peer's blocks
//! on a parent this node does not have never change this node's blocks.

use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rpc_types_engine::PayloadId;
use alloy_signer_local::PrivateKeySigner;
use devnet::{
    app::ha::{FollowingStack, op_node_slot},
    chain::{
        accounts::{raw_transaction, sign_transfer},
        attributes::{SequencerParams, sequencer_attributes},
    },
};
use engine_mux::DropReason;
use op_alloy_rpc_types_engine::{OpFlashblockPayload, OpFlashblockPayloadBase};
use test_utils::{eventually, metric};

/// The stack under test, with the helpers these tests add.
struct Node(FollowingStack);

impl std::ops::Deref for Node {
    type Target = FollowingStack;
    fn deref(&self) -> &FollowingStack {
        &self.0
    }
}

async fn node() -> Node {
    Node(FollowingStack::start(&[]).await.expect("stack starts"))
}

impl Node {
    fn attributes(&self, number: u64) -> op_alloy_rpc_types_engine::OpPayloadAttributes {
        let head = self.local.engine.head();
        sequencer_attributes(
            &self.spec,
            &SequencerParams::default(),
            number,
            head.header.timestamp + 1,
        )
    }

    fn transfer(&self, signer: &PrivateKeySigner, nonce: u64, value: u64) -> Bytes {
        raw(sign_transfer(
            signer,
            self.spec.chain_id,
            nonce,
            Address::repeat_byte(0x77),
            U256::from(value),
            2_000_000_000,
            1_000_000,
        )
        .unwrap())
    }

    /// The peer's flashblocks for block `number` on `parent`: index 0 with the deposits, then
    /// one flashblock per group of transactions.
    fn publish_peer_block(&self, parent: B256, number: u64, groups: &[Vec<Bytes>]) {
        self.publish_peer_block_as(parent, number, groups, true);
    }

    /// [`Self::publish_peer_block`], signed with the set's secret or not.
    fn publish_peer_block_as(
        &self,
        parent: B256,
        number: u64,
        groups: &[Vec<Bytes>],
        signed: bool,
    ) {
        let publish = |fb: &OpFlashblockPayload| {
            if signed {
                self.peer.publish(fb)
            } else {
                self.peer.publish_unsigned(fb)
            }
        };
        let attrs = self.attributes(number);
        let id = PayloadId::new([number as u8; 8]);
        let mut fb = OpFlashblockPayload {
            payload_id: id,
            index: 0,
            base: Some(OpFlashblockPayloadBase {
                parent_hash: parent,
                block_number: number,
                ..Default::default()
            }),
            ..Default::default()
        };
        fb.diff.transactions = attrs.transactions.clone().unwrap();
        fb.metadata.block_number = number;
        publish(&fb);
        for (i, txs) in groups.iter().enumerate() {
            fb.index = i as u64 + 1;
            fb.base = None;
            fb.diff.transactions = txs.clone();
            publish(&fb);
        }
    }

    async fn accepted(&self, n: f64) {
        eventually(
            Duration::from_secs(10),
            "the peer's flashblocks are held",
            || {
                let v = metric(
                    &self.mux.metrics_text(),
                    r#"engine_mux_peer_flashblocks_total{outcome="accepted"}"#,
                );
                async move { v >= n }
            },
        )
        .await;
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

fn raw(tx: op_alloy_consensus::OpTxEnvelope) -> Bytes {
    raw_transaction(&tx)
}

fn hash(raw: &Bytes) -> B256 {
    alloy_primitives::keccak256(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_used_nonce_and_an_unexecutable_transaction_are_dropped_with_reasons_and_the_rest_carried()
 {
    let node = node().await;
    let (s1, s2) = (node.signers[0].clone(), node.signers[1].clone());
    // Block 1 uses s2's nonce 0 (sent to this node's pool).
    let used = node.transfer(&s2, 0, 1);
    let _: B256 = node
        .client
        .call("eth_sendRawTransaction", &[&used], Duration::from_secs(5))
        .await
        .unwrap();
    let genesis = node.local.engine.head().hash;
    let (p, txs, _) = op_node_slot(&node.client, &node.spec, genesis, &node.attributes(1))
        .await
        .unwrap();
    assert!(txs.contains(&used), "block 1 holds s2's nonce 0");

    // The dead peer preconfirmed for block 2 on p: s1 nonce 0, s2 nonce 0 again (another
    // transaction: its nonce was used in block 1), s1 nonce 1, and a transfer from an account
    // with no funds (the EL cannot execute it: refused, op-geth style, by the local EL).
    let t1 = node.transfer(&s1, 0, 10);
    let t2 = node.transfer(&s2, 0, 99);
    let t3 = node.transfer(&s1, 1, 11);
    let broke = PrivateKeySigner::random();
    let t4 = node.transfer(&broke, 0, 5);
    node.publish_peer_block(
        p,
        2,
        &[vec![t1.clone(), t2.clone()], vec![t3.clone(), t4.clone()]],
    );
    node.accepted(3.0).await;

    let attrs = node.attributes(2);
    let deposits = attrs.transactions.clone().unwrap();
    let (_, txs, _) = op_node_slot(&node.client, &node.spec, p, &attrs)
        .await
        .unwrap();
    assert_eq!(
        txs[..deposits.len() + 2],
        [deposits.clone(), vec![t1.clone(), t3.clone()]].concat()[..],
        "deposits, then the valid preconfirmed transactions in the peer's order"
    );
    assert!(!txs.contains(&t2) && !txs.contains(&t4));

    let report = node
        .mux
        .state()
        .failover
        .as_ref()
        .expect("failover on")
        .last_report()
        .expect("a carry-over happened");
    assert_eq!(report.parent, p);
    assert_eq!(
        report
            .plan
            .carried
            .iter()
            .map(|t| t.hash)
            .collect::<Vec<_>>(),
        vec![hash(&t1), hash(&t3)]
    );
    assert!(
        report
            .plan
            .dropped
            .contains(&(hash(&t2), DropReason::NonceUsed))
    );
    assert!(
        report
            .plan
            .dropped
            .contains(&(hash(&t4), DropReason::RefusedByEl))
    );
    assert_eq!(
        metric(&node.mux.metrics_text(), "engine_mux_failovers_total"),
        1.0
    );
    assert_eq!(
        metric(
            &node.mux.metrics_text(),
            "engine_mux_preconfirmed_carried_total"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &node.mux.metrics_text(),
            r#"engine_mux_preconfirmed_dropped_total{reason="nonce_used"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &node.mux.metrics_text(),
            r#"engine_mux_preconfirmed_dropped_total{reason="refused_by_el"}"#
        ),
        1.0
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_publishing_for_a_parent_this_node_does_not_have_never_changes_its_blocks() {
    let node = node().await;
    let s1 = node.signers[0].clone();
    let genesis = node.local.engine.head().hash;
    // The peer's block 1 builds on a parent this node never saw.
    let foreign = node.transfer(&s1, 0, 42);
    node.publish_peer_block(B256::repeat_byte(0xab), 1, &[vec![foreign.clone()]]);
    node.accepted(2.0).await;
    let attrs = node.attributes(1);
    let (_, txs, _) = op_node_slot(&node.client, &node.spec, genesis, &attrs)
        .await
        .unwrap();
    assert_eq!(
        txs,
        attrs.transactions.clone().unwrap(),
        "exactly op-node's attributes (empty pool): nothing of the peer's"
    );
    assert_eq!(
        metric(&node.mux.metrics_text(), "engine_mux_failovers_total"),
        0.0
    );
    assert!(
        node.mux
            .state()
            .failover
            .as_ref()
            .unwrap()
            .last_report()
            .is_none()
    );
    // Same height, now on this node's real parent: the peer's block on it is used (the control
    // that shows the stream was live and would have been carried had the parent matched).
    let p = node.local.engine.head().hash;
    node.publish_peer_block(p, 2, &[vec![foreign.clone()]]);
    node.accepted(4.0).await;
    let (_, txs, _) = op_node_slot(&node.client, &node.spec, p, &node.attributes(2))
        .await
        .unwrap();
    assert!(txs.contains(&foreign));
    node.stop().await;
}

/// Anyone who can reach, forge or intercept the peer's `ws://` stream but lacks the set's
/// secret: their frames (a well-formed peer block on this node's real parent, carrying a validly
/// signed transaction) are refused before parsing, counted, and never reach a block. The same
/// block signed with the secret is carried (the control: the stream is live and the block
/// would have been used).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsigned_peer_frames_are_refused_and_never_reach_a_block() {
    let node = node().await;
    let s1 = node.signers[0].clone();
    let parent = node.local.engine.head().hash;
    let forged = node.transfer(&s1, 0, 42);
    node.publish_peer_block_as(parent, 1, &[vec![forged.clone()]], false);
    eventually(Duration::from_secs(10), "unsigned frames refused", || {
        let v = metric(
            &node.mux.metrics_text(),
            r#"engine_mux_peer_flashblocks_total{outcome="unauthenticated"}"#,
        );
        async move { v >= 2.0 }
    })
    .await;
    assert_eq!(
        metric(
            &node.mux.metrics_text(),
            r#"engine_mux_peer_flashblocks_total{outcome="accepted"}"#
        ),
        0.0
    );
    let attrs = node.attributes(1);
    let (_, txs, _) = op_node_slot(&node.client, &node.spec, parent, &attrs)
        .await
        .unwrap();
    assert_eq!(
        txs,
        attrs.transactions.clone().unwrap(),
        "exactly op-node's attributes: nothing of the forged stream"
    );
    assert_eq!(
        metric(&node.mux.metrics_text(), "engine_mux_failovers_total"),
        0.0
    );

    let p = node.local.engine.head().hash;
    node.publish_peer_block(p, 2, &[vec![forged.clone()]]);
    node.accepted(2.0).await;
    let (_, txs, _) = op_node_slot(&node.client, &node.spec, p, &node.attributes(2))
        .await
        .unwrap();
    assert!(txs.contains(&forged), "signed, the same block is carried");
    node.stop().await;
}
