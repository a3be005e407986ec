//! MessagePack (in progress).
use std::io::{BufRead, Write};

use runtime_core::{ReadItem, Value};

use crate::{position, DecodeContext, EncodeError, RecordDecoder, RecordEncoder};

pub(crate) struct MsgPackDecoder<R> {
    _input: R,
    ctx: DecodeContext,
    done: bool,
}
impl<R: BufRead> MsgPackDecoder<R> {
    pub fn new(input: R, ctx: DecodeContext) -> Self {
        MsgPackDecoder {
            _input: input,
            ctx,
            done: false,
        }
    }
}
impl<R: BufRead + Send> RecordDecoder for MsgPackDecoder<R> {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        Some(Err(self.ctx.broken(
            position(1, None, 0),
            "msgpack decoding is not available yet",
        )))
    }
}
pub(crate) struct MsgPackEncoder<W> {
    _out: W,
}
impl<W: Write> MsgPackEncoder<W> {
    pub fn new(out: W) -> Self {
        MsgPackEncoder { _out: out }
    }
}
impl<W: Write + Send> RecordEncoder for MsgPackEncoder<W> {
    fn write(&mut self, value: &Value) -> Result<(), EncodeError> {
        let mut v = Vec::new();
        write_value(&mut v, value).map_err(EncodeError::Rejected)
    }
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
pub fn decode_message(_bytes: &[u8]) -> Result<Value, String> {
    Err("msgpack decoding is not available yet".into())
}
pub fn write_value(_out: &mut Vec<u8>, _value: &Value) -> Result<(), String> {
    Err(crate::rejected("msgpack encoding is not available yet"))
}
