//! Builder-mode flashblocks: while a payload is being built, the engine builds a flashblock
//! every interval (index 0 with the base, then each one extending the previous block with what
//! the pool has), and [`publisher`] sends them over WebSocket as op-rbuilder does on :1111.
//! getPayload seals the payload and answers the block of the last flashblock sent.

pub mod p2p;
pub mod publisher;

use alloy_primitives::{B256, U256};
use alloy_rpc_types_engine::PayloadId;
use op_alloy_rpc_types_engine::OpFlashblockPayload;

pub use crate::engine::flashblocks::publisher::{
    FlashblocksConfig, FlashblocksPublisher, RunningPublisher, start_publisher,
};
use crate::{
    chain::genesis::ChainSpec,
    engine::{Engine, api::EngineError, build::BuiltBlock, jobs::PayloadJob},
};

impl Engine {
    /// Builds the next flashblock of payload `id` (index 0: the attribute transactions only;
    /// then each one adds what the pool has on top of the previous block). `None` once
    /// getPayload sealed the payload or the id is unknown.
    ///
    /// `publish` runs while the engine is still locked, so a getPayload either seals the
    /// payload before this flashblock exists or after it was handed to the subscribers: the
    /// sealed block is always exactly the last flashblock published.
    pub fn next_flashblock(
        &self,
        id: PayloadId,
        expected_index: u64,
        publish: impl FnOnce(&OpFlashblockPayload),
    ) -> Result<Option<OpFlashblockPayload>, EngineError> {
        let mut inner = self.lock();
        if self.faulty() && self.faults.is_down() {
            // A dead builder publishes nothing.
            return Ok(None);
        }
        let Some(job) = inner.jobs.get(&id).cloned() else {
            return Ok(None);
        };
        let (parent, attributes, previous, index) = match job {
            PayloadJob::Built(_) => return Ok(None),
            PayloadJob::Pending { parent, attributes } => (parent, attributes, None, 0),
            PayloadJob::Streaming {
                parent,
                attributes,
                latest,
                next_index,
            } => (parent, attributes, Some(latest), next_index),
        };
        if index != expected_index {
            // Another stream (a repeated FCU with the same attributes) owns this payload.
            return Ok(None);
        }
        let prefix = previous.as_ref().map(|p| p.block.transactions.clone());
        // Flashblock 0 carries only what the sequencer forced (deposits): an empty prefix.
        let built = self.build_locked(
            &mut inner,
            parent,
            &attributes,
            Some(prefix.clone().unwrap_or_default()),
        )?;
        let sent = prefix.as_ref().map_or(0, Vec::len);
        let mut flashblock = flashblocks_payload(&self.spec, id, index, &built, sent);
        if self.faulty() && self.faults.is_zero_state_root() {
            let mut header = built.block.header.clone();
            header.state_root = B256::ZERO;
            flashblock.diff.state_root = B256::ZERO;
            flashblock.diff.block_hash = header.hash_slow();
        }
        inner.jobs.insert(
            id,
            PayloadJob::Streaming {
                parent,
                attributes,
                // With its state: getPayload makes it the built block whose newPayload (op-node's,
                // mirrored) then skips re-execution; the job keeps it stateless from then on.
                latest: built,
                next_index: index + 1,
            },
        );
        self.produced
            .flashblock(id, index, flashblock.diff.block_hash);
        publish(&flashblock);
        if self.faulty() {
            // Under the lock, so getPayload either sealed before this flashblock or sees `down`.
            self.faults.trip_after_flashblock(id, index);
        }
        drop(inner);
        Ok(Some(flashblock))
    }
}

/// The flashblock of `built` for payload `id`: the base on index 0, and the transactions
/// after the first `sent` ones (those earlier flashblocks already carried).
fn flashblocks_payload(
    spec: &ChainSpec,
    id: PayloadId,
    index: u64,
    built: &BuiltBlock,
    sent: usize,
) -> OpFlashblockPayload {
    use alloy_eips::eip2718::Encodable2718;
    use op_alloy_rpc_types_engine::{
        OpFlashblockPayloadBase, OpFlashblockPayloadDelta, OpFlashblockPayloadMetadata,
    };
    let block = &built.block;
    let header = &block.header;
    let base = (index == 0).then(|| OpFlashblockPayloadBase {
        parent_beacon_block_root: header.parent_beacon_block_root.unwrap_or_default(),
        parent_hash: header.parent_hash,
        fee_recipient: header.beneficiary,
        prev_randao: header.mix_hash,
        block_number: header.number,
        gas_limit: header.gas_limit,
        timestamp: header.timestamp,
        extra_data: header.extra_data.clone(),
        base_fee_per_gas: U256::from(header.base_fee_per_gas.unwrap_or_default()),
    });
    let new_txs = block.transactions.iter().zip(&block.receipts).skip(sent);
    let receipts = new_txs
        .clone()
        .map(|(tx, receipt)| (tx.tx_hash(), receipt.clone().into()))
        .collect();
    OpFlashblockPayload {
        payload_id: id,
        index,
        base,
        diff: OpFlashblockPayloadDelta {
            state_root: header.state_root,
            receipts_root: header.receipts_root,
            logs_bloom: header.logs_bloom,
            gas_used: header.gas_used,
            block_hash: block.hash,
            transactions: new_txs
                .map(|(tx, _)| tx.inner().encoded_2718().into())
                .collect(),
            withdrawals: Vec::new(),
            // Zero marks a pre-Isthmus (V3) flashblock to assemblers.
            withdrawals_root: if spec.is_isthmus(header.timestamp) {
                header.withdrawals_root.unwrap_or_default()
            } else {
                B256::ZERO
            },
            blob_gas_used: header.blob_gas_used,
        },
        metadata: OpFlashblockPayloadMetadata {
            block_number: header.number,
            new_account_balances: Default::default(),
            receipts,
        },
    }
}
