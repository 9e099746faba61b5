//! A flashblocks stream scripted by the test, and crafted flashblocks to put on it.

use alloy_consensus::{Eip658Value, Receipt};
use alloy_primitives::{Address, B256, Bloom, Bytes, U256};
use alloy_rpc_types_engine::PayloadId;
use devnet::app::unix_now;
use futures::SinkExt;
use op_alloy_consensus::OpReceipt;
use op_alloy_rpc_types_engine::{
    OpFlashblockPayload, OpFlashblockPayloadBase, OpFlashblockPayloadDelta,
    OpFlashblockPayloadMetadata,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::tungstenite::Message;

/// Serves whatever frames the test pushes to every connection it accepts (one at a time).
pub async fn scripted_server() -> (String, mpsc::Sender<Message>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        while let Some(m) = rx.recv().await {
            if ws.send(m).await.is_err() {
                return;
            }
        }
    });
    (url, tx)
}

/// One crafted flashblock carrying `txs` (raw, hash) that each use 21000 gas.
pub fn flashblock(
    payload: u8,
    index: u64,
    number: u64,
    parent: B256,
    prior_txs: u64,
    txs: &[(Bytes, B256)],
    hash: B256,
) -> Message {
    let base = (index == 0).then(|| OpFlashblockPayloadBase {
        parent_beacon_block_root: B256::ZERO,
        parent_hash: parent,
        fee_recipient: Address::repeat_byte(0xfe),
        prev_randao: B256::ZERO,
        block_number: number,
        gas_limit: 30_000_000,
        timestamp: unix_now(),
        extra_data: Bytes::new(),
        base_fee_per_gas: U256::from(1_000_000_000u64),
    });
    let receipts = txs
        .iter()
        .enumerate()
        .map(|(i, (_, h))| {
            let receipt = Receipt {
                status: Eip658Value::Eip658(true),
                cumulative_gas_used: 21_000 * (prior_txs + i as u64 + 1),
                logs: Vec::new(),
            };
            (*h, OpReceipt::Eip1559(receipt))
        })
        .collect();
    let fb = OpFlashblockPayload {
        payload_id: PayloadId::new([payload; 8]),
        index,
        base,
        diff: OpFlashblockPayloadDelta {
            state_root: B256::repeat_byte(1),
            receipts_root: B256::repeat_byte(2),
            logs_bloom: Bloom::ZERO,
            gas_used: 21_000 * (prior_txs + txs.len() as u64),
            block_hash: hash,
            transactions: txs.iter().map(|(raw, _)| raw.clone()).collect(),
            withdrawals: Vec::new(),
            withdrawals_root: B256::ZERO,
            blob_gas_used: None,
        },
        metadata: OpFlashblockPayloadMetadata {
            block_number: number,
            new_account_balances: Default::default(),
            receipts,
        },
    };
    Message::Text(serde_json::to_string(&fb).unwrap().into())
}
