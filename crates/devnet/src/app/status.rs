//! Who built each block, for the all-in-one run's status line: engine-mux's per-builder
//! outcome counters say whose block it proposed and why the others lost, and the builder
//! engines' own record of the block hashes they served confirms it (no log reading).

use std::collections::BTreeMap;

/// engine-mux's counters for block sources at one point in time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceTally {
    /// `engine_mux_blocks_proposed_total{source="builder"}`.
    pub builder_blocks: f64,
    /// `engine_mux_fallbacks_total` by `reason`.
    pub fallbacks: BTreeMap<String, f64>,
    /// `engine_mux_builder_blocks_total` by `(builder, outcome)`.
    pub outcomes: BTreeMap<(String, String), f64>,
}

/// Every sample of `name` as `(labels, value)`.
fn labelled(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let prefix = format!("{name}{{");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let labels = labels
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

impl SourceTally {
    /// Reads the counters from engine-mux's Prometheus text.
    pub fn read(text: &str) -> Self {
        let mut tally = Self {
            builder_blocks: engine_api::prometheus::sum(
                text,
                "engine_mux_blocks_proposed_total",
                &[("source", "builder")],
            ),
            ..Self::default()
        };
        for (labels, v) in labelled(text, "engine_mux_fallbacks_total") {
            if let Some(reason) = labels.get("reason") {
                *tally.fallbacks.entry(reason.clone()).or_default() += v;
            }
        }
        for (labels, v) in labelled(text, "engine_mux_builder_blocks_total") {
            if let (Some(b), Some(o)) = (labels.get("builder"), labels.get("outcome")) {
                *tally.outcomes.entry((b.clone(), o.clone())).or_default() += v;
            }
        }
        tally
    }

    /// Says who built the block proposed between `before` and `self`. `built_by` are the
    /// builders whose engines produced the sealed block's hash.
    pub fn source_since(&self, before: &Self, built_by: &[String]) -> String {
        let grew = |now: f64, then: Option<&f64>| now > then.copied().unwrap_or(0.0);
        let mut proposed = Vec::new();
        let mut lost = Vec::new();
        for ((builder, outcome), now) in &self.outcomes {
            let key = (builder.clone(), outcome.clone());
            if !grew(*now, before.outcomes.get(&key)) {
                continue;
            }
            if outcome == "proposed" {
                proposed.push(builder.clone());
            } else {
                lost.push(format!("{builder} {outcome}"));
            }
        }
        let lost = if lost.is_empty() {
            String::new()
        } else {
            format!(" ({})", lost.join(", "))
        };
        let builder_block = self.builder_blocks > before.builder_blocks;
        // Without per-builder counters (one builder, older engine-mux) the hash names it.
        let chosen = match proposed.as_slice() {
            [one] => Some(one.clone()),
            [] if builder_block => Some(match built_by {
                [one] => one.clone(),
                _ => "a builder".to_string(),
            }),
            [] => None,
            many => Some(many.join("+")),
        };
        match chosen {
            Some(name) => {
                let check = if proposed.len() == 1 && !built_by.contains(&name) {
                    format!(" [hash not among {name}'s payloads]")
                } else {
                    String::new()
                };
                let same: Vec<&str> = built_by
                    .iter()
                    .filter(|b| **b != name)
                    .map(String::as_str)
                    .collect();
                let same = if same.is_empty() {
                    String::new()
                } else {
                    format!(" [same block: {}]", same.join(", "))
                };
                format!("built by {name}{check}{same}{lost}")
            }
            None => {
                let reasons: Vec<&str> = self
                    .fallbacks
                    .iter()
                    .filter(|(r, now)| grew(**now, before.fallbacks.get(*r)))
                    .map(|(r, _)| r.as_str())
                    .collect();
                if reasons.is_empty() {
                    format!("local{lost}")
                } else {
                    format!("local (fallback: {}){lost}", reasons.join(", "))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(proposed_b2: u32, invalid_b1: u32, timeout_b3: u32, builder: u32, fb: u32) -> String {
        format!(
            "# TYPE engine_mux_builder_blocks_total counter\n\
             engine_mux_builder_blocks_total{{builder=\"b1\",outcome=\"invalid\"}} {invalid_b1}\n\
             engine_mux_builder_blocks_total{{builder=\"b2\",outcome=\"proposed\"}} {proposed_b2}\n\
             engine_mux_builder_blocks_total{{builder=\"b3\",outcome=\"timeout\"}} {timeout_b3}\n\
             engine_mux_blocks_proposed_total{{source=\"builder\"}} {builder}\n\
             engine_mux_fallbacks_total{{reason=\"invalid\"}} {fb}\n"
        )
    }

    #[test]
    fn names_the_proposed_builder_and_why_the_others_lost() {
        let before = SourceTally::read(&text(1, 1, 1, 1, 0));
        let after = SourceTally::read(&text(2, 2, 2, 2, 0));
        assert_eq!(
            after.source_since(&before, &["b2".into()]),
            "built by b2 (b1 invalid, b3 timeout)"
        );
        assert_eq!(
            after.source_since(&before, &["b2".into(), "b3".into()]),
            "built by b2 [same block: b3] (b1 invalid, b3 timeout)"
        );
        assert_eq!(
            after.source_since(&before, &[]),
            "built by b2 [hash not among b2's payloads] (b1 invalid, b3 timeout)",
            "engine-mux's word and the engines' record disagree: shown"
        );
    }

    #[test]
    fn local_blocks_say_why() {
        let before = SourceTally::read(&text(1, 1, 1, 1, 0));
        let after = SourceTally::read(&text(1, 2, 1, 1, 1));
        assert_eq!(
            after.source_since(&before, &[]),
            "local (fallback: invalid) (b1 invalid)"
        );
        assert_eq!(before.source_since(&before, &[]), "local");
    }

    #[test]
    fn without_per_builder_counters_the_hash_names_the_builder() {
        let before = SourceTally::read("engine_mux_blocks_proposed_total{source=\"builder\"} 4\n");
        let after = SourceTally::read("engine_mux_blocks_proposed_total{source=\"builder\"} 5\n");
        assert_eq!(after.source_since(&before, &["b1".into()]), "built by b1");
    }
}
