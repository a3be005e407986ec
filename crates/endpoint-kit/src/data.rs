//! The records the checks send, and how they compare what came back.

use codecs::{CodecConfig, Encoding};
use runtime_core::{Map, ReadItem, Value};

/// The size of the large record: one record, not many, so the check stays quick.
pub(crate) const LARGE_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Record `n` of stream `stream`.
pub(crate) fn record(stream: &str, n: u64) -> Value {
    let m: Map = [
        ("n", Value::from(n)),
        ("text", Value::from(format!("stream {stream}, record {n}"))),
    ]
    .into_iter()
    .collect();
    Value::Map(m)
}

/// Records 1 to `count` of `stream`.
pub(crate) fn records(stream: &str, count: u64) -> Vec<Value> {
    (1..=count).map(|n| record(stream, n)).collect()
}

/// Record `n` with a text of [`LARGE_RECORD_BYTES`].
pub(crate) fn large_record(n: u64) -> Value {
    let m: Map = [
        ("n", Value::from(n)),
        ("text", Value::from("x".repeat(LARGE_RECORD_BYTES))),
    ]
    .into_iter()
    .collect();
    Value::Map(m)
}

/// The JSON bytes of a record, as a source's stream holds them.
pub(crate) fn message(value: &Value) -> Result<Vec<u8>, String> {
    codecs::encode_message(&CodecConfig::new(Encoding::Json), value)
        .map_err(|e| format!("the kit cannot encode its own record: {e}"))
}

pub(crate) fn messages(values: &[Value]) -> Result<Vec<Vec<u8>>, String> {
    values.iter().map(message).collect()
}

/// A value in a message, cut short.
pub(crate) fn show(value: &Value) -> String {
    let text = format!("{value:?}");
    if text.len() <= 160 {
        return text;
    }
    let mut end = 120;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} characters)", &text[..end], text.len())
}

/// `Ok` when `got` is `want`, else where they first differ.
pub(crate) fn same(what: &str, got: &[Value], want: &[Value]) -> Result<(), String> {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        return Err(format!(
            "{what}: item {} is {}, expected {}",
            i + 1,
            show(&got[i]),
            show(&want[i])
        ));
    }
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} record(s), expected {}{}",
            got.len(),
            want.len(),
            match got.get(want.len()) {
                Some(extra) => format!(" (the first extra: {})", show(extra)),
                None => String::new(),
            }
        ));
    }
    Ok(())
}

/// The values of `items`, refusing any rejection.
pub(crate) fn values(what: &str, items: Vec<ReadItem>) -> Result<Vec<Value>, String> {
    items
        .into_iter()
        .map(|item| match item {
            ReadItem::Record(r) => Ok(r.value),
            ReadItem::Rejected(r) => Err(format!("{what}: a valid record was rejected: {r}")),
        })
        .collect()
}
