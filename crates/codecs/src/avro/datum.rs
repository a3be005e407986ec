//! Avro binary datums straight to and from [`Value`], driven by the compiled schema (no
//! intermediate `apache_avro::types::Value`).

use std::fmt;
use std::str::Utf8Error;

use runtime_core::{Map, Str, Value};

use super::schema::{is_uuid, Compiled, Field, Logical, Node};

/// The bytes cannot be read as the schema says: where the next datum starts is unknown.
#[derive(Debug)]
pub(crate) struct Malformed(pub String);

/// Where datum bytes come from: a block in memory, or a stream.
pub(crate) trait Source {
    fn byte(&mut self) -> Result<u8, Malformed>;
    fn take(&mut self, n: usize) -> Result<&[u8], Malformed>;
    /// Bytes read so far.
    fn pos(&self) -> u64;
    /// Consumes `n` bytes without keeping them.
    fn skip(&mut self, n: usize) -> Result<(), Malformed> {
        self.take(n).map(|_| ())
    }
    /// The next `n` bytes, owned.
    fn take_vec(&mut self, n: usize) -> Result<Vec<u8>, Malformed> {
        self.take(n).map(<[u8]>::to_vec)
    }
    /// The next `n` bytes as a string; the inner error when they are not UTF-8.
    fn take_string(&mut self, n: usize) -> Result<Result<Str, Utf8Error>, Malformed> {
        Ok(Str::from_utf8(self.take(n)?))
    }
    /// Passes over a variable-length integer, with the same length limit as [`long`].
    ///
    /// [`long`]: Source::long
    fn skip_long(&mut self) -> Result<(), Malformed> {
        self.long().map(|_| ())
    }
    /// A zig-zag variable-length `long`.
    #[inline]
    fn long(&mut self) -> Result<i64, Malformed> {
        let mut n: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(unzigzag(n));
            }
            shift += 7;
            if shift > 63 {
                return Err(too_long());
            }
        }
    }
}

#[inline]
fn unzigzag(n: u64) -> i64 {
    (n >> 1) as i64 ^ -((n & 1) as i64)
}

#[cold]
fn too_long() -> Malformed {
    Malformed("variable-length integer longer than 10 bytes".into())
}

/// The length up to which [`SliceSource::take_vec`] copies a fixed number of bytes: the usable
/// size of the smallest allocation glibc's malloc makes (a 32-byte chunk).
pub(crate) const SHORT: usize = 24;

/// The first `n` bytes of `window` (`n <= SHORT`), owned: the whole window is copied (a copy
/// of known size is a few moves, where one of a length known only at run time is a call to
/// `memcpy`), then cut to length. The allocation is of `SHORT` bytes, which the allocator
/// rounds an allocation of one byte up to anyway.
#[inline]
pub(crate) fn short_copy(window: &[u8; SHORT], n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(SHORT);
    v.extend_from_slice(window);
    v.truncate(n);
    v
}

#[derive(Debug)]
pub(crate) struct SliceSource<'a> {
    pub data: &'a [u8],
    pub at: usize,
}

impl Source for SliceSource<'_> {
    #[inline]
    fn byte(&mut self) -> Result<u8, Malformed> {
        match self.data.get(self.at) {
            Some(&b) => {
                self.at += 1;
                Ok(b)
            }
            None => Err(Malformed("datum ends early".into())),
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8], Malformed> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| Malformed(format!("datum ends early (needs {n} more bytes)")))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn pos(&self) -> u64 {
        self.at as u64
    }

    /// Short values (strings of a few characters are the usual case) are copied as a fixed
    /// [`SHORT`] bytes where that many are left, then cut to length: a copy of known size is
    /// a few moves, where one of a length known only at run time is a call to `memcpy`. The
    /// allocation is then of `SHORT` bytes, which the allocator rounds an allocation of one
    /// byte up to anyway.
    #[inline]
    fn take_vec(&mut self, n: usize) -> Result<Vec<u8>, Malformed> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if let Some(v) = self
            .window()
            .filter(|_| n <= SHORT)
            .map(|w| short_copy(w, n))
        {
            self.at += n;
            return Ok(v);
        }
        self.take(n).map(<[u8]>::to_vec)
    }

    /// Eight bytes at once where eight are left: the varint ends at the first byte without
    /// its top bit.
    #[inline(always)]
    fn skip_long(&mut self) -> Result<(), Malformed> {
        if let Some(&word) = self
            .data
            .get(self.at..self.at + 8)
            .and_then(|w| <&[u8; 8]>::try_from(w).ok())
        {
            let ends = !u64::from_le_bytes(word) & 0x8080_8080_8080_8080;
            if ends != 0 {
                self.at += ends.trailing_zeros() as usize / 8 + 1;
                return Ok(());
            }
        }
        self.long().map(|_| ())
    }

    /// As the default, without a bounds check per byte where ten bytes (the longest
    /// varint) are left.
    #[inline(always)]
    fn long(&mut self) -> Result<i64, Malformed> {
        let Some(ten) = self.data.get(self.at..self.at + 10) else {
            return self.long_near_end();
        };
        let mut n: u64 = 0;
        for (i, &b) in ten.iter().enumerate() {
            n |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.at += i + 1;
                return Ok(unzigzag(n));
            }
        }
        Err(too_long())
    }
}

impl SliceSource<'_> {
    /// The next [`SHORT`] bytes, where that many are left.
    #[inline]
    fn window(&self) -> Option<&[u8; SHORT]> {
        self.data
            .get(self.at..self.at + SHORT)
            .and_then(|w| w.try_into().ok())
    }

    /// A varint within ten bytes of the end, byte by byte.
    #[cold]
    fn long_near_end(&mut self) -> Result<i64, Malformed> {
        let mut n: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(unzigzag(n));
            }
            shift += 7;
            if shift > 63 {
                return Err(too_long());
            }
        }
    }
}

#[inline]
pub(crate) fn read_long<S: Source>(s: &mut S) -> Result<i64, Malformed> {
    s.long()
}

#[inline]
pub(crate) fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[inline]
fn read_bool<S: Source>(s: &mut S) -> Result<bool, Malformed> {
    match s.byte()? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(Malformed(format!("boolean byte {b} is neither 0 nor 1"))),
    }
}

#[inline]
fn read_double<S: Source>(s: &mut S) -> Result<f64, Malformed> {
    let b = s.take(8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(f64::from_le_bytes(a))
}

#[inline]
fn read_len<S: Source>(s: &mut S) -> Result<usize, Malformed> {
    let n = read_long(s)?;
    usize::try_from(n).map_err(|_| Malformed(format!("negative length {n}")))
}

/// Deep enough for real data, shallow enough never to overflow the stack on hostile input.
const MAX_DEPTH: usize = 256;

/// Reads one datum. Content errors that leave the framing intact (bad UTF-8) do not stop the
/// read: the first is kept in `invalid` and the datum is rejected once fully read.
pub(crate) struct DatumReader<'s> {
    nodes: &'s [Node],
    pub invalid: Option<String>,
    /// Array/map items left before the datum counts as malformed; stops zero-byte items
    /// (nulls) from making an endless array.
    items_left: usize,
    /// `(start, max)`: a string or bytes value that would take the datum beyond `max` bytes
    /// past `start` is skipped and the datum marked invalid (its length then rejects it).
    pub budget: Option<(u64, usize)>,
}

impl<'s> DatumReader<'s> {
    pub fn new(compiled: &'s Compiled, max_items: usize) -> Self {
        DatumReader {
            nodes: &compiled.nodes,
            invalid: None,
            items_left: max_items,
            budget: None,
        }
    }

    pub fn read<S: Source>(
        &mut self,
        s: &mut S,
        idx: usize,
        depth: usize,
    ) -> Result<Value, Malformed> {
        let mut v = Value::Null;
        self.read_into(s, idx, depth, &mut v)?;
        Ok(v)
    }

    /// Reads one datum into `slot`, which holds null. Values are written where they are to
    /// stay rather than returned: a value built apart and moved in costs a copy, which the
    /// CPU cannot forward from the stores that built it (they are narrower than the copy's
    /// loads), and that stall was the walker's largest cost.
    pub fn read_into<S: Source>(
        &mut self,
        s: &mut S,
        idx: usize,
        depth: usize,
        slot: &mut Value,
    ) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let nodes = self.nodes;
        match &nodes[idx] {
            Node::Null => {}
            Node::Boolean => *slot = Value::Bool(read_bool(s)?),
            Node::Int => {
                let n = s.long()?;
                *slot = self.int(n);
            }
            Node::Long => *slot = Value::Int(i128::from(s.long()?)),
            Node::Float => {
                let b = s.take(4)?;
                *slot = Value::Float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
            }
            Node::Double => *slot = Value::Float(read_double(s)?),
            Node::Bytes => {
                let n = read_len(s)?;
                if !self.over_budget(s, n)? {
                    *slot = Value::Bytes(s.take_vec(n)?);
                }
            }
            Node::String => self.string_into(s, slot)?,
            Node::Fixed(_, size) => *slot = Value::Bytes(s.take_vec(*size)?),
            Node::Enum(name, symbols) => {
                let i = s.long()?;
                let sym = usize::try_from(i).ok().and_then(|i| symbols.get(i));
                match sym {
                    Some(sym) => *slot = Value::String(Str::from(sym.as_str())),
                    None => {
                        return Err(Malformed(format!(
                            "enum {} has no symbol number {i}",
                            name.full
                        )))
                    }
                }
            }
            Node::Array(item) => {
                let mut out = Vec::new();
                while let Some(count) = self.block_count(s)? {
                    out.reserve(count.min(1024));
                    for _ in 0..count {
                        out.push(Value::Null);
                        if let Some(v) = out.last_mut() {
                            self.read_into(s, *item, depth + 1, v)?;
                        }
                    }
                }
                *slot = Value::Array(out);
            }
            Node::Map(values) => {
                let mut out: Vec<(Value, Value)> = Vec::new();
                while let Some(count) = self.block_count(s)? {
                    for _ in 0..count {
                        let n = read_len(s)?;
                        let key = if self.over_budget(s, n)? {
                            Value::Null
                        } else {
                            match s.take_string(n)? {
                                Ok(k) => Value::String(k),
                                Err(e) => {
                                    self.invalid.get_or_insert_with(|| {
                                        format!(
                                            "map key is not valid UTF-8 (at byte {} of the key)",
                                            e.valid_up_to()
                                        )
                                    });
                                    Value::Null
                                }
                            }
                        };
                        out.push((key, Value::Null));
                        if let Some((_, v)) = out.last_mut() {
                            self.read_into(s, *values, depth + 1, v)?;
                        }
                    }
                }
                *slot = Value::Map(Map::from(out));
            }
            Node::Union(branches) => {
                let i = s.long()?;
                match usize::try_from(i).ok().and_then(|i| branches.get(i)) {
                    Some(&b) => self.read_into(s, b, depth + 1, slot)?,
                    None => {
                        return Err(Malformed(format!(
                            "union branch {i} does not exist (the union has {})",
                            branches.len()
                        )))
                    }
                }
            }
            Node::Record(_, fields) => self.record(s, fields, depth, slot)?,
            Node::Logical(_, inner) => self.read_into(s, *inner, depth, slot)?,
        }
        Ok(())
    }

    /// A record's fields, in order, into `slot`. The entries are made first, keys cloned and
    /// values null, and each value is then read into its place. Leaves are read here rather
    /// than through a call per field.
    fn record<S: Source>(
        &mut self,
        s: &mut S,
        fields: &[Field],
        depth: usize,
        slot: &mut Value,
    ) -> Result<(), Malformed> {
        let nodes = self.nodes;
        let mut out: Vec<(Value, Value)> = fields
            .iter()
            .map(|f| (Value::String(f.key()), Value::Null))
            .collect();
        for ((_, v), f) in out.iter_mut().zip(fields) {
            match &nodes[f.node] {
                Node::Long => *v = Value::Int(i128::from(s.long()?)),
                Node::Int => {
                    let n = s.long()?;
                    *v = self.int(n);
                }
                Node::Double => *v = Value::Float(read_double(s)?),
                Node::String => self.string_into(s, v)?,
                Node::Boolean => *v = Value::Bool(read_bool(s)?),
                _ => self.read_into(s, f.node, depth + 1, v)?,
            }
        }
        *slot = Value::Map(Map::from(out));
        Ok(())
    }

    /// A `string` into `slot` (left null when it is not UTF-8 or over the budget).
    #[inline]
    fn string_into<S: Source>(&mut self, s: &mut S, slot: &mut Value) -> Result<(), Malformed> {
        let n = read_len(s)?;
        if self.over_budget(s, n)? {
            return Ok(());
        }
        match s.take_string(n)? {
            Ok(st) => *slot = Value::String(st),
            Err(e) => self.not_utf8(e),
        }
        Ok(())
    }

    #[cold]
    fn not_utf8(&mut self, e: Utf8Error) {
        if self.invalid.is_none() {
            self.invalid = Some(format!(
                "string is not valid UTF-8 (at byte {} of the string)",
                e.valid_up_to()
            ));
        }
    }

    /// An `int`: a varint whose value does not fit in 32 bits keeps the framing but is not
    /// an `int`, so the datum is rejected once read.
    #[inline]
    fn int(&mut self, n: i64) -> Value {
        if i32::try_from(n).is_err() && self.invalid.is_none() {
            self.invalid = Some(format!("int {n} does not fit in 32 bits"));
        }
        Value::Int(i128::from(n))
    }

    /// Walks one datum without building its value: the same framing checks as [`read`]
    /// (booleans, enum symbols, union branches, block counts against the item limit), none
    /// of the content checks (UTF-8), and nothing allocated.
    ///
    /// [`read`]: DatumReader::read
    pub fn skip<S: Source>(
        &mut self,
        s: &mut S,
        idx: usize,
        depth: usize,
    ) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let nodes = self.nodes;
        match &nodes[idx] {
            Node::Null => {}
            Node::Boolean => {
                read_bool(s)?;
            }
            Node::Int | Node::Long => s.skip_long()?,
            Node::Float => s.skip(4)?,
            Node::Double => s.skip(8)?,
            Node::Bytes | Node::String => {
                let n = read_len(s)?;
                s.skip(n)?;
            }
            Node::Fixed(_, size) => s.skip(*size)?,
            Node::Enum(name, symbols) => {
                let i = read_long(s)?;
                if usize::try_from(i)
                    .ok()
                    .and_then(|i| symbols.get(i))
                    .is_none()
                {
                    return Err(Malformed(format!(
                        "enum {} has no symbol number {i}",
                        name.full
                    )));
                }
            }
            Node::Array(item) => {
                while let Some(count) = self.block_count(s)? {
                    for _ in 0..count {
                        self.skip(s, *item, depth + 1)?;
                    }
                }
            }
            Node::Map(values) => {
                while let Some(count) = self.block_count(s)? {
                    for _ in 0..count {
                        let n = read_len(s)?;
                        s.skip(n)?;
                        self.skip(s, *values, depth + 1)?;
                    }
                }
            }
            Node::Union(branches) => {
                let i = read_long(s)?;
                match usize::try_from(i).ok().and_then(|i| branches.get(i)) {
                    Some(&b) => self.skip(s, b, depth + 1)?,
                    None => {
                        return Err(Malformed(format!(
                            "union branch {i} does not exist (the union has {})",
                            branches.len()
                        )))
                    }
                }
            }
            Node::Record(_, fields) => {
                for f in fields {
                    // Leaves are skipped here rather than through a call per field.
                    match &nodes[f.node] {
                        Node::Int | Node::Long => s.skip_long()?,
                        Node::Double => s.skip(8)?,
                        Node::Boolean => {
                            read_bool(s)?;
                        }
                        Node::String | Node::Bytes => {
                            let n = read_len(s)?;
                            s.skip(n)?;
                        }
                        _ => self.skip(s, f.node, depth + 1)?,
                    }
                }
            }
            Node::Logical(_, inner) => self.skip(s, *inner, depth)?,
        }
        Ok(())
    }

    /// Skips `n` bytes and says so if keeping them would break the budget.
    fn over_budget<S: Source>(&mut self, s: &mut S, n: usize) -> Result<bool, Malformed> {
        let Some((start, max)) = self.budget else {
            return Ok(false);
        };
        let end = (s.pos() - start).saturating_add(n as u64);
        if end <= max as u64 {
            return Ok(false);
        }
        s.skip(n)?;
        self.invalid
            .get_or_insert_with(|| format!("the datum is over the limit of {max} bytes"));
        Ok(true)
    }

    /// The item count of the next array/map block; `None` after the last block.
    fn block_count<S: Source>(&mut self, s: &mut S) -> Result<Option<usize>, Malformed> {
        let n = read_long(s)?;
        if n == 0 {
            return Ok(None);
        }
        if n < 0 {
            // A negative count is followed by the block's size in bytes, which we do not need.
            read_long(s)?;
        }
        let count = usize::try_from(n.unsigned_abs())
            .map_err(|_| Malformed(format!("block of {n} items")))?;
        if count > self.items_left {
            return Err(Malformed(format!(
                "block of {count} items is more than the record size limit allows"
            )));
        }
        self.items_left -= count;
        Ok(Some(count))
    }
}

/// A value that does not fit the schema, with the path to it.
#[derive(Debug)]
pub(crate) struct Mismatch {
    /// Path segments, innermost first.
    path: Vec<String>,
    reason: String,
}

impl Mismatch {
    fn new(reason: impl Into<String>) -> Self {
        Mismatch {
            path: Vec::new(),
            reason: reason.into(),
        }
    }

    fn at(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            return f.write_str(&self.reason);
        }
        f.write_str("at ")?;
        for seg in self.path.iter().rev() {
            f.write_str(seg)?;
        }
        write!(f, ": {}", self.reason)
    }
}

fn expected(node: &Node, v: &Value) -> Mismatch {
    Mismatch::new(format!("expected {}, found {}", node.type_name(), v.kind()))
}

/// Writes `v` as a datum of `nodes[idx]`. On error `out` may hold a partial datum: callers
/// truncate it.
pub(crate) fn write(
    nodes: &[Node],
    idx: usize,
    v: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Mismatch> {
    write_as::<false>(nodes, idx, v, out, depth)
}

/// Writes a schema default as a datum of `nodes[idx]`, holding it to its logical types as
/// the checker does (a `uuid` string is a UUID; a `float` fits in 32 bits), so that a default
/// the datum writer takes is one the checker conforms.
pub(crate) fn write_default(
    nodes: &[Node],
    idx: usize,
    v: &Value,
    out: &mut Vec<u8>,
) -> Result<(), Mismatch> {
    write_as::<true>(nodes, idx, v, out, 0)
}

/// What a default must be beyond its underlying type's value.
fn default_fits(node: &Node, v: &Value) -> Result<(), Mismatch> {
    match (node, v) {
        (Node::Logical(Logical::Uuid, _), Value::String(s)) if !is_uuid(s) => {
            Err(Mismatch::new("a uuid default is a UUID string"))
        }
        (Node::Float, Value::Float(x)) if x.is_finite() && x.abs() > f64::from(f32::MAX) => {
            Err(Mismatch::new("number is too large for a float"))
        }
        _ => Ok(()),
    }
}

fn write_as<const DEFAULT: bool>(
    nodes: &[Node],
    idx: usize,
    v: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Mismatch> {
    if depth > MAX_DEPTH {
        return Err(Mismatch::new(format!(
            "nested deeper than {MAX_DEPTH} levels"
        )));
    }
    let node = &nodes[idx];
    if DEFAULT {
        default_fits(node, v)?;
    }
    match (node, v) {
        (Node::Null, Value::Null) => {}
        (Node::Boolean, Value::Bool(b)) => out.push(u8::from(*b)),
        (Node::Int, Value::Int(i)) => match i32::try_from(*i) {
            Ok(i) => write_long(out, i64::from(i)),
            Err(_) => return Err(Mismatch::new(format!("{i} does not fit in an int"))),
        },
        (Node::Long, Value::Int(i)) => match i64::try_from(*i) {
            Ok(i) => write_long(out, i),
            Err(_) => return Err(Mismatch::new(format!("{i} does not fit in a long"))),
        },
        (Node::Float, Value::Float(x)) => out.extend_from_slice(&(*x as f32).to_le_bytes()),
        (Node::Float, Value::Int(i)) => out.extend_from_slice(&(*i as f32).to_le_bytes()),
        (Node::Double, Value::Float(x)) => out.extend_from_slice(&x.to_le_bytes()),
        (Node::Double, Value::Int(i)) => out.extend_from_slice(&(*i as f64).to_le_bytes()),
        (Node::Bytes, Value::Bytes(b)) => {
            write_long(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        (Node::Bytes | Node::String, Value::String(s)) => {
            write_long(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
        // A string stands for its UTF-8 bytes, as for `bytes` (JSON has no bytes).
        (Node::Fixed(name, size), Value::Bytes(_) | Value::String(_)) => {
            let b = match v {
                Value::String(s) => s.as_bytes(),
                Value::Bytes(b) => b.as_slice(),
                _ => &[],
            };
            if b.len() != *size {
                return Err(Mismatch::new(format!(
                    "fixed {} takes {size} bytes, found {}",
                    name.full,
                    b.len()
                )));
            }
            out.extend_from_slice(b);
        }
        (Node::Enum(name, symbols), Value::String(s)) => {
            match symbols.iter().position(|x| x == s) {
                Some(i) => write_long(out, i as i64),
                None => {
                    return Err(Mismatch::new(format!(
                        "'{s}' is not a symbol of enum {}",
                        name.full
                    )))
                }
            }
        }
        (Node::Array(item), Value::Array(items)) => {
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for (i, x) in items.iter().enumerate() {
                    write_as::<DEFAULT>(nodes, *item, x, out, depth + 1)
                        .map_err(|e| e.at(format!("[{i}]")))?;
                }
            }
            out.push(0);
        }
        (Node::Map(values), Value::Map(map)) => {
            if !map.is_empty() {
                write_long(out, map.len() as i64);
                for (k, x) in map.iter() {
                    let Value::String(k) = k else {
                        return Err(Mismatch::new(format!(
                            "Avro map keys are strings, found {}",
                            k.kind()
                        )));
                    };
                    write_long(out, k.len() as i64);
                    out.extend_from_slice(k.as_bytes());
                    write_as::<DEFAULT>(nodes, *values, x, out, depth + 1)
                        .map_err(|e| e.at(format!("[{k:?}]")))?;
                }
            }
            out.push(0);
        }
        (Node::Record(_, fields), Value::Map(map)) => {
            for f in fields {
                let seg = || format!(".{}", f.name);
                match map.get(&f.name) {
                    Some(x) => write_as::<DEFAULT>(nodes, f.node, x, out, depth + 1)
                        .map_err(|e| e.at(seg()))?,
                    None => match &f.default {
                        Some(d) => write_as::<DEFAULT>(nodes, f.node, d, out, depth + 1)
                            .map_err(|e| e.at(seg()))?,
                        None => {
                            match write_as::<DEFAULT>(nodes, f.node, &Value::Null, out, depth + 1) {
                                Ok(()) => {}
                                Err(_) => return Err(Mismatch::new("missing field").at(seg())),
                            }
                        }
                    },
                }
            }
        }
        (Node::Union(branches), v) => {
            return write_union::<DEFAULT>(nodes, branches, v, out, depth)
        }
        (Node::Logical(_, inner), v) => return write_as::<DEFAULT>(nodes, *inner, v, out, depth),
        (node, v) => return Err(expected(node, v)),
    }
    Ok(())
}

/// How well a value suits a branch: 0 as is, 1 after widening, `None` not at all.
fn rank(node: &Node, v: &Value) -> Option<u8> {
    match (node, v) {
        (Node::Null, Value::Null)
        | (Node::Boolean, Value::Bool(_))
        | (Node::Int | Node::Long, Value::Int(_))
        | (Node::Float | Node::Double, Value::Float(_))
        | (Node::Bytes | Node::Fixed(..), Value::Bytes(_))
        | (Node::String | Node::Enum(..), Value::String(_))
        | (Node::Array(_), Value::Array(_))
        | (Node::Map(_) | Node::Record(..), Value::Map(_)) => Some(0),
        (Node::Float | Node::Double, Value::Int(_))
        | (Node::Bytes | Node::Fixed(..), Value::String(_)) => Some(1),
        _ => None,
    }
}

/// The node at `idx` with a logical type looked through.
#[inline]
fn underlying(nodes: &[Node], idx: usize) -> usize {
    match nodes[idx] {
        Node::Logical(_, inner) => inner,
        _ => idx,
    }
}

fn write_union<const DEFAULT: bool>(
    nodes: &[Node],
    branches: &[usize],
    v: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Mismatch> {
    let start = out.len();
    let mut last_err = None;
    for want in 0..=1u8 {
        for (i, &b) in branches.iter().enumerate() {
            if rank(&nodes[underlying(nodes, b)], v) != Some(want) {
                continue;
            }
            write_long(out, i as i64);
            match write_as::<DEFAULT>(nodes, b, v, out, depth + 1) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    out.truncate(start);
                    last_err = Some(e);
                }
            }
        }
    }
    Err(last_err.unwrap_or_else(|| {
        let names: Vec<&str> = branches
            .iter()
            .map(|&b| nodes[underlying(nodes, b)].type_name())
            .collect();
        Mismatch::new(format!(
            "{} matches no branch of the union [{}]",
            v.kind(),
            names.join(", ")
        ))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_at(bytes: &[u8], pad: usize) -> Result<(i64, usize), String> {
        let mut data = bytes.to_vec();
        data.extend(std::iter::repeat_n(0u8, pad));
        let mut s = SliceSource { data: &data, at: 0 };
        s.long().map(|v| (v, s.at)).map_err(|e| e.0)
    }

    // The fast path (ten bytes left) and the one near the end read the same varints and
    // refuse the same ones.
    #[test]
    fn varints_read_alike_near_the_end_and_away_from_it() {
        for v in [
            0i64,
            -1,
            1,
            63,
            -64,
            64,
            300,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut enc = Vec::new();
            write_long(&mut enc, v);
            for pad in [0, 3, 10] {
                assert_eq!(
                    long_at(&enc, pad),
                    Ok((v, enc.len())),
                    "{v} with {pad} after"
                );
            }
        }
        let eleven = [0xffu8; 11];
        for pad in [0, 10] {
            let err = long_at(&eleven, pad).unwrap_err();
            assert!(err.contains("longer than 10 bytes"), "{err}");
        }
        assert!(long_at(&[0x80, 0x80], 0)
            .unwrap_err()
            .contains("ends early"));
    }

    /// A source over `bytes` followed by `pad` bytes with every bit set (no varint ends in
    /// them and none is ASCII), reading from the start.
    fn padded(bytes: &[u8], pad: usize) -> Vec<u8> {
        let mut data = bytes.to_vec();
        data.extend(std::iter::repeat_n(0xffu8, pad));
        data
    }

    // Skipping a varint eight bytes at a time stops where reading it does, and refuses what
    // reading refuses.
    #[test]
    fn varints_skip_as_they_read() {
        let mut cases: Vec<Vec<u8>> = [0i64, -1, 1, 63, -64, 64, 300, 1 << 40, i64::MIN, i64::MAX]
            .iter()
            .map(|&v| {
                let mut enc = Vec::new();
                write_long(&mut enc, v);
                enc
            })
            .collect();
        cases.push(vec![0xff; 11]);
        cases.push(vec![0x80, 0x80]);
        for enc in &cases {
            for pad in [0, 3, 7, 8, 16] {
                let data = padded(enc, pad);
                let mut read = SliceSource { data: &data, at: 0 };
                let mut skip = SliceSource { data: &data, at: 0 };
                let r = read.long().map(|_| read.at).map_err(|e| e.0);
                let k = skip.skip_long().map(|()| skip.at).map_err(|e| e.0);
                assert_eq!(r.is_ok(), k.is_ok(), "{enc:?} + {pad}: {r:?} / {k:?}");
                if r.is_ok() {
                    assert_eq!(r, k, "{enc:?} + {pad}");
                }
            }
        }
    }

    // Strings and bytes read alike whether the short copy applies (enough bytes left, short,
    // ASCII) or not: the same value, the same position after, the same refusal.
    #[test]
    fn short_values_read_as_long_ones() {
        let texts: [&[u8]; 8] = [
            b"",
            b"a",
            b"name123",
            b"exactly twenty-four byte",
            b"twenty-five bytes long!!!",
            "na\u{ef}ve".as_bytes(),
            b"bad \xff utf-8",
            b"\x7f\x00 controls",
        ];
        for text in texts {
            for pad in [0, 5, SHORT, 2 * SHORT] {
                let data = padded(text, pad);
                let n = text.len();
                let mut s = SliceSource { data: &data, at: 0 };
                let st = s.take_string(n).map_err(|e| e.0);
                assert_eq!(s.at, n, "{text:?} + {pad}");
                match std::str::from_utf8(text) {
                    Ok(want) => assert_eq!(st, Ok(Ok(Str::from(want))), "{text:?} + {pad}"),
                    Err(e) => assert_eq!(st, Ok(Err(e)), "{text:?} + {pad}"),
                }
                let mut s = SliceSource { data: &data, at: 0 };
                assert_eq!(s.take_vec(n).map_err(|e| e.0), Ok(text.to_vec()));
                assert_eq!(s.at, n);
            }
            // One byte short of the value: refused, as by `take`.
            let mut s = SliceSource {
                data: &text[..text.len().saturating_sub(1)],
                at: 0,
            };
            if !text.is_empty() {
                assert!(s.take_string(text.len()).is_err());
                assert!(s.take_vec(text.len()).is_err());
            }
        }
    }

    // A record's keys are its field names, whatever their length or script.
    #[test]
    fn keys_are_the_field_names() {
        for name in [
            "a",
            "id",
            "exactly twenty-four byte",
            "twenty-five bytes long!!!",
            "\u{e9}t\u{e9}",
            "",
        ] {
            let f = Field::new(name.to_owned(), 0, None);
            assert_eq!(f.key(), name);
        }
    }
}
