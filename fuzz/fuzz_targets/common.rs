//! Drives one decoder over fuzz input to the end; panics are the only failure.

use codecs::{AvroSchema, CodecConfig, Encoding, Framing};

/// A schema exercising every Avro type, recursion included.
pub const SCHEMA: &str = r#"{"type": "record", "name": "R", "fields": [
  {"name": "id", "type": "long"}, {"name": "x", "type": "double"}, {"name": "f", "type": "float"},
  {"name": "s", "type": "string"}, {"name": "b", "type": "bytes"}, {"name": "ok", "type": "boolean"},
  {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
  {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 2}},
  {"name": "arr", "type": {"type": "array", "items": "int"}},
  {"name": "m", "type": {"type": "map", "values": ["null", "string"]}},
  {"name": "next", "type": ["null", "R"]}]}"#;

/// Schemas whose datums can take no bytes at all or nest without end, picked by the first
/// input byte of `decode_avro_datums`; [`SCHEMA`] is the first.
pub const DATUM_SCHEMAS: &[&str] = &[
    SCHEMA,
    r#""null""#,
    r#"{"type": "record", "name": "Empty", "fields": []}"#,
    r#"{"type": "array", "items": "null"}"#,
    r#"{"type": "map", "values": {"type": "array", "items": ["null", "boolean"]}}"#,
    r#"{"type": "record", "name": "L", "fields": [{"name": "n", "type": ["null", "L"]}]}"#,
    r#"{"type": "fixed", "name": "Z", "size": 0}"#,
];

/// Parsed once: parsing per input would cost more than decoding it.
fn schemas() -> &'static [AvroSchema] {
    static PARSED: std::sync::OnceLock<Vec<AvroSchema>> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        DATUM_SCHEMAS
            .iter()
            .map(|s| AvroSchema::parse(s).expect("fuzz schema parses"))
            .collect()
    })
}

/// The `i`th of [`DATUM_SCHEMAS`], wrapping around.
pub fn schema(i: usize) -> AvroSchema {
    let all = schemas();
    all[i % all.len()].clone()
}

pub fn config(encoding: Encoding, framing: Option<Framing>, with_schema: bool) -> CodecConfig {
    let mut cfg = CodecConfig::new(encoding);
    cfg.framing = framing;
    if with_schema {
        cfg.schema = Some(schema(0));
    }
    // Small, so oversize paths are reached too.
    cfg.max_record_bytes = 256;
    cfg
}

pub fn drain(cfg: &CodecConfig, data: &[u8]) {
    let Ok(mut dec) = codecs::decoder(cfg, std::io::Cursor::new(data.to_vec()), "fuzz") else {
        return;
    };
    let mut n = 0usize;
    while let Some(item) = dec.next_item() {
        n += 1;
        if item.is_err() || n > 1_000_000 {
            break;
        }
    }
    let _ = codecs::decode_message(cfg, data);
}
