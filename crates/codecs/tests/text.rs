//! JSON lines, UTF-8 lines and raw frames.
mod common;

use codecs::{CodecConfig, Encoding, Framing};
use common::{decode_all, encode_all, values};
use runtime_core::{Map, ReadItem, RejectionKind, Value};

#[test]
fn json_lines_arrays_blank_lines_and_bad_lines() {
    let cfg = CodecConfig::new(Encoding::Json);
    let input = b"{\"a\": 1}\r\n\n  \n[1, 2]\n{broken\n\"s\"";
    let (items, err) = decode_all(&cfg, input);
    assert!(err.is_none());
    assert_eq!(items.len(), 4);
    let ReadItem::Record(r) = &items[1] else {
        panic!()
    };
    assert_eq!(r.value, Value::Array(vec![1.into(), 2.into()]));
    assert_eq!(r.position.record, 2);
    assert_eq!(r.position.line, Some(4));
    assert_eq!(r.position.byte_offset, Some(14));
    let ReadItem::Rejected(rej) = &items[2] else {
        panic!()
    };
    assert_eq!(rej.kind, RejectionKind::Encoding);
    assert_eq!((rej.position.record, rej.position.line), (3, Some(5)));
    assert!(rej.reason.contains("invalid JSON"), "{}", rej.reason);
    let ReadItem::Record(r) = &items[3] else {
        panic!()
    };
    assert_eq!(r.value, Value::from("s"));
}

#[test]
fn json_oversize_line_is_skipped() {
    let mut cfg = CodecConfig::new(Encoding::Json);
    cfg.max_record_bytes = 8;
    let (items, _) = decode_all(&cfg, b"1\n\"0123456789\"\n2\n");
    assert_eq!(items.len(), 3);
    let ReadItem::Rejected(rej) = &items[1] else {
        panic!()
    };
    assert_eq!(rej.kind, RejectionKind::Size);
    assert_eq!(rej.position.line, Some(2));
    assert!(rej.reason.contains("12 bytes"), "{}", rej.reason);
}

#[test]
fn json_encoder_writes_lines_and_rejects_nan() {
    let cfg = CodecConfig::new(Encoding::Json);
    let mut m = Map::new();
    m.push("x", 1.5);
    let (bytes, rejected) = encode_all(
        &cfg,
        &[Value::Map(m), Value::Float(f64::INFINITY), Value::Int(-3)],
    );
    assert_eq!(bytes, b"{\"x\":1.5}\n-3\n");
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].1.contains("rejected by encoding"));
}

#[test]
fn utf8_lines_with_bad_bytes() {
    let cfg = CodecConfig::new(Encoding::Utf8);
    let (items, _) = decode_all(&cfg, b"h\xc3\xa9\r\n\nab\xffc\nlast");
    assert_eq!(items.len(), 4);
    let ReadItem::Rejected(rej) = &items[2] else {
        panic!()
    };
    assert_eq!(rej.position.line, Some(3));
    assert_eq!(rej.position.byte_offset, Some(6));
    assert!(rej.reason.contains("byte offset 8"), "{}", rej.reason);
    let ok: Vec<Value> = [0, 1, 3]
        .iter()
        .map(|&i| match &items[i] {
            ReadItem::Record(r) => r.value.clone(),
            ReadItem::Rejected(r) => panic!("{r}"),
        })
        .collect();
    assert_eq!(
        ok,
        vec![Value::from("hé"), Value::from(""), Value::from("last")]
    );
}

#[test]
fn raw_fixed_and_delimited() {
    let cfg = CodecConfig::new(Encoding::Raw).with_framing(Framing::Fixed { size: 2 });
    let (items, _) = decode_all(&cfg, b"abcd");
    assert_eq!(
        values(&items),
        vec![Value::Bytes(b"ab".to_vec()), Value::Bytes(b"cd".to_vec())]
    );
    let cfg = CodecConfig::new(Encoding::Raw).with_framing(Framing::Delimited {
        separator: b"--".to_vec(),
    });
    let (bytes, rejected) = encode_all(
        &cfg,
        &[Value::from("a"), Value::Bytes(vec![0, 1]), Value::Int(1)],
    );
    assert_eq!(bytes, b"a--\x00\x01--");
    assert_eq!(rejected.len(), 1);
}

#[test]
fn nonsense_pairs_are_refused() {
    let cfg = CodecConfig::new(Encoding::Csv).with_framing(Framing::Fixed { size: 3 });
    let err = codecs::decoder(&cfg, std::io::Cursor::new(Vec::new()), "x")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("framing") && err.contains("csv"), "{err}");
    let cfg = CodecConfig::new(Encoding::AvroBinary).with_framing(Framing::AvroDatums);
    let err = codecs::encoder(&cfg, Vec::new()).err().unwrap().to_string();
    assert!(err.contains("'schema'"), "{err}");
    assert_eq!("AVRO".parse::<Encoding>().unwrap(), Encoding::AvroBinary);
    assert_eq!("null".parse::<Encoding>().unwrap(), Encoding::Raw);
    assert_eq!(Encoding::from_extension("JSONL"), Encoding::Json);
    assert_eq!(Encoding::of_extension("jsons"), Some(Encoding::Json));
    assert_eq!(Encoding::of_extension("PARQUET"), Some(Encoding::Parquet));
    assert_eq!("Parquet".parse::<Encoding>().unwrap(), Encoding::Parquet);
    assert_eq!(Encoding::of_extension("feather"), None);
    // A Parquet file frames its own rows: no other framing carries it.
    for framing in [Framing::Message, Framing::Lines] {
        let cfg = CodecConfig::new(Encoding::Parquet).with_framing(framing);
        let err = codecs::encoder(&cfg, Vec::new()).err().unwrap().to_string();
        assert!(err.contains("cannot carry encoding 'parquet'"), "{err}");
    }
    assert!("xml".parse::<Encoding>().is_err());
}

/// A message carrying a set of records: a JSON array's elements, a CSV message's rows; any
/// other message is one record, a CSV message of one row too, and a CSV row that does not
/// decode names its number.
#[test]
fn a_message_of_several_records() {
    use codecs::MessageRecords::{One, Set};
    let json = CodecConfig::new(Encoding::Json);
    let Ok(Set(set)) = codecs::decode_message_records(&json, b" [{\"a\": 1}, 2, \"s\"]") else {
        panic!("a JSON array is a set")
    };
    assert_eq!(set.len(), 3);
    assert_eq!(set[1], Value::from(2));
    assert_eq!(
        codecs::decode_message_records(&json, "\u{feff}[]".as_bytes()).unwrap(),
        Set(vec![])
    );
    let Ok(One(Value::Map(_))) = codecs::decode_message_records(&json, b"{\"a\": 1}") else {
        panic!("an object is one record")
    };
    assert!(codecs::decode_message_records(&json, b"[1,").is_err());

    let csv = CodecConfig::new(Encoding::Csv);
    let Ok(Set(rows)) = codecs::decode_message_records(&csv, b"a,b\n1,x\n2,y\n3,z\n") else {
        panic!("CSV rows are a set")
    };
    assert_eq!(rows.len(), 3);
    let mut third = Map::new();
    third.push("a", 3);
    third.push("b", "z");
    assert_eq!(rows[2], Value::Map(third));
    assert!(matches!(
        codecs::decode_message_records(&csv, b"a,b\n1,x\n"),
        Ok(One(_))
    ));
    let none = codecs::decode_message_records(&csv, b"a,b\n").unwrap_err();
    assert!(none.to_string().contains("no CSV row"), "{none}");
    let bad = codecs::decode_message_records(&csv, b"a,b\n1,x\n2\n").unwrap_err();
    assert!(bad.to_string().contains("row 2"), "{bad}");
    // The single-record reading of the same body refuses it, as before.
    assert!(codecs::decode_message(&csv, b"a,b\n1,x\n2,y\n").is_err());

    let raw = CodecConfig::new(Encoding::Raw);
    assert_eq!(
        codecs::decode_message_records(&raw, b"[1, 2]").unwrap(),
        One(Value::Bytes(b"[1, 2]".to_vec()))
    );
}
