//! The well-known test-mnemonic dev accounts the genesis funds, as signers.

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::{MnemonicBuilder, PrivateKeySigner};
use op_alloy_consensus::OpTxEnvelope;

use crate::chain::state::StateSnapshot;

/// The public test mnemonic ("test test ... junk") every dev chain funds.
pub const TEST_MNEMONIC: &str = "test test test test test test test test test test test junk";
/// How many mnemonic indices are searched for funded accounts.
const SEARCHED_INDICES: u32 = 30;

/// Errors while deriving or using dev keys.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// Key derivation failed.
    #[error("deriving key {index}: {message}")]
    Derive {
        /// Mnemonic index.
        index: u32,
        /// Error text.
        message: String,
    },
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(#[from] alloy_signer::Error),
}

/// Derives the mnemonic accounts that hold a balance in `state` (usually the genesis state).
pub fn funded_dev_signers(state: &StateSnapshot) -> Result<Vec<PrivateKeySigner>, AccountsError> {
    let mut out = Vec::new();
    for index in 0..SEARCHED_INDICES {
        let signer = MnemonicBuilder::english()
            .phrase(TEST_MNEMONIC)
            .index(index)
            .and_then(|b| b.build())
            .map_err(|e| AccountsError::Derive {
                index,
                message: e.to_string(),
            })?;
        if !state.balance(&signer.address()).is_zero() {
            out.push(signer);
        }
    }
    Ok(out)
}

/// Signs an EIP-1559 value transfer.
#[allow(clippy::too_many_arguments)]
pub fn sign_transfer(
    signer: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    to: Address,
    value: U256,
    max_fee_per_gas: u128,
    max_priority_fee_per_gas: u128,
) -> Result<OpTxEnvelope, AccountsError> {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas,
        max_priority_fee_per_gas,
        to: TxKind::Call(to),
        value,
        access_list: Default::default(),
        input: Bytes::new(),
    };
    let signature = signer.sign_hash_sync(&tx.signature_hash())?;
    Ok(OpTxEnvelope::Eip1559(tx.into_signed(signature)))
}

/// Encodes a transaction for `eth_sendRawTransaction`.
pub fn raw_transaction(tx: &OpTxEnvelope) -> Bytes {
    tx.encoded_2718().into()
}
