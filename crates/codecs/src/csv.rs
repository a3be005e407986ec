//! CSV (in progress).
use std::io::{BufRead, Write};

use runtime_core::{ReadItem, Value};

use crate::{position, DecodeContext, EncodeError, RecordDecoder, RecordEncoder};

pub(crate) struct CsvDecoder<R> {
    _input: R,
    ctx: DecodeContext,
    done: bool,
}
impl<R: BufRead> CsvDecoder<R> {
    pub fn new(_cfg: &crate::CodecConfig, input: R, ctx: DecodeContext) -> Self {
        CsvDecoder {
            _input: input,
            ctx,
            done: false,
        }
    }
}
impl<R: BufRead + Send> RecordDecoder for CsvDecoder<R> {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        Some(Err(self.ctx.broken(
            position(1, None, 0),
            "csv decoding is not available yet",
        )))
    }
}
pub(crate) struct CsvEncoder<W> {
    _out: W,
}
impl<W: Write> CsvEncoder<W> {
    pub fn new(_cfg: &crate::CodecConfig, out: W) -> Self {
        CsvEncoder { _out: out }
    }
}
impl<W: Write + Send> RecordEncoder for CsvEncoder<W> {
    fn write(&mut self, value: &Value) -> Result<(), EncodeError> {
        let mut v = Vec::new();
        encode_message(&crate::CodecConfig::default(), value, &mut v).map_err(EncodeError::Rejected)
    }
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
pub fn decode_message(_cfg: &crate::CodecConfig, _bytes: &[u8]) -> Result<Value, String> {
    Err("csv decoding is not available yet".into())
}
pub fn encode_message(
    _cfg: &crate::CodecConfig,
    _value: &Value,
    _out: &mut Vec<u8>,
) -> Result<(), String> {
    Err(crate::rejected("csv encoding is not available yet"))
}
