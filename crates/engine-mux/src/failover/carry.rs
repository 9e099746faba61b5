//! Which of a peer's preconfirmed transactions can start the block op-node asked for, and op-node's
//! forkchoiceUpdated rewritten to force them: the attributes' own transactions (deposits) first,
//! then the carried ones in the peer's order. `noTxPool` stays as op-node set it.
//!
//! A carried transaction must still be valid on the parent: each sender's transactions must
//! continue exactly from the sender's nonce at the parent (read from the local EL at the parent's
//! hash). One whose nonce was used elsewhere is dropped with that reason, and so is every later
//! one of a sender whose sequence broke; the rest are carried.

use std::collections::HashMap;

use alloy_primitives::{Address, B256, Bytes, U64};
use futures::StreamExt;
use serde_json::{Value, value::RawValue};

use super::held::{HeldTx, PeerBlock};
use crate::local::LocalEl;

/// Nonce lookups in flight at once.
const NONCE_LOOKUP_CONCURRENCY: usize = 16;

/// Why a preconfirmed transaction was not carried over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Its sender's nonce at the parent is already past it (used by another transaction).
    NonceUsed,
    /// An earlier transaction of its sender is missing, so it cannot execute.
    NonceGap,
    /// The sender's nonce at the parent could not be read from the local EL in time.
    NonceUnknown,
    /// It does not decode or its signature does not recover.
    Undecodable,
    /// The local EL refused the attributes because of it.
    RefusedByEl,
}

impl DropReason {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonceUsed => "nonce_used",
            Self::NonceGap => "nonce_gap",
            Self::NonceUnknown => "nonce_unknown",
            Self::Undecodable => "undecodable",
            Self::RefusedByEl => "refused_by_el",
        }
    }
}

/// The outcome of one carry-over: what starts the block, what was dropped and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarryPlan {
    /// The peer block the transactions come from.
    pub from: PeerBlock,
    /// Transactions carried, in order.
    pub carried: Vec<HeldTx>,
    /// Transactions dropped, with the reason.
    pub dropped: Vec<(B256, DropReason)>,
}

/// Keeps the transactions whose nonces continue each sender's nonce at the parent
/// (`nonces[sender]`, `None` when unknown).
pub(crate) fn filter_by_nonce(
    txs: &[HeldTx],
    nonces: &HashMap<Address, Option<u64>>,
) -> (Vec<HeldTx>, Vec<(B256, DropReason)>) {
    let mut next: HashMap<Address, Option<u64>> = nonces.clone();
    let mut broken: HashMap<Address, bool> = HashMap::new();
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for tx in txs {
        let Some((sender, nonce)) = tx.sender else {
            dropped.push((tx.hash, DropReason::Undecodable));
            continue;
        };
        let Some(Some(expected)) = next.get(&sender).copied() else {
            dropped.push((tx.hash, DropReason::NonceUnknown));
            continue;
        };
        if broken.get(&sender).copied().unwrap_or_default() {
            dropped.push((tx.hash, DropReason::NonceGap));
        } else if nonce < expected {
            dropped.push((tx.hash, DropReason::NonceUsed));
        } else if nonce > expected {
            broken.insert(sender, true);
            dropped.push((tx.hash, DropReason::NonceGap));
        } else {
            next.insert(sender, Some(expected + 1));
            kept.push(tx.clone());
        }
    }
    (kept, dropped)
}

/// Drops the transaction the EL named as the one it could not include (and its sender's later
/// ones); `false` when no carried transaction is named in `message`.
pub(crate) fn drop_named(plan: &mut CarryPlan, message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    let Some(i) = plan
        .carried
        .iter()
        .position(|t| message.contains(&t.hash.to_string()))
    else {
        return false;
    };
    let named = plan.carried.remove(i);
    plan.dropped.push((named.hash, DropReason::RefusedByEl));
    if let Some((sender, _)) = named.sender {
        let (later, keep): (Vec<_>, Vec<_>) = plan
            .carried
            .drain(..)
            .enumerate()
            .partition(|(j, t)| *j >= i && t.sender.is_some_and(|(s, _)| s == sender));
        plan.carried = keep.into_iter().map(|(_, t)| t).collect();
        plan.dropped.extend(
            later
                .into_iter()
                .map(|(_, t)| (t.hash, DropReason::NonceGap)),
        );
    }
    true
}

/// Reads each sender's nonce at `parent` from the local EL (concurrently, each within `timeout`)
/// and keeps what continues them.
pub(crate) async fn plan(
    local: &LocalEl,
    from: PeerBlock,
    parent: B256,
    timeout: std::time::Duration,
) -> CarryPlan {
    let mut senders: Vec<Address> = from
        .transactions
        .iter()
        .filter_map(|t| t.sender.map(|(s, _)| s))
        .collect();
    senders.sort_unstable();
    senders.dedup();
    let at = serde_json::json!({ "blockHash": parent });
    let nonces: HashMap<Address, Option<u64>> = futures::stream::iter(senders)
        .map(|sender| {
            let at = at.clone();
            async move {
                let n = local
                    .call::<U64>("eth_getTransactionCount", &(sender, at), timeout)
                    .await;
                if let Err(e) = &n {
                    tracing::warn!(%sender, error = %e, "failover: cannot read a sender's nonce at the parent");
                }
                (sender, n.ok().map(|n| n.to::<u64>()))
            }
        })
        .buffer_unordered(NONCE_LOOKUP_CONCURRENCY)
        .collect()
        .await;
    let (carried, dropped) = filter_by_nonce(&from.transactions, &nonces);
    CarryPlan {
        from,
        carried,
        dropped,
    }
}

/// op-node's forkchoiceUpdated request `body` with `carried` appended to its attributes'
/// transactions: the new params and the new body (everything else byte-identical in meaning:
/// same id, method, forkchoice state and attribute fields). `None` when the body is not a
/// single forkchoiceUpdated with attributes.
pub(crate) fn rewrite(body: &[u8], carried: &[Bytes]) -> Option<(Box<RawValue>, bytes::Bytes)> {
    let mut request: Value = serde_json::from_slice(body).ok()?;
    let attrs = request
        .get_mut("params")?
        .as_array_mut()?
        .get_mut(1)?
        .as_object_mut()?;
    let txs = attrs
        .entry("transactions")
        .or_insert_with(|| Value::Array(Vec::new()));
    if txs.is_null() {
        *txs = Value::Array(Vec::new());
    }
    let txs = txs.as_array_mut()?;
    txs.extend(carried.iter().map(|raw| Value::String(raw.to_string())));
    let params = serde_json::value::to_raw_value(request.get("params")?).ok()?;
    let body = serde_json::to_vec(&request).ok()?;
    Some((params, body.into()))
}

#[cfg(test)]
mod tests {
    use alloy_rpc_types_engine::ForkchoiceState;
    use op_alloy_rpc_types_engine::OpPayloadAttributes;

    use super::*;

    fn tx(sender: u8, nonce: u64) -> HeldTx {
        HeldTx {
            raw: Bytes::from(vec![0x02, sender, nonce as u8]),
            hash: B256::repeat_byte(sender.wrapping_mul(16).wrapping_add(nonce as u8)),
            sender: Some((Address::repeat_byte(sender), nonce)),
        }
    }

    #[test]
    fn a_used_nonce_is_dropped_and_the_rest_carried() {
        // Sender 1 at nonce 5 on the parent: its preconfirmed nonce 4 was used elsewhere.
        let txs = vec![tx(1, 4), tx(2, 0), tx(1, 5), tx(2, 1), tx(1, 6)];
        let nonces = HashMap::from([
            (Address::repeat_byte(1), Some(5)),
            (Address::repeat_byte(2), Some(0)),
        ]);
        let (kept, dropped) = filter_by_nonce(&txs, &nonces);
        assert_eq!(kept, vec![tx(2, 0), tx(1, 5), tx(2, 1), tx(1, 6)]);
        assert_eq!(dropped, vec![(tx(1, 4).hash, DropReason::NonceUsed)]);
    }

    #[test]
    fn a_gap_drops_the_senders_later_transactions_and_unknown_senders_are_dropped() {
        let txs = vec![tx(1, 7), tx(1, 8), tx(3, 0), tx(2, 0)];
        let nonces = HashMap::from([
            (Address::repeat_byte(1), Some(5)),
            (Address::repeat_byte(2), Some(0)),
            (Address::repeat_byte(3), None),
        ]);
        let (kept, dropped) = filter_by_nonce(&txs, &nonces);
        assert_eq!(kept, vec![tx(2, 0)]);
        assert_eq!(
            dropped,
            vec![
                (tx(1, 7).hash, DropReason::NonceGap),
                (tx(1, 8).hash, DropReason::NonceGap),
                (tx(3, 0).hash, DropReason::NonceUnknown),
            ]
        );
    }

    #[test]
    fn the_transaction_the_el_names_goes_with_its_senders_later_ones() {
        let from = PeerBlock {
            peer: 0,
            payload_id: Default::default(),
            parent_hash: B256::ZERO,
            block_number: 1,
            flashblocks: 1,
            transactions: vec![],
        };
        let mut plan = CarryPlan {
            from,
            carried: vec![tx(1, 0), tx(2, 0), tx(1, 1), tx(2, 1)],
            dropped: vec![],
        };
        // op-geth's message: "failed to force-include tx: 0x… type: 2 sender: 0x… nonce: 0, err: …"
        let message = format!(
            "Invalid payload attributes: failed to force-include tx: {} type: 2",
            tx(1, 0).hash
        );
        assert!(drop_named(&mut plan, &message));
        assert_eq!(plan.carried, vec![tx(2, 0), tx(2, 1)]);
        assert_eq!(
            plan.dropped,
            vec![
                (tx(1, 0).hash, DropReason::RefusedByEl),
                (tx(1, 1).hash, DropReason::NonceGap)
            ]
        );
        assert!(!drop_named(&mut plan, "nonce too low"), "nothing named");
    }

    #[test]
    fn the_rewrite_appends_after_the_deposits_and_keeps_everything_else() {
        let body = br#"{"jsonrpc":"2.0","id":42,"method":"engine_forkchoiceUpdatedV3","params":[{"headBlockHash":"0x0101010101010101010101010101010101010101010101010101010101010101","safeBlockHash":"0x0101010101010101010101010101010101010101010101010101010101010101","finalizedBlockHash":"0x0101010101010101010101010101010101010101010101010101010101010101"},{"timestamp":"0x10","prevRandao":"0x0202020202020202020202020202020202020202020202020202020202020202","suggestedFeeRecipient":"0x4200000000000000000000000000000000000011","withdrawals":[],"parentBeaconBlockRoot":"0x0303030303030303030303030303030303030303030303030303030303030303","transactions":["0x7e01"],"noTxPool":false,"gasLimit":"0x1c9c380","eip1559Params":"0x0000003200000006","minBaseFee":1}]}"#;
        let (params, new_body) = rewrite(
            body,
            &[Bytes::from_static(&[2, 1]), Bytes::from_static(&[2, 2])],
        )
        .unwrap();
        let (state, attrs): (ForkchoiceState, OpPayloadAttributes) =
            serde_json::from_str(params.get()).unwrap();
        let (old_state, old_attrs): (ForkchoiceState, OpPayloadAttributes) =
            serde_json::from_value(
                serde_json::from_slice::<Value>(body).unwrap()["params"].clone(),
            )
            .unwrap();
        assert_eq!(state, old_state);
        assert_eq!(
            attrs.transactions.as_deref().unwrap(),
            &[
                Bytes::from_static(&[0x7e, 1]),
                Bytes::from_static(&[2, 1]),
                Bytes::from_static(&[2, 2])
            ],
            "deposits first, then the carried transactions in order"
        );
        assert_eq!(attrs.no_tx_pool, Some(false), "noTxPool as op-node set it");
        let mut expected = old_attrs;
        expected.transactions = attrs.transactions.clone();
        assert_eq!(attrs, expected, "every other attribute unchanged");
        let v: Value = serde_json::from_slice(&new_body).unwrap();
        assert_eq!(v["id"], 42);
        assert_eq!(v["method"], "engine_forkchoiceUpdatedV3");
        assert_eq!(
            v["params"],
            serde_json::from_str::<Value>(params.get()).unwrap()
        );
        assert!(
            rewrite(br#"{"params":[{}]}"#, &[]).is_none(),
            "no attributes"
        );
        assert!(rewrite(b"not json", &[]).is_none());
    }
}
