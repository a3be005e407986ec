//! What an endpoint author implements to run the kit: a fixture that makes fresh streams and
//! destinations for its endpoint and opens them, and says which checks apply.

use async_trait::async_trait;
use runtime_core::{Error, RecordSink, RecordSource, Result, Value};

/// How the kit asks a source to be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// The codec's record size limit (`CodecConfig::max_record_bytes`): a record larger than
    /// this must come out as a `Size` rejection at its position, and the stream go on.
    pub max_record_bytes: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            max_record_bytes: codecs::DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// What a source can do, which decides the checks that apply to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceTraits {
    /// The source ends (`read_batch` gives `Ok(None)`) once it has read what its stream
    /// holds: a file, inline data. An unbounded source (a topic, a queue) gives empty batches
    /// instead, and the kit stops its jobs by cancelling them once every record is taken.
    pub ends: bool,
    /// Opened again on the same stream (after a restart), the source reads on from the first
    /// record it did not acknowledge: it keeps receipts from an `Acks` ledger and commits
    /// what was delivered. A file reads from its start again, so it does not resume.
    pub resumes: bool,
}

/// What a sink keeps, which decides the checks that apply to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkTraits {
    /// What the sink wrote can be read back ([`SinkFixture::read_back`]); discard keeps
    /// nothing.
    pub keeps: bool,
    /// The fixture can open a sink whose destination is broken
    /// ([`SinkFixture::open_broken`]); discard cannot fail.
    pub breaks: bool,
}

/// Makes streams for a source endpoint and opens them.
///
/// Every message the kit hands over is the bytes of one record: JSON without a line break, or
/// (for the check of bytes that do not decode) text that is not JSON. The source must decode
/// each message as one JSON record, in order, numbering them from 1 in its positions.
#[async_trait]
pub trait SourceFixture: Send + Sync {
    /// A stream as the fixture knows it again: a path, a stream's key.
    type Stream: Send + Sync;

    /// Which checks apply.
    fn traits(&self) -> SourceTraits;

    /// A fresh stream holding `messages`, in order, that no other stream shares.
    async fn create(&self, messages: &[Vec<u8>]) -> Result<Self::Stream>;

    /// Opens `stream` as a source, honouring `options`. Called again on the same stream to
    /// open it as after a restart (once the previous source is closed).
    async fn open(
        &self,
        stream: &Self::Stream,
        options: &OpenOptions,
    ) -> Result<Box<dyn RecordSource>>;
}

/// Makes destinations for a sink endpoint, opens sinks on them and reads back what they hold.
#[async_trait]
pub trait SinkFixture: Send + Sync {
    /// A destination as the fixture knows it again: a path, a stream's key.
    type Destination: Send + Sync;

    /// Which checks apply.
    fn traits(&self) -> SinkTraits;

    /// A fresh, empty destination that no other shares.
    async fn create(&self) -> Result<Self::Destination>;

    /// Opens a sink writing to `destination`.
    async fn open(&self, destination: &Self::Destination) -> Result<Box<dyn RecordSink>>;

    /// Every record durably written at `destination`, decoded, in order. Called while a
    /// sink is still writing there (right after its `flush` returned), and after it finished.
    /// Needed when [`SinkTraits::keeps`].
    async fn read_back(&self, destination: &Self::Destination) -> Result<Vec<Value>> {
        let _ = destination;
        Err(Error::endpoint("fixture", "it keeps nothing to read back"))
    }

    /// A sink that opened but whose destination is broken (a full disk, a key of the wrong
    /// type): writing, flushing or finishing it must fail. Needed when [`SinkTraits::breaks`].
    async fn open_broken(&self) -> Result<Box<dyn RecordSink>> {
        Err(Error::endpoint(
            "fixture",
            "it cannot break its destination",
        ))
    }
}
