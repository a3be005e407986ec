//! CSV with a header row: each row becomes a map from the header's names to the row's cells,
//! in header order.
//!
//! Reading, without a schema, each cell is inferred:
//! - empty -> `Null`;
//! - `true`/`false` in any case -> `Bool`;
//! - an optional sign and digits -> `Int` (beyond 64 bits, -2^63 to 2^64-1: `String`, kept
//!   exactly, as pandas keeps them as text);
//! - a decimal number with optional fraction and exponent (`1.5`, `-.5`, `2e10`) -> `Float`;
//! - anything else -> `String`, including `nan`, `inf` and `infinity`, which are kept as text
//!   because they are more often labels than numbers.
//!
//! With an Avro record schema (`cfg.schema`), a column named like a field is typed by the
//! field: `boolean` (`true`/`false`/`1`/`0`, any case), `int`/`long`, `float`/`double` (here
//! `nan`/`inf` are accepted), `string`, `enum` (must be a symbol), `bytes`/`fixed` (base64),
//! arrays, maps and records (JSON text). An empty cell is null where the type allows null, an
//! empty string for `string`, else an error. A cell that does not parse rejects the row,
//! naming the column (kind `Schema`). Columns the schema does not name are inferred.
//!
//! Without a header row, fields are named by the schema's record fields, else `"0"`, `"1"`,
//! ... and the first row fixes the column count.
//!
//! A repeated header name is renamed as pandas does (`a`, `a.1`, `a.2`), so no column is lost.
//! A byte-order mark before the header is skipped. A row with the wrong number of columns is
//! rejected with its line number; reading goes on. A row whose quoted field is never closed
//! (the input ends inside it) is rejected, not read as a value holding the rest of the file.
//!
//! Writing: the header comes from the first record's keys; a later record with other keys is
//! rejected naming the missing and extra keys (the same keys in another order are fine and
//! written in header order). Null is an empty cell and the empty string `""`, so they differ
//! on the way out (on the way back in both read as null). Floats are written shortest
//! round-trip (NaN as `NaN`, infinities as `inf`/`-inf`), bytes as base64, arrays and maps as
//! JSON text. A cell holding the delimiter, the quote or a line break is quoted.

use std::io::{BufRead, BufWriter, Write};

use base64::Engine as _;
use csv_core::ReadRecordResult;
use runtime_core::{Map, ReadItem, RejectionKind, Str, Value};

use crate::avro::{AvroSchema, Compiled, Node};
use crate::framing::fill;
use crate::{
    json, position, record, reject, rejected, CodecConfig, CsvOptions, DecodeContext, EncodeError,
    RecordDecoder, RecordEncoder,
};

struct Column {
    name: String,
    /// The name as each row's key (a name of up to 24 bytes is copied without allocating).
    key: Str,
    /// The schema node typing this column, if the schema names it.
    node: Option<usize>,
}

enum Row {
    End,
    /// `unclosed`: the input ended inside a quoted field.
    Fields {
        line: u64,
        offset: u64,
        unclosed: bool,
    },
    Oversize {
        line: u64,
        offset: u64,
        len: u64,
    },
}

/// A row's quoting, byte by byte: a quote opens a quoted field only at a field's start
/// (elsewhere it is an ordinary character), and `""` inside one is a quote.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

impl Quoting {
    /// The state after `bytes`. Bytes without a quote are told by their last byte alone
    /// (inside a quoted field they change nothing), so most rows are not walked byte by byte.
    fn over(self, bytes: &[u8], delimiter: u8, quote: u8) -> Quoting {
        let Some(&last) = bytes.last() else {
            return self;
        };
        if memchr::memchr(quote, bytes).is_some() {
            return bytes.iter().fold(self, |q, &b| q.next(b, delimiter, quote));
        }
        match self {
            Quoting::Quoted => Quoting::Quoted,
            _ if last == delimiter || last == b'\n' || last == b'\r' => Quoting::FieldStart,
            _ => Quoting::Unquoted,
        }
    }

    fn next(self, b: u8, delimiter: u8, quote: u8) -> Quoting {
        let ends_field = b == delimiter || b == b'\n' || b == b'\r';
        match self {
            Quoting::FieldStart if b == quote => Quoting::Quoted,
            Quoting::Quoted if b == quote => Quoting::QuoteInQuoted,
            Quoting::Quoted => Quoting::Quoted,
            Quoting::QuoteInQuoted if b == quote => Quoting::Quoted,
            _ if ends_field => Quoting::FieldStart,
            _ => Quoting::Unquoted,
        }
    }
}

pub(crate) struct CsvDecoder<R> {
    input: R,
    rdr: csv_core::Reader,
    quote: u8,
    delimiter: u8,
    ctx: DecodeContext,
    has_header: bool,
    schema: Option<AvroSchema>,
    columns: Option<Vec<Column>>,
    out: Vec<u8>,
    ends: Vec<usize>,
    nfields: usize,
    offset: u64,
    record: u64,
    done: bool,
}

impl<R: BufRead> CsvDecoder<R> {
    pub fn new(cfg: &CodecConfig, input: R, ctx: DecodeContext) -> Self {
        let CsvOptions {
            delimiter,
            quote,
            has_header,
        } = cfg.csv;
        let rdr = csv_core::ReaderBuilder::new()
            .delimiter(delimiter)
            .quote(quote)
            .build();
        CsvDecoder {
            input,
            rdr,
            quote,
            delimiter,
            ctx,
            has_header,
            schema: cfg.schema.clone(),
            columns: None,
            out: vec![0; 1024],
            ends: vec![0; 32],
            nfields: 0,
            offset: 0,
            record: 0,
            done: false,
        }
    }

    fn read_row(&mut self) -> std::io::Result<Row> {
        let max = self.ctx.max_record_bytes;
        let line = self.rdr.line();
        let offset = self.offset;
        let (mut nout, mut nend) = (0usize, 0usize);
        let mut oversize = false;
        // Where the row stands with its quotes, as csv_core reads them: when the input ends
        // inside a quoted field, that field never closed.
        let mut quoting = Quoting::FieldStart;
        loop {
            let mut chunk = fill(&mut self.input)?;
            if self.offset == 0 && chunk.starts_with(crate::BOM) {
                self.input.consume(crate::BOM.len());
                self.offset += crate::BOM.len() as u64;
                chunk = fill(&mut self.input)?;
            }
            let at_end = chunk.is_empty();
            let (res, nin, o, e) =
                self.rdr
                    .read_record(chunk, &mut self.out[nout..], &mut self.ends[nend..]);
            quoting = quoting.over(&chunk[..nin], self.delimiter, self.quote);
            self.input.consume(nin);
            self.offset += nin as u64;
            nout += o;
            nend += e;
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    if self.out.len() > max {
                        // Too long to keep: go on reading the row into the same buffer.
                        oversize = true;
                        nout = 0;
                    } else {
                        let n = (self.out.len() * 2).min(max + 1);
                        self.out.resize(n, 0);
                    }
                }
                ReadRecordResult::OutputEndsFull => {
                    // Empty fields take no output bytes, so a row of delimiters is bounded
                    // by its field count: more fields than the limit has bytes is oversize.
                    if oversize || self.ends.len() > max {
                        oversize = true;
                        nout = 0;
                        nend = 0;
                    } else {
                        let n = self.ends.len() * 2;
                        self.ends.resize(n, 0);
                    }
                }
                ReadRecordResult::Record => {
                    let len = self.offset - offset;
                    if oversize || nout > max {
                        return Ok(Row::Oversize { line, offset, len });
                    }
                    self.nfields = nend;
                    let unclosed = at_end && quoting == Quoting::Quoted;
                    return Ok(Row::Fields {
                        line,
                        offset,
                        unclosed,
                    });
                }
                ReadRecordResult::End => return Ok(Row::End),
            }
        }
    }

    fn field(&self, i: usize) -> &[u8] {
        &self.out[self.bounds(i)]
    }

    /// Where field `i` lies in `out`.
    fn bounds(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }

    fn schema_node(&self, name: &str) -> Option<usize> {
        let c = self.schema.as_ref()?.compiled();
        match &c.nodes[c.root] {
            Node::Record(_, fields) => fields.iter().find(|f| f.name == name).map(|f| f.node),
            _ => None,
        }
    }

    fn make_columns(&self, names: Vec<String>) -> Vec<Column> {
        names
            .into_iter()
            .map(|name| Column {
                key: Str::from(name.as_str()),
                node: self.schema_node(&name),
                name,
            })
            .collect()
    }

    fn item(&mut self) -> Result<Option<ReadItem>, runtime_core::Error> {
        loop {
            let row = self.read_row().map_err(|e| self.ctx.io(e))?;
            let (line, offset) = match row {
                Row::End => return Ok(None),
                Row::Oversize { line, offset, len } => {
                    if self.columns.is_none() && self.has_header {
                        return Err(self.ctx.broken(
                            position(1, Some(line), offset),
                            format!("the header row of {len} bytes exceeds the record size limit"),
                        ));
                    }
                    self.record += 1;
                    return Ok(Some(
                        self.ctx
                            .oversize(position(self.record, Some(line), offset), len),
                    ));
                }
                Row::Fields {
                    line,
                    offset,
                    unclosed,
                } => {
                    if unclosed {
                        const WHY: &str =
                            "a quoted field is never closed: the input ends inside it";
                        if self.columns.is_none() && self.has_header {
                            return Err(self.ctx.broken(
                                position(1, Some(line), offset),
                                format!("header row: {WHY}"),
                            ));
                        }
                        self.record += 1;
                        return Ok(Some(reject(
                            RejectionKind::Encoding,
                            position(self.record, Some(line), offset),
                            WHY.to_owned(),
                        )));
                    }
                    (line, offset)
                }
            };
            if self.columns.is_none() {
                let names = if self.has_header {
                    let mut names = Vec::with_capacity(self.nfields);
                    for i in 0..self.nfields {
                        match std::str::from_utf8(self.field(i)) {
                            Ok(s) => names.push(s.to_owned()),
                            Err(_) => {
                                return Err(self.ctx.broken(
                                    position(1, Some(line), offset),
                                    format!("header column {} is not valid UTF-8", i + 1),
                                ))
                            }
                        }
                    }
                    dedupe(&mut names);
                    names
                } else {
                    match self
                        .schema
                        .as_ref()
                        .and_then(AvroSchema::record_field_names)
                    {
                        Some(names) => names,
                        None => (0..self.nfields).map(|i| i.to_string()).collect(),
                    }
                };
                self.columns = Some(self.make_columns(names));
                if self.has_header {
                    continue;
                }
            }
            self.record += 1;
            let pos = position(self.record, Some(line), offset);
            return Ok(Some(match self.convert_row() {
                Ok(v) => record(v, pos),
                Err((kind, why)) => reject(kind, pos, why),
            }));
        }
    }

    fn convert_row(&self) -> Result<Value, (RejectionKind, String)> {
        let Some(columns) = &self.columns else {
            return Err((RejectionKind::Encoding, "no header".into()));
        };
        if self.nfields != columns.len() {
            return Err((
                RejectionKind::Encoding,
                format!(
                    "row has {} columns, the header has {}",
                    self.nfields,
                    columns.len()
                ),
            ));
        }
        let compiled = self.schema.as_ref().map(AvroSchema::compiled);
        // The row's cells are checked as UTF-8 together, then cut at their ends; a cell is
        // checked alone where that fails (the row is not UTF-8, or the cut is not at a
        // character's start), so the first cell that is not names its column as before.
        let row_end = self.nfields.checked_sub(1).map_or(0, |i| self.ends[i]);
        let row = std::str::from_utf8(&self.out[..row_end]).ok();
        // The entries are made first, keys copied and values null, and each value is then
        // put in its place (see the Avro datum walker's `read_into`).
        let mut entries: Vec<(Value, Value)> = columns
            .iter()
            .map(|c| (Value::String(c.key.clone()), Value::Null))
            .collect();
        for (i, ((_, v), col)) in entries.iter_mut().zip(columns).enumerate() {
            let at = self.bounds(i);
            let cell = match row.and_then(|r| r.get(at.clone())) {
                Some(cell) => cell,
                None => std::str::from_utf8(&self.out[at.clone()]).map_err(|e| {
                    (
                        RejectionKind::Encoding,
                        format!(
                            "column '{}': invalid UTF-8 at byte {} of the cell",
                            col.name,
                            e.valid_up_to()
                        ),
                    )
                })?,
            };
            *v = match (compiled, col.node) {
                (Some(c), Some(node)) => typed(c, node, cell).map_err(|why| {
                    (
                        RejectionKind::Schema,
                        format!("column '{}': {why}", col.name),
                    )
                })?,
                _ => infer(cell),
            };
        }
        Ok(Value::Map(Map::from(entries)))
    }
}

impl<R: BufRead + Send> RecordDecoder for CsvDecoder<R> {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        if self.done {
            return None;
        }
        let item = self.item();
        crate::fuse(&mut self.done, item)
    }
}

/// Makes repeated header names unique the way pandas' `read_csv` does: the second `a` becomes
/// `a.1`, the third `a.2` (skipping names the header already has), so no column is lost.
fn dedupe(names: &mut [String]) {
    let mut seen: std::collections::HashSet<String> = names.iter().cloned().collect();
    let mut first: std::collections::HashSet<String> = std::collections::HashSet::new();
    for name in names.iter_mut() {
        if first.insert(name.clone()) {
            continue;
        }
        let mut n = 1;
        let renamed = loop {
            let candidate = format!("{name}.{n}");
            if !seen.contains(&candidate) {
                break candidate;
            }
            n += 1;
        };
        seen.insert(renamed.clone());
        *name = renamed;
    }
}

/// The inference rule of the module docs.
pub fn infer(cell: &str) -> Value {
    let text = || Str::from(cell);
    if cell.is_empty() {
        return Value::Null;
    }
    if cell.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if cell.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    match number_kind(cell.as_bytes()) {
        // Beyond 64 bits no model could receive the integer: kept exactly, as text.
        Some(true) => match cell.parse::<i64>() {
            Ok(i) => Value::Int(i128::from(i)),
            Err(_) => match cell.parse::<u64>() {
                Ok(u) => Value::Int(i128::from(u)),
                Err(_) => Value::String(text()),
            },
        },
        Some(false) => cell
            .parse::<f64>()
            .map(Value::Float)
            .unwrap_or_else(|_| Value::String(text())),
        None => Value::String(text()),
    }
}

/// `Some(true)` for an integer, `Some(false)` for a decimal float, `None` otherwise. Checked by
/// hand because Rust's float parser also takes `inf` and `nan`.
fn number_kind(b: &[u8]) -> Option<bool> {
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let s = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - s
    };
    let int_digits = digits(&mut i);
    if i == b.len() {
        return (int_digits > 0).then_some(true);
    }
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = digits(&mut i);
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    (i == b.len()).then_some(false)
}

/// A cell read as the schema's type for its column.
fn typed(c: &Compiled, node: usize, cell: &str) -> Result<Value, String> {
    let n = &c.nodes[node];
    let bad = || format!("'{cell}' is not a valid {}", n.type_name());
    Ok(match n {
        Node::Logical(_, inner) => return typed(c, *inner, cell),
        Node::Union(branches) => {
            let nullable = branches.iter().any(|&b| matches!(c.nodes[b], Node::Null));
            if cell.is_empty() && nullable {
                return Ok(Value::Null);
            }
            let mut last = None;
            for &b in branches {
                if matches!(c.nodes[b], Node::Null) {
                    continue;
                }
                match typed(c, b, cell) {
                    Ok(v) => return Ok(v),
                    Err(e) => last = Some(e),
                }
            }
            return Err(last.unwrap_or_else(bad));
        }
        Node::Null if cell.is_empty() => Value::Null,
        Node::String => Value::String(Str::from(cell)),
        _ if cell.is_empty() => return Err(format!("empty cell for a non-null {}", n.type_name())),
        Node::Null => return Err(bad()),
        Node::Boolean => match cell.to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(bad()),
        },
        Node::Int => Value::Int(i128::from(cell.trim().parse::<i32>().map_err(|_| bad())?)),
        Node::Long => Value::Int(i128::from(cell.trim().parse::<i64>().map_err(|_| bad())?)),
        Node::Float | Node::Double => Value::Float(cell.trim().parse::<f64>().map_err(|_| bad())?),
        Node::Enum(_, symbols) => {
            if !symbols.iter().any(|s| s == cell) {
                return Err(bad());
            }
            Value::String(Str::from(cell))
        }
        Node::Bytes | Node::Fixed(..) => Value::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(cell)
                .map_err(|e| format!("'{cell}' is not base64: {e}"))?,
        ),
        Node::Array(_) | Node::Map(_) | Node::Record(..) => {
            json::decode(cell.as_bytes()).map_err(|e| format!("{}: {e}", n.type_name()))?
        }
    })
}

/// The header and the rendering of rows, shared by the stream encoder and `encode_message`.
struct RowWriter {
    delimiter: u8,
    quote: u8,
    has_header: bool,
    header: Option<Vec<Value>>,
    cell: Vec<u8>,
}

impl RowWriter {
    fn new(opts: &CsvOptions) -> Self {
        RowWriter {
            delimiter: opts.delimiter,
            quote: opts.quote,
            has_header: opts.has_header,
            header: None,
            cell: Vec::new(),
        }
    }

    /// Appends the header (first time) and the row for `value` to `out`; on error `out` is
    /// unchanged.
    fn render(&mut self, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        let r = self.render_inner(value, out);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    fn render_inner(&mut self, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        let Value::Map(map) = value else {
            return Err(rejected(format!(
                "CSV output takes records (maps), found {}",
                value.kind()
            )));
        };
        let header = match self.header.take() {
            Some(h) => h,
            None => {
                let keys: Vec<Value> = map.iter().map(|(k, _)| k.clone()).collect();
                if self.has_header {
                    let mut line = Vec::new();
                    for (i, k) in keys.iter().enumerate() {
                        if i > 0 {
                            line.push(self.delimiter);
                        }
                        if matches!(k, Value::Array(_) | Value::Map(_) | Value::Null) {
                            return Err(rejected(format!(
                                "a key of type {} cannot name a CSV column",
                                k.kind()
                            )));
                        }
                        self.write_cell(k, &mut line)?;
                    }
                    line.push(b'\n');
                    // The header goes out only with a first row that renders.
                    let row_start = out.len();
                    out.extend_from_slice(&line);
                    if let Err(e) = self.write_row(map, &keys, out) {
                        out.truncate(row_start);
                        return Err(e);
                    }
                } else {
                    self.write_row(map, &keys, out)?;
                }
                self.header = Some(keys);
                return Ok(());
            }
        };
        let r = self.write_row(map, &header, out);
        self.header = Some(header);
        r
    }

    fn write_row(&mut self, map: &Map, header: &[Value], out: &mut Vec<u8>) -> Result<(), String> {
        let entries = map.entries();
        let same = entries.len() == header.len()
            && header.iter().all(|h| entries.iter().any(|(k, _)| k == h));
        if !same {
            let missing: Vec<String> = header
                .iter()
                .filter(|h| !entries.iter().any(|(k, _)| k == *h))
                .map(ToString::to_string)
                .collect();
            let extra: Vec<String> = entries
                .iter()
                .filter(|(k, _)| !header.contains(k))
                .map(|(k, _)| k.to_string())
                .collect();
            return Err(rejected(format!(
                "record keys differ from the CSV header: missing [{}], extra [{}]",
                missing.join(", "),
                extra.join(", ")
            )));
        }
        for (i, h) in header.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            // Records usually keep the header's order: look there first.
            let v = match entries.get(i) {
                Some((k, v)) if k == h => v,
                _ => entries
                    .iter()
                    .find(|(k, _)| k == h)
                    .map(|(_, v)| v)
                    .unwrap_or(&Value::Null),
            };
            self.write_cell(v, out)?;
        }
        out.push(b'\n');
        Ok(())
    }

    fn write_cell(&mut self, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        self.cell.clear();
        match v {
            Value::Null => return Ok(()),
            Value::Bool(b) => self
                .cell
                .extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => self
                .cell
                .extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Value::Float(x) if x.is_nan() => self.cell.extend_from_slice(b"NaN"),
            Value::Float(x) if x.is_infinite() => {
                self.cell
                    .extend_from_slice(if *x > 0.0 { b"inf" } else { b"-inf" })
            }
            Value::Float(x) => self
                .cell
                .extend_from_slice(ryu::Buffer::new().format_finite(*x).as_bytes()),
            Value::String(s) if s.is_empty() => {
                out.push(self.quote);
                out.push(self.quote);
                return Ok(());
            }
            Value::String(s) => self.cell.extend_from_slice(s.as_bytes()),
            Value::Bytes(b) => self.cell.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(b)
                    .as_bytes(),
            ),
            Value::Array(_) | Value::Map(_) => json::write_value(&mut self.cell, v)?,
        }
        let (d, q) = (self.delimiter, self.quote);
        let needs_quotes = self
            .cell
            .iter()
            .any(|&b| b == d || b == q || b == b'\n' || b == b'\r');
        if needs_quotes {
            out.push(q);
            for &b in &self.cell {
                if b == q {
                    out.push(q);
                }
                out.push(b);
            }
            out.push(q);
        } else {
            out.extend_from_slice(&self.cell);
        }
        Ok(())
    }
}

pub(crate) struct CsvEncoder<W: Write> {
    out: BufWriter<W>,
    rows: RowWriter,
    scratch: Vec<u8>,
}

impl<W: Write> CsvEncoder<W> {
    pub fn new(cfg: &CodecConfig, out: W) -> Self {
        CsvEncoder {
            out: BufWriter::with_capacity(64 * 1024, out),
            rows: RowWriter::new(&cfg.csv),
            scratch: Vec::with_capacity(256),
        }
    }
}

impl<W: Write + Send> RecordEncoder for CsvEncoder<W> {
    fn write(&mut self, value: &Value) -> Result<(), EncodeError> {
        self.scratch.clear();
        self.rows
            .render(value, &mut self.scratch)
            .map_err(EncodeError::Rejected)?;
        self.out.write_all(&self.scratch)?;
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A message holding the header (if the dialect has one) and exactly one row.
pub(crate) fn decode_message(cfg: &CodecConfig, bytes: &[u8]) -> Result<Value, String> {
    let ctx = DecodeContext {
        endpoint: "message".into(),
        max_record_bytes: cfg.max_record_bytes,
    };
    let mut dec = CsvDecoder::new(cfg, bytes, ctx);
    let first = match dec.next_item() {
        None => return Err("the message holds no CSV row".into()),
        Some(Err(e)) => return Err(e.to_string()),
        Some(Ok(ReadItem::Rejected(r))) => return Err(r.reason),
        Some(Ok(ReadItem::Record(r))) => r.value,
    };
    match dec.next_item() {
        None => Ok(first),
        Some(_) => Err("the message holds more than one CSV row".into()),
    }
}

/// A message holding the header (if the dialect has one) and any number of rows: one
/// record per row, in order. The first row that does not decode fails the message, named
/// by its number.
pub(crate) fn decode_message_rows(cfg: &CodecConfig, bytes: &[u8]) -> Result<Vec<Value>, String> {
    let ctx = DecodeContext {
        endpoint: "message".into(),
        max_record_bytes: cfg.max_record_bytes,
    };
    let mut dec = CsvDecoder::new(cfg, bytes, ctx);
    let mut rows = Vec::new();
    while let Some(item) = dec.next_item() {
        match item {
            Err(e) => return Err(e.to_string()),
            Ok(ReadItem::Rejected(r)) => {
                return Err(format!("row {}: {}", rows.len() + 1, r.reason))
            }
            Ok(ReadItem::Record(r)) => rows.push(r.value),
        }
    }
    Ok(rows)
}

pub(crate) fn encode_message(
    cfg: &CodecConfig,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    RowWriter::new(&cfg.csv).render(value, out)
}

#[cfg(test)]
mod quoting_tests {
    use super::Quoting;

    // Every short row over the bytes that matter, from every state: the shortcut for bytes
    // without a quote ends where the byte-by-byte walk ends.
    #[test]
    fn a_run_of_bytes_ends_in_the_state_the_walk_ends_in() {
        let alphabet = [b'a', b',', b'"', b'\n', b'\r'];
        let states = [
            Quoting::FieldStart,
            Quoting::Unquoted,
            Quoting::Quoted,
            Quoting::QuoteInQuoted,
        ];
        let mut rows: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..5 {
            let longer: Vec<Vec<u8>> = rows
                .iter()
                .flat_map(|r| {
                    alphabet.iter().map(move |&b| {
                        let mut r = r.clone();
                        r.push(b);
                        r
                    })
                })
                .collect();
            rows.extend(longer);
        }
        for row in &rows {
            for &start in &states {
                let walked = row.iter().fold(start, |q, &b| q.next(b, b',', b'"'));
                assert!(
                    start.over(row, b',', b'"') == walked,
                    "{:?}",
                    String::from_utf8_lossy(row)
                );
            }
        }
    }
}

#[cfg(test)]
mod row_tests {
    use runtime_core::{ReadItem, Value};

    use crate::{CodecConfig, Encoding};

    fn read(input: &'static [u8]) -> Vec<Result<Value, String>> {
        let cfg = CodecConfig::new(Encoding::Csv);
        let mut dec = crate::decoder(&cfg, input, "t").expect("decoder builds");
        let mut items = Vec::new();
        while dec.next_batch(16, &mut items).expect("reads") {}
        items
            .into_iter()
            .map(|i| match i {
                ReadItem::Record(r) => Ok(r.value),
                ReadItem::Rejected(r) => Err(r.reason),
            })
            .collect()
    }

    // Cells are checked as UTF-8 a row at a time: a row whose bytes are UTF-8 only when its
    // cells are put together (a character cut by the delimiter) is still refused, naming the
    // first cell that is not, as a row that is not UTF-8 at all is.
    #[test]
    fn a_cell_that_is_not_utf8_names_its_column() {
        let got = read(b"a,b\n\xc3,\xa9\nx\xff,y\n\xc3\xa9,\xc3\xbc\n");
        assert_eq!(got.len(), 3);
        let why = got[0].as_ref().expect_err("cut character");
        assert!(why.contains("column 'a': invalid UTF-8 at byte 0"), "{why}");
        let why = got[1].as_ref().expect_err("bad byte");
        assert!(why.contains("column 'a': invalid UTF-8 at byte 1"), "{why}");
        let row = got[2].as_ref().expect("UTF-8 row");
        assert_eq!(row.get("a"), Some(&Value::from("\u{e9}")));
        assert_eq!(row.get("b"), Some(&Value::from("\u{fc}")));
    }

    // Texts read the same whatever their length and script, as do the keys.
    #[test]
    fn texts_and_keys_read_as_written() {
        let got = read(
            "k,a column name longer than twenty-four bytes,\u{e9}\nname7,exactly twenty-four byte,na\u{ef}ve\nx,twenty-five bytes long!!!,\n"
                .as_bytes(),
        );
        let want = [
            ["name7", "exactly twenty-four byte", "na\u{ef}ve"],
            ["x", "twenty-five bytes long!!!", ""],
        ];
        let keys = ["k", "a column name longer than twenty-four bytes", "\u{e9}"];
        for (row, want) in got.iter().zip(want) {
            let Ok(Value::Map(m)) = row else {
                panic!("{row:?}")
            };
            let entries: Vec<(Value, Value)> = m.entries().to_vec();
            for ((k, v), (key, text)) in entries.iter().zip(keys.iter().zip(want)) {
                assert_eq!(k, &Value::from(*key));
                let want = if text.is_empty() {
                    Value::Null
                } else {
                    Value::from(text)
                };
                assert_eq!(v, &want);
            }
        }
    }
}
