//! The traits a language runner implements. A `Runner` starts a `Session`: one running copy
//! of one model (a "jet"), initialized once, then fed records.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
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

/// What preparing a model takes from the job or deployment that starts it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrepareOptions {
    /// Assets of the model, besides the language's own requirements file, that list the
    /// libraries it needs (the "required libraries" role).
    pub requirements_assets: Vec<String>,
    /// Install the libraries without their version pins (`--ignore-pins`,
    /// `relaxRequirements`).
    pub relax_requirements: bool,
}

/// A model made ready to start: the spec its workers start from (an environment's
/// packages on its import path) and what must be held while they run.
pub struct Prepared {
    pub model: ModelSpec,
    /// Held, never read, until the model's workers are closed (a Python environment's
    /// in-use lock, so the cache does not evict it).
    pub guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("model", &self.model)
            .field("guard", &self.guard.is_some())
            .finish()
    }
}

#[async_trait]
pub trait Runner: Send + Sync {
    /// Makes ready what `model` needs before any of its workers starts, once per job or
    /// deployment; the pipeline starts workers from the returned spec and holds its guard
    /// until they are closed. The default needs nothing. The Python runner installs the
    /// model's requirements into a cached environment here; failures are
    /// `Error::Prepare`.
    async fn prepare(
        &self,
        model: &ModelSpec,
        options: &PrepareOptions,
        log: &Arc<dyn JobLog>,
    ) -> Result<Prepared> {
        let _ = (options, log);
        Ok(Prepared {
            model: model.clone(),
            guard: None,
        })
    }

    /// Starts the model and calls its init. An init that raises gives
    /// `Error::ModelFailed`; a model that cannot load gives `Error::ModelLoad`.
    async fn start(&self, model: &ModelSpec, config: SessionConfig) -> Result<Box<dyn Session>>;
}

/// Told of each batch a model scores (a deployment's or a job's): how many records, and
/// how long the model took over them. Hosts use it for their metrics; it must not block.
pub trait BatchObserver: Send + Sync {
    fn scored(&self, records: usize, took: std::time::Duration);
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

/// How the sessions of a job or a deployment are replaced when their worker goes: one
/// policy for both. A worker the watchdog killed for breaking a limit (time, memory) is
/// always replaced, the record it was on failing alone; one that died on its own counts
/// against `budget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// How many workers that died may be replaced; `None`: no bound.
    pub budget: Option<u32>,
    /// The wait before starting a worker again after a start failed.
    pub backoff: Backoff,
}

/// A wait that starts at `first` and doubles after each failure in a row, up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The wait after `failures` failures in a row (at least one).
    pub fn delay(&self, failures: u32) -> Duration {
        let doubled = self
            .first
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled.min(self.max)
    }
}

impl RestartPolicy {
    /// A policy with `budget` and the default backoff.
    pub fn with_budget(budget: Option<u32>) -> Self {
        RestartPolicy {
            budget,
            backoff: Backoff::default(),
        }
    }
}

/// What a [`RestartPolicy`] has allowed so far, shared by the sessions of one job or one
/// deployment.
#[derive(Debug)]
pub struct Restarts {
    policy: RestartPolicy,
    used: AtomicU32,
    failed_starts: AtomicU32,
}

impl Restarts {
    pub fn new(policy: RestartPolicy) -> Self {
        Restarts {
            policy,
            used: AtomicU32::new(0),
            failed_starts: AtomicU32::new(0),
        }
    }

    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    /// Whether a session that failed with `error` may be replaced: always for a broken
    /// limit, for a worker that died while the budget lasts (using one), never for other
    /// errors.
    pub fn allow(&self, error: &Error) -> bool {
        match error {
            Error::LimitExceeded { .. } => true,
            Error::WorkerDied { .. } => {
                let budget = self.policy.budget.unwrap_or(u32::MAX);
                self.used
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                        (used < budget).then_some(used + 1)
                    })
                    .is_ok()
            }
            _ => false,
        }
    }

    /// How many workers that died were allowed a replacement.
    pub fn deaths_replaced(&self) -> u32 {
        self.used.load(Ordering::Relaxed)
    }

    /// A worker started: the backoff starts over.
    pub fn started(&self) {
        self.failed_starts.store(0, Ordering::Relaxed);
    }

    /// A worker could not start: how long to wait before trying again.
    pub fn start_failed(&self) -> Duration {
        let failures = self.failed_starts.fetch_add(1, Ordering::Relaxed) + 1;
        self.policy.backoff.delay(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn died() -> Error {
        Error::WorkerDied {
            reason: "exited with status 1".into(),
            last_record: None,
        }
    }

    #[test]
    fn a_budget_counts_deaths_and_limits_are_always_replaced() {
        let r = Restarts::new(RestartPolicy::with_budget(Some(1)));
        let limit = Error::LimitExceeded {
            limit: "time".into(),
            detail: String::new(),
            last_record: None,
        };
        assert!(r.allow(&limit));
        assert!(r.allow(&died()));
        assert!(!r.allow(&died()));
        assert!(r.allow(&limit));
        assert!(!r.allow(&Error::Protocol("out of step".into())));
        let unbounded = Restarts::new(RestartPolicy::with_budget(None));
        assert!((0..100).all(|_| unbounded.allow(&died())));
        assert_eq!(unbounded.deaths_replaced(), 100);
        assert_eq!(r.deaths_replaced(), 1);
    }

    #[test]
    fn the_backoff_doubles_to_its_bound_and_starts_over() {
        let r = Restarts::new(RestartPolicy::with_budget(None));
        let waits: Vec<u64> = (0..8)
            .map(|_| r.start_failed().as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        r.started();
        assert_eq!(r.start_failed(), Duration::from_millis(100));
    }
}
