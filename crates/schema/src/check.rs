//! Walking a value against a compiled schema: `check` only looks, `conform` also normalizes
//! (fills defaults, widens numbers, unwraps Avro-JSON union wrappers).
//!
//! Invariants:
//! - Nothing is allocated while a value conforms; messages are built only on the way out of
//!   a failure.
//! - A reason never holds data from the record (that goes in `found`, shown only when the
//!   caller asks): reasons are logged, records are masked unless debug is on. Field names and
//!   map keys do appear in paths.
//! - `conform` changes nothing when it fails before a union (a union's branch is chosen by
//!   `check`, so a half-converted branch is never left behind), but may leave earlier fields
//!   of a record converted when a later field fails; callers reject the whole record then.

use std::fmt;

use runtime_core::{Map, Value};

use crate::iso;
use codecs::avro::schema::{Compiled, Field, Logical, Named, Node};

/// Deep enough for real records, shallow enough never to overflow the stack.
pub(crate) const MAX_DEPTH: usize = 256;

/// Why a value does not conform, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Where in the record: `""` for the record itself, `.address.zip`, `.items[3]`,
    /// `.attrs["k"]`.
    pub path: String,
    /// What is wrong, without the record's data: safe to log.
    pub reason: String,
    /// A short rendering of the offending value, when there is one: for debug logs only.
    pub found: Option<String>,
}

impl Violation {
    /// The violation with the offending value, for debug logs and the `schema check` CLI.
    pub fn detailed(&self) -> Detailed<'_> {
        Detailed(self)
    }
}

/// `Field 'input' missing for record 'input_schema'`, `expected int, found string (at .age)`.
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)?;
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// [`Violation`] with the value that broke it: `expected int, found string (at .age; found "x")`.
pub struct Detailed<'a>(&'a Violation);

impl fmt::Display for Detailed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        f.write_str(&v.reason)?;
        match (v.path.is_empty(), &v.found) {
            (true, None) => Ok(()),
            (true, Some(found)) => write!(f, " (found {found})"),
            (false, None) => write!(f, " (at {})", v.path),
            (false, Some(found)) => write!(f, " (at {}; found {found})", v.path),
        }
    }
}

/// What may vary between checkers of the same schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Reject a record holding a field its schema does not name (default: accept and keep
    /// it; Avro writers drop it, JSON writers keep it).
    pub reject_extra_fields: bool,
}

/// A failure on its way up: path segments innermost first.
struct Fail {
    segments: Vec<Segment>,
    reason: String,
    found: Option<String>,
}

enum Segment {
    Field(String),
    Index(usize),
    Key(String),
    Branch(String),
}

impl Fail {
    fn new(reason: impl Into<String>, found: Option<&Value>) -> Fail {
        Fail {
            segments: Vec::new(),
            reason: reason.into(),
            found: found.map(render_found),
        }
    }

    fn at(mut self, seg: Segment) -> Fail {
        self.segments.push(seg);
        self
    }

    fn into_violation(self) -> Violation {
        let mut path = String::new();
        for seg in self.segments.iter().rev() {
            match seg {
                Segment::Field(name) => {
                    path.push('.');
                    path.push_str(name);
                }
                Segment::Index(i) => path.push_str(&format!("[{i}]")),
                Segment::Key(k) => path.push_str(&format!("[{k:?}]")),
                Segment::Branch(b) => path.push_str(&format!("{{{b:?}}}")),
            }
        }
        Violation {
            path,
            reason: self.reason,
            found: self.found,
        }
    }
}

/// At most this many characters of an offending value are kept.
const FOUND_CHARS: usize = 80;

fn render_found(v: &Value) -> String {
    let text = match v {
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Map(m) => format!("a map of {} entries", m.len()),
        other => other.to_string(),
    };
    if text.chars().count() <= FOUND_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(FOUND_CHARS).collect();
    cut.push_str("...");
    cut
}

/// The schema's field defaults conformed to their fields' types, by record node and field.
#[derive(Debug, Default)]
pub(crate) struct Defaults(Vec<Vec<Option<Value>>>);

impl Defaults {
    /// Conforms every default of `c` once. The codecs have already held each default to its
    /// field's type, logical types included (`check_defaults`, the one check of defaults);
    /// a default the checker still cannot conform is refused here as there, so the codecs
    /// and the checker accept the same schemas.
    pub(crate) fn build(c: &Compiled) -> Result<Defaults, String> {
        let ctx = Ctx {
            c,
            opts: CheckOptions::default(),
            defaults: None,
        };
        let mut out = Vec::with_capacity(c.nodes.len());
        for node in &c.nodes {
            let Node::Record(named, fields) = node else {
                out.push(Vec::new());
                continue;
            };
            let mut conformed = Vec::with_capacity(fields.len());
            for f in fields {
                let Some(raw) = &f.default else {
                    conformed.push(None);
                    continue;
                };
                let mut value = raw.clone();
                // Records inside a default are filled from the defaults as written.
                ctx.conform(f.node, &mut value, 0).map_err(|e| {
                    format!(
                        "the default of field '{}' of record '{}' does not match its type: {}",
                        f.name,
                        named.full,
                        e.into_violation()
                    )
                })?;
                conformed.push(Some(value));
            }
            out.push(conformed);
        }
        Ok(Defaults(out))
    }
}

struct Ctx<'a> {
    c: &'a Compiled,
    opts: CheckOptions,
    /// `None` while the defaults themselves are conformed.
    defaults: Option<&'a Defaults>,
}

pub(crate) fn check_value(
    c: &Compiled,
    defaults: &Defaults,
    opts: CheckOptions,
    v: &Value,
) -> Result<(), Violation> {
    Ctx {
        c,
        opts,
        defaults: Some(defaults),
    }
    .check(c.root, v, 0)
    .map_err(Fail::into_violation)
}

pub(crate) fn conform_root(
    c: &Compiled,
    defaults: &Defaults,
    opts: CheckOptions,
    v: &mut Value,
) -> Result<(), Violation> {
    Ctx {
        c,
        opts,
        defaults: Some(defaults),
    }
    .conform(c.root, v, 0)
    .map_err(Fail::into_violation)
}

fn key_is(k: &Value, name: &str) -> bool {
    matches!(k, Value::String(s) if s == name)
}

/// A float that holds a whole number within `lo..=hi`.
fn integral_float(x: f64, lo: i64, hi: i64) -> bool {
    x.fract() == 0.0 && x >= lo as f64 && x <= hi as f64
}

/// How well a value's kind suits a node: 0 as is, 1 after a conversion, `None` not at all.
/// Used to choose a union branch; `check` has the last word.
fn rank(nodes: &[Node], idx: usize, v: &Value) -> Option<u8> {
    match (&nodes[idx], v) {
        (Node::Null, Value::Null)
        | (Node::Boolean, Value::Bool(_))
        | (Node::Int | Node::Long, Value::Int(_))
        | (Node::Float | Node::Double, Value::Float(_))
        | (Node::Bytes | Node::Fixed(..), Value::Bytes(_))
        | (Node::String | Node::Enum(..), Value::String(_))
        | (Node::Array(_), Value::Array(_))
        | (Node::Map(_) | Node::Record(..), Value::Map(_)) => Some(0),
        (Node::Float | Node::Double, Value::Int(_))
        | (Node::Int | Node::Long, Value::Float(_))
        | (Node::Bytes | Node::Fixed(..), Value::String(_)) => Some(1),
        (Node::Logical(l, inner), v) => match (l, v) {
            (Logical::Decimal { .. }, Value::Int(_) | Value::Float(_)) => Some(1),
            (l, Value::String(_)) if is_temporal(*l) => Some(1),
            _ => rank(nodes, *inner, v),
        },
        _ => None,
    }
}

fn is_temporal(l: Logical) -> bool {
    !matches!(
        l,
        Logical::Decimal { .. } | Logical::Uuid | Logical::Duration
    )
}

/// The name a union branch goes by in an Avro-JSON wrapper (`{"string": "x"}`).
fn wrapper_names(node: &Node) -> (&str, Option<&str>) {
    match node {
        Node::Null => ("null", None),
        Node::Boolean => ("boolean", None),
        Node::Int => ("int", None),
        Node::Long => ("long", None),
        Node::Float => ("float", None),
        Node::Double => ("double", None),
        Node::Bytes => ("bytes", None),
        Node::String => ("string", None),
        Node::Array(_) => ("array", None),
        Node::Map(_) => ("map", None),
        Node::Union(_) => ("union", None),
        Node::Fixed(n, _) | Node::Enum(n, _) | Node::Record(n, _) => {
            (n.full.as_str(), Some(n.short.as_str()))
        }
        Node::Logical(..) => ("", None),
    }
}

/// How a union holds a value.
enum Choice {
    /// The value itself fits this branch.
    Plain(usize),
    /// The value is a one-entry map `{"<branch name>": inner}` and inner fits this branch.
    Wrapped(usize),
}

impl Ctx<'_> {
    fn mismatch(&self, idx: usize, v: &Value) -> Fail {
        Fail::new(
            format!("expected {}, found {}", self.c.type_name(idx), v.kind()),
            Some(v),
        )
    }

    fn check(&self, idx: usize, v: &Value, depth: usize) -> Result<(), Fail> {
        if depth > MAX_DEPTH {
            return Err(Fail::new(
                format!("nested deeper than {MAX_DEPTH} levels"),
                None,
            ));
        }
        let node = &self.c.nodes[idx];
        match (node, v) {
            (Node::Null, Value::Null) | (Node::Boolean, Value::Bool(_)) => Ok(()),
            (Node::Int | Node::Long, Value::Int(_) | Value::Float(_)) => self.integer(idx, v),
            (Node::Float | Node::Double, Value::Int(_)) => Ok(()),
            (Node::Double, Value::Float(_)) => Ok(()),
            (Node::Float, Value::Float(x)) => {
                if x.is_finite() && x.abs() > f64::from(f32::MAX) {
                    Err(Fail::new("number is too large for a float", Some(v)))
                } else {
                    Ok(())
                }
            }
            (Node::Bytes, Value::Bytes(_) | Value::String(_))
            | (Node::String, Value::String(_)) => Ok(()),
            (Node::Fixed(n, size), Value::Bytes(b)) => fixed_size(n, *size, b.len(), v),
            (Node::Fixed(n, size), Value::String(s)) => fixed_size(n, *size, s.len(), v),
            (Node::Enum(n, symbols), Value::String(s)) => {
                if symbols.iter().any(|x| x == s) {
                    Ok(())
                } else {
                    Err(Fail::new(
                        format!("not a symbol of enum '{}'", n.full),
                        Some(v),
                    ))
                }
            }
            (Node::Array(item), Value::Array(items)) => {
                for (i, x) in items.iter().enumerate() {
                    self.check(*item, x, depth + 1)
                        .map_err(|e| e.at(Segment::Index(i)))?;
                }
                Ok(())
            }
            (Node::Map(values), Value::Map(map)) => {
                for (k, x) in map.iter() {
                    let Value::String(k) = k else {
                        return Err(Fail::new(
                            format!("map keys must be strings, found {}", k.kind()),
                            Some(k),
                        ));
                    };
                    self.check(*values, x, depth + 1)
                        .map_err(|e| e.at(Segment::Key(k.to_string())))?;
                }
                Ok(())
            }
            (Node::Record(n, fields), Value::Map(map)) => self.record(n, fields, map, depth),
            (Node::Union(branches), v) => self.choose(idx, branches, v, depth).map(|_| ()),
            (Node::Logical(l, inner), v) => self.logical(*l, *inner, v, depth),
            _ => Err(self.mismatch(idx, v)),
        }
    }

    /// An `Int`, or a `Float` holding a whole number, within the node's range.
    fn integer(&self, idx: usize, v: &Value) -> Result<(), Fail> {
        let (lo, hi, name) = match self.c.nodes[idx] {
            Node::Int => (i64::from(i32::MIN), i64::from(i32::MAX), "an int"),
            _ => (i64::MIN, i64::MAX, "a long"),
        };
        let fits = match v {
            Value::Int(i) => *i >= i128::from(lo) && *i <= i128::from(hi),
            Value::Float(x) => {
                if x.fract() != 0.0 || !x.is_finite() {
                    return Err(Fail::new(
                        format!(
                            "expected {}, found a float that is not a whole number",
                            self.c.type_name(idx)
                        ),
                        Some(v),
                    ));
                }
                integral_float(*x, lo, hi)
            }
            _ => return Err(self.mismatch(idx, v)),
        };
        if fits {
            Ok(())
        } else {
            Err(Fail::new(format!("number does not fit in {name}"), Some(v)))
        }
    }

    fn record(&self, n: &Named, fields: &[Field], map: &Map, depth: usize) -> Result<(), Fail> {
        let entries = map.entries();
        // The common case: exactly the schema's fields, in the schema's order.
        if entries.len() == fields.len()
            && fields
                .iter()
                .zip(entries)
                .all(|(f, (k, _))| key_is(k, &f.name))
        {
            for (f, (_, x)) in fields.iter().zip(entries) {
                self.check(f.node, x, depth + 1)
                    .map_err(|e| e.at(Segment::Field(f.name.clone())))?;
            }
            return Ok(());
        }
        for f in fields {
            match map.get(&f.name) {
                Some(x) => self
                    .check(f.node, x, depth + 1)
                    .map_err(|e| e.at(Segment::Field(f.name.clone())))?,
                None if f.default.is_some() || self.c.accepts_null(f.node) => {}
                None => return Err(missing(f, n)),
            }
        }
        if self.opts.reject_extra_fields {
            extra_fields(n, fields, entries)?;
        }
        Ok(())
    }

    /// The branch of a union that holds `v`: the first that holds it as is, else the first
    /// that holds it after a conversion, else an Avro-JSON wrapper naming a branch.
    fn choose(
        &self,
        idx: usize,
        branches: &[usize],
        v: &Value,
        depth: usize,
    ) -> Result<Choice, Fail> {
        let nodes = &self.c.nodes;
        let mut first_fail = None;
        let mut tried = 0;
        for want in 0..=1u8 {
            for &b in branches {
                if rank(nodes, b, v) != Some(want) {
                    continue;
                }
                tried += 1;
                match self.check(b, v, depth + 1) {
                    Ok(()) => return Ok(Choice::Plain(b)),
                    Err(e) => {
                        first_fail.get_or_insert(e);
                    }
                }
            }
        }
        if let Value::Map(m) = v {
            if let [(Value::String(tag), inner)] = m.entries() {
                for &b in branches {
                    let target = match &nodes[b] {
                        Node::Logical(_, inner) => *inner,
                        _ => b,
                    };
                    let (full, short) = wrapper_names(&nodes[target]);
                    if full == tag || short == Some(tag.as_str()) {
                        return self
                            .check(b, inner, depth + 1)
                            .map(|()| Choice::Wrapped(b))
                            .map_err(|e| e.at(Segment::Branch(tag.to_string())));
                    }
                }
            }
        }
        match (tried, first_fail) {
            // One branch had the right kind: its own reason says more than the union's.
            (1, Some(e)) => Err(e),
            _ => Err(self.mismatch(idx, v)),
        }
    }

    fn logical(&self, l: Logical, inner: usize, v: &Value, depth: usize) -> Result<(), Fail> {
        match (l, v) {
            (l, Value::String(s)) if is_temporal(l) => {
                let ok = match l {
                    Logical::Date => iso::is_date(s),
                    Logical::TimeMillis | Logical::TimeMicros => iso::is_time(s),
                    _ => iso::is_timestamp(s),
                };
                if ok {
                    Ok(())
                } else {
                    Err(Fail::new(
                        format!("not an ISO 8601 {} ({})", iso_what(l), l.name()),
                        Some(v),
                    ))
                }
            }
            (Logical::Decimal { precision, scale }, Value::Int(_) | Value::Float(_)) => {
                decimal_fits(precision, scale, v)
            }
            (Logical::Uuid, Value::String(s)) if matches!(self.c.nodes[inner], Node::String) => {
                if iso::is_uuid(s) {
                    Ok(())
                } else {
                    Err(Fail::new("not a UUID (uuid)", Some(v)))
                }
            }
            _ => self.check(inner, v, depth),
        }
    }

    fn conform(&self, idx: usize, v: &mut Value, depth: usize) -> Result<(), Fail> {
        if depth > MAX_DEPTH {
            return Err(Fail::new(
                format!("nested deeper than {MAX_DEPTH} levels"),
                None,
            ));
        }
        let node = &self.c.nodes[idx];
        match (node, &mut *v) {
            (Node::Int | Node::Long, Value::Float(x)) => {
                let x = *x;
                self.integer(idx, v)?;
                // In range and whole, checked just above.
                *v = Value::Int(x as i128);
                Ok(())
            }
            (Node::Float | Node::Double, Value::Int(i)) => {
                *v = Value::Float(*i as f64);
                Ok(())
            }
            (Node::Array(item), Value::Array(items)) => {
                for (i, x) in items.iter_mut().enumerate() {
                    self.conform(*item, x, depth + 1)
                        .map_err(|e| e.at(Segment::Index(i)))?;
                }
                Ok(())
            }
            (Node::Map(values), Value::Map(map)) => {
                let mut entries = std::mem::take(map).into_entries();
                let result = self.conform_map(*values, &mut entries, depth);
                *map = Map::from(entries);
                result
            }
            (Node::Record(n, fields), Value::Map(map)) => {
                let mut entries = std::mem::take(map).into_entries();
                let result = self.conform_record(idx, n, fields, &mut entries, depth);
                *map = Map::from(entries);
                result
            }
            (Node::Union(branches), _) => match self.choose(idx, branches, v, depth)? {
                Choice::Plain(b) => self.conform(b, v, depth + 1),
                Choice::Wrapped(b) => {
                    if let Value::Map(m) = v {
                        let inner = std::mem::take(m)
                            .into_entries()
                            .pop()
                            .map_or(Value::Null, |(_, x)| x);
                        *v = inner;
                    }
                    self.conform(b, v, depth + 1)
                }
            },
            (Node::Logical(l, inner), _) => match (l, &*v) {
                // Strings and numbers a logical type takes besides its underlying type stay
                // as they are: converting them would change what a JSON consumer gets.
                (l, Value::String(_)) if is_temporal(*l) => self.logical(*l, *inner, v, depth),
                (Logical::Decimal { .. }, Value::Int(_) | Value::Float(_)) => {
                    self.logical(*l, *inner, v, depth)
                }
                _ => {
                    self.logical(*l, *inner, v, depth)?;
                    self.conform(*inner, v, depth)
                }
            },
            _ => self.check(idx, v, depth),
        }
    }

    fn conform_map(
        &self,
        values: usize,
        entries: &mut [(Value, Value)],
        depth: usize,
    ) -> Result<(), Fail> {
        for (k, x) in entries.iter_mut() {
            let Value::String(k) = k else {
                return Err(Fail::new(
                    format!("map keys must be strings, found {}", k.kind()),
                    Some(k),
                ));
            };
            self.conform(values, x, depth + 1)
                .map_err(|e| e.at(Segment::Key(k.to_string())))?;
        }
        Ok(())
    }

    fn conform_record(
        &self,
        idx: usize,
        n: &Named,
        fields: &[Field],
        entries: &mut Vec<(Value, Value)>,
        depth: usize,
    ) -> Result<(), Fail> {
        if entries.len() == fields.len()
            && fields
                .iter()
                .zip(entries.iter())
                .all(|(f, (k, _))| key_is(k, &f.name))
        {
            for (f, (_, x)) in fields.iter().zip(entries.iter_mut()) {
                self.conform(f.node, x, depth + 1)
                    .map_err(|e| e.at(Segment::Field(f.name.clone())))?;
            }
            return Ok(());
        }
        if self.opts.reject_extra_fields {
            extra_fields(n, fields, entries)?;
        }
        for (fi, f) in fields.iter().enumerate() {
            // The last entry with the name wins, as in `Map::get`.
            match entries.iter().rposition(|(k, _)| key_is(k, &f.name)) {
                Some(i) => self
                    .conform(f.node, &mut entries[i].1, depth + 1)
                    .map_err(|e| e.at(Segment::Field(f.name.clone())))?,
                None => {
                    let default = match self.defaults {
                        Some(d) => d.0[idx][fi].as_ref(),
                        None => f.default.as_ref(),
                    };
                    let filled = match default {
                        Some(d) => d.clone(),
                        None if self.c.accepts_null(f.node) => Value::Null,
                        None => return Err(missing(f, n)),
                    };
                    entries.push((Value::from(f.name.as_str()), filled));
                }
            }
        }
        Ok(())
    }
}

fn extra_fields(n: &Named, fields: &[Field], entries: &[(Value, Value)]) -> Result<(), Fail> {
    for (k, _) in entries {
        let known = matches!(k, Value::String(s) if fields.iter().any(|f| f.name == s));
        if !known {
            let reason = match k {
                Value::String(s) => format!("Field '{s}' is not in record '{}'", n.full),
                other => format!(
                    "a {} key is not a field of record '{}'",
                    other.kind(),
                    n.full
                ),
            };
            return Err(Fail::new(reason, None));
        }
    }
    Ok(())
}

fn missing(f: &Field, n: &Named) -> Fail {
    Fail::new(
        format!("Field '{}' missing for record '{}'", f.name, n.full),
        None,
    )
}

fn fixed_size(n: &Named, size: usize, len: usize, v: &Value) -> Result<(), Fail> {
    if len == size {
        Ok(())
    } else {
        Err(Fail::new(
            format!("fixed '{}' takes {size} bytes, found {len}", n.full),
            Some(v),
        ))
    }
}

fn iso_what(l: Logical) -> &'static str {
    match l {
        Logical::Date => "date",
        Logical::TimeMillis | Logical::TimeMicros => "time",
        _ => "date-time",
    }
}

/// A number for a `decimal(precision, scale)`: its whole part must have at most
/// `precision - scale` digits (the fraction is rounded to `scale` digits when written).
fn decimal_fits(precision: u32, scale: u32, v: &Value) -> Result<(), Fail> {
    let whole_digits = precision - scale;
    let ok = match v {
        Value::Int(i) => {
            let limit = 10i128.checked_pow(whole_digits);
            limit.is_none_or(|limit| i.unsigned_abs() < limit.unsigned_abs())
        }
        Value::Float(x) => x.is_finite() && x.abs() < 10f64.powi(whole_digits as i32),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Fail::new(
            format!("number does not fit in decimal({precision}, {scale})"),
            Some(v),
        ))
    }
}
