//! The domain of the model runtime, shared by every other crate: the record [`Value`], slots
//! and positions, model conventions, a job's log, and the traits that
//! endpoints ([`RecordSource`], [`RecordSink`]) and language runners ([`Runner`],
//! [`Session`]) implement.
//!
//! This crate reads no environment, installs no logger and holds no global state.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod ack;
pub mod batching;
pub mod endpoint;
pub mod error;
pub mod log;
pub mod model;
pub mod record;
pub mod runner;
pub mod value;
mod value_serde;

pub use ack::{Acks, Fate, Receipt};
pub use batching::Batching;
pub use endpoint::{OutRecord, RecordSink, RecordSource, SinkReport};
pub use error::{BoxError, Error, Result};
pub use log::{utc_timestamp, utc_timestamp_ms, JobLog, Level, LogLine, LogSource, MemoryLog};
pub use model::{EntryPoints, ExplicitNames, Language, SmartComments};
pub use record::{Position, ReadItem, Record, Rejection, RejectionKind, Slot};
pub use runner::{
    AllRecordsFunction, Backoff, InitContext, ModelSpec, PrepareOptions, Prepared, RecordFailure,
    RestartPolicy, Restarts, Runner, ScoreItem, ScoreOutcome, Session, SessionConfig,
};
pub use value::{Map, Value};
