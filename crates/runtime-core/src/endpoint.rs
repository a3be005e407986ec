//! The traits every input and output endpoint implements. They speak records, not bytes:
//! a file or S3 endpoint runs a byte stream through a `codecs` decoder, a Kafka or REST
//! endpoint decodes each message on its own, and the job runner sees the same thing.
//!
//! Acknowledgements run the other way (see [`crate::ack`]): a source that must learn what
//! became of its records puts a [`Receipt`](crate::Receipt) from its [`Acks`](crate::Acks)
//! ledger on each; the pipeline settles each receipt once the outputs made of the record are
//! durable ([`RecordSink::flush`]), rejected or failed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::record::{MessageMeta, Position, ReadItem, Rejection};
use crate::value::Value;

/// An input endpoint.
#[async_trait]
pub trait RecordSource: Send {
    /// Up to `max` items in stream order, `Ok(None)` at the end of the stream (an unbounded
    /// source never ends: it returns what arrived within its linger time, possibly nothing,
    /// and the job or stream reading it runs until stopped). Records the decoder rejected
    /// come as [`ReadItem::Rejected`] in their place; an `Err` means the stream cannot go on
    /// at all. A source that acknowledges bounds what it has in flight here: it waits for
    /// room in its ledger before reading more.
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>>;

    /// Reading is over (the end of the input, a cancel, a detach, a shutdown): waits up to
    /// `grace` for the records in flight to settle, acknowledges what settled (in order) and
    /// lets go of the transport. Called once, after the pipeline has settled or dropped
    /// every receipt it could. The default has nothing to acknowledge.
    async fn close(&mut self, _grace: Duration) -> Result<()> {
        Ok(())
    }

    /// A short name for logs and errors (`file:/data/in.jsonl`).
    fn describe(&self) -> String;

    /// The records its stream holds that are not acknowledged yet (a Kafka consumer group's
    /// lag), when the source knows; shown beside the stream.
    fn lag(&self) -> Option<u64> {
        None
    }

    /// How much of a bounded input has been read, from 0 to 1 (bytes of a file, messages
    /// of an inline input), when the source knows; a job's progress shows it.
    fn progress(&self) -> Option<f64> {
        None
    }
}

/// A record on its way out, numbered from 1 in its output stream.
#[derive(Clone, Debug, PartialEq)]
pub struct OutRecord {
    pub value: Value,
    pub position: Position,
    /// The key and headers of the message the record was made of, when its input was a
    /// message transport that keeps them ([`Receipt::meta`](crate::Receipt::meta)); a sink
    /// on a message transport writes them again.
    pub meta: Option<Arc<MessageMeta>>,
}

/// What an output endpoint did, once finished.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SinkReport {
    pub records: u64,
    pub bytes: u64,
    /// Where the output went, for the job's result (a path, a URL, `stdout`).
    pub location: Option<String>,
}

/// An output endpoint.
#[async_trait]
pub trait RecordSink: Send {
    /// Writes the records in order. A record the encoding cannot represent (NaN in JSON, a
    /// field a schema lacks) is not written and comes back as a rejection; the others are
    /// written. An `Err` means the destination itself failed.
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>>;

    /// Makes everything written so far durable for this sink (a broker's delivery report, a
    /// committed transaction, a completed upload; for a file, handed to the operating
    /// system). The pipeline settles the receipts of written records only after this
    /// returns `Ok`, and calls it only when a source waits on them: a sink fed from files
    /// is flushed once, by [`RecordSink::finish`]. The default has nothing buffered.
    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Flushes and closes the destination. Not called after a write or a flush failed: a
    /// failed sink is never finished as if it had succeeded.
    async fn finish(&mut self) -> Result<SinkReport>;

    fn describe(&self) -> String;
}
