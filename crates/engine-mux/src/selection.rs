//! Block selection: given a valid builder payload and the local one, which is proposed.

/// How a valid builder payload is weighed against the local payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectionPolicy {
    /// A valid builder payload always wins.
    AlwaysBuilder,
    /// The builder payload loses when its gas used is below `min_percent`% of the local one's
    /// (a builder that drops the mempool should not beat a full local block).
    GasUsed {
        /// Percentage of local gas used the builder must reach.
        min_percent: u64,
    },
}

impl SelectionPolicy {
    /// Whether the builder payload should be proposed.
    pub fn builder_wins(self, builder_gas_used: u64, local_gas_used: u64) -> bool {
        match self {
            Self::AlwaysBuilder => true,
            Self::GasUsed { min_percent } => {
                // u128 so a 30M-gas block times 100 cannot overflow.
                u128::from(builder_gas_used) * 100
                    >= u128::from(local_gas_used) * u128::from(min_percent)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_used_threshold() {
        let p = SelectionPolicy::GasUsed { min_percent: 10 };
        assert!(p.builder_wins(100_000, 1_000_000));
        assert!(!p.builder_wins(99_999, 1_000_000));
        assert!(p.builder_wins(0, 0));
        assert!(p.builder_wins(u64::MAX, u64::MAX));
        assert!(SelectionPolicy::AlwaysBuilder.builder_wins(0, 30_000_000));
    }
}
