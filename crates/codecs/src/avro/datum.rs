//! Avro binary datums straight to and from [`Value`], driven by the compiled schema (no
//! intermediate `apache_avro::types::Value`).

use std::fmt;

use runtime_core::{Map, Value};

use super::schema::{is_uuid, Compiled, Logical, Node};

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

/// Passes over a variable-length integer, with the same length limit as [`read_long`].
#[inline]
fn skip_long<S: Source>(s: &mut S) -> Result<(), Malformed> {
    s.long().map(|_| ())
}

#[inline]
fn read_bool<S: Source>(s: &mut S) -> Result<Value, Malformed> {
    match s.byte()? {
        0 => Ok(Value::Bool(false)),
        1 => Ok(Value::Bool(true)),
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
        if depth > MAX_DEPTH {
            return Err(Malformed(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let nodes = self.nodes;
        Ok(match &nodes[idx] {
            Node::Null => Value::Null,
            Node::Boolean => read_bool(s)?,
            Node::Int => self.int(read_long(s)?),
            Node::Long => Value::Int(i128::from(read_long(s)?)),
            Node::Float => {
                let b = s.take(4)?;
                Value::Float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            Node::Double => Value::Float(read_double(s)?),
            Node::Bytes => {
                let n = read_len(s)?;
                if self.over_budget(s, n)? {
                    return Ok(Value::Null);
                }
                Value::Bytes(s.take(n)?.to_vec())
            }
            Node::String => self.string(s)?,
            Node::Fixed(_, size) => Value::Bytes(s.take(*size)?.to_vec()),
            Node::Enum(name, symbols) => {
                let i = read_long(s)?;
                let sym = usize::try_from(i).ok().and_then(|i| symbols.get(i));
                match sym {
                    Some(sym) => Value::String(sym.clone()),
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
                        out.push(self.read(s, *item, depth + 1)?);
                    }
                }
                Value::Array(out)
            }
            Node::Map(values) => {
                let mut out = Map::new();
                while let Some(count) = self.block_count(s)? {
                    for _ in 0..count {
                        let n = read_len(s)?;
                        let key = if self.over_budget(s, n)? {
                            Value::Null
                        } else {
                            match std::str::from_utf8(s.take(n)?) {
                                Ok(k) => Value::String(k.to_owned()),
                                Err(_) => {
                                    self.invalid
                                        .get_or_insert_with(|| "map key is not valid UTF-8".into());
                                    Value::Null
                                }
                            }
                        };
                        let v = self.read(s, *values, depth + 1)?;
                        out.push(key, v);
                    }
                }
                Value::Map(out)
            }
            Node::Union(branches) => {
                let i = read_long(s)?;
                match usize::try_from(i).ok().and_then(|i| branches.get(i)) {
                    Some(&b) => self.read(s, b, depth + 1)?,
                    None => {
                        return Err(Malformed(format!(
                            "union branch {i} does not exist (the union has {})",
                            branches.len()
                        )))
                    }
                }
            }
            Node::Record(_, fields) => {
                let mut out = Map::with_capacity(fields.len());
                for f in fields {
                    // Fixed-size leaves are read here rather than through a call per field.
                    let v = match &nodes[f.node] {
                        Node::Int => self.int(read_long(s)?),
                        Node::Long => Value::Int(i128::from(read_long(s)?)),
                        Node::Double => Value::Float(read_double(s)?),
                        Node::String => self.string(s)?,
                        Node::Boolean => read_bool(s)?,
                        _ => self.read(s, f.node, depth + 1)?,
                    };
                    out.push(Value::String(f.name.clone()), v);
                }
                Value::Map(out)
            }
            Node::Logical(_, inner) => return self.read(s, *inner, depth),
        })
    }

    /// A `string`: one that is not UTF-8 keeps the framing but rejects the datum once read.
    #[inline]
    fn string<S: Source>(&mut self, s: &mut S) -> Result<Value, Malformed> {
        let n = read_len(s)?;
        if self.over_budget(s, n)? {
            return Ok(Value::Null);
        }
        let bytes = s.take(n)?;
        Ok(match std::str::from_utf8(bytes) {
            Ok(st) => Value::String(st.to_owned()),
            Err(e) => {
                if self.invalid.is_none() {
                    self.invalid = Some(format!(
                        "string is not valid UTF-8 (at byte {} of the string)",
                        e.valid_up_to()
                    ));
                }
                Value::Null
            }
        })
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
            Node::Int | Node::Long => skip_long(s)?,
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
                        Node::Int | Node::Long => skip_long(s)?,
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
}
