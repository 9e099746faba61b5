//! `devnet_*` control methods: switch builder faults at runtime (served on the plain RPC port,
//! which stays up while the `down` fault closes the auth port).

use std::sync::Arc;

use jsonrpsee::{
    RpcModule,
    types::{ErrorObjectOwned, Params},
};
use serde_json::{Value, json};

use crate::engine::{Engine, faults::Fault};

/// Registers `devnet_setFault(fault, on)`, `devnet_clearFaults()` and `devnet_faults()`.
///
/// `fault` is the string form (`"slow=200"`, `"down"`, `"hang"`, `"invalid"`, `"empty"`,
/// `"stale"`).
pub fn register(
    module: &mut RpcModule<Arc<Engine>>,
) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    module.register_method(
        "devnet_setFault",
        |p: Params<'_>, e, _| -> Result<Value, ErrorObjectOwned> {
            let (fault, on): (String, Option<bool>) = p.parse()?;
            let fault: Fault =
                fault
                    .parse()
                    .map_err(|x: crate::engine::faults::ParseFaultError| {
                        ErrorObjectOwned::owned(
                            engine_api::codes::INVALID_PARAMS,
                            x.to_string(),
                            None::<()>,
                        )
                    })?;
            e.faults().set(fault, on.unwrap_or(true));
            Ok(json!(e.faults().active()))
        },
    )?;
    module.register_method(
        "devnet_clearFaults",
        |_, e, _| -> Result<Value, ErrorObjectOwned> {
            e.faults().clear();
            Ok(json!([]))
        },
    )?;
    module.register_method(
        "devnet_faults",
        |_, e, _| -> Result<Value, ErrorObjectOwned> { Ok(json!(e.faults().active())) },
    )?;
    Ok(())
}
