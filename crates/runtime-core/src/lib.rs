//! The domain of the model runtime, shared by every other crate: the record [`Value`], slots
//! and positions, model conventions, a job's log, and the traits that
//! endpoints ([`RecordSource`], [`RecordSink`]) and language runners ([`Runner`],
//! [`Session`]) implement.
//!
//! This crate reads no environment, installs no logger and holds no global state.
//!
//! A record is a [`Value`]; a model's source says, in its smart comments, which functions
//! the runtime calls:
//!
//! ```
//! use runtime_core::{ExplicitNames, Language, Map, Slot, SmartComments, Value};
//!
//! let mut application = Map::new();
//! application.insert("id", 7);
//! application.insert("debt_to_income", 0.1);
//! let record = Value::Map(application);
//! assert_eq!(record.get("id"), Some(&Value::Int(7)));
//!
//! let source = "# modelop.init\ndef begin():\n    pass\n\n# modelop.score\ndef decide(r):\n    yield r\n";
//! let comments = SmartComments::parse(source, Language::Python);
//! let entry = comments.entry_points(&ExplicitNames::default(), |name| source.contains(name));
//! assert_eq!(entry.init.as_deref(), Some("begin"));
//! assert_eq!(entry.score.as_deref(), Some("decide"));
//! // Even slots are inputs, odd ones outputs.
//! assert!(Slot(0).is_input() && Slot(1).is_output());
//! ```
//!
//! An endpoint implements [`RecordSource`] or [`RecordSink`] (the `endpoints` crate opens
//! them from stream descriptors); a sink needs three methods:
//!
//! ```
//! use async_trait::async_trait;
//! use runtime_core::{OutRecord, RecordSink, Rejection, Result, SinkReport};
//!
//! /// Counts the records a job writes.
//! #[derive(Default)]
//! struct Counter {
//!     records: u64,
//! }
//!
//! #[async_trait]
//! impl RecordSink for Counter {
//!     async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
//!         self.records += batch.len() as u64;
//!         Ok(Vec::new()) // nothing rejected
//!     }
//!
//!     async fn finish(&mut self) -> Result<SinkReport> {
//!         Ok(SinkReport { records: self.records, ..SinkReport::default() })
//!     }
//!
//!     fn describe(&self) -> String {
//!         "counter".to_owned()
//!     }
//! }
//! # let _ = Counter::default();
//! ```
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
pub use record::{MessageMeta, Position, ReadItem, Record, Rejection, RejectionKind, Slot};
pub use runner::{
    AllRecordsFunction, Backoff, BatchObserver, InitContext, ModelSpec, PrepareOptions, Prepared,
    RecordFailure, RestartPolicy, Restarts, Runner, ScoreItem, ScoreOutcome, Session,
    SessionConfig,
};
pub use value::{Map, Str, Value};
