//! Stream descriptors, and the endpoints they open into through the [`Registry`]: files,
//! standard output, inline data and discard.
//!
//! Every endpoint here runs a `codecs` decoder or encoder over a byte stream. Decoding and
//! encoding are CPU and blocking-I/O work: each batch runs on tokio's blocking pool, never
//! on an async worker thread, and never with the whole file in memory.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod credentials;
pub mod descriptor;
mod file;
mod inline;
mod registry;

pub use credentials::{Credential, Credentials};
pub use descriptor::{Direction, StreamDescriptor};
pub use file::{DiscardSink, FileSink, FileSource};
pub use inline::InlineSource;
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
