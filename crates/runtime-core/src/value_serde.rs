//! serde for [`Value`]: the neutral mapping used by self-describing binary formats
//! (MessagePack, the worker protocol) and for decoding JSON straight into records without an
//! intermediate tree. Bytes serialize as bytes; integers as `i64` when they fit, else `u64`;
//! wider ones are refused. JSON *output* is not done through this impl: it has rules of its own (no
//! NaN, bytes as base64, stringified keys) and lives in the `codecs` crate.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::value::{Map, Value};

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    s.serialize_i64(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    s.serialize_u64(v)
                } else {
                    // MessagePack (and so the worker protocol) stops at 64 bits; saying so
                    // beats a format writing the number as something else.
                    Err(serde::ser::Error::custom(format!(
                        "integer {i} does not fit in 64 bits"
                    )))
                }
            }
            Value::Float(x) => s.serialize_f64(*x),
            Value::String(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m.iter() {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer does not fit in 128 bits"))
    }
    fn visit_f32<E>(self, v: f32) -> Result<Value, E> {
        Ok(Value::Float(f64::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(crate::value::Str::from(v)))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(crate::value::Str::from(v)))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some((k, v)) = map.next_entry::<Value, Value>()? {
            out.push(k, v);
        }
        Ok(Value::Map(out))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_decodes_straight_into_values() {
        let v: Value = serde_json::from_str(
            r#"{"a": [1, 2.5, null, true], "b": "x", "c": 18446744073709551615}"#,
        )
        .unwrap();
        assert_eq!(v.get("b"), Some(&Value::from("x")));
        assert_eq!(v.get("c"), Some(&Value::Int(i128::from(u64::MAX))));
        assert_eq!(
            v.get("a"),
            Some(&Value::Array(vec![
                1.into(),
                2.5.into(),
                Value::Null,
                true.into()
            ]))
        );
    }

    #[test]
    fn msgpack_round_trip_keeps_bytes_and_wide_ints() {
        let mut m = Map::new();
        m.push(Value::Int(7), Value::Bytes(vec![0, 255]));
        m.push("u", Value::Int(i128::from(u64::MAX)));
        m.push("n", Value::Int(i128::from(i64::MIN)));
        let v = Value::Map(m);
        let bytes = rmp_serde::to_vec(&v).unwrap();
        let back: Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn integers_wider_than_64_bits_are_refused_not_reinterpreted() {
        let err = rmp_serde::to_vec(&Value::Int(1 << 70))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not fit in 64 bits"), "{err}");
    }
}
