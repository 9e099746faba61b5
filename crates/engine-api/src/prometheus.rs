//! Reading values back from a Prometheus text exposition: the one reader the binaries' status
//! lines, benchmarks and tests use.

/// The value of the series `series` (`name{labels}` as rendered), if present. Without an exact
/// match, the sum of the series of that name whose labels include all of `series`' (as
/// PromQL's `sum(name{labels})`): a per-builder series carries a `builder` label too.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    if let Some(v) = samples(text).find_map(|(s, v)| (s == series).then_some(v)) {
        return Some(v);
    }
    let (name, labels) = split_series(series);
    let mut total = None;
    for (s, v) in samples(text) {
        let (n, have) = split_series(s);
        if n == name && labels.iter().all(|l| have.contains(l)) {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// `name{a="1",b="2"}` → (`name`, [`a="1"`, `b="2"`]). Label values here never hold commas.
fn split_series(series: &str) -> (&str, Vec<&str>) {
    match series.split_once('{') {
        Some((name, rest)) => (
            name,
            rest.trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .collect(),
        ),
        None => (series, Vec::new()),
    }
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
            Some(5.0),
            "without an exact series: the sum of those with the labels asked for"
        );
        let labelled = "engine_mux_probes_total{upstream=\"builder\",outcome=\"synced\",builder=\"b1\"} 2\n\
            engine_mux_probes_total{upstream=\"builder\",outcome=\"synced\",builder=\"b2\"} 3\n";
        assert_eq!(
            sample(
                labelled,
                r#"engine_mux_probes_total{upstream="builder",outcome="synced"}"#
            ),
            Some(5.0)
        );
        assert_eq!(
            sample(
                labelled,
                r#"engine_mux_probes_total{upstream="builder",builder="b2"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(labelled, r#"engine_mux_probes_total{upstream="l2"}"#),
            None
        );
        assert_eq!(sum(TEXT, "engine_mux_fallbacks_total", &[]), 5.0);
        assert_eq!(
            sum(TEXT, "engine_mux_fallbacks_total", &[("reason", "invalid")]),
            2.0
        );
        assert_eq!(sum(TEXT, "nope", &[]), 0.0);
    }
}
