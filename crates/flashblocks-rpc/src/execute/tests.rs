//! Tests of the pending execution: answers of op-geth and the devnet engine parse, balance
//! corrections, requests shaped by op-reth's rules, probe blocks.

use super::{answer::*, fees::*, request::*, *};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::U64;
use rpc_objects::fees::L1_FEE_VAULT;
use serde_json::json;

/// op-geth's call result (`simCallResult`: logs as full `types.Log`, error with code 3
/// and revert data) and the devnet engine's (logs as address, topics, data) both parse.
#[test]
fn call_results_of_op_geth_and_the_devnet_engine_parse() {
    let geth = json!({
        "returnData": "0x",
        "logs": [{
            "address": Address::repeat_byte(0xaa),
            "topics": [B256::repeat_byte(1)],
            "data": "0x01",
            "blockNumber": "0xb",
            "transactionHash": B256::repeat_byte(2),
            "transactionIndex": "0x0",
            "blockHash": B256::repeat_byte(3),
            "logIndex": "0x0",
            "removed": false
        }],
        "gasUsed": "0x5208",
        "status": "0x1"
    });
    let r: SimCallResult = serde_json::from_value(geth).unwrap();
    assert!(r.status);
    assert_eq!(r.gas_used, 21_000);
    assert_eq!(r.logs[0].address, Address::repeat_byte(0xaa));
    assert_eq!(r.logs[0].data.data, Bytes::from_static(&[1]));
    let reverted = json!({
        "returnData": "0x2a", "logs": [], "gasUsed": "0x6000", "status": "0x0",
        "error": {"code": 3, "message": "execution reverted", "data": "0x2a"}
    });
    let r: SimCallResult = serde_json::from_value(reverted).unwrap();
    assert!(!r.status);
    assert_eq!(r.error.unwrap().code, 3);
    let devnet = json!({"returnData": "0x", "gasUsed": "0x1", "status": "0x1",
        "logs": [{"address": Address::ZERO, "topics": [], "data": "0x", "removed": false}]});
    assert_eq!(
        serde_json::from_value::<SimCallResult>(devnet)
            .unwrap()
            .logs
            .len(),
        1
    );
}

/// A block with an Isthmus L1-attributes deposit (L1 fee scalars and an operator fee of
/// scalar 2_000_000 and constant 1000) and one EIP-1559 call of `gas_limit` that used
/// `gas_used`, its receipts sent by the stream.
fn block_with_operator_fee(
    signer: &alloy_signer_local::PrivateKeySigner,
    gas_limit: u64,
    gas_used: u64,
) -> PendingBlock {
    use alloy_consensus::{Eip658Value, Receipt, SignableTransaction, TxEip1559};
    use alloy_primitives::{TxKind, keccak256};
    use alloy_rpc_types_engine::PayloadId;
    use alloy_signer::SignerSync;
    use op_alloy_consensus::{OpDepositReceipt, OpReceipt, OpTxEnvelope, TxDeposit};
    use op_alloy_rpc_types_engine::{
        OpFlashblockPayload, OpFlashblockPayloadBase, OpFlashblockPayloadDelta,
        OpFlashblockPayloadMetadata,
    };
    use rpc_objects::fees::{L1_BLOCK_PREDEPLOY, L1_INFO_DEPOSITOR};

    let mut calldata = vec![0u8; 176];
    calldata[..4].copy_from_slice(&keccak256("setL1BlockValuesIsthmus()")[..4]);
    calldata[4..8].copy_from_slice(&1368u32.to_be_bytes());
    calldata[8..12].copy_from_slice(&810_949u32.to_be_bytes());
    calldata[36..68].copy_from_slice(&U256::from(1_000_000_000u64).to_be_bytes::<32>());
    calldata[68..100].copy_from_slice(&U256::from(1u64).to_be_bytes::<32>());
    calldata[164..168].copy_from_slice(&2_000_000u32.to_be_bytes());
    calldata[168..176].copy_from_slice(&1000u64.to_be_bytes());
    let deposit = OpTxEnvelope::Deposit(alloy_consensus::Sealed::new(TxDeposit {
        source_hash: B256::repeat_byte(1),
        from: L1_INFO_DEPOSITOR,
        to: TxKind::Call(L1_BLOCK_PREDEPLOY),
        mint: 0,
        value: U256::ZERO,
        gas_limit: 1_000_000,
        is_system_transaction: false,
        input: calldata.into(),
    }));
    let tx = TxEip1559 {
        chain_id: 901,
        nonce: 0,
        gas_limit,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000,
        to: TxKind::Call(Address::repeat_byte(0xc0)),
        value: U256::ZERO,
        access_list: Default::default(),
        input: Bytes::from_static(&[1, 2, 3, 4]),
    };
    let signature = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
    let call = OpTxEnvelope::Eip1559(tx.into_signed(signature));
    let deposit_gas = 40_000;
    let receipt = |cumulative| Receipt {
        status: Eip658Value::Eip658(true),
        cumulative_gas_used: cumulative,
        logs: Vec::new(),
    };
    let receipts = [
        (
            deposit.tx_hash(),
            OpReceipt::Deposit(OpDepositReceipt {
                inner: receipt(deposit_gas),
                deposit_nonce: Some(0),
                deposit_receipt_version: Some(1),
            }),
        ),
        (
            call.tx_hash(),
            OpReceipt::Eip1559(receipt(deposit_gas + gas_used)),
        ),
    ];
    let fb = OpFlashblockPayload {
        payload_id: PayloadId::new([1; 8]),
        index: 0,
        base: Some(OpFlashblockPayloadBase {
            parent_hash: B256::repeat_byte(0xaa),
            block_number: 11,
            gas_limit: 30_000_000,
            base_fee_per_gas: U256::from(7),
            ..Default::default()
        }),
        diff: OpFlashblockPayloadDelta {
            gas_used: deposit_gas + gas_used,
            block_hash: B256::repeat_byte(0xbb),
            transactions: [deposit, call]
                .iter()
                .map(|t| t.encoded_2718().into())
                .collect(),
            ..Default::default()
        },
        metadata: OpFlashblockPayloadMetadata {
            block_number: 11,
            new_account_balances: Default::default(),
            receipts: receipts.into_iter().collect(),
        },
    };
    PendingBlock::start(&fb, 8).unwrap()
}

/// op-geth and op-revm simulate a call without charging its L1 data fee or operator fee,
/// yet refund the unused operator fee `(gas limit - gas used) * scalar / 1e6`: the sender
/// is corrected by its L1 fee plus the operator fee at its gas limit (not at the gas it
/// used); the operator fee vault gets the fee at the gas used unless the upstream credited
/// it already (op-geth); the base fee vault loses what op-revm credited it for deposits.
#[test]
fn simulated_balances_are_corrected_by_l1_fee_and_operator_fee_at_the_gas_limit() {
    let signer = alloy_signer_local::PrivateKeySigner::random();
    let (limit, used) = (100_000u64, 30_000u64);
    let block = block_with_operator_fee(&signer, limit, used);
    let fees = block.txs[1].fees.expect("fees of the call");
    assert!(fees.l1_fee > U256::ZERO, "the call pays an L1 data fee");
    // Isthmus: gas * scalar / 1e6 + constant.
    let operator = |gas: u64| U256::from(gas * 2 + 1000);
    assert_eq!(fees.operator_fee, operator(used));
    let blocks = [block];
    let simulated = U256::from(10u64.pow(18));
    for family in [Family::Geth, Family::Revm] {
        let corrected = |a| corrected_balance(&blocks, a, simulated, family);
        assert_eq!(
            corrected(signer.address()),
            simulated - fees.l1_fee - operator(limit)
        );
        assert_eq!(corrected(L1_FEE_VAULT), simulated + fees.l1_fee);
        assert_eq!(corrected(Address::repeat_byte(0xc0)), simulated);
    }
    let geth = |a| corrected_balance(&blocks, a, simulated, Family::Geth);
    let revm = |a| corrected_balance(&blocks, a, simulated, Family::Revm);
    // op-revm credits no operator fee vault, op-geth did already.
    assert_eq!(revm(OPERATOR_FEE_VAULT), simulated + operator(used));
    assert_eq!(geth(OPERATOR_FEE_VAULT), simulated);
    // op-revm credited the base fee vault for the deposit run as an unpriced call (40000
    // gas at base fee 7); op-geth did not.
    assert_eq!(revm(BASE_FEE_VAULT), simulated - U256::from(7 * 40_000));
    assert_eq!(geth(BASE_FEE_VAULT), simulated);
}

/// What op-reth refused in the recording cannot be asked any more: the L1-attributes
/// deposit (and any deposit) states zero fees, so the empty depositor owes nothing under
/// the pending block's base fee (-38014); a block whose transactions' gas limits add up to
/// more than its gas limit, or a caller's call stating the whole block gas limit after the
/// pending transactions, gets a gas limit override that holds them (-38015), and the
/// caller's gas is capped so that override stays within op-reth's RPC gas cap (-38026).
#[test]
fn requests_fit_op_reths_fee_and_gas_rules() {
    let signer = alloy_signer_local::PrivateKeySigner::random();
    // Deposit 1M + call 29.5M: more than the 30M block.
    let block = block_with_operator_fee(&signer, 29_500_000, 30_000);
    let limit = block.header.gas_limit;
    let blocks = [block];
    let (request, n) = simulate_request(B256::ZERO, &blocks, None, Vec::new());
    assert_eq!(n, 1);
    let sim = &request[0]["blockStateCalls"][0];
    let deposit = &sim["calls"][0];
    assert_eq!(deposit["maxFeePerGas"], json!("0x0"));
    assert_eq!(deposit["maxPriorityFeePerGas"], json!("0x0"));
    assert_eq!(sim["blockOverrides"]["baseFeePerGas"], json!(U64::from(7)));
    let stated = stated_gas(sim);
    assert_eq!(stated, 30_500_000);
    assert_eq!(sim["blockOverrides"]["gasLimit"], json!(U64::from(stated)));

    // A block whose limits fit keeps its gas limit; a caller's call at the cap fits too.
    let blocks = [block_with_operator_fee(&signer, 100_000, 30_000)];
    let allowance = tail_gas_allowance(&blocks);
    assert_eq!(allowance, RPC_GAS_CAP - 1_100_000);
    let (request, _) = simulate_request(B256::ZERO, &blocks, None, Vec::new());
    assert_eq!(
        request[0]["blockStateCalls"][0]["blockOverrides"]["gasLimit"],
        json!(U64::from(limit))
    );
    let tail = json!({"to": Address::ZERO, "gas": U64::from(allowance)});
    let (request, _) = simulate_request(B256::ZERO, &blocks, Some(tail), Vec::new());
    let sim = &request[0]["blockStateCalls"][0];
    assert_eq!(sim["calls"].as_array().unwrap().len(), 3);
    let raised = sim["blockOverrides"]["gasLimit"]
        .as_str()
        .unwrap()
        .parse::<U64>()
        .unwrap()
        .to::<u64>();
    assert_eq!(raised, stated_gas(sim));
    assert!(raised <= RPC_GAS_CAP.max(limit));
}

/// The probe blocks: balance and code readers at their probe addresses in one block,
/// storage reads (the account's code replaced) in a block after it.
#[test]
fn probes_put_storage_reads_in_a_block_of_their_own() {
    let a = Address::repeat_byte(0xa);
    let blocks = probe_blocks(&[
        Read::Balance(a),
        Read::Storage(a, B256::ZERO),
        Read::Code(a),
    ]);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0]["calls"].as_array().unwrap().len(), 2);
    assert_eq!(blocks[0]["calls"][0]["to"], json!(BALANCE_PROBE));
    assert_eq!(blocks[0]["calls"][1]["to"], json!(CODE_PROBE));
    assert_eq!(blocks[1]["calls"][0]["to"], json!(a));
    assert_eq!(
        blocks[1]["stateOverrides"][a.to_string()]["code"],
        json!(Bytes::from_static(&STORAGE_READER))
    );
    assert!(probe_blocks(&[]).is_empty());
}
