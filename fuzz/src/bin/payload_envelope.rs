//! `engine_getPayloadV3/V4/V5` envelopes (engine_api::payload), as a builder or the local EL
//! returns them. Property: see `engine_mux_fuzz::check_envelope`.

use engine_api::PayloadVersion;
use serde_json::value::RawValue;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(raw) = serde_json::from_str::<&RawValue>(text) else {
            return;
        };
        for version in [PayloadVersion::V3, PayloadVersion::V4, PayloadVersion::V5] {
            engine_mux_fuzz::check_envelope(version, raw);
        }
    });
}
