//! Credentials for external stores, matched to an endpoint by its location's host and path
//! prefix (the entries of `engine serve`'s `credentials` setting).

use std::fmt;

use serde::Deserialize;

/// Credentials for one external store, matched by host and path prefix. Its `Debug` shows
/// where it applies, never a secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credential {
    pub host: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

impl Credential {
    /// An entry for `host` (any path), with no secret yet.
    pub fn for_host(host: impl Into<String>) -> Credential {
        Credential {
            host: host.into(),
            path: None,
            username: None,
            password: None,
            access_key_id: None,
            secret_access_key: None,
            token: None,
        }
    }

    fn applies_to(&self, host: &str, path: &str) -> bool {
        self.host.eq_ignore_ascii_case(host)
            && self.path.as_deref().is_none_or(|p| path.starts_with(p))
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("host", &self.host)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A set of credentials. [`Credentials::matching`] picks the entry for a location: same
/// host (any case), path under the entry's `path`, the longest such `path` winning.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Credentials(Vec<Credential>);

impl Credentials {
    pub fn new(entries: Vec<Credential>) -> Credentials {
        Credentials(entries)
    }

    pub fn entries(&self) -> &[Credential] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entry matching a location's host and path, if any.
    pub fn matching(&self, host: &str, path: &str) -> Option<&Credential> {
        self.0
            .iter()
            .filter(|c| c.applies_to(host, path))
            .max_by_key(|c| c.path.as_deref().map_or(0, str::len))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_matching_path_wins_and_hosts_ignore_case() {
        let mut bucket = Credential::for_host("s3.local");
        bucket.path = Some("/scores".into());
        bucket.token = Some("bucket".into());
        let mut any = Credential::for_host("S3.LOCAL");
        any.token = Some("any".into());
        let set = Credentials::new(vec![any, bucket]);
        let token = |host: &str, path: &str| set.matching(host, path).and_then(|c| c.token.clone());
        assert_eq!(
            token("s3.local", "/scores/in.csv").as_deref(),
            Some("bucket")
        );
        assert_eq!(token("s3.local", "/other").as_deref(), Some("any"));
        assert_eq!(token("elsewhere", "/scores"), None);
    }

    #[test]
    fn debug_shows_no_secret() {
        let mut c = Credential::for_host("h");
        c.password = Some("hunter2".into());
        let shown = format!("{:?}", Credentials::new(vec![c]));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("\"h\""), "{shown}");
    }
}
