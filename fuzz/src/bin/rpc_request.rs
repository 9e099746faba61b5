//! flashblocks-rpc's requests: the HTTP layer's routing probe (single call or batch, method and
//! params) and the RPC module's params parsing for every method it registers, over a pending
//! state holding the recorded op-rbuilder flashblocks (so pending answers are reached) and an
//! upstream that refuses connections (so forwarded calls fail fast). Properties: a body the
//! router reads as N calls is a JSON-RPC request or a batch of N; the module answers every
//! single request with a JSON-RPC response carrying the request's id.

use std::{panic::AssertUnwindSafe, time::Instant};

use clap::Parser;
use engine_api::{Upstream, UpstreamConfig};
use flashblocks_rpc::{cli::Args, config::Config, context::Context, rpc, server};

const FLASHBLOCKS: &str =
    include_str!("../../../testdata/real-peers/op-rbuilder.flashblocks.jsonl");

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _runtime = rt.enter();
    let args = Args::try_parse_from([
        "flashblocks-rpc",
        "--upstream-url",
        "http://127.0.0.1:1",
        "--upstream-timeout-ms",
        "50",
    ])
    .expect("args");
    let config = Config::try_from(args).expect("config");
    let upstream = Upstream::new(UpstreamConfig {
        name: "upstream",
        url: config.upstream.url.clone(),
        secret: None,
        timeout: config.upstream.timeout,
        max_response_bytes: config.upstream.max_response_bytes,
    });
    let ctx = Context::new(config, upstream);
    // The first recorded block's flashblocks, on top of its parent as the head.
    ctx.write(|state| {
        for line in FLASHBLOCKS.lines() {
            let Ok(fb) = engine_api::flashblocks::parse(line.as_bytes()) else {
                continue;
            };
            if let Some(base) = &fb.base {
                if state.head().is_some() {
                    break;
                }
                state.set_head(base.block_number - 1, base.parent_hash, Instant::now());
            }
            let _ = state.ingest(&fb);
        }
    });
    let module = rpc::module(ctx.clone()).expect("module");
    // A panic aborts the process (AFL records it), so no state outlives one.
    let (ctx, module, rt) = (
        AssertUnwindSafe(ctx),
        AssertUnwindSafe(module),
        AssertUnwindSafe(rt),
    );
    afl::fuzz!(|data: &[u8]| {
        let (local, calls) = server::fuzz_route(&ctx, data);
        let value = serde_json::from_slice::<serde_json::Value>(data);
        if let Ok(serde_json::Value::Array(items)) = &value
            && calls != 1
        {
            assert_eq!(items.len(), calls);
        }
        if local {
            assert!(
                value.is_ok(),
                "a body that is not JSON was routed to the module"
            );
        }
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(serde_json::Value::Object(request)) = value else {
            return;
        };
        let Ok((answer, _subscription)) = rt.block_on(module.raw_json_request(text, 1)) else {
            return;
        };
        let answer: serde_json::Value =
            serde_json::from_str(answer.get()).expect("the module answers JSON");
        if request.get("jsonrpc") == Some(&serde_json::json!("2.0"))
            && request.get("method").is_some_and(|m| m.is_string())
            && let Some(id) = request.get("id")
            && (id.is_u64() || id.is_string())
        {
            assert_eq!(
                answer.get("id"),
                Some(id),
                "answer to another request: {answer}"
            );
        }
    });
}
