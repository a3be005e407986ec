//! The Python language runner: CPython embedded in a worker process with pyo3.
//!
//! - Engine side: [`PythonRunner`] implements [`runtime_core::Runner`] by spawning a worker
//!   process (the engine's own binary with `worker python`, or the `python-worker` binary)
//!   and speaking the `worker` protocol to it. pyo3 is not used in the engine process.
//! - Worker side: [`worker_main`] initializes the interpreter, loads the model as module
//!   `__model` and serves requests until shutdown.
//!
//! Model conventions and value conversions are described in `docs/python-models.md`.

mod backend;
mod convert;

use async_trait::async_trait;
use pyo3::Python;
use runtime_core::{Error, Language, ModelSpec, Result, Runner, Session, SessionConfig};
use worker::{WorkerCommand, WorkerSession};

/// Starts Python models, each in a worker process started by `worker_command` (which must
/// end up calling [`worker_main`]).
#[derive(Clone, Debug)]
pub struct PythonRunner {
    command: WorkerCommand,
}

impl PythonRunner {
    pub fn new(worker_command: WorkerCommand) -> Self {
        PythonRunner {
            command: worker_command,
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
