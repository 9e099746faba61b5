//! The pending state: blocks assembled from flashblocks, chained onto the upstream head.

pub mod block;
pub mod render;
pub mod state;
