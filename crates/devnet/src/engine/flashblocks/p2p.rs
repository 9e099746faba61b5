//! Builder side of flashblocks P2P authorization (rollup-boost's P2P mode): the builder accepts
//! `flashblocks_forkchoiceUpdatedV3` carrying an [`Authorization`], checks it against the
//! authorizer key it trusts and its own key, and publishes a payload's flashblocks only when
//! the FCU that started it was authorized. Refusals are counted by reason.

use std::sync::atomic::{AtomicU64, Ordering};

use alloy_rpc_types_engine::PayloadId;
use ed25519_dalek::VerifyingKey;
use engine_api::flashblocks_p2p::Authorization;

/// Why an authorization was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not signed by the trusted authorizer key (or tampered with).
    #[error("authorization not signed by the trusted authorizer")]
    BadSignature,
    /// Signed for another builder key.
    #[error("authorization names another builder key")]
    WrongBuilder,
    /// For another slot than the attributes' timestamp.
    #[error("authorization timestamp is not the attributes' timestamp")]
    StaleTimestamp,
    /// For another payload than the one this FCU starts.
    #[error("authorization is for another payload")]
    WrongPayload,
}

/// Counters of what the builder made of authorizations.
#[derive(Debug, Default)]
pub struct P2pStats {
    /// Builds started with a valid authorization.
    pub authorized: AtomicU64,
    /// Refused: bad signature.
    pub bad_signature: AtomicU64,
    /// Refused: another builder key.
    pub wrong_builder: AtomicU64,
    /// Refused: stale timestamp.
    pub stale_timestamp: AtomicU64,
    /// Refused: another payload.
    pub wrong_payload: AtomicU64,
    /// Builds started without an authorization (no flashblocks published for them).
    pub unauthorized_builds: AtomicU64,
}

impl P2pStats {
    /// Refusals of any kind.
    pub fn refused(&self) -> u64 {
        [
            &self.bad_signature,
            &self.wrong_builder,
            &self.stale_timestamp,
            &self.wrong_payload,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// The keys a P2P builder checks authorizations against.
#[derive(Debug)]
pub struct P2pAuth {
    /// The authorizer (sequencer) key it trusts.
    pub authorizer_vk: VerifyingKey,
    /// Its own verifying key.
    pub builder_vk: VerifyingKey,
    /// What it made of them.
    pub stats: P2pStats,
}

impl P2pAuth {
    /// A builder with key `builder_vk` trusting `authorizer_vk`.
    pub fn new(authorizer_vk: VerifyingKey, builder_vk: VerifyingKey) -> Self {
        Self {
            authorizer_vk,
            builder_vk,
            stats: P2pStats::default(),
        }
    }

    /// Checks `auth` for the build of `payload_id` at `timestamp`; counts the outcome.
    pub fn check(
        &self,
        auth: &Authorization,
        payload_id: PayloadId,
        timestamp: u64,
    ) -> Result<(), Refusal> {
        let outcome = if auth.verify(&self.authorizer_vk).is_err() {
            Err(Refusal::BadSignature)
        } else if auth.builder_vk != self.builder_vk {
            Err(Refusal::WrongBuilder)
        } else if auth.timestamp != timestamp {
            Err(Refusal::StaleTimestamp)
        } else if auth.payload_id != payload_id {
            Err(Refusal::WrongPayload)
        } else {
            Ok(())
        };
        let counter = match outcome {
            Ok(()) => &self.stats.authorized,
            Err(Refusal::BadSignature) => &self.stats.bad_signature,
            Err(Refusal::WrongBuilder) => &self.stats.wrong_builder,
            Err(Refusal::StaleTimestamp) => &self.stats.stale_timestamp,
            Err(Refusal::WrongPayload) => &self.stats.wrong_payload,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use engine_api::flashblocks_p2p::AuthorizerKey;

    use super::*;

    fn keys() -> (AuthorizerKey, VerifyingKey) {
        let authorizer = AuthorizerKey::from_bytes(&[0x11; 32]);
        let builder = AuthorizerKey::from_bytes(&[0x22; 32]).verifying_key();
        (authorizer, builder)
    }

    #[test]
    fn refuses_and_counts_each_bad_authorization() {
        let (authorizer, builder_vk) = keys();
        let auth = P2pAuth::new(authorizer.verifying_key(), builder_vk);
        let id = PayloadId::new([3; 8]);
        let good = Authorization::sign(id, 100, &authorizer, builder_vk);
        assert_eq!(auth.check(&good, id, 100), Ok(()));

        let impostor = AuthorizerKey::from_bytes(&[0x33; 32]);
        let forged = Authorization::sign(id, 100, &impostor, builder_vk);
        assert_eq!(auth.check(&forged, id, 100), Err(Refusal::BadSignature));
        let other_builder = AuthorizerKey::from_bytes(&[0x44; 32]).verifying_key();
        let elsewhere = Authorization::sign(id, 100, &authorizer, other_builder);
        assert_eq!(auth.check(&elsewhere, id, 100), Err(Refusal::WrongBuilder));
        let old = Authorization::sign(id, 99, &authorizer, builder_vk);
        assert_eq!(auth.check(&old, id, 100), Err(Refusal::StaleTimestamp));
        assert_eq!(
            auth.check(&good, PayloadId::new([4; 8]), 100),
            Err(Refusal::WrongPayload)
        );
        let s = &auth.stats;
        assert_eq!(s.authorized.load(Ordering::Relaxed), 1);
        assert_eq!(s.bad_signature.load(Ordering::Relaxed), 1);
        assert_eq!(s.wrong_builder.load(Ordering::Relaxed), 1);
        assert_eq!(s.stale_timestamp.load(Ordering::Relaxed), 1);
        assert_eq!(s.wrong_payload.load(Ordering::Relaxed), 1);
        assert_eq!(s.refused(), 4);
    }
}
