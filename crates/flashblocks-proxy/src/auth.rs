//! API keys: `/ws/<key>` paths mapped to apps with optional per-app connection limits.

use std::{collections::HashMap, fmt};

/// Index of an app in [`ApiKeys::apps`].
pub type AppId = usize;

/// One app allowed to subscribe.
#[derive(Clone, PartialEq, Eq)]
pub struct App {
    /// Name used in metrics and Redis keys.
    pub name: String,
    /// Maximum concurrent subscribers of this app (across instances with Redis); `None` = unlimited.
    pub limit: Option<usize>,
}

/// Why an `--api-keys` entry was rejected; never contains the key itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiKeyError {
    /// Entry is not `app:key` or `app:key:limit`.
    #[error("entry {position} is not `app:key:limit` (app `{app}`)")]
    Shape {
        /// 1-based entry position.
        position: usize,
        /// The app name read.
        app: String,
    },
    /// App or key is empty.
    #[error("entry {position} has an empty app name or key")]
    Empty {
        /// 1-based entry position.
        position: usize,
    },
    /// Limit is not a non-negative integer.
    #[error("entry {position} (app `{app}`): limit `{limit}` is not a number")]
    Limit {
        /// 1-based entry position.
        position: usize,
        /// The app name.
        app: String,
        /// The limit as written.
        limit: String,
    },
    /// The same key is configured twice.
    #[error("entry {position} (app `{app}`): key already used by another entry")]
    DuplicateKey {
        /// 1-based entry position.
        position: usize,
        /// The app name.
        app: String,
    },
    /// One app name configured with two different limits.
    #[error("app `{app}` is configured with conflicting limits")]
    ConflictingLimit {
        /// The app name.
        app: String,
    },
}

/// Configured API keys; empty means the endpoint is public.
#[derive(Clone, Default)]
pub struct ApiKeys {
    by_key: HashMap<String, AppId>,
    apps: Vec<App>,
}

impl fmt::Debug for ApiKeys {
    // Keys are secrets: print app names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field(
                "apps",
                &self
                    .apps
                    .iter()
                    .map(|a| (&a.name, a.limit))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ApiKeys {
    /// Parses `app:key:limit` / `app:key` entries (blank entries are ignored).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, ApiKeyError> {
        let mut keys = Self::default();
        for (i, entry) in entries.iter().enumerate() {
            let position = i + 1;
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let parts: Vec<&str> = entry.split(':').collect();
            let (app, key, limit) = match parts.as_slice() {
                [app, key] => (*app, *key, None),
                [app, key, limit] => (*app, *key, Some(*limit)),
                _ => {
                    return Err(ApiKeyError::Shape {
                        position,
                        app: parts.first().copied().unwrap_or_default().to_string(),
                    });
                }
            };
            if app.is_empty() || key.is_empty() {
                return Err(ApiKeyError::Empty { position });
            }
            let limit = match limit {
                None => None,
                Some(l) => Some(l.trim().parse::<usize>().map_err(|_| ApiKeyError::Limit {
                    position,
                    app: app.to_string(),
                    limit: l.to_string(),
                })?),
            };
            let id = match keys.apps.iter().position(|a| a.name == app) {
                Some(id) => {
                    if keys.apps[id].limit != limit {
                        return Err(ApiKeyError::ConflictingLimit {
                            app: app.to_string(),
                        });
                    }
                    id
                }
                None => {
                    keys.apps.push(App {
                        name: app.to_string(),
                        limit,
                    });
                    keys.apps.len() - 1
                }
            };
            if keys.by_key.insert(key.to_string(), id).is_some() {
                return Err(ApiKeyError::DuplicateKey {
                    position,
                    app: app.to_string(),
                });
            }
        }
        Ok(keys)
    }

    /// True when no keys are configured (public endpoint).
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// The app owning `key`, if any.
    pub fn lookup(&self, key: &str) -> Option<AppId> {
        self.by_key.get(key).copied()
    }

    /// All configured apps, indexed by [`AppId`].
    pub fn apps(&self) -> &[App] {
        &self.apps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_with_and_without_limits() {
        let keys = ApiKeys::parse(&["a:k1:3", "b:k2", "a:k3:3", ""]).unwrap();
        assert_eq!(keys.apps().len(), 2);
        assert_eq!(keys.lookup("k1"), Some(0));
        assert_eq!(keys.lookup("k3"), Some(0));
        assert_eq!(keys.lookup("k2"), Some(1));
        assert_eq!(keys.apps()[0].limit, Some(3));
        assert_eq!(keys.apps()[1].limit, None);
        assert_eq!(keys.lookup("nope"), None);
    }

    #[test]
    fn rejects_malformed_entries_without_leaking_the_key() {
        let err = ApiKeys::parse(&["app:secret:ten"]).unwrap_err();
        assert!(matches!(err, ApiKeyError::Limit { .. }));
        assert!(!err.to_string().contains("secret"));
        assert!(matches!(
            ApiKeys::parse(&["app"]).unwrap_err(),
            ApiKeyError::Shape { .. }
        ));
        assert!(matches!(
            ApiKeys::parse(&[":k"]).unwrap_err(),
            ApiKeyError::Empty { .. }
        ));
        assert!(matches!(
            ApiKeys::parse(&["a:k", "b:k"]).unwrap_err(),
            ApiKeyError::DuplicateKey { .. }
        ));
        assert!(matches!(
            ApiKeys::parse(&["a:k:1", "a:j:2"]).unwrap_err(),
            ApiKeyError::ConflictingLimit { .. }
        ));
        assert!(
            !format!("{:?}", ApiKeys::parse(&["a:topsecret:1"]).unwrap()).contains("topsecret")
        );
    }
}
