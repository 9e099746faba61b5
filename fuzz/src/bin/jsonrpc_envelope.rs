//! The JSON-RPC envelope and batches engine-mux reads from op-node (engine_api::jsonrpc, the
//! router's batch split). Properties: a body is a single request, a batch or one of the two
//! errors ("not JSON" judged by the grammar and UTF-8 alone: `1e999` is JSON, though no f64
//! holds it); every batch item is parsed on its own; the id is answered back byte for byte as
//! sent.

use std::collections::HashMap;

use engine_api::jsonrpc::{self, EnvelopeError, Incoming, RequestEnvelope};
use engine_mux::fuzzing::Route;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

fn check_request(req: &RequestEnvelope<'_>) {
    let _ = Route::of(&req.method).label();
    // The id is echoed as the raw text sent (numbers no f64 holds included), like geth does.
    let sent_id = req.id.map_or("null", RawValue::get);
    let result = RawValue::from_string("true".into()).unwrap();
    let ok = jsonrpc::ok_response(req.id, &result);
    let back: HashMap<String, Box<RawValue>> =
        serde_json::from_slice(&ok).expect("ok response is JSON");
    assert_eq!(
        back["id"].get(),
        sent_id,
        "the answer's id is the request's id"
    );
    let err = EnvelopeError::Invalid("x".into()).to_error_object();
    let bad: HashMap<String, Box<RawValue>> =
        serde_json::from_slice(&jsonrpc::error_response(req.id, &err)).expect("error is JSON");
    assert_eq!(bad["id"].get(), sent_id);
    let error: serde_json::Value = serde_json::from_str(bad["error"].get()).expect("error object");
    assert_eq!(error["code"], -32600);
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        match jsonrpc::parse_incoming(data) {
            Ok(Incoming::Single(req)) => check_request(&req),
            Ok(Incoming::Batch(items)) => {
                assert!(!items.is_empty(), "an empty batch is refused");
                for item in items {
                    if let Ok(req) = serde_json::from_str::<RequestEnvelope<'_>>(item.get()) {
                        check_request(&req);
                    }
                }
            }
            Err(e) => {
                let code = e.to_error_object().code();
                assert!(code == -32700 || code == -32600, "code {code}");
                // Not JSON at all is a parse error; JSON of the wrong shape is invalid.
                // JSON text is UTF-8 (RFC 8259 §8.1); skipping a value does not check strings.
                let is_json = std::str::from_utf8(data)
                    .is_ok_and(|text| serde_json::from_str::<IgnoredAny>(text).is_ok());
                assert_eq!(matches!(e, EnvelopeError::Parse(_)), !is_json, "{e}");
            }
        }
    });
}
