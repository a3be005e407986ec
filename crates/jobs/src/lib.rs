//! The batch job runner shared by `engine run` and the engine service.
//!
//! - [`model_files`]: from a model on disk to a materialized working directory.
//! - [`plan`]: a job as `engine run` and the service describe it, and the one function
//!   that makes it runnable (model written, schemas resolved, endpoints opened).
//! - [`run_job`]: reads the inputs, drives a [`runtime_core::Session`], writes the outputs,
//!   counts and logs everything, and returns a [`JobOutcome`]. It never fails as a function:
//!   every way a job can end is an outcome.
//!
//! A scoring job over a model folder, its inputs and outputs named by stream descriptors:
//!
//! ```
//! use std::sync::Arc;
//!
//! use endpoints::{Registry, StreamDescriptor};
//! use jobs::{
//!     JobControl, JobKind, JobOptions, JobPlan, LocatedModel, PlanInput, PlanModel,
//!     PlanOptions, PlanOutput,
//! };
//! use runtime_core::{ExplicitNames, InitContext, MemoryLog, Runner, Slot};
//!
//! let folder = tempfile::tempdir()?;
//! std::fs::write(folder.path().join("model.py"), "# modelop.score\ndef double(x):\n    yield 2 * x\n")?;
//! let located = LocatedModel::from_path(folder.path(), None)?;
//! let plan = JobPlan {
//!     kind: JobKind::Score,
//!     model: PlanModel::new(located, &ExplicitNames::default()),
//!     inputs: vec![PlanInput {
//!         slot: Slot(0),
//!         name: "numbers".to_owned(),
//!         descriptor: StreamDescriptor::parse("inline:1,2,3")?,
//!         whole_document: None,
//!     }],
//!     outputs: vec![PlanOutput { slot: Slot(1), descriptor: StreamDescriptor::parse("discard:")? }],
//!     errors: None,
//!     train_output: None,
//!     init: InitContext::Job { raw_json: "{}".to_owned() },
//!     options: PlanOptions {
//!         input_schema_checking: true,
//!         output_schema_checking: true,
//!         lines_hint: "--input-mode lines".to_owned(),
//!         job: JobOptions::default(),
//!     },
//! };
//! // Blocking: the model is written under the work folder and the endpoints are opened.
//! let work = tempfile::tempdir()?;
//! let log = Arc::new(MemoryLog::default());
//! let job = jobs::plan::build(plan, work.path(), &Registry::default(), log.as_ref(), Arc::new(JobControl::default()))?;
//! assert_eq!(job.model.entry_points.score.as_deref(), Some("double"));
//!
//! // Run by a language runner (runner-python's `PythonRunner`, in a worker process):
//! async fn run(job: jobs::Job, runner: &dyn Runner, log: Arc<MemoryLog>) -> jobs::JobOutcome {
//!     jobs::run_job(job, runner, log).await
//! }
//! # let _ = run;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod chain;
mod console;
pub mod error;
pub mod errors;
pub mod job;
pub mod model_files;
pub mod plan;
mod pool;
mod run;

pub use chain::Batching;
pub use error::{Error, Result};
pub use job::{
    Job, JobControl, JobInput, JobKind, JobOptions, JobOutcome, JobOutput, JobProgress, JobResult,
    JobStatus, OutputReport, RecordProblem, SlotCounts, TrainOutput, SETTLE_AFTER_RECORDS,
};
pub use model_files::{materialize, LocatedModel, Materialized};
pub use plan::{Asset, JobPlan, PlanInput, PlanModel, PlanOptions, PlanOutput};
pub use run::{run_job, settle_written, take_refused, Held, Unsettled};
