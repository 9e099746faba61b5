//! What the all-in-one devnet can be told: its config, flashblocks and flashblocks P2P keys.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    time::Duration,
};

use crate::engine::{faults::FaultWindow, flashblocks::p2p::P2pAuth};

/// Everything `devnet` (all components) can be told.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Genesis file (default: the shipped devnet genesis).
    pub genesis: Option<PathBuf>,
    /// Genesis timestamp (default: now).
    pub genesis_timestamp: Option<u64>,
    /// Isthmus (and Jovian) activate this many seconds after genesis (default: at genesis).
    pub isthmus_offset: Option<u64>,
    /// Slot length.
    pub block_time: Duration,
    /// Spammer rate (0 = no spammer).
    pub tx_rate: f64,
    /// Builder faults by height (each for one builder, or for every builder).
    pub builder_faults: Vec<FaultWindow>,
    /// Builder engines to start (named b1, b2, ...; at least 1).
    pub builders: usize,
    /// engine-mux's `--builder-policy` (`None`: engine-mux's default).
    pub builder_policy: Option<String>,
    /// How long before the slot ends the driver asks for the payload (`None`: a fifth of the
    /// block time; op-node itself seals 50 ms before the end).
    pub get_payload_lead: Option<Duration>,
    /// Stop the driver after this many blocks.
    pub max_blocks: Option<u64>,
    /// Extra engine-mux flags (e.g. `--builder-timeout 200`).
    pub mux_args: Vec<String>,
    /// Address everything binds to.
    pub host: IpAddr,
    /// engine-mux RPC port (0 = ephemeral).
    pub mux_port: u16,
    /// Flashblocks end to end (`None` = off): the builder streams them, engine-mux ingests,
    /// re-publishes and assembles blocks from them.
    pub flashblocks: Option<DevnetFlashblocks>,
    /// Blocks of history each engine keeps (`None`: the engine's default).
    pub history_blocks: Option<usize>,
    /// Flashblocks P2P authorization (`None` = off): the builder publishes a payload's
    /// flashblocks only when engine-mux's FCU authorized it (`--flashblocks-p2p` on
    /// engine-mux instead of `--flashblocks`). Needs `flashblocks` for the builder's publisher.
    pub flashblocks_p2p: Option<DevnetP2p>,
    /// The driver calls engine-mux through its typed in-process handle instead of JSON-RPC
    /// over HTTP (a node that links engine-mux); the spammer still uses the RPC port.
    pub embedded_driver: bool,
}

/// The keys of flashblocks P2P authorization in the all-in-one run (dev keys by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevnetP2p {
    /// The secret engine-mux signs authorizations with.
    pub authorizer_sk: [u8; 32],
    /// The secret whose public half the builder trusts (normally `authorizer_sk`).
    pub trusted_authorizer_sk: [u8; 32],
    /// The builder's own secret: it accepts authorizations for its public half.
    pub builder_sk: [u8; 32],
    /// The builder secret whose public half engine-mux authorizes (normally `builder_sk`).
    pub authorized_builder_sk: [u8; 32],
}

/// The devnet's authorizer secret (a dev key: never use it anywhere else).
pub const DEV_AUTHORIZER_SK: [u8; 32] = [0x11; 32];
/// The devnet builder's flashblocks P2P secret (a dev key).
pub const DEV_P2P_BUILDER_SK: [u8; 32] = [0x22; 32];

impl Default for DevnetP2p {
    fn default() -> Self {
        Self {
            authorizer_sk: DEV_AUTHORIZER_SK,
            trusted_authorizer_sk: DEV_AUTHORIZER_SK,
            builder_sk: DEV_P2P_BUILDER_SK,
            authorized_builder_sk: DEV_P2P_BUILDER_SK,
        }
    }
}

impl DevnetP2p {
    /// The builder's side: the keys it checks authorizations against.
    pub fn builder_auth(&self) -> P2pAuth {
        P2pAuth::new(
            public(&self.trusted_authorizer_sk),
            public(&self.builder_sk),
        )
    }

    /// engine-mux's side: the builder key it authorizes (`--flashblocks-builder-vk`).
    pub fn authorized_builder_vk(&self) -> ed25519_dalek::VerifyingKey {
        public(&self.authorized_builder_sk)
    }
}

fn public(secret: &[u8; 32]) -> ed25519_dalek::VerifyingKey {
    engine_api::flashblocks_p2p::AuthorizerKey::from_bytes(secret).verifying_key()
}

/// Flashblocks in the all-in-one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevnetFlashblocks {
    /// The builder's flashblocks WebSocket port (0 = ephemeral).
    pub builder_port: u16,
    /// Time between two flashblocks of one payload.
    pub interval: Duration,
    /// engine-mux's outbound flashblocks port, `--flashblocks-port` (0 = ephemeral).
    pub mux_port: u16,
    /// flashblocks-rpc in front of engine-mux's RPC port, subscribed to engine-mux's stream, on
    /// this port (0 = ephemeral; `None` = not started).
    pub rpc_port: Option<u16>,
}

impl Default for DevnetFlashblocks {
    fn default() -> Self {
        Self {
            builder_port: 0,
            interval: Duration::from_millis(200),
            mux_port: 1112,
            rpc_port: None,
        }
    }
}

impl DevnetFlashblocks {
    /// Flashblocks per payload at most: two slots' worth (getPayload seals the stream long
    /// before; the bound only matters for a payload nobody asks for).
    pub fn max_per_payload(&self, block_time: Duration) -> u64 {
        let per_slot = block_time.as_nanos() / self.interval.as_nanos().max(1);
        (per_slot * 2 + 1).clamp(2, 256) as u64
    }
}

impl Default for DevnetConfig {
    fn default() -> Self {
        Self {
            genesis: None,
            genesis_timestamp: None,
            isthmus_offset: None,
            block_time: Duration::from_secs(1),
            tx_rate: 10.0,
            builder_faults: Vec::new(),
            builders: 1,
            builder_policy: None,
            get_payload_lead: None,
            max_blocks: None,
            mux_args: Vec::new(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mux_port: 0,
            flashblocks: None,
            flashblocks_p2p: None,
            history_blocks: None,
            embedded_driver: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flashblocks_payload_bound() {
        let fb = DevnetFlashblocks {
            builder_port: 0,
            interval: Duration::from_millis(50),
            mux_port: 0,
            rpc_port: None,
        };
        assert_eq!(fb.max_per_payload(Duration::from_millis(250)), 11);
        assert_eq!(
            DevnetFlashblocks::default().max_per_payload(Duration::from_secs(1)),
            11
        );
    }
}
