//! Integration tests: real sockets, real Redis (`redis-server` on PATH), real proxy instances.

mod auth;
mod binary;
mod chaining;
mod client;
mod compression;
mod harness;
mod lagging;
mod redis_cluster;
mod redis_limits;
mod tls;
mod upstreams;
