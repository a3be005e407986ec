//! A model's Avro schema as the tensors it takes or gives: a record's fields are tensors of
//! one element per record (shape `[-1]`), an array field adds a dimension.

use serde_json::Value as Json;

use crate::TensorMetadata;

/// The tensors of an Avro schema in its JSON form: each field of a record schema, or one
/// tensor named `single_name` for any other schema.
pub fn tensors_of_avro(schema: &Json, single_name: &str) -> Vec<TensorMetadata> {
    match schema {
        Json::Object(o) if o.get("type").and_then(Json::as_str) == Some("record") => o
            .get("fields")
            .and_then(Json::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| {
                        let name = f.get("name")?.as_str()?.to_owned();
                        let (datatype, shape) = tensor_type(f.get("type")?);
                        Some(TensorMetadata {
                            name,
                            datatype,
                            shape,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        other => {
            let (datatype, shape) = tensor_type(other);
            vec![TensorMetadata {
                name: single_name.to_owned(),
                datatype,
                shape,
            }]
        }
    }
}

/// The datatype and shape of a value of Avro type `t`, one per record.
fn tensor_type(t: &Json) -> (String, Vec<i64>) {
    let mut shape = vec![-1];
    let mut t = t;
    loop {
        match t {
            Json::Object(o) if o.get("type").and_then(Json::as_str) == Some("array") => {
                shape.push(-1);
                match o.get("items") {
                    Some(items) => t = items,
                    None => break,
                }
            }
            // A union with null is the other type, optional.
            Json::Array(branches) => match branches.iter().find(|b| b.as_str() != Some("null")) {
                Some(b) => t = b,
                None => break,
            },
            Json::Object(o) => match o.get("type") {
                Some(inner) if inner.is_string() => t = inner,
                _ => break,
            },
            _ => break,
        }
    }
    let datatype = match t.as_str() {
        Some("boolean") => "BOOL",
        Some("int") => "INT32",
        Some("long") => "INT64",
        Some("float") => "FP32",
        Some("double") => "FP64",
        _ => "BYTES",
    };
    (datatype.to_owned(), shape)
}
