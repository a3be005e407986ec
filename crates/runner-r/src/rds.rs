//! R's own serialization format (what `serialize(x, NULL, version = 2, xdr = FALSE)`
//! writes and `unserialize` reads), for the subset of R values that records are made of:
//! NULL, logical, integer, double, character, raw and list vectors with their attributes.
//!
//! R reads and writes this format in C, so a batch costs R one `unserialize` and one
//! `serialize` call whatever its size; see `docs/r-models.md` for why it was chosen over JSON.
//! The native binary form (`B\n`, little-endian on the machines the engine runs on) is
//! written; both it and the XDR form (`X\n`, big-endian) are read.

use runtime_core::{Map, Value};

const NILSXP: u32 = 0;
const SYMSXP: u32 = 1;
const LISTSXP: u32 = 2;
const CHARSXP: u32 = 9;
const LGLSXP: u32 = 10;
const INTSXP: u32 = 13;
const REALSXP: u32 = 14;
const CPLXSXP: u32 = 15;
const STRSXP: u32 = 16;
const VECSXP: u32 = 19;
const EXPRSXP: u32 = 20;
const RAWSXP: u32 = 24;
const REFSXP: u32 = 255;
const NILVALUE_SXP: u32 = 254;
const GLOBALENV_SXP: u32 = 253;
const EMPTYENV_SXP: u32 = 242;
const BASEENV_SXP: u32 = 241;
const ALTREP_SXP: u32 = 238;

const IS_OBJECT: u32 = 1 << 8;
const HAS_ATTR: u32 = 1 << 9;
const HAS_TAG: u32 = 1 << 10;
/// CHARSXP encoding bits, in the `levels` part of the flags (shifted by 12).
const UTF8_MASK: u32 = 1 << 3;
const LATIN1_MASK: u32 = 1 << 2;

/// R's integer NA (also the logical NA).
pub const NA_INTEGER: i32 = i32::MIN;
/// R's `NA_real_`: a NaN whose low word is 1954.
const NA_REAL_BITS: u64 = 0x7FF0_0000_0000_07A2;

/// Nesting deeper than this is refused (R values cannot be cyclic, but a frame can lie).
const MAX_DEPTH: usize = 200;

/// A matrix with no columns leaves as this many empty rows at most.
const MAX_EMPTY_ROWS: usize = 1 << 16;

/// An R value as read from the wire, before it becomes a record value.
#[derive(Clone, Debug, PartialEq)]
pub enum RObj {
    Null,
    Logical(Vec<i32>),
    Integer(Vec<i32>),
    Double(Vec<f64>),
    /// `None` is `NA_character_`.
    Character(Vec<Option<String>>),
    Raw(Vec<u8>),
    List(Vec<RValue>),
    Symbol(String),
    /// A pairlist (attributes, or a pairlist value): tagged values in order.
    Pairs(Vec<(Option<String>, RValue)>),
    /// Types the engine does not turn into records (complex, closures, environments...),
    /// kept only so that the error can name them.
    Unsupported(&'static str),
}

/// An R value with its attributes (`names`, `class`, `levels`, `dim`, `row.names`...).
#[derive(Clone, Debug, PartialEq)]
pub struct RValue {
    pub obj: RObj,
    pub attrs: Vec<(String, RValue)>,
}

impl RValue {
    pub fn plain(obj: RObj) -> RValue {
        RValue {
            obj,
            attrs: Vec::new(),
        }
    }

    pub fn attr(&self, name: &str) -> Option<&RValue> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The names attribute as strings (`NA` names become `"NA"`).
    pub fn names(&self) -> Option<Vec<String>> {
        match &self.attr("names")?.obj {
            RObj::Character(n) => Some(
                n.iter()
                    .map(|s| s.clone().unwrap_or_else(|| "NA".to_owned()))
                    .collect(),
            ),
            _ => None,
        }
    }

    pub fn has_class(&self, class: &str) -> bool {
        matches!(self.attr("class").map(|c| &c.obj),
            Some(RObj::Character(c)) if c.iter().any(|s| s.as_deref() == Some(class)))
    }

    /// The list element called `name`.
    pub fn field(&self, name: &str) -> Option<&RValue> {
        let RObj::List(items) = &self.obj else {
            return None;
        };
        let names = self.names()?;
        names
            .iter()
            .position(|n| n == name)
            .and_then(|i| items.get(i))
    }
}

// ---------------------------------------------------------------------------------------
// Writing

/// An attribute to write: its name and what writes its value.
type Attribute<'a> = (&'a str, &'a mut dyn FnMut(&mut Writer));

/// Builds one frame body: the serialization of an R value.
pub struct Writer {
    buf: Vec<u8>,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Writer {
        let mut w = Writer {
            buf: Vec::with_capacity(1 << 12),
        };
        w.buf.extend_from_slice(b"B\n");
        w.int(2); // format version
        w.int(0x0004_0202); // written by "R 4.2.2"
        w.int(0x0002_0300); // readable by R >= 2.3.0
        w
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    fn int(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_ne_bytes());
    }

    fn flags(&mut self, f: u32) {
        self.int(f as i32);
    }

    fn len(&mut self, n: usize) {
        match i32::try_from(n) {
            Ok(n) => self.int(n),
            Err(_) => {
                // A long vector: -1, then the length as two 32-bit halves.
                self.int(-1);
                self.int((n >> 32) as i32);
                self.int(n as u32 as i32);
            }
        }
    }

    pub fn null(&mut self) {
        self.flags(NILVALUE_SXP);
    }

    fn charsxp(&mut self, s: Option<&str>) {
        match s {
            None => {
                self.flags(CHARSXP);
                self.int(-1);
            }
            Some(s) => {
                let enc = if s.is_ascii() { 1 << 6 } else { UTF8_MASK };
                self.flags(CHARSXP | (enc << 12));
                self.len(s.len());
                self.buf.extend_from_slice(s.as_bytes());
            }
        }
    }

    /// Starts a vector: callers write its data, then its attributes if `attrs`.
    fn vector_header(&mut self, ty: u32, n: usize, attrs: bool, object: bool) {
        let mut f = ty;
        if attrs {
            f |= HAS_ATTR;
        }
        if object {
            f |= IS_OBJECT;
        }
        self.flags(f);
        self.len(n);
    }

    pub fn strings<'a>(&mut self, items: impl ExactSizeIterator<Item = Option<&'a str>>) {
        self.vector_header(STRSXP, items.len(), false, false);
        for s in items {
            self.charsxp(s);
        }
    }

    pub fn string(&mut self, s: &str) {
        self.strings(std::iter::once(Some(s)));
    }

    pub fn ints(&mut self, items: &[i32]) {
        self.vector_header(INTSXP, items.len(), false, false);
        for v in items {
            self.int(*v);
        }
    }

    pub fn doubles(&mut self, items: &[f64]) {
        self.vector_header(REALSXP, items.len(), false, false);
        for v in items {
            self.buf.extend_from_slice(&v.to_ne_bytes());
        }
    }

    pub fn logicals(&mut self, items: &[i32]) {
        self.vector_header(LGLSXP, items.len(), false, false);
        for v in items {
            self.int(*v);
        }
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.vector_header(RAWSXP, bytes.len(), false, false);
        self.buf.extend_from_slice(bytes);
    }

    /// A pairlist of attributes, `names` first: `(name, writer of the value)`.
    fn attributes(&mut self, attrs: &mut [Attribute<'_>]) {
        for (name, write) in attrs.iter_mut() {
            self.flags(LISTSXP | HAS_TAG);
            self.flags(SYMSXP);
            self.charsxp(Some(name));
            write(self);
        }
        self.null();
    }

    /// A named list: `list(a = ..., b = ...)`; each field written by the closure.
    pub fn named_list<T>(&mut self, fields: &[(&str, T)], mut write: impl FnMut(&mut Writer, &T)) {
        self.vector_header(VECSXP, fields.len(), true, false);
        for (_, v) in fields {
            write(self, v);
        }
        let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        self.attributes(&mut [("names", &mut |w: &mut Writer| {
            w.strings(names.iter().map(|n| Some(*n)))
        })]);
    }

    /// An unnamed list of `n` elements; the caller writes each element next.
    pub fn list_header(&mut self, n: usize) {
        self.vector_header(VECSXP, n, false, false);
    }

    /// A record value, mapped as `docs/r-models.md` describes.
    pub fn value(&mut self, v: &Value) {
        self.value_at(v, 0);
    }

    fn value_at(&mut self, v: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            self.null();
            return;
        }
        match v {
            Value::Null => self.null(),
            Value::Bool(b) => self.logicals(&[i32::from(*b)]),
            Value::Int(i) => match r_int(*i) {
                Some(i) => self.ints(&[i]),
                None => self.doubles(&[*i as f64]),
            },
            Value::Float(f) => self.doubles(&[*f]),
            Value::String(s) => self.string(s),
            Value::Bytes(b) => self.raw(b),
            Value::Array(items) => self.array(items, depth),
            Value::Map(m) => {
                self.vector_header(VECSXP, m.len(), true, false);
                for (_, v) in m.iter() {
                    self.value_at(v, depth + 1);
                }
                let keys: Vec<String> = m.iter().map(|(k, _)| key_string(k)).collect();
                self.attributes(&mut [("names", &mut |w: &mut Writer| {
                    w.strings(keys.iter().map(|k| Some(k.as_str())))
                })]);
            }
        }
    }

    /// Arrays of scalars of one kind (nulls allowed) become atomic vectors; others lists.
    fn array(&mut self, items: &[Value], depth: usize) {
        match vector_kind(items) {
            Some(VectorKind::Logical) => {
                let v: Vec<i32> = items
                    .iter()
                    .map(|x| match x {
                        Value::Bool(b) => i32::from(*b),
                        _ => NA_INTEGER,
                    })
                    .collect();
                self.logicals(&v);
            }
            Some(VectorKind::Integer) => {
                let v: Vec<i32> = items
                    .iter()
                    .map(|x| match x {
                        Value::Int(i) => r_int(*i).unwrap_or(NA_INTEGER),
                        _ => NA_INTEGER,
                    })
                    .collect();
                self.ints(&v);
            }
            Some(VectorKind::Double) => {
                let v: Vec<f64> = items
                    .iter()
                    .map(|x| match x {
                        Value::Int(i) => *i as f64,
                        Value::Float(f) => *f,
                        _ => f64::from_bits(NA_REAL_BITS),
                    })
                    .collect();
                self.doubles(&v);
            }
            Some(VectorKind::Character) => self.strings(items.iter().map(|x| match x {
                Value::String(s) => Some(s.as_str()),
                _ => None,
            })),
            None => {
                self.list_header(items.len());
                for item in items {
                    self.value_at(item, depth + 1);
                }
            }
        }
    }

    /// A data.frame of records: a column per key (in order of first appearance), atomic
    /// where the column's values allow, NA where a record lacks the key. Records that are
    /// not maps give a single column `value`.
    pub fn data_frame(&mut self, records: &[Value]) {
        let mut columns: Vec<(String, Vec<Value>)> = Vec::new();
        let all_maps = records.iter().all(|r| matches!(r, Value::Map(_)));
        if all_maps {
            let mut index: std::collections::HashMap<String, usize> = Default::default();
            for (row, r) in records.iter().enumerate() {
                let Value::Map(m) = r else { continue };
                for (k, v) in m.iter() {
                    let k = key_string(k);
                    let col = match index.get(&k) {
                        Some(c) => *c,
                        None => {
                            index.insert(k.clone(), columns.len());
                            columns.push((k, vec![Value::Null; records.len()]));
                            columns.len() - 1
                        }
                    };
                    columns[col].1[row] = v.clone();
                }
            }
        } else {
            columns.push(("value".to_owned(), records.to_vec()));
        }
        self.vector_header(VECSXP, columns.len(), true, true);
        for (_, col) in &columns {
            // Columns are vectors: a record field that is itself an array stays a list cell.
            match vector_kind(col) {
                Some(_) => self.array(col, 1),
                None => {
                    self.list_header(col.len());
                    for v in col {
                        self.value_at(v, 2);
                    }
                }
            }
        }
        let n = records.len();
        self.attributes(&mut [
            ("names", &mut |w: &mut Writer| {
                w.strings(columns.iter().map(|(k, _)| Some(k.as_str())))
            }),
            ("class", &mut |w: &mut Writer| w.string("data.frame")),
            ("row.names", &mut |w: &mut Writer| {
                // R's compact form for 1..n.
                w.ints(&[NA_INTEGER, -(i32::try_from(n).unwrap_or(i32::MAX))])
            }),
        ]);
    }
}

fn r_int(i: i128) -> Option<i32> {
    i32::try_from(i).ok().filter(|i| *i != NA_INTEGER)
}

fn key_string(k: &Value) -> String {
    match k {
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum VectorKind {
    Logical,
    Integer,
    Double,
    Character,
}

fn vector_kind(items: &[Value]) -> Option<VectorKind> {
    let mut kind: Option<VectorKind> = None;
    for x in items {
        let k = match x {
            Value::Null => continue,
            Value::Bool(_) => VectorKind::Logical,
            Value::Int(i) if r_int(*i).is_some() => VectorKind::Integer,
            Value::Int(_) | Value::Float(_) => VectorKind::Double,
            Value::String(_) => VectorKind::Character,
            _ => return None,
        };
        kind = match (kind, k) {
            (None, k) => Some(k),
            (Some(a), b) if a == b => Some(a),
            (Some(VectorKind::Integer), VectorKind::Double)
            | (Some(VectorKind::Double), VectorKind::Integer) => Some(VectorKind::Double),
            _ => return None,
        };
    }
    kind
}

// ---------------------------------------------------------------------------------------
// Reading

/// Reads one serialized R value.
pub fn read(bytes: &[u8]) -> Result<RValue, String> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        big_endian: false,
        refs: Vec::new(),
    };
    let format = r.take(2)?;
    r.big_endian = match format {
        b"B\n" => cfg!(target_endian = "big"),
        b"X\n" => true,
        _ => return Err("not an R serialization in binary or XDR form".to_owned()),
    };
    let version = r.int()?;
    r.int()?;
    r.int()?;
    match version {
        2 => {}
        3 => {
            let n = r.len(1)?;
            r.take(n)?;
        }
        v => {
            return Err(format!(
                "R serialization format version {v} is not supported"
            ))
        }
    }
    r.item(0)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big_endian: bool,
    refs: Vec<String>,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("the R serialization ends early")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn int(&mut self) -> Result<i32, String> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| "short int")?;
        Ok(if self.big_endian {
            i32::from_be_bytes(b)
        } else {
            i32::from_le_bytes(b)
        })
    }

    fn double(&mut self) -> Result<f64, String> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| "short double")?;
        Ok(if self.big_endian {
            f64::from_be_bytes(b)
        } else {
            f64::from_le_bytes(b)
        })
    }

    /// A vector's length, each of whose elements takes at least `min_bytes` of what is left:
    /// a larger count is a lie, refused before anything is sized by it.
    fn len(&mut self, min_bytes: usize) -> Result<usize, String> {
        let n = self.int()?;
        let n = if n == -1 {
            let hi = self.int()? as u32 as u64;
            let lo = self.int()? as u32 as u64;
            (hi << 32) | lo
        } else {
            u64::try_from(n).map_err(|_| format!("a negative length {n}"))?
        };
        let n = usize::try_from(n).map_err(|_| "a length too large")?;
        if n.saturating_mul(min_bytes) > self.buf.len() - self.pos {
            return Err(format!("a length of {n} beyond the end of the data"));
        }
        Ok(n)
    }

    fn charsxp(&mut self, flags: u32) -> Result<Option<String>, String> {
        let n = self.int()?;
        if n == -1 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| "a negative string length")?;
        let bytes = self.take(n)?;
        let levels = flags >> 12;
        Ok(Some(if levels & LATIN1_MASK != 0 {
            bytes.iter().map(|b| char::from(*b)).collect()
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        }))
    }

    fn item(&mut self, depth: usize) -> Result<RValue, String> {
        if depth > MAX_DEPTH {
            return Err(format!("R values nested deeper than {MAX_DEPTH} levels"));
        }
        let flags = self.int()? as u32;
        let ty = flags & 0xff;
        let has_attr = flags & HAS_ATTR != 0;
        let has_tag = flags & HAS_TAG != 0;
        let obj = match ty {
            NILVALUE_SXP | NILSXP => return Ok(RValue::plain(RObj::Null)),
            GLOBALENV_SXP | EMPTYENV_SXP | BASEENV_SXP => {
                return Ok(RValue::plain(RObj::Unsupported("environment")))
            }
            REFSXP => {
                let mut index = (flags >> 8) as usize;
                if index == 0 {
                    index = usize::try_from(self.int()?).map_err(|_| "a negative reference")?;
                }
                let name = index
                    .checked_sub(1)
                    .and_then(|i| self.refs.get(i))
                    .ok_or_else(|| format!("a reference to unknown item {index}"))?;
                return Ok(RValue::plain(RObj::Symbol(name.clone())));
            }
            SYMSXP => {
                let inner = self.int()? as u32;
                if inner & 0xff != CHARSXP {
                    return Err("a symbol whose name is not a string".to_owned());
                }
                let name = self.charsxp(inner)?.unwrap_or_default();
                self.refs.push(name.clone());
                return Ok(RValue::plain(RObj::Symbol(name)));
            }
            LISTSXP => {
                let mut pairs = Vec::new();
                let mut attrs = Vec::new();
                let (mut attr_flag, mut tag_flag) = (has_attr, has_tag);
                loop {
                    if attr_flag {
                        let a = self.item(depth + 1)?;
                        if attrs.is_empty() {
                            attrs = pairs_to_attrs(a);
                        }
                    }
                    let tag = if tag_flag {
                        match self.item(depth + 1)?.obj {
                            RObj::Symbol(s) => Some(s),
                            _ => None,
                        }
                    } else {
                        None
                    };
                    let car = self.item(depth + 1)?;
                    pairs.push((tag, car));
                    // The CDR: another cell of the same list, or its end.
                    let next = self.int()? as u32;
                    match next & 0xff {
                        LISTSXP => {
                            attr_flag = next & HAS_ATTR != 0;
                            tag_flag = next & HAS_TAG != 0;
                        }
                        NILVALUE_SXP | NILSXP => break,
                        other => return Err(format!("a pairlist ending in type {other}")),
                    }
                }
                return Ok(RValue {
                    obj: RObj::Pairs(pairs),
                    attrs,
                });
            }
            CHARSXP => {
                let s = self.charsxp(flags)?;
                RObj::Character(vec![s])
            }
            LGLSXP | INTSXP => {
                let n = self.len(4)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.int()?);
                }
                if ty == LGLSXP {
                    RObj::Logical(v)
                } else {
                    RObj::Integer(v)
                }
            }
            REALSXP => {
                let n = self.len(8)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.double()?);
                }
                RObj::Double(v)
            }
            CPLXSXP => {
                let n = self.len(16)?;
                self.take(n.checked_mul(16).ok_or("a length too large")?)?;
                RObj::Unsupported("complex")
            }
            STRSXP => {
                // Each string is at least its flags and its length.
                let n = self.len(8)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let f = self.int()? as u32;
                    if f & 0xff != CHARSXP {
                        return Err("a character vector holding a non-string".to_owned());
                    }
                    v.push(self.charsxp(f)?);
                }
                RObj::Character(v)
            }
            VECSXP | EXPRSXP => {
                // Each element is at least its flags. Nothing is reserved up front: lists
                // nest, and each level reserving what its length claims would multiply
                // the frame's size by its depth.
                let n = self.len(4)?;
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(self.item(depth + 1)?);
                }
                if ty == EXPRSXP {
                    RObj::Unsupported("expression")
                } else {
                    RObj::List(v)
                }
            }
            RAWSXP => {
                let n = self.len(1)?;
                RObj::Raw(self.take(n)?.to_vec())
            }
            ALTREP_SXP => return Err("an ALTREP value (write with version = 2)".to_owned()),
            other => {
                return Err(format!(
                    "an R value of type {} that cannot become a record value",
                    type_name(other)
                ))
            }
        };
        let attrs = if has_attr {
            pairs_to_attrs(self.item(depth + 1)?)
        } else {
            Vec::new()
        };
        Ok(RValue { obj, attrs })
    }
}

fn pairs_to_attrs(v: RValue) -> Vec<(String, RValue)> {
    match v.obj {
        RObj::Pairs(p) => p
            .into_iter()
            .filter_map(|(k, v)| k.map(|k| (k, v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn type_name(ty: u32) -> &'static str {
    match ty {
        3 => "closure",
        4 => "environment",
        5 => "promise",
        6 => "language",
        7 | 8 => "builtin function",
        17 => "dots",
        21 => "bytecode",
        22 => "external pointer",
        23 => "weak reference",
        25 => "S4 object",
        _ => "other",
    }
}

// ---------------------------------------------------------------------------------------
// R values to record values

/// Doubles that are whole numbers within this bound leave as integers (as jsonlite
/// writes them); larger ones stay floats, since they cannot all be told apart.
const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

fn is_na_real(x: f64) -> bool {
    x.is_nan() && (x.to_bits() & 0xFFFF_FFFF) == (NA_REAL_BITS & 0xFFFF_FFFF)
}

fn double_value(x: f64) -> Value {
    if is_na_real(x) {
        Value::Null
    } else if x.fract() == 0.0 && x.abs() < EXACT_INT {
        Value::Int(x as i128)
    } else {
        Value::Float(x)
    }
}

/// The scalars of an atomic vector (factors as their labels), or `None` if not atomic.
fn scalars(v: &RValue) -> Result<Option<Vec<Value>>, String> {
    Ok(Some(match &v.obj {
        RObj::Logical(x) => x
            .iter()
            .map(|b| match *b {
                NA_INTEGER => Value::Null,
                b => Value::Bool(b != 0),
            })
            .collect(),
        RObj::Integer(x) if v.has_class("factor") => {
            let levels = match v.attr("levels").map(|l| &l.obj) {
                Some(RObj::Character(l)) => l.clone(),
                _ => Vec::new(),
            };
            x.iter()
                .map(|i| {
                    usize::try_from(*i)
                        .ok()
                        .and_then(|i| i.checked_sub(1))
                        .and_then(|i| levels.get(i).cloned().flatten())
                        .map_or(Value::Null, Value::from)
                })
                .collect()
        }
        RObj::Integer(x) => x
            .iter()
            .map(|i| match *i {
                NA_INTEGER => Value::Null,
                i => Value::Int(i128::from(i)),
            })
            .collect(),
        RObj::Double(x) => x.iter().map(|d| double_value(*d)).collect(),
        RObj::Character(x) => x
            .iter()
            .map(|s| s.as_deref().map_or(Value::Null, Value::from))
            .collect(),
        _ => return Ok(None),
    }))
}

/// Converts an R value to a record value as `docs/r-models.md` describes.
pub fn to_value(v: &RValue) -> Result<Value, String> {
    to_value_at(v, 0)
}

fn to_value_at(v: &RValue, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("R values nested deeper than {MAX_DEPTH} levels"));
    }
    match &v.obj {
        RObj::Null => return Ok(Value::Null),
        RObj::Raw(b) => return Ok(Value::Bytes(b.clone())),
        RObj::Unsupported(what) => {
            return Err(format!("an R {what} value cannot become a record value"))
        }
        RObj::Symbol(s) => return Err(format!("the R symbol '{s}' cannot become a record value")),
        RObj::List(items) if v.has_class("data.frame") => return data_frame(v, items, depth),
        RObj::List(items) => {
            return match v.names() {
                Some(names) => {
                    let mut m = Map::with_capacity(items.len());
                    for (k, item) in names.into_iter().zip(items) {
                        m.push(k, to_value_at(item, depth + 1)?);
                    }
                    Ok(Value::Map(m))
                }
                None => Ok(Value::Array(
                    items
                        .iter()
                        .map(|i| to_value_at(i, depth + 1))
                        .collect::<Result<_, _>>()?,
                )),
            };
        }
        RObj::Pairs(p) => {
            let mut m = Map::with_capacity(p.len());
            for (k, item) in p {
                m.push(k.clone().unwrap_or_default(), to_value_at(item, depth + 1)?);
            }
            return Ok(Value::Map(m));
        }
        _ => {}
    }
    let Some(items) = scalars(v)? else {
        return Err("an R value that cannot become a record value".to_owned());
    };
    if let Some(names) = v.names() {
        return Ok(Value::Map(names.into_iter().zip(items).collect()));
    }
    if let Some(RObj::Integer(dim)) = v.attr("dim").map(|d| &d.obj) {
        if let [rows, cols] = dim[..] {
            // A matrix (stored column by column) leaves as an array of rows. R keeps
            // rows x cols equal to the length; a frame that says otherwise is refused
            // before anything is sized by it, and so is a matrix of no columns with more
            // empty rows than MAX_EMPTY_ROWS (its size would be set by the dim alone).
            let fits = usize::try_from(rows)
                .ok()
                .zip(usize::try_from(cols).ok())
                .filter(|(r, c)| r.checked_mul(*c) == Some(items.len()))
                .filter(|(r, c)| *c > 0 || *r <= MAX_EMPTY_ROWS);
            let Some((rows, cols)) = fits else {
                return Err(format!(
                    "a matrix whose dim {rows} x {cols} does not match its {} values",
                    items.len()
                ));
            };
            let mut out = Vec::with_capacity(rows);
            for r in 0..rows {
                let row = (0..cols)
                    .filter_map(|c| items.get(c * rows + r).cloned())
                    .collect();
                out.push(Value::Array(row));
            }
            return Ok(Value::Array(out));
        }
    }
    let mut items = items;
    if items.len() == 1 && v.attr("dim").is_none() {
        return Ok(items.pop().unwrap_or_default());
    }
    Ok(Value::Array(items))
}

/// A data.frame leaves as an array of row maps.
fn data_frame(v: &RValue, columns: &[RValue], depth: usize) -> Result<Value, String> {
    let names = v.names().unwrap_or_default();
    let mut cols: Vec<Vec<Value>> = Vec::with_capacity(columns.len());
    for c in columns {
        match scalars(c)? {
            Some(s) => cols.push(s),
            None => match &c.obj {
                RObj::List(cells) => cols.push(
                    cells
                        .iter()
                        .map(|x| to_value_at(x, depth + 1))
                        .collect::<Result<_, _>>()?,
                ),
                _ => cols.push(vec![to_value_at(c, depth + 1)?]),
            },
        }
    }
    let rows = cols.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        let mut m = Map::with_capacity(cols.len());
        for (k, col) in names.iter().zip(&cols) {
            m.push(k.as_str(), col.get(r).cloned().unwrap_or_default());
        }
        out.push(Value::Map(m));
    }
    Ok(Value::Array(out))
}
