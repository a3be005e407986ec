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

/// Decodes one JSON document (surrounding whitespace and a leading byte-order mark allowed)
/// into a value. An integer beyond 64 bits (-2^63 to 2^64-1, the widest a model receives) is
/// refused with its digits, never rounded to a float.
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    let bytes = bytes.strip_prefix(crate::BOM).unwrap_or(bytes);
    let value = serde_json::from_slice::<Value>(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    // serde_json reads such an integer as a float; only a float that large can be one.
    if has_huge_float(&value, 0) {
        if let Some(digits) = wide_integer(bytes) {
            return Err(format!(
                "integer {digits} does not fit in 64 bits (-2^63 to 2^64-1, the widest integer a model receives); \
                 it is not rounded to a float: quote it to pass it as a string"
            ));
        }
    }
    Ok(value)
}

fn has_huge_float(v: &Value, depth: usize) -> bool {
    match v {
        Value::Float(x) => x.abs() >= 9.2e18,
        Value::Array(items) if depth < MAX_DEPTH => {
            items.iter().any(|v| has_huge_float(v, depth + 1))
        }
        Value::Map(m) if depth < MAX_DEPTH => m.iter().any(|(_, v)| has_huge_float(v, depth + 1)),
        _ => false,
    }
}

/// The first integer literal of a JSON text (outside strings) that fits neither `i64` nor
/// `u64`.
fn wide_integer(text: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < text.len()
                    && matches!(text[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = std::str::from_utf8(&text[start..i]).unwrap_or("");
                let integral = !token.contains(['.', 'e', 'E']);
                if integral && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                    return Some(token.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    None
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
        write_value(&mut out, v).map_err(|e| crate::EncodeError::Rejected(e).to_string())?;
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
    fn integers_beyond_64_bits_are_refused_not_rounded() {
        let ok = decode(br#"{"a": 18446744073709551615, "b": -9223372036854775808, "c": 1e300}"#)
            .unwrap();
        assert_eq!(ok.get("a"), Some(&Value::Int(i128::from(u64::MAX))));
        assert_eq!(ok.get("c"), Some(&Value::Float(1e300)));
        let err =
            decode(br#"{"s": "1234567890123456789012", "id": 18446744073709551616}"#).unwrap_err();
        assert!(
            err.contains("integer 18446744073709551616 does not fit in 64 bits"),
            "{err}"
        );
        let err = decode(b"[-9223372036854775809]").unwrap_err();
        assert!(err.contains("-9223372036854775809"), "{err}");
        let huge = format!("[{}]", "9".repeat(60));
        assert!(decode(huge.as_bytes())
            .unwrap_err()
            .contains(&"9".repeat(60)));
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        assert_eq!(
            decode(b"\xEF\xBB\xBF[1]").unwrap(),
            Value::Array(vec![1.into()])
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
