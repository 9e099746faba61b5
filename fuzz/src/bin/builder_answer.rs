//! A builder's (or upstream's) whole JSON-RPC answer body: engine-api's response envelope,
//! then the result as a getPayload envelope; and flashblocks-rpc's reading of an upstream
//! answer. Properties: both readers agree on whether the answer is an error, and on the
//! result's bytes when it is not; a result that is an envelope passes `check_envelope`.

use engine_api::{PayloadVersion, jsonrpc::ResponseEnvelope};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let mux = serde_json::from_slice::<ResponseEnvelope>(data);
        let rpc = flashblocks_rpc::rpc::parse_response(data);
        let rpc_read = !matches!(rpc, Err(flashblocks_rpc::rpc::RpcError::Unavailable(_)));
        assert_eq!(
            mux.is_ok(),
            rpc_read,
            "one reader refused what the other read"
        );
        let Ok(answer) = mux else { return };
        match (&answer.error, &rpc) {
            (Some(_), r) => assert!(r.is_err(), "an error answer read as a result"),
            (None, Ok(result)) => {
                if let Some(r) = &answer.result {
                    assert_eq!(r.get(), result.get(), "the readers saw different results");
                }
            }
            (None, Err(e)) => panic!("flashblocks-rpc refused an answer engine-mux read: {e}"),
        }
        if let (Some(result), None) = (&answer.result, &answer.error) {
            for version in [PayloadVersion::V3, PayloadVersion::V4, PayloadVersion::V5] {
                engine_mux_fuzz::check_envelope(version, result);
            }
        }
    });
}
