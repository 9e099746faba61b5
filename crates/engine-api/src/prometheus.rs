//! Reading values back from a Prometheus text exposition: the one reader the binaries' status
//! lines, benchmarks and tests use.

/// The value of the series `series` (`name{labels}` exactly as rendered), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    samples(text).find_map(|(s, v)| (s == series).then_some(v))
}

/// The sum of every sample of `name` whose labels include each `label="value"` in `labels`.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .sum()
}

/// Every `(series, value)` line, comments and unparsable values skipped.
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series, value.trim().parse().ok()?))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n# TYPE engine_mux_fallbacks_total counter\n\
        engine_mux_fallbacks_total{reason=\"invalid\"} 2\n\
        engine_mux_fallbacks_total{reason=\"timeout\"} 3\n\
        engine_mux_blocks_proposed_total{source=\"builder\"} 7\n\
        engine_mux_health_status 206\n";

    #[test]
    fn exact_series_and_sums_by_label() {
        assert_eq!(sample(TEXT, "engine_mux_health_status"), Some(206.0));
        assert_eq!(
            sample(TEXT, r#"engine_mux_fallbacks_total{reason="timeout"}"#),
            Some(3.0)
        );
        assert_eq!(
            sample(TEXT, "engine_mux_fallbacks_total"),
            None,
            "exact only"
        );
        assert_eq!(sum(TEXT, "engine_mux_fallbacks_total", &[]), 5.0);
        assert_eq!(
            sum(TEXT, "engine_mux_fallbacks_total", &[("reason", "invalid")]),
            2.0
        );
        assert_eq!(sum(TEXT, "nope", &[]), 0.0);
    }
}
