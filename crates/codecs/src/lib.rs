//! Encodings and framings: bytes become records ([`Value`]s) and records become bytes again.
//!
//! A codec is a *framing* (where one record's bytes end) plus an *encoding* (what the bytes of
//! one record mean). Every [`Encoding`] names its default [`Framing`]; a pair that makes no
//! sense (CSV cut into fixed-size chunks, JSON in an Avro container) is refused by
//! [`decoder`]/[`encoder`] with a [`CodecError::Config`] naming the field.
//!
//! | encoding | default framing | other framings |
//! | --- | --- | --- |
//! | `json` | `Lines` | `Delimited`, `Message` |
//! | `csv` | `Csv` (header row, quote-aware) | `Message` |
//! | `avro-binary` | `Ocf` (object container file) | `AvroDatums` (needs a schema), `Message` |
//! | `msgpack` | `MsgPackStream` | `Message` |
//! | `parquet` | `ParquetFile` (the file frames its own rows) | none |
//! | `utf-8` | `Lines` | `Delimited`, `Message` |
//! | raw (`null`) | `Lines` | `Delimited`, `Fixed`, `Message` |
//!
//! Rules (docs/codecs.md says the same at more length):
//! - **Positions.** Every record and every rejection gets a [`Position`]: `record` counts from 1
//!   and counts rejected records too; `line` is filled for line-framed input (JSON, UTF-8, raw
//!   lines, CSV); `byte_offset` is the offset of the record's first byte (for Avro container
//!   files, of its block).
//! - **Bad input** is a [`ReadItem::Rejected`] when the framing can find the next record (a
//!   broken JSON line, bad UTF-8, a CSV row with the wrong column count, an oversized record,
//!   an Avro block whose sync marker still lines up), and an
//!   [`Error::StreamBroken`](runtime_core::Error::StreamBroken) when it cannot (a truncated
//!   Avro block, a malformed MessagePack value). After a broken stream the decoder is done.
//! - **Oversized records** (`max_record_bytes`) are skipped without being buffered whole.
//! - **JSON.** One value per line; a line holding an array is *one* record; blank lines are not
//!   records; a leading byte-order mark is skipped; an integer beyond 64 bits rejects its
//!   record (never rounded to a float); [`is_json_document`] tells a whole-file document
//!   (read with [`Framing::Message`]) from JSON lines. Decoding goes straight into [`Value`]
//!   through its serde impl. Output is strict
//!   JSON: NaN and ±infinity are rejected; bytes are written as standard base64 strings;
//!   non-string map keys are written as strings the way Python's `json.dumps` does (ints,
//!   floats, `true`/`false`/`null`, bytes as base64); array and map keys are rejected.
//!   Integers beyond 64 bits are written as their decimal digits.
//! - **UTF-8.** Each line is a [`Value::String`] without its `\n` (or `\r\n`); an empty line is
//!   an empty string. Invalid UTF-8 rejects the line, naming the byte offset.
//! - **Raw.** Each frame is a [`Value::Bytes`], kept byte for byte (no `\r` stripping). Output
//!   takes bytes and strings (as UTF-8).
//! - **CSV.** See [`csv`] for the cell inference rule and typed reading with a
//!   schema.
//! - **Avro.** Values map losslessly both ways; see [`avro`].
//! - **MessagePack.** A stream of concatenated values; bin is bytes, str is string, any key
//!   type; see [`msgpack`].
//! - **Parquet.** Rows are records (maps of column name to value), a row's number its
//!   position. Read through [`parquet_decoder`] from a [`RandomAccess`] input (the footer is
//!   at the end), a row group at a time; [`decoder`] refuses it. Written as a stream, a row
//!   group every [`ROW_GROUP_ROWS`] records, the footer on [`RecordEncoder::close`].
//! - **Streaming.** No decoder holds the whole input, except with [`Framing::Message`]
//!   (and a Parquet decoder holds one row group).
//!
//! A stream is read through a [`decoder`] (written through an [`encoder`]); a message
//! transport's body is one record ([`decode_message`], [`encode_message`]):
//!
//! ```
//! use codecs::{decode_message, decoder, encode_message, CodecConfig, Encoding};
//! use runtime_core::ReadItem;
//!
//! // CSV with a header row: cells are typed by inference, a bad row is rejected in place.
//! let input = "id,amount\n1,10.5\n2\n3,7\n";
//! let mut csv = decoder(&CodecConfig::new(Encoding::Csv), input.as_bytes(), "example")?;
//! let mut items = Vec::new();
//! let more = csv.next_batch(100, &mut items)?;
//! assert!(!more, "the input is exhausted");
//! assert_eq!(items.len(), 3);
//! let ReadItem::Record(first) = &items[0] else { panic!("the first row is a record") };
//! let ReadItem::Rejected(bad) = &items[1] else { panic!("a row lacking a cell is rejected") };
//! assert_eq!(bad.position.line, Some(3));
//!
//! // The same record as a JSON message, and back.
//! let json = CodecConfig::new(Encoding::Json);
//! let bytes = encode_message(&json, &first.value)?;
//! assert_eq!(bytes, br#"{"id":1,"amount":10.5}"#);
//! assert_eq!(decode_message(&json, &bytes)?, first.value);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::io::{BufRead, Write};
use std::str::FromStr;

use runtime_core::{Position, ReadItem, Record, Rejection, RejectionKind, Value};

pub mod avro;
pub mod csv;
mod framing;
pub mod json;
pub mod msgpack;
mod parquet_codec;
mod text;

pub use avro::{AvroSchema, OcfCodec};
pub use parquet_codec::{RandomAccess, READ_BATCH_ROWS, ROW_GROUP_ROWS};

/// The UTF-8 byte-order mark, skipped at the start of JSON and CSV input.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The default limit of one record's size in bytes (16 MiB).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// What the bytes of one record mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Json,
    Csv,
    AvroBinary,
    MsgPack,
    /// Apache Parquet files: rows are records. Read only from random-access inputs
    /// ([`parquet_decoder`]).
    Parquet,
    Utf8,
    /// Raw bytes (a stream descriptor's `"Encoding": null`).
    Raw,
}

impl Encoding {
    /// The name used in stream descriptors.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Csv => "csv",
            Encoding::AvroBinary => "avro-binary",
            Encoding::MsgPack => "msgpack",
            Encoding::Parquet => "parquet",
            Encoding::Utf8 => "utf-8",
            Encoding::Raw => "null",
        }
    }

    /// The framing used when a config names none.
    pub fn default_framing(self) -> Framing {
        match self {
            Encoding::Json | Encoding::Utf8 | Encoding::Raw => Framing::Lines,
            Encoding::Csv => Framing::Csv,
            Encoding::AvroBinary => Framing::Ocf,
            Encoding::MsgPack => Framing::MsgPackStream,
            Encoding::Parquet => Framing::ParquetFile,
        }
    }

    /// Guesses the encoding from a file extension (without the dot, any case); unknown
    /// extensions are raw bytes. Inputs should use [`Encoding::of_extension`], which says
    /// when it does not know.
    pub fn from_extension(ext: &str) -> Encoding {
        Encoding::of_extension(ext).unwrap_or(Encoding::Raw)
    }

    /// The encoding a file extension (without the dot, any case) names, if it names one:
    /// `json` `jsonl` `ndjson` `jsons` (JSON lines), `csv`, `avro`, `msgpack` `mpk`,
    /// `parquet`, `txt` `text` (UTF-8 lines).
    pub fn of_extension(ext: &str) -> Option<Encoding> {
        let ext = ext.to_ascii_lowercase();
        Self::EXTENSIONS
            .iter()
            .find(|(e, _)| *e == ext)
            .map(|&(_, encoding)| encoding)
    }

    /// File extensions and the encoding each names, in the order messages list them.
    pub const EXTENSIONS: &'static [(&'static str, Encoding)] = &[
        ("json", Encoding::Json),
        ("jsonl", Encoding::Json),
        ("ndjson", Encoding::Json),
        ("jsons", Encoding::Json),
        ("csv", Encoding::Csv),
        ("avro", Encoding::AvroBinary),
        ("msgpack", Encoding::MsgPack),
        ("mpk", Encoding::MsgPack),
        ("parquet", Encoding::Parquet),
        ("txt", Encoding::Utf8),
        ("text", Encoding::Utf8),
    ];

    /// The extensions [`Encoding::of_extension`] knows, for messages: `.json .jsonl ...
    /// (json), .csv (csv), ...`.
    pub fn known_extensions() -> String {
        let mut groups: Vec<(Encoding, Vec<String>)> = Vec::new();
        for &(ext, encoding) in Self::EXTENSIONS {
            match groups.iter_mut().find(|(e, _)| *e == encoding) {
                Some((_, exts)) => exts.push(format!(".{ext}")),
                None => groups.push((encoding, vec![format!(".{ext}")])),
            }
        }
        groups
            .iter()
            .map(|(e, exts)| format!("{} ({})", exts.join(" "), e.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether `framing` makes sense for this encoding.
    pub fn accepts(self, framing: &Framing) -> bool {
        use Framing as F;
        matches!(
            (self, framing),
            (Encoding::Parquet, F::ParquetFile)
                | (
                    Encoding::Json
                        | Encoding::Csv
                        | Encoding::AvroBinary
                        | Encoding::MsgPack
                        | Encoding::Utf8
                        | Encoding::Raw,
                    F::Message
                )
                | (
                    Encoding::Json | Encoding::Utf8 | Encoding::Raw,
                    F::Lines | F::Delimited { .. }
                )
                | (Encoding::Raw, F::Fixed { .. })
                | (Encoding::Csv, F::Csv)
                | (Encoding::AvroBinary, F::Ocf | F::AvroDatums)
                | (Encoding::MsgPack, F::MsgPackStream)
        )
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Encoding {
    type Err = CodecError;

    /// Stream descriptor names, case-insensitive: `json`, `csv`, `avro-binary` (or `avro`),
    /// `msgpack`, `parquet`, `utf-8` (or `utf8`), and `null`/`raw`/empty for raw bytes.
    fn from_str(s: &str) -> Result<Self, CodecError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Encoding::Json),
            "csv" => Ok(Encoding::Csv),
            "avro-binary" | "avro" => Ok(Encoding::AvroBinary),
            "msgpack" => Ok(Encoding::MsgPack),
            "parquet" => Ok(Encoding::Parquet),
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "null" | "raw" | "" => Ok(Encoding::Raw),
            other => Err(CodecError::config(
                "encoding",
                format!(
                    "unknown encoding '{other}' (expected json, csv, avro-binary, msgpack, parquet, utf-8 or null)"
                ),
            )),
        }
    }
}

/// Where one record's bytes end.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// One record per line (`\n`; a `\r` before it is dropped for JSON and UTF-8).
    Lines,
    /// Records end with `separator` (the last one may lack it).
    Delimited { separator: Vec<u8> },
    /// Records of exactly `size` bytes (raw only).
    Fixed { size: usize },
    /// CSV rows with a header, quote-aware (a quoted field may hold newlines).
    Csv,
    /// An Avro object container file.
    Ocf,
    /// Avro binary datums back to back, read with the config's schema.
    AvroDatums,
    /// Concatenated MessagePack values.
    MsgPackStream,
    /// A Parquet file, which says where its rows are in its footer (Parquet only).
    ParquetFile,
    /// The whole input is one record.
    Message,
}

impl Framing {
    /// The name used in stream descriptors' `Envelope`.
    pub fn name(&self) -> &'static str {
        match self {
            Framing::Lines | Framing::Delimited { .. } => "delimited",
            Framing::Fixed { .. } => "fixed",
            Framing::Csv => "delimited-csv",
            Framing::Ocf => "ocf-block",
            Framing::AvroDatums => "avro-datums",
            Framing::MsgPackStream => "msgpack-stream",
            Framing::ParquetFile => "parquet-file",
            Framing::Message => "message",
        }
    }

    /// Reads a stream descriptor's `Envelope` (`delimited` with `Separator`, `fixed` with
    /// `Size`, `ocf-block`, `delimited-csv`; case-insensitive). `None` or `"null"` gives `None`,
    /// meaning the encoding's default; the caller decides when "no envelope" means
    /// [`Framing::Message`] (message transports) or [`Framing::AvroDatums`].
    pub fn from_envelope(
        name: Option<&str>,
        separator: Option<&str>,
        size: Option<usize>,
    ) -> Result<Option<Framing>, CodecError> {
        let Some(name) = name else { return Ok(None) };
        match name.trim().to_ascii_lowercase().as_str() {
            "null" | "" => Ok(None),
            "delimited" => match separator {
                None | Some("\n") => Ok(Some(Framing::Lines)),
                Some("") => Err(CodecError::config(
                    "separator",
                    "a delimited envelope needs a non-empty separator",
                )),
                Some(sep) => Ok(Some(Framing::Delimited {
                    separator: sep.as_bytes().to_vec(),
                })),
            },
            "fixed" => match size {
                Some(size) if size > 0 => Ok(Some(Framing::Fixed { size })),
                _ => Err(CodecError::config(
                    "size",
                    "a fixed envelope needs a size of at least 1 byte",
                )),
            },
            "ocf-block" | "ocf" => Ok(Some(Framing::Ocf)),
            "delimited-csv" => Ok(Some(Framing::Csv)),
            other => Err(CodecError::config(
                "envelope",
                format!(
                    "unknown envelope '{other}' (expected delimited, fixed, ocf-block, delimited-csv or null)"
                ),
            )),
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// CSV dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    /// Whether the first row names the fields (read) / a header row is written (write).
    pub has_header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            quote: b'"',
            has_header: true,
        }
    }
}

/// Everything a codec needs, built once per endpoint.
#[derive(Clone, Debug)]
pub struct CodecConfig {
    pub encoding: Encoding,
    /// `None`: the encoding's default framing.
    pub framing: Option<Framing>,
    /// An Avro schema: required to write Avro and to read Avro datums; types CSV cells.
    pub schema: Option<AvroSchema>,
    pub csv: CsvOptions,
    /// Records larger than this are rejected (kind `Size`).
    pub max_record_bytes: usize,
    /// Block compression of written Avro container files.
    pub ocf_codec: OcfCodec,
}

impl Default for CodecConfig {
    fn default() -> Self {
        CodecConfig::new(Encoding::Json)
    }
}

impl CodecConfig {
    pub fn new(encoding: Encoding) -> Self {
        CodecConfig {
            encoding,
            framing: None,
            schema: None,
            csv: CsvOptions::default(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            ocf_codec: OcfCodec::Null,
        }
    }

    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = Some(framing);
        self
    }

    pub fn with_schema(mut self, schema: AvroSchema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The framing in force, after checking that it suits the encoding and that the rest of
    /// the config can work.
    pub fn resolved_framing(&self) -> Result<Framing, CodecError> {
        let framing = self
            .framing
            .clone()
            .unwrap_or_else(|| self.encoding.default_framing());
        if !self.encoding.accepts(&framing) {
            return Err(CodecError::config(
                "framing",
                format!(
                    "framing '{framing}' ({framing:?}) cannot carry encoding '{}'",
                    self.encoding
                ),
            ));
        }
        if self.max_record_bytes == 0 {
            return Err(CodecError::config("max_record_bytes", "must be at least 1"));
        }
        match &framing {
            Framing::Delimited { separator } if separator.is_empty() => {
                return Err(CodecError::config(
                    "separator",
                    "a delimited framing needs a non-empty separator",
                ))
            }
            Framing::Fixed { size } if *size == 0 || *size > self.max_record_bytes => {
                return Err(CodecError::config(
                    "size",
                    format!(
                        "fixed size {size} must be between 1 and max_record_bytes ({})",
                        self.max_record_bytes
                    ),
                ))
            }
            Framing::AvroDatums if self.schema.is_none() => {
                return Err(CodecError::config(
                    "schema",
                    "reading or writing Avro datums without a container needs a schema",
                ))
            }
            Framing::Message if self.encoding == Encoding::AvroBinary && self.schema.is_none() => {
                return Err(CodecError::config(
                    "schema",
                    "an Avro message needs a schema",
                ))
            }
            _ => {}
        }
        if self.encoding == Encoding::Csv {
            let c = &self.csv;
            if c.delimiter == c.quote {
                return Err(CodecError::config(
                    "csv.delimiter",
                    "delimiter and quote character must differ",
                ));
            }
            if matches!(c.delimiter, b'\n' | b'\r') || matches!(c.quote, b'\n' | b'\r') {
                return Err(CodecError::config(
                    "csv.delimiter",
                    "delimiter and quote character cannot be line breaks",
                ));
            }
        }
        Ok(framing)
    }
}

/// The one error of this crate: a codec that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A config that cannot work, naming the field.
    #[error("invalid codec config: field '{field}': {reason}")]
    Config { field: &'static str, reason: String },
    /// An Avro schema that cannot be parsed.
    #[error("invalid Avro schema: {0}")]
    Schema(String),
    /// A whole message ([`decode_message`]) that is not a record of its encoding: the
    /// reason, as the rejection of that record shows it.
    #[error("{0}")]
    Decode(String),
    /// A whole message larger than the config's `max_record_bytes`, refused unread.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

impl CodecError {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        CodecError::Config {
            field,
            reason: reason.into(),
        }
    }
}

/// Why one value was not written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// This value cannot be encoded; nothing was written for it and the encoder can go on.
    /// The field is the reason alone; the message says it is a rejection.
    #[error("output record rejected by encoding: {0}")]
    Rejected(String),
    /// The destination failed.
    #[error("writing failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The reason of an output rejection ([`EncodeError::Rejected`]).
pub(crate) fn rejected(reason: impl fmt::Display) -> String {
    reason.to_string()
}

/// A decoder's next item under [`RecordDecoder::next_item`]'s contract: once the input has
/// ended or failed, `done` is set and nothing more comes.
pub(crate) fn fuse(
    done: &mut bool,
    item: Result<Option<ReadItem>, runtime_core::Error>,
) -> Option<Result<ReadItem, runtime_core::Error>> {
    match item {
        Ok(Some(item)) => Some(Ok(item)),
        Ok(None) => {
            *done = true;
            None
        }
        Err(e) => {
            *done = true;
            Some(Err(e))
        }
    }
}

/// Reads records from a byte stream.
pub trait RecordDecoder: Send {
    /// The next record, or a rejection that takes a record's place; `None` at end of input.
    /// `Err(StreamBroken)` when reading cannot go on (it says where), or an I/O error; after
    /// an error the decoder returns `None`.
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>>;

    /// Appends up to `max` items to `out`; `Ok(false)` when the input is exhausted.
    fn next_batch(
        &mut self,
        max: usize,
        out: &mut Vec<ReadItem>,
    ) -> Result<bool, runtime_core::Error> {
        for _ in 0..max {
            match self.next_item() {
                None => return Ok(false),
                Some(Ok(item)) => out.push(item),
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Writes records to a byte stream.
pub trait RecordEncoder: Send {
    /// `Err(EncodeError::Rejected)`: this value cannot be encoded, nothing was written for it,
    /// go on. `Err(EncodeError::Io)`: the destination failed.
    fn write(&mut self, value: &Value) -> Result<(), EncodeError>;

    /// Writes what is still buffered (an Avro block, ...) and flushes. It may be called
    /// more than once, and writing may go on after it: a sink flushing mid-stream calls it.
    /// (Parquet: the buffered records become a row group; the file is readable only once
    /// closed.)
    fn finish(&mut self) -> std::io::Result<()>;

    /// Ends the output: [`finish`](Self::finish), then whatever closes the format (a
    /// Parquet file's footer). A sink calls it once, when the stream ends; nothing may be
    /// written after it. The default is `finish`: the other formats need no closing.
    fn close(&mut self) -> std::io::Result<()> {
        self.finish()
    }
}

/// A decoder for `input` as `cfg` says. `endpoint_name` appears in errors.
pub fn decoder<R: BufRead + Send + 'static>(
    cfg: &CodecConfig,
    input: R,
    endpoint_name: &str,
) -> Result<Box<dyn RecordDecoder>, CodecError> {
    let framing = cfg.resolved_framing()?;
    let ctx = DecodeContext {
        endpoint: endpoint_name.to_owned(),
        max_record_bytes: cfg.max_record_bytes,
    };
    Ok(match (cfg.encoding, framing) {
        (Encoding::Parquet, _) => {
            return Err(CodecError::config(
                "encoding",
                format!(
                    "Parquet needs a seekable input: a file or an object store, not a stream ({endpoint_name}); its rows are found from a footer at the end"
                ),
            ))
        }
        (Encoding::Csv, Framing::Csv) => Box::new(csv::CsvDecoder::new(cfg, input, ctx)),
        (Encoding::AvroBinary, Framing::Ocf) => Box::new(avro::OcfDecoder::new(input, ctx)),
        (Encoding::AvroBinary, Framing::AvroDatums) => {
            let schema = cfg
                .schema
                .clone()
                .ok_or_else(|| CodecError::config("schema", "Avro datums need a schema"))?;
            Box::new(avro::DatumDecoder::new(schema, input, ctx))
        }
        (Encoding::MsgPack, Framing::MsgPackStream) => {
            Box::new(msgpack::MsgPackDecoder::new(input, ctx))
        }
        (encoding, Framing::Message)
            if !matches!(encoding, Encoding::Json | Encoding::Utf8 | Encoding::Raw) =>
        {
            Box::new(text::MessageDecoder::new(cfg.clone(), input, ctx))
        }
        (encoding, framing) => Box::new(text::FramedDecoder::new(encoding, &framing, input, ctx)),
    })
}

/// A decoder of a Parquet file read through `input` (see [`RandomAccess`]): a row group at a
/// time, each row a record. `cfg` must say [`Encoding::Parquet`]. `endpoint_name` appears in
/// errors. Nothing is read until the first record is asked for; a file that is not Parquet
/// (or was cut short, losing its footer) then breaks the stream.
pub fn parquet_decoder(
    cfg: &CodecConfig,
    input: Box<dyn RandomAccess>,
    endpoint_name: &str,
) -> Result<Box<dyn RecordDecoder>, CodecError> {
    if cfg.encoding != Encoding::Parquet {
        return Err(CodecError::config(
            "encoding",
            format!("a Parquet decoder reads Parquet, not {}", cfg.encoding),
        ));
    }
    cfg.resolved_framing()?;
    let ctx = DecodeContext {
        endpoint: endpoint_name.to_owned(),
        max_record_bytes: cfg.max_record_bytes,
    };
    Ok(Box::new(parquet_codec::ParquetDecoder::new(input, ctx)))
}

/// An encoder writing to `out` as `cfg` says.
pub fn encoder<W: Write + Send + 'static>(
    cfg: &CodecConfig,
    out: W,
) -> Result<Box<dyn RecordEncoder>, CodecError> {
    let framing = cfg.resolved_framing()?;
    Ok(match (cfg.encoding, framing) {
        (Encoding::Parquet, _) => {
            let schema = match &cfg.schema {
                Some(s) => Some(
                    parquet_codec::arrow_schema_of(s.compiled())
                        .map_err(|e| CodecError::config("schema", e))?,
                ),
                None => None,
            };
            Box::new(parquet_codec::ParquetEncoder::new(schema, out))
        }
        (Encoding::Csv, Framing::Csv) => Box::new(csv::CsvEncoder::new(cfg, out)),
        (Encoding::AvroBinary, Framing::Ocf) => {
            let schema = cfg.schema.clone().ok_or_else(|| {
                CodecError::config("schema", "writing an Avro container file needs a schema")
            })?;
            Box::new(avro::OcfEncoder::new(schema, cfg.ocf_codec, out))
        }
        (Encoding::AvroBinary, Framing::AvroDatums | Framing::Message) => {
            let schema = cfg
                .schema
                .clone()
                .ok_or_else(|| CodecError::config("schema", "writing Avro needs a schema"))?;
            Box::new(avro::DatumEncoder::new(schema, out))
        }
        (Encoding::MsgPack, _) => Box::new(msgpack::MsgPackEncoder::new(out)),
        (Encoding::Csv, _) => Box::new(csv::CsvEncoder::new(cfg, out)),
        (encoding, framing) => Box::new(text::FramedEncoder::new(encoding, &framing, out)),
    })
}

/// Whether a JSON input is one document spanning several lines (a pretty-printed object or
/// list, as many ModelOp models read whole) rather than JSON lines: its first non-blank line
/// is not a JSON value on its own, and the whole input is exactly one JSON value. Reads at
/// most `max_bytes` (the record limit) and no more: an input past it whose first line is not
/// JSON alone is taken as a document, which the decoder then refuses for its size, naming
/// the limit.
pub fn is_json_document<R: BufRead>(mut input: R, max_bytes: usize) -> std::io::Result<bool> {
    use std::io::Read;
    let mut first = Vec::new();
    loop {
        first.clear();
        let n = (&mut input)
            .take(max_bytes as u64 + 1)
            .read_until(b'\n', &mut first)?;
        if n == 0 {
            return Ok(false);
        }
        if first.len() > max_bytes {
            return Ok(false);
        }
        if !first.iter().all(u8::is_ascii_whitespace) {
            break;
        }
    }
    let line = first.strip_prefix(BOM).unwrap_or(&first);
    if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok() {
        return Ok(false);
    }
    let mut whole = line.to_vec();
    let room = (max_bytes + 1).saturating_sub(whole.len()) as u64;
    input.take(room).read_to_end(&mut whole)?;
    if whole.len() > max_bytes {
        return Ok(true);
    }
    let mut values =
        serde_json::Deserializer::from_slice(&whole).into_iter::<serde::de::IgnoredAny>();
    Ok(matches!(values.next(), Some(Ok(_))) && values.next().is_none())
}

/// Decodes one whole message (a REST body, a Kafka message) as one record, whatever the
/// config's framing: the bytes are the record. Blank JSON is an error here, not a skip.
pub fn decode_message(cfg: &CodecConfig, bytes: &[u8]) -> Result<Value, CodecError> {
    if bytes.len() > cfg.max_record_bytes {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit: cfg.max_record_bytes,
        });
    }
    let decoded = match cfg.encoding {
        Encoding::Json => json::decode(bytes),
        Encoding::Utf8 => text::decode_utf8(bytes, 0),
        Encoding::Raw => Ok(Value::Bytes(bytes.to_vec())),
        Encoding::MsgPack => msgpack::decode_message(bytes),
        Encoding::Parquet => Err(PARQUET_NOT_A_MESSAGE.to_owned()),
        Encoding::Csv => csv::decode_message(cfg, bytes),
        Encoding::AvroBinary => match cfg.schema.as_ref() {
            Some(schema) => avro::decode_message(schema, bytes),
            None => Err("an Avro message needs a schema".to_owned()),
        },
    };
    decoded.map_err(CodecError::Decode)
}

/// What a message read as a set of records holds ([`decode_message_records`]).
#[derive(Clone, Debug, PartialEq)]
pub enum MessageRecords {
    /// One record, as [`decode_message`] reads it.
    One(Value),
    /// A set: a JSON array's elements (none, one or many), a CSV message's rows (two or
    /// more).
    Set(Vec<Value>),
}

/// A message that may carry a set of records (what a record-set model takes in one
/// request): a JSON array is a set of its elements, a CSV message of several rows (after
/// its header, if the dialect has one) a set of its rows; anything else is one record, as
/// [`decode_message`] reads it. A CSV message with no row is refused.
pub fn decode_message_records(
    cfg: &CodecConfig,
    bytes: &[u8],
) -> Result<MessageRecords, CodecError> {
    match cfg.encoding {
        // Each row is held to the record size limit as the decoder reads it.
        Encoding::Csv => {
            let mut rows = csv::decode_message_rows(cfg, bytes).map_err(CodecError::Decode)?;
            match rows.len() {
                0 => Err(CodecError::Decode("the message holds no CSV row".into())),
                1 => Ok(MessageRecords::One(rows.remove(0))),
                _ => Ok(MessageRecords::Set(rows)),
            }
        }
        Encoding::Json => match decode_message(cfg, bytes)? {
            Value::Array(items) => Ok(MessageRecords::Set(items)),
            one => Ok(MessageRecords::One(one)),
        },
        _ => decode_message(cfg, bytes).map(MessageRecords::One),
    }
}

/// [`decode_message`] as the item a message transport's source hands out at `position`: the
/// record, or its rejection in its place (`Size` past the limit, `Encoding` otherwise),
/// keeping the message's bytes for an error output.
pub fn read_message(cfg: &CodecConfig, bytes: &[u8], position: Position) -> ReadItem {
    match decode_message(cfg, bytes) {
        Ok(value) => record(value, position),
        Err(e) => {
            let kind = match e {
                CodecError::TooLarge { .. } => RejectionKind::Size,
                _ => RejectionKind::Encoding,
            };
            ReadItem::Rejected(
                Rejection::new(kind, position, e.to_string()).with_raw(bytes.to_vec()),
            )
        }
    }
}

const PARQUET_NOT_A_MESSAGE: &str = "a Parquet file holds many rows: it is read from and written to files and objects, not one record per message";

/// Encodes one record as one whole message (no separator after it). Its only error is
/// [`EncodeError::Rejected`]: the bytes go to memory.
pub fn encode_message(cfg: &CodecConfig, value: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_message_into(cfg, value, &mut out).map_err(EncodeError::Rejected)?;
    Ok(out)
}

fn encode_message_into(cfg: &CodecConfig, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match cfg.encoding {
        Encoding::Json => json::write_value(out, value)?,
        Encoding::Utf8 => text::write_utf8(out, value, None)?,
        Encoding::Raw => text::write_raw(out, value)?,
        Encoding::MsgPack => msgpack::write_value(out, value)?,
        Encoding::Parquet => return Err(PARQUET_NOT_A_MESSAGE.to_owned()),
        Encoding::Csv => csv::encode_message(cfg, value, out)?,
        Encoding::AvroBinary => {
            let schema = cfg
                .schema
                .as_ref()
                .ok_or_else(|| rejected("an Avro message needs a schema"))?;
            schema.encode_datum(value, out).map_err(rejected)?;
        }
    }
    Ok(())
}

/// What every decoder keeps about its stream.
#[derive(Clone, Debug)]
pub(crate) struct DecodeContext {
    pub endpoint: String,
    pub max_record_bytes: usize,
}

impl DecodeContext {
    pub fn broken(&self, position: Position, reason: impl Into<String>) -> runtime_core::Error {
        runtime_core::Error::StreamBroken {
            endpoint: self.endpoint.clone(),
            position,
            reason: reason.into(),
        }
    }

    pub fn io(&self, e: std::io::Error) -> runtime_core::Error {
        runtime_core::Error::io(format!("{}: reading input", self.endpoint), e)
    }

    /// A value read off a self-delimiting format (`what`: "Avro datum", "MessagePack
    /// value"): a record, or rejected as too large (`len` bytes) or as invalid (the reader's
    /// reason).
    pub fn decoded(
        &self,
        value: Value,
        position: Position,
        len: u64,
        invalid: Option<String>,
        what: &str,
    ) -> ReadItem {
        if len > self.max_record_bytes as u64 {
            self.oversize(position, len)
        } else if let Some(why) = invalid {
            reject(
                RejectionKind::Encoding,
                position,
                format!("invalid {what}: {why}"),
            )
        } else {
            record(value, position)
        }
    }

    pub fn oversize(&self, position: Position, len: u64) -> ReadItem {
        ReadItem::Rejected(Rejection::new(
            RejectionKind::Size,
            position,
            format!(
                "record of {len} bytes exceeds the limit of {} bytes",
                self.max_record_bytes
            ),
        ))
    }
}

pub(crate) fn record(value: Value, position: Position) -> ReadItem {
    ReadItem::Record(Record::new(value, position))
}

pub(crate) fn reject(kind: RejectionKind, position: Position, reason: String) -> ReadItem {
    ReadItem::Rejected(Rejection::new(kind, position, reason))
}

pub(crate) fn position(record: u64, line: Option<u64>, byte_offset: u64) -> Position {
    Position {
        record,
        line,
        byte_offset: Some(byte_offset),
        origin: None,
    }
}
