//! The table of schema/value cases: every Avro type, with the verdict of `check` and, for
//! values that conform, what `conform` makes of them.

use runtime_core::{Map, Value};
use schema::{CheckOptions, Checker};

enum Expect {
    /// Conforms, and `conform` leaves it as it is.
    Pass,
    /// Conforms; `conform` turns it into this (JSON).
    Becomes(&'static str),
    /// Rejected: the reason contains the first text, the path is the second.
    Fail(&'static str, &'static str),
}
use Expect::*;

const PERSON: &str = r#"{"type": "record", "name": "input_schema", "fields": [
    {"name": "input", "type": "double", "role": "predictor", "dataClass": "numerical", "driftCandidate": true},
    {"name": "label", "type": "string", "default": "none"},
    {"name": "note", "type": ["null", "string"]}
]}"#;

const TREE: &str = r#"{"type": "record", "name": "Tree", "namespace": "com.acme", "fields": [
    {"name": "value", "type": "long"},
    {"name": "children", "type": {"type": "array", "items": "Tree"}, "default": []},
    {"name": "next", "type": ["null", "com.acme.Tree"], "default": null}
]}"#;

const NAMED_REFS: &str = r#"{"type": "record", "name": "Order", "fields": [
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "DONE"]}},
    {"name": "previous", "type": "Status", "default": "NEW"},
    {"name": "id", "type": {"type": "fixed", "name": "Id", "size": 4}},
    {"name": "ids", "type": {"type": "array", "items": "Id"}, "default": []}
]}"#;

const UNION_WIDE: &str = r#"["null", "long", "double", "string",
    {"type": "record", "name": "P", "fields": [{"name": "x", "type": "int"}]},
    {"type": "map", "values": "int"}]"#;

fn cases() -> Vec<(&'static str, &'static str, Expect)> {
    vec![
        // null, boolean
        (r#""null""#, "null", Pass),
        (r#""null""#, "0", Fail("expected null, found integer", "")),
        (r#""boolean""#, "true", Pass),
        (
            r#""boolean""#,
            "1",
            Fail("expected boolean, found integer", ""),
        ),
        (
            r#""boolean""#,
            r#""true""#,
            Fail("expected boolean, found string", ""),
        ),
        // int and long: ranges; whole floats accepted and made integers
        (r#""int""#, "2147483647", Pass),
        (r#""int""#, "-2147483648", Pass),
        (r#""int""#, "2147483648", Fail("does not fit in an int", "")),
        (r#""int""#, "3.0", Becomes("3")),
        (r#""int""#, "3.5", Fail("not a whole number", "")),
        (r#""int""#, "1e300", Fail("does not fit in an int", "")),
        (r#""int""#, r#""3""#, Fail("expected int, found string", "")),
        (r#""int""#, "true", Fail("expected int, found boolean", "")),
        (r#""long""#, "9223372036854775807", Pass),
        (
            r#""long""#,
            "18446744073709551615",
            Fail("does not fit in a long", ""),
        ),
        (r#""long""#, "-4.0", Becomes("-4")),
        // float and double: integers widened
        (r#""double""#, "1.5", Pass),
        (r#""double""#, "2", Becomes("2.0")),
        (
            r#""double""#,
            "null",
            Fail("expected double, found null", ""),
        ),
        (r#""float""#, "1.5", Pass),
        (r#""float""#, "7", Becomes("7.0")),
        (r#""float""#, "1e300", Fail("too large for a float", "")),
        // string and bytes: a string is taken for bytes (its UTF-8 bytes)
        (r#""string""#, r#""x""#, Pass),
        (
            r#""string""#,
            "1",
            Fail("expected string, found integer", ""),
        ),
        (r#""bytes""#, r#""\u00ff raw""#, Pass),
        (
            r#""bytes""#,
            "[1, 2]",
            Fail("expected bytes, found array", ""),
        ),
        // enum by symbol
        (
            r#"{"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}"#,
            r#""RED""#,
            Pass,
        ),
        (
            r#"{"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}"#,
            r#""red""#,
            Fail("not a symbol of enum 'Color'", ""),
        ),
        (
            r#"{"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}"#,
            "0",
            Fail("expected enum Color, found integer", ""),
        ),
        // fixed: size checked, on bytes or on a string's UTF-8 bytes
        (
            r#"{"type": "fixed", "name": "Id", "size": 4}"#,
            r#""abcd""#,
            Pass,
        ),
        (
            r#"{"type": "fixed", "name": "Id", "size": 4}"#,
            r#""abc""#,
            Fail("fixed 'Id' takes 4 bytes, found 3", ""),
        ),
        // arrays and maps
        (r#"{"type": "array", "items": "int"}"#, "[]", Pass),
        (r#"{"type": "array", "items": "int"}"#, "[1, 2, 3]", Pass),
        (
            r#"{"type": "array", "items": "int"}"#,
            r#"[1, "2"]"#,
            Fail("expected int, found string", "[1]"),
        ),
        (
            r#"{"type": "array", "items": "double"}"#,
            "[1, 2.5]",
            Becomes("[1.0, 2.5]"),
        ),
        (
            r#"{"type": "array", "items": "int"}"#,
            r#"{"0": 1}"#,
            Fail("expected array, found map", ""),
        ),
        (
            r#"{"type": "map", "values": "long"}"#,
            r#"{"a": 1, "b": 2}"#,
            Pass,
        ),
        (
            r#"{"type": "map", "values": "long"}"#,
            r#"{"a": 1, "b": "x"}"#,
            Fail("expected long, found string", r#"["b"]"#),
        ),
        (
            r#"{"type": "map", "values": "long"}"#,
            "[1]",
            Fail("expected map, found array", ""),
        ),
        // records: the reference's wording; defaults filled; nullable fields may be missing;
        // extra fields kept; vendor attributes in the schema ignored
        (
            PERSON,
            r#"{"input": 1.5, "label": "a", "note": null}"#,
            Pass,
        ),
        (
            PERSON,
            r#"{"label": "a"}"#,
            Fail("Field 'input' missing for record 'input_schema'", ""),
        ),
        (
            PERSON,
            r#"{"input": 2}"#,
            Becomes(r#"{"input": 2.0, "label": "none", "note": null}"#),
        ),
        (
            PERSON,
            r#"{"input": 1.0, "extra": [1]}"#,
            Becomes(r#"{"input": 1.0, "extra": [1], "label": "none", "note": null}"#),
        ),
        (PERSON, r#"{"note": "x", "input": 1.0, "label": "b"}"#, Pass),
        (
            PERSON,
            r#"{"input": "1.5"}"#,
            Fail("expected double, found string", ".input"),
        ),
        (
            PERSON,
            r#"{"input": 1.5, "note": 3}"#,
            Fail("expected one of [null, string], found integer", ".note"),
        ),
        (
            PERSON,
            "[1.5]",
            Fail("expected record input_schema, found array", ""),
        ),
        // a later duplicate key wins, as everywhere else in the engine
        (
            PERSON,
            r#"{"input": "x", "input": 1.5}"#,
            Becomes(r#"{"input": "x", "input": 1.5, "label": "none", "note": null}"#),
        ),
        // unions: plain JSON, null for optional; Avro-JSON wrappers unwrapped
        (r#"["null", "string"]"#, "null", Pass),
        (r#"["null", "string"]"#, r#""x""#, Pass),
        (
            r#"["null", "string"]"#,
            r#"{"string": "x"}"#,
            Becomes(r#""x""#),
        ),
        (
            r#"["null", "string"]"#,
            r#"{"int": 1}"#,
            Fail("expected one of [null, string], found map", ""),
        ),
        (
            r#"["null", "string"]"#,
            r#"{"string": 1}"#,
            Fail("expected string, found integer", r#"{"string"}"#),
        ),
        (UNION_WIDE, "3", Pass),
        (UNION_WIDE, "3.5", Pass),
        (UNION_WIDE, r#"{"x": 1}"#, Pass),
        (UNION_WIDE, r#"{"P": {"x": 1}}"#, Becomes(r#"{"x": 1}"#)),
        // A value that fits a branch as it is never counts as a wrapper.
        (UNION_WIDE, r#"{"double": 2}"#, Pass),
        (r#"["null", "double"]"#, r#"{"double": 2}"#, Becomes("2.0")),
        (UNION_WIDE, r#"{"k": 1, "j": 2}"#, Pass),
        (
            UNION_WIDE,
            "true",
            Fail(
                "expected one of [null, long, double, string, record P, map], found boolean",
                "",
            ),
        ),
        (r#"["int", "double"]"#, "2.0", Pass),
        (r#"["double", "int"]"#, "2", Pass),
        (r#"["string", "double"]"#, "2", Becomes("2.0")),
        // named references and recursion
        (
            TREE,
            r#"{"value": 1, "children": [{"value": 2}], "next": {"value": 3}}"#,
            Becomes(
                r#"{"value": 1, "children": [{"value": 2, "children": [], "next": null}], "next": {"value": 3, "children": [], "next": null}}"#,
            ),
        ),
        (
            TREE,
            r#"{"value": 1, "children": [{"value": 2, "children": [{"value": "deep"}]}]}"#,
            Fail(
                "expected long, found string",
                ".children[0].children[0].value",
            ),
        ),
        (
            TREE,
            r#"{"value": 1, "next": {"children": []}}"#,
            Fail("Field 'value' missing for record 'com.acme.Tree'", ".next"),
        ),
        (
            TREE,
            r#"{"value": 1, "next": {"com.acme.Tree": {"value": 2}}}"#,
            Becomes(
                r#"{"value": 1, "next": {"value": 2, "children": [], "next": null}, "children": []}"#,
            ),
        ),
        (
            NAMED_REFS,
            r#"{"status": "DONE", "id": "abcd", "ids": ["wxyz"]}"#,
            Becomes(r#"{"status": "DONE", "id": "abcd", "ids": ["wxyz"], "previous": "NEW"}"#),
        ),
        (
            NAMED_REFS,
            r#"{"status": "DONE", "previous": "LOST", "id": "abcd"}"#,
            Fail("not a symbol of enum 'Status'", ".previous"),
        ),
        (
            NAMED_REFS,
            r#"{"status": "NEW", "id": "abcd", "ids": ["ab"]}"#,
            Fail("fixed 'Id' takes 4 bytes, found 2", ".ids[0]"),
        ),
        // logical types: integers, or ISO 8601 text for dates and times
        (
            r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
            "1700000000000",
            Pass,
        ),
        (
            r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
            r#""2024-01-02T03:04:05""#,
            Pass,
        ),
        (
            r#"{"type": "long", "logicalType": "timestamp-micros"}"#,
            r#""2024-01-02 03:04:05.123456+00:00""#,
            Pass,
        ),
        (
            r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
            r#""yesterday""#,
            Fail("not an ISO 8601 date-time (timestamp-millis)", ""),
        ),
        (
            r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
            "true",
            Fail("expected long, found boolean", ""),
        ),
        (
            r#"{"type": "long", "logicalType": "local-timestamp-millis"}"#,
            r#""2024-01-02T03:04:05""#,
            Pass,
        ),
        (r#"{"type": "int", "logicalType": "date"}"#, "19000", Pass),
        (
            r#"{"type": "int", "logicalType": "date"}"#,
            r#""2024-02-29""#,
            Pass,
        ),
        (
            r#"{"type": "int", "logicalType": "date"}"#,
            r#""2023-02-29""#,
            Fail("not an ISO 8601 date (date)", ""),
        ),
        (
            r#"{"type": "int", "logicalType": "time-millis"}"#,
            r#""13:45:00.250""#,
            Pass,
        ),
        (
            r#"{"type": "long", "logicalType": "time-micros"}"#,
            "1000",
            Pass,
        ),
        (
            r#"{"type": "string", "logicalType": "uuid"}"#,
            r#""123e4567-e89b-12d3-a456-426614174000""#,
            Pass,
        ),
        (
            r#"{"type": "string", "logicalType": "uuid"}"#,
            r#""not-a-uuid""#,
            Fail("not a UUID", ""),
        ),
        (
            r#"{"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}"#,
            "123.45",
            Pass,
        ),
        (
            r#"{"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}"#,
            "999",
            Pass,
        ),
        (
            r#"{"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}"#,
            "1000",
            Fail("does not fit in decimal(5, 2)", ""),
        ),
        (
            r#"{"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}"#,
            r#""\u0001\u0002""#,
            Pass,
        ),
        (
            r#"{"type": "fixed", "name": "D", "size": 12, "logicalType": "duration"}"#,
            r#""abcdefghijkl""#,
            Pass,
        ),
        // an unknown logical type is its underlying type
        (
            r#"{"type": "string", "logicalType": "postcode"}"#,
            r#""x""#,
            Pass,
        ),
        // attributes around a type
        (
            r#"{"type": {"type": "array", "items": "string"}}"#,
            r#"["a"]"#,
            Pass,
        ),
    ]
}

fn value(json: &str) -> Value {
    let j: serde_json::Value = serde_json::from_str(json).expect("test JSON");
    // Keep duplicate keys: decode the way the JSON codec does.
    if let Some(rest) = json.strip_prefix(r#"{"input": "x", "input": 1.5"#) {
        let mut m = Map::new();
        m.push("input", "x");
        m.push("input", 1.5);
        if rest.contains("label") {
            m.push("label", "none");
            m.push("note", Value::Null);
        }
        return Value::Map(m);
    }
    Value::from(j)
}

#[test]
fn the_table() {
    let mut failures = Vec::new();
    for (i, (schema, input, expect)) in cases().into_iter().enumerate() {
        let checker = match Checker::parse(schema) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("case {i}: schema {schema} does not compile: {e}"));
                continue;
            }
        };
        let v = value(input);
        let checked = checker.check(&v);
        let mut conformed = v.clone();
        let conform = checker.conform(&mut conformed);
        match expect {
            Pass | Becomes(_) => {
                if let Err(e) = &checked {
                    failures.push(format!("case {i}: {input} against {schema}: rejected: {e}"));
                    continue;
                }
                if let Err(e) = &conform {
                    failures.push(format!("case {i}: {input}: check passed but conform failed: {e}"));
                    continue;
                }
                let want = match expect {
                    Becomes(out) => value(out),
                    _ => v.clone(),
                };
                if !same(&conformed, &want) {
                    failures.push(format!("case {i}: {input} conformed to {conformed}, expected {want}"));
                }
                // Conforming is idempotent, and a conformed value checks.
                let mut again = conformed.clone();
                if checker.conform(&mut again).is_err() || again != conformed {
                    failures.push(format!("case {i}: conforming {conformed} again changed it"));
                }
            }
            Fail(reason, path) => match (&checked, &conform) {
                (Err(e), Err(e2)) => {
                    if !e.reason.contains(reason) || e.path != path {
                        failures.push(format!(
                            "case {i}: {input}: got reason {:?} at {:?}, expected {reason:?} at {path:?}",
                            e.reason, e.path
                        ));
                    }
                    if e != e2 {
                        failures.push(format!("case {i}: check said {e}, conform said {e2}"));
                    }
                }
                _ => failures.push(format!(
                    "case {i}: {input} against {schema}: expected rejection ({reason}), got check {checked:?} conform {conform:?}"
                )),
            },
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Equality where map order does not matter for filled-in fields (they are appended).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| k == k2 && same(v, v2)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

#[test]
fn bytes_values_for_bytes_fixed_and_decimal() {
    let bytes = Checker::parse(r#""bytes""#).unwrap();
    assert!(bytes.check(&Value::Bytes(vec![0, 255])).is_ok());
    let fixed = Checker::parse(r#"{"type": "fixed", "name": "F", "size": 2}"#).unwrap();
    assert!(fixed.check(&Value::Bytes(vec![0, 255])).is_ok());
    let e = fixed.check(&Value::Bytes(vec![0])).unwrap_err();
    assert_eq!(e.reason, "fixed 'F' takes 2 bytes, found 1");
    let string = Checker::parse(r#""string""#).unwrap();
    assert_eq!(
        string
            .check(&Value::Bytes(b"x".to_vec()))
            .unwrap_err()
            .reason,
        "expected string, found bytes"
    );
    let dec = Checker::parse(
        r#"{"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 1}"#,
    )
    .unwrap();
    assert!(dec.check(&Value::Bytes(vec![1, 2])).is_ok());
}

#[test]
fn map_keys_must_be_strings() {
    let c = Checker::parse(r#"{"type": "map", "values": "int"}"#).unwrap();
    let mut m = Map::new();
    m.push(1, 2);
    let e = c.check(&Value::Map(m)).unwrap_err();
    assert_eq!(e.reason, "map keys must be strings, found integer");
}

#[test]
fn extra_fields_are_rejected_when_asked() {
    let c = Checker::parse(PERSON).unwrap().with_options(CheckOptions {
        reject_extra_fields: true,
    });
    let v = value(r#"{"input": 1.0, "label": "a", "note": null, "extra": 1}"#);
    let e = c.check(&v).unwrap_err();
    assert_eq!(e.reason, "Field 'extra' is not in record 'input_schema'");
    let mut v2 = v.clone();
    assert_eq!(c.conform(&mut v2).unwrap_err(), e);
    assert!(c.check(&value(r#"{"input": 1.0}"#)).is_ok());
}

#[test]
fn messages_read_like_the_reference_and_hide_data() {
    let c = Checker::parse(PERSON).unwrap();
    let e = c.check(&value(r#"{"label": "secret"}"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Field 'input' missing for record 'input_schema'"
    );
    let e = c.check(&value(r#"{"input": "secret"}"#)).unwrap_err();
    assert_eq!(e.to_string(), "expected double, found string (at .input)");
    assert_eq!(
        e.detailed().to_string(),
        r#"expected double, found string (at .input; found "secret")"#
    );
    let enum_c = Checker::parse(r#"{"type": "enum", "name": "E", "symbols": ["A"]}"#).unwrap();
    let e = enum_c.check(&value(r#""secret""#)).unwrap_err();
    assert!(!e.to_string().contains("secret"));
}

#[test]
fn invalid_schemas_are_refused_with_a_reason() {
    for bad in [
        r#"{"type": "record", "name": "R"}"#,
        r#""nosuchtype""#,
        r#"{"type": "enum", "name": "E"}"#,
        r#"{"type": "fixed", "name": "F"}"#,
        r#"{"type": "array"}"#,
        "not json",
        r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "x"}]}"#,
    ] {
        let e = Checker::parse(bad).expect_err(bad);
        assert!(e.to_string().starts_with("invalid Avro schema: "), "{e}");
    }
}

#[test]
fn deep_values_are_rejected_not_overflowed() {
    let c = Checker::parse(r#"{"type": "array", "items": {"type": "array", "items": "int"}}"#);
    let c = c.unwrap();
    let mut v = Value::Int(1);
    for _ in 0..100_000 {
        v = Value::Array(vec![v]);
    }
    assert!(c.check(&v).is_err());
    drop_deep(v);
    // A recursive schema with a deep value stops at the depth limit.
    let tree = Checker::parse(TREE).unwrap();
    let mut v = value(r#"{"value": 1}"#);
    for _ in 0..1000 {
        let mut m = Map::new();
        m.push("value", 1);
        m.push("next", v);
        v = Value::Map(m);
    }
    let e = tree.check(&v).unwrap_err();
    assert!(e.reason.contains("nested deeper than"), "{e}");
    drop_deep(v);
}

/// Tears a deep value down without recursing on the test's stack.
fn drop_deep(v: Value) {
    let mut stack = vec![v];
    while let Some(x) = stack.pop() {
        match x {
            Value::Map(m) => stack.extend(m.into_entries().into_iter().map(|(_, v)| v)),
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
}
