//! `engine_*` methods: thin JSON-RPC shims over [`crate::engine::Engine`].

use std::sync::Arc;

use alloy_primitives::{B256, Bytes};
use alloy_rpc_types_engine::{ExecutionPayloadV3, ForkchoiceState, PayloadId};
use engine_api::{
    codes,
    flashblocks_p2p::{Authorization, FLASHBLOCKS_FCU_METHOD},
};
use jsonrpsee::{
    RpcModule,
    types::{ErrorObjectOwned, Params},
};
use op_alloy_rpc_types_engine::{OpExecutionData, OpExecutionPayloadV4, OpPayloadAttributes};
use serde_json::Value;

use crate::engine::{
    Engine, EngineError, EngineVersion, PayloadEnvelope, Role, flashblocks::FlashblocksPublisher,
};

/// Engine API methods this engine implements (the `exchangeCapabilities` answer).
pub const CAPABILITIES: &[&str] = &[
    "engine_forkchoiceUpdatedV3",
    "engine_getPayloadV3",
    "engine_getPayloadV4",
    "engine_newPayloadV3",
    "engine_newPayloadV4",
    "engine_exchangeCapabilities",
    "flashblocks_forkchoiceUpdatedV3",
];

impl From<EngineError> for ErrorObjectOwned {
    fn from(err: EngineError) -> Self {
        let code = match &err {
            EngineError::UnknownPayload => codes::UNKNOWN_PAYLOAD,
            EngineError::InvalidForkchoiceState(_) => codes::INVALID_FORKCHOICE_STATE,
            EngineError::InvalidPayloadAttributes(_) => codes::INVALID_PAYLOAD_ATTRIBUTES,
            EngineError::UnsupportedFork(_) => codes::UNSUPPORTED_FORK,
            EngineError::InvalidParams(_) => codes::INVALID_PARAMS,
            EngineError::Down => codes::INTERNAL_ERROR,
        };
        ErrorObjectOwned::owned(code, err.to_string(), None::<()>)
    }
}

fn invalid_params(e: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::from(EngineError::InvalidParams(e.to_string()))
}

fn internal(e: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(codes::INTERNAL_ERROR, e.to_string(), None::<()>)
}

type RpcResult = Result<Value, ErrorObjectOwned>;

fn to_value<T: serde::Serialize>(v: &T) -> RpcResult {
    serde_json::to_value(v).map_err(internal)
}

async fn before_call(engine: &Engine) -> Result<(), ErrorObjectOwned> {
    if engine.role() == Role::Builder {
        engine.faults().before_engine_call().await;
        // The listener closes asynchronously when `down` goes on; a call that slipped in
        // meanwhile is refused like the dead builder would.
        if engine.faults().is_down() {
            return Err(EngineError::Down.into());
        }
    }
    Ok(())
}

/// Runs CPU-heavy engine work (execution) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, ErrorObjectOwned> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal)?
        .map_err(Into::into)
}

async fn forkchoice_updated(
    params: Params<'static>,
    engine: Arc<Engine>,
    flashblocks: Option<Arc<FlashblocksPublisher>>,
) -> RpcResult {
    before_call(&engine).await?;
    let (fcs, attrs): (ForkchoiceState, Option<OpPayloadAttributes>) = params.parse()?;
    let fcu_engine = engine.clone();
    let out = blocking(move || fcu_engine.forkchoice_updated(fcs, attrs)).await?;
    if let Some(p2p) = engine.flashblocks_p2p() {
        // P2P mode: a build without an authorization publishes nothing.
        if out.payload_id.is_some() {
            p2p.stats
                .unauthorized_builds
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        return to_value(&out);
    }
    if let (Some(id), Some(publisher)) = (out.payload_id, flashblocks) {
        publisher.stream_payload(engine.clone(), id);
    }
    to_value(&out)
}

/// `flashblocks_forkchoiceUpdatedV3(forkchoiceState, payloadAttributes, authorization)`: in P2P
/// mode the authorization is checked (signature, builder key, timestamp, payload id) and a
/// refused one fails the call; an authorized build publishes its flashblocks. Without P2P
/// mode, or without attributes or authorization, it is a plain FCU.
async fn flashblocks_forkchoice_updated(
    params: Params<'static>,
    engine: Arc<Engine>,
    flashblocks: Option<Arc<FlashblocksPublisher>>,
) -> RpcResult {
    let (fcs, attrs, auth): (
        ForkchoiceState,
        Option<OpPayloadAttributes>,
        Option<Authorization>,
    ) = params.parse()?;
    let (Some(p2p), Some(attributes), Some(auth)) = (engine.flashblocks_p2p(), &attrs, auth) else {
        let plain = serde_json::to_string(&(fcs, attrs)).map_err(internal)?;
        return forkchoice_updated(Params::new(Some(&plain)).into_owned(), engine, flashblocks)
            .await;
    };
    before_call(&engine).await?;
    let payload_id = attributes.payload_id(&fcs.head_block_hash, crate::engine::PAYLOAD_ID_VERSION);
    if let Err(refusal) = p2p.check(&auth, payload_id, attributes.payload_attributes.timestamp) {
        tracing::warn!(%refusal, "flashblocks authorization refused");
        return Err(invalid_params(format!("unauthorized: {refusal}")));
    }
    let fcu_engine = engine.clone();
    let out = blocking(move || fcu_engine.forkchoice_updated(fcs, attrs)).await?;
    if let (Some(id), Some(publisher)) = (out.payload_id, flashblocks) {
        publisher.stream_payload(engine.clone(), id);
    }
    to_value(&out)
}

async fn get_payload(
    params: Params<'static>,
    engine: Arc<Engine>,
    version: EngineVersion,
) -> RpcResult {
    before_call(&engine).await?;
    let (id,): (PayloadId,) = params.parse()?;
    let envelope = blocking(move || engine.get_payload(id, version)).await?;
    match envelope {
        PayloadEnvelope::V3(e) => to_value(&e),
        PayloadEnvelope::V4(e) => to_value(&e),
    }
}

async fn new_payload(
    params: Params<'static>,
    engine: Arc<Engine>,
    version: EngineVersion,
) -> RpcResult {
    before_call(&engine).await?;
    let data = match version {
        EngineVersion::V3 => {
            let (payload, hashes, root): (ExecutionPayloadV3, Vec<B256>, B256) = params.parse()?;
            OpExecutionData::v3(payload, hashes, root)
        }
        EngineVersion::V4 => {
            let (payload, hashes, root, requests): (
                OpExecutionPayloadV4,
                Vec<B256>,
                B256,
                Vec<Bytes>,
            ) = params.parse()?;
            if !requests.is_empty() {
                return Err(invalid_params(
                    "executionRequests must be empty on OP Stack",
                ));
            }
            OpExecutionData::v4(payload, hashes, root, Default::default())
        }
    };
    let status = blocking(move || engine.new_payload(data, version)).await?;
    to_value(&status)
}

/// Registers the `engine_*` methods for `engine` on `module`; with a `flashblocks` publisher,
/// every payload an FCU starts is streamed as flashblocks.
pub fn register(
    module: &mut RpcModule<Arc<Engine>>,
    flashblocks: Option<Arc<FlashblocksPublisher>>,
) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    let p2p_publisher = flashblocks.clone();
    module.register_async_method("engine_forkchoiceUpdatedV3", move |p, ctx, _| {
        forkchoice_updated(p, Arc::clone(&ctx), flashblocks.clone())
    })?;
    module.register_async_method(FLASHBLOCKS_FCU_METHOD, move |p, ctx, _| {
        flashblocks_forkchoice_updated(p, Arc::clone(&ctx), p2p_publisher.clone())
    })?;
    module.register_async_method("engine_getPayloadV3", |p, ctx, _| {
        get_payload(p, Arc::clone(&ctx), EngineVersion::V3)
    })?;
    module.register_async_method("engine_getPayloadV4", |p, ctx, _| {
        get_payload(p, Arc::clone(&ctx), EngineVersion::V4)
    })?;
    module.register_async_method("engine_newPayloadV3", |p, ctx, _| {
        new_payload(p, Arc::clone(&ctx), EngineVersion::V3)
    })?;
    module.register_async_method("engine_newPayloadV4", |p, ctx, _| {
        new_payload(p, Arc::clone(&ctx), EngineVersion::V4)
    })?;
    module.register_method("engine_exchangeCapabilities", |p, _, _| {
        let _: (Vec<String>,) = p.parse()?;
        Ok::<_, ErrorObjectOwned>(CAPABILITIES.to_vec())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_match_the_spec() {
        let cases = [
            (EngineError::UnknownPayload, -38001, "Unknown payload"),
            (
                EngineError::InvalidForkchoiceState("x".into()),
                -38002,
                "Invalid forkchoice state: x",
            ),
            (
                EngineError::InvalidPayloadAttributes("y".into()),
                -38003,
                "Invalid payload attributes: y",
            ),
            (
                EngineError::UnsupportedFork("z".into()),
                -38005,
                "Unsupported fork: z",
            ),
            (
                EngineError::InvalidParams("w".into()),
                -32602,
                "Invalid params: w",
            ),
        ];
        for (err, code, message) in cases {
            let obj = ErrorObjectOwned::from(err);
            assert_eq!(obj.code(), code);
            assert_eq!(obj.message(), message);
        }
    }
}
