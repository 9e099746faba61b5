//! JSON-RPC error codes: the JSON-RPC 2.0 standard set and the Engine API's own.
//!
//! Engine API codes: <https://github.com/ethereum/execution-apis/blob/main/src/engine/common.md#errors>

/// Invalid JSON was received by the server.
pub const PARSE_ERROR: i32 = -32700;
/// The JSON sent is not a valid Request object.
pub const INVALID_REQUEST: i32 = -32600;
/// The method does not exist / is not available.
pub const METHOD_NOT_FOUND: i32 = -32601;
/// Invalid method parameter(s).
pub const INVALID_PARAMS: i32 = -32602;
/// Internal JSON-RPC error.
pub const INTERNAL_ERROR: i32 = -32603;
/// Engine API: payload does not exist / is not available.
pub const UNKNOWN_PAYLOAD: i32 = -38001;
/// Engine API: forkchoice state is invalid / inconsistent.
pub const INVALID_FORKCHOICE_STATE: i32 = -38002;
/// Engine API: payload attributes are invalid / inconsistent.
pub const INVALID_PAYLOAD_ATTRIBUTES: i32 = -38003;
/// Engine API: number of requested entities is too large.
pub const TOO_LARGE_REQUEST: i32 = -38004;
/// Engine API: payload belongs to a fork that is not supported.
pub const UNSUPPORTED_FORK: i32 = -38005;
