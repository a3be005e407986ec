//! Model workers: the process that runs a model's code away from the engine.
//!
//! - [`protocol`]: the framed MessagePack messages engine and worker exchange.
//! - [`supervisor`]: the one spawn and supervision path of every worker, whatever it speaks:
//!   [`WorkerProcess`] starts a [`WorkerCommand`] in a process group of its own with the
//!   lifeline, the base environment, the caller's fds and the shared [progress page](progress)
//!   as fd 4; drains its stdout/stderr into the job's log (lines capped); runs the watchdog
//!   (per-record timeout, memory limit); keeps the batches in flight; and reports a death as
//!   `Error::WorkerDied` (or `Error::LimitExceeded`) naming the record it was on.
//! - [`WorkerSession`] (engine side): a [`WorkerProcess`] with the protocol socket as its
//!   fd 3, implementing [`runtime_core::Session`].
//! - [`serve`] (worker side): the request loop a worker runs, dispatching to the language
//!   runner's [`WorkerBackend`].
//!
//! - Runners whose worker speaks a protocol of its own (the R runner, over pipes) use
//!   [`WorkerProcess`] directly.
//!
//! - [`env`](mod@env): the environment a worker starts from (an allow-list of the engine's, so its
//!   token and secrets stay out of model code).
//!
//! Nothing here knows a programming language; runners (such as `runner-python`) implement
//! [`WorkerBackend`] in the worker and wrap [`WorkerSession`] in the engine.
//!
//! A runner is given the command that starts its workers (what follows is how a host
//! program that is its own Python worker names itself; see `docs/embedding.md`):
//!
//! ```
//! use worker::WorkerCommand;
//!
//! // The host's environment, less what model code must not see (tokens, credentials).
//! let env = worker::env::worker_environment(std::env::vars_os(), &[]);
//! let command = WorkerCommand::new(std::env::current_exe()?).arg("worker").with_base_env(env);
//! # let _ = command;
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod console;
pub mod env;
mod lifeline;
mod limits;
pub mod progress;
pub mod protocol;
mod serve;
mod session;
pub mod supervisor;
pub mod usage;

pub use console::ConsoleLimits;
pub use lifeline::kill_group;
pub use limits::WorkerLimits;
pub use progress::ProgressPage;
pub use serve::{serve, Context, WorkerBackend, PROTOCOL_FD};
pub use session::{WorkerCommand, WorkerInfo, WorkerSession};
pub use supervisor::{describe_exit, tie_to_engine, Broken, Death, WorkerProcess};
