//! The Parquet decoder: the footer, then a row group at a time, rows to records.

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
use runtime_core::{Map, ReadItem, RejectionKind, Str, Value};

use super::types::{date_text, time_text, timestamp_text};
use super::{RandomAccess, READ_BATCH_ROWS};
use crate::{position, record as record_item, reject, DecodeContext, RecordDecoder};

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
    /// The batch being turned into records, and its next row.
    batch: Option<(RecordBatch, usize)>,
}

struct Opened {
    meta: ArrowReaderMetadata,
    len: u64,
    /// The columns' names, as each row's keys.
    keys: Vec<Key>,
    next_group: usize,
    group: Option<Group>,
}

pub(crate) struct ParquetDecoder {
    input: Box<dyn RandomAccess>,
    ctx: DecodeContext,
    opened: Option<Opened>,
    /// [`next_item`](RecordDecoder::next_item)'s batch of one, kept for its allocation.
    one: Vec<ReadItem>,
    record: u64,
    done: bool,
}

impl ParquetDecoder {
    pub fn new(input: Box<dyn RandomAccess>, ctx: DecodeContext) -> Self {
        ParquetDecoder {
            input,
            ctx,
            opened: None,
            one: Vec::with_capacity(1),
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
            keys: schema.fields().iter().map(|f| Key::new(f.name())).collect(),
            meta,
            len,
            next_group: 0,
            group: None,
        }))
    }

    /// Appends up to `max` items to `out`, rows straight from the batch being read;
    /// `Ok(false)`: the file has no more.
    fn read_into(
        &mut self,
        max: usize,
        out: &mut Vec<ReadItem>,
    ) -> Result<bool, runtime_core::Error> {
        if self.opened.is_none() {
            match self.open()? {
                Some(o) => self.opened = Some(o),
                None => return Ok(false),
            }
        }
        let target = out.len().saturating_add(max);
        while out.len() < target {
            let Some(opened) = self.opened.as_mut() else {
                return Ok(false);
            };
            if let Some(group) = opened.group.as_mut() {
                let offset = group.offset;
                let next = match &mut group.batch {
                    Some((batch, row)) if *row < batch.num_rows() => {
                        let rows = *row..batch.num_rows().min(*row + (target - out.len()));
                        *row = rows.end;
                        let (keys, record) = (&opened.keys, &mut self.record);
                        match guarded(|| push_rows(batch, rows, keys, out, record, offset)) {
                            Ok(()) => continue,
                            Err(why) => Some(Err(ArrowError::ExternalError(why.into()))),
                        }
                    }
                    _ => {
                        let reader = &mut group.reader;
                        guarded(|| reader.next())
                            .unwrap_or_else(|why| Some(Err(ArrowError::ExternalError(why.into()))))
                    }
                };
                match next {
                    Some(Ok(batch)) => group.batch = Some((batch, 0)),
                    Some(Err(e)) => {
                        let (end, rg) = (group.end, group.index);
                        opened.group = None;
                        let left = end.saturating_sub(self.record);
                        out.push(reject(
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
                return Ok(false);
            }
            let rg = opened.next_group;
            opened.next_group += 1;
            let rows = u64::try_from(opened.meta.metadata().row_group(rg).num_rows()).unwrap_or(0);
            let end = self.record.saturating_add(rows);
            let (offset, size) = match row_group_range(&opened.meta, rg, opened.len) {
                Ok(r) => r,
                Err(why) => {
                    out.push(reject(
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
                        batch: None,
                    });
                }
                Err(e) => {
                    out.push(reject(
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
        Ok(true)
    }
}

impl RecordDecoder for ParquetDecoder {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        let mut one = std::mem::take(&mut self.one);
        let item = match self.next_batch(1, &mut one) {
            Err(e) => Some(Err(e)),
            Ok(_) => one.pop().map(Ok),
        };
        self.one = one;
        item
    }

    /// As the default, with each row made a record in its place in `out`.
    fn next_batch(
        &mut self,
        max: usize,
        out: &mut Vec<ReadItem>,
    ) -> Result<bool, runtime_core::Error> {
        if self.done {
            return Ok(false);
        }
        let read = self.read_into(max, out);
        self.done = !matches!(read, Ok(true));
        read
    }
}

/// Rows `rows` of `batch` as records appended to `out`: maps of column name to value, in
/// column order, numbered on from `record`.
fn push_rows(
    batch: &RecordBatch,
    rows: std::ops::Range<usize>,
    keys: &[Key],
    out: &mut Vec<ReadItem>,
    record: &mut u64,
    offset: u64,
) {
    let columns: Vec<Cell<'_>> = batch
        .columns()
        .iter()
        // The footer's columns were checked when the file was opened.
        .map(|c| cells(c.as_ref()).unwrap_or_else(|_| Box::new(|_, _| {})))
        .collect();
    out.reserve(rows.len());
    for row in rows {
        *record += 1;
        out.push(record_item(
            map_at(keys, &columns, row),
            position(*record, None, offset),
        ));
    }
}

/// The map of `keys` to the values of `cells` at `row`. The entries are made first, keys
/// copied and values null, and each value is then put in its place (see the Avro datum
/// walker's `read_into`): a value returned and then moved would be copied once more, in
/// loads of the stores just made.
#[inline]
fn map_at(keys: &[Key], cells: &[Cell<'_>], row: usize) -> Value {
    let mut entries: Vec<(Value, Value)> = keys.iter().map(|k| (k.value(), Value::Null)).collect();
    for ((_, v), cell) in entries.iter_mut().zip(cells) {
        cell(row, v);
    }
    Value::Map(Map::from(entries))
}

/// A column or struct field name as a key, copied once per row (a name of up to 24 bytes
/// without allocating).
struct Key(Str);

impl Key {
    fn new(name: &str) -> Key {
        Key(Str::from(name))
    }

    #[inline]
    fn value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// Puts one column's value at a row in the slot given, its type dispatched once per batch.
type Cell<'a> = Box<dyn Fn(usize, &mut Value) + 'a>;

/// The value reader of `array`; an error names a type this decoder does not read.
fn cells(array: &dyn Array) -> Result<Cell<'_>, String> {
    let inner = typed_cells(array)?;
    Ok(match array.logical_nulls() {
        Some(nulls) if nulls.null_count() > 0 => Box::new(move |i, out| {
            if nulls.is_null(i) {
                *out = Value::Null;
            } else {
                inner(i, out);
            }
        }),
        _ => inner,
    })
}

/// `n` values, each put in place by `fill` from the index of its item.
fn items(from: usize, to: usize, fill: impl Fn(usize, &mut Value)) -> Vec<Value> {
    let mut v = Vec::new();
    v.resize_with(to.saturating_sub(from), Value::default);
    for (slot, j) in v.iter_mut().zip(from..) {
        fill(j, slot);
    }
    v
}

fn int(v: impl Into<i128>) -> Value {
    Value::Int(v.into())
}

/// Text of a date or time, or its number where chrono cannot place it.
fn text_or(raw: i64, text: Option<String>) -> Value {
    text.map_or(Value::Int(raw.into()), Value::from)
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
        Err(_) => Value::from(text),
    }
}

fn typed_cells(array: &dyn Array) -> Result<Cell<'_>, String> {
    macro_rules! prim {
        ($t:ty, $f:expr) => {{
            let a = array.as_primitive::<$t>();
            let f = $f;
            Box::new(move |i, out: &mut Value| *out = f(a.value(i)))
        }};
    }
    let unreadable = |dt: &DataType| {
        Err(format!(
            "Arrow type {dt} is not read by this engine (see docs/codecs.md, Parquet)"
        ))
    };
    let dt = array.data_type();
    Ok(match dt {
        DataType::Null => Box::new(|_, out| *out = Value::Null),
        DataType::Boolean => {
            let a = array.as_boolean();
            Box::new(move |i, out| *out = Value::Bool(a.value(i)))
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
            let (values, n) = (cells(a.values().as_ref())?, *n as usize);
            Box::new(move |i, out| {
                *out = Value::Array(items(i * n, (i + 1) * n, &values));
            })
        }
        DataType::Struct(fields) => {
            let a = array.as_struct();
            let keys: Vec<Key> = fields.iter().map(|f| Key::new(f.name())).collect();
            let children = a
                .columns()
                .iter()
                .map(|c| cells(c.as_ref()))
                .collect::<Result<Vec<_>, String>>()?;
            Box::new(move |i, out| *out = map_at(&keys, &children, i))
        }
        DataType::Map(_, _) => {
            let a = array.as_map();
            let keys = cells(a.keys().as_ref())?;
            let values = cells(a.values().as_ref())?;
            let offsets = a.value_offsets();
            Box::new(move |i, out| {
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                let mut entries = Vec::new();
                entries.resize_with(to.saturating_sub(from), Default::default);
                for ((k, v), j) in entries.iter_mut().zip(from..) {
                    keys(j, k);
                    values(j, v);
                }
                *out = Value::Map(Map::from(entries));
            })
        }
        DataType::Dictionary(_, _) => {
            let d = array.as_any_dictionary();
            let values = cells(d.values().as_ref())?;
            if d.values().is_empty() {
                // No values: every key is null (the nulls are checked before this is called).
                return Ok(Box::new(|_, out| *out = Value::Null));
            }
            let keys = d.normalized_keys();
            Box::new(move |i, out| values(keys[i], out))
        }
        other => return unreadable(other),
    })
}

fn text<'a>(a: impl ArrayAccessor<Item = &'a str> + 'a) -> Cell<'a> {
    Box::new(move |i, out| *out = Value::String(Str::from(a.value(i))))
}

fn binary<'a>(a: impl ArrayAccessor<Item = &'a [u8]> + 'a) -> Cell<'a> {
    Box::new(move |i, out| *out = Value::Bytes(a.value(i).to_vec()))
}

fn decimals<T: DecimalType>(a: &PrimitiveArray<T>, scale: i8) -> Cell<'_> {
    Box::new(move |i, out| *out = decimal(a.value_as_string(i), scale))
}

fn list<O: OffsetSizeTrait>(a: &GenericListArray<O>) -> Result<Cell<'_>, String> {
    let (values, offsets) = (cells(a.values().as_ref())?, a.value_offsets());
    Ok(Box::new(move |i, out| {
        let (from, to) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
        *out = Value::Array(items(from, to, &values));
    }))
}
