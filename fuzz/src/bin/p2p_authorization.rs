//! The flashblocks P2P authorization (engine_api::flashblocks_p2p): its RLP encoding, as
//! rollup-boost's P2P messages carry it, and its JSON form in flashblocks forkchoice params.
//! Properties: decoding consumes a canonical encoding (re-encoding what was decoded gives the
//! bytes consumed, and `length` agrees); verification never panics and, for the fixed
//! authorizer key, holds only for an authorization that key signed.

use alloy_rlp::{Decodable, Encodable};
use engine_api::flashblocks_p2p::{Authorization, AuthorizerKey};

/// The authorizer key the seeds are signed with (`fuzz-seeds` uses the same bytes).
const AUTHORIZER: [u8; 32] = [7; 32];

fn main() {
    let authorizer = AuthorizerKey::from_bytes(&AUTHORIZER);
    let vk = authorizer.verifying_key();
    afl::fuzz!(|data: &[u8]| {
        let (mode, rest) = engine_mux_fuzz::split_first(data);
        let auth = if mode & 1 == 0 {
            let mut buf = rest;
            let Ok(auth) = Authorization::decode(&mut buf) else {
                return;
            };
            let consumed = &rest[..rest.len() - buf.len()];
            let mut out = Vec::new();
            auth.encode(&mut out);
            assert_eq!(out, consumed, "decoded from a non-canonical encoding");
            assert_eq!(auth.length(), out.len());
            auth
        } else {
            let Ok(auth) = serde_json::from_slice::<Authorization>(rest) else {
                return;
            };
            let text = serde_json::to_vec(&auth).expect("serializes");
            assert_eq!(
                serde_json::from_slice::<Authorization>(&text).unwrap(),
                auth
            );
            auth
        };
        if auth.verify(&vk).is_ok() {
            // Only the authorizer's own signature verifies: re-signing gives the same bytes
            // (ed25519 is deterministic).
            let resigned = Authorization::sign(
                auth.payload_id,
                auth.timestamp,
                &authorizer,
                auth.builder_vk,
            );
            assert_eq!(
                resigned, auth,
                "an authorization verified that the key did not sign"
            );
        }
    });
}
