//! The batch job runner shared by `engine run` and the engine service.
//!
//! - [`model_files`]: from a model on disk to a materialized working directory.
//! - [`plan`]: a job as `engine run` and the service describe it, and the one function
//!   that makes it runnable (model written, schemas resolved, endpoints opened).
//! - [`run_job`]: reads the inputs, drives a [`runtime_core::Session`], writes the outputs,
//!   counts and logs everything, and returns a [`JobOutcome`]. It never fails as a function:
//!   every way a job can end is an outcome.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod chain;
mod console;
pub mod error;
mod errors;
pub mod job;
pub mod model_files;
pub mod plan;
mod pool;
mod run;

pub use chain::Batching;
pub use error::{Error, Result};
pub use job::{
    Job, JobControl, JobInput, JobKind, JobOptions, JobOutcome, JobOutput, JobProgress, JobResult,
    JobStatus, OutputReport, RecordProblem, SlotCounts,
};
pub use model_files::{materialize, LocatedModel, Materialized};
pub use plan::{Asset, JobPlan, PlanInput, PlanModel, PlanOptions, PlanOutput};
pub use run::run_job;
