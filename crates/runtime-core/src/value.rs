//! The one record value type shared by every codec, runner and endpoint.
//!
//! Invariants:
//! - `Int` holds any integer of Avro (`int`, `long`) and MessagePack (`i64` and `u64`), so no
//!   integer is ever widened to a float on the way through the engine.
//! - `Map` keeps insertion order and allows any key: JSON objects and Avro records/maps have
//!   string keys, MessagePack and Python dicts may have others. Encoders that only know string
//!   keys (JSON) decide how to write the others (see `codecs`).
//! - `String` holds a [`Str`]: text of up to 24 bytes (most field names and many values) lives
//!   inline, with no allocation to make, copy or free; a record's keys are that short.
//! - There is no timestamp/decimal variant: Avro logical types travel as their underlying
//!   type (`timestamp-millis` as `Int`, `decimal` as `Bytes`), which is lossless.

use std::fmt;

/// The text of a [`Value::String`]: up to 24 bytes inline, longer on the heap (a `String`
/// given to it keeps its buffer).
pub type Str = compact_str::CompactString;

/// A record, or any part of one.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    String(Str),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Map(Map),
}

/// An ordered map of values. Lookups by string key scan linearly: records are small, and
/// keeping the order of fields is worth more than hashing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Map(Vec<(Value, Value)>);

impl Map {
    pub fn new() -> Self {
        Map(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Self {
        Map(Vec::with_capacity(n))
    }

    /// Appends an entry; a key that is already present is not looked for (decoders append,
    /// and a later duplicate wins wherever the map becomes a dictionary).
    pub fn push(&mut self, key: impl Into<Value>, value: impl Into<Value>) {
        self.0.push((key.into(), value.into()));
    }

    /// Sets `key`, replacing the value of an existing entry in place.
    pub fn insert(&mut self, key: impl Into<Value>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().rev().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    /// The value of the last entry whose key is the string `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().rev().find_map(|(k, v)| match k {
            Value::String(s) if s == key => Some(v),
            _ => None,
        })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Value, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn entries(&self) -> &[(Value, Value)] {
        &self.0
    }

    pub fn into_entries(self) -> Vec<(Value, Value)> {
        self.0
    }
}

impl From<Vec<(Value, Value)>> for Map {
    fn from(entries: Vec<(Value, Value)>) -> Self {
        Map(entries)
    }
}

impl<K: Into<Value>, V: Into<Value>> FromIterator<(K, V)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Map(iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
}

impl Value {
    /// A short name of the variant, for error messages ("expected a map, found string").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Looks a field up when this value is a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(key))
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::Int(v as i128) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32, u64, i128, usize, isize);

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(Str::from(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(Str::from(v))
    }
}
impl From<Str> for Value {
    fn from(v: Str) -> Self {
        Value::String(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Array(v)
    }
}
impl From<Map> for Value {
    fn from(v: Map) -> Self {
        Value::Map(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        use serde_json::Value as J;
        match v {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Value::Int(i128::from(i)),
                (_, Some(u)) => Value::Int(i128::from(u)),
                _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::String(Str::from(s)),
            J::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            J::Object(o) => Value::Map(o.into_iter().collect()),
        }
    }
}

/// A compact, JSON-like rendering for log lines and error messages. Not an encoding: bytes
/// show as `b"..."` and non-finite floats as `NaN`/`inf`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "b\"{}\"", b.escape_ascii()),
            Value::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The invariant the module docs state: text of up to 24 bytes is held inline, so a
    // record's keys are copied without an allocation; longer text goes to the heap.
    #[test]
    fn short_text_is_inline_and_long_text_is_not() {
        for text in ["", "id", "exactly twenty-four byte", "\u{e9}t\u{e9}"] {
            let Value::String(s) = Value::from(text) else {
                panic!("text makes a string")
            };
            assert!(!s.clone().is_heap_allocated(), "{text:?}");
            assert_eq!(s, text);
        }
        let Value::String(long) = Value::from(String::from("twenty-five bytes long!!!")) else {
            panic!("text makes a string")
        };
        assert!(long.is_heap_allocated());
        assert_eq!(long, "twenty-five bytes long!!!");
    }
}
