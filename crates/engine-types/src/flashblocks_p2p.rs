//! Flashblocks P2P authorization, in rollup-boost's wire format (its `specs/flashblocks_p2p.md`
//! and the `Authorization` type of its types crate): per block, the sequencer's authorizer key
//! signs that one builder key may publish that payload's flashblocks.
//!
//! - Signed message: `blake3(payload_id (8 bytes) ‖ timestamp (u64, little-endian) ‖
//!   builder_vk (32 bytes))`; the ed25519 signature is over the 32-byte hash.
//! - JSON (the third param of `flashblocks_forkchoiceUpdatedV3`): `payload_id` as 0x-hex,
//!   `timestamp` as a number, `builder_vk` and `authorizer_sig` as the ed25519 crates' serde
//!   form (byte arrays).
//! - RLP (the P2P messages): a list of `payload_id` (8-byte string), `timestamp` (integer),
//!   `builder_vk` (32-byte string), `authorizer_sig` (64-byte string).

use alloy_primitives::hex;
use alloy_rlp::{Decodable, Encodable, Header};
use alloy_rpc_types_engine::PayloadId;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The builder's FCU carrying an authorization (forkchoice state, attributes, authorization).
pub const FLASHBLOCKS_FCU_METHOD: &str = "flashblocks_forkchoiceUpdatedV3";

/// Length of the signed message before hashing: payload id, timestamp, builder key.
const SIGNED_MESSAGE_LEN: usize = 8 + 8 + 32;

/// The sequencer's permission for `builder_vk` to publish the flashblocks of `payload_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// The payload whose flashblocks may be published.
    pub payload_id: PayloadId,
    /// The payload's timestamp (the attributes' `timestamp`).
    pub timestamp: u64,
    /// The builder key allowed to publish them.
    pub builder_vk: VerifyingKey,
    /// The authorizer's signature over [`signing_hash`].
    pub authorizer_sig: Signature,
}

/// Why an authorization does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    /// The signature is not the authorizer's over these fields.
    #[error("authorizer signature does not verify")]
    BadSignature,
}

/// The 32-byte hash the authorizer signs.
pub fn signing_hash(payload_id: PayloadId, timestamp: u64, builder_vk: &VerifyingKey) -> [u8; 32] {
    let mut msg = [0u8; SIGNED_MESSAGE_LEN];
    msg[..8].copy_from_slice(payload_id.0.as_slice());
    msg[8..16].copy_from_slice(&timestamp.to_le_bytes());
    msg[16..].copy_from_slice(builder_vk.as_bytes());
    *blake3::hash(&msg).as_bytes()
}

impl Authorization {
    /// Signs the authorization of `builder_vk` for `payload_id` at `timestamp`.
    pub fn sign(
        payload_id: PayloadId,
        timestamp: u64,
        authorizer: &AuthorizerKey,
        builder_vk: VerifyingKey,
    ) -> Self {
        let hash = signing_hash(payload_id, timestamp, &builder_vk);
        Self {
            payload_id,
            timestamp,
            builder_vk,
            authorizer_sig: authorizer.0.sign(&hash),
        }
    }

    /// Checks the signature against the authorizer's verifying key.
    pub fn verify(&self, authorizer_vk: &VerifyingKey) -> Result<(), AuthorizationError> {
        let hash = signing_hash(self.payload_id, self.timestamp, &self.builder_vk);
        authorizer_vk
            .verify(&hash, &self.authorizer_sig)
            .map_err(|_| AuthorizationError::BadSignature)
    }

    fn fields_len(&self) -> usize {
        self.payload_id.0.length()
            + self.timestamp.length()
            + self.builder_vk.as_bytes().length()
            + self.authorizer_sig.to_bytes().length()
    }
}

impl Encodable for Authorization {
    fn encode(&self, out: &mut dyn alloy_rlp::BufMut) {
        Header {
            list: true,
            payload_length: self.fields_len(),
        }
        .encode(out);
        self.payload_id.0.encode(out);
        self.timestamp.encode(out);
        self.builder_vk.as_bytes().encode(out);
        self.authorizer_sig.to_bytes().encode(out);
    }

    fn length(&self) -> usize {
        let fields = self.fields_len();
        Header {
            list: true,
            payload_length: fields,
        }
        .length()
            + fields
    }
}

impl Decodable for Authorization {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let header = Header::decode(buf)?;
        if !header.list {
            return Err(alloy_rlp::Error::UnexpectedString);
        }
        if buf.len() < header.payload_length {
            return Err(alloy_rlp::Error::InputTooShort);
        }
        let (mut body, rest) = buf.split_at(header.payload_length);
        let payload_id = PayloadId(alloy_primitives::B64::decode(&mut body)?);
        let timestamp = u64::decode(&mut body)?;
        let vk = <[u8; 32]>::decode(&mut body)?;
        let builder_vk = VerifyingKey::from_bytes(&vk)
            .map_err(|_| alloy_rlp::Error::Custom("builder_vk is not an ed25519 key"))?;
        let sig = <[u8; 64]>::decode(&mut body)?;
        if !body.is_empty() {
            return Err(alloy_rlp::Error::ListLengthMismatch {
                expected: header.payload_length,
                got: header.payload_length - body.len(),
            });
        }
        *buf = rest;
        Ok(Self {
            payload_id,
            timestamp,
            builder_vk,
            authorizer_sig: Signature::from_bytes(&sig),
        })
    }
}

/// Why a key given as hex is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not hex.
    #[error("not hex")]
    NotHex,
    /// Not 32 bytes.
    #[error("expected 32 bytes (64 hex characters), got {0} bytes")]
    Length(usize),
    /// 32 bytes that are not an ed25519 public key.
    #[error("not a valid ed25519 public key")]
    NotAPoint,
}

fn hex32(s: &str) -> Result<[u8; 32], KeyError> {
    let s = s.trim();
    let bytes = hex::decode(s.strip_prefix("0x").unwrap_or(s)).map_err(|_| KeyError::NotHex)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length(bytes.len()))
}

/// Parses an ed25519 verifying key from 32 bytes of hex (`0x` optional).
pub fn parse_verifying_key(s: &str) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_bytes(&hex32(s)?).map_err(|_| KeyError::NotAPoint)
}

/// The authorizer's ed25519 signing key. Its `Debug` shows only the public half.
#[derive(Clone)]
pub struct AuthorizerKey(SigningKey);

impl AuthorizerKey {
    /// Parses the 32-byte secret from hex (`0x` optional).
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        Ok(Self(SigningKey::from_bytes(&hex32(s)?)))
    }

    /// The key from its 32 secret bytes.
    pub fn from_bytes(secret: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(secret))
    }

    /// The public half, which verifiers are configured with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }
}

impl std::fmt::Debug for AuthorizerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AuthorizerKey(public: 0x{})",
            hex::encode(self.verifying_key().as_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032 section 7.1, TEST 1 (the empty message).
    const RFC8032_SK: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PK: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC8032_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn builder_vk() -> VerifyingKey {
        SigningKey::from_bytes(&[2u8; 32]).verifying_key()
    }

    fn fixed() -> (AuthorizerKey, Authorization) {
        let authorizer = AuthorizerKey::from_hex(RFC8032_SK).unwrap();
        let id = PayloadId::new([0x03, 1, 2, 3, 4, 5, 6, 7]);
        let auth = Authorization::sign(id, 1_700_000_123, &authorizer, builder_vk());
        (authorizer, auth)
    }

    #[test]
    fn keys_parse_as_the_published_ed25519_vector_says() {
        let key = AuthorizerKey::from_hex(&format!("0x{RFC8032_SK}")).unwrap();
        assert_eq!(hex::encode(key.verifying_key().as_bytes()), RFC8032_PK);
        assert_eq!(
            parse_verifying_key(RFC8032_PK).unwrap(),
            key.verifying_key()
        );
        let sig = key.0.sign(b"");
        assert_eq!(hex::encode(sig.to_bytes()), RFC8032_SIG);
        assert_eq!(AuthorizerKey::from_hex("zz").unwrap_err(), KeyError::NotHex);
        assert_eq!(
            AuthorizerKey::from_hex("00").unwrap_err(),
            KeyError::Length(1)
        );
        assert!(
            !format!("{key:?}").contains(RFC8032_SK),
            "Debug never shows the secret"
        );
    }

    #[test]
    fn blake3_is_the_published_one() {
        // BLAKE3's published hash of the empty input.
        assert_eq!(
            hex::encode(blake3::hash(b"").as_bytes()),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    /// The signing hash, signature and RLP of a fixed authorization, computed a second way:
    /// the message bytes written out by hand, the hash and signature from the crates directly,
    /// the RLP bytes assembled from the RLP rules.
    #[test]
    fn known_answer_signing_hash_signature_and_rlp() {
        let (authorizer, auth) = fixed();
        let mut msg = vec![0x03, 1, 2, 3, 4, 5, 6, 7];
        msg.extend_from_slice(&[0x7b, 0xf1, 0x53, 0x65, 0, 0, 0, 0]); // 1_700_000_123 LE
        msg.extend_from_slice(builder_vk().as_bytes());
        let hash = blake3::hash(&msg);
        assert_eq!(
            signing_hash(auth.payload_id, auth.timestamp, &auth.builder_vk),
            *hash.as_bytes()
        );
        let sk = SigningKey::from_bytes(&hex32(RFC8032_SK).unwrap());
        let sig = sk.sign(hash.as_bytes());
        assert_eq!(auth.authorizer_sig, sig, "ed25519 is deterministic");
        auth.verify(&authorizer.verifying_key()).unwrap();

        let mut rlp = vec![0xf8, 8 + 1 + 4 + 1 + 32 + 1 + 64 + 2];
        rlp.push(0x88);
        rlp.extend_from_slice(&msg[..8]);
        rlp.extend_from_slice(&[0x84, 0x65, 0x53, 0xf1, 0x7b]); // 1_700_000_123 big-endian
        rlp.push(0xa0);
        rlp.extend_from_slice(builder_vk().as_bytes());
        rlp.extend_from_slice(&[0xb8, 0x40]);
        rlp.extend_from_slice(&sig.to_bytes());
        assert_eq!(alloy_rlp::encode(auth), rlp);
        assert_eq!(auth.length(), rlp.len());
        let mut slice = rlp.as_slice();
        assert_eq!(Authorization::decode(&mut slice).unwrap(), auth);
        assert!(slice.is_empty());
    }

    #[test]
    fn json_is_the_shape_rollup_boost_sends() {
        let (_, auth) = fixed();
        let v = serde_json::to_value(auth).unwrap();
        assert_eq!(v["payload_id"], "0x0301020304050607");
        assert_eq!(v["timestamp"], 1_700_000_123u64);
        assert_eq!(v["builder_vk"].as_array().unwrap().len(), 32);
        assert_eq!(v["authorizer_sig"].as_array().unwrap().len(), 64);
        assert_eq!(v["builder_vk"][0], builder_vk().as_bytes()[0]);
        let back: Authorization = serde_json::from_value(v).unwrap();
        assert_eq!(back, auth);
    }

    #[test]
    fn a_tampered_field_fails_verification() {
        let (authorizer, auth) = fixed();
        let vk = authorizer.verifying_key();
        let mut t = auth;
        t.payload_id = PayloadId::new([0; 8]);
        assert_eq!(t.verify(&vk), Err(AuthorizationError::BadSignature));
        let mut t = auth;
        t.timestamp += 1;
        assert!(t.verify(&vk).is_err());
        let mut t = auth;
        t.builder_vk = SigningKey::from_bytes(&[3u8; 32]).verifying_key();
        assert!(t.verify(&vk).is_err());
        let mut t = auth;
        let mut sig = t.authorizer_sig.to_bytes();
        sig[0] ^= 1;
        t.authorizer_sig = Signature::from_bytes(&sig);
        assert!(t.verify(&vk).is_err());
        let other = AuthorizerKey::from_bytes(&[9u8; 32]).verifying_key();
        assert!(auth.verify(&other).is_err(), "another authorizer");
    }

    #[test]
    fn truncated_or_padded_rlp_is_an_error_not_a_panic() {
        let (_, auth) = fixed();
        let rlp = alloy_rlp::encode(auth);
        for n in 0..rlp.len() {
            assert!(Authorization::decode(&mut &rlp[..n]).is_err(), "{n}");
        }
        let mut long = rlp.clone();
        long[1] += 1;
        long.push(0x80);
        assert!(Authorization::decode(&mut long.as_slice()).is_err());
    }
}
