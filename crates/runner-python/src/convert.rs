//! Python objects to record values and back, in Rust (no JSON text on the way).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use runtime_core::{Map, Value};

/// Nesting deeper than this is refused (it is almost surely a list that contains itself).
const MAX_DEPTH: usize = 200;

/// A record value as a Python object: maps become dicts (keys of any type), arrays lists,
/// bytes `bytes`, integers `int`.
pub fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => match i64::try_from(*i) {
            Ok(small) => small.into_pyobject(py)?.into_any(),
            Err(_) => i.into_pyobject(py)?.into_any(),
        },
        Value::Float(x) => PyFloat::new(py, *x).into_any(),
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for item in a {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Map(m) => {
            let dict = PyDict::new(py);
            for (k, v) in m.iter() {
                dict.set_item(key_to_py(py, k)?, to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// The records as the columns of one table, a dict of lists (key: the column's values,
/// one per record, in order), when every record is a map with the same keys in the same
/// order (what a record-set model's frame is made of, built column by column instead of
/// row by row); `None` otherwise, or when the records have no keys or keys that are not
/// strings.
pub fn to_py_columns<'py>(
    py: Python<'py>,
    records: &[&Value],
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(Value::Map(first)) = records.first() else {
        return Ok(None);
    };
    // String keys only: other keys (arrays, maps as tuples) make pandas build MultiIndex
    // columns from a dict, where it keeps a flat index from a list of dicts.
    if first.is_empty() || !first.iter().all(|(k, _)| matches!(k, Value::String(_))) {
        return Ok(None);
    }
    let same_keys = |v: &&Value| match v {
        Value::Map(m) => {
            m.len() == first.len() && m.iter().zip(first.iter()).all(|((a, _), (b, _))| a == b)
        }
        _ => false,
    };
    if !records.iter().all(same_keys) {
        return Ok(None);
    }
    // The records' cells, column by column.
    let mut columns: Vec<Vec<&Value>> = first
        .iter()
        .map(|_| Vec::with_capacity(records.len()))
        .collect();
    for record in records {
        if let Value::Map(m) = record {
            for ((_, v), column) in m.iter().zip(columns.iter_mut()) {
                column.push(v);
            }
        }
    }
    let dict = PyDict::new(py);
    for ((key, _), cells) in first.iter().zip(columns) {
        let column = match number_column(py, &cells)? {
            Some(numbers) => numbers,
            None => {
                let list = PyList::empty(py);
                for v in cells {
                    list.append(to_py(py, v)?)?;
                }
                list.into_any()
            }
        };
        dict.set_item(key_to_py(py, key)?, column)?;
    }
    Ok(Some(dict))
}

/// A column of only floats, or only integers that fit in 64 bits, as `(typecode, bytearray)`
/// of its numbers, little-endian (`"d"` f64, `"q"` i64: the `array` module's codes), which
/// numpy reads in place: no Python number is made per cell. `None` for any other column.
fn number_column<'py>(py: Python<'py>, cells: &[&Value]) -> PyResult<Option<Bound<'py, PyAny>>> {
    let code = match cells.first() {
        Some(Value::Float(_)) => "d",
        Some(Value::Int(_)) => "q",
        _ => return Ok(None),
    };
    let mut bytes = Vec::with_capacity(cells.len() * 8);
    for v in cells {
        match (code, v) {
            ("d", Value::Float(x)) => bytes.extend_from_slice(&x.to_le_bytes()),
            ("q", Value::Int(i)) => match i64::try_from(*i) {
                Ok(i) => bytes.extend_from_slice(&i.to_le_bytes()),
                Err(_) => return Ok(None),
            },
            _ => return Ok(None),
        }
    }
    let buf = pyo3::types::PyByteArray::new(py, &bytes);
    Ok(Some((code, buf).into_pyobject(py)?.into_any()))
}

/// The numbers of a column handed back as `(typecode, little-endian bytes)` (the driver's
/// `Columns`; the codes of [`number_column`]), as record values.
pub fn number_values(code: &str, bytes: &[u8]) -> PyResult<Vec<Value>> {
    let word = |b: &[u8]| {
        let mut x = [0u8; 8];
        x.copy_from_slice(b);
        x
    };
    let chunks = bytes.chunks_exact(8);
    Ok(match code {
        "d" => chunks
            .map(|b| Value::Float(f64::from_le_bytes(word(b))))
            .collect(),
        "q" => chunks
            .map(|b| Value::Int(i128::from(i64::from_le_bytes(word(b)))))
            .collect(),
        other => {
            return Err(PyValueError::new_err(format!(
                "a column of numbers of unknown type code {other:?}"
            )))
        }
    })
}

/// Dict keys must be hashable: arrays become tuples, maps tuples of `(key, value)` pairs.
fn key_to_py<'py>(py: Python<'py>, k: &Value) -> PyResult<Bound<'py, PyAny>> {
    match k {
        Value::Array(a) => {
            let items = a
                .iter()
                .map(|x| key_to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyTuple::new(py, items)?.into_any())
        }
        Value::Map(m) => {
            let items = m
                .iter()
                .map(|(k, v)| PyTuple::new(py, [key_to_py(py, k)?, key_to_py(py, v)?]))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyTuple::new(py, items)?.into_any())
        }
        other => to_py(py, other),
    }
}

/// A Python object as a record value. Types Rust does not know are handed to the driver's
/// `simplify` (numpy, datetime, Decimal, pandas, sets), which raises `TypeError` for the rest.
pub fn from_py(obj: &Bound<'_, PyAny>, simplify: &Bound<'_, PyAny>) -> PyResult<Value> {
    from_py_at(obj, simplify, 0)
}

fn from_py_at(
    obj: &Bound<'_, PyAny>,
    simplify: &Bound<'_, PyAny>,
    depth: usize,
) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "an output nested more than {MAX_DEPTH} levels deep cannot be a record value"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::from(s.to_str()?));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Int(i128::from(i)));
        }
        // The worker protocol (MessagePack) carries integers from -2^63 to 2^64-1; wider
        // ones would arrive as something else, so they are refused here, loudly.
        return match obj.extract::<u64>() {
            Ok(u) => Ok(Value::Int(i128::from(u))),
            Err(_) => Err(PyValueError::new_err(format!(
                "the integer {} does not fit in 64 bits",
                obj.str()?
            ))),
        };
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Map::with_capacity(d.len());
        for (k, v) in d.iter() {
            map.push(
                from_py_at(&k, simplify, depth + 1)?,
                from_py_at(&v, simplify, depth + 1)?,
            );
        }
        return Ok(Value::Map(map));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(l.len());
        for item in l.iter() {
            out.push(from_py_at(&item, simplify, depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let mut out = Vec::with_capacity(t.len());
        for item in t.iter() {
            out.push(from_py_at(&item, simplify, depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec()));
    }
    let simpler = simplify.call1((obj,))?;
    if simpler.is(obj) {
        return Err(PyTypeError::new_err(format!(
            "cannot convert an object of type '{}' to a record value",
            obj.get_type().name()?
        )));
    }
    from_py_at(&simpler, simplify, depth + 1)
}
