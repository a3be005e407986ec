//! Input that used to change silently on its way to the model: each is now rejected with a
//! reason or handled as docs/codecs.md says.

mod common;

use codecs::{AvroSchema, CodecConfig, Encoding};
use common::{decode_all, encode_all, values};
use runtime_core::{ReadItem, Value};

fn csv(text: &str) -> (Vec<ReadItem>, Option<String>) {
    decode_all(&CodecConfig::new(Encoding::Csv), text.as_bytes())
}

fn rejections(items: &[ReadItem]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            ReadItem::Rejected(r) => Some(r.reason.clone()),
            ReadItem::Record(_) => None,
        })
        .collect()
}

#[test]
fn a_repeated_csv_header_name_keeps_every_column() {
    let (items, err) = csv("a,b,a,a.1,a\n1,2,3,4,5\n");
    assert_eq!(err, None);
    let v = &values(&items)[0];
    let Value::Map(m) = v else { panic!("{v:?}") };
    let keys: Vec<String> = m
        .iter()
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["a", "b", "a.2", "a.1", "a.3"]);
    assert_eq!(v.get("a.3"), Some(&Value::Int(5)));
}

#[test]
fn an_unclosed_csv_quote_at_the_end_is_rejected() {
    let (items, err) = csv("a,b\n1,2\n3,\"open\nrest\n");
    assert_eq!(err, None);
    assert_eq!(values(&items[..1]).len(), 1);
    let why = rejections(&items);
    assert_eq!(why.len(), 1, "{items:?}");
    assert!(why[0].contains("never closed"), "{why:?}");
    // Quotes that pair up are fine, the last row without a newline too.
    let (items, _) = csv("a,b\n\"x\"\"y\",\"z\"");
    assert_eq!(values(&items)[0].get("a"), Some(&Value::from("x\"y")));
    // A quote inside an unquoted field is an ordinary character, even on the last line.
    let (items, err) = csv("id,size\n1,12\" pipe");
    assert_eq!(err, None);
    assert!(rejections(&items).is_empty(), "{items:?}");
    assert_eq!(
        values(&items)[0].get("size"),
        Some(&Value::from("12\" pipe"))
    );
}

#[test]
fn a_csv_byte_order_mark_is_skipped_and_wide_integers_stay_exact() {
    let (items, err) = csv("\u{feff}id,n\n1,123456789012345678901234567890\n");
    assert_eq!(err, None);
    let v = &values(&items)[0];
    assert_eq!(v.get("id"), Some(&Value::Int(1)));
    assert_eq!(
        v.get("n"),
        Some(&Value::from("123456789012345678901234567890"))
    );
}

#[test]
fn an_avro_file_whose_header_schema_does_not_fit_its_data_is_rejected() {
    let schema = r#"{"type":"record","name":"r","fields":[{"name":"x","type":"long"}]}"#;
    let cfg =
        CodecConfig::new(Encoding::AvroBinary).with_schema(AvroSchema::parse(schema).unwrap());
    let records: Vec<Value> = (1..=5)
        .map(|i| {
            let mut m = runtime_core::Map::new();
            m.push("x", Value::Int(i * 1000));
            Value::Map(m)
        })
        .collect();
    let (bytes, rejected) = encode_all(&cfg, &records);
    assert!(rejected.is_empty());
    let (items, err) = decode_all(&CodecConfig::new(Encoding::AvroBinary), &bytes);
    assert_eq!((values(&items), err), (records, None));
    // The same data under a header that says every datum is a null: no records of nulls.
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(text.contains(r#""type":"long""#));
    let lying = bytes_replace(&bytes, br#""type":"long""#, br#""type":"null""#);
    let (items, err) = decode_all(&CodecConfig::new(Encoding::AvroBinary), &lying);
    assert_eq!(err, None);
    let why = rejections(&items);
    assert_eq!((items.len(), why.len()), (1, 1), "{items:?}");
    assert!(why[0].contains("header schema does not fit"), "{why:?}");
}

fn bytes_replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = hay.windows(from.len()).position(|w| w == from).unwrap();
    [&hay[..at], to, &hay[at + from.len()..]].concat()
}

#[test]
fn a_json_document_spanning_lines_is_told_from_json_lines() {
    let doc =
        |s: &str| codecs::is_json_document(std::io::Cursor::new(s.to_owned()), 1 << 20).unwrap();
    assert!(doc("[\n  {\"a\": 1},\n  {\"a\": 2}\n]\n"));
    assert!(doc("\u{feff}\n{\n \"a\": [1,\n 2]\n}"));
    assert!(!doc("{\"a\": 1}\n{\"a\": 2}\n"));
    assert!(!doc("[1, 2]\n"));
    assert!(!doc(""));
    // Two documents, or a broken one: not one document, so read as lines (and rejected).
    assert!(!doc("{\n\"a\": 1\n}\n{\n\"a\": 2\n}\n"));
    assert!(!doc("{\n\"a\": 1\n"));
    // Past the record limit nothing more is read: a document, which the decoder refuses
    // for its size.
    let big = format!("[\n{}1\n]\n", "1,\n".repeat(100));
    assert!(codecs::is_json_document(std::io::Cursor::new(big), 64).unwrap());
    // The whole input as one record is the message framing.
    let cfg = CodecConfig::new(Encoding::Json).with_framing(codecs::Framing::Message);
    let (items, err) = decode_all(&cfg, b"[\n  {\"a\": 1},\n  {\"a\": 2}\n]\n");
    assert_eq!(err, None);
    assert_eq!(values(&items).len(), 1);
}

#[test]
fn an_empty_avro_file_holds_no_records() {
    let (items, err) = decode_all(&CodecConfig::new(Encoding::AvroBinary), b"");
    assert_eq!((items.len(), err), (0, None));
    let (_, err) = decode_all(&CodecConfig::new(Encoding::AvroBinary), b"Ob");
    assert!(err.unwrap().contains("bad container header"));
}
