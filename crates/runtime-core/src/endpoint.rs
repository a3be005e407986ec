//! The traits every input and output endpoint implements. They speak records, not bytes:
//! a file or S3 endpoint runs a byte stream through a `codecs` decoder, a Kafka or REST
//! endpoint decodes each message on its own, and the job runner sees the same thing.

use async_trait::async_trait;

use crate::error::Result;
use crate::record::{Position, ReadItem, Rejection};
use crate::value::Value;

/// An input endpoint.
#[async_trait]
pub trait RecordSource: Send {
    /// Up to `max` items in stream order, `Ok(None)` at the end of the stream. Records the
    /// decoder rejected come as [`ReadItem::Rejected`] in their place; an `Err` means the
    /// stream cannot go on at all.
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>>;

    /// Everything up to and including `upto` has been processed: a transport with offsets
    /// (Kafka) commits them here. The default has nothing to commit.
    async fn commit(&mut self, _upto: &Position) -> Result<()> {
        Ok(())
    }

    /// A short name for logs and errors (`file:/data/in.jsonl`).
    fn describe(&self) -> String;
}

/// A record on its way out, numbered from 1 in its output stream.
#[derive(Clone, Debug, PartialEq)]
pub struct OutRecord {
    pub value: Value,
    pub position: Position,
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

    /// Flushes and closes the destination.
    async fn finish(&mut self) -> Result<SinkReport>;

    fn describe(&self) -> String;
}
