//! Peer flashblocks that prove where they come from. What a peer preconfirmed is forced into the
//! next leader's block, so a frame is accepted only when it carries a MAC made with the secret
//! the high-availability set shares (`--flashblocks-peer-secret[-path]`): anyone who can reach,
//! forge or intercept a `ws://` stream without that secret can put nothing in a block.
//!
//! The serving engine-mux answers subscribers on [`PEER_PATH`] of its `--flashblocks-port` with
//! binary messages `tag (32 bytes) ‖ frame`, the tag being BLAKE3 in keyed mode over the frame
//! (the flashblock JSON as every other subscriber gets it as text). Other paths get the usual
//! unsigned text frames, so rollup-boost's subscribers see no change.

use std::fmt;

use engine_api::JwtSecret;

/// The path of the signed peer stream on the flashblocks port.
pub(crate) const PEER_PATH: &str = "/peer";

/// Length of the tag that precedes each signed frame.
const TAG_LEN: usize = blake3::OUT_LEN;

/// The set's shared secret (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct PeerKey([u8; 32]);

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerKey(<redacted>)")
    }
}

/// Why a peer message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignedFrameError {
    /// A text frame, or one too short to carry a tag: not from a peer that signs.
    #[error(
        "unsigned frame (the peer does not sign with a shared secret, or is not an engine-mux peer stream)"
    )]
    Unsigned,
    /// The tag does not match: another secret, or a forged or altered frame.
    #[error("frame tag does not verify (another secret, or a forged or altered frame)")]
    BadTag,
}

impl PeerKey {
    /// The key of a 32-byte secret (read like a JWT secret: 64 hex digits).
    pub fn new(secret: &JwtSecret) -> Self {
        let mut key = [0u8; 32];
        // A JwtSecret is always 32 bytes.
        key.copy_from_slice(&secret.as_bytes()[..32]);
        Self(key)
    }

    /// `tag ‖ frame`: what a peer subscriber receives for `frame`.
    pub fn sign(&self, frame: &[u8]) -> Vec<u8> {
        let tag = blake3::keyed_hash(&self.0, frame);
        let mut out = Vec::with_capacity(TAG_LEN + frame.len());
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(frame);
        out
    }

    /// The frame inside a signed message, if its tag verifies (compared in constant time).
    pub fn open<'a>(&self, message: &'a [u8]) -> Result<&'a [u8], SignedFrameError> {
        if message.len() <= TAG_LEN {
            return Err(SignedFrameError::Unsigned);
        }
        let (tag, frame) = message.split_at(TAG_LEN);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| SignedFrameError::Unsigned)?;
        // `blake3::Hash` compares in constant time.
        if blake3::keyed_hash(&self.0, frame) == blake3::Hash::from_bytes(tag) {
            Ok(frame)
        } else {
            Err(SignedFrameError::BadTag)
        }
    }
}

/// The URL a follower asks for: the peer's signed stream at [`PEER_PATH`] when the configured
/// URL names no path of its own (a URL with a path is used as given).
pub(crate) fn peer_stream_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.find('/') {
        None => format!("{scheme}://{rest}{PEER_PATH}"),
        Some(i) if &rest[i..] == "/" => format!("{scheme}://{}{PEER_PATH}", &rest[..i]),
        Some(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PeerKey {
        PeerKey([b; 32])
    }

    #[test]
    fn signed_frames_open_only_with_the_same_secret_and_unaltered() {
        let frame = br#"{"payload_id":"0x0300000000000001","index":0}"#;
        let msg = key(1).sign(frame);
        assert_eq!(key(1).open(&msg), Ok(&frame[..]));
        assert_eq!(key(2).open(&msg), Err(SignedFrameError::BadTag));
        let mut altered = msg.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key(1).open(&altered), Err(SignedFrameError::BadTag));
        assert_eq!(key(1).open(frame), Err(SignedFrameError::BadTag));
        assert_eq!(
            key(1).open(&msg[..TAG_LEN]),
            Err(SignedFrameError::Unsigned)
        );
        assert_eq!(key(1).open(b""), Err(SignedFrameError::Unsigned));
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        assert_eq!(format!("{:?}", key(0xab)), "PeerKey(<redacted>)");
    }

    #[test]
    fn followers_ask_for_the_peer_path_unless_the_url_names_one() {
        assert_eq!(
            peer_stream_url("ws://10.0.0.2:1112"),
            "ws://10.0.0.2:1112/peer"
        );
        assert_eq!(
            peer_stream_url("wss://seq-b:1112/"),
            "wss://seq-b:1112/peer"
        );
        assert_eq!(
            peer_stream_url("ws://proxy/seq-b/peer"),
            "ws://proxy/seq-b/peer"
        );
    }
}
