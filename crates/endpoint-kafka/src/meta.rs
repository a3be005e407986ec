//! A message's key and headers as the model sees them (`Metadata: true`) and as the sink
//! takes them back.
//!
//! An input record is the map `{"key", "value", "headers", "topic", "partition", "offset",
//! "timestamp"}`: `key` and each header's value are text when they are UTF-8, else bytes
//! (`null` when absent); `headers` maps each name to its value (the last one, when a name
//! repeats); `timestamp` is ms since the epoch. An output record of the same form gives the
//! message's `key`, `headers` and `value` (encoded with the stream's encoding); a record
//! that is not a map with a `value` field is refused.

use runtime_core::{Map, MessageMeta, Value};

fn bytes_value(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::from(s),
        Err(_) => Value::Bytes(b.to_vec()),
    }
}

/// The record the model is handed for a message whose value decoded to `value`.
pub(crate) fn message_record(value: Value, meta: &MessageMeta) -> Value {
    let mut m = Map::new();
    m.insert("key", meta.key.as_deref().map_or(Value::Null, bytes_value));
    m.insert("value", value);
    let mut headers = Map::new();
    for (name, v) in &meta.headers {
        headers.insert(name.as_str(), v.as_deref().map_or(Value::Null, bytes_value));
    }
    m.insert("headers", Value::Map(headers));
    m.insert(
        "topic",
        meta.topic.as_deref().map_or(Value::Null, Value::from),
    );
    m.insert(
        "partition",
        meta.partition.map_or(Value::Null, |p| Value::Int(p.into())),
    );
    m.insert(
        "offset",
        meta.offset.map_or(Value::Null, |o| Value::Int(o.into())),
    );
    m.insert(
        "timestamp",
        meta.timestamp_ms
            .map_or(Value::Null, |t| Value::Int(t.into())),
    );
    Value::Map(m)
}

/// A key or header value given by the model: text or bytes (a number is taken as its text).
fn value_bytes(v: &Value, what: &str) -> Result<Option<Vec<u8>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.as_bytes().to_vec())),
        Value::Bytes(b) => Ok(Some(b.clone())),
        Value::Int(n) => Ok(Some(n.to_string().into_bytes())),
        Value::Float(f) => Ok(Some(f.to_string().into_bytes())),
        Value::Bool(b) => Ok(Some(b.to_string().into_bytes())),
        _ => Err(format!("{what} must be text or bytes")),
    }
}

/// A message to write: its value (a record, or bytes), key and headers.
pub(crate) struct Given<V = Value> {
    pub value: V,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Reads an output record of the `Metadata` form.
pub(crate) fn given(record: Value) -> Result<Given, String> {
    let Value::Map(m) = record else {
        return Err("a Metadata output takes records {\"key\", \"value\", \"headers\"}".into());
    };
    let mut value = None;
    let mut key = None;
    let mut headers = Vec::new();
    for (k, v) in m.into_entries() {
        match &k {
            Value::String(name) if name == "value" => value = Some(v),
            Value::String(name) if name == "key" => key = value_bytes(&v, "key")?,
            Value::String(name) if name == "headers" => match v {
                Value::Map(hs) => {
                    for (hk, hv) in hs.into_entries() {
                        let Value::String(hk) = hk else {
                            return Err("header names must be text".into());
                        };
                        let hv = value_bytes(&hv, &format!("header {hk}"))?;
                        headers.push((hk.into_string(), hv));
                    }
                }
                Value::Null => {}
                _ => return Err("headers must be a map of names to text or bytes".into()),
            },
            _ => {}
        }
    }
    let value = value.ok_or("the record has no \"value\" field")?;
    Ok(Given {
        value,
        key,
        headers,
    })
}

/// Error record fields written as headers (`error.<field>`), when the record has them.
const ERROR_HEADERS: &[&str] = &["reason", "stage", "kind", "slot", "record", "traceback"];

/// The message an error output writes for an error record (`jobs::errors`): the original
/// message's value, key and headers when the record was read from Kafka (else the bytes that
/// did not decode, else the record's value, else the error record itself, encoded by the
/// stream's encoding), with headers `error.reason`, `error.stage`, `error.kind`,
/// `error.slot`, `error.record`, `error.traceback` and, for a Kafka input, `error.topic`,
/// `error.partition`, `error.offset`.
pub(crate) fn error_message(
    record: Value,
    meta: Option<&MessageMeta>,
    encode: impl Fn(&Value) -> Result<Vec<u8>, String>,
) -> Result<Given<Vec<u8>>, String> {
    let mut headers: Vec<(String, Option<Vec<u8>>)> = meta
        .map(|m| {
            m.headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_deref().map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    let Value::Map(fields) = &record else {
        return Err("an error output takes error records".into());
    };
    for name in ERROR_HEADERS {
        if let Some(v) = fields.get(name) {
            if let Some(b) = value_bytes(v, name)? {
                headers.push((format!("error.{name}"), Some(b)));
            }
        }
    }
    if let Some(m) = meta {
        let coords = [
            ("error.topic", m.topic.as_deref().map(str::to_owned)),
            ("error.partition", m.partition.map(|p| p.to_string())),
            ("error.offset", m.offset.map(|o| o.to_string())),
        ];
        for (name, v) in coords {
            if let Some(v) = v {
                headers.push((name.to_owned(), Some(v.into_bytes())));
            }
        }
    }
    let value = match (meta.and_then(|m| m.value.as_deref()), fields.get("bytes")) {
        (Some(original), _) => original.to_vec(),
        (None, Some(Value::Bytes(b))) => b.clone(),
        _ => match fields.get("value") {
            Some(v) => encode(v)?,
            None => encode(&record)?,
        },
    };
    Ok(Given {
        value,
        key: meta.and_then(|m| m.key.as_deref().map(<[u8]>::to_vec)),
        headers,
    })
}
