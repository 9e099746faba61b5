//! The tolerance `/healthz` applies to the builders' verdict. Its own file because the
//! configuration carries it and health's combining code depends on much that the configuration
//! must not (the builders, the local EL).

use std::time::Duration;

/// How long the builders' verdict must hold before `/healthz` follows it
/// (`--health-degrade-after-ms`, `--health-recover-after-ms`). Zero for both, the default, is
/// rollup-boost's behaviour: 206 from the first failure, 200 from the first good block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tolerance {
    /// Every builder in use failing for this long before 206.
    pub degrade_after: Duration,
    /// A builder in use good again for this long before 206 turns back into 200.
    pub recover_after: Duration,
}
