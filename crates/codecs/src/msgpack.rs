//! MessagePack: a stream of concatenated values, each one record.
//!
//! Lossless both ways: nil -> `Null`, bool, every integer format -> `Int`, float 32/64 ->
//! `Float`, str -> `String`, bin -> `Bytes`, array, map with keys of any type. Ext types
//! (including the timestamp extension) are rejected. Output writes each integer in its
//! smallest format and floats as float 64; integers beyond 64 bits are rejected.
//!
//! A value is self-delimiting, so content errors that leave the framing intact (a str that is
//! not UTF-8, an ext value, a record over the size limit) reject that value and reading goes
//! on; a reserved marker or a value cut off by the end of input breaks the stream.

use std::io::{BufRead, BufWriter, Write};

use runtime_core::{Map, ReadItem, Value};

use crate::avro::{Malformed, Source, StreamInput};
use crate::{position, rejected, DecodeContext, EncodeError, RecordDecoder, RecordEncoder};

/// Deep enough for real data, shallow enough never to overflow the stack on hostile input.
const MAX_DEPTH: usize = 256;

struct ValueReader {
    invalid: Option<String>,
    items_left: usize,
    max_bytes: usize,
    /// Where the value started: payloads that would take the value past `max_bytes` are
    /// skipped, not buffered, however small each is.
    start: u64,
}

impl ValueReader {
    fn new(max_bytes: usize, start: u64) -> Self {
        ValueReader {
            invalid: None,
            items_left: max_bytes,
            max_bytes,
            start,
        }
    }

    fn note(&mut self, why: impl FnOnce() -> String) {
        if self.invalid.is_none() {
            self.invalid = Some(why());
        }
    }

    fn be<const N: usize, R: BufRead>(s: &mut StreamInput<R>) -> Result<[u8; N], Malformed> {
        let mut a = [0u8; N];
        a.copy_from_slice(s.take(N)?);
        Ok(a)
    }

    fn len<R: BufRead>(s: &mut StreamInput<R>, width: u8) -> Result<usize, Malformed> {
        Ok(match width {
            1 => usize::from(s.byte()?),
            2 => usize::from(u16::from_be_bytes(Self::be(s)?)),
            _ => u32::from_be_bytes(Self::be(s)?) as usize,
        })
    }

    /// Payload bytes of a str/bin/ext; longer than the record limit: skipped, not buffered.
    fn payload<'a, R: BufRead>(
        &mut self,
        s: &'a mut StreamInput<R>,
        n: usize,
    ) -> Result<Option<&'a [u8]>, Malformed> {
        let end = (s.pos() - self.start).saturating_add(n as u64);
        if end > self.max_bytes as u64 {
            s.skip(n)?;
            let max = self.max_bytes;
            self.note(|| format!("a value of {n} bytes exceeds the limit of {max} bytes"));
            return Ok(None);
        }
        s.take(n).map(Some)
    }

    fn string<R: BufRead>(&mut self, s: &mut StreamInput<R>, n: usize) -> Result<Value, Malformed> {
        let Some(bytes) = self.payload(s, n)? else {
            return Ok(Value::Null);
        };
        match std::str::from_utf8(bytes) {
            Ok(st) => Ok(Value::from(st)),
            Err(e) => {
                let at = e.valid_up_to();
                self.note(|| format!("str is not valid UTF-8 (at byte {at} of the str)"));
                Ok(Value::Null)
            }
        }
    }

    fn bin<R: BufRead>(&mut self, s: &mut StreamInput<R>, n: usize) -> Result<Value, Malformed> {
        Ok(self
            .payload(s, n)?
            .map_or(Value::Null, |b| Value::Bytes(b.to_vec())))
    }

    fn ext<R: BufRead>(&mut self, s: &mut StreamInput<R>, n: usize) -> Result<Value, Malformed> {
        let ty = s.byte()? as i8;
        self.payload(s, n)?;
        self.note(|| format!("ext type {ty} is not supported"));
        Ok(Value::Null)
    }

    fn items(&mut self, n: usize) -> Result<(), Malformed> {
        if n > self.items_left {
            return Err(Malformed(format!(
                "a container of {n} items is more than the record size limit allows"
            )));
        }
        self.items_left -= n;
        Ok(())
    }

    fn array<R: BufRead>(
        &mut self,
        s: &mut StreamInput<R>,
        n: usize,
        depth: usize,
    ) -> Result<Value, Malformed> {
        self.items(n)?;
        let mut out = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            out.push(self.read(s, depth + 1)?);
        }
        Ok(Value::Array(out))
    }

    fn map<R: BufRead>(
        &mut self,
        s: &mut StreamInput<R>,
        n: usize,
        depth: usize,
    ) -> Result<Value, Malformed> {
        self.items(n)?;
        let mut out = Map::with_capacity(n.min(1024));
        for _ in 0..n {
            let k = self.read(s, depth + 1)?;
            let v = self.read(s, depth + 1)?;
            out.push(k, v);
        }
        Ok(Value::Map(out))
    }

    fn read<R: BufRead>(
        &mut self,
        s: &mut StreamInput<R>,
        depth: usize,
    ) -> Result<Value, Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let m = s.byte()?;
        Ok(match m {
            0x00..=0x7f => Value::Int(i128::from(m)),
            0x80..=0x8f => return self.map(s, usize::from(m & 0x0f), depth),
            0x90..=0x9f => return self.array(s, usize::from(m & 0x0f), depth),
            0xa0..=0xbf => return self.string(s, usize::from(m & 0x1f)),
            0xc0 => Value::Null,
            0xc1 => return Err(Malformed("reserved marker 0xc1".into())),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let n = Self::len(s, 1 << (m - 0xc4))?;
                return self.bin(s, n);
            }
            0xc7..=0xc9 => {
                let n = Self::len(s, 1 << (m - 0xc7))?;
                return self.ext(s, n);
            }
            0xca => Value::Float(f64::from(f32::from_be_bytes(Self::be(s)?))),
            0xcb => Value::Float(f64::from_be_bytes(Self::be(s)?)),
            0xcc => Value::Int(i128::from(s.byte()?)),
            0xcd => Value::Int(i128::from(u16::from_be_bytes(Self::be(s)?))),
            0xce => Value::Int(i128::from(u32::from_be_bytes(Self::be(s)?))),
            0xcf => Value::Int(i128::from(u64::from_be_bytes(Self::be(s)?))),
            0xd0 => Value::Int(i128::from(s.byte()? as i8)),
            0xd1 => Value::Int(i128::from(i16::from_be_bytes(Self::be(s)?))),
            0xd2 => Value::Int(i128::from(i32::from_be_bytes(Self::be(s)?))),
            0xd3 => Value::Int(i128::from(i64::from_be_bytes(Self::be(s)?))),
            0xd4..=0xd8 => return self.ext(s, 1 << (m - 0xd4)),
            0xd9..=0xdb => {
                let n = Self::len(s, 1 << (m - 0xd9))?;
                return self.string(s, n);
            }
            0xdc | 0xdd => {
                let n = Self::len(s, if m == 0xdc { 2 } else { 4 })?;
                return self.array(s, n, depth);
            }
            0xde | 0xdf => {
                let n = Self::len(s, if m == 0xde { 2 } else { 4 })?;
                return self.map(s, n, depth);
            }
            0xe0..=0xff => Value::Int(i128::from(m as i8)),
        })
    }
}

pub(crate) struct MsgPackDecoder<R> {
    input: StreamInput<R>,
    ctx: DecodeContext,
    record: u64,
    done: bool,
}

impl<R: BufRead> MsgPackDecoder<R> {
    pub fn new(input: R, ctx: DecodeContext) -> Self {
        MsgPackDecoder {
            input: StreamInput::new(input, ctx.max_record_bytes),
            ctx,
            record: 0,
            done: false,
        }
    }

    fn item(&mut self) -> Result<Option<ReadItem>, runtime_core::Error> {
        match self.input.at_eof() {
            Ok(true) => return Ok(None),
            Ok(false) => {}
            Err(e) => return Err(self.ctx.io(e)),
        }
        let start = self.input.pos();
        let mut reader = ValueReader::new(self.ctx.max_record_bytes, start);
        let res = reader.read(&mut self.input, 0);
        self.record += 1;
        let pos = position(self.record, None, start);
        match res {
            Ok(v) => {
                let len = self.input.pos() - start;
                Ok(Some(self.ctx.decoded(
                    v,
                    pos,
                    len,
                    reader.invalid,
                    "MessagePack value",
                )))
            }
            Err(Malformed(why)) => {
                if let Some(e) = self.input.io_error.take() {
                    return Err(self.ctx.io(e));
                }
                Err(self
                    .ctx
                    .broken(pos, format!("MessagePack value cannot be decoded: {why}")))
            }
        }
    }
}

impl<R: BufRead + Send> RecordDecoder for MsgPackDecoder<R> {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        if self.done {
            return None;
        }
        let item = self.item();
        crate::fuse(&mut self.done, item)
    }
}

/// Exactly one value filling `bytes`.
pub fn decode_message(bytes: &[u8]) -> Result<Value, String> {
    let mut input = StreamInput::new(bytes, bytes.len());
    let mut reader = ValueReader::new(bytes.len().max(1024), 0);
    let v = reader
        .read(&mut input, 0)
        .map_err(|e| format!("invalid MessagePack value: {}", e.0))?;
    if let Some(why) = reader.invalid {
        return Err(format!("invalid MessagePack value: {why}"));
    }
    let used = input.pos() as usize;
    if used != bytes.len() {
        return Err(format!(
            "invalid MessagePack message: {} bytes left over after the value",
            bytes.len() - used
        ));
    }
    Ok(v)
}

/// Appends `value` to `out`; on error `out` is left as it was.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), String> {
    let start = out.len();
    let r = write_inner(out, value, 0);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn len32(n: usize, what: &str) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| rejected(format!("{what} of {n} is too long for MessagePack")))
}

fn write_inner(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<(), String> {
    use rmp::encode as e;
    // Writes into a Vec cannot fail, so rmp's results carry nothing; the only errors are ours.
    if depth > MAX_DEPTH {
        return Err(rejected(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    match value {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => {
            if let Ok(v) = u64::try_from(*i) {
                let _ = e::write_uint(out, v);
            } else if let Ok(v) = i64::try_from(*i) {
                let _ = e::write_sint(out, v);
            } else {
                return Err(rejected(format!("integer {i} does not fit in 64 bits")));
            }
        }
        Value::Float(x) => {
            out.push(0xcb);
            out.extend_from_slice(&x.to_be_bytes());
        }
        Value::String(s) => {
            let _ = e::write_str_len(out, len32(s.len(), "a string")?);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            let _ = e::write_bin_len(out, len32(b.len(), "bytes")?);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            let _ = e::write_array_len(out, len32(items.len(), "an array")?);
            for v in items {
                write_inner(out, v, depth + 1)?;
            }
        }
        Value::Map(map) => {
            let _ = e::write_map_len(out, len32(map.len(), "a map")?);
            for (k, v) in map.iter() {
                write_inner(out, k, depth + 1)?;
                write_inner(out, v, depth + 1)?;
            }
        }
    }
    Ok(())
}

pub(crate) struct MsgPackEncoder<W: Write> {
    out: BufWriter<W>,
    scratch: Vec<u8>,
}

impl<W: Write> MsgPackEncoder<W> {
    pub fn new(out: W) -> Self {
        MsgPackEncoder {
            out: BufWriter::with_capacity(64 * 1024, out),
            scratch: Vec::new(),
        }
    }
}

impl<W: Write + Send> RecordEncoder for MsgPackEncoder<W> {
    fn write(&mut self, value: &Value) -> Result<(), EncodeError> {
        self.scratch.clear();
        write_value(&mut self.scratch, value).map_err(EncodeError::Rejected)?;
        self.out.write_all(&self.scratch)?;
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
