//! Records as they travel: a value, the slot it belongs to, and where it came from.

use std::fmt;

use crate::ack::Receipt;
use crate::value::Value;

/// A model's numbered port. Even slots are inputs, odd slots outputs; 0 and 1 are active by
/// default. In a batch job the k-th input (from 0) feeds slot 2k.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Slot(pub u32);

impl Slot {
    pub const DEFAULT_INPUT: Slot = Slot(0);
    pub const DEFAULT_OUTPUT: Slot = Slot(1);
    /// Where a deployed model's error records go (`PUT /2/active/stream/errors`): an
    /// output no model yields to, shown and parsed as `errors`.
    pub const ERRORS: Slot = Slot(u32::MAX);

    /// A slot as an API or a command line names it: a number, or `errors`.
    pub fn parse(text: &str) -> Option<Slot> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("errors") {
            return Some(Slot::ERRORS);
        }
        text.parse().ok().map(Slot)
    }

    pub fn is_input(self) -> bool {
        self.0 % 2 == 0
    }

    pub fn is_output(self) -> bool {
        !self.is_input()
    }

    /// The slot fed by the k-th input of a batch job (counting from 0).
    pub fn for_input(k: usize) -> Slot {
        Slot(2 * k as u32)
    }

    /// The slot written by the k-th output of a batch job (counting from 0).
    pub fn for_output(k: usize) -> Slot {
        Slot(2 * k as u32 + 1)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Slot::ERRORS {
            return f.write_str("errors");
        }
        write!(f, "{}", self.0)
    }
}

/// Where a record (or a rejected piece of input) stands in its stream. `record` always counts
/// from 1; the others are filled where the framing knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// 1-based number of the record in its stream (rejected ones included).
    pub record: u64,
    /// 1-based line, for line-framed encodings (JSON lines, UTF-8, CSV).
    pub line: Option<u64>,
    /// Byte offset of the record's first byte in the stream.
    pub byte_offset: Option<u64>,
    /// A transport's own coordinate (a Kafka partition/offset, an S3 key, a REST request).
    pub origin: Option<String>,
}

/// A message's key, headers and coordinates, as a message transport (Kafka) read them. It
/// travels from an input record to the outputs and error records made of it on the record's
/// receipt ([`Acks::receipt_with`](crate::Acks::receipt_with), [`Receipt::meta`](crate::Receipt::meta)),
/// so an output on a message transport writes the key and headers again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageMeta {
    pub key: Option<Box<[u8]>>,
    /// The message's value as read, for an error record to carry the original (a message
    /// transport keeps it while the record is in flight).
    pub value: Option<Box<[u8]>>,
    /// Header names and values, in the message's order (a name may repeat).
    pub headers: Vec<(String, Option<Box<[u8]>>)>,
    /// Where the message was read: its topic, partition and offset.
    pub topic: Option<std::sync::Arc<str>>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// The message's timestamp, in ms since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl Position {
    pub fn record(n: u64) -> Self {
        Position {
            record: n,
            ..Position::default()
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}", self.record)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(off) = self.byte_offset {
            write!(f, ", byte offset {off}")?;
        }
        if let Some(origin) = &self.origin {
            write!(f, ", {origin}")?;
        }
        Ok(())
    }
}

/// A decoded record, its position, and the receipt its source waits on (none for most).
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub value: Value,
    pub position: Position,
    pub receipt: Receipt,
}

impl Record {
    /// A record whose source needs no acknowledgement.
    pub fn new(value: Value, position: Position) -> Record {
        Record {
            value,
            position,
            receipt: Receipt::none(),
        }
    }
}

/// Why a piece of input or output never reached its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// The bytes are not a valid record of the encoding (or a value cannot be encoded).
    Encoding,
    /// The record does not conform to the slot's schema.
    Schema,
    /// The record is larger than the configured limit.
    Size,
}

impl RejectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::Encoding => "encoding",
            RejectionKind::Schema => "schema",
            RejectionKind::Size => "size limit",
        }
    }
}

/// A record rejected on its way in or out, with enough to find it again. An input's
/// rejection keeps the record's receipt, settled as rejected where it is counted.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub position: Position,
    pub reason: String,
    pub receipt: Receipt,
    /// The bytes that did not decode, when the source has them at hand (a message
    /// transport); a stream decoder's position (line, byte offset) locates them instead.
    pub raw: Option<Box<[u8]>>,
}

impl Rejection {
    /// A rejection whose source needs no acknowledgement.
    pub fn new(kind: RejectionKind, position: Position, reason: impl Into<String>) -> Rejection {
        Rejection {
            kind,
            position,
            reason: reason.into(),
            receipt: Receipt::none(),
            raw: None,
        }
    }

    /// The same rejection, keeping the bytes that did not decode.
    pub fn with_raw(mut self, raw: Vec<u8>) -> Rejection {
        self.raw = Some(raw.into_boxed_slice());
        self
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: rejected by {}: {}",
            self.position,
            self.kind.as_str(),
            self.reason
        )
    }
}

/// One item read from an input: a record, or a rejection that takes a record's place.
#[derive(Clone, Debug, PartialEq)]
pub enum ReadItem {
    Record(Record),
    Rejected(Rejection),
}

impl ReadItem {
    /// Where the item stands in its stream, record or rejection.
    pub fn position(&self) -> &Position {
        match self {
            ReadItem::Record(r) => &r.position,
            ReadItem::Rejected(r) => &r.position,
        }
    }

    pub fn position_mut(&mut self) -> &mut Position {
        match self {
            ReadItem::Record(r) => &mut r.position,
            ReadItem::Rejected(r) => &mut r.position,
        }
    }

    /// The receipt its source waits on, record or rejection.
    pub fn receipt_mut(&mut self) -> &mut Receipt {
        match self {
            ReadItem::Record(r) => &mut r.receipt,
            ReadItem::Rejected(r) => &mut r.receipt,
        }
    }
}
