//! Property tests of the one schema model: over generated schemas (valid ones and broken
//! ones: unknown names, names defined twice, references across namespaces, defaults of the
//! wrong type or not of their logical type, logical types on the wrong type), the codecs and the checker accept the same schemas and reject the same ones,
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
        Just(json!({"type": "string", "logicalType": "date"})),
        Just(json!({"type": "float", "logicalType": "timestamp-micros"})),
        Just(json!({"type": {"type": "fixed", "name": "U", "size": 16}, "logicalType": "uuid"})),
        Just(json!({"type": {"type": "fixed", "name": "U", "size": 3}, "logicalType": "decimal", "precision": 4})),
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
        1 => Just(Some(json!("123e4567-e89b-12d3-a456-426614174000"))),
        1 => Just(Some(json!("2020-01-01"))),
        1 => Just(Some(json!("abc"))),
        1 => Just(Some(json!(1e39))),
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
                prop_oneof![Just(None), Just(Some("ns")), Just(Some("other"))],
                proptest::collection::vec((inner, default_value()), 0..4)
            )
                .prop_map(|(n, namespace, fields)| {
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
                    let mut r = json!({"type": "record", "name": n, "fields": fields});
                    if let Some(ns) = namespace {
                        r["namespace"] = json!(ns);
                    }
                    r
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

fn record_with(ty: &str, default: &str) -> String {
    format!(
        r#"{{"type": "record", "name": "R", "fields": [{{"name": "a", "type": {ty}, "default": {default}}}]}}"#
    )
}

#[test]
fn a_default_not_of_its_logical_type_is_refused_by_both() {
    let uuid = r#"{"type": "string", "logicalType": "uuid"}"#;
    let array_of_uuid = format!(r#"{{"type": "array", "items": {uuid}}}"#);
    let null_or_uuid = format!(r#"["null", {uuid}]"#);
    let record_of_uuid = format!(
        r#"{{"type": "record", "name": "S", "fields": [{{"name": "u", "type": {uuid}}}]}}"#
    );
    for (ty, default) in [
        (uuid, r#""x""#),
        (&array_of_uuid, r#"["x"]"#),
        (&null_or_uuid, r#""x""#),
        (&record_of_uuid, r#"{"u": "x"}"#),
        (
            r#"{"type": "int", "logicalType": "date"}"#,
            r#""2020-01-01""#,
        ),
        (r#"{"type": "int", "logicalType": "date"}"#, "1.5"),
        (
            r#"{"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}"#,
            "1.5",
        ),
        (
            r#"{"type": {"type": "fixed", "name": "F", "size": 4}, "logicalType": "decimal", "precision": 4}"#,
            r#""ab""#,
        ),
        (
            r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
            r#""2020-01-01T00:00:00Z""#,
        ),
        (r#""float""#, "1e39"),
    ] {
        let text = record_with(ty, default);
        let codec = AvroSchema::parse(&text).expect_err(&text).to_string();
        let checker = Checker::parse(&text).expect_err(&text).to_string();
        assert!(
            codec.contains("default") && checker.contains(&codec),
            "{text}: codecs '{codec}', checker '{checker}'"
        );
    }
}

#[test]
fn defaults_of_logical_types_are_taken_when_they_are_values_of_them() {
    for (ty, default) in [
        (
            r#"{"type": "string", "logicalType": "uuid"}"#,
            r#""123e4567-e89b-12d3-a456-426614174000""#,
        ),
        (r#"{"type": "int", "logicalType": "date"}"#, "19000"),
        (
            r#"{"type": {"type": "fixed", "name": "F", "size": 2}, "logicalType": "decimal", "precision": 4}"#,
            r#""\u0001\u0002""#,
        ),
        (
            r#"{"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}"#,
            r#""\u0001""#,
        ),
        (
            r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
            "0",
        ),
        // A logical type on a type it does not fit is its underlying type.
        (r#"{"type": "string", "logicalType": "date"}"#, r#""x""#),
    ] {
        let text = record_with(ty, default);
        AvroSchema::parse(&text).expect(&text);
        let checker = Checker::parse(&text).expect(&text);
        let mut v = runtime_core::Value::Map(runtime_core::Map::new());
        checker.conform(&mut v).expect(&text);
    }
}

#[test]
fn named_types_resolve_across_namespaces() {
    // `S` is declared inside `a.R`, so it is `a.S`: its short name resolves in namespace `a`,
    // its full name anywhere, and a record of another namespace cannot name it short.
    let s = r#"{"type": "record", "name": "S", "fields": [{"name": "x", "type": "int"}]}"#;
    let ok = format!(
        r#"{{"type": "record", "name": "R", "namespace": "a", "fields": [
            {{"name": "s", "type": {s}}},
            {{"name": "t", "type": "S"}},
            {{"name": "u", "type": "a.S"}},
            {{"name": "o", "type": {{"type": "record", "name": "O", "namespace": "b", "fields": [
                {{"name": "v", "type": ["null", "a.S"]}}]}}}}]}}"#
    );
    let avro = AvroSchema::parse(&ok).expect(&ok);
    let checker = Checker::compile(&avro).expect("the codecs took it");
    let record: runtime_core::Value = serde_json::from_str(
        r#"{"s": {"x": 1}, "t": {"x": 2}, "u": {"x": 3}, "o": {"v": {"a.S": {"x": 4}}}}"#,
    )
    .expect("JSON");
    let mut v = record.clone();
    checker
        .conform(&mut v)
        .expect("a.S by its full name in a union wrapper");
    let short = serde_json::from_str(
        r#"{"s": {"x": 1}, "t": {"x": 2}, "u": {"x": 3}, "o": {"v": {"S": {"x": 4}}}}"#,
    )
    .expect("JSON");
    checker
        .check(&short)
        .expect("a.S by its short name in a union wrapper");

    let bad = format!(
        r#"{{"type": "record", "name": "R", "namespace": "a", "fields": [
            {{"name": "s", "type": {s}}},
            {{"name": "o", "type": {{"type": "record", "name": "O", "namespace": "b", "fields": [
                {{"name": "v", "type": "S"}}]}}}}]}}"#
    );
    let codec = AvroSchema::parse(&bad).expect_err(&bad).to_string();
    assert!(codec.contains("b.S"), "{codec}");
    assert!(Checker::parse(&bad).is_err());
}
