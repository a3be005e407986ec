//! Schemas by slot from a model's smart comments, screening batches, and checking streams.

use std::fs;
use std::io::Cursor;

use codecs::{CodecConfig, Encoding};
use runtime_core::{Language, ReadItem, RejectionKind, Slot, SmartComments, Value};
use schema::{check_stream, resolve_model_schemas, SchemaError, SlotSchemas};

const INPUT: &str = r#"{"type": "record", "name": "input_schema", "fields": [
    {"name": "input", "type": "double", "role": "predictor"},
    {"name": "id", "type": "long", "default": 0}
]}"#;
const OUTPUT: &str = r#"{"type": "record", "name": "output_schema", "fields": [
    {"name": "score", "type": "double"}
]}"#;

fn comments(src: &str) -> SmartComments {
    SmartComments::parse(src, Language::Python)
}

#[test]
fn schemas_are_found_by_name_with_or_without_extension_and_in_sub_folders() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("input_schema.avsc"), INPUT).unwrap();
    fs::create_dir(dir.path().join("schemas")).unwrap();
    fs::write(dir.path().join("schemas/output_schema.avsc"), OUTPUT).unwrap();
    let c = comments(
        "# modelop.schema.0: input_schema.avsc\n#modelop.schema.1:output_schema\n# modelop.schema.2: input_schema\n",
    );
    let s = resolve_model_schemas(dir.path(), &c).unwrap();
    assert_eq!(s.inputs.len(), 2);
    assert_eq!(s.outputs.len(), 1);
    assert_eq!(s.get(Slot(0)).unwrap().record_name(), Some("input_schema"));
    assert_eq!(s.get(Slot(1)).unwrap().record_name(), Some("output_schema"));
    assert!(s.get(Slot(3)).is_none());
}

#[test]
fn primitive_names_and_inline_schemas_need_no_file_and_unused_slots_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let c = comments(
        "# modelop.schema.0: double\n# modelop.schema.1: {\"type\":\"array\",\"items\":\"int\"}\n# modelop.schema.2: missing\n# modelop.slot.2: unused\n",
    );
    let s = resolve_model_schemas(dir.path(), &c).unwrap();
    assert!(s.get(Slot(0)).unwrap().check(&Value::Float(1.0)).is_ok());
    assert!(s
        .get(Slot(1))
        .unwrap()
        .check(&Value::Array(vec![1.into()]))
        .is_ok());
    assert!(s.get(Slot(2)).is_none());
}

#[test]
fn errors_name_the_slot_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = resolve_model_schemas(dir.path(), &comments("# modelop.schema.0: nowhere.avsc\n"))
        .unwrap_err();
    assert!(matches!(e, SchemaError::NotFound { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("slot 0: schema 'nowhere.avsc' not found"),
        "{e}"
    );

    fs::write(
        dir.path().join("bad.avsc"),
        r#"{"type": "record", "name": "R"}"#,
    )
    .unwrap();
    let e = resolve_model_schemas(dir.path(), &comments("# modelop.schema.1: bad\n")).unwrap_err();
    assert!(matches!(e, SchemaError::InvalidForSlot { .. }), "{e}");
    assert!(e.to_string().starts_with("slot 1: schema 'bad' ("), "{e}");
    assert!(e.to_string().contains("is not a valid Avro schema"), "{e}");

    let e = resolve_model_schemas(dir.path(), &comments("# modelop.schema.0: ../etc/x.avsc\n"))
        .unwrap_err();
    assert!(matches!(e, SchemaError::BadName { .. }), "{e}");

    fs::create_dir(dir.path().join("a")).unwrap();
    fs::create_dir(dir.path().join("b")).unwrap();
    fs::write(dir.path().join("a/twice.avsc"), INPUT).unwrap();
    fs::write(dir.path().join("b/twice.avsc"), INPUT).unwrap();
    let e =
        resolve_model_schemas(dir.path(), &comments("# modelop.schema.0: twice\n")).unwrap_err();
    assert!(matches!(e, SchemaError::Ambiguous { .. }), "{e}");
    let core: runtime_core::Error = e.into();
    assert!(
        core.to_string()
            .starts_with("model cannot be loaded: slot 0"),
        "{core}"
    );
}

fn slot_schemas() -> SlotSchemas {
    let mut s = SlotSchemas::default();
    s.insert(Slot(0), INPUT.parse().unwrap());
    s.insert(Slot(1), OUTPUT.parse().unwrap());
    s
}

#[test]
fn a_decoded_batch_is_screened_in_place_keeping_positions() {
    let data = "{\"input\": 1}\n{\"id\": 7, \"input\": \"secret\"}\n{\"id\": 1}\nnot json\n{\"input\": 2.5, \"id\": 3}\n";
    let cfg = CodecConfig::new(Encoding::Json);
    let mut dec = codecs::decoder(&cfg, Cursor::new(data.as_bytes().to_vec()), "in").unwrap();
    let mut items = Vec::new();
    dec.next_batch(100, &mut items).unwrap();
    let s = slot_schemas();
    assert_eq!(s.screen_inputs(Slot(0), &mut items, false), 2);
    let kinds: Vec<String> = items
        .iter()
        .map(|i| match i {
            ReadItem::Record(r) => format!("ok {} {}", r.position.record, r.value),
            ReadItem::Rejected(r) => {
                format!("{} {} {}", r.kind.as_str(), r.position.record, r.reason)
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            r#"ok 1 {"input": 1.0, "id": 0}"#,
            r#"schema 2 expected double, found string (at .input); record: {"id": <integer>, "input": <string>}"#,
            r#"schema 3 Field 'input' missing for record 'input_schema'; record: {"id": <integer>}"#,
            "encoding 4 invalid JSON: expected ident at line 1 column 2",
            r#"ok 5 {"input": 2.5, "id": 3}"#,
        ]
    );
    let ReadItem::Rejected(r) = &items[1] else {
        unreachable!()
    };
    assert_eq!(r.kind, RejectionKind::Schema);
    assert_eq!(r.position.line, Some(2));

    // Debug shows the record and the value.
    let mut dec = codecs::decoder(&cfg, Cursor::new(data.as_bytes().to_vec()), "in").unwrap();
    let mut items = Vec::new();
    dec.next_batch(100, &mut items).unwrap();
    s.screen_inputs(Slot(0), &mut items, true);
    let ReadItem::Rejected(r) = &items[1] else {
        unreachable!()
    };
    assert!(
        r.reason.contains(r#"found "secret""#) && r.reason.contains(r#""input": "secret""#),
        "{}",
        r.reason
    );

    // A slot without a schema, or checking switched off, leaves the batch alone.
    let off = slot_schemas().switched(false, true);
    let mut dec = codecs::decoder(&cfg, Cursor::new(data.as_bytes().to_vec()), "in").unwrap();
    let mut items = Vec::new();
    dec.next_batch(100, &mut items).unwrap();
    assert_eq!(off.screen_inputs(Slot(0), &mut items, false), 0);
    assert_eq!(s.screen_inputs(Slot(2), &mut items, false), 0);
}

#[test]
fn outputs_that_do_not_conform_are_taken_out_with_their_index() {
    let s = slot_schemas();
    let mut values: Vec<Value> = [
        "{\"score\": 1}",
        "{\"score\": \"high\"}",
        "{\"score\": 0.5}",
        "[]",
    ]
    .iter()
    .map(|j| Value::from(serde_json::from_str::<serde_json::Value>(j).unwrap()))
    .collect();
    let rejected = s.screen_outputs(Slot(1), &mut values, false);
    assert_eq!(values.len(), 2);
    assert_eq!(values[0].get("score"), Some(&Value::Float(1.0)));
    let idx: Vec<usize> = rejected.iter().map(|r| r.index).collect();
    assert_eq!(idx, [1, 3]);
    assert_eq!(
        rejected[1].violation.to_string(),
        "expected record output_schema, found array"
    );
    assert_eq!(
        rejected[1].reason,
        "expected record output_schema, found array; record: []"
    );
}

#[test]
fn a_stream_is_checked_whole() {
    let data = "{\"input\": 1}\n{\"input\": \"x\"}\n\n{\"id\": 2}\n{oops\n";
    let report = check_stream(
        INPUT,
        Cursor::new(data.as_bytes().to_vec()),
        &CodecConfig::new(Encoding::Json),
    )
    .unwrap();
    assert_eq!(
        (
            report.records,
            report.conforming,
            report.rejected_by_schema,
            report.rejected_by_encoding
        ),
        (4, 1, 2, 1)
    );
    assert!(!report.is_clean());
    let text = report.to_string();
    assert!(text.contains("record 2, line 2, byte offset 13: rejected by schema: expected double, found string (at .input; found \"x\")"), "{text}");
    assert!(
        text.contains(
            "record 3, line 4, byte offset 29: rejected by schema: Field 'input' missing for record 'input_schema'"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("4 records: 1 conform, 2 rejected by schema, 1 rejected by encoding"),
        "{text}"
    );
}

#[test]
fn the_schema_types_csv_cells_of_a_checked_stream() {
    let data = "input,id\n1.5,2\nabc,3\n,4\n";
    let report = check_stream(
        INPUT,
        Cursor::new(data.as_bytes().to_vec()),
        &CodecConfig::new(Encoding::Csv),
    )
    .unwrap();
    // "abc" is refused by the CSV typing itself, the empty cell is null where a double is due.
    assert_eq!(
        (report.records, report.conforming, report.rejected_by_schema),
        (3, 1, 2),
        "{report}"
    );
}

#[test]
fn a_bad_schema_or_codec_is_an_error_not_a_report() {
    let e = check_stream(
        "{",
        Cursor::new(Vec::new()),
        &CodecConfig::new(Encoding::Json),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("invalid Avro schema"), "{e}");
}
