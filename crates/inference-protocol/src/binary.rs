//! The binary data extension's element encoding: fixed-width little-endian numbers, one
//! byte per BOOL, and BYTES elements each prefixed by its length (4 bytes, little-endian).

use runtime_core::Value;

use crate::{invalid, Datatype, Result, Tensor};

/// The elements of `bytes`, as `datatype` lays them out.
pub(crate) fn decode(name: &str, datatype: Datatype, bytes: &[u8]) -> Result<Vec<Value>> {
    let Some(width) = datatype.width() else {
        return decode_bytes(name, bytes);
    };
    if bytes.len() % width != 0 {
        return invalid(format!(
            "input '{name}': {} bytes of binary data are not a whole number of {} elements ({width} bytes each)",
            bytes.len(),
            datatype.as_str()
        ));
    }
    Ok(bytes
        .chunks_exact(width)
        .map(|c| element(datatype, c))
        .collect())
}

fn element(datatype: Datatype, c: &[u8]) -> Value {
    let mut b8 = [0u8; 8];
    b8[..c.len()].copy_from_slice(c);
    let u = u64::from_le_bytes(b8);
    match datatype {
        Datatype::Bool => Value::Bool(c[0] != 0),
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 | Datatype::Uint64 => {
            Value::Int(i128::from(u))
        }
        Datatype::Int8 => Value::Int(i128::from(c[0] as i8)),
        Datatype::Int16 => Value::Int(i128::from(u as u16 as i16)),
        Datatype::Int32 => Value::Int(i128::from(u as u32 as i32)),
        Datatype::Int64 => Value::Int(i128::from(u as i64)),
        Datatype::Fp16 => Value::Float(f64::from(half_to_f32(u as u16))),
        Datatype::Fp32 => Value::Float(f64::from(f32::from_bits(u as u32))),
        Datatype::Fp64 | Datatype::Bytes => Value::Float(f64::from_bits(u)),
    }
}

/// An IEEE 754 half-precision value.
fn half_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalize it.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

fn decode_bytes(name: &str, mut bytes: &[u8]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 4 {
            return invalid(format!(
                "input '{name}': BYTES element {} has a cut length prefix",
                out.len()
            ));
        }
        let (len, rest) = bytes.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > rest.len() {
            return invalid(format!(
                "input '{name}': BYTES element {} claims {len} bytes, {} are left",
                out.len(),
                rest.len()
            ));
        }
        let (element, rest) = rest.split_at(len);
        out.push(match std::str::from_utf8(element) {
            Ok(s) => Value::from(s),
            Err(_) => Value::Bytes(element.to_vec()),
        });
        bytes = rest;
    }
    Ok(out)
}

/// Appends `tensor`'s elements in the binary form.
pub(crate) fn encode(tensor: &Tensor, out: &mut Vec<u8>) {
    for v in &tensor.data {
        match tensor.datatype {
            Datatype::Bool => out.push(u8::from(matches!(v, Value::Bool(true)))),
            Datatype::Bytes => {
                let bytes: &[u8] = match v {
                    Value::String(s) => s.as_bytes(),
                    Value::Bytes(b) => b,
                    _ => &[],
                };
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Datatype::Fp64 => out.extend_from_slice(&number(v).to_le_bytes()),
            Datatype::Fp32 | Datatype::Fp16 => {
                out.extend_from_slice(&(number(v) as f32).to_le_bytes())
            }
            _ => {
                let i = match v {
                    Value::Int(i) => i64::try_from(*i).unwrap_or(0),
                    other => number(other) as i64,
                };
                out.extend_from_slice(&i.to_le_bytes());
            }
        }
    }
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => f64::NAN,
    }
}
