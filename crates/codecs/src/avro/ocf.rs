//! Object container files and bare datum streams.
//!
//! Recovery: a block whose sync marker does not match (or whose header is nonsense) is
//! rejected and reading resumes after the next sync marker found in the input; a block that
//! decompresses badly is rejected as a whole; a datum that cannot be decoded rejects the rest
//! of its block. A block cut short by the end of input stops the stream.
//!
//! A block of up to [`PREDECODE_RECORDS`] records (every block the usual writers make) is
//! walked whole, without building its values, before any of its records goes out: when a
//! datum cannot be decoded, or the datums leave bytes of the block unread, the file's header
//! schema does not fit its data and the whole block is rejected, instead of records of nulls
//! or garbage reaching the model. Its records are then decoded one at a time, as they are
//! asked for, so that no more of them are alive at once than the caller keeps.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::sync::Arc;

use runtime_core::{ReadItem, Record, RejectionKind, Value};

use super::datum::{self, read_long, write_long, DatumReader, Malformed, SliceSource, Source};
use super::schema::{self, Compiled};
use super::{AvroSchema, OcfCodec};
use crate::framing::fill;
use crate::{position, reject, rejected, DecodeContext, EncodeError, RecordDecoder, RecordEncoder};

const MAGIC: &[u8; 4] = b"Obj\x01";
const SYNC_LEN: usize = 16;
/// Blocks are written when they reach this size: big enough to amortize the sync marker and
/// deflate's startup, small enough to stream.
const BLOCK_BYTES: usize = 64 * 1024;
/// The largest block we agree to buffer, whatever the record limit.
const MAX_BLOCK_BYTES: usize = 256 * 1024 * 1024;
/// The most records a block may claim when a datum of its schema can take no bytes at all
/// (`null`, an empty record): the count cannot be checked against the block's size then.
const MAX_ZERO_BYTE_RECORDS: u64 = 1 << 24;
/// Blocks of at most this many records are checked whole before their records go out.
const PREDECODE_RECORDS: u64 = 1 << 16;

/// The fewest bytes a datum of `nodes[idx]` can take: a block of `count` records must hold at
/// least `count` times this. A record that contains itself without a union in between has no
/// finite datum; it counts as 0 (the bound stays a lower bound).
fn min_datum_bytes(nodes: &[schema::Node], idx: usize, open: &mut Vec<usize>) -> u64 {
    use schema::Node;
    match &nodes[idx] {
        Node::Null => 0,
        Node::Float => 4,
        Node::Double => 8,
        Node::Fixed(_, size) => *size as u64,
        Node::Logical(_, inner) => min_datum_bytes(nodes, *inner, open),
        Node::Record(_, fields) => {
            if open.contains(&idx) {
                return 0;
            }
            open.push(idx);
            let n = fields.iter().fold(0u64, |n, f| {
                n.saturating_add(min_datum_bytes(nodes, f.node, open))
            });
            open.pop();
            n
        }
        // A varint, a length, a count or a branch number: at least one byte.
        _ => 1,
    }
}

/// A stream with a push-back buffer (for bytes read past a resync point) and an offset.
pub(crate) struct StreamInput<R> {
    r: R,
    pending: Vec<u8>,
    pending_at: usize,
    offset: u64,
    scratch: Vec<u8>,
    /// The longest single `take` allowed (a string, a block).
    pub max_take: usize,
    /// Set when the reader failed, so callers can tell I/O errors from malformed input.
    pub io_error: Option<io::Error>,
}

impl<R: BufRead> StreamInput<R> {
    pub fn new(r: R, max_take: usize) -> Self {
        StreamInput {
            r,
            pending: Vec::new(),
            pending_at: 0,
            offset: 0,
            scratch: Vec::new(),
            max_take,
            io_error: None,
        }
    }

    fn push_back(&mut self, bytes: &[u8]) {
        let mut rest = bytes.to_vec();
        rest.extend_from_slice(&self.pending[self.pending_at..]);
        self.pending = rest;
        self.pending_at = 0;
        self.offset -= bytes.len() as u64;
    }

    /// Consumes `n` bytes without keeping them.
    pub fn skip(&mut self, mut n: usize) -> Result<(), Malformed> {
        while n > 0 {
            if self.pending_at < self.pending.len() {
                let k = n.min(self.pending.len() - self.pending_at);
                self.pending_at += k;
                self.offset += k as u64;
                n -= k;
                continue;
            }
            let avail = match fill(&mut self.r) {
                Ok(c) => c.len(),
                Err(e) => {
                    self.io_error = Some(e);
                    return Err(Malformed("read failed".into()));
                }
            };
            if avail == 0 {
                return Err(Self::eof());
            }
            let k = n.min(avail);
            self.r.consume(k);
            self.offset += k as u64;
            n -= k;
        }
        Ok(())
    }

    pub fn at_eof(&mut self) -> io::Result<bool> {
        if self.pending_at < self.pending.len() {
            return Ok(false);
        }
        Ok(fill(&mut self.r)?.is_empty())
    }

    /// Moves the next available bytes (at least one, unless at the end) to `out`.
    fn read_chunk(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        if self.pending_at < self.pending.len() {
            let n = self.pending.len() - self.pending_at;
            out.extend_from_slice(&self.pending[self.pending_at..]);
            self.pending.clear();
            self.pending_at = 0;
            self.offset += n as u64;
            return Ok(n);
        }
        let chunk = fill(&mut self.r)?;
        let n = chunk.len();
        out.extend_from_slice(chunk);
        self.r.consume(n);
        self.offset += n as u64;
        Ok(n)
    }

    fn eof() -> Malformed {
        Malformed("input ends early".into())
    }
}

impl<R: BufRead> Source for StreamInput<R> {
    fn byte(&mut self) -> Result<u8, Malformed> {
        if let Some(&b) = self.pending.get(self.pending_at) {
            self.pending_at += 1;
            self.offset += 1;
            return Ok(b);
        }
        let b = match fill(&mut self.r) {
            Ok(buf) => *buf.first().ok_or_else(Self::eof)?,
            Err(e) => {
                self.io_error = Some(e);
                return Err(Malformed("read failed".into()));
            }
        };
        self.r.consume(1);
        self.offset += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Malformed> {
        if n > self.max_take {
            return Err(Malformed(format!(
                "length {n} exceeds the limit of {} bytes",
                self.max_take
            )));
        }

        self.scratch.clear();
        while self.scratch.len() < n {
            let want = n - self.scratch.len();
            if self.pending_at < self.pending.len() {
                let k = want.min(self.pending.len() - self.pending_at);
                self.scratch
                    .extend_from_slice(&self.pending[self.pending_at..self.pending_at + k]);
                self.pending_at += k;
                self.offset += k as u64;
                continue;
            }
            let chunk = match fill(&mut self.r) {
                Ok(c) => c,
                Err(e) => {
                    self.io_error = Some(e);
                    return Err(Malformed("read failed".into()));
                }
            };
            if chunk.is_empty() {
                return Err(Malformed(format!(
                    "input ends early: {n} bytes expected, {} found",
                    self.scratch.len()
                )));
            }
            let k = want.min(chunk.len());
            self.scratch.extend_from_slice(&chunk[..k]);
            self.r.consume(k);
            self.offset += k as u64;
        }
        Ok(&self.scratch)
    }

    fn pos(&self) -> u64 {
        self.offset
    }

    fn skip(&mut self, n: usize) -> Result<(), Malformed> {
        StreamInput::skip(self, n)
    }
}

struct Header {
    compiled: Arc<Compiled>,
    codec: OcfCodec,
    sync: [u8; SYNC_LEN],
    /// [`min_datum_bytes`] of the schema.
    min_datum: u64,
}

fn read_header<R: BufRead>(input: &mut StreamInput<R>) -> Result<Header, String> {
    let m = |e: Malformed| e.0;
    if input.take(4).map_err(m)? != MAGIC {
        return Err("not an Avro container file (bad magic bytes)".into());
    }
    let mut schema_json = None;
    let mut codec = OcfCodec::Null;
    loop {
        let mut n = read_long(input).map_err(m)?;
        if n == 0 {
            break;
        }
        if n < 0 {
            n = n.saturating_neg();
            read_long(input).map_err(m)?;
        }
        for _ in 0..n {
            let klen = usize::try_from(read_long(input).map_err(m)?)
                .map_err(|_| "negative metadata key length")?;
            let key = String::from_utf8_lossy(input.take(klen).map_err(m)?).into_owned();
            let vlen = usize::try_from(read_long(input).map_err(m)?)
                .map_err(|_| "negative metadata value length")?;
            let val = input.take(vlen).map_err(m)?;
            match key.as_str() {
                "avro.schema" => schema_json = Some(val.to_vec()),
                "avro.codec" => {
                    codec = OcfCodec::of_header(val).ok_or_else(|| {
                        format!(
                            "block codec '{}' is not supported ({} are)",
                            String::from_utf8_lossy(val),
                            OcfCodec::known()
                        )
                    })?
                }
                _ => {}
            }
        }
    }
    let schema_json = schema_json.ok_or("the header has no avro.schema")?;
    let text = std::str::from_utf8(&schema_json)
        .map_err(|e| format!("the header's schema is not UTF-8 text: {e}"))?;
    let compiled = schema::compile(text).map_err(|e| format!("the header's schema: {e}"))?;
    let mut sync = [0u8; SYNC_LEN];
    sync.copy_from_slice(input.take(SYNC_LEN).map_err(m)?);
    let min_datum = min_datum_bytes(&compiled.nodes, compiled.root, &mut Vec::new());
    Ok(Header {
        compiled: Arc::new(compiled),
        codec,
        sync,
        min_datum,
    })
}

/// Decompresses one block's bytes (`raw`, as the file holds them) into `out`, at most `limit`
/// bytes; the reason when they do not decompress.
fn decompress(codec: OcfCodec, raw: &[u8], out: &mut Vec<u8>, limit: u64) -> Result<(), String> {
    let too_big = || format!("inflates to more than {limit} bytes");
    match codec {
        OcfCodec::Null => out.extend_from_slice(raw),
        OcfCodec::Deflate => {
            let n = flate2::read::DeflateDecoder::new(raw)
                .take(limit + 1)
                .read_to_end(out)
                .map_err(|e| format!("cannot inflate: {e}"))?;
            if n as u64 > limit {
                return Err(too_big());
            }
        }
        OcfCodec::Snappy => {
            // A raw snappy block, then the CRC32 of the uncompressed bytes, big-endian.
            let Some(split) = raw.len().checked_sub(4) else {
                return Err(format!(
                    "a snappy block holds at least its 4-byte CRC32, this one is {} bytes",
                    raw.len()
                ));
            };
            let (data, crc) = raw.split_at(split);
            let len = snap::raw::decompress_len(data)
                .map_err(|e| format!("cannot decompress snappy: {e}"))?;
            if len as u64 > limit {
                return Err(too_big());
            }
            out.resize(len, 0);
            snap::raw::Decoder::new()
                .decompress(data, out)
                .map_err(|e| format!("cannot decompress snappy: {e}"))?;
            let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
            let actual = crc32fast::hash(out);
            if stored != actual {
                return Err(format!(
                    "snappy CRC32 mismatch: the block says {stored:08x}, its data is {actual:08x}"
                ));
            }
        }
        OcfCodec::Zstandard => {
            let n = zstd::stream::read::Decoder::with_buffer(raw)
                .map_err(|e| format!("cannot decompress zstandard: {e}"))?
                .take(limit + 1)
                .read_to_end(out)
                .map_err(|e| format!("cannot decompress zstandard: {e}"))?;
            if n as u64 > limit {
                return Err(too_big());
            }
        }
    }
    Ok(())
}

pub(crate) struct OcfDecoder<R> {
    input: StreamInput<R>,
    ctx: DecodeContext,
    header: Option<Header>,
    block: Vec<u8>,
    /// A block's bytes as read, and as inflated: buffers kept from block to block (a fresh
    /// one per block is a large allocation each time, which makes the allocator sweep the
    /// small frees of the records before it).
    raw: Vec<u8>,
    inflated: Vec<u8>,
    block_at: usize,
    block_left: u64,
    block_count: u64,
    block_offset: u64,
    /// The rejection of a block whose datums do not fit the header's schema, still to go out.
    pending: VecDeque<ReadItem>,
    /// The current block's datums were walked whole and fit.
    checked: bool,
    record: u64,
    done: bool,
}

impl<R: BufRead> OcfDecoder<R> {
    pub fn new(input: R, ctx: DecodeContext) -> Self {
        OcfDecoder {
            input: StreamInput::new(input, ctx.max_record_bytes.max(1024 * 1024)),
            ctx,
            header: None,
            block: Vec::new(),
            raw: Vec::new(),
            inflated: Vec::new(),
            block_at: 0,
            block_left: 0,
            block_count: 0,
            block_offset: 0,
            pending: VecDeque::new(),
            checked: false,
            record: 0,
            done: false,
        }
    }

    fn broken(&mut self, at: u64, reason: String) -> runtime_core::Error {
        if let Some(e) = self.input.io_error.take() {
            return self.ctx.io(e);
        }
        self.ctx.broken(position(self.record + 1, None, at), reason)
    }

    fn item(&mut self) -> Result<Option<ReadItem>, runtime_core::Error> {
        if self.header.is_none() {
            // An empty file holds no records, like any other empty input.
            match self.input.at_eof() {
                Ok(true) if self.input.pos() == 0 => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(self.ctx.io(e)),
            }
            match read_header(&mut self.input) {
                Ok(h) => {
                    self.input.max_take = MAX_BLOCK_BYTES;
                    self.header = Some(h);
                }
                Err(reason) => {
                    return Err(self.broken(0, format!("bad container header: {reason}")))
                }
            }
        }
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(item));
            }
            if self.block_left > 0 {
                if self.block_at == 0 && !self.checked && self.block_count <= PREDECODE_RECORDS {
                    self.check_block();
                    continue;
                }
                return Ok(Some(self.next_datum()));
            }
            match self.input.at_eof() {
                Ok(true) => return Ok(None),
                Ok(false) => {}
                Err(e) => return Err(self.ctx.io(e)),
            }
            if let Some(item) = self.next_block()? {
                return Ok(Some(item));
            }
        }
    }

    /// Reads the next block into `self.block`; `Some` is a rejection standing for a bad block.
    fn next_block(&mut self) -> Result<Option<ReadItem>, runtime_core::Error> {
        let Some(header) = &self.header else {
            return Ok(None);
        };
        let sync = header.sync;
        let min_datum = header.min_datum;
        let codec = header.codec;
        let start = self.input.pos();
        self.block_offset = start;
        let head = read_long(&mut self.input).and_then(|c| Ok((c, read_long(&mut self.input)?)));
        let (count, size) = match head {
            Ok(h) => h,
            Err(e) => {
                return Err(self.broken(start, format!("block header cannot be read: {}", e.0)))
            }
        };
        let size_ok = usize::try_from(size).ok().filter(|&s| s <= MAX_BLOCK_BYTES);
        let (Some(size), Ok(count)) = (size_ok, u64::try_from(count)) else {
            let why = format!("block header says {count} records in {size} bytes");
            return self.resync(start, Vec::new(), why).map(Some);
        };
        match self.input.take(size) {
            // The block's bytes are in the input's scratch buffer: swapped out, not copied.
            Ok(_) => std::mem::swap(&mut self.raw, &mut self.input.scratch),
            Err(e) => {
                return Err(self.broken(
                    start,
                    format!(
                        "block of {count} records at byte offset {start} is truncated: {}",
                        e.0
                    ),
                ))
            }
        }
        let marker = match self.input.take(SYNC_LEN) {
            Ok(m) => m.to_vec(),
            Err(e) => {
                return Err(self.broken(
                    start,
                    format!(
                        "block at byte offset {start} lacks its sync marker: {}",
                        e.0
                    ),
                ))
            }
        };
        if marker != sync {
            let mut seen = std::mem::take(&mut self.raw);
            seen.extend_from_slice(&marker);
            return self
                .resync(start, seen, "sync marker does not match".into())
                .map(Some);
        }
        if codec == OcfCodec::Null {
            std::mem::swap(&mut self.block, &mut self.raw);
        } else {
            self.inflated.clear();
            let limit = (self.ctx.max_record_bytes as u64)
                .saturating_mul(count.max(1))
                .min(4 * MAX_BLOCK_BYTES as u64);
            if let Err(why) = decompress(codec, &self.raw, &mut self.inflated, limit) {
                self.record += 1;
                let pos = position(self.record, None, start);
                // Saturating: the count of a block that does not inflate may be any number.
                self.record = self.record.saturating_add(count.saturating_sub(1));
                return Ok(Some(reject(
                    RejectionKind::Encoding,
                    pos,
                    format!("block of {count} records at byte offset {start} is corrupt ({why}); its records are skipped"),
                )));
            }
            std::mem::swap(&mut self.block, &mut self.inflated);
        }
        // A count the block's bytes cannot hold would have us emit records from nothing (or
        // loop for ever on zero-byte datums): the block is corrupt, its count meaningless.
        let most = match min_datum {
            0 => MAX_ZERO_BYTE_RECORDS,
            m => self.block.len() as u64 / m,
        };
        if count > most {
            self.record += 1;
            return Ok(Some(reject(
                RejectionKind::Encoding,
                position(self.record, None, start),
                format!(
                    "corrupt block at byte offset {start}: it claims {count} records, its {} bytes hold at most {most}; skipped",
                    self.block.len()
                ),
            )));
        }
        self.block_at = 0;
        self.block_left = count;
        self.block_count = count;
        self.checked = false;
        Ok(None)
    }

    /// Skips to just after the next sync marker, looking first in `seen` (bytes already
    /// read), then in the input.
    fn resync(
        &mut self,
        start: u64,
        mut seen: Vec<u8>,
        why: String,
    ) -> Result<ReadItem, runtime_core::Error> {
        let sync = match &self.header {
            Some(h) => h.sync,
            None => return Err(self.broken(start, why)),
        };
        let seen_start = self.input.pos() - seen.len() as u64;
        let mut window_start = seen_start;
        loop {
            if let Some(i) = memchr::memmem::find(&seen, &sync) {
                let after = i + SYNC_LEN;
                self.input.push_back(&seen[after..]);
                let skipped = window_start + after as u64 - start;
                self.record += 1;
                return Ok(reject(
                    RejectionKind::Encoding,
                    position(self.record, None, start),
                    format!("corrupt block at byte offset {start} ({why}); skipped {skipped} bytes to the next sync marker"),
                ));
            }
            // Keep a marker's length minus one: the marker may straddle two chunks.
            let keep = seen.len().min(SYNC_LEN - 1);
            let cut = seen.len() - keep;
            seen.drain(..cut);
            window_start += cut as u64;
            match self.input.read_chunk(&mut seen) {
                Ok(0) => {
                    return Err(self.broken(
                        start,
                        format!(
                        "corrupt block at byte offset {start} ({why}) and no sync marker after it"
                    ),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(self.ctx.io(e)),
            }
        }
    }

    /// Walks the whole current block; when its datums do not fit the header's schema (one
    /// fails, or they leave bytes over) the block is rejected whole.
    fn check_block(&mut self) {
        let Some(header) = &self.header else { return };
        let compiled = &header.compiled;
        let count = self.block_count;
        let mut src = SliceSource {
            data: &self.block,
            at: 0,
        };
        let mut problem = None;
        for k in 1..=count {
            let mut reader = DatumReader::new(compiled, self.ctx.max_record_bytes);
            if let Err(Malformed(why)) = reader.skip(&mut src, compiled.root, 0) {
                problem = Some(format!("record {k} cannot be decoded ({why})"));
                break;
            }
        }
        if problem.is_none() && src.at != self.block.len() {
            problem = Some(format!(
                "its records take {} of its {} bytes",
                src.at,
                self.block.len()
            ));
        }
        let Some(why) = problem else {
            self.checked = true;
            return;
        };
        self.block_left = 0;
        self.pending.push_back(reject(
            RejectionKind::Encoding,
            position(self.record + 1, None, self.block_offset),
            format!(
                "block of {count} records at byte offset {}: {why}: the file's header schema does not fit its data; the block's records are skipped",
                self.block_offset
            ),
        ));
        self.record += count;
    }

    /// Decodes up to `run` records of the current (checked) block straight into `out`, as
    /// long as each is a plain record; returns how many. The first datum that is not (it
    /// fails, is invalid or oversize) is left for [`next_datum`](Self::next_datum), which
    /// reports it.
    fn decode_run(&mut self, run: usize, out: &mut Vec<ReadItem>) -> usize {
        let Some(header) = &self.header else {
            return 0;
        };
        let compiled = &header.compiled;
        let max = self.ctx.max_record_bytes;
        let mut src = SliceSource {
            data: &self.block,
            at: self.block_at,
        };
        // The records are read into their places in `out`, not moved there (see
        // `DatumReader::read_into`): `run` null records go in first, and those not filled are
        // taken out again.
        let first = out.len();
        let offset = self.block_offset;
        out.extend(
            (0..run).map(|_| ReadItem::Record(Record::new(Value::Null, position(0, None, offset)))),
        );
        let mut done = 0;
        for item in &mut out[first..] {
            let ReadItem::Record(r) = item else {
                break;
            };
            let start = src.at;
            let mut reader = DatumReader::new(compiled, max);
            let read = reader.read_into(&mut src, compiled.root, 0, &mut r.value);
            if read.is_err() || reader.invalid.is_some() || src.at - start > max {
                src.at = start;
                break;
            }
            self.record += 1;
            r.position.record = self.record;
            done += 1;
        }
        out.truncate(first + done);
        self.block_left -= done as u64;
        self.block_at = src.at;
        done
    }

    fn next_datum(&mut self) -> ReadItem {
        let Some(header) = &self.header else {
            return reject(
                RejectionKind::Encoding,
                position(self.record, None, 0),
                "no header".into(),
            );
        };
        let compiled = &header.compiled;
        let mut src = SliceSource {
            data: &self.block,
            at: self.block_at,
        };
        let mut reader = DatumReader::new(compiled, self.ctx.max_record_bytes);
        let res = reader.read(&mut src, compiled.root, 0);
        self.record += 1;
        let pos = position(self.record, None, self.block_offset);
        match res {
            Ok(v) => {
                let len = src.at - self.block_at;
                self.block_at = src.at;
                self.block_left -= 1;
                self.ctx
                    .decoded(v, pos, len as u64, reader.invalid, "Avro datum")
            }
            Err(Malformed(why)) => {
                let nth = self.block_count - self.block_left + 1;
                let rest = self.block_left - 1;
                self.record += rest;
                self.block_left = 0;
                reject(
                    RejectionKind::Encoding,
                    pos,
                    format!(
                        "block at byte offset {}: record {nth} of {} cannot be decoded ({why}); the block's remaining {rest} records are skipped",
                        self.block_offset, self.block_count
                    ),
                )
            }
        }
    }
}

impl<R: BufRead + Send> RecordDecoder for OcfDecoder<R> {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        if self.done {
            return None;
        }
        let item = self.item();
        crate::fuse(&mut self.done, item)
    }

    /// As the default, with the records of a checked block decoded in a run straight into
    /// `out`.
    fn next_batch(
        &mut self,
        max: usize,
        out: &mut Vec<ReadItem>,
    ) -> Result<bool, runtime_core::Error> {
        let mut left = max;
        while left > 0 {
            if self.checked && self.block_left > 0 && self.pending.is_empty() {
                let run = usize::try_from(self.block_left).map_or(left, |b| b.min(left));
                out.reserve(run);
                let done = self.decode_run(run, out);
                left -= done;
                // A datum that cannot be decoded ends its block (`block_left` 0): stop there.
                for _ in done..run {
                    if self.block_left == 0 {
                        break;
                    }
                    out.push(self.next_datum());
                    left -= 1;
                }
                continue;
            }
            match self.next_item() {
                None => return Ok(false),
                Some(Ok(item)) => out.push(item),
                Some(Err(e)) => return Err(e),
            }
            left -= 1;
        }
        Ok(true)
    }
}

/// Datums back to back with no framing: a datum that cannot be decoded breaks the stream.
pub(crate) struct DatumDecoder<R> {
    schema: AvroSchema,
    input: StreamInput<R>,
    ctx: DecodeContext,
    record: u64,
    done: bool,
}

impl<R: BufRead> DatumDecoder<R> {
    pub fn new(schema: AvroSchema, input: R, ctx: DecodeContext) -> Self {
        DatumDecoder {
            schema,
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
        let compiled = self.schema.compiled();
        let mut reader = DatumReader::new(compiled, self.ctx.max_record_bytes);
        // Strings and bytes that would take the datum past the limit are skipped, not kept.
        reader.budget = Some((start, self.ctx.max_record_bytes));
        let res = reader.read(&mut self.input, compiled.root, 0);
        self.record += 1;
        let pos = position(self.record, None, start);
        match res {
            Ok(v) => {
                let len = self.input.pos() - start;
                if len == 0 {
                    // A datum of no bytes (a `null` schema) cannot be told from the next one:
                    // the stream would never advance.
                    return Err(self.ctx.broken(
                        pos,
                        "Avro datum cannot be decoded: a datum of this schema takes no bytes, so the input after it cannot be split into datums",
                    ));
                }
                Ok(Some(self.ctx.decoded(
                    v,
                    pos,
                    len,
                    reader.invalid,
                    "Avro datum",
                )))
            }
            Err(Malformed(why)) => {
                if let Some(e) = self.input.io_error.take() {
                    return Err(self.ctx.io(e));
                }
                Err(self
                    .ctx
                    .broken(pos, format!("Avro datum cannot be decoded: {why}")))
            }
        }
    }
}

impl<R: BufRead + Send> RecordDecoder for DatumDecoder<R> {
    fn next_item(&mut self) -> Option<Result<ReadItem, runtime_core::Error>> {
        if self.done {
            return None;
        }
        let item = self.item();
        crate::fuse(&mut self.done, item)
    }
}

pub(crate) struct DatumEncoder<W: Write> {
    schema: AvroSchema,
    out: BufWriter<W>,
    scratch: Vec<u8>,
}

impl<W: Write> DatumEncoder<W> {
    pub fn new(schema: AvroSchema, out: W) -> Self {
        DatumEncoder {
            schema,
            out: BufWriter::with_capacity(64 * 1024, out),
            scratch: Vec::new(),
        }
    }
}

impl<W: Write + Send> RecordEncoder for DatumEncoder<W> {
    fn write(&mut self, value: &Value) -> Result<(), EncodeError> {
        self.scratch.clear();
        self.schema
            .encode_datum(value, &mut self.scratch)
            .map_err(|e| EncodeError::Rejected(rejected(e)))?;
        self.out.write_all(&self.scratch)?;
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

pub(crate) struct OcfEncoder<W: Write> {
    schema: AvroSchema,
    codec: OcfCodec,
    out: W,
    sync: [u8; SYNC_LEN],
    block: Vec<u8>,
    count: u64,
    header_written: bool,
    frame: Vec<u8>,
}

/// A sync marker that differs from file to file; `RandomState` is seeded randomly per
/// instance, which is all the randomness a marker needs.
fn new_sync_marker() -> [u8; SYNC_LEN] {
    let mut m = [0u8; SYNC_LEN];
    let a = RandomState::new().hash_one(0u8).to_le_bytes();
    let b = RandomState::new().hash_one(1u8).to_le_bytes();
    m[..8].copy_from_slice(&a);
    m[8..].copy_from_slice(&b);
    m
}

impl<W: Write> OcfEncoder<W> {
    pub fn new(schema: AvroSchema, codec: OcfCodec, out: W) -> Self {
        OcfEncoder {
            schema,
            codec,
            out,
            sync: new_sync_marker(),
            block: Vec::with_capacity(BLOCK_BYTES + 4096),
            count: 0,
            header_written: false,
            frame: Vec::new(),
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        let mut h = Vec::with_capacity(self.schema.json().len() + 64);
        h.extend_from_slice(MAGIC);
        write_long(&mut h, 2);
        for (k, v) in [
            ("avro.schema", self.schema.json().as_bytes()),
            ("avro.codec", self.codec.name().as_bytes()),
        ] {
            write_long(&mut h, k.len() as i64);
            h.extend_from_slice(k.as_bytes());
            write_long(&mut h, v.len() as i64);
            h.extend_from_slice(v);
        }
        write_long(&mut h, 0);
        h.extend_from_slice(&self.sync);
        self.out.write_all(&h)?;
        self.header_written = true;
        Ok(())
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        self.frame.clear();
        write_long(&mut self.frame, self.count as i64);
        let compressed;
        let body: &[u8] = match self.codec {
            OcfCodec::Null => &self.block,
            OcfCodec::Deflate => {
                let mut enc = flate2::write::DeflateEncoder::new(
                    Vec::with_capacity(self.block.len() / 2),
                    flate2::Compression::default(),
                );
                enc.write_all(&self.block)?;
                compressed = enc.finish()?;
                &compressed
            }
            OcfCodec::Snappy => {
                let mut z = snap::raw::Encoder::new()
                    .compress_vec(&self.block)
                    .map_err(io::Error::other)?;
                z.extend_from_slice(&crc32fast::hash(&self.block).to_be_bytes());
                compressed = z;
                &compressed
            }
            OcfCodec::Zstandard => {
                compressed = zstd::bulk::compress(&self.block, zstd::DEFAULT_COMPRESSION_LEVEL)?;
                &compressed
            }
        };
        write_long(&mut self.frame, body.len() as i64);
        self.out.write_all(&self.frame)?;
        self.out.write_all(body)?;
        self.out.write_all(&self.sync)?;
        self.block.clear();
        self.count = 0;
        Ok(())
    }
}

impl<W: Write + Send> RecordEncoder for OcfEncoder<W> {
    fn write(&mut self, value: &Value) -> Result<(), EncodeError> {
        if !self.header_written {
            self.write_header()?;
        }
        let c = self.schema.compiled();
        let start = self.block.len();
        if let Err(e) = datum::write(&c.nodes, c.root, value, &mut self.block, 0) {
            self.block.truncate(start);
            return Err(EncodeError::Rejected(rejected(e)));
        }
        self.count += 1;
        if self.block.len() >= BLOCK_BYTES {
            self.flush_block()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.write_header()?;
        }
        self.flush_block()?;
        self.out.flush()
    }
}
