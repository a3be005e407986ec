//! The engine's configuration: defaults, then `application.json`, then environment
//! variables, then command-line flags, later winning. The binary reads the file's path,
//! the environment and the flags and hands them here; this crate reads none of them itself.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use endpoints::{Credential, Credentials};
use serde::Deserialize;

use crate::auth::Token;
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
    /// How many of a deployed model's workers that died on their own are replaced
    /// (`workerRestartBudget`); `None`, the default: no bound. Workers killed for breaking
    /// a limit are always replaced.
    pub worker_restart_budget: Option<u32>,
    /// The longest wait between two attempts to start a deployed model's worker that
    /// cannot start (`workerRestartBackoffMaxMs`); the wait starts at 100 ms and doubles.
    pub worker_restart_backoff_max_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            record_timeout_ms: 60_000,
            job_record_timeout_ms: 600_000,
            memory_limit_mib: 0,
            worker_restart_budget: None,
            worker_restart_backoff_max_ms: 5_000,
        }
    }
}

/// Environment variables of the limits, and the key each one sets.
pub const LIMIT_ENV_KEYS: [(&str, &str); 5] = [
    ("ENGINE_RECORD_TIMEOUT_MS", "recordTimeoutMs"),
    ("ENGINE_JOB_RECORD_TIMEOUT_MS", "jobRecordTimeoutMs"),
    ("ENGINE_MEMORY_LIMIT_MIB", "memoryLimitMib"),
    ("ENGINE_WORKER_RESTART_BUDGET", "workerRestartBudget"),
    (
        "ENGINE_WORKER_RESTART_BACKOFF_MAX_MS",
        "workerRestartBackoffMaxMs",
    ),
];

impl Limits {
    /// Sets `key` if it is one of the limits'; `Ok(false)` if it is not.
    fn set(&mut self, key: &str, v: &str) -> Result<bool> {
        match key {
            "recordTimeoutMs" => self.record_timeout_ms = number(key, v)?,
            "jobRecordTimeoutMs" => self.job_record_timeout_ms = number(key, v)?,
            "memoryLimitMib" => self.memory_limit_mib = number(key, v)?,
            "workerRestartBudget" => self.worker_restart_budget = Some(number(key, v)?),
            "workerRestartBackoffMaxMs" => self.worker_restart_backoff_max_ms = number(key, v)?,
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
        if let Some(v) = fc.worker_restart_budget {
            self.worker_restart_budget = Some(v);
        }
        if let Some(v) = fc.worker_restart_backoff_max_ms {
            self.worker_restart_backoff_max_ms = v;
        }
    }

    /// How a deployed model's workers are replaced: the restart budget and backoff.
    pub fn restart_policy(&self) -> runtime_core::RestartPolicy {
        let max = std::time::Duration::from_millis(self.worker_restart_backoff_max_ms);
        let backoff = runtime_core::Backoff::default();
        runtime_core::RestartPolicy {
            budget: self.worker_restart_budget,
            backoff: runtime_core::Backoff {
                first: backoff.first.min(max),
                max,
            },
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
    let own = |key: &str, default: u64| {
        document_number(
            document,
            key,
            default,
            0..=u64::MAX,
            "a whole number, 0 for no limit",
        )
    };
    let timeout_ms = own("recordTimeoutMs", timeout_ms)?;
    let memory_mib = own("memoryLimitMib", memory_mib)?;
    Ok(worker::WorkerLimits {
        record_timeout: (timeout_ms > 0).then(|| std::time::Duration::from_millis(timeout_ms)),
        memory_bytes: (memory_mib > 0).then(|| memory_mib.saturating_mul(1 << 20)),
        slow_record_warning: None,
    })
}

/// A number a deployment or job document may set at its top level for itself: `default`
/// when it does not; a 400 saying what it must be (`what`) when it is not a whole number
/// in `range`.
fn document_number(
    document: &serde_json::Value,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    what: &str,
) -> Result<u64> {
    match document.get(key) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| range.contains(n))
            .ok_or_else(|| Error::BadRequest(format!("'{key}' must be {what}"))),
    }
}

/// The bounds of `scoreBatchMax` and `scoreBatchWaitMs`, the engine's and a deployment's.
const SCORE_BATCH_MAX: std::ops::RangeInclusive<u64> = 1..=100_000;
const SCORE_BATCH_WAIT_MS: std::ops::RangeInclusive<u64> = 0..=10_000;

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
    /// The port of the Open Inference Protocol's gRPC service (off without one).
    pub grpc_port: Option<u16>,
    pub data_dir: PathBuf,
    /// Roundtrip timeout when the request names none.
    pub roundtrip_timeout_ms: u64,
    /// Scoring requests waiting for the deployed model beyond which requests get 503.
    pub score_queue_bound: usize,
    /// Requests the deployed model's worker gets in one batch at most.
    pub score_batch_max: usize,
    /// How long a batch of requests short of `score_batch_max` waits for more before it
    /// goes to a free worker (0: never waits; what is queued goes at once).
    pub score_batch_wait_ms: u64,
    /// Warm workers of the deployed model; requests go to whichever is free.
    pub score_workers: usize,
    /// Records per batch of a batch job.
    pub job_batch_size: usize,
    /// How long SIGTERM waits for the running job and in-flight requests.
    pub shutdown_grace_ms: u64,
    pub log_level: String,
    /// `text` (one human-readable line per entry) or `json` (one JSON object per line, for
    /// log collectors).
    pub log_format: String,
    /// Credentials for external stores, from `application.json` only. Never logged; the
    /// job queue's endpoint registry hands the matching entry to an endpoint's opener.
    pub credentials: Credentials,
    /// `kafka.properties` of `application.json`: librdkafka settings for every Kafka client
    /// the engine opens (a stream descriptor's `Properties` take precedence). Never logged:
    /// they may hold passwords.
    pub kafka_properties: BTreeMap<String, String>,
    /// `hdfs` of `application.json`: how HDFS is reached through WebHDFS.
    pub hdfs: HdfsConfig,
    /// `spark` of `application.json`: where batch jobs with `"runtime": "spark"` run
    /// (docs/spark.md).
    pub spark: engine_spark::SparkSettings,

    // Paths, uploads and retention.
    /// Folders under which job and deployment documents may name local paths; empty: the
    /// data folder alone.
    pub allowed_paths: Vec<PathBuf>,
    /// Largest body of a JSON or scoring request (job and deployment documents included).
    pub max_request_bytes: u64,
    /// Largest multipart upload (a job's or a deployment's files).
    pub max_upload_bytes: u64,
    /// Uploads received at once; more get 503 with Retry-After.
    pub max_concurrent_uploads: usize,
    /// Which finished jobs are kept.
    pub job_retention: JobRetention,

    // Authentication, TLS and what workers inherit.
    /// Required as a bearer token on every control route but `/1/health` and `/ready`.
    pub auth_token: Option<Token>,
    /// The scoring port's own token (default: the control token).
    pub scoring_auth_token: Option<Token>,
    /// The scoring port takes requests without a token.
    pub scoring_open: bool,
    /// Serving a non-loopback address without a token was asked for explicitly.
    pub allow_insecure: bool,
    /// PEM certificate chain and private key: both ports speak HTTPS when set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Variables of the engine's environment model workers get beyond the allow-list of
    /// `worker::env` (names, or prefixes ending in `*`).
    pub worker_env: Vec<String>,

    /// Per-record time and memory limits on model workers.
    pub limits: Limits,
}

/// Finished jobs kept: the oldest go first once any bound is passed; 0 switches a bound
/// off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRetention {
    #[serde(default = "JobRetention::default_max_jobs")]
    pub max_jobs: u64,
    #[serde(default = "JobRetention::default_max_age_days")]
    pub max_age_days: u64,
    #[serde(default = "JobRetention::default_max_bytes")]
    pub max_bytes: u64,
}

impl JobRetention {
    fn default_max_jobs() -> u64 {
        1000
    }
    fn default_max_age_days() -> u64 {
        30
    }
    fn default_max_bytes() -> u64 {
        10 << 30
    }
}

impl Default for JobRetention {
    fn default() -> Self {
        JobRetention {
            max_jobs: Self::default_max_jobs(),
            max_age_days: Self::default_max_age_days(),
            max_bytes: Self::default_max_bytes(),
        }
    }
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
            .field("grpc_port", &self.grpc_port)
            .field("data_dir", &self.data_dir)
            .field("roundtrip_timeout_ms", &self.roundtrip_timeout_ms)
            .field("score_queue_bound", &self.score_queue_bound)
            .field("score_batch_max", &self.score_batch_max)
            .field("score_batch_wait_ms", &self.score_batch_wait_ms)
            .field("score_workers", &self.score_workers)
            .field("job_batch_size", &self.job_batch_size)
            .field("shutdown_grace_ms", &self.shutdown_grace_ms)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .field(
                "credentials",
                &format!("{} entries", self.credentials.len()),
            )
            .field(
                "kafka_properties",
                &self.kafka_properties.keys().collect::<Vec<_>>(),
            )
            .field("hdfs", &self.hdfs)
            .field("spark", &self.spark)
            .field("allowed_paths", &self.allowed_paths)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_concurrent_uploads", &self.max_concurrent_uploads)
            .field("job_retention", &self.job_retention)
            .field("auth_token", &self.auth_token)
            .field("scoring_auth_token", &self.scoring_auth_token)
            .field("scoring_open", &self.scoring_open)
            .field("allow_insecure", &self.allow_insecure)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("worker_env", &self.worker_env)
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
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 8003,
            scoring_port: None,
            grpc_port: None,
            data_dir: PathBuf::from("engine-data"),
            roundtrip_timeout_ms: 5000,
            score_queue_bound: 1024,
            score_batch_max: 64,
            score_batch_wait_ms: 0,
            score_workers: 1,
            job_batch_size: 1000,
            shutdown_grace_ms: 30_000,
            log_level: "info".to_owned(),
            log_format: "text".to_owned(),
            credentials: Credentials::default(),
            kafka_properties: BTreeMap::new(),
            hdfs: HdfsConfig::default(),
            spark: engine_spark::SparkSettings::default(),
            allowed_paths: Vec::new(),
            max_request_bytes: 16 << 20,
            max_upload_bytes: 1 << 30,
            max_concurrent_uploads: 4,
            job_retention: JobRetention::default(),
            auth_token: None,
            scoring_auth_token: None,
            scoring_open: false,
            allow_insecure: false,
            tls_cert: None,
            tls_key: None,
            worker_env: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// `hdfs` of `application.json`: how HDFS is reached through its WebHDFS REST API.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HdfsConfig {
    /// A namenode's RPC address as `hdfs://` URLs name it (`namenode:8020`, or an HA
    /// nameservice) to its WebHDFS HTTP address (`http://namenode:9870`); without an entry,
    /// port 8020 (or none) maps to 9870 on the same host.
    #[serde(default)]
    pub namenodes: BTreeMap<String, String>,
    /// `user.name` of simple authentication (else `HADOOP_USER_NAME`, else the engine's
    /// user).
    #[serde(default)]
    pub user: Option<String>,
    /// A delegation token, sent instead of the user. Never logged.
    #[serde(default)]
    pub delegation_token: Option<String>,
}

impl std::fmt::Debug for HdfsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HdfsConfig")
            .field("namenodes", &self.namenodes)
            .field("user", &self.user)
            .field(
                "delegation_token",
                &self.delegation_token.as_ref().map(|_| "(set)"),
            )
            .finish()
    }
}

/// `kafka` of `application.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaFileConfig {
    /// librdkafka settings; numbers and booleans are taken as their text.
    #[serde(default)]
    properties: BTreeMap<String, serde_json::Value>,
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
    grpc_port: Option<u16>,
    data_dir: Option<PathBuf>,
    roundtrip_timeout_ms: Option<u64>,
    score_queue_bound: Option<usize>,
    score_batch_max: Option<usize>,
    score_batch_wait_ms: Option<u64>,
    score_workers: Option<usize>,
    job_batch_size: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    log_level: Option<String>,
    log_format: Option<String>,
    #[serde(default)]
    credentials: Credentials,
    kafka: Option<KafkaFileConfig>,
    hdfs: Option<HdfsConfig>,
    spark: Option<engine_spark::SparkSettings>,
    allowed_paths: Option<PathList>,
    max_request_bytes: Option<u64>,
    max_upload_bytes: Option<u64>,
    max_concurrent_uploads: Option<usize>,
    job_retention: Option<JobRetention>,
    auth_token: Option<String>,
    scoring_auth_token: Option<String>,
    scoring_open: Option<bool>,
    allow_insecure: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    worker_env: Option<TagList>,
    record_timeout_ms: Option<u64>,
    job_record_timeout_ms: Option<u64>,
    memory_limit_mib: Option<u64>,
    worker_restart_budget: Option<u32>,
    worker_restart_backoff_max_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PathList {
    List(Vec<PathBuf>),
    Text(String),
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
pub const ENV_KEYS: [(&str, &str); 28] = [
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
    ("ENGINE_GRPC_PORT", "grpcPort"),
    ("ENGINE_DATA_DIR", "dataDir"),
    ("ENGINE_ROUNDTRIP_TIMEOUT_MS", "roundtripTimeoutMs"),
    ("ENGINE_SCORE_QUEUE_BOUND", "scoreQueueBound"),
    ("ENGINE_SCORE_BATCH_MAX", "scoreBatchMax"),
    ("ENGINE_SCORE_BATCH_WAIT_MS", "scoreBatchWaitMs"),
    ("ENGINE_SCORE_WORKERS", "scoreWorkers"),
    ("ENGINE_JOB_BATCH_SIZE", "jobBatchSize"),
    ("ENGINE_SHUTDOWN_GRACE_MS", "shutdownGraceMs"),
    ("ENGINE_LOG", "logLevel"),
    ("ENGINE_TOKEN", "authToken"),
    ("ENGINE_SCORING_TOKEN", "scoringAuthToken"),
    ("ENGINE_TLS_CERT", "tlsCert"),
    ("ENGINE_TLS_KEY", "tlsKey"),
    ("ENGINE_WORKER_ENV", "workerEnv"),
    ("ENGINE_LOG_FORMAT", "logFormat"),
];

/// Environment variables of the path, upload and retention settings.
pub const ENV_KEYS_STORAGE: [(&str, &str); 4] = [
    ("ENGINE_ALLOWED_PATHS", "allowedPaths"),
    ("ENGINE_MAX_REQUEST_BYTES", "maxRequestBytes"),
    ("ENGINE_MAX_UPLOAD_BYTES", "maxUploadBytes"),
    ("ENGINE_MAX_CONCURRENT_UPLOADS", "maxConcurrentUploads"),
];

/// The environment's settings, given a way to look variables up.
pub fn overrides_from_env(lookup: impl Fn(&str) -> Option<String>) -> Overrides {
    let mut out = Overrides::new();
    for &(var, key) in ENV_KEYS
        .iter()
        .chain(ENV_KEYS_STORAGE.iter())
        .chain(LIMIT_ENV_KEYS.iter())
    {
        if let Some(v) = lookup(var) {
            if !v.trim().is_empty() {
                out.insert(key.to_owned(), v);
            }
        }
    }
    out
}

/// `application.json` read; on a problem, the key it lies at (`jobRetention.maxJobs`, an
/// unknown key itself, or `application.json` for text that is not a JSON object) and why.
fn file_config(text: &str) -> std::result::Result<FileConfig, (String, String)> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        let why = inner.to_string();
        // The path of an unknown key ends with the key itself.
        let unknown = why
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(key, _)| key.to_owned());
        match unknown {
            Some(key) => {
                let key = if at == "." { key } else { at };
                let known = why.split_once(", expected").map_or("", |(_, k)| k);
                (key, format!("unknown key; expected{known}"))
            }
            None if at == "." => (
                "application.json".to_owned(),
                format!("not a valid application.json: {why}"),
            ),
            None => (at, why),
        }
    })
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
            let fc: FileConfig = file_config(&text).map_err(|(key, why)| {
                Error::config(key, format!("{why} (in {})", path.display()))
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
        if let Some(v) = fc.log_format {
            text.insert("logFormat".into(), v);
        }
        if let Some(v) = fc.log_level {
            text.insert("logLevel".into(), v);
        }
        if let Some(v) = fc.auth_token {
            text.insert("authToken".into(), v);
        }
        if let Some(v) = fc.scoring_auth_token {
            text.insert("scoringAuthToken".into(), v);
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
        if fc.grpc_port.is_some() {
            self.grpc_port = fc.grpc_port;
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
        if let Some(v) = fc.score_batch_wait_ms {
            self.score_batch_wait_ms = v;
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
        if let Some(v) = fc.scoring_open {
            self.scoring_open = v;
        }
        if let Some(v) = fc.allow_insecure {
            self.allow_insecure = v;
        }
        if fc.tls_cert.is_some() {
            self.tls_cert = fc.tls_cert;
        }
        if fc.tls_key.is_some() {
            self.tls_key = fc.tls_key;
        }
        match fc.worker_env {
            Some(TagList::List(l)) => {
                self.worker_env = variable_names(l.iter().map(String::as_str))?
            }
            Some(TagList::Text(t)) => self.worker_env = variable_names(t.split(','))?,
            None => {}
        }
        self.credentials = fc.credentials;
        if let Some(kafka) = fc.kafka {
            self.kafka_properties = kafka
                .properties
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => Ok((k, s)),
                    serde_json::Value::Number(n) => Ok((k, n.to_string())),
                    serde_json::Value::Bool(b) => Ok((k, b.to_string())),
                    _ => Err(Error::config(
                        format!("kafka.properties.{k}"),
                        "must be a string, a number or a boolean",
                    )),
                })
                .collect::<Result<_>>()?;
        }
        if let Some(hdfs) = fc.hdfs {
            self.hdfs = hdfs;
        }
        if let Some(spark) = fc.spark {
            self.spark = spark;
        }
        match fc.allowed_paths {
            Some(PathList::List(l)) => self.allowed_paths = l,
            Some(PathList::Text(t)) => self.set("allowedPaths", &t)?,
            None => {}
        }
        if let Some(v) = fc.max_request_bytes {
            self.max_request_bytes = v;
        }
        if let Some(v) = fc.max_upload_bytes {
            self.max_upload_bytes = v;
        }
        if let Some(v) = fc.max_concurrent_uploads {
            self.max_concurrent_uploads = v;
        }
        if let Some(v) = fc.job_retention {
            self.job_retention = v;
        }
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
                let v = v.trim();
                self.bind = if v.eq_ignore_ascii_case("localhost") {
                    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
                } else if let Ok(ip) = v.parse() {
                    ip
                } else if v.parse::<std::net::SocketAddr>().is_ok() {
                    return Err(Error::config(
                        key,
                        format!("'{v}' holds a port: give the address alone (the port is 'port', --port)"),
                    ));
                } else {
                    return Err(Error::config(
                        key,
                        format!(
                            "'{v}' is not an IP address (127.0.0.1, 0.0.0.0, ::1, or localhost)"
                        ),
                    ));
                }
            }
            "port" => self.port = number(key, v)?,
            "scoringPort" => self.scoring_port = Some(number(key, v)?),
            "grpcPort" => self.grpc_port = Some(number(key, v)?),
            "dataDir" => self.data_dir = PathBuf::from(v),
            "roundtripTimeoutMs" => self.roundtrip_timeout_ms = number(key, v)?,
            "scoreQueueBound" => self.score_queue_bound = number(key, v)?,
            "scoreBatchMax" => self.score_batch_max = number(key, v)?,
            "scoreBatchWaitMs" => self.score_batch_wait_ms = number(key, v)?,
            "scoreWorkers" => self.score_workers = number(key, v)?,
            "jobBatchSize" => self.job_batch_size = number(key, v)?,
            "shutdownGraceMs" => self.shutdown_grace_ms = number(key, v)?,
            "logLevel" => self.log_level = v.to_ascii_lowercase(),
            // Paths as PATH lists them: separated by ':'.
            "allowedPaths" => {
                self.allowed_paths = std::env::split_paths(v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            }
            "maxRequestBytes" => self.max_request_bytes = number(key, v)?,
            "maxUploadBytes" => self.max_upload_bytes = number(key, v)?,
            "maxConcurrentUploads" => self.max_concurrent_uploads = number(key, v)?,
            "jobRetention.maxJobs" => self.job_retention.max_jobs = number(key, v)?,
            "jobRetention.maxAgeDays" => self.job_retention.max_age_days = number(key, v)?,
            "jobRetention.maxBytes" => self.job_retention.max_bytes = number(key, v)?,
            "authToken" => self.auth_token = Some(Token::new(key, v)?),
            "scoringAuthToken" => self.scoring_auth_token = Some(Token::new(key, v)?),
            "scoringOpen" => self.scoring_open = boolean(key, v)?,
            "allowInsecure" => self.allow_insecure = boolean(key, v)?,
            "tlsCert" => self.tls_cert = (!v.is_empty()).then(|| PathBuf::from(v)),
            "tlsKey" => self.tls_key = (!v.is_empty()).then(|| PathBuf::from(v)),
            "workerEnv" => self.worker_env = variable_names(v.split(','))?,
            "logFormat" => self.log_format = v.trim().to_ascii_lowercase(),
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
        if !SCORE_BATCH_MAX.contains(&(self.score_batch_max as u64)) {
            return Err(Error::config("scoreBatchMax", "must be 1 to 100000"));
        }
        if !SCORE_BATCH_WAIT_MS.contains(&self.score_batch_wait_ms) {
            return Err(Error::config("scoreBatchWaitMs", "must be 0 to 10000"));
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
        if let Some(g) = self.grpc_port.filter(|g| *g != 0) {
            if g == self.port || Some(g) == self.scoring_port {
                return Err(Error::config(
                    "grpcPort",
                    "must differ from the control and scoring ports",
                ));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::config("dataDir", "must not be empty"));
        }
        if !self.bind.is_loopback() && self.auth_token.is_none() && !self.allow_insecure {
            return Err(Error::config(
                "bind",
                format!(
                    "{} is not a loopback address and no token is configured: anyone who reaches \
                     the port could run code. Create a token with `engine token > token.txt` and \
                     start with --auth-token-file token.txt (or ENGINE_TOKEN or ENGINE_TOKEN_FILE, or \
                     authToken in application.json); or serve without authentication on purpose with \
                     --insecure-no-auth (allowInsecure: true)",
                    self.bind
                ),
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(Error::config("tlsKey", "tlsCert needs tlsKey")),
            (None, Some(_)) => return Err(Error::config("tlsCert", "tlsKey needs tlsCert")),
            _ => {}
        }
        if self.scoring_open && self.scoring_auth_token.is_some() {
            return Err(Error::config(
                "scoringOpen",
                "cannot be true when scoringAuthToken is set",
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(Error::config(
                "logFormat",
                format!("'{}' is not one of text, json", self.log_format),
            ));
        }
        let level = self.log_level.as_str();
        let known = ["trace", "debug", "info", "warn", "warning", "error", "off"];
        if !known.contains(&level) && !level.contains('=') {
            return Err(Error::config(
                "logLevel",
                format!("'{level}' is not one of trace, debug, info, warn, error, off"),
            ));
        }
        for p in &self.allowed_paths {
            if !p.is_absolute() {
                return Err(Error::config(
                    "allowedPaths",
                    format!("'{}' is not an absolute path", p.display()),
                ));
            }
        }
        if self.max_request_bytes < 1024 {
            return Err(Error::config("maxRequestBytes", "must be at least 1024"));
        }
        if self.max_upload_bytes < 1024 {
            return Err(Error::config("maxUploadBytes", "must be at least 1024"));
        }
        if self.max_concurrent_uploads == 0 {
            return Err(Error::config("maxConcurrentUploads", "must be at least 1"));
        }
        for (i, c) in self.credentials.entries().iter().enumerate() {
            if c.host.trim().is_empty() {
                return Err(Error::config(
                    format!("credentials[{i}].host"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }

    /// How the deployed model's waiting requests are batched to a free worker:
    /// `scoreBatchMax` and `scoreBatchWaitMs`.
    pub fn score_batching(&self) -> jobs::Batching {
        jobs::Batching::new(self.score_batch_max)
            .waiting(std::time::Duration::from_millis(self.score_batch_wait_ms))
    }

    /// How a deployment batches its requests: the document's own `scoreBatchMax` and
    /// `scoreBatchWaitMs` (top level), else the engine's ([`Config::score_batching`]); the
    /// same bounds as the engine's settings.
    pub fn deployment_batching(&self, document: &serde_json::Value) -> Result<jobs::Batching> {
        let max = document_number(
            document,
            "scoreBatchMax",
            self.score_batch_max as u64,
            SCORE_BATCH_MAX,
            "a whole number from 1 to 100000",
        )?;
        let wait = document_number(
            document,
            "scoreBatchWaitMs",
            self.score_batch_wait_ms,
            SCORE_BATCH_WAIT_MS,
            "a whole number from 0 to 10000",
        )?;
        Ok(
            jobs::Batching::new(usize::try_from(max).unwrap_or(usize::MAX))
                .waiting(std::time::Duration::from_millis(wait)),
        )
    }

    /// How a batch job's records are batched: `jobBatchSize`.
    pub fn job_batching(&self) -> jobs::Batching {
        jobs::Batching::new(self.job_batch_size)
    }

    /// The folders local paths of documents must lie under: `allowedPaths`, or the data
    /// folder; outputs never name the engine's own files in the data folder.
    pub fn path_policy(&self) -> crate::paths::PathPolicy {
        let roots = if self.allowed_paths.is_empty() {
            vec![self.data_dir.clone()]
        } else {
            self.allowed_paths.clone()
        };
        crate::paths::PathPolicy::new(roots).protecting(self.data_dir.clone())
    }

    /// The certificate and key the ports serve, read now; `None` without TLS.
    pub fn tls(&self) -> Result<Option<crate::tls::TlsReloader>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => crate::tls::TlsReloader::load(cert, key).map(Some),
            _ => Ok(None),
        }
    }

    /// The credentials matching a URL's host and path, if any.
    pub fn credential_for(&self, host: &str, path: &str) -> Option<&Credential> {
        self.credentials.matching(host, path)
    }
}

fn boolean(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(Error::config(key, format!("'{v}' is not true or false"))),
    }
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| Error::config(key, format!("'{v}' is not a valid number here")))
}

/// Environment variable names, or prefixes ending in `*` (`DB_URL`, `AWS_*`).
fn variable_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for n in names {
        let n = n.trim();
        if n.is_empty() {
            continue;
        }
        let stem = n.strip_suffix('*').unwrap_or(n);
        if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::config(
                "workerEnv",
                format!(
                    "'{}' is not a variable name (or a prefix ending in *)",
                    n.escape_default()
                ),
            ));
        }
        out.push(n.to_owned());
    }
    Ok(out)
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
    fn batching_of_deployments_and_jobs_comes_from_their_keys() {
        let cfg = Config::load(
            None,
            &[layer(&[
                ("scoreBatchMax", "8"),
                ("scoreBatchWaitMs", "5"),
                ("jobBatchSize", "100"),
            ])],
        )
        .unwrap();
        assert_eq!(
            cfg.score_batching(),
            jobs::Batching {
                size: 8,
                max_wait: Some(std::time::Duration::from_millis(5))
            }
        );
        assert_eq!(cfg.job_batching(), jobs::Batching::new(100));
        // No wait unless one is set.
        let cfg = Config::load(None, &[]).unwrap();
        assert_eq!(cfg.score_batching(), jobs::Batching::new(64));
        let e = Config::load(None, &[layer(&[("scoreBatchWaitMs", "20000")])]).unwrap_err();
        assert!(e.to_string().contains("'scoreBatchWaitMs'"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("application.json");
        std::fs::write(&file, r#"{"scoreBatchWaitMs": 3}"#).unwrap();
        let cfg = Config::load(Some(&file), &[]).unwrap();
        assert_eq!(cfg.score_batch_wait_ms, 3);
    }

    #[test]
    fn bind_takes_localhost_and_says_where_a_port_goes() {
        let cfg = Config::load(None, &[layer(&[("bind", "localhost")])]).unwrap();
        assert_eq!(cfg.bind, std::net::IpAddr::from([127, 0, 0, 1]));
        let e = Config::load(None, &[layer(&[("bind", "127.0.0.1:9000")])]).unwrap_err();
        assert!(e.to_string().contains("the port is 'port', --port"), "{e}");
        let e = Config::load(None, &[layer(&[("bind", "example.org")])]).unwrap_err();
        assert!(e.to_string().contains("not an IP address"), "{e}");
    }

    #[test]
    fn a_bad_application_json_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("application.json");
        let err = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Config::load(Some(&file), &[]).unwrap_err().to_string()
        };
        let e = err(r#"{"bogus": 1}"#);
        assert!(
            e.starts_with("invalid configuration: 'bogus': unknown key; expected one of `name`"),
            "{e}"
        );
        let e = err(r#"{"jobRetention": {"maxJob": 3}}"#);
        assert!(
            e.starts_with("invalid configuration: 'jobRetention.maxJob': unknown key"),
            "{e}"
        );
        let e = err(r#"{"port": "abc"}"#);
        assert!(
            e.starts_with("invalid configuration: 'port': invalid type: string"),
            "{e}"
        );
        assert!(e.contains("application.json"), "{e}");
        let e = err("\"just text\"");
        assert!(
            e.starts_with(
                "invalid configuration: 'application.json': not a valid application.json"
            ),
            "{e}"
        );
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
    fn a_non_loopback_bind_needs_a_token_or_an_explicit_choice() {
        let cfg = Config::load(None, &[]).unwrap();
        assert!(cfg.bind.is_loopback());
        let e = Config::load(None, &[layer(&[("bind", "0.0.0.0")])]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("--auth-token-file"), "{text}");
        assert!(text.contains("--insecure-no-auth"), "{text}");
        let token = "abcdefghijklmnop-0123456789";
        let cfg =
            Config::load(None, &[layer(&[("bind", "0.0.0.0"), ("authToken", token)])]).unwrap();
        assert!(!format!("{cfg:?}").contains(token));
        Config::load(
            None,
            &[layer(&[("bind", "0.0.0.0"), ("allowInsecure", "true")])],
        )
        .unwrap();
        let e = Config::load(None, &[layer(&[("authToken", "short")])]).unwrap_err();
        assert!(e.to_string().contains("authToken"), "{e}");
    }

    #[test]
    fn tls_needs_both_files_and_worker_env_names_variables() {
        let e = Config::load(None, &[layer(&[("tlsCert", "c.pem")])]).unwrap_err();
        assert!(e.to_string().contains("tlsKey"), "{e}");
        let e = Config::load(None, &[layer(&[("tlsKey", "k.pem")])]).unwrap_err();
        assert!(e.to_string().contains("tlsCert"), "{e}");
        let cfg = Config::load(None, &[layer(&[("workerEnv", "DB_URL, AWS_*")])]).unwrap();
        assert_eq!(cfg.worker_env, ["DB_URL", "AWS_*"]);
        let e = Config::load(None, &[layer(&[("workerEnv", "A B")])]).unwrap_err();
        assert!(e.to_string().contains("workerEnv"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("application.json");
        std::fs::write(
            &file,
            r#"{"workerEnv": ["FEATURE_*"], "scoringOpen": true, "allowInsecure": true, "bind": "0.0.0.0"}"#,
        )
        .unwrap();
        let cfg = Config::load(Some(&file), &[]).unwrap();
        assert_eq!(cfg.worker_env, ["FEATURE_*"]);
        assert!(cfg.scoring_open && cfg.allow_insecure);
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

    #[test]
    fn paths_upload_limits_and_retention_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("application.json");
        std::fs::write(
            &file,
            r#"{"allowedPaths": ["/srv/in", "/srv/out"], "maxUploadBytes": 5000, "jobRetention": {"maxJobs": 3}}"#,
        )
        .unwrap();
        let cfg = Config::load(Some(&file), &[layer(&[("maxConcurrentUploads", "2")])]).unwrap();
        assert_eq!(
            cfg.allowed_paths,
            vec![PathBuf::from("/srv/in"), PathBuf::from("/srv/out")]
        );
        assert_eq!(cfg.max_upload_bytes, 5000);
        assert_eq!(cfg.max_concurrent_uploads, 2);
        assert_eq!(cfg.job_retention.max_jobs, 3);
        assert_eq!(cfg.job_retention.max_age_days, 30);
        let env = overrides_from_env(|k| (k == "ENGINE_ALLOWED_PATHS").then(|| "/a:/b".into()));
        let cfg = Config::load(None, &[env]).unwrap();
        assert_eq!(
            cfg.allowed_paths,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        let e = Config::load(None, &[layer(&[("allowedPaths", "relative/dir")])]).unwrap_err();
        assert!(e.to_string().contains("allowedPaths"), "{e}");
        let e = Config::load(None, &[layer(&[("maxRequestBytes", "10")])]).unwrap_err();
        assert!(e.to_string().contains("maxRequestBytes"), "{e}");
    }

    #[test]
    fn the_restart_policy_is_read_from_every_layer() {
        let policy = Config::load(None, &[]).unwrap().limits.restart_policy();
        assert_eq!(policy.budget, None);
        assert_eq!(policy.backoff.max, std::time::Duration::from_secs(5));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("application.json");
        std::fs::write(&file, r#"{"workerRestartBudget": 3}"#).unwrap();
        let env = overrides_from_env(|k| {
            (k == "ENGINE_WORKER_RESTART_BACKOFF_MAX_MS").then(|| "50".into())
        });
        let cfg = Config::load(Some(&file), &[env]).unwrap();
        let policy = cfg.limits.restart_policy();
        assert_eq!(policy.budget, Some(3));
        assert_eq!(policy.backoff.max, std::time::Duration::from_millis(50));
        assert_eq!(policy.backoff.first, std::time::Duration::from_millis(50));
        let cfg = Config::load(None, &[layer(&[("workerRestartBudget", "0")])]).unwrap();
        assert_eq!(cfg.limits.restart_policy().budget, Some(0));
    }
}
