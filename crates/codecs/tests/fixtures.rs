//! Fixture files written by other implementations (fastavro, Python's msgpack; see
//! scripts/make-codec-fixtures.py) decode to exactly these values, and survive our own
//! encode/decode round trip; the container files we write, with every block codec, are read
//! back by fastavro.
mod common;

use codecs::{AvroSchema, CodecConfig, Encoding, Framing, OcfCodec};
use common::{decode_all, encode_all, run_python, values};
use runtime_core::{Map, Value};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/codecs/");

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap()
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().collect::<Map>())
}

fn rich(i: i64, child: Option<Value>) -> Value {
    let scores: Vec<Value> = [1.5, -2.0][..(i % 3) as usize]
        .iter()
        .map(|&x| Value::Float(x))
        .collect();
    map(vec![
        ("id", Value::from(i * 1_000_000_000_000)),
        ("small", Value::from(-i)),
        ("ratio", Value::Float(i as f64 / 4.0)),
        ("half", Value::Float(0.5)),
        ("name", Value::from(format!("né\u{b5}{i}"))),
        ("ok", Value::Bool(i % 2 == 0)),
        ("blob", Value::Bytes(vec![i as u8, 255])),
        ("tag", Value::Bytes(b"ab".to_vec())),
        (
            "color",
            Value::from(if i % 2 == 1 { "GREEN" } else { "RED" }),
        ),
        ("scores", Value::Array(scores)),
        ("attrs", map(vec![("k", Value::from(i))])),
        (
            "maybe",
            if i % 2 == 1 {
                Value::Null
            } else {
                Value::from("yes")
            },
        ),
        ("when", Value::from(1_700_000_000_000 + i)),
        ("child", Value::from(child)),
    ])
}

fn rich_records() -> Vec<Value> {
    vec![
        rich(1, None),
        rich(2, Some(rich(3, None))),
        rich(4, None),
        rich(5, None),
    ]
}

#[test]
fn fastavro_container_files_decode_exactly() {
    for file in [
        "rich-null.avro",
        "rich-deflate.avro",
        "rich-snappy.avro",
        "rich-zstandard.avro",
    ] {
        let (items, err) = decode_all(&CodecConfig::new(Encoding::AvroBinary), &read(file));
        assert!(err.is_none(), "{file}: {err:?}");
        assert_eq!(values(&items), rich_records(), "{file}");
    }
}

#[test]
fn avro_round_trips_through_our_writer() {
    let schema = AvroSchema::parse(&String::from_utf8(read("rich.avsc")).unwrap()).unwrap();
    for codec in OcfCodec::ALL {
        let mut cfg = CodecConfig::new(Encoding::AvroBinary).with_schema(schema.clone());
        cfg.ocf_codec = codec;
        let (bytes, rejected) = encode_all(&cfg, &rich_records());
        assert!(rejected.is_empty(), "{rejected:?}");
        let (items, err) = decode_all(&cfg, &bytes);
        assert!(err.is_none());
        assert_eq!(values(&items), rich_records());
        // Datum streams and single messages too.
        let cfg = cfg.with_framing(Framing::AvroDatums);
        let (bytes, _) = encode_all(&cfg, &rich_records());
        let (items, _) = decode_all(&cfg, &bytes);
        assert_eq!(values(&items), rich_records());
        let msg = codecs::encode_message(&cfg, &rich_records()[1]).unwrap();
        assert_eq!(
            codecs::decode_message(&cfg, &msg).unwrap(),
            rich_records()[1]
        );
    }
}

/// fastavro reads the container files we write with each block codec (several blocks each),
/// record for record equal to what it reads from its own fixture, and sees the codec we
/// named in the header.
#[test]
fn fastavro_reads_our_container_files_with_every_codec() {
    const COPIES: usize = 3000;
    let schema = AvroSchema::parse(&String::from_utf8(read("rich.avsc")).unwrap()).unwrap();
    let records: Vec<Value> = (0..COPIES).flat_map(|_| rich_records()).collect();
    let dir = tempfile::tempdir().unwrap();
    for codec in OcfCodec::ALL {
        let mut cfg = CodecConfig::new(Encoding::AvroBinary).with_schema(schema.clone());
        cfg.ocf_codec = codec;
        let (bytes, rejected) = encode_all(&cfg, &records);
        assert!(rejected.is_empty(), "{rejected:?}");
        let path = dir.path().join(format!("ours-{codec}.avro"));
        std::fs::write(&path, &bytes).unwrap();
        let out = run_python(
            r#"
import sys, fastavro
ours, theirs, copies, codec = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(theirs, "rb") as f:
    want = list(fastavro.reader(f)) * copies
with open(ours, "rb") as f:
    reader = fastavro.block_reader(f)
    assert reader.codec == codec, (reader.codec, codec)
    blocks = list(reader)
got = [r for b in blocks for r in b]
assert len(got) == len(want), (len(got), len(want))
for i, (g, w) in enumerate(zip(got, want)):
    assert g == w, (i, g, w)
print(len(blocks), len(got))
"#,
            &[
                path.to_str().unwrap(),
                &format!("{DIR}rich-null.avro"),
                &COPIES.to_string(),
                codec.name(),
            ],
        );
        let counts: Vec<usize> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
        assert_eq!(counts[1], records.len(), "{codec}: {out}");
        assert!(counts[0] > 1, "{codec}: a single block: {out}");
    }
}

#[test]
fn avro_encoding_widens_and_names_the_failing_field() {
    let schema = AvroSchema::parse(&String::from_utf8(read("rich.avsc")).unwrap()).unwrap();
    let cfg = CodecConfig::new(Encoding::AvroBinary).with_schema(schema);
    let Value::Map(mut m) = rich(2, None) else {
        panic!()
    };
    m.insert("ratio", Value::Int(3));
    let bytes = codecs::encode_message(&cfg, &Value::Map(m.clone())).unwrap();
    assert_eq!(
        codecs::decode_message(&cfg, &bytes).unwrap().get("ratio"),
        Some(&Value::Float(3.0))
    );
    let Value::Map(mut child) = rich(3, None) else {
        panic!()
    };
    child.insert("attrs", map(vec![("k", Value::from("x"))]));
    m.insert("child", Value::Map(child));
    let err = codecs::encode_message(&cfg, &Value::Map(m))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rejected by encoding") && err.contains(".child.attrs[\"k\"]"),
        "{err}"
    );
}

#[test]
fn msgpack_stream_from_python_decodes_exactly() {
    let (items, err) = decode_all(
        &CodecConfig::new(Encoding::MsgPack),
        &read("values.msgpack"),
    );
    assert!(err.is_none(), "{err:?}");
    let mut first = Map::new();
    first.push("a", 1);
    first.push(2, Value::Bytes(vec![0, 255]));
    first.push(Value::Null, Value::Array(vec![true.into(), 1.5.into()]));
    let want = vec![
        Value::Map(first),
        "text".into(),
        (-33).into(),
        Value::Int(i128::from(u64::MAX)),
        Value::Int(i128::from(i64::MIN)),
        Value::Array(vec![]),
        Value::Map(Map::new()),
    ];
    assert_eq!(values(&items), want);
    let (bytes, _) = encode_all(&CodecConfig::new(Encoding::MsgPack), &want);
    assert_eq!(
        bytes,
        read("values.msgpack"),
        "our writer picks the same formats as msgpack-python"
    );
}

#[test]
fn json_lines_fixture() {
    let (items, _) = decode_all(&CodecConfig::new(Encoding::Json), &read("records.jsonl"));
    let want = vec![
        map(vec![
            ("id", 1.into()),
            ("x", 0.5.into()),
            ("name", "a".into()),
            ("flag", true.into()),
        ]),
        Value::Array(vec![1.into(), "two".into(), Value::Null]),
        map(vec![
            (
                "nested",
                map(vec![(
                    "deep",
                    Value::Array(vec![1000.0.into(), (-2).into()]),
                )]),
            ),
            ("big", Value::Int(i128::from(u64::MAX))),
        ]),
    ];
    assert_eq!(values(&items), want);
}

#[test]
fn csv_fixture_with_inference() {
    let (items, _) = decode_all(&CodecConfig::new(Encoding::Csv), &read("records.csv"));
    let row = |id: i64, x: Value, name: &str, flag: bool| {
        map(vec![
            ("id", id.into()),
            ("x", x),
            ("name", name.into()),
            ("flag", flag.into()),
            ("empty", Value::Null),
        ])
    };
    assert_eq!(
        values(&items),
        vec![
            row(1, 0.5.into(), "plain", true),
            row(2, (-1000.0).into(), "quoted, with comma", false),
            row(3, "nan".into(), "multi\nline \"q\"", true),
        ]
    );
    let (bytes, rejected) = encode_all(&CodecConfig::new(Encoding::Csv), &values(&items));
    assert!(rejected.is_empty());
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "id,x,name,flag,empty\n1,0.5,plain,true,\n2,-1000.0,\"quoted, with comma\",false,\n3,nan,\"multi\nline \"\"q\"\"\",true,\n"
    );
}

#[test]
fn csv_output_rejects_other_keys() {
    let a = map(vec![("a", 1.into()), ("b", 2.into())]);
    let b = map(vec![("a", 1.into()), ("c", 2.into())]);
    let swapped = map(vec![("b", 3.into()), ("a", 4.into())]);
    let (bytes, rejected) = encode_all(&CodecConfig::new(Encoding::Csv), &[a, b, swapped]);
    assert_eq!(bytes, b"a,b\n1,2\n4,3\n");
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0].1.contains("missing [\"b\"], extra [\"c\"]"),
        "{}",
        rejected[0].1
    );
}

#[test]
fn text_and_raw_fixtures() {
    let (items, _) = decode_all(&CodecConfig::new(Encoding::Utf8), &read("lines.txt"));
    assert_eq!(
        values(&items),
        vec![
            "café".into(),
            "".into(),
            "second line".into(),
            "no newline at end".into()
        ]
    );
    let cfg = CodecConfig::new(Encoding::Raw).with_framing(Framing::Fixed { size: 5 });
    let (items, _) = decode_all(&cfg, &read("chunks.bin"));
    assert_eq!(
        values(&items),
        vec![
            Value::Bytes(vec![0, 1, 2, 3, 4]),
            Value::Bytes(vec![5, 6, 7, 8, 9])
        ]
    );
}
