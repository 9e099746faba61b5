//! Scheduled fault windows by block height: `[BUILDER:]FAULT@FROM..TO`.

use std::str::FromStr;

use super::kind::{Fault, ParseFaultError};

/// A scheduled fault window: `[BUILDER:]FAULT@FROM..TO` on block heights (TO exclusive).
///
/// `BUILDER` is a devnet builder's name (`b2`) or its 1-based index (`2`); without it the window
/// applies to every builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultWindow {
    /// The fault.
    pub fault: Fault,
    /// First height with the fault on.
    pub from: u64,
    /// First height with the fault off again.
    pub to: u64,
    /// The builder it applies to, 1-based (`b1` = 1); `None`: every builder.
    pub builder: Option<usize>,
}

/// Parses a builder prefix: `b2` or `2` (1-based). Anything else (e.g. `slow` in the older
/// `slow:300` spelling) is not a prefix.
fn builder_prefix(s: &str) -> Option<usize> {
    let digits = s.strip_prefix('b').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl FromStr for FaultWindow {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFaultError(s.to_string());
        let (builder, rest) = match s.split_once(':') {
            Some((prefix, rest)) => match builder_prefix(prefix) {
                Some(0) => return Err(err()),
                Some(n) => (Some(n), rest),
                None => (None, s),
            },
            None => (None, s),
        };
        let (fault, range) = rest.split_once('@').ok_or_else(err)?;
        let (from, to) = range.split_once("..").ok_or_else(err)?;
        Ok(Self {
            fault: fault.parse()?,
            from: from.parse().map_err(|_| err())?,
            to: to.parse().map_err(|_| err())?,
            builder,
        })
    }
}

impl FaultWindow {
    /// Whether the fault is on at `height`.
    pub fn covers(&self, height: u64) -> bool {
        (self.from..self.to).contains(&height)
    }

    /// Whether the window applies to the builder at 1-based `index`.
    pub fn targets(&self, index: usize) -> bool {
        self.builder.is_none_or(|b| b == index)
    }
}

impl std::fmt::Display for FaultWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(b) = self.builder {
            write!(f, "b{b}:")?;
        }
        write!(f, "{:?}@{}..{}", self.fault, self.from, self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_faults_and_windows() {
        assert_eq!("slow=250".parse::<Fault>(), Ok(Fault::Slow(250)));
        assert_eq!("stale".parse::<Fault>(), Ok(Fault::Stale));
        assert!("slow=x".parse::<Fault>().is_err());
        let w: FaultWindow = "down@20..30".parse().unwrap();
        assert_eq!(
            w,
            FaultWindow {
                fault: Fault::Down,
                from: 20,
                to: 30,
                builder: None,
            }
        );
        assert!(w.covers(20) && w.covers(29) && !w.covers(30));
        assert!("down@20".parse::<FaultWindow>().is_err());
        assert_eq!(
            "flashblocks_down".parse::<Fault>(),
            Ok(Fault::FlashblocksDown)
        );
        assert_eq!(
            "down_after_flashblock=3".parse::<Fault>(),
            Ok(Fault::DownAfterFlashblock(3))
        );
        assert!("down_after_flashblock".parse::<Fault>().is_err());
        assert_eq!("zero_state_root".parse::<Fault>(), Ok(Fault::ZeroStateRoot));
        assert_eq!(
            "wrong_attributes".parse::<Fault>(),
            Ok(Fault::WrongAttributes)
        );
        assert_eq!(
            "same_hash_other_txs".parse::<Fault>(),
            Ok(Fault::SameHashOtherTxs)
        );
        assert_eq!(
            "drop_preconfirmed".parse::<Fault>(),
            Ok(Fault::DropPreconfirmed)
        );
        assert!("down_after_flashblock=x".parse::<Fault>().is_err());
        assert_eq!("garbage".parse::<Fault>(), Ok(Fault::Garbage));
        assert_eq!(
            "flashblocks_hostile".parse::<Fault>(),
            Ok(Fault::FlashblocksHostile)
        );
        assert_eq!(
            "flashblocks_late=300".parse::<Fault>(),
            Ok(Fault::FlashblocksLate(300))
        );
        assert_eq!(
            "flashblocks_late:300".parse::<Fault>(),
            Ok(Fault::FlashblocksLate(300))
        );
        assert!("flashblocks_late".parse::<Fault>().is_err());
        let w: FaultWindow = "b2:flashblocks_late=250@5..9".parse().unwrap();
        assert_eq!((w.fault, w.builder), (Fault::FlashblocksLate(250), Some(2)));
        assert_eq!(w.to_string(), "b2:FlashblocksLate(250)@5..9");
        let w: FaultWindow = "down_after_flashblock=3@10..12".parse().unwrap();
        assert_eq!(w.fault, Fault::DownAfterFlashblock(3));
        assert_eq!(w.builder, None);
    }

    #[test]
    fn windows_take_an_optional_builder_prefix_and_keep_the_old_colon_spellings() {
        let w: FaultWindow = "b2:invalid@10..20".parse().unwrap();
        assert_eq!((w.fault, w.builder), (Fault::Invalid, Some(2)));
        assert!(w.targets(2) && !w.targets(1));
        let w: FaultWindow = "3:slow=300@1..5".parse().unwrap();
        assert_eq!((w.fault, w.builder), (Fault::Slow(300), Some(3)));
        // `slow:MS` and `down_after_flashblock:N` are fault spellings, not builder prefixes.
        let w: FaultWindow = "slow:300@1..5".parse().unwrap();
        assert_eq!((w.fault, w.builder), (Fault::Slow(300), None));
        assert!(w.targets(1) && w.targets(7), "no prefix: every builder");
        let w: FaultWindow = "b1:down_after_flashblock:3@4..6".parse().unwrap();
        assert_eq!(
            (w.fault, w.builder),
            (Fault::DownAfterFlashblock(3), Some(1))
        );
        assert_eq!(w.to_string(), "b1:DownAfterFlashblock(3)@4..6");
        for bad in [
            "b0:down@1..2",
            "0:down@1..2",
            "bx:down@1..2",
            "b2:@1..2",
            "b2:down",
        ] {
            assert!(bad.parse::<FaultWindow>().is_err(), "{bad}");
        }
    }
}
