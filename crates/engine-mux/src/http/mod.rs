//! The HTTP side: the server that binds the ports and composes the layers (`server`), the
//! inbound tower layers (`layers`), the routing table from a JSON-RPC call to the multiplexer or
//! the raw proxy (`router`), and the debug API (`debug_api`).

pub(crate) mod debug_api;
pub(crate) mod layers;
pub(crate) mod router;
pub(crate) mod server;
