//! What the engine hands every object-store endpoint: its AWS identity as its environment and
//! profile files give it, and the transfer bounds. The library reads neither the environment
//! nor files: the binary gathers them ([`AwsSettings::from_sources`] parses what it read).

use std::fmt;
use std::time::Duration;

/// Bytes of one part of a multipart upload (S3 takes 5 MiB to 5 GiB; 10,000 parts at most,
/// so 10 MiB parts make objects of up to about 97 GiB).
pub const DEFAULT_PART_BYTES: usize = 10 << 20;
/// Parts uploading at once, per object written.
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 3;
/// An output to a prefix starts a new object once the one it writes holds this many bytes.
pub const DEFAULT_ROLL_BYTES: u64 = 1 << 30;

/// Settings of every object-store endpoint an engine opens.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// The engine's own AWS identity and defaults (the environment and profile files).
    pub aws: AwsSettings,
    /// Bytes of each part of a multipart upload; an object smaller than this is one PUT.
    pub part_bytes: usize,
    /// Parts of one object uploading at once.
    pub parts_in_flight: usize,
    /// An output to a prefix completes the object it writes and starts the next once it
    /// holds this many bytes (besides each flush that has data in it).
    pub roll_bytes: u64,
    /// Tries of one request that failed for a passing reason (a 5xx, a refused or reset
    /// connection, a timeout), by the client, before the endpoint reports it.
    pub max_retries: usize,
    /// How long the client keeps trying one request.
    pub retry_timeout: Duration,
    /// How long a connection may take to open.
    pub connect_timeout: Duration,
    /// How long a transfer may wait for the next bytes from the server. A read resumes
    /// where it stopped past it (the object's ETag checked).
    pub read_timeout: Duration,
    /// Times a read cut in the middle of an object resumes in a row before it fails.
    pub read_resumes: u32,
    /// How HDFS is reached (WebHDFS).
    pub hdfs: HdfsSettings,
}

/// How the engine reaches HDFS through WebHDFS: namenodes' HTTP addresses and who it is.
#[derive(Clone, Default)]
pub struct HdfsSettings {
    /// A namenode's RPC address (`namenode:8020`, or an HA nameservice's name) to its
    /// WebHDFS HTTP address (`http://namenode:9870`). Without an entry, port 8020 (or none)
    /// maps to 9870 on the same host.
    pub namenodes: std::collections::BTreeMap<String, String>,
    /// `user.name` of simple authentication.
    pub user: Option<String>,
    /// A delegation token, sent instead of the user. Never shown.
    pub delegation_token: Option<String>,
}

impl std::fmt::Debug for HdfsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HdfsSettings")
            .field("namenodes", &self.namenodes)
            .field("user", &self.user)
            .field(
                "delegation_token",
                &self.delegation_token.as_ref().map(|_| endpoints::REDACTED),
            )
            .finish()
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            aws: AwsSettings::default(),
            part_bytes: DEFAULT_PART_BYTES,
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            roll_bytes: DEFAULT_ROLL_BYTES,
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(120),
            read_resumes: 6,
            hdfs: HdfsSettings::default(),
        }
    }
}

/// The engine's AWS identity and defaults, used for an S3 descriptor that does not say
/// (after the descriptor's own fields and a matching `credentials` entry). Its `Debug` shows
/// where each came from, never a secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// What gave the keys above: `AWS_ACCESS_KEY_ID`, `profile default`...
    pub keys_from: Option<String>,
    pub region: Option<String>,
    /// An S3-compatible server for every S3 descriptor without an `EndpointUrl`.
    pub endpoint_url: Option<String>,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN` (and `AWS_ROLE_SESSION_NAME`):
    /// credentials from STS for that role (Kubernetes service accounts).
    pub web_identity_token_file: Option<String>,
    pub role_arn: Option<String>,
    pub role_session_name: Option<String>,
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`: an ECS task's credentials.
    pub container_credentials_relative_uri: Option<String>,
    /// Whether, with none of the above, credentials are asked of the instance metadata
    /// service (EC2); off (`AWS_EC2_METADATA_DISABLED=true`), requests go unsigned.
    pub instance_metadata: bool,
}

impl fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSettings")
            .field("keys_from", &self.keys_from)
            .field("session_token", &self.session_token.as_ref().map(|_| "set"))
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("web_identity_token_file", &self.web_identity_token_file)
            .field("role_arn", &self.role_arn)
            .field(
                "container_credentials_relative_uri",
                &self.container_credentials_relative_uri,
            )
            .field("instance_metadata", &self.instance_metadata)
            .finish_non_exhaustive()
    }
}

impl AwsSettings {
    /// The settings the standard AWS variables and profile files give: `var` looks a
    /// variable of the engine's environment up, `credentials_file` and `config_file` are the
    /// text of `~/.aws/credentials` and `~/.aws/config` (or of `AWS_SHARED_CREDENTIALS_FILE`
    /// and `AWS_CONFIG_FILE`) when they could be read.
    ///
    /// - Keys: `AWS_ACCESS_KEY_ID` with `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`),
    ///   else the profile's (`AWS_PROFILE`, else `default`) `aws_access_key_id`,
    ///   `aws_secret_access_key`, `aws_session_token`, from the credentials file, else from
    ///   the config file.
    /// - Region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`.
    /// - Server: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url`.
    /// - Else `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`,
    ///   and the instance metadata service unless `AWS_EC2_METADATA_DISABLED` is `true`.
    pub fn from_sources(
        var: impl Fn(&str) -> Option<String>,
        credentials_file: Option<&str>,
        config_file: Option<&str>,
    ) -> AwsSettings {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
        let in_credentials = credentials_file
            .map(|text| ini_section(text, &profile))
            .unwrap_or_default();
        let config_section = if profile == "default" {
            "default".to_owned()
        } else {
            format!("profile {profile}")
        };
        let in_config = config_file
            .map(|text| ini_section(text, &config_section))
            .unwrap_or_default();
        let from_profile = |key: &str| -> Option<String> {
            lookup(&in_credentials, key).or_else(|| lookup(&in_config, key))
        };

        let mut s = AwsSettings {
            instance_metadata: !var("AWS_EC2_METADATA_DISABLED")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            ..AwsSettings::default()
        };
        if let (Some(id), Some(key)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            s.access_key_id = Some(id);
            s.secret_access_key = Some(key);
            s.session_token = var("AWS_SESSION_TOKEN");
            s.keys_from = Some("AWS_ACCESS_KEY_ID".to_owned());
        } else if let (Some(id), Some(key)) = (
            from_profile("aws_access_key_id"),
            from_profile("aws_secret_access_key"),
        ) {
            s.access_key_id = Some(id);
            s.secret_access_key = Some(key);
            s.session_token = from_profile("aws_session_token");
            s.keys_from = Some(format!("profile {profile}"));
        }
        s.region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| lookup(&in_config, "region"))
            .or_else(|| lookup(&in_credentials, "region"));
        s.endpoint_url = var("AWS_ENDPOINT_URL_S3")
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .or_else(|| from_profile("endpoint_url"));
        s.web_identity_token_file = var("AWS_WEB_IDENTITY_TOKEN_FILE");
        s.role_arn = var("AWS_ROLE_ARN");
        s.role_session_name = var("AWS_ROLE_SESSION_NAME");
        s.container_credentials_relative_uri = var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
        s
    }
}

/// The `key = value` lines of section `[name]` of an INI text (AWS's profile files).
fn ini_section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.split_whitespace().collect::<Vec<_>>().join(" ") == name;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
    }
    out
}

fn lookup(section: &[(String, String)], key: &str) -> Option<String> {
    section
        .iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    const CREDENTIALS: &str = "\
[default]
aws_access_key_id = AKIDEFAULT
aws_secret_access_key = default-secret

[ci]
aws_access_key_id=AKICI
aws_secret_access_key=ci-secret
aws_session_token=ci-token
";
    const CONFIG: &str = "\
[default]
region = eu-west-1

[profile ci]
region = ap-south-1
endpoint_url = http://127.0.0.1:9000
";

    #[test]
    fn the_environment_wins_then_the_profile() {
        let s = AwsSettings::from_sources(
            env(&[
                ("AWS_ACCESS_KEY_ID", "AKIENV"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret"),
                ("AWS_REGION", "us-west-2"),
            ]),
            Some(CREDENTIALS),
            Some(CONFIG),
        );
        assert_eq!(s.access_key_id.as_deref(), Some("AKIENV"));
        assert_eq!(s.keys_from.as_deref(), Some("AWS_ACCESS_KEY_ID"));
        assert_eq!(s.region.as_deref(), Some("us-west-2"));
        assert!(s.instance_metadata);

        let s = AwsSettings::from_sources(env(&[]), Some(CREDENTIALS), Some(CONFIG));
        assert_eq!(s.access_key_id.as_deref(), Some("AKIDEFAULT"));
        assert_eq!(s.keys_from.as_deref(), Some("profile default"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.endpoint_url, None);

        let s = AwsSettings::from_sources(
            env(&[("AWS_PROFILE", "ci"), ("AWS_EC2_METADATA_DISABLED", "true")]),
            Some(CREDENTIALS),
            Some(CONFIG),
        );
        assert_eq!(s.access_key_id.as_deref(), Some("AKICI"));
        assert_eq!(s.session_token.as_deref(), Some("ci-token"));
        assert_eq!(s.region.as_deref(), Some("ap-south-1"));
        assert_eq!(s.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(!s.instance_metadata);
    }

    #[test]
    fn debug_shows_no_secret() {
        let s = AwsSettings::from_sources(env(&[]), Some(CREDENTIALS), None);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("default-secret") && !shown.contains("AKIDEFAULT"),
            "{shown}"
        );
        assert!(shown.contains("profile default"), "{shown}");
    }
}
