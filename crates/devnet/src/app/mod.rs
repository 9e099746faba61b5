//! The devnet's processes: the all-in-one run ([`Devnet`]), its parts one at a time ([`start`]),
//! the command line ([`cli`], [`args`]) and what each command does ([`commands`], [`ha`],
//! [`soak`]). The files depend one way: errors, flags and config at the bottom, then starting
//! parts, then the runs and commands; this file only declares and re-exports.

pub mod args;
pub mod cli;
pub mod commands;
pub mod config;
pub mod devnet;
pub mod error;
mod fault_schedule;
pub mod ha;
pub mod soak;
pub mod start;
pub mod status;

pub use config::{
    DEV_AUTHORIZER_SK, DEV_P2P_BUILDER_SK, DevnetConfig, DevnetFlashblocks, DevnetP2p,
};
pub use devnet::Devnet;
pub use error::{CliError, CommandError, DevnetError};
pub use start::{
    ExtraBuilder, MuxWiring, builder_name, load_genesis, start_engine_on, start_engine_with,
    start_flashblocks_rpc, start_mux, start_mux_with_builders, unix_now,
};

/// Reads a counter from Prometheus text: the sum of all samples of `name` whose labels contain
/// every `label="value"` in `labels`.
pub use engine_api::prometheus::sum as metric_value;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_sums_matching_series() {
        let text = "# HELP x\nengine_mux_fallbacks_total{reason=\"invalid\"} 2\nengine_mux_fallbacks_total{reason=\"timeout\"} 3\nengine_mux_blocks_proposed_total{source=\"builder\"} 7\n";
        assert_eq!(metric_value(text, "engine_mux_fallbacks_total", &[]), 5.0);
        assert_eq!(
            metric_value(text, "engine_mux_fallbacks_total", &[("reason", "invalid")]),
            2.0
        );
        assert_eq!(
            metric_value(
                text,
                "engine_mux_blocks_proposed_total",
                &[("source", "builder")]
            ),
            7.0
        );
        assert_eq!(metric_value(text, "nope", &[]), 0.0);
    }
}
