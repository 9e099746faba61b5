//! One frame of a flashblocks stream (engine_api::flashblocks): text, binary JSON or binary
//! Brotli. The first input byte says text (even) or binary (odd). Properties: the JSON a frame
//! yields is never larger than the limit (a Brotli bomb is refused, not inflated); a text frame
//! or a binary frame starting with `{` is passed through unchanged; a flashblock that parses
//! re-encodes to the same flashblock.

use engine_api::flashblocks::{self, FrameError};

/// Small enough that the fuzzer reaches it with short inputs.
const LIMIT: usize = 4096;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let (flag, frame) = engine_mux_fuzz::split_first(data);
        let binary = flag & 1 == 1;
        let json = match flashblocks::frame_json(binary, frame, LIMIT) {
            Ok(json) => json,
            Err(FrameError::TooLarge { limit }) => {
                assert_eq!(limit, LIMIT);
                return;
            }
            Err(FrameError::NotBrotli) => {
                assert!(binary, "a text frame is never decompressed");
                return;
            }
        };
        assert!(json.len() <= LIMIT, "frame JSON of {} bytes", json.len());
        let first = frame.iter().find(|b| !b.is_ascii_whitespace());
        if !binary || first == Some(&b'{') {
            assert_eq!(&*json, frame, "a JSON frame is used as sent");
        }
        if let Ok(fb) = flashblocks::parse(&json) {
            let again = serde_json::to_vec(&fb).expect("a flashblock serializes");
            let back = flashblocks::parse(&again).expect("a re-encoded flashblock parses");
            assert_eq!(back, fb, "flashblock changed through re-encoding");
        }
    });
}
