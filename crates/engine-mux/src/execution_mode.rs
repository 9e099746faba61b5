//! The execution mode (enabled / dry_run / disabled), switchable at runtime.

use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

/// What engine-mux does with the builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// Builder blocks are used when valid.
    Enabled,
    /// All builder traffic and validation happen, the local block is always proposed.
    DryRun,
    /// No builder engine traffic at all.
    Disabled,
}

impl ExecutionMode {
    /// The wire spelling (`enabled`, `dry_run`, `disabled`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::DryRun => "dry_run",
            Self::Disabled => "disabled",
        }
    }

    /// Whether builder engine calls are made at all.
    pub fn talks_to_builder(self) -> bool {
        self != Self::Disabled
    }
}

impl std::fmt::Display for ExecutionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ExecutionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "enabled" => Ok(Self::Enabled),
            "dry-run" | "dry_run" | "dryrun" => Ok(Self::DryRun),
            "disabled" => Ok(Self::Disabled),
            other => Err(format!(
                "unknown execution mode {other:?} (expected enabled, dry-run or disabled)"
            )),
        }
    }
}

/// The current mode, shared by the router and the debug server; a switch applies to the next call.
#[derive(Debug)]
pub struct ModeCell(AtomicU8);

impl ModeCell {
    /// A cell holding `mode`.
    pub fn new(mode: ExecutionMode) -> Self {
        Self(AtomicU8::new(mode as u8))
    }

    /// The current mode.
    pub fn get(&self) -> ExecutionMode {
        match self.0.load(Ordering::Acquire) {
            0 => ExecutionMode::Enabled,
            1 => ExecutionMode::DryRun,
            _ => ExecutionMode::Disabled,
        }
    }

    /// Switches the mode.
    pub fn set(&self, mode: ExecutionMode) {
        self.0.store(mode as u8, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_snake_case() {
        assert_eq!(
            serde_json::to_string(&ExecutionMode::DryRun).unwrap(),
            r#""dry_run""#
        );
        assert_eq!(
            serde_json::from_str::<ExecutionMode>(r#""disabled""#).unwrap(),
            ExecutionMode::Disabled
        );
        let cell = ModeCell::new(ExecutionMode::Enabled);
        for m in [
            ExecutionMode::DryRun,
            ExecutionMode::Disabled,
            ExecutionMode::Enabled,
        ] {
            cell.set(m);
            assert_eq!(cell.get(), m);
        }
    }
}
