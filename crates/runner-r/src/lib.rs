//! The R language runner: each session is an `Rscript` worker process running the driver
//! in `R/driver.R`, which loads the model and calls its functions. R is never linked into
//! the engine.
//!
//! - [`RRunner`] implements [`runtime_core::Runner`]; [`RSession`] implements
//!   [`runtime_core::Session`].
//! - Engine and worker exchange frames over two pipes (the worker's fd 3 and fd 5), each a
//!   32-bit length and one value in R's own serialization format ([`rds`]), which R reads
//!   and writes in C; fd 4 is the worker crate's progress page, so a dying worker is
//!   blamed on the exact record and a record running past its time limit is seen.
//!   Supervision (spawn, console, exit, time and memory limits, the batches in flight) is
//!   [`worker::WorkerProcess`], the supervisor every worker runs under.
//!
//! Model conventions and the value mapping are described in `docs/r-models.md`.
//!
//! ```
//! use runner_r::RRunner;
//!
//! // Workers run `Rscript` from the PATH; `with_rscript` names another.
//! let runner = RRunner::new();
//! assert_eq!(runner.rscript(), std::path::Path::new("Rscript"));
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod rds;
mod session;

use std::ffi::OsString;
use std::path::PathBuf;

use async_trait::async_trait;
use runtime_core::{Error, Language, ModelSpec, Result, Runner, Session, SessionConfig};
use worker::WorkerLimits;

pub use session::RSession;

/// The driver script the worker runs; written next to the model's working directory.
pub const DRIVER: &str = include_str!("../R/driver.R");

/// Starts R models, each in its own `Rscript` process.
#[derive(Clone, Debug)]
pub struct RRunner {
    rscript: PathBuf,
    /// The environment workers start from; `None`: the engine's own.
    base_env: Option<Vec<(OsString, OsString)>>,
    /// Per-record timeout and memory limit of each worker.
    limits: WorkerLimits,
}

impl Default for RRunner {
    fn default() -> Self {
        RRunner::new()
    }
}

impl RRunner {
    /// Runs `Rscript` as found on the PATH.
    pub fn new() -> Self {
        RRunner {
            rscript: PathBuf::from("Rscript"),
            base_env: None,
            limits: WorkerLimits::default(),
        }
    }

    /// Runs the given `Rscript` executable.
    pub fn with_rscript(rscript: impl Into<PathBuf>) -> Self {
        RRunner {
            rscript: rscript.into(),
            base_env: None,
            limits: WorkerLimits::default(),
        }
    }

    /// Workers start from exactly these variables instead of the engine's environment
    /// (see `worker::env`).
    pub fn with_base_env(mut self, vars: Vec<(OsString, OsString)>) -> Self {
        self.base_env = Some(vars);
        self
    }

    /// Workers are held to `limits` (enforced by the engine, as for Python workers): a
    /// record over its time, or a worker over its memory, gets the worker killed and that
    /// record failed with `Error::LimitExceeded`.
    pub fn with_limits(mut self, limits: WorkerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The `Rscript` executable workers run.
    pub fn rscript(&self) -> &std::path::Path {
        &self.rscript
    }

    /// Like [`Runner::start`], returning the concrete session.
    pub async fn start_session(
        &self,
        model: &ModelSpec,
        config: SessionConfig,
    ) -> Result<RSession> {
        if model.language != Language::R {
            return Err(Error::ModelLoad(format!(
                "the R runner cannot run a model in {}",
                model.language
            )));
        }
        RSession::start(
            &self.rscript,
            self.base_env.as_deref(),
            self.limits,
            model,
            config,
        )
        .await
    }
}

#[async_trait]
impl Runner for RRunner {
    async fn start(&self, model: &ModelSpec, config: SessionConfig) -> Result<Box<dyn Session>> {
        Ok(Box::new(self.start_session(model, config).await?))
    }
}
