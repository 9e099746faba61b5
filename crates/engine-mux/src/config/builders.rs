//! The builders engine-mux talks to: the one `--builder-url` names, plus any from
//! `--extra-builder` specs and `--builders-file`. Every entry is checked here, and a bad one is
//! one startup error naming the builder and the key.

use std::{collections::HashSet, path::Path, time::Duration};

use engine_api::{UpstreamConfig, upstream::DEFAULT_MAX_RESPONSE_BYTES};
use serde::Deserialize;

use super::args::Args;
use super::{
    ConfigError,
    parse::{load_secret, millis, parse_url, parse_ws_url},
};

/// One builder, validated.
#[derive(Clone, Debug)]
pub struct BuilderConfig {
    /// Its name in logs, metrics and the debug API.
    pub name: &'static str,
    /// Its engine endpoint.
    pub upstream: UpstreamConfig,
    /// Its flashblocks stream, when flashblocks are on and it has one.
    pub flashblocks_url: Option<String>,
    /// Lower is preferred (election of the flashblocks builder, `priority` policy, ties).
    pub priority: u32,
    /// Whether it is called at startup (`debug_setBuilderEnabled` changes it at runtime).
    pub enabled: bool,
}

/// One builder as written in a spec or a file, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuilderSpec {
    name: Option<String>,
    url: Option<String>,
    #[serde(alias = "jwt-token")]
    jwt_token: Option<String>,
    #[serde(alias = "jwt-path")]
    jwt_path: Option<std::path::PathBuf>,
    #[serde(alias = "timeout-ms")]
    timeout_ms: Option<u64>,
    #[serde(alias = "flashblocks-url")]
    flashblocks_url: Option<String>,
    priority: Option<u32>,
    enabled: Option<bool>,
}

impl BuilderSpec {
    /// `name=b2,url=http://...,jwt-path=/x` (the `--extra-builder` form).
    fn parse_pairs(text: &str) -> Result<Self, String> {
        let mut spec = Self::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            let value = value.trim().to_string();
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("{key}: {v:?} is not a whole number"))
            };
            match key.trim().replace('_', "-").as_str() {
                "name" => spec.name = Some(value),
                "url" => spec.url = Some(value),
                "jwt-token" => spec.jwt_token = Some(value),
                "jwt-path" => spec.jwt_path = Some(value.into()),
                "timeout-ms" => spec.timeout_ms = Some(number(&value)?),
                "flashblocks-url" => spec.flashblocks_url = Some(value),
                "priority" => {
                    spec.priority = Some(
                        u32::try_from(number(&value)?)
                            .map_err(|_| format!("priority: {value} is too large"))?,
                    );
                }
                "enabled" => {
                    spec.enabled = Some(
                        value
                            .parse()
                            .map_err(|_| format!("enabled: {value:?} is not true or false"))?,
                    );
                }
                other => {
                    return Err(format!(
                        "unknown key {other:?} (expected name, url, jwt-token, jwt-path, \
                         timeout-ms, flashblocks-url, priority, enabled)"
                    ));
                }
            }
        }
        Ok(spec)
    }
}

/// The file's two accepted shapes.
#[derive(Deserialize)]
#[serde(untagged)]
enum BuildersFile {
    Table { builders: Vec<BuilderSpec> },
    List(Vec<BuilderSpec>),
}

fn read_file(path: &Path) -> Result<Vec<BuilderSpec>, ConfigError> {
    let bad = |reason: String| ConfigError::BuildersFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    // By extension; anything else is tried as JSON, then as TOML.
    let file: BuildersFile = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?,
        Some("toml") => toml::from_str(&text).map_err(|e| bad(e.to_string()))?,
        _ => match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(_) => {
                toml::from_str(&text).map_err(|e| bad(format!("neither JSON nor TOML: {e}")))?
            }
        },
    };
    Ok(match file {
        BuildersFile::Table { builders } | BuildersFile::List(builders) => builders,
    })
}

/// Metric labels and the debug API need plain names.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("name must be 1 to 64 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "name {name:?} may only use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// The name lives as long as the process: it labels metrics and logs of a builder that exists
/// from startup to exit. Builders are configured once, so this is bounded.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

/// Every configured builder, validated, ordered by priority (then as configured).
pub fn builders(a: &Args) -> Result<Vec<BuilderConfig>, ConfigError> {
    let secret = load_secret(
        a.builder.builder_jwt_token.as_deref(),
        a.builder.builder_jwt_path.as_deref(),
        "builder-jwt-token",
        "builder-jwt-path",
    )?
    .ok_or(ConfigError::MissingJwt {
        what: "the builder",
        flag: "builder",
    })?;
    let default_timeout = millis("builder-timeout", a.builder.builder_timeout)?;
    check_name(&a.builder.builder_name).map_err(|reason| ConfigError::OutOfRange {
        flag: "builder-name",
        reason,
    })?;
    let flashblocks_on = a.flashblocks.enabled;
    let mut list = vec![BuilderConfig {
        name: leak(a.builder.builder_name.clone()),
        upstream: UpstreamConfig {
            name: "builder",
            url: parse_url("builder-url", &a.builder.builder_url)?,
            secret: Some(secret),
            timeout: default_timeout,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        },
        flashblocks_url: flashblocks_on.then(|| a.flashblocks.flashblocks_builder_url.clone()),
        priority: 0,
        enabled: true,
    }];

    let mut specs = Vec::new();
    for (i, text) in a.builders.extra_builders.iter().enumerate() {
        let spec = BuilderSpec::parse_pairs(text).map_err(|reason| ConfigError::Builder {
            name: format!("--extra-builder #{}", i + 1),
            reason,
        })?;
        specs.push(spec);
    }
    if let Some(path) = &a.builders.builders_file {
        specs.extend(read_file(path)?);
    }
    let mut names: HashSet<&str> = HashSet::from([list[0].name]);
    for (i, spec) in specs.into_iter().enumerate() {
        let position = list.len();
        let name = spec.name.clone().unwrap_or_default();
        let label = if name.is_empty() {
            format!("#{}", i + 1)
        } else {
            name.clone()
        };
        let bad = |reason: String| ConfigError::Builder {
            name: label.clone(),
            reason,
        };
        check_name(&name).map_err(&bad)?;
        if names.contains(name.as_str()) {
            return Err(bad("the name is used twice".into()));
        }
        let url = spec
            .url
            .as_deref()
            .ok_or_else(|| bad("url is missing".into()))?;
        let url = parse_url("extra-builder", url).map_err(|e| bad(e.to_string()))?;
        let secret = load_secret(
            spec.jwt_token.as_deref(),
            spec.jwt_path.as_deref(),
            "jwt-token",
            "jwt-path",
        )
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("no JWT secret: give jwt-token or jwt-path".into()))?;
        let timeout = match spec.timeout_ms {
            Some(0) => return Err(bad("timeout-ms must be greater than 0".into())),
            Some(ms) => Duration::from_millis(ms),
            None => default_timeout,
        };
        let flashblocks_url = match spec.flashblocks_url {
            Some(_) if !flashblocks_on => {
                return Err(bad("flashblocks-url is set but --flashblocks is off".into()));
            }
            Some(u) => Some(parse_ws_url("extra-builder", &u).map_err(|e| bad(e.to_string()))?),
            None => None,
        };
        let name = leak(name);
        names.insert(name);
        list.push(BuilderConfig {
            name,
            upstream: UpstreamConfig {
                name: "builder",
                url,
                secret: Some(secret),
                timeout,
                max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            },
            flashblocks_url,
            priority: spec
                .priority
                .unwrap_or(u32::try_from(position).unwrap_or(u32::MAX)),
            enabled: spec.enabled.unwrap_or(true),
        });
    }
    // Stable: equal priorities keep the configured order.
    list.sort_by_key(|b| b.priority);
    Ok(list)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    const HEX: &str = "688f5d737bad920bdfb2fc2f488d6b6209eebda1dae949a8de91398d932c517a";

    fn parse(extra: &[&str]) -> Result<Vec<BuilderConfig>, ConfigError> {
        let mut argv = vec!["engine-mux", "--builder-jwt-token", HEX];
        argv.extend_from_slice(extra);
        builders(&Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn one_builder_by_default_named_builder() {
        let b = parse(&[]).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].name, "builder");
        assert!(b[0].enabled);
        assert!(b[0].flashblocks_url.is_none());
    }

    #[test]
    fn extra_builders_from_flags_and_files_in_priority_order() {
        let dir = std::env::temp_dir().join(format!("em-builders-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("builders.toml");
        std::fs::write(
            &toml_path,
            format!(
                "[[builders]]\nname = \"t1\"\nurl = \"http://10.0.0.3:8551\"\njwt_token = \"{HEX}\"\npriority = 0\nenabled = false\n"
            ),
        )
        .unwrap();
        let b = parse(&[
            "--builder-name",
            "primary",
            "--extra-builder",
            &format!("name=b2,url=http://10.0.0.2:8551,jwt-token={HEX},timeout-ms=250"),
            "--builders-file",
            toml_path.to_str().unwrap(),
        ])
        .unwrap();
        let names: Vec<_> = b.iter().map(|b| b.name).collect();
        assert_eq!(
            names,
            ["primary", "t1", "b2"],
            "priority 0 twice keeps the order"
        );
        assert!(!b[1].enabled);
        assert_eq!(b[2].upstream.timeout, Duration::from_millis(250));
        assert_eq!(b[2].priority, 1);

        let json_path = dir.join("builders.json");
        std::fs::write(
            &json_path,
            format!(r#"[{{"name":"j1","url":"https://b.example:8551","jwt-token":"{HEX}"}}]"#),
        )
        .unwrap();
        let b = parse(&["--builders-file", json_path.to_str().unwrap()]).unwrap();
        assert_eq!(b[1].name, "j1");
        assert_eq!(b[1].upstream.url.scheme_str(), Some("https"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn every_bad_entry_names_the_builder() {
        let err = |spec: &str| parse(&["--extra-builder", spec]).unwrap_err().to_string();
        let e = err(&format!("name=b2,jwt-token={HEX}"));
        assert!(e.contains("\"b2\"") && e.contains("url is missing"), "{e}");
        let e = err("name=b2,url=http://x:1");
        assert!(e.contains("\"b2\"") && e.contains("JWT"), "{e}");
        let e = err(&format!("name=b2,url=ftp://x,jwt-token={HEX}"));
        assert!(e.contains("\"b2\"") && e.contains("ftp"), "{e}");
        let e = err(&format!(
            "name=b2,url=http://x:1,jwt-token={HEX},colour=red"
        ));
        assert!(e.contains("unknown key \"colour\""), "{e}");
        let e = err(&format!("name=builder,url=http://x:1,jwt-token={HEX}"));
        assert!(e.contains("used twice"), "{e}");
        let e = err(&format!("name=b 2,url=http://x:1,jwt-token={HEX}"));
        assert!(e.contains("may only use"), "{e}");
        let e = err(&format!(
            "name=b2,url=http://x:1,jwt-token={HEX},flashblocks-url=ws://x:2"
        ));
        assert!(e.contains("--flashblocks is off"), "{e}");
        let e = err("name=b2,url=http://x:1,jwt-token=zz");
        assert!(e.contains("\"b2\"") && !e.contains(HEX), "{e}");
        let e = parse(&["--builders-file", "/nonexistent/builders.toml"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/builders.toml"), "{e}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let b = parse(&[
            "--extra-builder",
            &format!("name=b2,url=http://x:1,jwt-token={HEX}"),
        ])
        .unwrap();
        assert!(!format!("{b:?}").contains(HEX));
    }
}
