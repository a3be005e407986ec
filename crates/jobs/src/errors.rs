//! The error output. When a job has one, each record that was refused or that the model
//! failed on becomes one error record there, as a map:
//!
//! | field | what |
//! |---|---|
//! | `stage` | `input` (refused on the way in), `model` (the model failed on it), `output` (one of its outputs was refused, or went to a slot with no output) |
//! | `kind` | `encoding`, `schema`, `size`, `model` or `unrouted` |
//! | `slot` | the input slot, or the output slot the refused value was for |
//! | `record` | the record's number in its stream (for `output`: the output's number when the sink refused it) |
//! | `line`, `byteOffset`, `origin` | where the record stands, when the input knows (`origin`: a transport's own coordinate) |
//! | `reason` | why, as logged |
//! | `traceback` | the model's traceback (model failures that have one) |
//! | `value` | the record as decoded (model failures), or the refused output value (`unrouted`) |
//! | `bytes` | the bytes that did not decode, when the source kept them (message transports) |
//!
//! The record's receipt goes with its error record: settled as rejected once the error
//! output has taken it durably, failed if it could not.

use runtime_core::{Map, Position, RejectionKind, Slot, Value};

/// Where along the pipeline a record was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Input,
    Model,
    Output,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Input => "input",
            Stage::Model => "model",
            Stage::Output => "output",
        }
    }
}

/// What an error record says, before it becomes a [`Value`].
pub struct ErrorRecord {
    pub stage: Stage,
    pub kind: &'static str,
    pub slot: Slot,
    pub position: Position,
    pub reason: String,
    pub traceback: Option<String>,
    pub value: Option<Value>,
    pub bytes: Option<Vec<u8>>,
}

/// The `kind` of a rejection.
pub fn kind_of(kind: RejectionKind) -> &'static str {
    match kind {
        RejectionKind::Encoding => "encoding",
        RejectionKind::Schema => "schema",
        RejectionKind::Size => "size",
    }
}

impl ErrorRecord {
    /// An error record with no traceback, value or bytes (set those on the result).
    pub fn new(
        stage: Stage,
        kind: &'static str,
        slot: Slot,
        position: Position,
        reason: String,
    ) -> ErrorRecord {
        ErrorRecord {
            stage,
            kind,
            slot,
            position,
            reason,
            traceback: None,
            value: None,
            bytes: None,
        }
    }

    pub fn into_value(self) -> Value {
        let mut m = Map::with_capacity(10);
        m.push("stage", self.stage.as_str());
        m.push("kind", self.kind);
        m.push("slot", Value::Int(i128::from(self.slot.0)));
        m.push("record", Value::Int(i128::from(self.position.record)));
        if let Some(line) = self.position.line {
            m.push("line", Value::Int(i128::from(line)));
        }
        if let Some(off) = self.position.byte_offset {
            m.push("byteOffset", Value::Int(i128::from(off)));
        }
        if let Some(origin) = self.position.origin {
            m.push("origin", origin);
        }
        m.push("reason", self.reason);
        if let Some(tb) = self.traceback {
            m.push("traceback", tb);
        }
        if let Some(v) = self.value {
            m.push("value", v);
        }
        if let Some(b) = self.bytes {
            m.push("bytes", Value::Bytes(b));
        }
        Value::Map(m)
    }
}
