//! Batch jobs on Apache Spark: the engine takes the same job document and has a Spark
//! cluster run it through `spark-submit`, with a small driver ([`DRIVER`]) that loads the
//! model and calls its function. The cluster is Spark's own (local, standalone, YARN,
//! Kubernetes); nothing here schedules distributed work.
//!
//! - [`SparkSettings`]: the master, `spark.*` settings and spark-submit arguments, from
//!   application.json, overridden per job by its `jobParameters` ([`SparkSettings::for_job`]).
//! - [`Spark::run`]: writes the driver and the job's description under the job's folder,
//!   starts `spark-submit` tied to the engine (a process group of its own, killed on cancel
//!   and when the engine dies), streams its output into the job's log, and returns what
//!   the driver reported ([`SparkRun`]) or why the job failed ([`Error`]).
//!
//! Two kinds of model run (docs/spark.md): PySpark models in ModelOp's convention (`score`,
//! `metrics` or `train` of `(external_inputs, external_outputs, external_model_assets)`),
//! which read and write their own data through Spark; and record models (`score` of one
//! record), whose first input the driver reads as a DataFrame and whose partitions `engine
//! run` scores on the executors, so a record gets the same result as on one machine.
//!
//! No globals, no logger, no environment read: the binary hands in the engine's path, the
//! Python to use and the environment spark-submit starts from.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use runtime_core::log::{JobLog, Level, LogLine, LogSource};
use runtime_core::runner::ModelSpec;
use serde_json::{json, Value};

/// The driver spark-submit runs (`driver.py`).
pub const DRIVER: &str = include_str!("driver.py");

/// The word the driver prints before the application's id and UI address.
const APP_MARK: &str = "MODEL_RUNTIME_SPARK_APP";

/// How long a `spark://` master gets to accept a connection before the job fails.
const MASTER_CONNECT: Duration = Duration::from_secs(5);

/// How many of spark-submit's last lines a failure without the driver's report quotes.
const TAIL_LINES: usize = 30;

/// Why a job on Spark did not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No spark-submit could be found.
    #[error("no Spark found: {0}")]
    NoSpark(String),
    /// The standalone master named does not answer.
    #[error("the Spark master {master} is unreachable: {why}")]
    MasterUnreachable { master: String, why: String },
    /// A setting or job parameter is wrong.
    #[error("{0}")]
    Settings(String),
    /// The model or Spark failed; the traceback is the model's (or an executor's).
    #[error("{reason}")]
    Failed { reason: String, traceback: String },
    /// The job was cancelled (or the engine stopped) and spark-submit was killed.
    #[error("the Spark application was stopped")]
    Stopped,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// The model's (or an executor's) traceback, when the failure has one.
    pub fn traceback(&self) -> Option<&str> {
        match self {
            Error::Failed { traceback, .. } if !traceback.is_empty() => Some(traceback),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where and how jobs run on Spark: application.json's `spark` object, whose names these
/// are in camelCase.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SparkSettings {
    /// `spark.master`: `local[*]`, `spark://host:7077`, `yarn`, `k8s://...`.
    pub master: String,
    /// The Spark installation (its `bin/spark-submit`); else `SPARK_HOME`, else the Spark
    /// bundled with pyspark in the Python jobs run with.
    pub home: Option<PathBuf>,
    /// `spark.*` settings passed as `--conf` (strings, numbers or booleans).
    #[serde(deserialize_with = "scalars")]
    pub conf: BTreeMap<String, String>,
    /// Further spark-submit arguments (`--jars`, `--packages`, `--executor-memory` ...).
    pub submit_args: Vec<String>,
    /// The Python the driver and the executors run (with pyspark); else the engine's.
    pub python: Option<PathBuf>,
    /// Jobs run on Spark unless their document says `"runtime": "local"`.
    pub default: bool,
}

/// A map of settings whose values may be written as strings, numbers or booleans.
fn scalars<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = <BTreeMap<String, Value> as serde::Deserialize>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match scalar(&v) {
            Some(t) => Ok((k, t)),
            None => Err(serde::de::Error::custom(format!(
                "conf.{k} must be a string, a number or a boolean"
            ))),
        })
        .collect()
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(t) => Some(t.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Default for SparkSettings {
    fn default() -> Self {
        SparkSettings {
            master: "local[*]".into(),
            home: None,
            conf: BTreeMap::new(),
            submit_args: Vec::new(),
            python: None,
            default: false,
        }
    }
}

impl SparkSettings {
    /// These settings with a job's `jobParameters` on top: `spark.*` keys (strings,
    /// numbers, booleans; `spark.master` the master) and `sparkSubmitArgs` (a list of
    /// strings).
    pub fn for_job(&self, params: Option<&Value>) -> Result<SparkSettings> {
        let mut s = self.clone();
        let Some(Value::Object(params)) = params else {
            return Ok(s);
        };
        for (k, v) in params {
            if k == "sparkSubmitArgs" {
                let args = v.as_array().and_then(|a| {
                    a.iter()
                        .map(|x| x.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                });
                let Some(args) = args else {
                    return Err(Error::Settings(
                        "jobParameters.sparkSubmitArgs must be a list of strings".into(),
                    ));
                };
                s.submit_args.extend(args);
                continue;
            }
            if !k.starts_with("spark.") {
                continue;
            }
            let Some(value) = scalar(v) else {
                return Err(Error::Settings(format!(
                    "jobParameters.{k} must be a string, a number or a boolean"
                )));
            };
            if k == "spark.master" {
                s.master = value;
            } else {
                s.conf.insert(k.clone(), value);
            }
        }
        Ok(s)
    }
}

/// Which of the model's functions the job calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Score,
    Metrics,
    Train,
}

impl Function {
    pub fn as_str(self) -> &'static str {
        match self {
            Function::Score => "score",
            Function::Metrics => "metrics",
            Function::Train => "train",
        }
    }
}

/// One job on Spark.
pub struct SparkJob {
    /// The job's id, in the application's name.
    pub id: String,
    pub function: Function,
    /// The model, materialized, with its environment's import paths.
    pub model: ModelSpec,
    /// The job document's `inputData`, `outputData` and the model's `EXTERNAL_FILE`
    /// assets, as ModelOp's asset dicts.
    pub inputs: Vec<Value>,
    pub outputs: Vec<Value>,
    pub model_assets: Vec<Value>,
    /// The job document, for an init that takes one argument (`rawJson`).
    pub raw_json: String,
    /// The folder for the driver, its description of the job and its outcome.
    pub dir: PathBuf,
    /// Record models: the records of a partition scored at once (`engine run
    /// --batch-size`; a record-set model's frame), the engine's `jobBatchSize`.
    pub batch_size: usize,
}

/// What a job on Spark did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparkRun {
    /// The application's id and web UI, as the driver printed them.
    pub app_id: Option<String>,
    pub ui: Option<String>,
    /// `pyspark` (the model did its own I/O) or `records` (the engine scored records).
    pub convention: String,
    /// Records models: records read, written and failed, and the first failures' error
    /// records (docs/spark.md).
    pub records_in: u64,
    pub records_out: u64,
    pub records_failed: u64,
    pub failures: Vec<Value>,
}

/// Runs jobs on Spark.
#[derive(Clone, Debug)]
pub struct Spark {
    settings: SparkSettings,
    engine: PathBuf,
    python: PathBuf,
    spark_home: Option<PathBuf>,
    env: Option<Vec<(OsString, OsString)>>,
}

impl Spark {
    /// Jobs run as `settings` say; `engine` is the engine binary the executors run record
    /// models with, `python` the Python (with pyspark) the driver and executors use unless
    /// the settings name one.
    pub fn new(settings: SparkSettings, engine: PathBuf, python: PathBuf) -> Spark {
        Spark {
            settings,
            engine,
            python,
            spark_home: None,
            env: None,
        }
    }

    /// `SPARK_HOME` as the engine's environment has it, used when the settings name none.
    pub fn with_spark_home(mut self, home: Option<PathBuf>) -> Spark {
        self.spark_home = home;
        self
    }

    /// The environment spark-submit starts from (else the engine's own).
    pub fn with_env(mut self, env: Vec<(OsString, OsString)>) -> Spark {
        self.env = Some(env);
        self
    }

    pub fn settings(&self) -> &SparkSettings {
        &self.settings
    }

    fn python_of<'a>(&'a self, settings: &'a SparkSettings) -> &'a Path {
        settings.python.as_deref().unwrap_or(&self.python)
    }

    /// The `spark-submit` to run: `home`'s, `SPARK_HOME`'s, or the one pyspark bundles.
    pub fn submit_program(&self, settings: &SparkSettings) -> Result<PathBuf> {
        if let Some(home) = settings.home.as_ref().or(self.spark_home.as_ref()) {
            let p = home.join("bin").join("spark-submit");
            return if p.is_file() {
                Ok(p)
            } else {
                Err(Error::NoSpark(format!(
                    "{} has no bin/spark-submit",
                    home.display()
                )))
            };
        }
        let python = self.python_of(settings);
        let out = Command::new(python)
            .args([
                "-c",
                "import os, pyspark; print(os.path.dirname(pyspark.__file__))",
            ])
            .output()
            .map_err(|e| {
                Error::NoSpark(format!(
                    "cannot run {} ({e}); set spark.home or SPARK_HOME",
                    python.display()
                ))
            })?;
        if !out.status.success() {
            return Err(Error::NoSpark(format!(
                "set spark.home or SPARK_HOME, or install pyspark for {} (pip install pyspark): {}",
                python.display(),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            )));
        }
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let p = dir.join("bin").join("spark-submit");
        if p.is_file() {
            Ok(p)
        } else {
            Err(Error::NoSpark(format!(
                "pyspark at {} has no bin/spark-submit",
                dir.display()
            )))
        }
    }

    /// Runs `job` with the engine's settings under the job's `jobParameters` (`params`),
    /// logging spark-submit's output to `log`, until it ends or `stop` is set (then the
    /// application is killed: [`Error::Stopped`]). Blocking: spark-submit is tied to the
    /// calling thread, which waits for it.
    pub fn run(
        &self,
        job: &SparkJob,
        params: Option<&Value>,
        log: &dyn JobLog,
        stop: &AtomicBool,
    ) -> Result<SparkRun> {
        let settings = self.settings.for_job(params)?;
        check_master(&settings.master)?;
        let submit = self.submit_program(&settings)?;

        std::fs::create_dir_all(&job.dir)
            .map_err(|e| Error::io(format!("cannot create {}", job.dir.display()), e))?;
        let driver = job.dir.join("driver.py");
        let described = job.dir.join("job.json");
        let outcome = job.dir.join("outcome.json");
        let _ = std::fs::remove_file(&outcome);
        std::fs::write(&driver, DRIVER)
            .map_err(|e| Error::io(format!("cannot write {}", driver.display()), e))?;
        let description = self.describe(job, &settings, &outcome);
        std::fs::write(&described, description.to_string())
            .map_err(|e| Error::io(format!("cannot write {}", described.display()), e))?;

        let mut cmd = Command::new(&submit);
        cmd.arg("--master")
            .arg(&settings.master)
            .arg("--name")
            .arg(format!("model-runtime job {}", job.id));
        for (k, v) in submit_conf(&settings, &job.model) {
            cmd.arg("--conf").arg(format!("{k}={v}"));
        }
        cmd.args(&settings.submit_args)
            .arg(&driver)
            .arg(&described)
            .current_dir(&job.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(env) = &self.env {
            cmd.env_clear().envs(env.iter().cloned());
        }
        let python = self.python_of(&settings);
        cmd.env("PYSPARK_PYTHON", python)
            .env("PYSPARK_DRIVER_PYTHON", python);
        worker::tie_to_engine(&mut cmd);
        log.info(
            LogSource::Engine,
            format!(
                "submitting to Spark ({}): {}",
                settings.master,
                submit.display()
            ),
        );
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("cannot run {}", submit.display()), e))?;
        let seen = Mutex::new(Seen::default());
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let status = std::thread::scope(|scope| {
            let seen = &seen;
            for s in [
                stdout.map(|s| Box::new(s) as Box<dyn Read + Send>),
                stderr.map(|s| Box::new(s) as Box<dyn Read + Send>),
            ]
            .into_iter()
            .flatten()
            {
                scope.spawn(move || relay(s, log, seen));
            }
            let status = loop {
                if stop.load(Ordering::Relaxed) {
                    worker::kill_group(child.id());
                    let _ = child.wait();
                    return Err(Error::Stopped);
                }
                match child.try_wait() {
                    Ok(Some(status)) => break status,
                    Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                    Err(e) => {
                        worker::kill_group(child.id());
                        return Err(Error::io("cannot wait for spark-submit", e));
                    }
                }
            };
            // What the driver started (a Python worker left behind) goes with it, and the
            // readers see the end of their pipes.
            worker::kill_group(child.id());
            Ok(status)
        })?;
        let seen = seen.into_inner().unwrap_or_else(|p| p.into_inner());
        let reported = std::fs::read(&outcome)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let Some(reported) = reported else {
            return Err(Error::Failed {
                reason: format!(
                    "spark-submit ended ({status}) before the driver reported: {}",
                    seen.last_error().unwrap_or("see the job's log")
                ),
                traceback: Vec::from(seen.tail).join("\n"),
            });
        };
        if reported["status"] != "ok" {
            return Err(Error::Failed {
                reason: reported["reason"]
                    .as_str()
                    .unwrap_or("the driver failed")
                    .to_owned(),
                traceback: reported["traceback"].as_str().unwrap_or("").to_owned(),
            });
        }
        let count = |k: &str| reported[k].as_u64().unwrap_or(0);
        Ok(SparkRun {
            app_id: seen.app_id,
            ui: seen.ui,
            convention: reported["convention"].as_str().unwrap_or("").to_owned(),
            records_in: count("recordsIn"),
            records_out: count("recordsOut"),
            records_failed: count("recordsFailed"),
            failures: reported["failures"].as_array().cloned().unwrap_or_default(),
        })
    }

    /// The job as the driver reads it.
    fn describe(&self, job: &SparkJob, settings: &SparkSettings, outcome: &Path) -> Value {
        let e = &job.model.entry_points;
        json!({
            "workDir": job.model.work_dir,
            "mainSource": job.model.main_source,
            "importPaths": job.model.import_paths,
            "functions": {"init": e.init, "score": e.score, "metrics": e.metrics, "train": e.train},
            "function": job.function.as_str(),
            "inputs": job.inputs,
            "outputs": job.outputs,
            "modelAssets": job.model_assets,
            "rawJson": job.raw_json,
            "batchSize": job.batch_size,
            "engine": self.engine,
            "master": settings.master,
            "outcome": outcome,
        })
    }
}

/// The `--conf` pairs: Spark's log at WARN unless set, the model's folder (its own modules)
/// and its environment's packages on the executors' Python path, then the settings' own.
fn submit_conf(settings: &SparkSettings, model: &ModelSpec) -> BTreeMap<String, String> {
    let mut conf = BTreeMap::new();
    conf.insert("spark.log.level".to_owned(), "WARN".to_owned());
    let paths: Vec<String> = std::iter::once(&model.work_dir)
        .chain(&model.import_paths)
        .map(|p| p.display().to_string())
        .collect();
    conf.insert("spark.executorEnv.PYTHONPATH".to_owned(), paths.join(":"));
    conf.extend(settings.conf.clone());
    conf
}

/// Fails fast on a standalone master that does not answer (spark-submit itself retries for
/// a minute before it gives up).
fn check_master(master: &str) -> Result<()> {
    let Some(hosts) = master.strip_prefix("spark://") else {
        if master.trim().is_empty() {
            return Err(Error::Settings("spark.master is empty".into()));
        }
        return Ok(());
    };
    let mut last = String::from("no address");
    for hostport in hosts.split(',') {
        let addrs = match hostport.to_socket_addrs() {
            Ok(a) => a,
            Err(e) => {
                last = format!("{hostport}: {e}");
                continue;
            }
        };
        for a in addrs {
            match TcpStream::connect_timeout(&a, MASTER_CONNECT) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("{a}: {e}"),
            }
        }
    }
    Err(Error::MasterUnreachable {
        master: master.to_owned(),
        why: last,
    })
}

/// What spark-submit's output told.
#[derive(Clone, Debug, Default)]
struct Seen {
    app_id: Option<String>,
    ui: Option<String>,
    /// Its last lines, for a failure the driver did not report.
    tail: VecDeque<String>,
}

impl Seen {
    /// The last line that reads as an error.
    fn last_error(&self) -> Option<&str> {
        self.tail
            .iter()
            .rev()
            .find(|l| l.contains("Error") || l.contains("Exception") || l.contains("ERROR"))
            .map(String::as_str)
    }
}

/// The level of a line of Spark's log (`26/12/07 05:09:06 WARN SparkContext: ...`), Info
/// for other output.
fn spark_level(line: &str) -> Level {
    let mut words = line.split_whitespace().skip(2);
    match words.next() {
        Some("ERROR") | Some("FATAL") => Level::Error,
        Some("WARN") => Level::Warn,
        _ => Level::Info,
    }
}

/// Copies a stream of spark-submit's into the job's log, line by line, and picks the
/// application's id out of it.
fn relay(stream: Box<dyn Read + Send>, log: &dyn JobLog, seen: &Mutex<Seen>) {
    let mut lines = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix(APP_MARK) {
            let mut words = rest.split_whitespace();
            let (id, ui) = (words.next(), words.next().filter(|u| *u != "-"));
            log.info(
                LogSource::Engine,
                format!(
                    "Spark application {}, UI {}",
                    id.unwrap_or("?"),
                    ui.unwrap_or("(none)")
                ),
            );
            if let Ok(mut s) = seen.lock() {
                s.app_id = id.map(str::to_owned);
                s.ui = ui.map(str::to_owned);
            }
            continue;
        }
        log.log(LogLine::new(
            spark_level(line),
            LogSource::ModelConsole,
            line.to_owned(),
        ));
        if let Ok(mut s) = seen.lock() {
            if s.tail.len() == TAIL_LINES {
                s.tail.pop_front();
            }
            s.tail.push_back(line.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn job_parameters_override_the_engines_settings() {
        let engine: SparkSettings = serde_json::from_value(json!({
            "master": "spark://a:7077",
            "conf": {"spark.executor.memory": "2g", "spark.executor.cores": 2},
            "submitArgs": ["--jars", "x.jar"],
        }))
        .unwrap();
        assert_eq!(engine.conf["spark.executor.cores"], "2");
        let job = engine
            .for_job(Some(&json!({
                "spark.master": "local[2]",
                "spark.executor.memory": 4096,
                "spark.dynamicAllocation.enabled": true,
                "sparkSubmitArgs": ["--py-files", "deps.zip"],
                "threshold": 0.5,
            })))
            .unwrap();
        assert_eq!(job.master, "local[2]");
        assert_eq!(job.conf["spark.executor.memory"], "4096");
        assert_eq!(job.conf["spark.dynamicAllocation.enabled"], "true");
        assert_eq!(
            job.submit_args,
            ["--jars", "x.jar", "--py-files", "deps.zip"]
        );
        // Parameters not Spark's are the model's, not spark-submit's.
        assert!(!job.conf.contains_key("threshold"));

        let bad = engine.for_job(Some(&json!({"spark.jars": ["a", "b"]})));
        assert_eq!(
            bad.unwrap_err().to_string(),
            "jobParameters.spark.jars must be a string, a number or a boolean"
        );
        let bad = engine.for_job(Some(&json!({"sparkSubmitArgs": "--verbose"})));
        assert!(bad.is_err());
        let bad = serde_json::from_value::<SparkSettings>(json!({"conf": {"a": [1]}}));
        assert!(bad.unwrap_err().to_string().contains("conf.a must be"));
        let bad = serde_json::from_value::<SparkSettings>(json!({"mastr": "local"}));
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("unknown field `mastr`"));
    }

    #[test]
    fn a_standalone_master_that_does_not_answer_is_named() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        assert!(check_master(&format!("spark://{addr}")).is_ok());
        drop(free);
        let master = format!("spark://{addr}");
        let e = check_master(&master).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("the Spark master {master} is unreachable: {addr}")),
            "{e}"
        );
        // Other masters are Spark's to reach.
        assert!(check_master("local[*]").is_ok());
        assert!(check_master("yarn").is_ok());
        assert!(check_master(" ").is_err());
    }

    #[test]
    fn spark_log_lines_keep_their_level() {
        let at = "26/12/07 05:09:06";
        assert_eq!(
            spark_level(&format!("{at} WARN NativeCodeLoader: x")),
            Level::Warn
        );
        assert_eq!(
            spark_level(&format!("{at} ERROR Executor: y")),
            Level::Error
        );
        assert_eq!(
            spark_level(&format!("{at} INFO SparkContext: z")),
            Level::Info
        );
        assert_eq!(
            spark_level("Traceback (most recent call last):"),
            Level::Info
        );
    }
}
