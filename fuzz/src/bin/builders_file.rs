//! The builders file (`--builders-file`, JSON or TOML) and `--extra-builder` specs
//! (engine_mux::config::builders). The first input byte picks the form: a `.json`, `.toml` or
//! extension-less file, or `--extra-builder` specs (one per line). Properties: a configuration
//! that loads has unique names of the allowed characters, is ordered by priority, has non-zero
//! timeouts and flashblocks URLs only with `--flashblocks`.

use std::collections::HashSet;

use clap::Parser;
use engine_mux::{Args, config::builders};

const HEX: &str = "688f5d737bad920bdfb2fc2f488d6b6209eebda1dae949a8de91398d932c517a";

fn main() {
    let dir = std::env::temp_dir().join(format!("builders-file-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data.get(1..).unwrap_or_default()) else {
            return;
        };
        // `jwt-path` is read as a file: keep the fuzzer away from devices that never end.
        if ["dev", "proc", "sys"].iter().any(|d| text.contains(d)) {
            return;
        }
        let flashblocks = data.first().is_some_and(|b| b & 0x80 != 0);
        let mut args: Vec<String> = ["engine-mux", "--builder-jwt-token", HEX]
            .map(String::from)
            .to_vec();
        if flashblocks {
            args.push("--flashblocks".into());
        }
        match data.first().map_or(0, |b| b & 3) {
            3 => {
                for spec in text.lines() {
                    args.push("--extra-builder".into());
                    args.push(spec.to_string());
                }
            }
            form => {
                let path =
                    dir.join(["builders.json", "builders.toml", "builders"][usize::from(form)]);
                std::fs::write(&path, text).expect("write");
                args.push("--builders-file".into());
                args.push(path.display().to_string());
            }
        }
        let Ok(args) = Args::try_parse_from(args) else {
            return;
        };
        let Ok(list) = builders::builders(&args) else {
            return;
        };
        assert!(
            !list.is_empty(),
            "the --builder-url builder is always there"
        );
        let mut names = HashSet::new();
        for b in &list {
            assert!(names.insert(b.name), "name {} twice", b.name);
            assert!(!b.name.is_empty() && b.name.len() <= 64);
            assert!(
                b.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            );
            assert!(!b.upstream.timeout.is_zero());
            assert!(flashblocks || b.flashblocks_url.is_none());
        }
        assert!(list.windows(2).all(|w| w[0].priority <= w[1].priority));
    });
}
