//! A string stands for its UTF-8 bytes where Avro expects `fixed`, as it does for `bytes`.

use codecs::{decode_message, encode_message, AvroSchema, CodecConfig, Encoding, Framing};
use runtime_core::{Map, Value};

fn cfg() -> CodecConfig {
    let schema = AvroSchema::parse(
        r#"{"type": "record", "name": "R", "fields": [
            {"name": "id", "type": {"type": "fixed", "name": "Id", "size": 4}},
            {"name": "alt", "type": ["null", "Id"]}
        ]}"#,
    )
    .unwrap();
    CodecConfig::new(Encoding::AvroBinary)
        .with_framing(Framing::Message)
        .with_schema(schema)
}

#[test]
fn a_string_of_the_right_size_is_written_as_fixed() {
    let mut m = Map::new();
    m.push("id", "abcd");
    m.push("alt", "wxyz");
    let bytes = encode_message(&cfg(), &Value::Map(m)).unwrap();
    let back = decode_message(&cfg(), &bytes).unwrap();
    assert_eq!(back.get("id"), Some(&Value::Bytes(b"abcd".to_vec())));
    assert_eq!(back.get("alt"), Some(&Value::Bytes(b"wxyz".to_vec())));
}

#[test]
fn a_string_of_another_size_is_rejected() {
    let mut m = Map::new();
    m.push("id", "abc");
    let e = encode_message(&cfg(), &Value::Map(m))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at .id: fixed Id takes 4 bytes, found 3"), "{e}");
}
