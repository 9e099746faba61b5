//! Loading an op-geth / op-reth genesis file into a chain spec, a genesis header and a state.

use std::path::Path;

use alloy_consensus::{EMPTY_OMMER_ROOT_HASH, EMPTY_ROOT_HASH, Header};
use alloy_eips::{eip1559::BaseFeeParams, eip7685::EMPTY_REQUESTS_HASH};
use alloy_genesis::Genesis;
use alloy_op_hardforks::{ForkCondition, OpChainHardforks, OpHardfork};
use alloy_primitives::{B256, U256};
use revm::{bytecode::Bytecode, state::AccountInfo};
use serde_json::Value;

use crate::chain::state::StateSnapshot;

/// The default genesis shipped with the crate (chain id 901, every fork through Jovian at 0).
pub const DEFAULT_GENESIS_JSON: &str = include_str!("../../genesis/op-devnet-genesis.json");

/// Errors while reading or interpreting a genesis file.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The file could not be read.
    #[error("reading genesis file {path}: {source}")]
    Read {
        /// Path that failed.
        path: String,
        /// Underlying IO error.
        source: std::io::Error,
    },
    /// The JSON is malformed or does not match the genesis format.
    #[error("parsing genesis JSON: {0}")]
    Parse(#[from] serde_json::Error),
    /// A fork time in `config` is not a number.
    #[error("genesis config field {field} is not an unsigned integer")]
    BadForkTime {
        /// The offending config key.
        field: &'static str,
    },
}

/// Fork activation overrides applied on top of the genesis file's config.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForkOverrides {
    /// Move Isthmus (and Prague) to this timestamp.
    pub isthmus_time: Option<u64>,
    /// Move Jovian to this timestamp.
    pub jovian_time: Option<u64>,
}

/// What the engine needs to know about the chain: id, forks and fee parameters.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// OP fork activations (Ethereum forks derive from them).
    pub hardforks: OpChainHardforks,
    /// Canyon-era EIP-1559 parameters, used when `eip1559Params` are zero.
    pub base_fee_params: BaseFeeParams,
    /// Isthmus activation timestamp (`u64::MAX` = never).
    pub isthmus_time: u64,
    /// Jovian activation timestamp (`u64::MAX` = never).
    pub jovian_time: u64,
    /// Holocene activation timestamp (`u64::MAX` = never).
    pub holocene_time: u64,
}

impl ChainSpec {
    /// Whether Isthmus rules (engine V4, withdrawalsRoot, requestsHash) apply at `timestamp`.
    pub fn is_isthmus(&self, timestamp: u64) -> bool {
        timestamp >= self.isthmus_time
    }

    /// Whether Jovian rules (minBaseFee, DA footprint) apply at `timestamp`.
    pub fn is_jovian(&self, timestamp: u64) -> bool {
        timestamp >= self.jovian_time
    }

    /// Whether Holocene rules (`eip1559Params` in extraData) apply at `timestamp`.
    pub fn is_holocene(&self, timestamp: u64) -> bool {
        timestamp >= self.holocene_time
    }
}

/// A loaded genesis: the chain spec, the genesis header and the genesis state.
#[derive(Debug, Clone)]
pub struct LoadedGenesis {
    /// Chain parameters.
    pub spec: ChainSpec,
    /// The genesis block header (state root computed from the alloc).
    pub header: Header,
    /// The genesis state.
    pub state: StateSnapshot,
}

/// Reads a genesis file from disk; see [`load_genesis_str`].
pub fn load_genesis_file(
    path: &Path,
    timestamp: u64,
    overrides: ForkOverrides,
) -> Result<LoadedGenesis, GenesisError> {
    let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_genesis_str(&text, timestamp, overrides)
}

/// The genesis JSON a chain actually starts from: `timestamp` filled in when empty (the shipped
/// devnet genesis leaves it blank on purpose), fork overrides written into `config` (Prague moves
/// with Isthmus, as OP requires), and `extraData` in the format of the genesis block's fork.
/// Writing this out lets another client (op-reth, op-geth) load exactly the same chain.
pub fn effective_genesis_json(
    json: &str,
    timestamp: u64,
    overrides: ForkOverrides,
) -> Result<Value, GenesisError> {
    let mut raw: Value = serde_json::from_str(json)?;
    let needs_timestamp = match raw.get("timestamp") {
        None => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Null) => true,
        Some(_) => false,
    };
    if needs_timestamp && let Some(obj) = raw.as_object_mut() {
        obj.insert("timestamp".into(), Value::String(format!("{timestamp:#x}")));
    }
    let config = raw.get("config").cloned().unwrap_or(Value::Null);
    let chain_id = config
        .get("chainId")
        .and_then(Value::as_u64)
        .unwrap_or_default();
    let spec = chain_spec_from_config(&config, chain_id, overrides)?;
    if let Some(cfg) = raw.get_mut("config").and_then(Value::as_object_mut) {
        for (key, time) in [
            ("isthmusTime", spec.isthmus_time),
            ("pragueTime", spec.isthmus_time),
            ("jovianTime", spec.jovian_time),
        ] {
            if time == u64::MAX {
                cfg.remove(key);
            } else {
                cfg.insert(key.into(), Value::from(time));
            }
        }
    }
    let genesis_ts = raw
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok())
        .unwrap_or(timestamp);
    let extra = raw
        .get("extraData")
        .and_then(Value::as_str)
        .and_then(|x| hex::decode(x.trim_start_matches("0x")).ok())
        .unwrap_or_default();
    let fitted = fit_extra_data(&spec, genesis_ts, extra.into());
    if let Some(obj) = raw.as_object_mut() {
        obj.insert(
            "extraData".into(),
            Value::String(format!("0x{}", hex::encode(&fitted))),
        );
    }
    Ok(raw)
}

/// Parses genesis JSON (see [`effective_genesis_json`] for what is filled in or overridden).
pub fn load_genesis_str(
    json: &str,
    timestamp: u64,
    overrides: ForkOverrides,
) -> Result<LoadedGenesis, GenesisError> {
    let raw = effective_genesis_json(json, timestamp, overrides)?;
    let config = raw.get("config").cloned().unwrap_or(Value::Null);
    let genesis: Genesis = serde_json::from_value(raw)?;
    let spec = chain_spec_from_config(&config, genesis.config.chain_id, ForkOverrides::default())?;
    let state = StateSnapshot::from_alloc(genesis.alloc.iter().map(|(address, account)| {
        let code = account.code.clone().filter(|c| !c.is_empty());
        let bytecode = code.map(Bytecode::new_raw);
        let info = AccountInfo {
            balance: account.balance,
            nonce: account.nonce.unwrap_or_default(),
            code_hash: bytecode
                .as_ref()
                .map_or(revm::primitives::KECCAK_EMPTY, |b| b.hash_slow()),
            code: bytecode,
            ..Default::default()
        };
        let storage = account
            .storage
            .iter()
            .flatten()
            .map(|(k, v)| (U256::from_be_bytes(k.0), U256::from_be_bytes(v.0)))
            .collect::<Vec<_>>();
        (*address, info, storage)
    }));
    let header = genesis_header(&genesis, &spec, &state);
    Ok(LoadedGenesis {
        spec,
        header,
        state,
    })
}

/// The shipped genesis carries Jovian-format extraData; when a fork override makes the genesis a
/// Holocene/Isthmus block, its extraData must be in that fork's format (the base fee of block 1
/// is derived from it), so the EIP-1559 parameters are re-encoded.
fn fit_extra_data(
    spec: &ChainSpec,
    timestamp: u64,
    extra: alloy_primitives::Bytes,
) -> alloy_primitives::Bytes {
    let jovian_format = extra.len() == 17 && extra[0] == 1;
    let holocene_format = extra.len() == 9 && extra[0] == 0;
    if spec.is_jovian(timestamp) && holocene_format {
        let mut out = extra.to_vec();
        out[0] = 1;
        out.extend_from_slice(&0u64.to_be_bytes());
        out.into()
    } else if !spec.is_jovian(timestamp) && spec.is_holocene(timestamp) && jovian_format {
        let mut out = extra[..9].to_vec();
        out[0] = 0;
        out.into()
    } else {
        extra
    }
}

fn fork_time(config: &Value, field: &'static str) -> Result<Option<u64>, GenesisError> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or(GenesisError::BadForkTime { field }),
    }
}

fn chain_spec_from_config(
    config: &Value,
    chain_id: u64,
    overrides: ForkOverrides,
) -> Result<ChainSpec, GenesisError> {
    let at = |t: Option<u64>| t.map_or(ForkCondition::Never, ForkCondition::Timestamp);
    let regolith = fork_time(config, "regolithTime")?;
    let canyon = fork_time(config, "canyonTime")?;
    let ecotone = fork_time(config, "ecotoneTime")?;
    let fjord = fork_time(config, "fjordTime")?;
    let granite = fork_time(config, "graniteTime")?;
    let holocene = fork_time(config, "holoceneTime")?;
    let isthmus = overrides.isthmus_time.or(fork_time(config, "isthmusTime")?);
    // Jovian cannot precede Isthmus: moving Isthmus later drags Jovian with it.
    let jovian = overrides
        .jovian_time
        .or(fork_time(config, "jovianTime")?)
        .map(|j| isthmus.map_or(j, |i| j.max(i)));
    let hardforks = OpChainHardforks::new([
        (OpHardfork::Bedrock, ForkCondition::Block(0)),
        (OpHardfork::Regolith, at(regolith)),
        (OpHardfork::Canyon, at(canyon)),
        (OpHardfork::Ecotone, at(ecotone)),
        (OpHardfork::Fjord, at(fjord)),
        (OpHardfork::Granite, at(granite)),
        (OpHardfork::Holocene, at(holocene)),
        (OpHardfork::Isthmus, at(isthmus)),
        (OpHardfork::Jovian, at(jovian)),
    ]);
    let optimism = config.get("optimism");
    let param = |key: &str, default: u64| {
        optimism
            .and_then(|o| o.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(default)
    };
    let base_fee_params = BaseFeeParams::new(
        u128::from(param("eip1559DenominatorCanyon", 250)),
        u128::from(param("eip1559Elasticity", 6)),
    );
    Ok(ChainSpec {
        chain_id,
        hardforks,
        base_fee_params,
        isthmus_time: isthmus.unwrap_or(u64::MAX),
        jovian_time: jovian.unwrap_or(u64::MAX),
        holocene_time: holocene.unwrap_or(u64::MAX),
    })
}

/// The genesis header as op-reth derives it from the same file (post-merge, Cancun fields,
/// Isthmus withdrawalsRoot/requestsHash when active at genesis).
fn genesis_header(genesis: &Genesis, spec: &ChainSpec, state: &StateSnapshot) -> Header {
    let ts = genesis.timestamp;
    let isthmus = spec.is_isthmus(ts);
    let base_fee = genesis.base_fee_per_gas.map_or(1_000_000_000, |b| b as u64);
    Header {
        parent_hash: genesis.parent_hash.unwrap_or_default(),
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: genesis.coinbase,
        state_root: state.state_root(),
        transactions_root: EMPTY_ROOT_HASH,
        receipts_root: EMPTY_ROOT_HASH,
        logs_bloom: Default::default(),
        difficulty: genesis.difficulty,
        number: genesis.number.unwrap_or_default(),
        gas_limit: genesis.gas_limit,
        gas_used: 0,
        timestamp: ts,
        extra_data: genesis.extra_data.clone(),
        mix_hash: genesis.mix_hash,
        nonce: genesis.nonce.into(),
        base_fee_per_gas: Some(base_fee),
        withdrawals_root: Some(if isthmus {
            state.message_passer_storage_root()
        } else {
            EMPTY_ROOT_HASH
        }),
        blob_gas_used: Some(genesis.blob_gas_used.unwrap_or_default()),
        excess_blob_gas: Some(genesis.excess_blob_gas.unwrap_or_default()),
        parent_beacon_block_root: Some(B256::ZERO),
        requests_hash: isthmus.then_some(EMPTY_REQUESTS_HASH),
        ..Default::default()
    }
}

/// Convenience: the default genesis with its timestamp set to `timestamp`.
pub fn default_genesis(
    timestamp: u64,
    overrides: ForkOverrides,
) -> Result<LoadedGenesis, GenesisError> {
    load_genesis_str(DEFAULT_GENESIS_JSON, timestamp, overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_genesis_fills_timestamp_and_activates_jovian() {
        let g = default_genesis(1_700_000_000, ForkOverrides::default()).unwrap();
        assert_eq!(g.spec.chain_id, 901);
        assert_eq!(g.header.timestamp, 1_700_000_000);
        assert!(g.spec.is_jovian(1_700_000_000));
        assert!(g.spec.is_isthmus(0));
        assert_eq!(g.header.requests_hash, Some(EMPTY_REQUESTS_HASH));
        assert_ne!(g.header.state_root, EMPTY_ROOT_HASH);
    }

    #[test]
    fn isthmus_override_moves_jovian_too() {
        let g = default_genesis(
            100,
            ForkOverrides {
                isthmus_time: Some(200),
                jovian_time: None,
            },
        )
        .unwrap();
        assert!(!g.spec.is_isthmus(150));
        assert!(!g.spec.is_jovian(150));
        assert!(g.spec.is_jovian(200));
        assert_eq!(g.header.requests_hash, None);
        // Genesis is now a Holocene block: 9-byte extraData with the same 1559 parameters.
        assert_eq!(g.header.extra_data.as_ref(), &[0, 0, 0, 0, 50, 0, 0, 0, 2]);
    }

    #[test]
    fn effective_json_reloads_to_the_same_genesis_hash() {
        let overrides = ForkOverrides {
            isthmus_time: Some(500),
            jovian_time: None,
        };
        let loaded = load_genesis_str(DEFAULT_GENESIS_JSON, 400, overrides).unwrap();
        let written = effective_genesis_json(DEFAULT_GENESIS_JSON, 400, overrides).unwrap();
        assert_eq!(written["config"]["pragueTime"], 500);
        assert_eq!(written["timestamp"], "0x190");
        let reloaded =
            load_genesis_str(&written.to_string(), 999, ForkOverrides::default()).unwrap();
        assert_eq!(reloaded.header.hash_slow(), loaded.header.hash_slow());
        assert_eq!(reloaded.spec.isthmus_time, 500);
    }
}
