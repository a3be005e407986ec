//! The engine's configuration: defaults, then `application.json`, then environment
//! variables, then command-line flags, later winning. The binary reads the file's path,
//! the environment and the flags and hands them here; this crate reads none of them itself.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

// ------------------------------------------------------------------- worker limits

/// Per-record limits on model workers: a worker past one is killed and replaced, and the
/// record (or request) it was on fails with the reason. 0 is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long one record of the deployed model may run (`recordTimeoutMs`).
    pub record_timeout_ms: u64,
    /// How long one record of a batch job may run (`jobRecordTimeoutMs`); a job document
    /// may set its own `recordTimeoutMs`.
    pub job_record_timeout_ms: u64,
    /// The largest resident set of one worker, deployed or of a job, in MiB
    /// (`memoryLimitMib`); documents may set their own.
    pub memory_limit_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            record_timeout_ms: 60_000,
            job_record_timeout_ms: 600_000,
            memory_limit_mib: 0,
        }
    }
}

/// Environment variables of the limits, and the key each one sets.
pub const LIMIT_ENV_KEYS: [(&str, &str); 3] = [
    ("ENGINE_RECORD_TIMEOUT_MS", "recordTimeoutMs"),
    ("ENGINE_JOB_RECORD_TIMEOUT_MS", "jobRecordTimeoutMs"),
    ("ENGINE_MEMORY_LIMIT_MIB", "memoryLimitMib"),
];

impl Limits {
    /// Sets `key` if it is one of the limits'; `Ok(false)` if it is not.
    fn set(&mut self, key: &str, v: &str) -> Result<bool> {
        match key {
            "recordTimeoutMs" => self.record_timeout_ms = number(key, v)?,
            "jobRecordTimeoutMs" => self.job_record_timeout_ms = number(key, v)?,
            "memoryLimitMib" => self.memory_limit_mib = number(key, v)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn apply_file(&mut self, fc: &FileConfig) {
        if let Some(v) = fc.record_timeout_ms {
            self.record_timeout_ms = v;
        }
        if let Some(v) = fc.job_record_timeout_ms {
            self.job_record_timeout_ms = v;
        }
        if let Some(v) = fc.memory_limit_mib {
            self.memory_limit_mib = v;
        }
    }

    /// The worker limits of a deployment: the document's own `recordTimeoutMs` and
    /// `memoryLimitMib` (top level), else these defaults.
    pub fn for_deployment(&self, document: &serde_json::Value) -> Result<worker::WorkerLimits> {
        worker_limits(document, self.record_timeout_ms, self.memory_limit_mib)
    }

    /// The worker limits of a job: the document's own, else these defaults.
    pub fn for_job(&self, document: &serde_json::Value) -> Result<worker::WorkerLimits> {
        worker_limits(document, self.job_record_timeout_ms, self.memory_limit_mib)
    }
}

fn worker_limits(
    document: &serde_json::Value,
    timeout_ms: u64,
    memory_mib: u64,
) -> Result<worker::WorkerLimits> {
    let own = |key: &str, default: u64| -> Result<u64> {
        match document.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| {
                Error::BadRequest(format!("'{key}' must be a whole number, 0 for no limit"))
            }),
        }
    };
    let timeout_ms = own("recordTimeoutMs", timeout_ms)?;
    let memory_mib = own("memoryLimitMib", memory_mib)?;
    Ok(worker::WorkerLimits {
        record_timeout: (timeout_ms > 0).then(|| std::time::Duration::from_millis(timeout_ms)),
        memory_bytes: (memory_mib > 0).then(|| memory_mib.saturating_mul(1 << 20)),
        slow_record_warning: None,
    })
}

/// Stage tags an engine may carry; any other tag is a model service tag.
pub const STAGE_TAGS: [&str; 4] = ["DEV", "SIT", "UAT", "PROD"];

/// The configuration the service runs with.
#[derive(Clone)]
pub struct Config {
    pub name: String,
    pub group: Option<String>,
    pub tags: Vec<String>,
    pub bind: IpAddr,
    /// The control port (the reference's 8003); 0 picks a free one.
    pub port: u16,
    /// A separate port serving only the scoring routes.
    pub scoring_port: Option<u16>,
    pub data_dir: PathBuf,
    /// Roundtrip timeout when the request names none.
    pub roundtrip_timeout_ms: u64,
    /// Scoring requests waiting for the deployed model beyond which requests get 503.
    pub score_queue_bound: usize,
    /// Requests the deployed model's worker gets in one batch at most.
    pub score_batch_max: usize,
    /// Warm workers of the deployed model; requests go to whichever is free.
    pub score_workers: usize,
    /// Records per batch of a batch job.
    pub job_batch_size: usize,
    /// How long SIGTERM waits for the running job and in-flight requests.
    pub shutdown_grace_ms: u64,
    pub log_level: String,
    /// Credentials for external stores, from `application.json` only. Never logged.
    pub credentials: Vec<Credential>,
    /// Per-record time and memory limits on model workers.
    pub limits: Limits,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("tags", &self.tags)
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("scoring_port", &self.scoring_port)
            .field("data_dir", &self.data_dir)
            .field("roundtrip_timeout_ms", &self.roundtrip_timeout_ms)
            .field("score_queue_bound", &self.score_queue_bound)
            .field("score_batch_max", &self.score_batch_max)
            .field("score_workers", &self.score_workers)
            .field("job_batch_size", &self.job_batch_size)
            .field("shutdown_grace_ms", &self.shutdown_grace_ms)
            .field("log_level", &self.log_level)
            .field(
                "credentials",
                &format!("{} entries", self.credentials.len()),
            )
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "engine-1".to_owned(),
            group: None,
            tags: Vec::new(),
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 8003,
            scoring_port: None,
            data_dir: PathBuf::from("engine-data"),
            roundtrip_timeout_ms: 5000,
            score_queue_bound: 1024,
            score_batch_max: 64,
            score_workers: 1,
            job_batch_size: 1000,
            shutdown_grace_ms: 30_000,
            log_level: "info".to_owned(),
            credentials: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// Credentials for one external store, matched by host and path prefix.
#[derive(Clone, Deserialize)]
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

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("host", &self.host)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// `application.json`: every key optional; an unknown key is refused, naming it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    group: Option<String>,
    tags: Option<TagList>,
    bind: Option<String>,
    port: Option<u16>,
    scoring_port: Option<u16>,
    data_dir: Option<PathBuf>,
    roundtrip_timeout_ms: Option<u64>,
    score_queue_bound: Option<usize>,
    score_batch_max: Option<usize>,
    score_workers: Option<usize>,
    job_batch_size: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    log_level: Option<String>,
    #[serde(default)]
    credentials: Vec<Credential>,
    record_timeout_ms: Option<u64>,
    job_record_timeout_ms: Option<u64>,
    memory_limit_mib: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TagList {
    List(Vec<String>),
    Text(String),
}

/// Settings given as text, by key: environment variables and flags. Keys are the
/// `application.json` names (`port`, `roundtripTimeoutMs`, ...).
pub type Overrides = BTreeMap<String, String>;

/// Environment variables read, and the key each one sets; the reference's names and the
/// engine's own (`ENGINE_*`). The engine's own win over the reference's.
pub const ENV_KEYS: [(&str, &str); 20] = [
    ("MODELOP_API_PORT", "port"),
    ("MODELOP_ENGINE_NAME", "name"),
    ("MODELOP_RUNTIME_GROUP", "group"),
    ("MODELOP_RUNTIME_INITIAL_TAGS", "tags"),
    ("MODELOP_ROUNDTRIP_DEFAULT_TIMEOUT", "roundtripTimeoutMs"),
    ("MODELOP_LOG_LEVEL", "logLevel"),
    ("ENGINE_NAME", "name"),
    ("ENGINE_GROUP", "group"),
    ("ENGINE_TAGS", "tags"),
    ("ENGINE_BIND", "bind"),
    ("ENGINE_PORT", "port"),
    ("ENGINE_SCORING_PORT", "scoringPort"),
    ("ENGINE_DATA_DIR", "dataDir"),
    ("ENGINE_ROUNDTRIP_TIMEOUT_MS", "roundtripTimeoutMs"),
    ("ENGINE_SCORE_QUEUE_BOUND", "scoreQueueBound"),
    ("ENGINE_SCORE_BATCH_MAX", "scoreBatchMax"),
    ("ENGINE_SCORE_WORKERS", "scoreWorkers"),
    ("ENGINE_JOB_BATCH_SIZE", "jobBatchSize"),
    ("ENGINE_SHUTDOWN_GRACE_MS", "shutdownGraceMs"),
    ("ENGINE_LOG", "logLevel"),
];

/// The environment's settings, given a way to look variables up.
pub fn overrides_from_env(lookup: impl Fn(&str) -> Option<String>) -> Overrides {
    let mut out = Overrides::new();
    for &(var, key) in ENV_KEYS.iter().chain(LIMIT_ENV_KEYS.iter()) {
        if let Some(v) = lookup(var) {
            if !v.trim().is_empty() {
                out.insert(key.to_owned(), v);
            }
        }
    }
    out
}

impl Config {
    /// Builds the configuration from `application.json` (if any), then each layer of
    /// overrides in order (environment, then flags). Refuses what cannot work, naming the
    /// key and why.
    pub fn load(file: Option<&Path>, layers: &[Overrides]) -> Result<Config> {
        let mut cfg = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::config(path.display().to_string(), e.to_string()))?;
            let fc: FileConfig = serde_json::from_str(&text).map_err(|e| {
                Error::config(
                    path.display().to_string(),
                    format!("not a valid application.json: {e}"),
                )
            })?;
            cfg.apply_file(fc)?;
        }
        for layer in layers {
            for (key, value) in layer {
                cfg.set(key, value)?;
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_file(&mut self, fc: FileConfig) -> Result<()> {
        self.limits.apply_file(&fc);
        let mut text = Overrides::new();
        if let Some(v) = fc.bind {
            text.insert("bind".into(), v);
        }
        if let Some(v) = fc.log_level {
            text.insert("logLevel".into(), v);
        }
        for (k, v) in text {
            self.set(&k, &v)?;
        }
        if let Some(v) = fc.name {
            self.name = v;
        }
        if fc.group.is_some() {
            self.group = fc.group;
        }
        match fc.tags {
            Some(TagList::List(l)) => self.tags = normalize_tags(l.iter().map(String::as_str))?,
            Some(TagList::Text(t)) => self.tags = parse_tags(&t)?,
            None => {}
        }
        if let Some(v) = fc.port {
            self.port = v;
        }
        if fc.scoring_port.is_some() {
            self.scoring_port = fc.scoring_port;
        }
        if let Some(v) = fc.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = fc.roundtrip_timeout_ms {
            self.roundtrip_timeout_ms = v;
        }
        if let Some(v) = fc.score_queue_bound {
            self.score_queue_bound = v;
        }
        if let Some(v) = fc.score_batch_max {
            self.score_batch_max = v;
        }
        if let Some(v) = fc.score_workers {
            self.score_workers = v;
        }
        if let Some(v) = fc.job_batch_size {
            self.job_batch_size = v;
        }
        if let Some(v) = fc.shutdown_grace_ms {
            self.shutdown_grace_ms = v;
        }
        self.credentials = fc.credentials;
        Ok(())
    }

    /// Sets one key from text.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let v = value.trim();
        if self.limits.set(key, v)? {
            return Ok(());
        }
        match key {
            "name" => {
                if v.is_empty() {
                    return Err(Error::config(key, "must not be empty"));
                }
                self.name = v.to_owned();
            }
            "group" => self.group = (!v.is_empty()).then(|| v.to_owned()),
            "tags" => self.tags = parse_tags(v)?,
            "bind" => {
                self.bind = v
                    .parse()
                    .map_err(|_| Error::config(key, format!("'{v}' is not an IP address")))?
            }
            "port" => self.port = number(key, v)?,
            "scoringPort" => self.scoring_port = Some(number(key, v)?),
            "dataDir" => self.data_dir = PathBuf::from(v),
            "roundtripTimeoutMs" => self.roundtrip_timeout_ms = number(key, v)?,
            "scoreQueueBound" => self.score_queue_bound = number(key, v)?,
            "scoreBatchMax" => self.score_batch_max = number(key, v)?,
            "scoreWorkers" => self.score_workers = number(key, v)?,
            "jobBatchSize" => self.job_batch_size = number(key, v)?,
            "shutdownGraceMs" => self.shutdown_grace_ms = number(key, v)?,
            "logLevel" => self.log_level = v.to_ascii_lowercase(),
            other => return Err(Error::config(other, "unknown configuration key")),
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if self.roundtrip_timeout_ms == 0 {
            return Err(Error::config("roundtripTimeoutMs", "must be at least 1"));
        }
        if self.score_queue_bound == 0 {
            return Err(Error::config("scoreQueueBound", "must be at least 1"));
        }
        if !(1..=64).contains(&self.score_workers) {
            return Err(Error::config("scoreWorkers", "must be 1 to 64"));
        }
        if !(1..=100_000).contains(&self.score_batch_max) {
            return Err(Error::config("scoreBatchMax", "must be 1 to 100000"));
        }
        if !(1..=1_000_000).contains(&self.job_batch_size) {
            return Err(Error::config("jobBatchSize", "must be 1 to 1000000"));
        }
        if self.scoring_port.is_some() && self.scoring_port == Some(self.port) && self.port != 0 {
            return Err(Error::config(
                "scoringPort",
                "must differ from the control port",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::config("dataDir", "must not be empty"));
        }
        let level = self.log_level.as_str();
        let known = ["trace", "debug", "info", "warn", "warning", "error", "off"];
        if !known.contains(&level) && !level.contains('=') {
            return Err(Error::config(
                "logLevel",
                format!("'{level}' is not one of trace, debug, info, warn, error, off"),
            ));
        }
        for (i, c) in self.credentials.iter().enumerate() {
            if c.host.trim().is_empty() {
                return Err(Error::config(
                    format!("credentials[{i}].host"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }

    /// The credentials matching a URL's host and path, if any.
    pub fn credential_for(&self, host: &str, path: &str) -> Option<&Credential> {
        self.credentials
            .iter()
            .filter(|c| c.host.eq_ignore_ascii_case(host))
            .filter(|c| c.path.as_deref().is_none_or(|p| path.starts_with(p)))
            .max_by_key(|c| c.path.as_deref().map_or(0, str::len))
    }
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| Error::config(key, format!("'{v}' is not a valid number here")))
}

/// Tags as the reference gives them: `"DEV, cc-fraud"`.
pub fn parse_tags(text: &str) -> Result<Vec<String>> {
    normalize_tags(text.split(','))
}

/// Trims tags, writes stage tags in capitals, drops blanks and duplicates; refuses tags
/// with control characters or over 100 characters.
pub fn normalize_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = t.trim();
        if t.is_empty() {
            continue;
        }
        if t.len() > 100 || t.chars().any(char::is_control) {
            return Err(Error::config(
                "tags",
                format!("'{}' is not a usable tag", t.escape_default()),
            ));
        }
        let t = if STAGE_TAGS.iter().any(|s| s.eq_ignore_ascii_case(t)) {
            t.to_ascii_uppercase()
        } else {
            t.to_owned()
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(pairs: &[(&str, &str)]) -> Overrides {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn later_layers_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("application.json");
        std::fs::write(
            &file,
            r#"{"port": 9000, "name": "from-file", "tags": ["dev"], "credentials": [{"host": "s3.local", "secretAccessKey": "x"}]}"#,
        )
        .unwrap();
        let env = overrides_from_env(|k| match k {
            "MODELOP_API_PORT" => Some("9100".into()),
            "MODELOP_RUNTIME_INITIAL_TAGS" => Some("uat, cc-fraud".into()),
            _ => None,
        });
        let flags = layer(&[("port", "9200")]);
        let cfg = Config::load(Some(&file), &[env, flags]).unwrap();
        assert_eq!(cfg.port, 9200);
        assert_eq!(cfg.name, "from-file");
        assert_eq!(cfg.tags, vec!["UAT", "cc-fraud"]);
        assert!(cfg.credential_for("s3.local", "/bucket").is_some());
        assert!(!format!("{cfg:?}").contains("secret"));
    }

    #[test]
    fn invalid_config_names_the_key() {
        let e = Config::load(None, &[layer(&[("port", "eighty")])]).unwrap_err();
        assert!(e.to_string().contains("'port'"), "{e}");
        let e = Config::load(None, &[layer(&[("roundtripTimeoutMs", "0")])]).unwrap_err();
        assert!(e.to_string().contains("roundtripTimeoutMs"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("application.json");
        std::fs::write(&file, r#"{"prot": 1}"#).unwrap();
        let e = Config::load(Some(&file), &[]).unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
    }
}
