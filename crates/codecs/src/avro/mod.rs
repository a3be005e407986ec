//! Avro (in progress).
use std::io::{BufRead, Write};
use std::sync::Arc;

use runtime_core::{ReadItem, Value};

use crate::{position, CodecError, DecodeContext, EncodeError, RecordDecoder, RecordEncoder};

/// A parsed Avro schema; cheap to clone.
#[derive(Clone, Debug)]
pub struct AvroSchema {
    json: Arc<str>,
}

impl AvroSchema {
    /// Parses a schema from its JSON text.
    pub fn parse(text: &str) -> Result<AvroSchema, CodecError> {
        apache_avro::Schema::parse_str(text).map_err(|e| CodecError::Schema(e.to_string()))?;
        Ok(AvroSchema { json: text.into() })
    }
    /// The schema's JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }
    pub(crate) fn encode_datum(&self, _value: &Value, _out: &mut Vec<u8>) -> Result<(), String> {
        Err("avro encoding is not available yet".into())
    }
}

/// Block compression of written container files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OcfCodec {
    #[default]
    Null,
    Deflate,
}

pub(crate) struct OcfDecoder<R> {
    _input: R,
    ctx: DecodeContext,
    done: bool,
}
impl<R: BufRead> OcfDecoder<R> {
    pub fn new(input: R, ctx: DecodeContext) -> Self {
        OcfDecoder {
            _input: input,
            ctx,
            done: false,
        }
    }
}
impl<R: BufRead + Send> RecordDecoder for OcfDecoder<R> {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        Some(Err(self.ctx.broken(
            position(1, None, 0),
            "avro decoding is not available yet",
        )))
    }
}
pub(crate) struct DatumDecoder<R> {
    inner: OcfDecoder<R>,
}
impl<R: BufRead> DatumDecoder<R> {
    pub fn new(_schema: AvroSchema, input: R, ctx: DecodeContext) -> Self {
        DatumDecoder {
            inner: OcfDecoder::new(input, ctx),
        }
    }
}
impl<R: BufRead + Send> RecordDecoder for DatumDecoder<R> {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        self.inner.next_item()
    }
}
pub(crate) struct DatumEncoder<W> {
    schema: AvroSchema,
    _out: W,
}
impl<W: Write> DatumEncoder<W> {
    pub fn new(schema: AvroSchema, out: W) -> Self {
        DatumEncoder { schema, _out: out }
    }
}
impl<W: Write + Send> RecordEncoder for DatumEncoder<W> {
    fn write(&mut self, value: &Value) -> Result<(), EncodeError> {
        let mut v = Vec::new();
        self.schema
            .encode_datum(value, &mut v)
            .map_err(EncodeError::Rejected)
    }
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
pub(crate) struct OcfEncoder<W> {
    inner: DatumEncoder<W>,
}
impl<W: Write> OcfEncoder<W> {
    pub fn new(schema: AvroSchema, _codec: OcfCodec, out: W) -> Self {
        OcfEncoder {
            inner: DatumEncoder::new(schema, out),
        }
    }
}
impl<W: Write + Send> RecordEncoder for OcfEncoder<W> {
    fn write(&mut self, value: &Value) -> Result<(), EncodeError> {
        self.inner.write(value)
    }
    fn finish(&mut self) -> std::io::Result<()> {
        self.inner.finish()
    }
}
pub fn decode_message(_schema: &AvroSchema, _bytes: &[u8]) -> Result<Value, String> {
    Err("avro decoding is not available yet".into())
}
