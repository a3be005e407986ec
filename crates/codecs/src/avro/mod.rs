//! Avro binary: object container files (OCF) and bare datum streams.
//!
//! Values map losslessly: `int`/`long` -> `Int`, `float`/`double` -> `Float`, `bytes`/`fixed`
//! -> `Bytes`, `string`/`enum` -> `String`, record -> `Map` in field order, map -> `Map`,
//! array -> `Array`, union -> the branch's value, logical types as their underlying type.
//!
//! Encoding a value with a schema: integers where a `float`/`double` is expected are widened,
//! strings are accepted for `bytes` and, when their UTF-8 bytes have the right size, for
//! `fixed`; a union takes the first branch that holds the value as is, else the first that
//! holds it after widening; a record field missing from the map takes the schema's default,
//! or null if the field's type allows it. A value that does not fit is
//! rejected with the path to it (`at .address.zip: expected int, found string`).
//!
//! Container files are read with the schema in their header (`cfg.schema` is not used to
//! resolve it; schema resolution is not implemented). Block codecs `null`, `deflate`, `snappy`
//! (with its CRC32 checked) and `zstandard` are read and written ([`OcfCodec`]); others (bzip2,
//! xz) stop the stream at the header.
//!
//! Decoding goes straight from bytes to [`Value`] by walking the schema's compiled form,
//! [`schema::Compiled`], the one model of a schema that the `schema` crate's checker uses
//! too; schema text is parsed once, by `apache_avro`, whose parsed form is compiled into it.

mod datum;
mod ocf;
pub mod schema;

use std::sync::Arc;

use runtime_core::Value;

pub(crate) use datum::{Malformed, Source};
pub(crate) use ocf::{DatumDecoder, DatumEncoder, OcfDecoder, OcfEncoder, StreamInput};
pub(crate) use schema::{Compiled, Node};

use crate::CodecError;

/// A parsed Avro schema; cheap to clone and to share between threads.
#[derive(Clone)]
pub struct AvroSchema {
    inner: Arc<Inner>,
}

struct Inner {
    json: String,
    compiled: Compiled,
}

impl std::fmt::Debug for AvroSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AvroSchema").field(&self.inner.json).finish()
    }
}

impl AvroSchema {
    /// Parses and checks a schema from its JSON text.
    pub fn parse(text: &str) -> Result<AvroSchema, CodecError> {
        let compiled = schema::compile(text).map_err(CodecError::Schema)?;
        schema::check_defaults(&compiled).map_err(CodecError::Schema)?;
        Ok(AvroSchema {
            inner: Arc::new(Inner {
                json: text.to_owned(),
                compiled,
            }),
        })
    }

    /// The schema's JSON text, as given.
    pub fn json(&self) -> &str {
        &self.inner.json
    }

    /// Field names of a record schema, in order; `None` for other schemas.
    pub fn record_field_names(&self) -> Option<Vec<String>> {
        let c = &self.inner.compiled;
        match &c.nodes[c.root] {
            Node::Record(_, fields) => Some(fields.iter().map(|f| f.name.clone()).collect()),
            _ => None,
        }
    }

    /// The compiled schema, names resolved: the model both the datum walker and the `schema`
    /// crate's checker walk.
    pub fn compiled(&self) -> &Compiled {
        &self.inner.compiled
    }

    /// Appends `value` as one datum; on error nothing is appended.
    pub(crate) fn encode_datum(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        let c = &self.inner.compiled;
        let start = out.len();
        datum::write(&c.nodes, c.root, value, out, 0).map_err(|e| {
            out.truncate(start);
            e.to_string()
        })
    }

    /// Decodes exactly one datum filling `bytes`.
    pub fn decode_datum(&self, bytes: &[u8]) -> Result<Value, String> {
        let c = &self.inner.compiled;
        let mut src = datum::SliceSource { data: bytes, at: 0 };
        let mut reader = datum::DatumReader::new(c, bytes.len().max(1024));
        let v = reader
            .read(&mut src, c.root, 0)
            .map_err(|e| format!("invalid Avro datum: {}", e.0))?;
        if let Some(reason) = reader.invalid {
            return Err(format!("invalid Avro datum: {reason}"));
        }
        if src.at != bytes.len() {
            return Err(format!(
                "invalid Avro datum: {} bytes left over after the datum",
                bytes.len() - src.at
            ));
        }
        Ok(v)
    }
}

/// Block compression of a container file (its header's `avro.codec`): what the writer
/// compresses blocks with; the reader takes each file's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OcfCodec {
    #[default]
    Null,
    Deflate,
    /// Each block a raw snappy block followed by the big-endian CRC32 of its uncompressed
    /// bytes (Avro's snappy framing; Spark's and Hive's default).
    Snappy,
    /// Each block one Zstandard frame.
    Zstandard,
}

impl OcfCodec {
    /// Every codec, in the order messages list them.
    pub const ALL: [OcfCodec; 4] = [
        OcfCodec::Null,
        OcfCodec::Deflate,
        OcfCodec::Snappy,
        OcfCodec::Zstandard,
    ];

    /// The name in a container file's header (`avro.codec`) and in stream descriptors.
    pub fn name(self) -> &'static str {
        match self {
            OcfCodec::Null => "null",
            OcfCodec::Deflate => "deflate",
            OcfCodec::Snappy => "snappy",
            OcfCodec::Zstandard => "zstandard",
        }
    }

    /// The codec a header's `avro.codec` names (exactly, as the specification spells it).
    pub(crate) fn of_header(name: &[u8]) -> Option<OcfCodec> {
        Self::ALL.into_iter().find(|c| c.name().as_bytes() == name)
    }

    /// `null, deflate, snappy, zstandard`, for messages.
    pub fn known() -> String {
        Self::ALL.map(OcfCodec::name).join(", ")
    }
}

impl std::fmt::Display for OcfCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OcfCodec {
    type Err = CodecError;

    /// A codec's name, any case; `zstd` is taken for `zstandard`.
    fn from_str(s: &str) -> Result<Self, CodecError> {
        let lower = s.trim().to_ascii_lowercase();
        let name = if lower == "zstd" { "zstandard" } else { &lower };
        Self::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                CodecError::config(
                    "ocf_codec",
                    format!(
                        "unknown Avro block codec '{}' (expected {})",
                        s.trim(),
                        Self::known()
                    ),
                )
            })
    }
}

pub(crate) fn decode_message(schema: &AvroSchema, bytes: &[u8]) -> Result<Value, String> {
    schema.decode_datum(bytes)
}
