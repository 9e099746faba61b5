//! The pending state: blocks assembled from flashblocks, chained onto the upstream head.

pub mod block;
pub mod effects;
pub mod executed;
pub mod render;
pub mod state;
#[cfg(test)]
mod tests;
pub mod tx;
