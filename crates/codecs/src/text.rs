//! Frame-per-record codecs: JSON, UTF-8 and raw bytes over lines, separators, fixed-size
//! chunks or whole messages; and whole-message decoding of the other encodings.

use std::io::{BufRead, BufWriter, Write};

use runtime_core::{ReadItem, RejectionKind, Value};

use crate::framing::{Frame, Split, Splitter};
use crate::{
    json, position, record, reject, rejected, CodecConfig, DecodeContext, EncodeError, Encoding,
    Framing, RecordDecoder, RecordEncoder,
};

pub(crate) struct FramedDecoder<R> {
    split: Splitter<R>,
    encoding: Encoding,
    ctx: DecodeContext,
    line_based: bool,
    /// Drop a `\r` before the `\n` (text encodings only: raw bytes stay as they are).
    strip_cr: bool,
    record: u64,
    done: bool,
}

impl<R: BufRead> FramedDecoder<R> {
    pub fn new(encoding: Encoding, framing: &Framing, input: R, ctx: DecodeContext) -> Self {
        let split = match framing {
            Framing::Lines => Split::Separator(b"\n".to_vec()),
            Framing::Delimited { separator } => Split::Separator(separator.clone()),
            Framing::Fixed { size } => Split::Fixed(*size),
            _ => Split::Whole,
        };
        let line_based = matches!(framing, Framing::Lines)
            || matches!(framing, Framing::Delimited { separator } if separator == b"\n");
        FramedDecoder {
            split: Splitter::new(input, split, ctx.max_record_bytes),
            encoding,
            line_based,
            strip_cr: line_based && encoding != Encoding::Raw,
            ctx,
            record: 0,
            done: false,
        }
    }

    fn item(&mut self) -> Result<Option<ReadItem>, runtime_core::Error> {
        loop {
            let frame = self.split.next_frame().map_err(|e| self.ctx.io(e))?;
            let line = self.line_based.then_some(self.split.frames);
            let offset = self.split.frame_offset;
            match frame {
                Frame::End => return Ok(None),
                Frame::Oversize { len } => {
                    self.record += 1;
                    return Ok(Some(
                        self.ctx.oversize(position(self.record, line, offset), len),
                    ));
                }
                Frame::Short { len } => {
                    self.record += 1;
                    return Ok(Some(reject(
                        RejectionKind::Encoding,
                        position(self.record, line, offset),
                        format!("input ends with a short chunk of {len} bytes"),
                    )));
                }
                Frame::Data => {}
            }
            let mut data = self.split.data();
            if self.strip_cr {
                if let [rest @ .., b'\r'] = data {
                    data = rest;
                }
            }
            let decoded = match self.encoding {
                Encoding::Json => {
                    // Blank lines separate nothing: they are not records.
                    if data.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    json::decode(data)
                }
                Encoding::Utf8 => decode_utf8(data, offset),
                _ => Ok(Value::Bytes(data.to_vec())),
            };
            self.record += 1;
            let pos = position(self.record, line, offset);
            return Ok(Some(match decoded {
                Ok(v) => record(v, pos),
                Err(reason) => reject(RejectionKind::Encoding, pos, reason),
            }));
        }
    }
}

impl<R: BufRead + Send> RecordDecoder for FramedDecoder<R> {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        if self.done {
            return None;
        }
        let item = self.item();
        crate::fuse(&mut self.done, item)
    }
}

/// `frame_offset`: where the bytes start in the stream, to name the bad byte's offset.
pub(crate) fn decode_utf8(bytes: &[u8], frame_offset: u64) -> Result<Value, String> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(Value::from(s)),
        Err(e) => {
            let at = e.valid_up_to();
            Err(format!(
                "invalid UTF-8 at byte offset {} (byte {at} of the record)",
                frame_offset + at as u64
            ))
        }
    }
}

/// A whole input decoded as one message, for the encodings whose own framing is not
/// [`Framing::Message`]-shaped (CSV, Avro, MessagePack).
pub(crate) struct MessageDecoder<R> {
    cfg: CodecConfig,
    split: Splitter<R>,
    ctx: DecodeContext,
    done: bool,
}

impl<R: BufRead> MessageDecoder<R> {
    pub fn new(cfg: CodecConfig, input: R, ctx: DecodeContext) -> Self {
        MessageDecoder {
            split: Splitter::new(input, Split::Whole, cfg.max_record_bytes),
            cfg,
            ctx,
            done: false,
        }
    }
}

impl<R: BufRead + Send> RecordDecoder for MessageDecoder<R> {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        if self.done {
            return None;
        }
        self.done = true;
        let pos = position(1, None, 0);
        Some(match self.split.next_frame() {
            Err(e) => Err(self.ctx.io(e)),
            Ok(Frame::End) => return None,
            Ok(Frame::Oversize { len }) => Ok(self.ctx.oversize(pos, len)),
            Ok(Frame::Data | Frame::Short { .. }) => {
                Ok(match crate::decode_message(&self.cfg, self.split.data()) {
                    Ok(v) => record(v, pos),
                    Err(e) => reject(RejectionKind::Encoding, pos, e.to_string()),
                })
            }
        })
    }
}

/// JSON, UTF-8 and raw output: each record's bytes, then the framing's separator.
pub(crate) struct FramedEncoder<W: Write> {
    out: BufWriter<W>,
    encoding: Encoding,
    separator: Vec<u8>,
    fixed: Option<usize>,
    scratch: Vec<u8>,
}

impl<W: Write> FramedEncoder<W> {
    pub fn new(encoding: Encoding, framing: &Framing, out: W) -> Self {
        let (separator, fixed) = match framing {
            Framing::Lines => (b"\n".to_vec(), None),
            Framing::Delimited { separator } => (separator.clone(), None),
            Framing::Fixed { size } => (Vec::new(), Some(*size)),
            _ => (Vec::new(), None),
        };
        FramedEncoder {
            out: BufWriter::with_capacity(64 * 1024, out),
            encoding,
            separator,
            fixed,
            scratch: Vec::with_capacity(256),
        }
    }
}

impl<W: Write + Send> RecordEncoder for FramedEncoder<W> {
    fn write(&mut self, value: &Value) -> Result<(), EncodeError> {
        self.scratch.clear();
        let sep = (!self.separator.is_empty()).then_some(self.separator.as_slice());
        match self.encoding {
            Encoding::Json => json::write_value(&mut self.scratch, value),
            Encoding::Utf8 => write_utf8(&mut self.scratch, value, sep),
            _ => write_raw(&mut self.scratch, value),
        }
        .map_err(EncodeError::Rejected)?;
        if let Some(size) = self.fixed {
            if self.scratch.len() != size {
                return Err(EncodeError::Rejected(rejected(format!(
                    "a fixed-size record must be {size} bytes, this one is {}",
                    self.scratch.len()
                ))));
            }
        }
        if self.encoding == Encoding::Raw {
            if let Some(sep) = sep {
                if memchr::memmem::find(&self.scratch, sep).is_some() {
                    return Err(EncodeError::Rejected(rejected(
                        "raw record contains the framing's separator",
                    )));
                }
            }
        }
        self.scratch.extend_from_slice(&self.separator);
        self.out.write_all(&self.scratch)?;
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A string as UTF-8 text; one that holds the separator would become two records, so it is
/// refused.
pub(crate) fn write_utf8(
    out: &mut Vec<u8>,
    value: &Value,
    separator: Option<&[u8]>,
) -> Result<(), String> {
    let s = match value {
        Value::String(s) => s,
        other => {
            return Err(rejected(format!(
                "utf-8 output takes strings, found {}",
                other.kind()
            )))
        }
    };
    if let Some(sep) = separator {
        if memchr::memmem::find(s.as_bytes(), sep).is_some() {
            return Err(rejected("string contains the framing's separator"));
        }
        if sep == b"\n" && s.ends_with('\r') {
            return Err(rejected("string ends with a carriage return"));
        }
    }
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

pub(crate) fn write_raw(out: &mut Vec<u8>, value: &Value) -> Result<(), String> {
    match value {
        Value::Bytes(b) => out.extend_from_slice(b),
        Value::String(s) => out.extend_from_slice(s.as_bytes()),
        other => {
            return Err(rejected(format!(
                "raw output takes bytes or strings, found {}",
                other.kind()
            )))
        }
    }
    Ok(())
}
