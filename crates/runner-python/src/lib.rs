//! The Python language runner: CPython embedded in a worker process with pyo3.
//!
//! - Engine side: [`PythonRunner`] implements [`runtime_core::Runner`] by spawning a worker
//!   process (the engine's own binary with `worker python`, or the `python-worker` binary)
//!   and speaking the `worker` protocol to it. pyo3 is not used in the engine process.
//!   Its `prepare` step installs the model's requirements into a cached environment
//!   (its `environment` module) put first on the model's import path.
//! - Worker side: [`worker_main`] initializes the interpreter, loads the model as module
//!   `__model` and serves requests until shutdown.
//!
//! Model conventions and value conversions are described in `docs/python-models.md`.
//!
//! ```
//! use runner_python::PythonRunner;
//! use worker::WorkerCommand;
//!
//! // Workers are `engine worker python`, started from the allow-listed environment.
//! let env = worker::env::worker_environment(std::env::vars_os(), &[]);
//! let runner = PythonRunner::new(WorkerCommand::new("engine").arg("worker").arg("python").with_base_env(env));
//! # let _ = runner;
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod backend;
mod convert;
mod environment;

use std::sync::Arc;

use async_trait::async_trait;
use environments::EnvironmentCache;
use pyo3::Python;
use runtime_core::{
    Error, JobLog, Language, ModelSpec, PrepareOptions, Prepared, Result, Runner, Session,
    SessionConfig,
};
use worker::{WorkerCommand, WorkerSession};

/// Starts Python models, each in a worker process started by `worker_command` (which must
/// end up calling [`worker_main`]).
#[derive(Clone)]
pub struct PythonRunner {
    command: WorkerCommand,
    /// Where models' requirements are installed; `None`: a model with requirements cannot
    /// be prepared (this runner installs nothing).
    environments: Option<Arc<EnvironmentCache>>,
}

impl std::fmt::Debug for PythonRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonRunner")
            .field("command", &self.command)
            .field("environments", &self.environments.is_some())
            .finish()
    }
}

impl PythonRunner {
    /// A runner starting each worker with `worker_command`, a program that calls
    /// [`worker_main`] (`engine worker python`, this crate's `python-worker`, or a host
    /// program of its own). Models with requirements need [`PythonRunner::with_environments`].
    pub fn new(worker_command: WorkerCommand) -> Self {
        PythonRunner {
            command: worker_command,
            environments: None,
        }
    }

    /// Models' requirements are installed into `cache` before they start.
    pub fn with_environments(mut self, cache: Arc<EnvironmentCache>) -> Self {
        self.environments = Some(cache);
        self
    }

    /// The same runner with its workers held to `limits`.
    pub fn with_limits(&self, limits: worker::WorkerLimits) -> Self {
        PythonRunner {
            command: self.command.clone().with_limits(limits),
            environments: self.environments.clone(),
        }
    }

    /// Like [`Runner::start`], returning the concrete session, whose
    /// `submit_score`/`next_score_result` pipeline batches.
    pub async fn start_worker(
        &self,
        model: &ModelSpec,
        config: SessionConfig,
    ) -> Result<WorkerSession> {
        if model.language != Language::Python {
            return Err(Error::ModelLoad(format!(
                "the Python runner cannot run a model in {}",
                model.language
            )));
        }
        WorkerSession::start(&self.command, model, config).await
    }
}

#[async_trait]
impl Runner for PythonRunner {
    async fn prepare(
        &self,
        model: &ModelSpec,
        options: &PrepareOptions,
        log: &Arc<dyn JobLog>,
    ) -> Result<Prepared> {
        environment::prepare(model, self.environments.clone(), options, log).await
    }

    async fn start(&self, model: &ModelSpec, config: SessionConfig) -> Result<Box<dyn Session>> {
        Ok(Box::new(self.start_worker(model, config).await?))
    }
}

/// The body of a Python worker process: returns its exit code. The process must have been
/// spawned by a `WorkerSession` (protocol socket on fd 3).
pub fn worker_main() -> i32 {
    Python::initialize();
    Python::attach(|py| match backend::PythonBackend::new(py) {
        Ok(mut backend) => {
            let code = worker::serve(&mut backend);
            backend.flush();
            code
        }
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "python worker: cannot start the runner: {e}"
            );
            2
        }
    })
}
