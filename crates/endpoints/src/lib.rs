//! Stream descriptors, and the endpoints they open into through the [`Registry`]: files,
//! standard output, inline data and discard.
//!
//! Every endpoint here runs a `codecs` decoder or encoder over a byte stream. Decoding and
//! encoding are CPU and blocking-I/O work: each batch runs on tokio's blocking pool, never
//! on an async worker thread, and never with the whole file in memory.
//!
//! A descriptor, in the FastScore JSON form or a short form, is opened through a registry;
//! a host adds transports of its own with [`Registry::register`]:
//!
//! ```
//! use endpoints::{Registry, StreamDescriptor};
//! use runtime_core::ReadItem;
//!
//! let input = StreamDescriptor::parse("inline:1,2,3")?;
//! let output = StreamDescriptor::parse(r#"{"Transport": {"Type": "discard"}, "Encoding": "json"}"#)?;
//! let registry = Registry::default(); // file, inline and discard
//!
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     let mut source = registry.open_source(&input, &input.codec_config())?;
//!     let mut sink = registry.open_sink(&output, &output.codec_config())?;
//!     let batch = source.read_batch(10).await?.unwrap_or_default();
//!     assert_eq!(batch.len(), 3);
//!     let ReadItem::Record(first) = &batch[0] else { panic!("a record") };
//!     assert_eq!(first.value, runtime_core::Value::Int(1));
//!     assert_eq!(sink.finish().await?.records, 0);
//!     Ok::<(), runtime_core::Error>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod credentials;
pub mod descriptor;
mod file;
mod inline;
mod redact;
mod registry;
pub mod sql;

pub use credentials::{Credential, Credentials};
pub use descriptor::{Direction, StreamDescriptor};
pub use file::{DiscardSink, FileSink, FileSource, Looping, Reopen};
pub use inline::InlineSource;
pub use redact::{redact, REDACTED};
pub use registry::{OpenRequest, Opener, Registry};

use runtime_core::{Error, Rejection, RejectionKind};

/// Turns an encoder's refusal of one value ([`codecs::EncodeError::Rejected`]'s reason) into
/// the rejection the job runner counts.
fn encode_rejection(position: runtime_core::Position, reason: String) -> Rejection {
    Rejection::new(RejectionKind::Encoding, position, reason)
}

fn join_error(endpoint: &str, e: tokio::task::JoinError) -> Error {
    Error::endpoint_caused(
        endpoint,
        format!("the endpoint's worker thread failed: {e}"),
        e,
    )
}
