//! The Parquet decoder: the footer, then a row group at a time, rows to records.

use std::collections::VecDeque;
use std::io;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{
    Array, ArrayAccessor, GenericListArray, OffsetSizeTrait, PrimitiveArray, RecordBatch,
};
use arrow_schema::{ArrowError, DataType, TimeUnit};
use bytes::{Buf, Bytes};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};
use runtime_core::{Map, ReadItem, RejectionKind, Value};

use super::types::{date_text, time_text, timestamp_text};
use super::{RandomAccess, READ_BATCH_ROWS};
use crate::{position, record, reject, DecodeContext, RecordDecoder};

/// The tail read first: most footers fit in it.
const FOOTER_GUESS: u64 = 64 * 1024;
/// `PAR1`, at both ends of a Parquet file.
const MAGIC: &[u8; 4] = b"PAR1";

/// Why reading stopped: the input failed, or its bytes are not what a Parquet file holds.
enum Fail {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io(e)
    }
}

/// Byte ranges of the input already read, served to parquet's reader as the whole file: the
/// footer, or one row group's column chunks. Asking for bytes outside them is an error
/// (a footer pointing outside its row group's bytes, say), never another read.
struct Ranges {
    len: u64,
    parts: Vec<(u64, Bytes)>,
}

impl Ranges {
    fn slice(&self, start: u64, len: Option<usize>) -> Result<Bytes, ParquetError> {
        for (at, bytes) in &self.parts {
            let end = at + bytes.len() as u64;
            if start < *at || start > end {
                continue;
            }
            let from = (start - at) as usize;
            let to = match len {
                Some(n) => match from.checked_add(n) {
                    Some(to) if to <= bytes.len() => to,
                    _ => continue,
                },
                None => bytes.len(),
            };
            return Ok(bytes.slice(from..to));
        }
        Err(ParquetError::General(format!(
            "the file's metadata points at bytes {start}..{} outside the part being read",
            start.saturating_add(len.unwrap_or(0) as u64)
        )))
    }
}

impl Length for Ranges {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Ranges {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> Result<Self::T, ParquetError> {
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        self.slice(start, Some(length))
    }
}

/// Runs parquet's decoding of bytes from the input, its panics turned into errors: parquet
/// asserts on some malformed data (a bit width out of range in a damaged page, say) where it
/// would better return an error, and a damaged file must not take the engine's thread with
/// it. (The panic is still printed by the process's panic hook, which this library leaves
/// alone.)
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        format!("the Parquet reader failed on malformed data: {why}")
    })
}

/// The footer's metadata, read with at most two reads of the input's tail.
fn read_footer(input: &dyn RandomAccess, len: u64) -> Result<ArrowReaderMetadata, Fail> {
    if len < 12 {
        return Err(Fail::Bad(format!(
            "not a Parquet file: {len} bytes, fewer than a Parquet file's magic numbers and footer take"
        )));
    }
    let mut tail_len = len.min(FOOTER_GUESS);
    let mut tail = input.read_at(len - tail_len, tail_len as usize)?;
    let end = &tail[tail.len() - 8..];
    if &end[4..] != MAGIC {
        return Err(Fail::Bad(
            "not a Parquet file, or one cut short: it does not end with the magic number PAR1 (a file whose footer was never written, or not Parquet at all)"
                .into(),
        ));
    }
    let meta_len = u64::from(u32::from_le_bytes([end[0], end[1], end[2], end[3]]));
    let needed = meta_len + 8;
    if needed + 4 > len {
        return Err(Fail::Bad(format!(
            "corrupt footer: it claims {meta_len} bytes of metadata in a file of {len} bytes"
        )));
    }
    if needed > tail_len {
        tail_len = needed;
        tail = input.read_at(len - tail_len, tail_len as usize)?;
    }
    let ranges = Ranges {
        len,
        parts: vec![(len - tail_len, tail)],
    };
    guarded(|| ArrowReaderMetadata::load(&ranges, ArrowReaderOptions::new()))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| Fail::Bad(format!("corrupt footer: {e}")))
}

/// The bytes of row group `rg`'s column chunks: where they start, and how many.
fn row_group_range(meta: &ArrowReaderMetadata, rg: usize, len: u64) -> Result<(u64, u64), String> {
    let group = meta.metadata().row_group(rg);
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for c in group.columns() {
        let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
        let (Ok(start), Ok(size)) = (u64::try_from(start), u64::try_from(c.compressed_size()))
        else {
            return Err(format!(
                "its column {} claims a negative offset or size",
                c.column_path()
            ));
        };
        lo = lo.min(start);
        hi = hi.max(start.saturating_add(size));
    }
    if lo == u64::MAX {
        return Ok((0, 0));
    }
    if hi > len {
        return Err(format!(
            "its columns claim bytes up to {hi}, past the end of the file ({len} bytes)"
        ));
    }
    Ok((lo, hi - lo))
}

/// A row group being read.
struct Group {
    reader: ParquetRecordBatchReader,
    /// Its number in the file, from 0.
    index: usize,
    /// The record number after its last row.
    end: u64,
    offset: u64,
}

struct Opened {
    meta: ArrowReaderMetadata,
    len: u64,
    names: Vec<String>,
    next_group: usize,
    group: Option<Group>,
}

pub(crate) struct ParquetDecoder {
    input: Box<dyn RandomAccess>,
    ctx: DecodeContext,
    opened: Option<Opened>,
    pending: VecDeque<ReadItem>,
    record: u64,
    done: bool,
}

impl ParquetDecoder {
    pub fn new(input: Box<dyn RandomAccess>, ctx: DecodeContext) -> Self {
        ParquetDecoder {
            input,
            ctx,
            opened: None,
            pending: VecDeque::new(),
            record: 0,
            done: false,
        }
    }

    fn fail(&self, at: u64, fail: Fail) -> runtime_core::Error {
        match fail {
            Fail::Io(e) => self.ctx.io(e),
            Fail::Bad(why) => self.ctx.broken(position(self.record + 1, None, at), why),
        }
    }

    /// Reads the footer and checks that every column is of a type this decoder reads.
    /// `None`: an empty input.
    fn open(&mut self) -> Result<Option<Opened>, runtime_core::Error> {
        let len = self.input.len().map_err(|e| self.ctx.io(e))?;
        if len == 0 {
            return Ok(None);
        }
        let meta = read_footer(self.input.as_ref(), len).map_err(|f| self.fail(0, f))?;
        let schema = meta.schema().clone();
        for field in schema.fields() {
            let empty = arrow_array::new_empty_array(field.data_type());
            let readable = cells(empty.as_ref()).map(|_| ());
            if let Err(why) = readable {
                return Err(self.fail(0, Fail::Bad(format!("column '{}': {why}", field.name()))));
            }
        }
        Ok(Some(Opened {
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            meta,
            len,
            next_group: 0,
            group: None,
        }))
    }

    fn item(&mut self) -> Result<Option<ReadItem>, runtime_core::Error> {
        if self.opened.is_none() {
            match self.open()? {
                Some(o) => self.opened = Some(o),
                None => return Ok(None),
            }
        }
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(item));
            }
            let Some(opened) = self.opened.as_mut() else {
                return Ok(None);
            };
            if let Some(group) = opened.group.as_mut() {
                let names = &opened.names;
                let reader = &mut group.reader;
                let next = guarded(|| {
                    reader
                        .next()
                        .map(|b| b.map(|batch| batch_rows(&batch, names)))
                })
                .unwrap_or_else(|why| Some(Err(ArrowError::ExternalError(why.into()))));
                match next {
                    Some(Ok(rows)) => {
                        let offset = group.offset;
                        for value in rows {
                            self.record += 1;
                            self.pending
                                .push_back(record(value, position(self.record, None, offset)));
                        }
                    }
                    Some(Err(e)) => {
                        let (end, offset, rg) = (group.end, group.offset, group.index);
                        opened.group = None;
                        let left = end - self.record;
                        self.pending.push_back(reject(
                            RejectionKind::Encoding,
                            position(self.record + 1, None, offset),
                            format!(
                                "row group {rg} at byte offset {offset} cannot be decoded ({e}); its remaining {left} rows are skipped"
                            ),
                        ));
                        self.record = end;
                    }
                    None => {
                        // A reader that hands out fewer rows than the footer says: the
                        // record numbers still follow the file's rows.
                        self.record = group.end;
                        opened.group = None;
                    }
                }
                continue;
            }
            let groups = opened.meta.metadata().num_row_groups();
            if opened.next_group >= groups {
                return Ok(None);
            }
            let rg = opened.next_group;
            opened.next_group += 1;
            let rows = u64::try_from(opened.meta.metadata().row_group(rg).num_rows()).unwrap_or(0);
            let end = self.record.saturating_add(rows);
            let (offset, size) = match row_group_range(&opened.meta, rg, opened.len) {
                Ok(r) => r,
                Err(why) => {
                    self.pending.push_back(reject(
                        RejectionKind::Encoding,
                        position(self.record + 1, None, 0),
                        format!("row group {rg} is corrupt ({why}); its {rows} rows are skipped"),
                    ));
                    self.record = end;
                    continue;
                }
            };
            if rows == 0 {
                continue;
            }
            let size = usize::try_from(size).map_err(|_| {
                self.ctx.broken(
                    position(self.record + 1, None, offset),
                    format!("row group {rg} of {size} bytes cannot be held in memory"),
                )
            })?;
            let bytes = self
                .input
                .read_at(offset, size)
                .map_err(|e| self.ctx.io(e))?;
            let ranges = Ranges {
                len: opened.len,
                parts: vec![(offset, bytes)],
            };
            let meta = opened.meta.clone();
            let built = guarded(|| {
                ParquetRecordBatchReaderBuilder::new_with_metadata(ranges, meta)
                    .with_row_groups(vec![rg])
                    .with_batch_size(READ_BATCH_ROWS)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .and_then(|r| r);
            match built {
                Ok(reader) => {
                    opened.group = Some(Group {
                        reader,
                        index: rg,
                        end,
                        offset,
                    });
                }
                Err(e) => {
                    self.pending.push_back(reject(
                        RejectionKind::Encoding,
                        position(self.record + 1, None, offset),
                        format!(
                            "row group {rg} at byte offset {offset} cannot be read ({e}); its {rows} rows are skipped"
                        ),
                    ));
                    self.record = end;
                }
            }
        }
    }
}

impl RecordDecoder for ParquetDecoder {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        if self.done {
            return None;
        }
        let item = self.item();
        crate::fuse(&mut self.done, item)
    }
}

/// A batch's rows as records: maps of column name to value, in column order.
fn batch_rows(batch: &RecordBatch, names: &[String]) -> Vec<Value> {
    let columns: Vec<Cell<'_>> = batch
        .columns()
        .iter()
        // The footer's columns were checked when the file was opened.
        .map(|c| cells(c.as_ref()).unwrap_or_else(|_| Box::new(|_| Value::Null)))
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let mut m = Map::with_capacity(columns.len());
            for (name, cell) in names.iter().zip(&columns) {
                m.push(name.as_str(), cell(row));
            }
            Value::Map(m)
        })
        .collect()
}

/// One column's value at a row, its type dispatched once per batch.
type Cell<'a> = Box<dyn Fn(usize) -> Value + 'a>;

/// The value reader of `array`; an error names a type this decoder does not read.
fn cells(array: &dyn Array) -> Result<Cell<'_>, String> {
    let inner = typed_cells(array)?;
    Ok(match array.logical_nulls() {
        Some(nulls) if nulls.null_count() > 0 => Box::new(move |i| {
            if nulls.is_null(i) {
                Value::Null
            } else {
                inner(i)
            }
        }),
        _ => inner,
    })
}

fn int(v: impl Into<i128>) -> Value {
    Value::Int(v.into())
}

/// Text of a date or time, or its number where chrono cannot place it.
fn text_or(raw: i64, text: Option<String>) -> Value {
    text.map_or(Value::Int(raw.into()), Value::String)
}

/// A decimal's digits as a number: an integer when it has no fraction (scale 0 or less),
/// else the nearest float.
fn decimal(text: String, scale: i8) -> Value {
    if scale <= 0 {
        if let Ok(i) = text.parse::<i128>() {
            return Value::Int(i);
        }
    }
    match text.parse::<f64>() {
        Ok(f) => Value::Float(f),
        Err(_) => Value::String(text),
    }
}

fn typed_cells(array: &dyn Array) -> Result<Cell<'_>, String> {
    macro_rules! prim {
        ($t:ty, $f:expr) => {{
            let a = array.as_primitive::<$t>();
            let f = $f;
            Box::new(move |i| f(a.value(i)))
        }};
    }
    let unreadable = |dt: &DataType| {
        Err(format!(
            "Arrow type {dt} is not read by this engine (see docs/codecs.md, Parquet)"
        ))
    };
    let dt = array.data_type();
    Ok(match dt {
        DataType::Null => Box::new(|_| Value::Null),
        DataType::Boolean => {
            let a = array.as_boolean();
            Box::new(move |i| Value::Bool(a.value(i)))
        }
        DataType::Int8 => prim!(Int8Type, int),
        DataType::Int16 => prim!(Int16Type, int),
        DataType::Int32 => prim!(Int32Type, int),
        DataType::Int64 => prim!(Int64Type, int),
        DataType::UInt8 => prim!(UInt8Type, int),
        DataType::UInt16 => prim!(UInt16Type, int),
        DataType::UInt32 => prim!(UInt32Type, int),
        DataType::UInt64 => prim!(UInt64Type, int),
        DataType::Float16 => prim!(Float16Type, |v| Value::Float(f64::from(v))),
        DataType::Float32 => prim!(Float32Type, |v| Value::Float(f64::from(v))),
        DataType::Float64 => prim!(Float64Type, Value::Float),
        DataType::Utf8 => text(array.as_string::<i32>()),
        DataType::LargeUtf8 => text(array.as_string::<i64>()),
        DataType::Utf8View => text(array.as_string_view()),
        DataType::Binary => binary(array.as_binary::<i32>()),
        DataType::LargeBinary => binary(array.as_binary::<i64>()),
        DataType::BinaryView => binary(array.as_binary_view()),
        DataType::FixedSizeBinary(_) => binary(array.as_fixed_size_binary()),
        DataType::Date32 => prim!(Date32Type, |d: i32| text_or(d.into(), date_text(d.into()))),
        DataType::Date64 => prim!(Date64Type, |ms: i64| text_or(
            ms,
            date_text(ms.div_euclid(86_400_000))
        )),
        DataType::Timestamp(unit, tz) => {
            let utc = tz.is_some();
            let unit = *unit;
            let f = move |v: i64| text_or(v, timestamp_text(v, unit, utc));
            match unit {
                TimeUnit::Second => prim!(TimestampSecondType, f),
                TimeUnit::Millisecond => prim!(TimestampMillisecondType, f),
                TimeUnit::Microsecond => prim!(TimestampMicrosecondType, f),
                TimeUnit::Nanosecond => prim!(TimestampNanosecondType, f),
            }
        }
        DataType::Time32(unit) => {
            let unit = *unit;
            let f = move |v: i32| text_or(v.into(), time_text(v.into(), unit));
            match unit {
                TimeUnit::Second => prim!(Time32SecondType, f),
                _ => prim!(Time32MillisecondType, f),
            }
        }
        DataType::Time64(unit) => {
            let unit = *unit;
            let f = move |v: i64| text_or(v, time_text(v, unit));
            match unit {
                TimeUnit::Nanosecond => prim!(Time64NanosecondType, f),
                _ => prim!(Time64MicrosecondType, f),
            }
        }
        DataType::Duration(unit) => match unit {
            TimeUnit::Second => prim!(DurationSecondType, int),
            TimeUnit::Millisecond => prim!(DurationMillisecondType, int),
            TimeUnit::Microsecond => prim!(DurationMicrosecondType, int),
            TimeUnit::Nanosecond => prim!(DurationNanosecondType, int),
        },
        DataType::Decimal32(_, s) => decimals(array.as_primitive::<Decimal32Type>(), *s),
        DataType::Decimal64(_, s) => decimals(array.as_primitive::<Decimal64Type>(), *s),
        DataType::Decimal128(_, 0) => prim!(Decimal128Type, Value::Int),
        DataType::Decimal128(_, s) => decimals(array.as_primitive::<Decimal128Type>(), *s),
        DataType::Decimal256(_, s) => decimals(array.as_primitive::<Decimal256Type>(), *s),
        DataType::List(_) => list(array.as_list::<i32>())?,
        DataType::LargeList(_) => list(array.as_list::<i64>())?,
        DataType::FixedSizeList(_, n) => {
            let a = array.as_fixed_size_list();
            let (items, n) = (cells(a.values().as_ref())?, *n as usize);
            Box::new(move |i| Value::Array((i * n..(i + 1) * n).map(&items).collect()))
        }
        DataType::Struct(fields) => {
            let a = array.as_struct();
            let children = fields
                .iter()
                .zip(a.columns())
                .map(|(f, c)| Ok((f.name().as_str(), cells(c.as_ref())?)))
                .collect::<Result<Vec<_>, String>>()?;
            Box::new(move |i| {
                let mut m = Map::with_capacity(children.len());
                for (name, cell) in &children {
                    m.push(*name, cell(i));
                }
                Value::Map(m)
            })
        }
        DataType::Map(_, _) => {
            let a = array.as_map();
            let keys = cells(a.keys().as_ref())?;
            let values = cells(a.values().as_ref())?;
            let offsets = a.value_offsets();
            Box::new(move |i| {
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                Value::Map(
                    (from..to)
                        .map(|j| (keys(j), values(j)))
                        .collect::<Vec<_>>()
                        .into(),
                )
            })
        }
        DataType::Dictionary(_, _) => {
            let d = array.as_any_dictionary();
            let values = cells(d.values().as_ref())?;
            if d.values().is_empty() {
                // No values: every key is null (the nulls are checked before this is called).
                return Ok(Box::new(|_| Value::Null));
            }
            let keys = d.normalized_keys();
            Box::new(move |i| values(keys[i]))
        }
        other => return unreadable(other),
    })
}

fn text<'a>(a: impl ArrayAccessor<Item = &'a str> + 'a) -> Cell<'a> {
    Box::new(move |i| Value::String(a.value(i).to_owned()))
}

fn binary<'a>(a: impl ArrayAccessor<Item = &'a [u8]> + 'a) -> Cell<'a> {
    Box::new(move |i| Value::Bytes(a.value(i).to_vec()))
}

fn decimals<T: DecimalType>(a: &PrimitiveArray<T>, scale: i8) -> Cell<'_> {
    Box::new(move |i| decimal(a.value_as_string(i), scale))
}

fn list<O: OffsetSizeTrait>(a: &GenericListArray<O>) -> Result<Cell<'_>, String> {
    let (items, offsets) = (cells(a.values().as_ref())?, a.value_offsets());
    Ok(Box::new(move |i| {
        let (from, to) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
        Value::Array((from..to).map(&items).collect())
    }))
}
