//! Property tests: every encoding round-trips the values it can represent, and no decoder
//! panics on arbitrary bytes (the stable-toolchain stand-in for the cargo-fuzz targets).
mod common;

use codecs::{AvroSchema, CodecConfig, Encoding, Framing, OcfCodec};
use common::{decode_all, encode_all, values};
use proptest::prelude::*;
use runtime_core::{Map, Value};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::Float),
        ".{0,12}".prop_map(Value::from),
    ]
}

/// Any value; `bytes` only where the encoding keeps them apart from strings.
fn tree(bytes: bool) -> impl Strategy<Value = Value> {
    let leaf = if bytes {
        prop_oneof![
            scalar(),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes)
        ]
        .boxed()
    } else {
        scalar().boxed()
    };
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z]{0,4}", inner), 0..4)
                .prop_map(|kv| Value::Map(kv.into_iter().collect::<Map>())),
        ]
    })
}

fn msgpack_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        scalar(),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes)
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..4)
                .prop_map(|kv| Value::Map(Map::from(kv))),
        ]
    })
}

const RICH: &str = r#"{"type": "record", "name": "R", "fields": [
  {"name": "id", "type": "long"}, {"name": "i", "type": "int"}, {"name": "x", "type": "double"},
  {"name": "f", "type": "float"}, {"name": "s", "type": "string"}, {"name": "b", "type": "bytes"},
  {"name": "ok", "type": "boolean"},
  {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
  {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 3}},
  {"name": "u", "type": ["null", "long", "string"]},
  {"name": "arr", "type": {"type": "array", "items": "string"}},
  {"name": "m", "type": {"type": "map", "values": ["null", "double"]}},
  {"name": "next", "type": ["null", "R"]}]}"#;

fn rich_value() -> impl Strategy<Value = Value> {
    let flat = (
        any::<i64>(),
        any::<i32>(),
        any::<f64>().prop_filter("not NaN", |x| !x.is_nan()),
        any::<f32>().prop_filter("not NaN", |x| !x.is_nan()),
        ".{0,8}",
        proptest::collection::vec(any::<u8>(), 0..8),
        any::<bool>(),
        prop_oneof![Just("A"), Just("B"), Just("C")],
        proptest::collection::vec(any::<u8>(), 3..=3),
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,5}".prop_map(Value::from)
        ],
        proptest::collection::vec("[a-z]{0,5}".prop_map(Value::from), 0..4),
        proptest::collection::vec(
            (
                "[a-z]{1,4}",
                prop_oneof![Just(Value::Null), (-1e9..1e9f64).prop_map(Value::Float)],
            ),
            0..3,
        ),
    )
        .prop_map(|(id, i, x, f, s, b, ok, e, fx, u, arr, m)| {
            vec![
                ("id", Value::from(id)),
                ("i", Value::from(i)),
                ("x", Value::Float(x)),
                ("f", Value::from(f)),
                ("s", Value::from(s)),
                ("b", Value::Bytes(b)),
                ("ok", Value::Bool(ok)),
                ("e", Value::from(e)),
                ("fx", Value::Bytes(fx)),
                ("u", u),
                ("arr", Value::Array(arr)),
                ("m", Value::Map(m.into_iter().collect::<Map>())),
            ]
        });
    (flat.clone(), proptest::option::of(flat)).prop_map(|(outer, inner)| {
        let with_next = |mut fields: Vec<(&str, Value)>, next: Value| {
            fields.push(("next", next));
            Value::Map(fields.into_iter().collect::<Map>())
        };
        let next = inner.map_or(Value::Null, |f| with_next(f, Value::Null));
        with_next(outer, next)
    })
}

/// A CSV cell value that reads back as itself under the inference rule.
fn csv_cell() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::Float),
        "[a-zA-Z ,\"\n]{1,10}"
            .prop_filter("reads back as a string", |s| {
                matches!(codecs::csv::infer(s), Value::String(_))
            })
            .prop_map(Value::from),
    ]
}

fn round_trip(cfg: &CodecConfig, vals: &[Value]) -> Vec<Value> {
    let (bytes, rejected) = encode_all(cfg, vals);
    assert!(rejected.is_empty(), "{rejected:?}");
    let (items, err) = decode_all(cfg, &bytes);
    assert!(err.is_none(), "{err:?}");
    values(&items)
}

/// What JSON gives back for a value: bytes come back as their base64 text.
fn as_json_reads(v: &Value) -> Value {
    use base64::Engine as _;
    match v {
        Value::Bytes(b) => Value::from(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Array(a) => Value::Array(a.iter().map(as_json_reads).collect()),
        Value::Map(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), as_json_reads(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn json_round_trip(vals in proptest::collection::vec(tree(true), 0..6)) {
        let got = round_trip(&CodecConfig::new(Encoding::Json), &vals);
        let want: Vec<Value> = vals.iter().map(as_json_reads).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn msgpack_round_trip(vals in proptest::collection::vec(msgpack_tree(), 0..6)) {
        prop_assert_eq!(round_trip(&CodecConfig::new(Encoding::MsgPack), &vals), vals);
    }

    #[test]
    fn utf8_round_trip(lines in proptest::collection::vec("[^\n\r]{0,20}", 0..6)) {
        let vals: Vec<Value> = lines.into_iter().map(Value::from).collect();
        prop_assert_eq!(round_trip(&CodecConfig::new(Encoding::Utf8), &vals), vals);
    }

    #[test]
    fn raw_round_trip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..6)) {
        let cfg = CodecConfig::new(Encoding::Raw).with_framing(Framing::Delimited { separator: vec![0xff, 0xfe] });
        let vals: Vec<Value> = chunks
            .into_iter()
            .filter(|c| !c.windows(2).any(|w| w == [0xff, 0xfe]) && c.last() != Some(&0xff))
            .map(Value::Bytes)
            .collect();
        prop_assert_eq!(round_trip(&cfg, &vals), vals);
    }

    #[test]
    fn csv_round_trip(rows in proptest::collection::vec(proptest::collection::vec(csv_cell(), 3..=3), 1..6)) {
        let vals: Vec<Value> = rows
            .into_iter()
            .map(|r| Value::Map(["a", "b", "c"].into_iter().zip(r).collect::<Map>()))
            .collect();
        prop_assert_eq!(round_trip(&CodecConfig::new(Encoding::Csv), &vals), vals);
    }

    #[test]
    fn avro_round_trip(vals in proptest::collection::vec(rich_value(), 0..6), codec in 0..OcfCodec::ALL.len(), datums in any::<bool>()) {
        let mut cfg = CodecConfig::new(Encoding::AvroBinary).with_schema(AvroSchema::parse(RICH).unwrap());
        cfg.ocf_codec = OcfCodec::ALL[codec];
        if datums {
            cfg = cfg.with_framing(Framing::AvroDatums);
        }
        prop_assert_eq!(round_trip(&cfg, &vals), vals);
    }

    #[test]
    fn no_decoder_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), ocf_prefix in any::<bool>()) {
        let schema = AvroSchema::parse(RICH).unwrap();
        let mut input = bytes.clone();
        if ocf_prefix {
            // Start from a valid header so the block reader gets exercised.
            let cfg = CodecConfig::new(Encoding::AvroBinary).with_schema(schema.clone());
            let (mut head, _) = encode_all(&cfg, &[]);
            head.extend_from_slice(&bytes);
            input = head;
        }
        let cfgs = [
            CodecConfig::new(Encoding::Json),
            CodecConfig::new(Encoding::Csv),
            CodecConfig::new(Encoding::Csv).with_schema(schema.clone()),
            CodecConfig::new(Encoding::AvroBinary),
            CodecConfig::new(Encoding::AvroBinary).with_schema(schema.clone()).with_framing(Framing::AvroDatums),
            CodecConfig::new(Encoding::MsgPack),
            CodecConfig::new(Encoding::Utf8),
            CodecConfig::new(Encoding::Raw).with_framing(Framing::Fixed { size: 7 }),
        ];
        for mut cfg in cfgs {
            cfg.max_record_bytes = 64;
            let _ = decode_all(&cfg, &input);
            let _ = codecs::decode_message(&cfg, &input);
        }
    }
}

/// A small Parquet file of ours: three row groups of a few columns, nested ones included.
fn small_parquet() -> Vec<u8> {
    let rows: Vec<Value> = (0..9i64)
        .map(|i| {
            let mut m = Map::new();
            m.push("i", i);
            m.push("s", format!("v{i}"));
            m.push("l", Value::Array(vec![Value::from(i), Value::Null]));
            let mut inner = Map::new();
            inner.push("x", i as f64 / 2.0);
            m.push("m", Value::Map(inner));
            Value::Map(m)
        })
        .collect();
    let buf = common::SharedBuf::default();
    let mut enc = codecs::encoder(&CodecConfig::new(Encoding::Parquet), buf.clone()).unwrap();
    for (k, r) in rows.iter().enumerate() {
        enc.write(r).unwrap();
        if k % 3 == 2 {
            enc.finish().unwrap();
        }
    }
    enc.close().unwrap();
    buf.bytes()
}

/// Every item a Parquet decoder gives for `bytes`, until it ends or breaks.
fn drain_parquet(bytes: Vec<u8>) -> usize {
    let input = Box::new(bytes::Bytes::from(bytes));
    let mut dec =
        codecs::parquet_decoder(&CodecConfig::new(Encoding::Parquet), input, "prop").unwrap();
    let mut n = 0;
    while let Some(item) = dec.next_item() {
        n += 1;
        if item.is_err() {
            break;
        }
    }
    n
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A valid file with bytes overwritten anywhere (the footer included) is read, rejected
    /// or refused, never a panic.
    #[test]
    fn parquet_decoder_does_not_panic_on_damaged_files(
        hits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = small_parquet();
        for (at, b) in hits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        drain_parquet(bytes);
    }

    #[test]
    fn parquet_decoder_does_not_panic_on_arbitrary_bytes(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        footer_len in 0u32..300,
    ) {
        let mut bytes = b"PAR1".to_vec();
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&footer_len.to_le_bytes());
        bytes.extend_from_slice(b"PAR1");
        drain_parquet(bytes);
    }
}
