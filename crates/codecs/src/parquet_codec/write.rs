//! The Parquet encoder: records checked against the file's columns as they come, buffered,
//! and handed to parquet's `ArrowWriter` a chunk at a time; row groups every
//! [`ROW_GROUP_ROWS`] records; the footer on close.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use arrow_array::types::*;
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, FixedSizeBinaryArray, ListArray, MapArray, NullArray,
    PrimitiveArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use runtime_core::Value;

use super::types::{map_type, parse_date, parse_time, parse_timestamp};
use super::ROW_GROUP_ROWS;
use crate::{EncodeError, RecordEncoder};

/// Records handed to the writer at a time (one Arrow batch).
const WRITE_CHUNK_ROWS: usize = 4096;

const NULL: &Value = &Value::Null;

/// Where a value sits in a record, for messages: `amount`, `address.zip`, `scores[3]`.
#[derive(Clone, Copy)]
enum Path<'a> {
    Column(&'a str),
    Field(&'a Path<'a>, &'a str),
    Item(&'a Path<'a>, usize),
    Key(&'a Path<'a>),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Column(name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Item(parent, i) => write!(f, "{parent}[{i}]"),
            Path::Key(parent) => write!(f, "{parent}{{key}}"),
        }
    }
}

/// The file's columns: from the slot's schema, fixed by the records of the first row group,
/// or still being inferred from them.
enum Columns {
    Given(SchemaRef),
    Fixed(SchemaRef),
    /// Column names and types so far; `Null` is a type not known yet.
    Inferring(Vec<(String, DataType)>),
}

pub(crate) struct ParquetEncoder<W: Write + Send> {
    columns: Columns,
    out: Option<W>,
    writer: Option<ArrowWriter<W>>,
    /// Records checked against the columns and not yet handed to the writer.
    buffered: Vec<Value>,
    closed: bool,
}

impl<W: Write + Send> ParquetEncoder<W> {
    /// `schema`: the file's columns, from the slot's Avro schema; `None` infers them.
    pub fn new(schema: Option<Schema>, out: W) -> Self {
        ParquetEncoder {
            columns: match schema {
                Some(s) => Columns::Given(Arc::new(s)),
                None => Columns::Inferring(Vec::new()),
            },
            out: Some(out),
            writer: None,
            buffered: Vec::new(),
            closed: false,
        }
    }

    /// Checks `value` against the columns (widening them while they are inferred).
    fn check(&mut self, value: &Value) -> Result<(), String> {
        let Value::Map(row) = value else {
            return Err(format!(
                "a Parquet row is a map of column names to values, not {}",
                value.kind()
            ));
        };
        match &mut self.columns {
            Columns::Given(schema) => {
                for f in schema.fields() {
                    let v = row.get(f.name()).unwrap_or(NULL);
                    fits(
                        f.data_type(),
                        f.is_nullable(),
                        v,
                        Path::Column(f.name()),
                        false,
                    )?;
                }
            }
            Columns::Fixed(schema) => {
                for (k, v) in row.iter() {
                    let Value::String(name) = k else {
                        return Err(format!(
                            "a Parquet row's column names are strings, not {}",
                            k.kind()
                        ));
                    };
                    let Some((_, f)) = schema.fields().find(name) else {
                        return Err(format!(
                            "field '{name}' is not a column of this file: its columns were fixed by its first records ({})",
                            column_list(schema)
                        ));
                    };
                    fits(f.data_type(), true, v, Path::Column(name), true)?;
                }
            }
            Columns::Inferring(cols) => {
                // Widened on a copy, kept only when the whole record fits.
                let mut widened: Option<Vec<(String, DataType)>> = None;
                for (k, v) in row.iter() {
                    let Value::String(name) = k else {
                        return Err(format!(
                            "a Parquet row's column names are strings, not {}",
                            k.kind()
                        ));
                    };
                    let current = widened.as_ref().unwrap_or(cols);
                    let at = current.iter().position(|(n, _)| n == name);
                    let dt = at.map_or(&DataType::Null, |i| &current[i].1);
                    if let Some(new) = unify(dt, v, Path::Column(name))? {
                        let w = widened.get_or_insert_with(|| cols.clone());
                        match at {
                            Some(i) => w[i].1 = new,
                            None => w.push((name.to_string(), new)),
                        }
                    } else if at.is_none() {
                        widened
                            .get_or_insert_with(|| cols.clone())
                            .push((name.to_string(), DataType::Null));
                    }
                }
                if let Some(w) = widened {
                    *cols = w;
                }
            }
        }
        Ok(())
    }

    /// The columns in force, fixed now if they were being inferred.
    fn schema(&mut self) -> SchemaRef {
        match &self.columns {
            Columns::Given(s) | Columns::Fixed(s) => s.clone(),
            Columns::Inferring(cols) => {
                let schema = Arc::new(Schema::new(
                    cols.iter()
                        .map(|(n, t)| Field::new(n, t.clone(), true))
                        .collect::<Vec<_>>(),
                ));
                self.columns = Columns::Fixed(schema.clone());
                schema
            }
        }
    }

    fn writer(&mut self) -> io::Result<&mut ArrowWriter<W>> {
        if self.writer.is_none() {
            let schema = self.schema();
            let out = self
                .out
                .take()
                .ok_or_else(|| io::Error::other("the Parquet writer failed before"))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .build();
            let w = ArrowWriter::try_new(out, schema, Some(props)).map_err(io::Error::other)?;
            self.writer = Some(w);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::other("no Parquet writer"))
    }

    /// Hands the buffered records to the writer as one batch.
    fn write_buffered(&mut self) -> io::Result<()> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let schema = self.schema();
        let rows = std::mem::take(&mut self.buffered);
        let batch = batch_of(&schema, &rows).map_err(|e| {
            io::Error::other(format!(
                "records that fit the columns failed to convert: {e}"
            ))
        })?;
        self.writer()?.write(&batch).map_err(io::Error::other)
    }
}

impl<W: Write + Send> RecordEncoder for ParquetEncoder<W> {
    fn write(&mut self, value: &Value) -> Result<(), EncodeError> {
        if self.closed {
            return Err(EncodeError::Io(io::Error::other(
                "written to after its Parquet file was closed",
            )));
        }
        self.check(value).map_err(EncodeError::Rejected)?;
        self.buffered.push(value.clone());
        let chunk = match self.columns {
            Columns::Inferring(_) => ROW_GROUP_ROWS,
            _ => WRITE_CHUNK_ROWS,
        };
        if self.buffered.len() >= chunk {
            self.write_buffered()?;
        }
        Ok(())
    }

    /// Writes the records buffered so far as a row group of their own and hands the bytes
    /// to the destination: readable only once [`close`](RecordEncoder::close) wrote the
    /// footer. Fixes the columns if they were still being inferred.
    fn finish(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.write_buffered()?;
        if let Some(w) = self.writer.as_mut() {
            w.flush().map_err(io::Error::other)?;
            w.sync()?;
        }
        Ok(())
    }

    /// The footer: the file is complete. A file without records still has its columns
    /// (none, when they were to be inferred).
    fn close(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.finish()?;
        let w = self.writer()?;
        w.finish().map_err(io::Error::other)?;
        w.sync()?;
        self.closed = true;
        Ok(())
    }
}

fn column_list(schema: &Schema) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    match names.len() {
        0 => "none".into(),
        n if n > 12 => format!("{}, ... ({n} in all)", names[..12].join(", ")),
        _ => names.join(", "),
    }
}

// ---------------------------------------------------------------------------------------
// Inference

/// The type of a value alone; `Null` where it says nothing (null, an empty map).
fn type_of_value(v: &Value, path: Path<'_>) -> Result<DataType, String> {
    unify(&DataType::Null, v, path).map(|t| t.unwrap_or(DataType::Null))
}

/// `dt` widened to hold `v` as well: `None` when it already does; an error when the two
/// cannot share a column (a string where integers were), naming the field.
fn unify(dt: &DataType, v: &Value, path: Path<'_>) -> Result<Option<DataType>, String> {
    let conflict = || {
        Err(format!(
            "field '{path}': found {} where the first records had {}",
            v.kind(),
            kind_of(dt)
        ))
    };
    Ok(match (dt, v) {
        (_, Value::Null) => None,
        (DataType::Null, Value::Bool(_)) => Some(DataType::Boolean),
        (DataType::Null, Value::Int(i)) => {
            int64(*i, path)?;
            Some(DataType::Int64)
        }
        (DataType::Null, Value::Float(_)) => Some(DataType::Float64),
        (DataType::Null, Value::String(_)) => Some(DataType::Utf8),
        (DataType::Null, Value::Bytes(_)) => Some(DataType::Binary),
        (DataType::Null, Value::Array(items)) => {
            let mut item = DataType::Null;
            for (i, x) in items.iter().enumerate() {
                if let Some(t) = unify(&item, x, Path::Item(&path, i))? {
                    item = t;
                }
            }
            Some(list_of(item))
        }
        (DataType::Null, Value::Map(m)) if m.is_empty() => None,
        (DataType::Null, Value::Map(m)) if m.iter().all(|(k, _)| matches!(k, Value::String(_))) => {
            let mut fields: Vec<(String, DataType)> = Vec::new();
            for (k, x) in m.iter() {
                let Value::String(name) = k else { continue };
                let t = type_of_value(x, Path::Field(&path, name))?;
                match fields.iter_mut().find(|(n, _)| n == name) {
                    Some((_, old)) => {
                        if let Some(w) = unify_types(old, &t, Path::Field(&path, name))? {
                            *old = w;
                        }
                    }
                    None => fields.push((name.to_string(), t)),
                }
            }
            Some(struct_of(fields))
        }
        (DataType::Null, Value::Map(m)) => {
            let (mut kt, mut vt) = (DataType::Null, DataType::Null);
            for (k, x) in m.iter() {
                if k == &Value::Null {
                    return Err(format!("field '{path}': a map key is null"));
                }
                if let Some(t) = unify(&kt, k, Path::Key(&path))? {
                    kt = t;
                }
                if let Some(t) = unify(&vt, x, Path::Key(&path))? {
                    vt = t;
                }
            }
            Some(map_type(
                Field::new("key", kt, false),
                Field::new("value", vt, true),
            ))
        }
        (DataType::Boolean, Value::Bool(_))
        | (DataType::Utf8, Value::String(_))
        | (DataType::Binary, Value::Bytes(_))
        | (DataType::Float64, Value::Float(_)) => None,
        (DataType::Int64, Value::Int(i)) => {
            int64(*i, path)?;
            None
        }
        (DataType::Float64, Value::Int(_)) => None,
        // Integers first, then a float: the column is a float column.
        (DataType::Int64, Value::Float(_)) => Some(DataType::Float64),
        (DataType::List(item), Value::Array(items)) => {
            let mut t = item.data_type().clone();
            let mut changed = false;
            for (i, x) in items.iter().enumerate() {
                if let Some(w) = unify(&t, x, Path::Item(&path, i))? {
                    t = w;
                    changed = true;
                }
            }
            changed.then(|| list_of(t))
        }
        (DataType::Struct(fields), Value::Map(m)) => {
            let mut cols: Vec<(String, DataType)> = fields
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect();
            let mut changed = false;
            for (k, x) in m.iter() {
                let Value::String(name) = k else {
                    return conflict();
                };
                let p = Path::Field(&path, name);
                match cols.iter_mut().find(|(n, _)| n == name) {
                    Some((_, t)) => {
                        if let Some(w) = unify(t, x, p)? {
                            *t = w;
                            changed = true;
                        }
                    }
                    None => {
                        cols.push((name.to_string(), type_of_value(x, p)?));
                        changed = true;
                    }
                }
            }
            changed.then(|| struct_of(cols))
        }
        (DataType::Map(entries, _), Value::Map(m)) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return conflict();
            };
            let (mut kt, mut vt) = (kv[0].data_type().clone(), kv[1].data_type().clone());
            let mut changed = false;
            for (k, x) in m.iter() {
                if k == &Value::Null {
                    return Err(format!("field '{path}': a map key is null"));
                }
                if let Some(t) = unify(&kt, k, Path::Key(&path))? {
                    kt = t;
                    changed = true;
                }
                if let Some(t) = unify(&vt, x, Path::Key(&path))? {
                    vt = t;
                    changed = true;
                }
            }
            changed.then(|| map_type(Field::new("key", kt, false), Field::new("value", vt, true)))
        }
        _ => return conflict(),
    })
}

/// Two inferred types of one field (a key given twice in a map) made one.
fn unify_types(a: &DataType, b: &DataType, path: Path<'_>) -> Result<Option<DataType>, String> {
    match (a, b) {
        (_, DataType::Null) => Ok(None),
        (DataType::Null, t) => Ok(Some(t.clone())),
        (DataType::Int64, DataType::Float64) => Ok(Some(DataType::Float64)),
        (DataType::Float64, DataType::Int64) => Ok(None),
        (x, y) if x == y => Ok(None),
        _ => Err(format!(
            "field '{path}': found {} where the first records had {}",
            kind_of(b),
            kind_of(a)
        )),
    }
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

fn struct_of(fields: Vec<(String, DataType)>) -> DataType {
    DataType::Struct(Fields::from(
        fields
            .into_iter()
            .map(|(n, t)| Field::new(n, t, true))
            .collect::<Vec<_>>(),
    ))
}

/// What a column's values are, in the words of a record's values.
fn kind_of(dt: &DataType) -> String {
    match dt {
        DataType::Null => "only nulls".into(),
        DataType::Boolean => "booleans".into(),
        DataType::Int32 | DataType::Int64 => "integers".into(),
        DataType::Float32 | DataType::Float64 => "floats".into(),
        DataType::Utf8 => "strings".into(),
        DataType::Binary | DataType::FixedSizeBinary(_) => "bytes".into(),
        DataType::List(_) => "arrays".into(),
        DataType::Struct(_) | DataType::Map(..) => "maps".into(),
        other => format!("{other} values"),
    }
}

fn int64(i: i128, path: Path<'_>) -> Result<i64, String> {
    i64::try_from(i)
        .map_err(|_| format!("field '{path}': integer {i} does not fit a 64-bit Parquet column"))
}

// ---------------------------------------------------------------------------------------
// Checking against fixed columns

/// Whether `v` can be written in a column of `dt`; `strict`: a map's keys must all be its
/// struct's fields (inferred columns), else keys without a field are left out (an Avro
/// schema's columns, as the Avro encoder leaves them out).
fn fits(
    dt: &DataType,
    nullable: bool,
    v: &Value,
    path: Path<'_>,
    strict: bool,
) -> Result<(), String> {
    let expected = |what: &str| {
        Err(format!(
            "field '{path}': expected {what}, found {}",
            describe(v)
        ))
    };
    match (dt, v) {
        (_, Value::Null) if nullable => Ok(()),
        (DataType::Null, _) => Err(format!(
            "field '{path}': its column holds only nulls (it had no other value in the file's first records), found {}",
            v.kind()
        )),
        (_, Value::Null) => Err(format!("field '{path}': a value is required, found null")),
        (DataType::Boolean, Value::Bool(_)) => Ok(()),
        (DataType::Int32, Value::Int(i)) if i32::try_from(*i).is_ok() => Ok(()),
        (DataType::Int32, _) => expected("an int (32 bits)"),
        (DataType::Int64, Value::Int(i)) if i64::try_from(*i).is_ok() => Ok(()),
        (DataType::Int64, _) => expected("a long (64 bits)"),
        (DataType::Float32 | DataType::Float64, Value::Float(_) | Value::Int(_)) => Ok(()),
        (DataType::Float32 | DataType::Float64, _) => expected("a float"),
        (DataType::Utf8, Value::String(_)) => Ok(()),
        (DataType::Utf8, _) => expected("a string"),
        (DataType::Binary, Value::Bytes(_) | Value::String(_)) => Ok(()),
        (DataType::Binary, _) => expected("bytes"),
        (DataType::FixedSizeBinary(n), Value::Bytes(b)) if b.len() == *n as usize => Ok(()),
        (DataType::FixedSizeBinary(n), Value::String(s)) if s.len() == *n as usize => Ok(()),
        (DataType::FixedSizeBinary(n), _) => expected(&format!("{n} bytes")),
        (DataType::Date32, Value::Int(i)) if i32::try_from(*i).is_ok() => Ok(()),
        (DataType::Date32, Value::String(s)) if parse_date(s).is_some() => Ok(()),
        (DataType::Date32, _) => expected("a date (YYYY-MM-DD, or days since 1970-01-01)"),
        (DataType::Timestamp(unit, _), v) if timestamp_value(v, *unit).is_some() => Ok(()),
        (DataType::Timestamp(..), _) => {
            expected("a timestamp (ISO 8601 text, or a number since 1970-01-01T00:00:00Z)")
        }
        (DataType::Time32(unit), v) if time_value(v, *unit).and_then(|t| i32::try_from(t).ok()).is_some() => Ok(()),
        (DataType::Time64(unit), v) if time_value(v, *unit).is_some() => Ok(()),
        (DataType::Time32(_) | DataType::Time64(_), _) => {
            expected("a time of day (HH:MM:SS, or a number since midnight)")
        }
        (DataType::Decimal128(p, s), v) => decimal_value(v, *p, *s).map(|_| ()).map_err(|why| {
            format!("field '{path}': {why}")
        }),
        (DataType::List(item), Value::Array(items)) => {
            for (i, x) in items.iter().enumerate() {
                fits(item.data_type(), item.is_nullable(), x, Path::Item(&path, i), strict)?;
            }
            Ok(())
        }
        (DataType::List(_), _) => expected("an array"),
        (DataType::Struct(fields), Value::Map(m)) => {
            for f in fields {
                let x = m.get(f.name()).unwrap_or(NULL);
                fits(f.data_type(), f.is_nullable(), x, Path::Field(&path, f.name()), strict)?;
            }
            if strict {
                for (k, _) in m.iter() {
                    let known = matches!(k, Value::String(name) if fields.find(name).is_some());
                    if !known {
                        return Err(format!(
                            "field '{path}': key {} is not one of its fields ({})",
                            describe(k),
                            fields.iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
            Ok(())
        }
        (DataType::Struct(_), _) => expected("a map"),
        (DataType::Map(entries, _), Value::Map(m)) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return expected("a map");
            };
            for (k, x) in m.iter() {
                fits(kv[0].data_type(), false, k, Path::Key(&path), strict)?;
                fits(kv[1].data_type(), kv[1].is_nullable(), x, Path::Key(&path), strict)?;
            }
            Ok(())
        }
        (DataType::Map(..), _) => expected("a map"),
        (other, _) => Err(format!("field '{path}': Arrow type {other} is not written by this engine")),
    }
}

/// A value's kind, with short text shown.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() <= 40 => format!("string '{s}'"),
        Value::Int(i) => format!("integer {i}"),
        other => other.kind().to_owned(),
    }
}

fn timestamp_value(v: &Value, unit: TimeUnit) -> Option<i64> {
    match v {
        Value::Int(i) => i64::try_from(*i).ok(),
        Value::String(s) => parse_timestamp(s, unit),
        _ => None,
    }
}

fn time_value(v: &Value, unit: TimeUnit) -> Option<i64> {
    match v {
        Value::Int(i) => i64::try_from(*i).ok(),
        Value::String(s) => parse_time(s, unit),
        _ => None,
    }
}

/// A decimal's unscaled integer (the value times 10^scale) from an integer, a float
/// (rounded to the scale), its digits as text (exact; more fraction digits than the scale
/// refused), or Avro's big-endian two's-complement bytes (already unscaled).
fn decimal_value(v: &Value, precision: u8, scale: i8) -> Result<i128, String> {
    let pow = |n: u32| 10i128.checked_pow(n);
    let scale_u = u32::try_from(scale.max(0)).unwrap_or(0);
    let too_wide = || format!("the value does not fit decimal({precision}, {scale})");
    let unscaled = match v {
        Value::Int(i) => pow(scale_u)
            .and_then(|p| i.checked_mul(p))
            .ok_or_else(too_wide)?,
        Value::Float(f) if f.is_finite() => {
            let x = (f * 10f64.powi(scale_u as i32)).round();
            if x.abs() >= 1e38 {
                return Err(too_wide());
            }
            x as i128
        }
        Value::String(s) => {
            let t = s.trim();
            let (neg, digits) = match t.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, t.strip_prefix('+').unwrap_or(t)),
            };
            let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
            if whole.is_empty() && frac.is_empty() || !all_digits(whole) || !all_digits(frac) {
                return Err(format!("'{s}' is not a decimal number"));
            }
            if frac.len() > scale_u as usize {
                return Err(format!(
                    "'{s}' has more than the {scale} decimal places of decimal({precision}, {scale})"
                ));
            }
            let text = format!("{whole}{frac:0<width$}", width = scale_u as usize);
            let n: i128 = text.trim_start_matches('0').parse().or_else(|_| {
                if text.bytes().all(|b| b == b'0') {
                    Ok(0)
                } else {
                    Err(too_wide())
                }
            })?;
            if neg {
                -n
            } else {
                n
            }
        }
        Value::Bytes(b) if !b.is_empty() && b.len() <= 16 => {
            let fill = if b[0] & 0x80 != 0 { 0xFF } else { 0 };
            let mut buf = [fill; 16];
            buf[16 - b.len()..].copy_from_slice(b);
            i128::from_be_bytes(buf)
        }
        other => {
            return Err(format!(
                "expected a decimal (a number, its digits as text, or Avro's bytes), found {}",
                other.kind()
            ))
        }
    };
    match pow(u32::from(precision)) {
        Some(limit) if unscaled.abs() >= limit => Err(too_wide()),
        _ => Ok(unscaled),
    }
}

// ---------------------------------------------------------------------------------------
// Records to Arrow arrays

/// The rows as one batch of `schema`'s columns (each row already checked).
fn batch_of(schema: &SchemaRef, rows: &[Value]) -> Result<RecordBatch, String> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let values: Vec<&Value> = rows
                .iter()
                .map(|r| r.get(f.name()).unwrap_or(NULL))
                .collect();
            array_of(f.data_type(), &values)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|e| e.to_string())
}

fn nulls_of(values: &[&Value]) -> Option<NullBuffer> {
    values
        .iter()
        .any(|v| matches!(v, Value::Null))
        .then(|| NullBuffer::from_iter(values.iter().map(|v| !matches!(v, Value::Null))))
}

fn int_of(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn float_of(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    }
}

fn array_of(dt: &DataType, values: &[&Value]) -> Result<ArrayRef, String> {
    let err = |e: arrow_schema::ArrowError| e.to_string();
    Ok(match dt {
        DataType::Null => Arc::new(NullArray::new(values.len())),
        DataType::Boolean => Arc::new(BooleanArray::from_iter(values.iter().map(|v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }))),
        DataType::Int32 => Arc::new(PrimitiveArray::<Int32Type>::from_iter(
            values
                .iter()
                .map(|v| int_of(v).and_then(|i| i32::try_from(i).ok())),
        )),
        DataType::Int64 => Arc::new(PrimitiveArray::<Int64Type>::from_iter(
            values
                .iter()
                .map(|v| int_of(v).and_then(|i| i64::try_from(i).ok())),
        )),
        DataType::Float32 => Arc::new(PrimitiveArray::<Float32Type>::from_iter(
            values.iter().map(|v| float_of(v).map(|f| f as f32)),
        )),
        DataType::Float64 => Arc::new(PrimitiveArray::<Float64Type>::from_iter(
            values.iter().map(|v| float_of(v)),
        )),
        DataType::Utf8 => Arc::new(StringArray::from_iter(values.iter().map(|v| v.as_str()))),
        DataType::Binary => Arc::new(BinaryArray::from_iter(values.iter().map(|v| match v {
            Value::Bytes(b) => Some(b.as_slice()),
            Value::String(s) => Some(s.as_bytes()),
            _ => None,
        }))),
        DataType::FixedSizeBinary(n) => {
            let items = values.iter().map(|v| match v {
                Value::Bytes(b) => Some(b.as_slice()),
                Value::String(s) => Some(s.as_bytes()),
                _ => None,
            });
            Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size(items, *n).map_err(err)?)
        }
        DataType::Date32 => Arc::new(PrimitiveArray::<Date32Type>::from_iter(values.iter().map(
            |v| match v {
                Value::Int(i) => i32::try_from(*i).ok(),
                Value::String(s) => parse_date(s),
                _ => None,
            },
        ))),
        DataType::Timestamp(unit, tz) => {
            let raw = values.iter().map(|v| timestamp_value(v, *unit));
            let tz = tz.clone();
            match unit {
                TimeUnit::Second => Arc::new(
                    PrimitiveArray::<TimestampSecondType>::from_iter(raw).with_timezone_opt(tz),
                ),
                TimeUnit::Millisecond => Arc::new(
                    PrimitiveArray::<TimestampMillisecondType>::from_iter(raw)
                        .with_timezone_opt(tz),
                ),
                TimeUnit::Microsecond => Arc::new(
                    PrimitiveArray::<TimestampMicrosecondType>::from_iter(raw)
                        .with_timezone_opt(tz),
                ),
                TimeUnit::Nanosecond => Arc::new(
                    PrimitiveArray::<TimestampNanosecondType>::from_iter(raw).with_timezone_opt(tz),
                ),
            }
        }
        DataType::Time32(unit) => {
            let raw = values
                .iter()
                .map(|v| time_value(v, *unit).and_then(|t| i32::try_from(t).ok()));
            match unit {
                TimeUnit::Second => Arc::new(PrimitiveArray::<Time32SecondType>::from_iter(raw)),
                _ => Arc::new(PrimitiveArray::<Time32MillisecondType>::from_iter(raw)),
            }
        }
        DataType::Time64(unit) => {
            let raw = values.iter().map(|v| time_value(v, *unit));
            match unit {
                TimeUnit::Nanosecond => {
                    Arc::new(PrimitiveArray::<Time64NanosecondType>::from_iter(raw))
                }
                _ => Arc::new(PrimitiveArray::<Time64MicrosecondType>::from_iter(raw)),
            }
        }
        DataType::Decimal128(p, s) => Arc::new(
            PrimitiveArray::<Decimal128Type>::from_iter(
                values.iter().map(|v| decimal_value(v, *p, *s).ok()),
            )
            .with_precision_and_scale(*p, *s)
            .map_err(err)?,
        ),
        DataType::List(item) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            offsets.push(0i32);
            let mut children: Vec<&Value> = Vec::new();
            for v in values {
                if let Value::Array(items) = v {
                    children.extend(items.iter());
                }
                offsets.push(i32::try_from(children.len()).map_err(|_| "a list too long")?);
            }
            let child = array_of(item.data_type(), &children)?;
            Arc::new(
                ListArray::try_new(
                    item.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    child,
                    nulls_of(values),
                )
                .map_err(err)?,
            )
        }
        DataType::Struct(fields) => Arc::new(struct_array(fields, values)?),
        DataType::Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(format!("a map of {}", entries.data_type()));
            };
            let mut offsets = Vec::with_capacity(values.len() + 1);
            offsets.push(0i32);
            let (mut keys, mut vals): (Vec<&Value>, Vec<&Value>) = (Vec::new(), Vec::new());
            for v in values {
                if let Value::Map(m) = v {
                    for (k, x) in m.iter() {
                        keys.push(k);
                        vals.push(x);
                    }
                }
                offsets.push(i32::try_from(keys.len()).map_err(|_| "a map too long")?);
            }
            let entries_array = StructArray::try_new(
                kv.clone(),
                vec![
                    array_of(kv[0].data_type(), &keys)?,
                    array_of(kv[1].data_type(), &vals)?,
                ],
                None,
            )
            .map_err(err)?;
            Arc::new(
                MapArray::try_new(
                    FieldRef::clone(entries),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    entries_array,
                    nulls_of(values),
                    *sorted,
                )
                .map_err(err)?,
            )
        }
        other => return Err(format!("Arrow type {other} is not written by this engine")),
    })
}

fn struct_array(fields: &Fields, values: &[&Value]) -> Result<StructArray, String> {
    let children = fields
        .iter()
        .map(|f| {
            let column: Vec<&Value> = values
                .iter()
                .map(|v| match v {
                    Value::Map(m) => m.get(f.name()).unwrap_or(NULL),
                    _ => NULL,
                })
                .collect();
            array_of(f.data_type(), &column)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if fields.is_empty() {
        return Ok(StructArray::new_empty_fields(
            values.len(),
            nulls_of(values),
        ));
    }
    StructArray::try_new(fields.clone(), children, nulls_of(values)).map_err(|e| e.to_string())
}
