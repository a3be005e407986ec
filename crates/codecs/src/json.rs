//! JSON: decoding through [`Value`]'s serde impl, and a strict writer of its own.
//!
//! Output rules (Python's `json.dumps` is the model where it has one):
//! - NaN and ±infinity are rejected: they are not JSON.
//! - Bytes are written as a string of standard base64 (with padding).
//! - Map keys that are not strings are written as strings: integers and floats as their
//!   digits, `true`/`false`/`null`, bytes as base64. Array and map keys are rejected.
//! - Integers of any size are written as their decimal digits.
//!
//! The writer appends straight to a byte buffer (itoa, ryu, a table-driven string escaper):
//! no intermediate tree.

use base64::Engine as _;
use runtime_core::Value;

use crate::rejected;

/// Decodes one JSON document (surrounding whitespace allowed) into a value.
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Value>(bytes).map_err(|e| format!("invalid JSON: {e}"))
}

/// Appends `value` as compact JSON to `out`. On error `out` may hold part of the value: callers
/// truncate it.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), String> {
    let start = out.len();
    let r = write_inner(out, value, 0);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Deep enough for any real record, shallow enough never to overflow the stack.
const MAX_DEPTH: usize = 512;

fn write_inner(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<(), String> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(x) => write_float(out, *x)?,
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => write_base64(out, b),
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(rejected(format!("nested deeper than {MAX_DEPTH} levels")));
            }
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_inner(out, item, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Map(map) => {
            if depth >= MAX_DEPTH {
                return Err(rejected(format!("nested deeper than {MAX_DEPTH} levels")));
            }
            out.push(b'{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_key(out, k)?;
                out.push(b':');
                write_inner(out, v, depth + 1)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_float(out: &mut Vec<u8>, x: f64) -> Result<(), String> {
    if !x.is_finite() {
        return Err(rejected("NaN/Infinity is not valid JSON"));
    }
    out.extend_from_slice(ryu::Buffer::new().format_finite(x).as_bytes());
    Ok(())
}

fn write_key(out: &mut Vec<u8>, key: &Value) -> Result<(), String> {
    match key {
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => write_base64(out, b),
        Value::Array(_) | Value::Map(_) => {
            return Err(rejected(format!(
                "a map key of type {} cannot be a JSON object key",
                key.kind()
            )))
        }
        Value::Float(x) if !x.is_finite() => {
            return Err(rejected("NaN/Infinity is not valid JSON (as a map key)"))
        }
        scalar => {
            out.push(b'"');
            write_inner(out, scalar, 0)?;
            out.push(b'"');
        }
    }
    Ok(())
}

fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    // The buffer was sized by `encoded_len`, so this cannot run short; fall back anyway.
    match base64::engine::general_purpose::STANDARD.encode_slice(bytes, &mut out[start..]) {
        Ok(n) => out.truncate(start + n),
        Err(_) => {
            out.truncate(start);
            let s = base64::engine::general_purpose::STANDARD.encode(bytes);
            out.extend_from_slice(s.as_bytes());
        }
    }
    out.push(b'"');
}

/// Escape class per byte: 0 = as is, `u` = `\u00XX`, else the letter after the backslash.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if esc == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.push(b'\\');
            out.push(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_core::Map;

    fn json(v: &Value) -> Result<String, String> {
        let mut out = Vec::new();
        write_value(&mut out, v)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn writes_python_style_keys_and_base64() {
        let mut m = Map::new();
        m.push(Value::Int(1), "a");
        m.push(Value::Float(2.5), Value::Bytes(b"hi".to_vec()));
        m.push(Value::Bool(true), Value::Null);
        m.push(Value::Null, Value::Int(i128::MAX));
        m.push("q\"\n\u{1}", Value::Array(vec![1.0.into(), (-0.5).into()]));
        assert_eq!(
            json(&Value::Map(m)).unwrap(),
            r#"{"1":"a","2.5":"aGk=","true":null,"null":170141183460469231731687303715884105727,"q\"\n\u0001":[1.0,-0.5]}"#
        );
    }

    #[test]
    fn refuses_non_finite_and_container_keys() {
        let err = json(&Value::Array(vec![Value::Float(f64::NAN)])).unwrap_err();
        assert!(err.contains("rejected by encoding"), "{err}");
        let mut m = Map::new();
        m.push(Value::Array(vec![]), 1);
        let err = json(&Value::Map(m)).unwrap_err();
        assert!(
            err.contains("rejected by encoding") && err.contains("array"),
            "{err}"
        );
    }
}
