//! Model workers: the process that runs a model's code away from the engine.
//!
//! - [`protocol`]: the framed MessagePack messages engine and worker exchange.
//! - [`WorkerSession`] (engine side): spawns a worker from a [`WorkerCommand`] with the
//!   protocol socket as its fd 3 and a shared [progress page](progress) as its fd 4, drains
//!   its stdout/stderr into the job's log, and implements [`runtime_core::Session`]. A
//!   worker that dies surfaces as `Error::WorkerDied` naming the record it was scoring.
//! - [`serve`] (worker side): the request loop a worker runs, dispatching to the language
//!   runner's [`WorkerBackend`].
//!
//! - [`WorkerProcess`]: the same supervision (spawn with chosen fds, console draining,
//!   exit reporting, kill on drop, and the limits' watchdog when it is given the progress
//!   page) for a worker speaking a protocol of its own.
//!
//! - [`env`]: the environment a worker starts from (an allow-list of the engine's, so its
//!   token and secrets stay out of model code).
//!
//! Nothing here knows a programming language; runners (such as `runner-python`) implement
//! [`WorkerBackend`] in the worker and wrap [`WorkerSession`] in the engine.

mod console;
pub mod env;
mod lifeline;
mod limits;
pub mod process;
pub mod progress;
pub mod protocol;
mod serve;
mod session;

pub use console::ConsoleLimits;
pub use limits::WorkerLimits;
pub use process::WorkerProcess;
pub use progress::ProgressPage;
pub use serve::{serve, Context, WorkerBackend, PROTOCOL_FD};
pub use session::{describe_exit, Broken, WorkerCommand, WorkerInfo, WorkerSession};
