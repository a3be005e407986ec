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

pub fn config(encoding: Encoding, framing: Option<Framing>, with_schema: bool) -> CodecConfig {
    let mut cfg = CodecConfig::new(encoding);
    cfg.framing = framing;
    if with_schema {
        cfg.schema = AvroSchema::parse(SCHEMA).ok();
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
