//! The traits a language runner implements. A `Runner` starts a `Session`: one running copy
//! of one model (a "jet"), initialized once, then fed records.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::log::JobLog;
use crate::model::{EntryPoints, Language};
use crate::record::Slot;
use crate::value::Value;

/// A model ready to start: its files are materialized in `work_dir` and its entry points
/// are resolved.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    pub language: Language,
    /// The folder holding the model's files; the model's current directory.
    pub work_dir: PathBuf,
    /// The main source, relative to `work_dir`.
    pub main_source: PathBuf,
    pub entry_points: EntryPoints,
    /// Input slots whose records arrive as a data frame per batch (`recordsets.<slot>`).
    pub recordsets: BTreeMap<Slot, bool>,
    /// Extra folders whose packages the model may import (a model environment's
    /// site-packages), in order.
    pub import_paths: Vec<PathBuf>,
}

/// What `init` receives, when it takes an argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitContext {
    /// A batch job: the job document as JSON text (`rawJson`) and its key (`job`).
    Job { raw_json: String },
    /// A deployment: the deployment document (`rawJson`) and its key (`deployedModel`).
    Deployment { raw_json: String },
}

/// How a session is started.
#[derive(Clone)]
pub struct SessionConfig {
    pub init: InitContext,
    /// Where the model's console output and the runner's messages go.
    pub log: Arc<dyn JobLog>,
    /// Extra environment variables for the worker process.
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("init", &self.init)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// One input record for the score function.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreItem {
    pub slot: Slot,
    /// Counts from 1 per job (the third argument of a 3-argument score function).
    pub seqno: u64,
    pub value: Value,
}

/// Model code raised on one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFailure {
    /// The exception in one line (`ValueError: bad x`).
    pub message: String,
    /// The formatted traceback, may be empty.
    pub traceback: String,
}

/// What scoring one record produced: the `(slot, value)` outputs in the order yielded, or
/// the failure that skipped it.
pub type ScoreOutcome = std::result::Result<Vec<(Slot, Value)>, RecordFailure>;

/// Functions called once with all the records of every input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllRecordsFunction {
    Metrics,
    Train,
}

impl AllRecordsFunction {
    pub fn as_str(self) -> &'static str {
        match self {
            AllRecordsFunction::Metrics => "metrics",
            AllRecordsFunction::Train => "train",
        }
    }
}

#[async_trait]
pub trait Runner: Send + Sync {
    /// Starts the model and calls its init. An init that raises gives
    /// `Error::ModelFailed`; a model that cannot load gives `Error::ModelLoad`.
    async fn start(&self, model: &ModelSpec, config: SessionConfig) -> Result<Box<dyn Session>>;
}

#[async_trait]
pub trait Session: Send {
    /// Scores a batch; one outcome per item, in order. An `Err` means the session itself
    /// failed (the worker died); the batch's records are then not scored.
    async fn score(&mut self, batch: Vec<ScoreItem>) -> Result<Vec<ScoreOutcome>>;

    /// Adds records of one input slot to what the next `run_all` receives.
    async fn collect(&mut self, slot: Slot, batch: Vec<Value>) -> Result<()>;

    /// Calls metrics or train once with everything collected (one data frame per input slot,
    /// in slot order) and returns its outputs.
    async fn run_all(&mut self, function: AllRecordsFunction) -> Result<Vec<(Slot, Value)>>;

    /// Calls the model's `end` if it has one and stops the worker.
    async fn close(self: Box<Self>) -> Result<()>;

    /// After `score` failed because the worker died or broke a limit: the seqno of the
    /// record it was scoring, when known. The caller may then fail that record alone and
    /// go on with a new session.
    fn failed_seqno(&self) -> Option<u64> {
        None
    }
}
