//! The HTTP side: the server that binds the ports and composes the layers (`server`), the
//! inbound tower layers (`layers`), the routing table from a JSON-RPC call to the multiplexer or
//! the raw proxy (`router`), and the debug API (`debug_api`).

pub mod debug_api;
pub mod layers;
pub mod router;
pub mod server;
