//! `engine serve`: the long-running service. Reads `application.json`, the environment
//! and the flags into one configuration, gives the service its runners, and turns SIGTERM
//! and SIGINT into a graceful stop.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use runtime_core::Language;
use service::config::{overrides_from_env, Overrides};
use service::{Config, Deps, Platform, RunnerSet};

use crate::exit;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (application.json).
    #[arg(long, value_name = "PATH", env = "ENGINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The control port (default 8003; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// A separate port serving only the scoring routes.
    #[arg(long)]
    pub scoring_port: Option<u16>,
    /// The port of the Open Inference Protocol's gRPC service (off by default).
    #[arg(long)]
    pub grpc_port: Option<u16>,
    /// The address to listen on (default 127.0.0.1). Any other needs a token, or
    /// --insecure-no-auth.
    #[arg(long)]
    pub bind: Option<String>,
    /// A file holding the token every request must bear (ENGINE_TOKEN_FILE; or
    /// `authToken`, ENGINE_TOKEN), such as a mounted secret.
    #[arg(long, value_name = "PATH", env = "ENGINE_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Serve a non-loopback address without authentication (`allowInsecure`).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// PEM certificate chain: both ports speak HTTPS (`tlsCert`; reread on SIGHUP).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (`tlsKey`).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where the job queue, history and working folders live (`dataDir`, ENGINE_DATA_DIR;
    /// default ./engine-data, made absolute and locked at start).
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// The engine's name in /api/engine (`name`, MODELOP_ENGINE_NAME; default engine-1).
    #[arg(long)]
    pub name: Option<String>,
    /// The runtime group it belongs to (`group`, MODELOP_RUNTIME_GROUP).
    #[arg(long)]
    pub group: Option<String>,
    /// Tags, comma-separated (`DEV, cc-fraud`).
    #[arg(long)]
    pub tags: Option<String>,
    /// Default roundtrip timeout in milliseconds.
    #[arg(long, value_name = "MS")]
    pub roundtrip_timeout_ms: Option<u64>,
    /// Scoring requests waiting for the deployed model beyond which requests get 503.
    #[arg(long, value_name = "N")]
    pub score_queue_bound: Option<usize>,
    /// Warm workers of the deployed model (`scoreWorkers`, ENGINE_SCORE_WORKERS; default 1).
    #[arg(long)]
    pub score_workers: Option<usize>,
    /// How long SIGTERM waits for the running job and in-flight requests.
    #[arg(long, value_name = "MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Per-record time limit of the deployed model's workers (`recordTimeoutMs`, default
    /// 60000; 0: none).
    #[arg(long, value_name = "MS")]
    pub record_timeout_ms: Option<u64>,
    /// Per-record time limit of batch jobs' workers (`jobRecordTimeoutMs`, default 600000;
    /// 0: none).
    #[arg(long, value_name = "MS")]
    pub job_record_timeout_ms: Option<u64>,
    /// Memory limit of each worker in MiB (`memoryLimitMib`, default 0: none).
    #[arg(long, value_name = "MIB")]
    pub memory_limit_mib: Option<u64>,
    /// How many of the deployed model's workers that die are replaced
    /// (`workerRestartBudget`, default: no bound).
    #[arg(long, value_name = "N")]
    pub worker_restart_budget: Option<u32>,
    /// Longest wait between attempts to start a deployed model's worker that cannot start
    /// (`workerRestartBackoffMaxMs`, default 5000).
    #[arg(long, value_name = "MS")]
    pub worker_restart_backoff_max_ms: Option<u64>,
    /// The engine's log level (trace, debug, info, warn, error).
    #[arg(long)]
    pub log_level: Option<String>,
    /// Folders job and deployment documents may name local paths under, ':'-separated
    /// (`allowedPaths`; default: the data folder).
    #[arg(long, value_name = "DIR:DIR...")]
    pub allowed_paths: Option<String>,
    /// Largest JSON or scoring request body in bytes (`maxRequestBytes`).
    #[arg(long, value_name = "BYTES")]
    pub max_request_bytes: Option<u64>,
    /// Largest multipart upload in bytes (`maxUploadBytes`).
    #[arg(long, value_name = "BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Uploads received at once (`maxConcurrentUploads`).
    #[arg(long, value_name = "N")]
    pub max_concurrent_uploads: Option<usize>,
    /// `text` or `json` (one JSON object per line: timestamp, level, target, job_id,
    /// message); `logFormat` in application.json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

fn flag_overrides(a: &ServeArgs) -> Result<Overrides, String> {
    let mut o = Overrides::new();
    if let Some(path) = &a.auth_token_file {
        let token = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        if token.trim().is_empty() {
            return Err(format!(
                "the token file {} is empty (`engine token > {}` writes a fresh token)",
                path.display(),
                path.display()
            ));
        }
        // Checked here so a bad token is reported as the file's (a mounted secret), not as
        // the authToken setting it becomes.
        if let Err(e) = service::auth::Token::new("authToken", &token) {
            let reason = match e {
                service::Error::Config { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(format!("the token file {}: {reason}", path.display()));
        }
        o.insert("authToken".to_owned(), token);
    }
    if a.insecure_no_auth {
        o.insert("allowInsecure".to_owned(), "true".to_owned());
    }
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            o.insert(k.to_owned(), v);
        }
    };
    put("port", a.port.map(|v| v.to_string()));
    put("scoringPort", a.scoring_port.map(|v| v.to_string()));
    put("grpcPort", a.grpc_port.map(|v| v.to_string()));
    put("bind", a.bind.clone());
    put(
        "dataDir",
        a.data_dir.as_ref().map(|p| p.display().to_string()),
    );
    put("name", a.name.clone());
    put("group", a.group.clone());
    put("tags", a.tags.clone());
    put(
        "roundtripTimeoutMs",
        a.roundtrip_timeout_ms.map(|v| v.to_string()),
    );
    put(
        "scoreQueueBound",
        a.score_queue_bound.map(|v| v.to_string()),
    );
    put("scoreWorkers", a.score_workers.map(|v| v.to_string()));
    put(
        "shutdownGraceMs",
        a.shutdown_grace_ms.map(|v| v.to_string()),
    );
    put("logLevel", a.log_level.clone());
    put("allowedPaths", a.allowed_paths.clone());
    put(
        "maxRequestBytes",
        a.max_request_bytes.map(|v| v.to_string()),
    );
    put("maxUploadBytes", a.max_upload_bytes.map(|v| v.to_string()));
    put(
        "maxConcurrentUploads",
        a.max_concurrent_uploads.map(|v| v.to_string()),
    );
    put(
        "tlsCert",
        a.tls_cert.as_ref().map(|p| p.display().to_string()),
    );
    put(
        "tlsKey",
        a.tls_key.as_ref().map(|p| p.display().to_string()),
    );
    put("logFormat", a.log_format.clone());
    put(
        "recordTimeoutMs",
        a.record_timeout_ms.map(|v| v.to_string()),
    );
    put(
        "jobRecordTimeoutMs",
        a.job_record_timeout_ms.map(|v| v.to_string()),
    );
    put("memoryLimitMib", a.memory_limit_mib.map(|v| v.to_string()));
    put(
        "workerRestartBudget",
        a.worker_restart_budget.map(|v| v.to_string()),
    );
    put(
        "workerRestartBackoffMaxMs",
        a.worker_restart_backoff_max_ms.map(|v| v.to_string()),
    );
    Ok(o)
}

pub fn serve(args: ServeArgs) -> i32 {
    let config_file = args
        .config
        .clone()
        .or_else(|| std::env::var_os("MODELOP_APPLICATION_JSON").map(PathBuf::from));
    let env = overrides_from_env(|k| std::env::var(k).ok());
    let flags = match flag_overrides(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("engine serve: {e}");
            return exit::USAGE;
        }
    };
    let mut config = match Config::load(config_file.as_deref(), &[env, flags]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("engine serve: {e}");
            return exit::USAGE;
        }
    };
    crate::install_tracing(&config.log_level, "info", config.log_format == "json");
    if config.auth_token.is_none() && !config.bind.is_loopback() {
        tracing::warn!(
            "serving {} WITHOUT authentication (allowInsecure): anyone who reaches the port can deploy and run code",
            config.bind
        );
    }
    // Absolute once, here: workers run in their job's folder, so a relative data folder
    // would name a different place for them. The lock is held until the engine exits.
    let data_dir = match service::datadir::DataDir::acquire(&config.data_dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("engine serve: {e}");
            return exit::ERROR;
        }
    };
    config.data_dir = data_dir.path().to_owned();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("engine serve: cannot start the async runtime: {e}");
            return exit::ERROR;
        }
    };
    let environments = Arc::new(crate::envcache::build(
        config.data_dir.join("environments"),
        5120,
        true,
        environments::Tool::Auto,
    ));
    let runners = match runner_set(&config, environments.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("engine serve: cannot find the engine's own executable: {e}");
            return exit::ERROR;
        }
    };
    let deps = Deps {
        runners,
        environments: Some(environments),
        platforms: Arc::new(probe_platforms),
        release: env!("CARGO_PKG_VERSION").to_owned(),
        built_on: option_env!("ENGINE_BUILT_ON")
            .unwrap_or("unknown")
            .to_owned(),
        registry: crate::transports::registry(&config.kafka_properties, &config.hdfs),
        spark: spark_runner(&config)
            .inspect_err(|e| {
                tracing::warn!("jobs cannot run on Spark: the engine's own executable: {e}")
            })
            .ok(),
    };
    return_freed_memory_periodically();
    let grace = std::time::Duration::from_millis(config.shutdown_grace_ms);
    let result = runtime.block_on(service::serve(config, deps, stop_signal(grace), |bound| {
        if let Some(tls) = bound.tls.clone() {
            reload_on_sighup(tls);
        }
        // Scripts and tests read where the engine listens from this line.
        let scheme = bound.scheme();
        let mut out = std::io::stdout();
        let _ = writeln!(out, "engine listening on {scheme}://{}", bound.control);
        if let Some(s) = bound.scoring {
            let _ = writeln!(out, "engine scoring on {scheme}://{s}");
        }
        let _ = out.flush();
    }));
    drop(data_dir);
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("engine serve: {e}");
            if matches!(e, service::Error::Config { .. }) {
                exit::USAGE
            } else {
                exit::ERROR
            }
        }
    }
}

/// Runs batch jobs on Spark as `spark` of application.json says. spark-submit starts from
/// the workers' environment and what Spark, Hadoop and Java read (`SPARK_*`, `HADOOP_*`,
/// `JAVA_*`, `PYSPARK_*`, `YARN_*`): model code runs in its driver.
fn spark_runner(config: &Config) -> std::io::Result<engine_spark::Spark> {
    let mut allowed = config.worker_env.clone();
    allowed.extend(
        [
            "SPARK_*",
            "HADOOP_*",
            "JAVA_*",
            "PYSPARK_*",
            "YARN_*",
            "KUBECONFIG",
        ]
        .map(String::from),
    );
    let env = worker::env::worker_environment(std::env::vars_os(), &allowed);
    Ok(engine_spark::Spark::new(
        config.spark.clone(),
        std::env::current_exe()?,
        crate::envcache::python().into(),
    )
    .with_spark_home(std::env::var_os("SPARK_HOME").map(Into::into))
    .with_env(env))
}

/// The runners the service can use. Their workers start from the allow-listed part of
/// the engine's environment (plus `workerEnv`), never the whole: the engine's token and
/// secrets stay out of model code.
fn runner_set(
    config: &Config,
    environments: Arc<environments::EnvironmentCache>,
) -> std::io::Result<RunnerSet> {
    let exe = std::env::current_exe()?;
    let base_env = worker::env::worker_environment(std::env::vars_os(), &config.worker_env);
    let command = worker::WorkerCommand::new(exe)
        .arg("worker")
        .arg("python")
        .with_base_env(base_env.clone());
    // Python models' requirements go into the data folder's environment cache.
    let python = runner_python::PythonRunner::new(command).with_environments(environments);
    let limited: service::LimitedRunner = {
        let python = python.clone();
        Arc::new(move |limits| Arc::new(python.with_limits(limits)))
    };
    let r = runner_r::RRunner::new().with_base_env(base_env);
    let r_limited: service::LimitedRunner = {
        let r = r.clone();
        Arc::new(move |limits| Arc::new(r.clone().with_limits(limits)))
    };
    Ok(RunnerSet::new()
        .with(Language::Python, Arc::new(python))
        .with_limits(Language::Python, limited)
        .with(Language::R, Arc::new(r))
        .with_limits(Language::R, r_limited))
}

/// Rereads the TLS certificate and key on each SIGHUP; the listeners stay open. Called
/// from within the runtime.
fn reload_on_sighup(tls: service::tls::TlsReloader) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot catch SIGHUP, the certificate cannot be reloaded: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let reloader = tls.clone();
            // The certificate and key are files: read on the blocking pool.
            let reloaded = tokio::task::spawn_blocking(move || reloader.reload())
                .await
                .unwrap_or_else(|e| {
                    Err(service::Error::Store(format!(
                        "the reload task failed: {e}"
                    )))
                });
            match reloaded {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                Err(e) => tracing::error!(
                    "SIGHUP: TLS reload failed, the previous certificate stays: {e}"
                ),
            }
        }
    });
}

/// Resolves on SIGTERM or SIGINT. From then on the process has `grace` to end: the service
/// plans to finish inside it, and should something still hang past it, the process exits
/// anyway (its workers die with it).
async fn stop_signal(grace: std::time::Duration) {
    received_stop_signal().await;
    let _ = std::thread::Builder::new()
        .name("shutdown-deadline".into())
        .spawn(move || {
            std::thread::sleep(grace);
            tracing::warn!(
                "the engine did not stop within the shutdown grace of {} ms; exiting now",
                grace.as_millis()
            );
            std::process::exit(exit::OK);
        });
}

async fn received_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The Python platform the workers embed, and its installed distributions.
fn probe_platforms() -> Vec<Platform> {
    // The interpreter the workers embed, not whichever `python3` is first on PATH.
    let python = crate::envcache::python();
    let script = "import sys, json, importlib.metadata as m\n\
print(json.dumps({'version': sys.version.split()[0], 'executable': sys.executable, \
'libraries': sorted(set(f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions() if d.metadata['Name']))}))";
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let mut platforms = Vec::new();
    if let Ok(out) = out {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            platforms.push(Platform {
                language: "python".into(),
                version: v["version"].as_str().unwrap_or("").to_owned(),
                executable: v["executable"].as_str().map(str::to_owned),
                libraries: v["libraries"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    if let Some(r) = probe_r() {
        platforms.push(r);
    }
    platforms
}

/// R's version and installed packages, when `Rscript` is on PATH.
fn probe_r() -> Option<Platform> {
    let script = "cat(paste(R.version$major, R.version$minor, sep = '.'), '\\n', sep = ''); \
p <- installed.packages()[, c('Package', 'Version'), drop = FALSE]; \
cat(paste0(p[, 1], '==', p[, 2]), sep = '\\n')";
    let out = std::process::Command::new("Rscript")
        .args(["--vanilla", "-e", script])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let version = lines.next()?.trim().to_owned();
    let mut libraries: Vec<String> = lines.map(str::to_owned).filter(|l| !l.is_empty()).collect();
    libraries.sort();
    libraries.dedup();
    Some(Platform {
        language: "R".into(),
        version,
        executable: Some("Rscript".into()),
        libraries,
    })
}

/// How often memory the allocator holds free is handed back to the system.
const MEMORY_TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The engine's own allocations go to mimalloc (`main.rs`), which hands freed pages back by
/// itself; the C libraries it links (librdkafka, SQLite) still use glibc's
/// allocator, which keeps what a burst freed in its per-thread arenas. A thread hands
/// those free pages back every few seconds (`malloc_trim`: a walk of the arenas, cheap when
/// there is nothing to give back), so resident memory follows the load down again.
fn return_freed_memory_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("memory-trim".into())
            .spawn(|| loop {
                std::thread::sleep(MEMORY_TRIM_EVERY);
                // Safety: malloc_trim only releases free memory of the allocator's own
                // arenas; it takes the arenas' locks and touches no live allocation.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the memory trim thread: {e}");
        }
    }
}
