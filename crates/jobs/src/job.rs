//! A batch job as the runner sees it, and what it gives back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use runtime_core::{InitContext, ModelSpec, RecordSink, RecordSource, Slot};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// The score function once per record.
    Score,
    /// The metrics function once with all records.
    Metrics,
    /// The training function once with all records; its product is files.
    Train,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Score => "scoring",
            JobKind::Metrics => "metrics",
            JobKind::Train => "training",
        }
    }
}

pub struct JobInput {
    pub slot: Slot,
    pub source: Box<dyn RecordSource>,
}

pub struct JobOutput {
    pub slot: Slot,
    pub sink: Box<dyn RecordSink>,
}

#[derive(Clone, Debug)]
pub struct JobOptions {
    /// End the job at the first record rejected by encoding or schema.
    pub stop_on_bad_records: bool,
    /// Records per batch read and sent to the model's worker.
    pub batching: crate::chain::Batching,
    /// How many per-record failures the outcome keeps (all are counted and logged).
    pub failures_kept: usize,
    /// Workers scoring in parallel (scoring jobs; metrics and training use one).
    pub workers: usize,
    /// `workers` was asked for by the user. Otherwise a model that reads several input
    /// slots or keeps state between records runs in one worker whatever `workers` says.
    pub workers_explicit: bool,
    /// How many times a worker that died while scoring a record is replaced, that record
    /// failing alone, before the job ends in ERROR. 0, the reference runtime's behaviour:
    /// the first death fails the job. A worker stopped for breaking a limit (time, memory)
    /// is always replaced.
    pub max_worker_restarts: u32,
    /// The runner stops workers that break per-record limits (time, memory). Each batch is
    /// then kept until scored, so a record over a limit fails alone and a new worker scores
    /// the rest; without limits or restarts nothing is kept (no copy per record).
    pub worker_limits: bool,
    /// The model's assets (top level of its working directory) installed into its environment
    /// (through the environments cache, in the runner's `prepare`) besides `requirements.txt` (assets with the "required libraries" role).
    pub requirements_assets: Vec<String>,
    /// Avro schemas checked per slot: inputs before the model sees them, outputs before an
    /// endpoint writes them. Empty: nothing is checked.
    pub schemas: schema::SlotSchemas,
    /// Show rejected records in full in the log (debug); masked otherwise.
    pub show_rejected_records: bool,
    /// Install the model's requirements without their version pins (for old models whose
    /// exact versions no longer build): `--ignore-pins`, job parameter `relaxRequirements`.
    pub relax_requirements: bool,
    /// The most bytes of the model's console (print, stderr) the job's log takes; past it
    /// console lines are dropped and counted.
    pub console_limit_bytes: u64,
    /// How long closing an input waits for its records in flight to be settled before it
    /// acknowledges what settled and lets go (sources that acknowledge: Kafka, Redis...).
    pub close_grace: std::time::Duration,
    /// A writer flushes once for every batch that came while it wrote (a group commit: an
    /// acknowledging sink's flush is a round trip to its server), holding the receipts of
    /// this many records at most before it flushes anyway. 1 flushes after every batch.
    pub settle_after_records: usize,
}

/// Records whose receipts a writer holds for one flush at most, by default.
pub const SETTLE_AFTER_RECORDS: usize = 16_384;

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            stop_on_bad_records: false,
            batching: crate::chain::Batching::default(),
            failures_kept: 10,
            workers: 1,
            workers_explicit: false,
            max_worker_restarts: 0,
            worker_limits: false,
            requirements_assets: Vec::new(),
            schemas: schema::SlotSchemas::default(),
            show_rejected_records: false,
            relax_requirements: false,
            console_limit_bytes: 10 * 1024 * 1024,
            close_grace: std::time::Duration::from_secs(30),
            settle_after_records: SETTLE_AFTER_RECORDS,
        }
    }
}

/// Shared between a running job and whoever watches it: the job's progress as it goes,
/// and a cancellation request honoured between batches.
#[derive(Default)]
pub struct JobControl {
    records_read: AtomicU64,
    records_scored: AtomicU64,
    records_failed: AtomicU64,
    records_rejected: AtomicU64,
    cancelled: AtomicBool,
    /// Per input, in order: how much of it was read (0 to 1), `None` while unknown.
    inputs: std::sync::Mutex<Vec<Option<f64>>>,
    /// Told of each batch the model scores.
    observer: Option<Arc<dyn runtime_core::BatchObserver>>,
}

impl std::fmt::Debug for JobControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobControl")
            .field("progress", &self.progress())
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// How far a job has got: counts since it started, read while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    /// Records read from the inputs (including those then rejected).
    pub records_read: u64,
    /// Records the model has taken: scored without an error (scoring jobs), or handed to
    /// the metrics or training function.
    pub records_scored: u64,
    /// Records whose scoring failed (the model raised, or its worker broke a limit).
    pub records_failed: u64,
    /// Input and output records rejected by encoding, schema or size.
    pub records_rejected: u64,
    /// How much of the inputs was read, from 0 to 1, when every input knows (files,
    /// embedded inputs); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
}

impl JobControl {
    pub fn records_read(&self) -> u64 {
        self.records_read.load(Ordering::Relaxed)
    }
    /// The counts so far.
    pub fn progress(&self) -> JobProgress {
        JobProgress {
            records_read: self.records_read.load(Ordering::Relaxed),
            records_scored: self.records_scored.load(Ordering::Relaxed),
            records_failed: self.records_failed.load(Ordering::Relaxed),
            records_rejected: self.records_rejected.load(Ordering::Relaxed),
            fraction: self.fraction(),
        }
    }

    /// A control whose job tells `observer` of each batch its model scores.
    pub fn observed(observer: Arc<dyn runtime_core::BatchObserver>) -> JobControl {
        JobControl {
            observer: Some(observer),
            ..JobControl::default()
        }
    }

    pub(crate) fn batch_scored(&self, records: usize, took: std::time::Duration) {
        if let Some(o) = &self.observer {
            o.scored(records, took);
        }
    }

    /// The inputs' mean share read, when each of them knows its own.
    fn fraction(&self) -> Option<f64> {
        let inputs = self.inputs.lock().ok()?;
        if inputs.is_empty() {
            return None;
        }
        let mut sum = 0.0;
        for f in inputs.iter() {
            sum += (*f)?;
        }
        Some(sum / inputs.len() as f64)
    }

    /// The job reads `n` inputs.
    pub(crate) fn inputs(&self, n: usize) {
        if let Ok(mut i) = self.inputs.lock() {
            *i = vec![None; n];
        }
    }

    /// How much of input `index` was read.
    pub(crate) fn input_read(&self, index: usize, fraction: Option<f64>) {
        if let Ok(mut i) = self.inputs.lock() {
            if let Some(slot) = i.get_mut(index) {
                *slot = fraction.map(|f| f.clamp(0.0, 1.0));
            }
        }
    }
    pub(crate) fn add_read(&self, n: u64) {
        self.records_read.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_scored(&self, n: u64) {
        self.records_scored.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_failed(&self, n: u64) {
        self.records_failed.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_rejected(&self, n: u64) {
        self.records_rejected.fetch_add(n, Ordering::Relaxed);
    }
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Where a training job's products go: a folder (local, or a store's prefix) that each
/// file the model wrote under `outputDir/` is copied under, through the registry's opener
/// for it ([`endpoints::Registry::store_file`]).
pub struct TrainOutput {
    pub folder: endpoints::StreamDescriptor,
    pub registry: endpoints::Registry,
}

/// Everything a job needs to run.
pub struct Job {
    pub kind: JobKind,
    pub model: ModelSpec,
    /// The main source's own file name, as the user gave it (the model runs from
    /// `model.main_source`, a reserved name), for the job's log.
    pub source_name: String,
    /// Why the model keeps state between records, if its source says it does (read once,
    /// when the job is planned): its records then reach one worker unless more are asked
    /// for explicitly.
    pub state_between_records: Option<String>,
    pub init: InitContext,
    /// Inputs in the order they are read; each feeds its slot.
    pub inputs: Vec<JobInput>,
    pub outputs: Vec<JobOutput>,
    /// The error output: where each refused or failed record goes as an error record (see
    /// the pipeline's `errors` module for its fields); none: they are counted and logged.
    pub errors: Option<Box<dyn runtime_core::RecordSink>>,
    /// For training: where the files the model wrote under `outputDir/` are copied.
    pub train_output: Option<TrainOutput>,
    /// Environment of the model's worker (HOME and the like).
    pub env: Vec<(String, String)>,
    pub options: JobOptions,
    pub control: Arc<JobControl>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobStatus {
    Complete,
    Error,
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobResult {
    Success,
    Failure,
}

/// Counts of one slot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SlotCounts {
    /// Records read (input slot) or written (output slot).
    pub records: u64,
    pub rejected_by_encoding: u64,
    pub rejected_by_schema: u64,
    pub rejected_by_size: u64,
}

impl SlotCounts {
    pub fn rejected(&self) -> u64 {
        self.rejected_by_encoding + self.rejected_by_schema + self.rejected_by_size
    }
}

/// One thing that went wrong with one record, kept for the summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordProblem {
    pub slot: u32,
    /// Where the record stands in its stream (`record 5, line 5`).
    pub position: String,
    pub reason: String,
}

/// Where an output went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputReport {
    pub slot: u32,
    pub location: Option<String>,
    pub records: u64,
}

/// What a job did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobOutcome {
    pub kind: JobKind,
    pub status: JobStatus,
    pub result: JobResult,
    pub records_in: u64,
    pub records_out: u64,
    pub records_rejected: u64,
    pub records_failed: u64,
    pub inputs: BTreeMap<u32, SlotCounts>,
    pub outputs: BTreeMap<u32, SlotCounts>,
    /// The first per-record failures and rejections, in order.
    pub problems: Vec<RecordProblem>,
    /// Why the job ended in ERROR or was stopped early.
    pub error: Option<String>,
    /// The traceback of a model error that ended the job.
    pub traceback: Option<String>,
    pub output_reports: Vec<OutputReport>,
    /// Training products, relative to the output folder.
    pub trained_files: Vec<PathBuf>,
    pub elapsed_ms: u64,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Complete => "COMPLETE",
            JobStatus::Error => "ERROR",
            JobStatus::Cancelled => "CANCELLED",
        }
    }
}

impl JobResult {
    pub fn as_str(self) -> &'static str {
        match self {
            JobResult::Success => "SUCCESS",
            JobResult::Failure => "FAILURE",
        }
    }
}
