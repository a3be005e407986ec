//! The Open Inference Protocol (V2, as KServe, Triton and MLServer speak it): its inference
//! request and response documents, the binary data extension
//! (`Inference-Header-Content-Length`), and the mapping between tensors and a ModelOp
//! model's records.
//!
//! The mapping (docs/inference-protocol.md):
//! - a request's named inputs become the fields of records, one record per index of the
//!   inputs' first dimension (which they must share); a rank-1 input gives each record a
//!   scalar, a higher rank the row's nested lists;
//! - the model's yields, one per record, become the output tensors: a yield that is a map
//!   gives a tensor per key, anything else one tensor (named as the request asks, else
//!   `output-0`); the datatype is the narrowest that holds every value (BOOL, INT64, FP64,
//!   BYTES), the shape `[rows, ...]` of the values' own.
//!
//! Nothing here knows HTTP or gRPC: bodies in, bodies out.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod avro;
mod binary;

use runtime_core::{Map, Value};
use serde::{Deserialize, Serialize};
pub use serde_json::Value as Json;

/// A request's `parameters`.
pub type Parameters = serde_json::Map<String, Json>;

pub use avro::tensors_of_avro;

/// Why a request cannot be served as given; its text names the input or output.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct Error(pub String);

pub type Result<T> = std::result::Result<T, Error>;

fn invalid<T>(why: impl Into<String>) -> Result<T> {
    Err(Error(why.into()))
}

/// A tensor element's type, as the protocol names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bytes,
}

const DATATYPES: [(Datatype, &str); 13] = [
    (Datatype::Bool, "BOOL"),
    (Datatype::Uint8, "UINT8"),
    (Datatype::Uint16, "UINT16"),
    (Datatype::Uint32, "UINT32"),
    (Datatype::Uint64, "UINT64"),
    (Datatype::Int8, "INT8"),
    (Datatype::Int16, "INT16"),
    (Datatype::Int32, "INT32"),
    (Datatype::Int64, "INT64"),
    (Datatype::Fp16, "FP16"),
    (Datatype::Fp32, "FP32"),
    (Datatype::Fp64, "FP64"),
    (Datatype::Bytes, "BYTES"),
];

impl Datatype {
    pub fn parse(name: &str) -> Option<Datatype> {
        DATATYPES.iter().find(|(_, n)| *n == name).map(|(d, _)| *d)
    }

    pub fn as_str(self) -> &'static str {
        DATATYPES
            .iter()
            .find(|(d, _)| *d == self)
            .map_or("BYTES", |(_, n)| n)
    }

    /// Bytes per element in the binary form; `None` for BYTES (each element is
    /// length-prefixed).
    pub fn width(self) -> Option<usize> {
        Some(match self {
            Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => 1,
            Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 => 2,
            Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => 4,
            Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => 8,
            Datatype::Bytes => return None,
        })
    }

    fn is_integer(self) -> bool {
        matches!(
            self,
            Datatype::Uint8
                | Datatype::Uint16
                | Datatype::Uint32
                | Datatype::Uint64
                | Datatype::Int8
                | Datatype::Int16
                | Datatype::Int32
                | Datatype::Int64
        )
    }

    fn is_float(self) -> bool {
        matches!(self, Datatype::Fp16 | Datatype::Fp32 | Datatype::Fp64)
    }

    /// The range of an integer type.
    fn range(self) -> (i128, i128) {
        match self {
            Datatype::Uint8 => (0, u8::MAX.into()),
            Datatype::Uint16 => (0, u16::MAX.into()),
            Datatype::Uint32 => (0, u32::MAX.into()),
            Datatype::Uint64 => (0, u64::MAX.into()),
            Datatype::Int8 => (i8::MIN.into(), i8::MAX.into()),
            Datatype::Int16 => (i16::MIN.into(), i16::MAX.into()),
            Datatype::Int32 => (i32::MIN.into(), i32::MAX.into()),
            _ => (i64::MIN.into(), i64::MAX.into()),
        }
    }
}

/// A tensor: its elements flattened in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<u64>,
    pub data: Vec<Value>,
}

/// The elements of a tensor sent in the binary form (an HTTP body's binary part, a gRPC
/// request's `raw_input_contents`), for input `name`.
pub fn decode_binary(name: &str, datatype: Datatype, bytes: &[u8]) -> Result<Vec<Value>> {
    binary::decode(name, datatype, bytes)
}

/// A tensor's elements in the binary form.
pub fn encode_binary(tensor: &Tensor) -> Vec<u8> {
    let mut out = Vec::new();
    binary::encode(tensor, &mut out);
    out
}

impl Tensor {
    /// Input `name`'s tensor, checked: `data` must hold as many elements as `shape` says.
    pub fn input(
        name: String,
        datatype: Datatype,
        shape: &[i64],
        data: Vec<Value>,
    ) -> Result<Tensor> {
        let shape: Vec<u64> = shape
            .iter()
            .map(|d| u64::try_from(*d))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error(format!("input '{name}': a negative dimension in {shape:?}")))?;
        let count = Tensor::elements(&shape)
            .ok_or_else(|| Error(format!("input '{name}': shape {shape:?} is too large")))?;
        if data.len() as u64 != count {
            return invalid(format!(
                "input '{name}': shape {shape:?} holds {count} elements but {} were given",
                data.len()
            ));
        }
        Ok(Tensor {
            name,
            datatype,
            shape,
            data,
        })
    }

    fn elements(shape: &[u64]) -> Option<u64> {
        shape.iter().try_fold(1u64, |n, d| n.checked_mul(*d))
    }

    /// Row `i` of the first dimension: a scalar for rank 1, nested lists beyond.
    fn row(&self, i: usize) -> Value {
        if self.shape.len() <= 1 {
            return self.data.get(i).cloned().unwrap_or_default();
        }
        let inner = &self.shape[1..];
        let len = Tensor::elements(inner).unwrap_or(0) as usize;
        let start = i * len;
        nest(
            &self.data[start.min(self.data.len())..(start + len).min(self.data.len())],
            inner,
        )
    }
}

fn nest(flat: &[Value], shape: &[u64]) -> Value {
    match shape {
        [] => flat.first().cloned().unwrap_or_default(),
        [_] => Value::Array(flat.to_vec()),
        [d, rest @ ..] => {
            let len = Tensor::elements(rest).unwrap_or(0) as usize;
            Value::Array(
                (0..*d as usize)
                    .map(|i| {
                        nest(
                            &flat[(i * len).min(flat.len())..((i + 1) * len).min(flat.len())],
                            rest,
                        )
                    })
                    .collect(),
            )
        }
    }
}

/// An output the request names, and whether it wants it in binary.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: Option<bool>,
}

/// An inference request, its tensors decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    pub parameters: serde_json::Map<String, Json>,
    pub inputs: Vec<Tensor>,
    /// The outputs asked for; empty: every output.
    pub outputs: Vec<RequestedOutput>,
}

/// A request document. Fields the protocol does not define (kserve's client sends
/// `model_name`) are ignored, as every server of the protocol does.
#[derive(Deserialize)]
struct RequestDoc {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Json>>,
    inputs: Vec<InputDoc>,
    #[serde(default)]
    outputs: Option<Vec<OutputDoc>>,
}

#[derive(Deserialize)]
struct InputDoc {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Json>>,
    #[serde(default)]
    data: Option<Json>,
}

#[derive(Deserialize)]
struct OutputDoc {
    name: String,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Json>>,
}

impl InferRequest {
    /// Reads a request body: JSON, or, when `header_length` is given (the
    /// `Inference-Header-Content-Length` header), a JSON header of that many bytes followed
    /// by the binary data of the inputs whose `binary_data_size` says so, in their order.
    pub fn parse(body: &[u8], header_length: Option<usize>) -> Result<InferRequest> {
        let (header, mut tail) = match header_length {
            Some(n) if n > body.len() => {
                return invalid(format!(
                    "Inference-Header-Content-Length is {n} but the body has {} bytes",
                    body.len()
                ))
            }
            Some(n) => body.split_at(n),
            None => (body, &[][..]),
        };
        let doc: RequestDoc = serde_json::from_slice(header)
            .map_err(|e| Error(format!("the inference request is not valid: {e}")))?;
        if doc.inputs.is_empty() {
            return invalid("the inference request has no inputs");
        }
        let mut inputs = Vec::with_capacity(doc.inputs.len());
        for input in doc.inputs {
            let name = input.name;
            let datatype = Datatype::parse(&input.datatype).ok_or_else(|| {
                Error(format!(
                    "input '{name}': unknown datatype '{}'",
                    input.datatype
                ))
            })?;
            let binary_size = input
                .parameters
                .as_ref()
                .and_then(|p| p.get("binary_data_size"))
                .map(|v| {
                    v.as_u64().ok_or_else(|| {
                        Error(format!(
                            "input '{name}': binary_data_size must be a byte count"
                        ))
                    })
                })
                .transpose()?;
            let data = match (binary_size, input.data) {
                (Some(size), _) => {
                    let size = usize::try_from(size).unwrap_or(usize::MAX);
                    if size > tail.len() {
                        return invalid(format!(
                            "input '{name}': binary_data_size {size} but {} bytes are left in the body",
                            tail.len()
                        ));
                    }
                    let (bytes, rest) = tail.split_at(size);
                    tail = rest;
                    binary::decode(&name, datatype, bytes)?
                }
                (None, Some(data)) => from_json(&name, datatype, data)?,
                (None, None) => {
                    return invalid(format!(
                        "input '{name}' has neither data nor a binary_data_size"
                    ))
                }
            };
            inputs.push(Tensor::input(name, datatype, &input.shape, data)?);
        }
        if !tail.is_empty() {
            return invalid(format!(
                "{} bytes of binary data follow the inputs that no input claims",
                tail.len()
            ));
        }
        let outputs = doc
            .outputs
            .unwrap_or_default()
            .into_iter()
            .map(|o| RequestedOutput {
                binary: o
                    .parameters
                    .as_ref()
                    .and_then(|p| p.get("binary_data"))
                    .and_then(Json::as_bool),
                name: o.name,
            })
            .collect();
        Ok(InferRequest {
            id: doc.id,
            parameters: doc.parameters.unwrap_or_default(),
            inputs,
            outputs,
        })
    }

    /// How many records the request holds: the inputs' shared first dimension (1 for
    /// scalars).
    pub fn rows(&self) -> Result<usize> {
        let mut rows: Option<(u64, &str)> = None;
        for t in &self.inputs {
            let n = t.shape.first().copied().unwrap_or(1);
            match rows {
                None => rows = Some((n, &t.name)),
                Some((m, first)) if m != n => {
                    return invalid(format!(
                        "inputs '{first}' and '{}' differ in their first dimension ({m} and {n}): each index of it is one record",
                        t.name
                    ))
                }
                _ => {}
            }
        }
        Ok(rows.map_or(0, |(n, _)| n as usize))
    }

    /// The records: one per index of the first dimension, each input a field.
    pub fn records(&self) -> Result<Vec<Value>> {
        let rows = self.rows()?;
        Ok((0..rows)
            .map(|i| {
                let mut m = Map::with_capacity(self.inputs.len());
                for t in &self.inputs {
                    m.push(t.name.as_str(), t.row(i));
                }
                Value::Map(m)
            })
            .collect())
    }

    /// Whether `output` goes back in binary: as the request asks for it, else as the
    /// request's `binary_data_output` says (off by default).
    pub fn binary_output(&self, output: &str) -> bool {
        self.outputs
            .iter()
            .find(|o| o.name == output)
            .and_then(|o| o.binary)
            .or_else(|| {
                self.parameters
                    .get("binary_data_output")
                    .and_then(Json::as_bool)
            })
            .unwrap_or(false)
    }
}

/// Flattens JSON `data` (a flat or nested array, or a scalar) into elements of `datatype`.
fn from_json(name: &str, datatype: Datatype, data: Json) -> Result<Vec<Value>> {
    let mut leaves = Vec::new();
    flatten(data, &mut leaves);
    leaves
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            element(datatype, v).map_err(|why| Error(format!("input '{name}', element {i}: {why}")))
        })
        .collect()
}

fn flatten(v: Json, out: &mut Vec<Json>) {
    match v {
        Json::Array(a) => a.into_iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

fn element(datatype: Datatype, v: Json) -> std::result::Result<Value, String> {
    let kind = datatype.as_str();
    match (datatype, v) {
        (Datatype::Bool, Json::Bool(b)) => Ok(Value::Bool(b)),
        (Datatype::Bytes, Json::String(s)) => Ok(Value::from(s)),
        (d, Json::Number(n)) if d.is_integer() => {
            let i = n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .ok_or_else(|| format!("{n} is not an integer ({kind})"))?;
            let (lo, hi) = d.range();
            if i < lo || i > hi {
                return Err(format!("{i} is out of range for {kind}"));
            }
            Ok(Value::Int(i))
        }
        (d, Json::Number(n)) if d.is_float() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            // An FP32 input is what the client computed in single precision: the model
            // sees the value it stands for, not the JSON text's extra digits.
            Ok(Value::Float(if d == Datatype::Fp64 {
                x
            } else {
                f64::from(x as f32)
            }))
        }
        (_, v) => Err(format!("{v} is not a {kind} value")),
    }
}

/// One output tensor's metadata, or an input's: name, datatype and shape (`-1` for a
/// dimension of any size).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// The output tensors of the model's answers, one answer per record in order: a map gives
/// a tensor per key (in the first answer's order; a key null in every answer gives none),
/// anything else one tensor named `single_name`.
pub fn outputs_of(answers: &[Value], single_name: &str) -> Result<Vec<Tensor>> {
    let Some(first) = answers.first() else {
        return Ok(Vec::new());
    };
    let columns: Vec<(String, Vec<&Value>)> = match first {
        Value::Map(m) if m.iter().all(|(k, _)| k.as_str().is_some()) => {
            let names: Vec<String> = m
                .iter()
                .filter_map(|(k, _)| k.as_str().map(str::to_owned))
                .collect();
            let mut cols: Vec<(String, Vec<&Value>)> = names
                .into_iter()
                .map(|n| (n, Vec::with_capacity(answers.len())))
                .collect();
            for (row, a) in answers.iter().enumerate() {
                let Value::Map(m) = a else {
                    return invalid(format!(
                        "the model's answer to record {row} is not a map as the first one is: the answers cannot be tensors"
                    ));
                };
                for (name, col) in cols.iter_mut() {
                    let v = m.get(name).ok_or_else(|| {
                        Error(format!(
                            "the model's answer to record {row} has no '{name}', which the first one has"
                        ))
                    })?;
                    col.push(v);
                }
            }
            cols
        }
        _ => vec![(single_name.to_owned(), answers.iter().collect())],
    };
    columns
        .into_iter()
        // An optional field no answer has (null in each) is no tensor.
        .filter(|(_, values)| !values.iter().all(|v| matches!(v, Value::Null)))
        .map(|(name, values)| tensor_of(name, &values))
        .collect()
}

/// A tensor of `values`, one per row: shape `[rows, ...]` from the values' own nesting,
/// datatype the narrowest holding every element.
fn tensor_of(name: String, values: &[&Value]) -> Result<Tensor> {
    let inner = shape_of(values[0]);
    let mut data = Vec::new();
    for (row, v) in values.iter().enumerate() {
        if !shaped(v, &inner) {
            return invalid(format!(
                "output '{name}': the answer to record {row} is shaped {:?}, the first one {inner:?}: the answers cannot be one tensor",
                shape_of(v)
            ));
        }
        flatten_value(v, &mut data);
    }
    let datatype = datatype_of(&name, &data)?;
    let mut shape = vec![values.len() as u64];
    shape.extend(inner);
    Ok(Tensor {
        name,
        datatype,
        shape,
        data,
    })
}

fn shape_of(v: &Value) -> Vec<u64> {
    match v {
        Value::Array(a) => {
            let mut s = vec![a.len() as u64];
            if let Some(first) = a.first() {
                s.extend(shape_of(first));
            }
            s
        }
        _ => Vec::new(),
    }
}

/// Whether `v` has the shape `shape` (its first element's nesting, as `shape_of` reads
/// it), found without building its shape: this runs once per answer.
fn shaped(v: &Value, shape: &[u64]) -> bool {
    match (v, shape.split_first()) {
        (Value::Array(a), Some((&n, rest))) => {
            a.len() as u64 == n && a.first().map_or(rest.is_empty(), |x| shaped(x, rest))
        }
        (Value::Array(_), None) => false,
        (_, None) => true,
        (_, Some(_)) => false,
    }
}

fn flatten_value(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten_value(x, out)),
        other => out.push(other.clone()),
    }
}

fn datatype_of(name: &str, data: &[Value]) -> Result<Datatype> {
    let mut d: Option<Datatype> = None;
    for v in data {
        let this = match v {
            Value::Bool(_) => Datatype::Bool,
            Value::Int(_) => Datatype::Int64,
            Value::Float(_) => Datatype::Fp64,
            Value::String(_) | Value::Bytes(_) => Datatype::Bytes,
            other => {
                return invalid(format!(
                    "output '{name}': {other} cannot be a tensor element (numbers, booleans and strings can)"
                ))
            }
        };
        d = Some(match (d, this) {
            (None, t) => t,
            (Some(a), b) if a == b => a,
            (Some(Datatype::Int64), Datatype::Fp64) | (Some(Datatype::Fp64), Datatype::Int64) => {
                Datatype::Fp64
            }
            (Some(a), b) => {
                return invalid(format!(
                    "output '{name}' mixes {} and {} elements",
                    a.as_str(),
                    b.as_str()
                ))
            }
        });
    }
    Ok(d.unwrap_or(Datatype::Fp64))
}

/// An inference response: encoded as JSON, with the outputs the request wants in binary
/// appended after it (then the header's length is returned, for
/// `Inference-Header-Content-Length`).
#[derive(Clone, Debug, PartialEq)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: Option<String>,
    pub id: Option<String>,
    pub outputs: Vec<Tensor>,
}

impl InferResponse {
    /// The body, and the JSON header's length when binary outputs follow it.
    pub fn encode(&self, binary: impl Fn(&str) -> bool) -> (Vec<u8>, Option<usize>) {
        let mut tail = Vec::new();
        let outputs: Vec<Json> = self
            .outputs
            .iter()
            .map(|t| {
                let mut o = serde_json::Map::new();
                o.insert("name".into(), Json::from(t.name.clone()));
                o.insert("datatype".into(), Json::from(t.datatype.as_str()));
                o.insert("shape".into(), Json::from(t.shape.clone()));
                if binary(&t.name) {
                    let start = tail.len();
                    binary::encode(t, &mut tail);
                    let mut p = serde_json::Map::new();
                    p.insert("binary_data_size".into(), Json::from(tail.len() - start));
                    o.insert("parameters".into(), Json::Object(p));
                } else {
                    o.insert(
                        "data".into(),
                        Json::Array(t.data.iter().map(|v| to_json(t.datatype, v)).collect()),
                    );
                }
                Json::Object(o)
            })
            .collect();
        let mut doc = serde_json::Map::new();
        doc.insert("model_name".into(), Json::from(self.model_name.clone()));
        if let Some(v) = &self.model_version {
            doc.insert("model_version".into(), Json::from(v.clone()));
        }
        if let Some(id) = &self.id {
            doc.insert("id".into(), Json::from(id.clone()));
        }
        doc.insert("outputs".into(), Json::Array(outputs));
        let mut body = serde_json::to_vec(&Json::Object(doc)).unwrap_or_default();
        if tail.is_empty() {
            return (body, None);
        }
        let header = body.len();
        body.extend_from_slice(&tail);
        (body, Some(header))
    }
}

fn to_json(datatype: Datatype, v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) if datatype == Datatype::Fp64 => Json::from(*i as f64),
        Value::Int(i) => i64::try_from(*i)
            .map(Json::from)
            .unwrap_or_else(|_| Json::from(*i as f64)),
        Value::Float(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::from(s.as_str()),
        Value::Bytes(b) => Json::from(String::from_utf8_lossy(b).into_owned()),
        _ => Json::Null,
    }
}

#[cfg(test)]
mod tests;
