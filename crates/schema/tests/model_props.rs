//! Property tests of the one schema model: over generated schemas (valid ones and broken
//! ones: unknown names, names defined twice, defaults of the wrong type, logical types on the
//! wrong type), the codecs and the checker accept the same schemas and reject the same ones,
//! and what the Avro decoder reads with a schema the checker takes as is.

use codecs::AvroSchema;
use proptest::prelude::*;
use schema::Checker;
use serde_json::{json, Value as J};

/// A few names, so that generated schemas reuse them: references that resolve, references
/// that do not, and names defined twice.
const NAMES: [&str; 4] = ["A", "B", "ns.C", "D"];

fn primitive() -> impl Strategy<Value = J> {
    prop_oneof![
        Just(json!("null")),
        Just(json!("boolean")),
        Just(json!("int")),
        Just(json!("long")),
        Just(json!("float")),
        Just(json!("double")),
        Just(json!("bytes")),
        Just(json!("string")),
    ]
}

fn logical(with_logical: bool) -> BoxedStrategy<J> {
    if !with_logical {
        return Just(json!("int")).boxed();
    }
    prop_oneof![
        Just(json!({"type": "int", "logicalType": "date"})),
        Just(json!({"type": "long", "logicalType": "timestamp-millis"})),
        Just(json!({"type": "int", "logicalType": "timestamp-millis"})),
        Just(json!({"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2})),
        Just(json!({"type": "bytes", "logicalType": "decimal", "precision": 2, "scale": 4})),
        Just(json!({"type": "string", "logicalType": "uuid"})),
        Just(json!({"type": "long", "logicalType": "no-such-logical-type"})),
    ]
    .boxed()
}

fn default_value() -> impl Strategy<Value = Option<J>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(json!(null))),
        1 => Just(Some(json!(0))),
        1 => Just(Some(json!(1.5))),
        1 => Just(Some(json!("x"))),
        1 => Just(Some(json!(true))),
        1 => Just(Some(json!([]))),
        1 => Just(Some(json!({}))),
    ]
}

/// A schema; `with_logical` adds logical types (whose content the checker looks at beyond
/// what the bytes say, so the decode property leaves them out).
fn schema(with_logical: bool) -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        4 => primitive(),
        1 => logical(with_logical),
        1 => proptest::sample::select(&NAMES[..]).prop_map(|n| json!(n)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let name = proptest::sample::select(&NAMES[..]);
        prop_oneof![
            inner
                .clone()
                .prop_map(|i| json!({"type": "array", "items": i})),
            inner
                .clone()
                .prop_map(|v| json!({"type": "map", "values": v})),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(J::Array),
            (name.clone(), 1usize..4)
                .prop_map(|(n, size)| json!({"type": "fixed", "name": n, "size": size})),
            (name.clone(), proptest::collection::vec("[a-c]", 1..3)).prop_map(|(n, symbols)| {
                json!({"type": "enum", "name": n, "symbols": symbols})
            }),
            (
                name,
                proptest::collection::vec((inner, default_value()), 0..4)
            )
                .prop_map(|(n, fields)| {
                    let fields: Vec<J> = fields
                        .into_iter()
                        .enumerate()
                        .map(|(i, (ty, default))| {
                            let mut f = json!({"name": format!("f{i}"), "type": ty});
                            if let Some(d) = default {
                                f["default"] = d;
                            }
                            f
                        })
                        .collect();
                    json!({"type": "record", "name": n, "fields": fields})
                }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn codecs_and_checker_accept_the_same_schemas(s in schema(true)) {
        let text = s.to_string();
        let codec = AvroSchema::parse(&text);
        let checker = codec.as_ref().map_err(|e| e.to_string()).and_then(|avro| {
            Checker::compile(avro).map_err(|e| e.to_string())
        });
        prop_assert_eq!(
            codec.is_ok(),
            checker.is_ok(),
            "{}: codecs {:?}, checker {:?}",
            text,
            codec.as_ref().err(),
            checker.as_ref().err()
        );
        prop_assert_eq!(Checker::parse(&text).is_ok(), codec.is_ok());
    }

    #[test]
    fn the_checker_takes_what_the_decoder_reads(
        s in schema(false),
        bytes in proptest::collection::vec(any::<u8>(), 0..24),
    ) {
        let parsed = AvroSchema::parse(&s.to_string());
        // Schemas the codecs refuse are the other property's.
        prop_assume!(parsed.is_ok());
        let avro = parsed.expect("assumed parsed");
        let checker = Checker::compile(&avro).expect("the codecs accepted it");
        if let Ok(value) = avro.decode_datum(&bytes) {
            prop_assert!(
                checker.check(&value).is_ok(),
                "{} decoded {:?} from {:?}: {:?}",
                s,
                value,
                bytes,
                checker.check(&value)
            );
        }
    }
}

#[test]
fn a_default_the_encoder_cannot_write_is_refused_by_both() {
    for (ty, default) in [
        (r#""int""#, r#""x""#),
        (r#""bytes""#, "[]"),
        (r#""int""#, "1.0"),
        (r#"["null", "string"]"#, r#"{"string": "x"}"#),
    ] {
        let text = format!(
            r#"{{"type": "record", "name": "R", "fields": [{{"name": "a", "type": {ty}, "default": {default}}}]}}"#
        );
        let codec = AvroSchema::parse(&text).expect_err(&text).to_string();
        let checker = Checker::parse(&text).expect_err(&text).to_string();
        assert!(
            codec.contains("default") && codec.contains('a') && checker.contains(&codec),
            "{text}: codecs '{codec}', checker '{checker}'"
        );
    }
}

#[test]
fn defaults_are_normalized_when_filled_in() {
    let checker = Checker::parse(
        r#"{"type": "record", "name": "R", "fields": [
            {"name": "x", "type": "double", "default": 1},
            {"name": "id", "type": "string", "default": "x"}]}"#,
    )
    .expect("both defaults are values of their types");
    let mut v = runtime_core::Value::Map(runtime_core::Map::new());
    checker.conform(&mut v).expect("every field has a default");
    let runtime_core::Value::Map(m) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(m.get("x"), Some(&runtime_core::Value::Float(1.0)));
    assert_eq!(m.get("id"), Some(&runtime_core::Value::String("x".into())));
}
