//! The batch job queue: jobs are stored WAITING and run one at a time, oldest first,
//! through `jobs::run_job`, the same runner `engine run` uses.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codecs::Encoding;
use endpoints::{Registry, StreamDescriptor};
use jobs::{
    Job, JobControl, JobKind, JobOptions, JobOutcome, JobPlan, JobProgress, PlanInput, PlanOptions,
    PlanOutput,
};
use runtime_core::{InitContext, JobLog, Level, Slot};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::document::{Content, DataSpec, JobDocument, JobSpec};
use crate::error::{Error, Result};
use crate::joblog::BufferedLog;
use crate::store::{Finish, JobRow, JobState, Store};
use crate::time::now_ms;
use crate::RunnerSet;

mod on_spark;

/// How long a cancelled job gets to stop between batches before its worker is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How often a running job's log lines are written to the store.
const LOG_FLUSH: Duration = Duration::from_millis(250);

/// Where one output of a finished job went.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputPlace {
    pub slot: u32,
    pub name: String,
    pub encoding: String,
    /// True when the output is kept with the job (fetch it from the result).
    pub embedded: bool,
    /// The file written, for an output given by `fileUrl` (and where an embedded one is
    /// kept).
    pub path: String,
    pub records: u64,
}

/// What is stored as a finished job's outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredOutcome {
    pub outputs: Vec<OutputPlace>,
    pub trained_files: Vec<String>,
    pub trained_dir: Option<String>,
    pub problems: Vec<serde_json::Value>,
    pub traceback: Option<String>,
    pub elapsed_ms: u64,
    /// The final counts, as the job's progress showed them.
    #[serde(default)]
    pub progress: Option<JobProgress>,
}

struct Current {
    id: String,
    control: Arc<JobControl>,
    kill: Arc<Notify>,
}

pub struct JobQueue {
    store: Store,
    runners: RunnerSet,
    environments: Option<Arc<environments::EnvironmentCache>>,
    data_dir: PathBuf,
    /// How a job's records are batched (`jobBatchSize`).
    batching: jobs::Batching,
    /// Default worker limits of jobs (a job document may set its own).
    limits: crate::config::Limits,
    wake: Notify,
    current: Mutex<Option<Current>>,
    stopping: AtomicBool,
    /// Told when the queue loop has returned.
    stopped: Notify,
    stopped_flag: AtomicBool,
    retention: crate::config::JobRetention,
    /// Opens jobs' inputs and outputs, with the engine's credentials.
    registry: Arc<Registry>,
    /// Runs jobs whose runtime is Spark; `None`: they are refused.
    spark: Option<Arc<engine_spark::Spark>>,
    /// Told of jobs' batches and of each job that ends.
    metrics: Arc<crate::metrics::Metrics>,
}

impl JobQueue {
    pub fn new(
        store: Store,
        runners: RunnerSet,
        environments: Option<Arc<environments::EnvironmentCache>>,
        data_dir: PathBuf,
        batching: jobs::Batching,
    ) -> Self {
        JobQueue {
            store,
            runners,
            environments,
            data_dir,
            batching,
            limits: crate::config::Limits::default(),
            wake: Notify::new(),
            current: Mutex::new(None),
            stopping: AtomicBool::new(false),
            stopped: Notify::new(),
            stopped_flag: AtomicBool::new(false),
            retention: crate::config::JobRetention::default(),
            registry: Arc::new(Registry::default()),
            spark: None,
            metrics: Arc::new(crate::metrics::Metrics::default()),
        }
    }

    /// Tells `metrics` of jobs' batches and of each job that ends.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs jobs with `"runtime": "spark"` (and every job, when its settings say Spark is
    /// the default) on Spark.
    pub fn with_spark(mut self, spark: Option<engine_spark::Spark>) -> Self {
        self.spark = spark.map(Arc::new);
        self
    }

    /// Opens jobs' endpoints through `registry` (the host's transports, the configured
    /// credentials) instead of the built-in transports alone.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = Arc::new(registry);
        self
    }

    /// Which finished jobs are kept; applied after each job.
    pub fn with_retention(mut self, retention: crate::config::JobRetention) -> Self {
        self.retention = retention;
        self
    }

    /// Holds jobs' workers to these limits by default.
    pub fn with_limits(mut self, limits: crate::config::Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn job_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("jobs").join(id)
    }

    /// Stores a job (CREATED), checks it, and queues it (WAITING).
    pub async fn submit(&self, document_text: String, doc: JobDocument) -> Result<JobRow> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(Error::ShuttingDown);
        }
        // A `file:` main source is read to check the document: on the blocking pool.
        let doc = tokio::task::spawn_blocking(move || doc.spec().map(|_| doc))
            .await
            .map_err(|e| Error::Store(format!("reading the job document failed: {e}")))??;
        // The options checked when the job runs are checked now, so a bad one is a 400
        // naming the field rather than a job failing later.
        let raw: serde_json::Value = serde_json::from_str(&document_text).unwrap_or_default();
        self.limits.for_job(&raw)?;
        let id = job_id(doc.id.as_deref());
        if self.store.get(&id).await?.is_some() {
            return Err(Error::Conflict(format!(
                "a job with id {id} already exists"
            )));
        }
        let now = now_ms();
        let row = JobRow::submitted(
            id.clone(),
            doc.job_type.trim().to_ascii_uppercase(),
            doc.name.clone(),
            JobState::Created,
            now,
            document_text,
        );
        self.store.insert(row).await?;
        let log = BufferedLog::default();
        log.engine(Level::Info, format!("job {id} CREATED"));
        self.store
            .transition(&id, &[JobState::Created], JobState::Waiting)
            .await?;
        log.engine(Level::Info, "job WAITING in the queue");
        self.store.append_log(&id, log.take()).await?;
        self.wake.notify_one();
        self.store
            .get(&id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {id}")))
    }

    /// Cancels a waiting job at once, or stops a running one (its worker is killed if it
    /// does not stop between batches within a moment).
    /// Stops the running job `id` between batches, its worker killed after a grace.
    fn cancel_running(&self, id: &str) -> Result<()> {
        let guard = self
            .current
            .lock()
            .map_err(|_| Error::Store("queue lock poisoned".into()))?;
        if let Some(c) = guard.as_ref().filter(|c| c.id == id) {
            c.control.cancel();
            let kill = c.kill.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CANCEL_GRACE).await;
                kill.notify_one();
            });
        }
        Ok(())
    }

    pub async fn cancel(&self, id: &str) -> Result<JobRow> {
        let row = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {id}")))?;
        match row.status {
            JobState::Created | JobState::Waiting => {
                if self
                    .store
                    .transition(
                        id,
                        &[JobState::Created, JobState::Waiting],
                        JobState::Cancelled,
                    )
                    .await?
                {
                    self.store
                        .finish(
                            id,
                            now_ms(),
                            Finish::failed(JobState::Cancelled, "cancelled before it ran"),
                        )
                        .await?;
                    let log = BufferedLog::default();
                    log.engine(Level::Info, "job CANCELLED while WAITING");
                    self.store.append_log(id, log.take()).await?;
                } else {
                    // Started between the read and the transition: stop it running.
                    self.cancel_running(id)?;
                }
            }
            JobState::Running => self.cancel_running(id)?,
            _ => {
                return Err(Error::Conflict(format!(
                    "job {id} is {} and cannot be cancelled",
                    row.status.as_str()
                )))
            }
        }
        self.store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {id}")))
    }

    /// Queues a finished job again.
    pub async fn rerun(&self, id: &str) -> Result<JobRow> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(Error::ShuttingDown);
        }
        let row = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {id}")))?;
        if !self.store.requeue(id).await? {
            return Err(Error::Conflict(format!(
                "job {id} is {}: only a finished job can be re-run",
                row.status.as_str()
            )));
        }
        let log = BufferedLog::default();
        log.engine(Level::Info, "job re-queued: WAITING in the queue");
        self.store.append_log(id, log.take()).await?;
        self.wake.notify_one();
        self.store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {id}")))
    }

    /// The counts of job `id` so far, while it runs.
    pub fn progress(&self, id: &str) -> Option<JobProgress> {
        self.current.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|c| c.id == id)
                .map(|c| c.control.progress())
        })
    }

    /// Records of every job so far: those that finished and the running one's.
    pub fn job_records(&self) -> JobProgress {
        match self.current.lock() {
            Ok(c) => self
                .metrics
                .job_records(c.as_ref().map(|c| c.control.progress())),
            Err(_) => JobProgress::default(),
        }
    }

    pub fn running_id(&self) -> Option<String> {
        self.current
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.id.clone()))
    }

    /// Stops taking jobs. The running job gets `grace` to finish; then it is stopped and
    /// marked interrupted (it can be re-run).
    pub async fn shutdown(&self, grace: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        if self.stopped_flag.load(Ordering::Relaxed) {
            return;
        }
        let waited = tokio::time::timeout(grace, self.stopped.notified()).await;
        if waited.is_err() {
            // An environment build in progress stops too (its tool killed, its folder
            // removed), so nothing of the job outlives the engine.
            if let Some(environments) = &self.environments {
                environments.stop_builds();
            }
            let kill = self
                .current
                .lock()
                .ok()
                .and_then(|c| c.as_ref().map(|c| c.kill.clone()));
            if let Some(k) = kill {
                k.notify_one();
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), self.stopped.notified()).await;
        }
    }

    /// The queue's loop: runs until `shutdown`.
    pub async fn run(self: Arc<Self>) {
        loop {
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
            let next = match self.store.next_waiting().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("job queue: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            match next {
                Some(row) => {
                    if let Err(e) = self.run_one(row).await {
                        tracing::error!("job queue: {e}");
                    }
                }
                None => {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), self.wake.notified()).await;
                }
            }
        }
        self.stopped_flag.store(true, Ordering::Relaxed);
        self.stopped.notify_waiters();
    }

    async fn run_one(&self, row: JobRow) -> Result<()> {
        let id = row.id.clone();
        let control = Arc::new(JobControl::observed(self.metrics.batches("job")));
        let kill = Arc::new(Notify::new());
        if let Ok(mut c) = self.current.lock() {
            *c = Some(Current {
                id: id.clone(),
                control: control.clone(),
                kill: kill.clone(),
            });
        }
        if !self.store.start(&id, now_ms()).await? {
            // Cancelled (or deleted) after it was picked: nothing to run.
            if let Ok(mut c) = self.current.lock() {
                *c = None;
            }
            return Ok(());
        }
        let log = Arc::new(BufferedLog::for_job(&id));
        log.engine(Level::Info, format!("job {id} RUNNING"));

        let flusher = {
            let store = self.store.clone();
            let log = log.clone();
            let id = id.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LOG_FLUSH).await;
                    if let Err(e) = store.append_log(&id, log.take()).await {
                        tracing::warn!("job {id}: cannot store log lines: {e}");
                    }
                }
            })
        };

        let started = std::time::Instant::now();
        let finish = self.execute(&row, control.clone(), kill, log.clone()).await;
        flusher.abort();
        let finish = match finish {
            Ok(f) => f,
            Err(e) => {
                log.engine(Level::Error, format!("job ERROR: {e}"));
                log.engine(
                    Level::Info,
                    "batch job complete: status ERROR, result FAILURE. Records in/out: 0/0",
                );
                Finish::failed(JobState::Error, e.to_string())
            }
        };
        self.store.append_log(&id, log.take()).await?;
        let status = finish.status;
        self.store.finish(&id, now_ms(), finish).await?;
        if let Ok(mut c) = self.current.lock() {
            // Under the lock [`JobQueue::job_records`] reads with: the job's records move
            // from running to finished at once.
            self.metrics.job_finished(
                &row.job_type,
                status.as_str(),
                started.elapsed(),
                Some(control.progress()),
            );
            *c = None;
        }
        crate::retention::apply_logged(&self.store, &self.data_dir, self.retention, now_ms()).await;
        Ok(())
    }

    async fn execute(
        &self,
        row: &JobRow,
        control: Arc<JobControl>,
        kill: Arc<Notify>,
        log: Arc<BufferedLog>,
    ) -> Result<Finish> {
        let doc: JobDocument = serde_json::from_str(&row.document).map_err(|e| {
            Error::BadRequest(format!("the stored job document is unreadable: {e}"))
        })?;
        let spec = tokio::task::spawn_blocking(move || doc.spec())
            .await
            .map_err(|e| Error::Store(format!("job preparation failed: {e}")))??;
        let on_spark = spec
            .on_spark
            .unwrap_or_else(|| self.spark.as_ref().is_some_and(|s| s.settings().default));
        if on_spark {
            return self.execute_spark(row, spec, control, kill, log).await;
        }
        let dir = self.job_dir(&row.id);
        let language = spec
            .model
            .language
            .unwrap_or(runtime_core::Language::Python);
        let raw: serde_json::Value = serde_json::from_str(&row.document).unwrap_or_default();
        let limits = self.limits.for_job(&raw)?;
        let (runner, limited) = self.runners.limited(language, limits)?;
        if !limits.is_none() {
            log.engine(Level::Info, describe_limits(&limits, limited, language));
        }

        let (job, places, train_dir) = {
            let spec = spec.clone();
            let dir = dir.clone();
            let log = log.clone();
            let stored = row.document.clone();
            let batch_size = self.batching.size;
            let control = control.clone();
            let registry = self.registry.clone();
            tokio::task::spawn_blocking(move || {
                let raw = crate::document::raw_json(&stored)?;
                build_job(
                    &spec,
                    &dir,
                    raw,
                    batch_size,
                    &registry,
                    control,
                    log.as_ref(),
                )
                .map(|(mut job, places, train)| {
                    // A record over a limit fails alone; a new worker scores the rest.
                    job.options.worker_limits = limited;
                    (job, places, train)
                })
            })
            .await
            .map_err(|e| Error::Store(format!("job preparation failed: {e}")))??
        };

        let log_dyn: Arc<dyn JobLog> = log.clone();
        let mut run = Box::pin(jobs::run_job(job, runner.as_ref(), log_dyn));
        let outcome = tokio::select! {
            o = &mut run => Some(o),
            _ = kill.notified() => None,
        };
        let Some(outcome) = outcome else {
            // Dropping the run drops its session: the worker is killed.
            drop(run);
            let cancelled = control.is_cancelled();
            let reason = if cancelled {
                "cancelled: the job did not stop between batches and its worker was stopped"
            } else {
                "interrupted: the engine shut down while the job was running"
            };
            log.engine(Level::Warn, reason);
            return Ok(Finish {
                records_in: control.records_read() as i64,
                records_rejected: control.progress().records_rejected as i64,
                records_failed: control.progress().records_failed as i64,
                ..Finish::stopped(cancelled, reason)
            });
        };
        Ok(finish_of(
            &outcome,
            places,
            train_dir,
            &spec,
            control.progress(),
        ))
    }
}

/// The job log's line about the limits its workers run with.
pub(crate) fn describe_limits(
    limits: &worker::WorkerLimits,
    enforced: bool,
    language: runtime_core::Language,
) -> String {
    let mut parts = Vec::new();
    if let Some(t) = limits.record_timeout {
        parts.push(format!("{} ms per record", t.as_millis()));
    }
    if let Some(m) = limits.memory_bytes {
        parts.push(format!("{} MiB of memory", m >> 20));
    }
    if enforced {
        format!("worker limits: {}", parts.join(", "))
    } else {
        format!(
            "worker limits ({}) are not enforced for {language} models",
            parts.join(", ")
        )
    }
}

/// The id of a new job: the document's own when usable, else a new one. Whether it is free
/// is checked once, by [`JobQueue::submit`].
pub(crate) fn job_id(asked: Option<&str>) -> String {
    match asked.filter(|s| is_usable_id(s)) {
        Some(id) => id.to_owned(),
        None => uuid::Uuid::new_v4().to_string(),
    }
}

/// An id a document may give its job (it names the job's folder).
pub(crate) fn is_usable_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !s.starts_with('.')
}

fn ext_of(enc: Encoding) -> &'static str {
    match enc {
        Encoding::Json => "jsonl",
        Encoding::Csv => "csv",
        Encoding::AvroBinary => "avro",
        Encoding::MsgPack => "msgpack",
        Encoding::Parquet => "parquet",
        Encoding::Utf8 => "txt",
        Encoding::Raw => "bin",
    }
}

type Built = (Job, Vec<OutputPlace>, Option<StreamDescriptor>);

/// Plans the job a document asks for and builds it through `jobs::plan::build`, as
/// `engine run` does. Blocking.
fn build_job(
    spec: &JobSpec,
    dir: &Path,
    raw_json: String,
    batch_size: usize,
    registry: &Registry,
    control: Arc<JobControl>,
    log: &BufferedLog,
) -> Result<Built> {
    let run_dir = dir.join("run");
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)
            .map_err(|e| Error::io(format!("cannot empty {}", run_dir.display()), e))?;
    }
    let (plan, places, train_dir) = plan_job(spec, dir, &run_dir, raw_json, batch_size)?;
    let job = jobs::plan::build(plan, &run_dir, registry, log, control).map_err(|e| match e {
        jobs::Error::Schemas(_) => Error::BadRequest(e.to_string()),
        e => Error::from(e),
    })?;
    Ok((job, places, train_dir))
}

/// The plan of a job document: its model, its inputs (embedded ones written under
/// `run_dir/data`) and outputs as file descriptors, where each output goes, and training's
/// products folder.
fn plan_job(
    spec: &JobSpec,
    dir: &Path,
    run_dir: &Path,
    raw_json: String,
    batch_size: usize,
) -> Result<(JobPlan, Vec<OutputPlace>, Option<StreamDescriptor>)> {
    let model = crate::prepare::plan_model(&spec.model)?;

    let data = run_dir.join("data");
    std::fs::create_dir_all(&data)
        .map_err(|e| Error::io(format!("cannot create {}", data.display()), e))?;
    let mut inputs = Vec::new();
    for (k, d) in spec.inputs.iter().enumerate() {
        inputs.push(PlanInput {
            slot: Slot::for_input(k),
            name: d.name.clone(),
            descriptor: input_descriptor(d, k, &data)?,
            whole_document: d.whole_file,
        });
    }
    let mut outputs = Vec::new();
    let mut places = Vec::new();
    let mut train_dir = None;
    for (k, d) in spec.outputs.iter().enumerate() {
        let slot = Slot::for_output(k);
        if spec.kind == JobKind::Train && k == 0 {
            // Training's first output names the folder of its products: a local one, or a
            // store's prefix.
            let folder = d.content.as_ref().and_then(|c| c.descriptor(Encoding::Raw));
            train_dir = Some(folder.unwrap_or_else(|| {
                StreamDescriptor::file(dir.join("trained").display().to_string(), Encoding::Raw)
            }));
        }
        let named = match &d.content {
            Some(c) if spec.kind != JobKind::Train => c.descriptor(d.encoding),
            _ => None,
        };
        let embedded = named.is_none();
        let descriptor = named.unwrap_or_else(|| {
            let path = dir.join(format!("output-{}.{}", slot.0, ext_of(d.encoding)));
            StreamDescriptor::file(path.display().to_string(), d.encoding)
        });
        places.push(OutputPlace {
            slot: slot.0,
            name: d.name.clone(),
            encoding: d.encoding.name().to_owned(),
            embedded,
            path: descriptor.shown(),
            records: 0,
        });
        outputs.push(PlanOutput { slot, descriptor });
    }
    let plan = JobPlan {
        kind: spec.kind,
        model,
        inputs,
        outputs,
        errors: None,
        train_output: train_dir.clone(),
        init: InitContext::Job { raw_json },
        options: PlanOptions {
            input_schema_checking: spec.input_schema_checking,
            output_schema_checking: spec.output_schema_checking,
            lines_hint: "inputMode \"lines\"".to_owned(),
            job: JobOptions {
                stop_on_bad_records: spec.stop_on_bad_records,
                batching: jobs::Batching::new(batch_size),
                relax_requirements: spec.relax_requirements,
                ..JobOptions::default()
            },
        },
    };
    Ok((plan, places, train_dir))
}

/// Where an input's records come from: its file or store, or its embedded bytes written
/// under `data` first.
fn input_descriptor(d: &DataSpec, k: usize, data: &Path) -> Result<StreamDescriptor> {
    let no_data = || Error::BadRequest(format!("input {} has no data", d.name));
    let Some(Content::Bytes(b)) = &d.content else {
        return d
            .content
            .as_ref()
            .and_then(|c| c.descriptor(d.encoding))
            .ok_or_else(no_data);
    };
    let name = Path::new(&d.name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    let path = data.join(format!("input-{k}-{name}"));
    std::fs::write(&path, b)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    Ok(StreamDescriptor::file(
        path.display().to_string(),
        d.encoding,
    ))
}

fn finish_of(
    o: &JobOutcome,
    mut places: Vec<OutputPlace>,
    train_dir: Option<StreamDescriptor>,
    spec: &JobSpec,
    progress: JobProgress,
) -> Finish {
    for p in &mut places {
        if let Some(c) = o.outputs.get(&p.slot) {
            p.records = c.records;
        }
    }
    let stored = StoredOutcome {
        outputs: places,
        trained_files: o
            .trained_files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        trained_dir: (spec.kind == JobKind::Train)
            .then(|| train_dir.map(|d| d.shown()))
            .flatten(),
        problems: o
            .problems
            .iter()
            .filter_map(|p| serde_json::to_value(p).ok())
            .collect(),
        traceback: o.traceback.clone(),
        elapsed_ms: o.elapsed_ms,
        progress: Some(progress),
    };
    let status = match o.status {
        jobs::JobStatus::Complete => JobState::Complete,
        jobs::JobStatus::Error => JobState::Error,
        jobs::JobStatus::Cancelled => JobState::Cancelled,
    };
    Finish {
        status,
        result: Some(o.result.as_str().to_owned()),
        reason: o.error.clone(),
        records_in: o.records_in as i64,
        records_out: o.records_out as i64,
        records_rejected: o.records_rejected as i64,
        records_failed: o.records_failed as i64,
        outcome: serde_json::to_string(&stored).ok(),
        interrupted: false,
    }
}
