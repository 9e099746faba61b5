//! How a mock serves: compressed like the peer it stands for, over TLS, with or without
//! recording params.

/// How a mock compresses its answers, after the real peer it stands for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Never.
    #[default]
    None,
    /// op-geth: every HTTP handler (the JWT engine port included) is wrapped in a gzip handler
    /// that gzips the answer whenever the request's `Accept-Encoding` mentions gzip.
    Geth,
    /// reth: tower-http's compression layer (gzip, deflate, br, zstd), which picks the coding
    /// the client prefers (q-values) and leaves tiny bodies alone.
    Reth,
    /// A proxy in front of the engine that compresses with this coding (`gzip`, `deflate`,
    /// `br`, `zstd`) whatever the client asked for.
    Always(&'static str),
}

/// Options for [`MockEngine::start_with`].
#[derive(Clone, Default)]
pub struct MockOptions {
    /// How answers are compressed (like op-geth, like reth, or always).
    pub compression: Compression,
    /// Serve HTTPS with this acceptor (the mock's URL becomes `https://`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Record each call's method but not its params (benchmarks: thousands of 30 kB payloads
    /// copied into the call log would cost the process under test CPU and memory).
    pub skip_params: bool,
}
