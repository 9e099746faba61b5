//! The JSON-RPC envelope and batches engine-mux reads from op-node (engine_api::jsonrpc, the
//! router's batch split). Properties: a body is a single request, a batch or one of the two
//! errors; every batch item is parsed on its own; the id is answered back exactly as sent.

use engine_api::jsonrpc::{self, EnvelopeError, Incoming, RequestEnvelope};
use engine_mux::router::Route;
use serde_json::value::RawValue;

fn check_request(req: &RequestEnvelope<'_>) {
    let _ = Route::of(&req.method).label();
    let result = RawValue::from_string("true".into()).unwrap();
    let ok = jsonrpc::ok_response(req.id, &result);
    let back: serde_json::Value = serde_json::from_slice(&ok).expect("ok response is JSON");
    let sent_id: serde_json::Value = match req.id {
        Some(id) => serde_json::from_str(id.get()).expect("id was valid JSON"),
        None => serde_json::Value::Null,
    };
    assert_eq!(back["id"], sent_id, "the answer's id is the request's id");
    let err = EnvelopeError::Invalid("x".into()).to_error_object();
    let bad: serde_json::Value =
        serde_json::from_slice(&jsonrpc::error_response(req.id, &err)).expect("error is JSON");
    assert_eq!(bad["id"], sent_id);
    assert_eq!(bad["error"]["code"], -32600);
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
                let is_json = serde_json::from_slice::<serde_json::Value>(data).is_ok();
                assert_eq!(matches!(e, EnvelopeError::Parse(_)), !is_json, "{e}");
            }
        }
    });
}
