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
//! resolve it; schema resolution is not implemented). Codecs `null` and `deflate` are read and
//! written; others (snappy, zstandard, ...) stop the stream at the header.
//!
//! Decoding goes straight from bytes to [`Value`] by walking the schema's compiled form,
//! [`schema::Compiled`], the one model of a schema that the `schema` crate's checker uses
//! too; schema text is parsed once, by `apache_avro`, whose parsed form is compiled into it.

mod datum;
mod ocf;
pub mod schema;

use std::sync::Arc;

use runtime_core::Value;

pub(crate) use datum::{short_string, Malformed, ShortName, Source, SHORT};
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

/// Block compression of written container files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OcfCodec {
    #[default]
    Null,
    Deflate,
}

pub(crate) fn decode_message(schema: &AvroSchema, bytes: &[u8]) -> Result<Value, String> {
    schema.decode_datum(bytes)
}
