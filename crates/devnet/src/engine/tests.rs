//! Engine behaviour through its public methods: two engines (local and builder) on one genesis.

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{B256, U256};
use alloy_rpc_types_engine::{ForkchoiceState, PayloadStatusEnum};

use super::*;
use crate::{
    chain::{
        accounts::{funded_dev_signers, sign_transfer},
        attributes::{SequencerParams, sequencer_attributes},
        genesis::{ForkOverrides, default_genesis},
    },
    engine::faults::Fault,
};

fn engines() -> (Engine, Engine) {
    let g = default_genesis(1_000, ForkOverrides::default()).unwrap();
    (
        Engine::new(g.clone(), Role::Local),
        Engine::new(g, Role::Builder),
    )
}

fn fcs(hash: B256) -> ForkchoiceState {
    ForkchoiceState {
        head_block_hash: hash,
        safe_block_hash: hash,
        finalized_block_hash: hash,
    }
}

fn propose(engine: &Engine, number: u64) -> PayloadEnvelope {
    let head = engine.head();
    let attrs = sequencer_attributes(
        engine.spec(),
        &SequencerParams::default(),
        number,
        head.header.timestamp + 1,
    );
    let fcu = engine
        .forkchoice_updated(fcs(head.hash), Some(attrs))
        .unwrap();
    engine
        .get_payload(fcu.payload_id.unwrap(), EngineVersion::V4)
        .unwrap()
}

/// A 7-wei transfer between the first two dev accounts with `nonce`, signed and encoded.
fn transfer(engine: &Engine, nonce: u64) -> Vec<u8> {
    let signers = funded_dev_signers(&engine.head_state()).unwrap();
    sign_transfer(
        &signers[0],
        901,
        nonce,
        signers[1].address(),
        U256::from(7),
        1_000_000_000,
        1,
    )
    .unwrap()
    .encoded_2718()
}

#[test]
fn builder_block_is_valid_on_local_and_becomes_head() {
    let (local, builder) = engines();
    let signers = funded_dev_signers(&local.head_state()).unwrap();
    let raw = transfer(&local, 0);
    builder.submit_raw_transaction(&raw).unwrap();
    local.submit_raw_transaction(&raw).unwrap();
    let env = propose(&builder, 1);
    let data = execution_data_of(&env);
    let hash = data.payload.block_hash();
    let status = local.new_payload(data, EngineVersion::V4).unwrap();
    assert_eq!(status.status, PayloadStatusEnum::Valid);
    local.forkchoice_updated(fcs(hash), None).unwrap();
    assert_eq!(local.head().hash, hash);
    assert_eq!(local.head().transactions.len(), 2);
    assert_eq!(local.mempool_len(), 0, "included tx pruned from the pool");
    assert_eq!(local.head_state().nonce(&signers[0].address()), 1);
}

/// A hostile builder's trick: other contents under a block hash the engine already knows (it
/// imported the real block) or built itself. op-geth and reth recompute the hash from the
/// payload and refuse the mismatch; so does this engine, instead of answering VALID for the
/// known hash.
#[test]
fn known_hash_with_other_transactions_is_invalid() {
    let (local, builder) = engines();
    for nonce in 0..2 {
        builder
            .submit_raw_transaction(&transfer(&builder, nonce))
            .unwrap();
    }
    let data = execution_data_of(&propose(&builder, 1));
    let hash = data.payload.block_hash();
    assert_eq!(data.payload.as_v1().transactions.len(), 3);
    assert_eq!(
        local
            .new_payload(data.clone(), EngineVersion::V4)
            .unwrap()
            .status,
        PayloadStatusEnum::Valid
    );
    let mut tampered = data;
    tampered.payload.as_v1_mut().transactions.pop();
    for (engine, knows) in [(&local, "imported"), (&builder, "built")] {
        let status = engine
            .new_payload(tampered.clone(), EngineVersion::V4)
            .unwrap();
        match status.status {
            PayloadStatusEnum::Invalid { validation_error } => assert!(
                validation_error.starts_with("block hash mismatch"),
                "{knows}: {validation_error}"
            ),
            other => panic!("{knows}: expected INVALID, got {other:?}"),
        }
        assert_eq!(status.latest_valid_hash, None, "{knows}");
    }
    assert!(
        local.with_chain(|c| c.block(&hash).is_some()),
        "the real block stays"
    );
}

#[test]
fn invalid_fault_is_caught_by_reexecution() {
    let (local, builder) = engines();
    builder.faults().set(Fault::Invalid, true);
    let data = execution_data_of(&propose(&builder, 1));
    let status = local.new_payload(data, EngineVersion::V4).unwrap();
    match status.status {
        PayloadStatusEnum::Invalid { validation_error } => {
            assert!(
                validation_error.starts_with("state root mismatch"),
                "{validation_error}"
            )
        }
        other => panic!("expected INVALID, got {other:?}"),
    }
    assert_eq!(status.latest_valid_hash, Some(local.head().hash));
}

#[test]
fn unknown_parent_is_syncing_and_unknown_payload_errors() {
    let (local, builder) = engines();
    let first = execution_data_of(&propose(&builder, 1));
    let first_hash = first.payload.block_hash();
    builder.new_payload(first, EngineVersion::V4).unwrap();
    builder.forkchoice_updated(fcs(first_hash), None).unwrap();
    let second = execution_data_of(&propose(&builder, 2));
    assert_eq!(
        local.new_payload(second, EngineVersion::V4).unwrap().status,
        PayloadStatusEnum::Syncing
    );
    assert_eq!(
        local
            .get_payload(PayloadId::new([9; 8]), EngineVersion::V4)
            .unwrap_err(),
        EngineError::UnknownPayload
    );
    assert_eq!(
        local
            .forkchoice_updated(fcs(B256::repeat_byte(3)), None)
            .unwrap()
            .payload_status
            .status,
        PayloadStatusEnum::Syncing
    );
}

#[test]
fn v3_after_isthmus_is_unsupported_fork() {
    let (local, _) = engines();
    let head = local.head();
    let attrs = sequencer_attributes(
        local.spec(),
        &SequencerParams::default(),
        1,
        head.header.timestamp + 1,
    );
    let id = local
        .forkchoice_updated(fcs(head.hash), Some(attrs))
        .unwrap()
        .payload_id
        .unwrap();
    let err = local.get_payload(id, EngineVersion::V3).unwrap_err();
    assert!(matches!(err, EngineError::UnsupportedFork(_)));
    assert!(local.get_payload(id, EngineVersion::V4).is_ok());
}

#[test]
fn empty_fault_builds_deposit_only_blocks_and_bad_attributes_are_refused() {
    let (_, builder) = engines();
    let signers = funded_dev_signers(&builder.head_state()).unwrap();
    let tx = sign_transfer(
        &signers[0],
        901,
        0,
        signers[1].address(),
        U256::from(7),
        1_000_000_000,
        1,
    )
    .unwrap();
    builder.submit_raw_transaction(&tx.encoded_2718()).unwrap();
    builder.faults().set(Fault::Empty, true);
    match propose(&builder, 1) {
        PayloadEnvelope::V4(env) => {
            assert_eq!(
                env.execution_payload
                    .payload_inner
                    .payload_inner
                    .payload_inner
                    .transactions
                    .len(),
                1
            )
        }
        PayloadEnvelope::V3(_) => panic!("Isthmus payload expected"),
    }

    let head = builder.head();
    let mut attrs = sequencer_attributes(
        builder.spec(),
        &SequencerParams::default(),
        1,
        head.header.timestamp + 1,
    );
    attrs.payload_attributes.parent_beacon_block_root = None;
    assert!(matches!(
        builder.forkchoice_updated(fcs(head.hash), Some(attrs.clone())),
        Err(EngineError::InvalidPayloadAttributes(_))
    ));
    attrs.payload_attributes.parent_beacon_block_root = Some(B256::ZERO);
    attrs.payload_attributes.timestamp = head.header.timestamp;
    assert!(matches!(
        builder.forkchoice_updated(fcs(head.hash), Some(attrs)),
        Err(EngineError::InvalidPayloadAttributes(_))
    ));
}

/// op-geth (miner `generateWork`) refuses at forkchoiceUpdated, with -38003 naming the
/// transaction, attributes whose forced transaction cannot execute; a valid one starts the block.
#[test]
fn a_forced_transaction_that_cannot_execute_fails_the_fcu_like_op_geth() {
    let (local, _) = engines();
    let head = local.head();
    let mut attrs = sequencer_attributes(
        local.spec(),
        &SequencerParams::default(),
        1,
        head.header.timestamp + 1,
    );
    let deposits = attrs.transactions.clone().unwrap();
    // Nonce 3 on an account at nonce 0: cannot execute.
    let bad = transfer(&local, 3);
    attrs.transactions = Some([deposits.clone(), vec![bad.clone().into()]].concat());
    let err = local
        .forkchoice_updated(fcs(head.hash), Some(attrs.clone()))
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, EngineError::InvalidPayloadAttributes(_)),
        "{message}"
    );
    assert!(
        message.contains("failed to force-include tx")
            && message.contains(&alloy_primitives::keccak256(&bad).to_string()),
        "names the transaction: {message}"
    );
    let good = transfer(&local, 0);
    attrs.transactions = Some([deposits, vec![good.clone().into()]].concat());
    let fcu = local
        .forkchoice_updated(fcs(head.hash), Some(attrs))
        .unwrap();
    let env = local
        .get_payload(fcu.payload_id.unwrap(), EngineVersion::V4)
        .unwrap();
    let txs = execution_data_of(&env).payload.as_v1().transactions.clone();
    assert_eq!(txs.len(), 2, "deposit, then the forced transfer");
    assert_eq!(txs[1], alloy_primitives::Bytes::from(good));
}
