//! Parquet against pyarrow and pandas, both ways: files they write read record for record
//! with their types; files we write read back by pyarrow with values and types; several row
//! groups; records that do not fit the columns; files cut short or corrupt.
//!
//! The Python side runs under `PYO3_PYTHON` (scripts/env.sh) and needs pyarrow and pandas
//! (scripts/requirements-test.txt); without them these tests fail, saying so.
mod common;

use std::path::Path;

use codecs::{AvroSchema, CodecConfig, EncodeError, Encoding, RecordDecoder, RecordEncoder};
use common::{run_python, SharedBuf};
use runtime_core::{Map, ReadItem, Value};
use serde_json::json;

fn cfg() -> CodecConfig {
    CodecConfig::new(Encoding::Parquet)
}

fn open(path: &Path) -> Box<dyn RecordDecoder> {
    let file = std::fs::File::open(path).unwrap();
    codecs::parquet_decoder(&cfg(), Box::new(file), "test").unwrap()
}

/// Every item of the file, and the error that ended it, if any.
fn read_all(path: &Path) -> (Vec<ReadItem>, Option<runtime_core::Error>) {
    let mut dec = open(path);
    let mut items = Vec::new();
    loop {
        match dec.next_item() {
            None => return (items, None),
            Some(Ok(item)) => items.push(item),
            Some(Err(e)) => {
                assert!(dec.next_item().is_none(), "the decoder goes on after {e}");
                return (items, Some(e));
            }
        }
    }
}

fn records(path: &Path) -> Vec<Value> {
    let (items, err) = read_all(path);
    assert!(err.is_none(), "{err:?}");
    items
        .into_iter()
        .map(|i| match i {
            ReadItem::Record(r) => r.value,
            ReadItem::Rejected(r) => panic!("unexpected rejection: {r}"),
        })
        .collect()
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().collect::<Map>())
}

fn s(text: &str) -> Value {
    Value::from(text)
}

const N: Value = Value::Null;

/// A file pyarrow writes with one column of each type it has, two rows per row group.
const PYARROW_TYPES: &str = r#"
import sys, datetime, decimal
import pyarrow as pa, pyarrow.parquet as pq
utc = datetime.timezone.utc
t = pa.table({
    "id": pa.array([1, 2, 3, 4], pa.int64()),
    "small": pa.array([-1, None, 3, 4], pa.int32()),
    "u": pa.array([2**64 - 1, 0, 1, 2], pa.uint64()),
    "ratio": pa.array([0.5, -1.25, None, 3.0], pa.float64()),
    "half": pa.array([0.5, 1.5, 2.5, -3.5], pa.float32()),
    "name": pa.array(["n\u00e9", "b", None, ""], pa.string()),
    "ok": pa.array([True, False, None, True]),
    "blob": pa.array([b"\x00\xff", b"", None, b"x"], pa.binary()),
    "day": pa.array([datetime.date(2024, 1, 31), None, datetime.date(1969, 12, 31), datetime.date(2000, 2, 29)], pa.date32()),
    "at": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, 123456), None, datetime.datetime(2024, 1, 2), datetime.datetime(1970, 1, 1)], pa.timestamp("us")),
    "at_utc": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=utc), None, None, datetime.datetime(1999, 12, 31, 23, 59, 59, tzinfo=utc)], pa.timestamp("ms", tz="UTC")),
    "at_ny": pa.array([datetime.datetime(2024, 7, 1, 12, 0, tzinfo=utc)] * 4, pa.timestamp("s", tz="America/New_York")),
    "tod": pa.array([datetime.time(1, 2, 3, 500000), None, datetime.time(0, 0), datetime.time(23, 59, 59)], pa.time64("us")),
    "price": pa.array([decimal.Decimal("12.34"), decimal.Decimal("-0.01"), None, decimal.Decimal("0.00")], pa.decimal128(10, 2)),
    "count": pa.array([decimal.Decimal(10**20), decimal.Decimal(-5), decimal.Decimal(0), None], pa.decimal128(30, 0)),
    "tags": pa.array([[1, 2], [], None, [None, 3]], pa.list_(pa.int64())),
    "child": pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": "y"}, {"a": 2, "b": None}], pa.struct([("a", pa.int32()), ("b", pa.string())])),
    "attrs": pa.array([[("k", 1)], [], None, [("a", 1), ("b", 2)]], pa.map_(pa.string(), pa.int64())),
    "color": pa.array(["red", "green", None, "red"]).dictionary_encode(),
    "code": pa.array([b"ab", b"cd", b"ef", None], pa.binary(2)),
    "nothing": pa.nulls(4),
})
pq.write_table(t, sys.argv[1], row_group_size=2)
print(pq.ParquetFile(sys.argv[1]).metadata.num_row_groups)
"#;

#[test]
fn pyarrow_file_reads_record_for_record_with_its_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("types.parquet");
    let groups = run_python(PYARROW_TYPES, &[path.to_str().unwrap()]);
    assert_eq!(groups.trim(), "2", "two row groups");
    let got = records(&path);
    let want = vec![
        map(vec![
            ("id", 1.into()),
            ("small", (-1).into()),
            ("u", Value::Int(u64::MAX.into())),
            ("ratio", Value::Float(0.5)),
            ("half", Value::Float(0.5)),
            ("name", s("né")),
            ("ok", true.into()),
            ("blob", Value::Bytes(vec![0, 255])),
            ("day", s("2024-01-31")),
            ("at", s("2024-01-02T03:04:05.123456")),
            ("at_utc", s("2024-01-02T03:04:05.123Z")),
            ("at_ny", s("2024-07-01T12:00:00Z")),
            ("tod", s("01:02:03.500")),
            ("price", Value::Float(12.34)),
            ("count", Value::Int(10i128.pow(20))),
            ("tags", Value::Array(vec![1.into(), 2.into()])),
            ("child", map(vec![("a", 1.into()), ("b", s("x"))])),
            ("attrs", map(vec![("k", 1.into())])),
            ("color", s("red")),
            ("code", Value::Bytes(b"ab".to_vec())),
            ("nothing", N),
        ]),
        map(vec![
            ("id", 2.into()),
            ("small", N),
            ("u", 0.into()),
            ("ratio", Value::Float(-1.25)),
            ("half", Value::Float(1.5)),
            ("name", s("b")),
            ("ok", false.into()),
            ("blob", Value::Bytes(vec![])),
            ("day", N),
            ("at", N),
            ("at_utc", N),
            ("at_ny", s("2024-07-01T12:00:00Z")),
            ("tod", N),
            ("price", Value::Float(-0.01)),
            ("count", (-5).into()),
            ("tags", Value::Array(vec![])),
            ("child", N),
            ("attrs", map(vec![])),
            ("color", s("green")),
            ("code", Value::Bytes(b"cd".to_vec())),
            ("nothing", N),
        ]),
        map(vec![
            ("id", 3.into()),
            ("small", 3.into()),
            ("u", 1.into()),
            ("ratio", N),
            ("half", Value::Float(2.5)),
            ("name", N),
            ("ok", N),
            ("blob", N),
            ("day", s("1969-12-31")),
            ("at", s("2024-01-02T00:00:00")),
            ("at_utc", N),
            ("at_ny", s("2024-07-01T12:00:00Z")),
            ("tod", s("00:00:00")),
            ("price", N),
            ("count", 0.into()),
            ("tags", N),
            ("child", map(vec![("a", N), ("b", s("y"))])),
            ("attrs", N),
            ("color", N),
            ("code", Value::Bytes(b"ef".to_vec())),
            ("nothing", N),
        ]),
        map(vec![
            ("id", 4.into()),
            ("small", 4.into()),
            ("u", 2.into()),
            ("ratio", Value::Float(3.0)),
            ("half", Value::Float(-3.5)),
            ("name", s("")),
            ("ok", true.into()),
            ("blob", Value::Bytes(b"x".to_vec())),
            ("day", s("2000-02-29")),
            ("at", s("1970-01-01T00:00:00")),
            ("at_utc", s("1999-12-31T23:59:59Z")),
            ("at_ny", s("2024-07-01T12:00:00Z")),
            ("tod", s("23:59:59")),
            ("price", Value::Float(0.0)),
            ("count", N),
            ("tags", Value::Array(vec![N, 3.into()])),
            ("child", map(vec![("a", 2.into()), ("b", N)])),
            ("attrs", map(vec![("a", 1.into()), ("b", 2.into())])),
            ("color", s("red")),
            ("code", N),
            ("nothing", N),
        ]),
    ];
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "row {}", i + 1);
    }
    // Positions are row numbers, counted across row groups.
    let (items, _) = read_all(&path);
    let numbers: Vec<u64> = items.iter().map(|i| i.position().record).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
}

#[test]
fn pandas_file_reads_with_pandas_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frame.parquet");
    run_python(
        r#"
import sys, pandas as pd
df = pd.DataFrame({
    "a": [1, 2, 3],
    "b": ["x", None, "z"],
    "c": [1.5, None, 2.5],
    "ts": pd.to_datetime(["2024-01-02 03:04:05", None, "2024-01-03 00:00:00"]),
    "cat": pd.Categorical(["lo", "hi", "lo"]),
    "flag": [True, False, True],
})
df.to_parquet(sys.argv[1], index=False)
"#,
        &[path.to_str().unwrap()],
    );
    let got = records(&path);
    assert_eq!(
        got,
        vec![
            map(vec![
                ("a", 1.into()),
                ("b", s("x")),
                ("c", Value::Float(1.5)),
                ("ts", s("2024-01-02T03:04:05")),
                ("cat", s("lo")),
                ("flag", true.into()),
            ]),
            map(vec![
                ("a", 2.into()),
                ("b", N),
                ("c", N),
                ("ts", N),
                ("cat", s("hi")),
                ("flag", false.into()),
            ]),
            map(vec![
                ("a", 3.into()),
                ("b", s("z")),
                ("c", Value::Float(2.5)),
                ("ts", s("2024-01-03T00:00:00")),
                ("cat", s("lo")),
                ("flag", true.into()),
            ]),
        ]
    );
}

/// Writes `values` as Parquet with `cfg`; the rejections by index.
fn write(cfg: &CodecConfig, values: &[Value]) -> (Vec<u8>, Vec<(usize, String)>) {
    let buf = SharedBuf::default();
    let mut enc: Box<dyn RecordEncoder> = codecs::encoder(cfg, buf.clone()).unwrap();
    let mut rejected = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match enc.write(v) {
            Ok(()) => {}
            Err(EncodeError::Rejected(why)) => rejected.push((i, why)),
            Err(e) => panic!("{e}"),
        }
    }
    enc.close().unwrap();
    (buf.bytes(), rejected)
}

/// pyarrow's view of a file: its schema's types and its rows as JSON (bytes as hex, dates
/// and times as ISO text, decimals as their digits).
const PYARROW_READS: &str = r#"
import sys, json, datetime, decimal
import pyarrow.parquet as pq
f = pq.ParquetFile(sys.argv[1])
t = f.read()
def plain(o):
    if isinstance(o, bytes):
        return "hex:" + o.hex()
    if isinstance(o, (datetime.date, datetime.time, datetime.datetime)):
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        return str(o)
    raise TypeError(type(o))
print(json.dumps({
    "types": {f.name: str(f.type) for f in t.schema},
    "rows": t.to_pylist(),
    "row_groups": f.metadata.num_row_groups,
    "compression": f.metadata.row_group(0).column(0).compression if f.metadata.num_row_groups else None,
}, default=plain))
"#;

fn pyarrow_reads(bytes: &[u8]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.parquet");
    std::fs::write(&path, bytes).unwrap();
    serde_json::from_str(&run_python(PYARROW_READS, &[path.to_str().unwrap()])).unwrap()
}

#[test]
fn inferred_columns_are_read_by_pyarrow_with_values_and_types() {
    let rows = vec![
        map(vec![
            ("id", 1.into()),
            ("score", 2.into()),
            ("name", s("a")),
            ("raw", Value::Bytes(vec![1, 2])),
            ("ok", true.into()),
            ("tags", Value::Array(vec![s("x")])),
            ("where", map(vec![("city", s("Oslo")), ("zip", 150.into())])),
        ]),
        // A float after integers makes `score` a float column; a field missing is null; a
        // field seen first here is a column too.
        map(vec![
            ("id", 2.into()),
            ("score", Value::Float(2.5)),
            ("name", N),
            ("ok", false.into()),
            ("tags", Value::Array(vec![])),
            ("where", map(vec![("city", s("Bergen"))])),
            ("late", s("here")),
        ]),
    ];
    let (bytes, rejected) = write(&cfg(), &rows);
    assert!(rejected.is_empty(), "{rejected:?}");
    let seen = pyarrow_reads(&bytes);
    assert_eq!(
        seen["types"],
        json!({
            "id": "int64", "score": "double", "name": "string", "raw": "binary", "ok": "bool",
            "tags": "list<item: string>", "where": "struct<city: string, zip: int64>",
            "late": "string",
        })
    );
    assert_eq!(
        seen["rows"],
        json!([
            {"id": 1, "score": 2.0, "name": "a", "raw": "hex:0102", "ok": true, "tags": ["x"],
             "where": {"city": "Oslo", "zip": 150}, "late": null},
            {"id": 2, "score": 2.5, "name": null, "raw": null, "ok": false, "tags": [],
             "where": {"city": "Bergen", "zip": null}, "late": "here"},
        ])
    );
    assert_eq!(seen["compression"], "SNAPPY");
}

const TYPED_SCHEMA: &str = r#"{
  "type": "record", "name": "Sale", "fields": [
    {"name": "id", "type": "long"},
    {"name": "qty", "type": "int"},
    {"name": "unit", "type": "float"},
    {"name": "note", "type": ["null", "string"]},
    {"name": "paid", "type": "boolean"},
    {"name": "sig", "type": "bytes"},
    {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 2}},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "local", "type": ["null", {"type": "long", "logicalType": "local-timestamp-micros"}]},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
    {"name": "items", "type": {"type": "array", "items": "long"}},
    {"name": "attrs", "type": {"type": "map", "values": "double"}},
    {"name": "buyer", "type": ["null", {"type": "record", "name": "Buyer", "fields": [
        {"name": "name", "type": "string"}, {"name": "age", "type": ["null", "int"]}]}]}
  ]}"#;

#[test]
fn avro_schema_columns_are_read_by_pyarrow_with_values_and_types() {
    let mut cfg = cfg();
    cfg.schema = Some(AvroSchema::parse(TYPED_SCHEMA).unwrap());
    let rows = vec![
        map(vec![
            ("id", 1.into()),
            ("qty", 3.into()),
            ("unit", Value::Float(0.5)),
            ("note", s("first")),
            ("paid", true.into()),
            ("sig", Value::Bytes(vec![0xde, 0xad])),
            ("code", s("XY")),
            ("kind", s("B")),
            // ISO text as the model writes it, or the Avro numbers.
            ("day", s("2024-02-29")),
            ("at", s("2024-01-02T03:04:05.123Z")),
            ("local", s("2024-01-02 03:04:05.000001")),
            ("price", s("12.30")),
            ("items", Value::Array(vec![1.into(), 2.into()])),
            ("attrs", map(vec![("w", Value::Float(1.5))])),
            ("buyer", map(vec![("name", s("Ann")), ("age", 40.into())])),
            (
                "ignored",
                s("a key the schema lacks is left out, as Avro does"),
            ),
        ]),
        map(vec![
            ("id", 2.into()),
            ("qty", (-1).into()),
            ("unit", 2.into()),
            ("paid", false.into()),
            ("sig", Value::Bytes(vec![])),
            ("code", Value::Bytes(b"AB".to_vec())),
            ("kind", s("A")),
            ("day", 0.into()),
            ("at", 0.into()),
            ("price", Value::Float(-0.5)),
            ("items", Value::Array(vec![])),
            ("attrs", map(vec![])),
        ]),
    ];
    let (bytes, rejected) = write(&cfg, &rows);
    assert!(rejected.is_empty(), "{rejected:?}");
    let seen = pyarrow_reads(&bytes);
    assert_eq!(
        seen["types"],
        json!({
            "id": "int64", "qty": "int32", "unit": "float", "note": "string", "paid": "bool",
            "sig": "binary", "code": "fixed_size_binary[2]", "kind": "string", "day": "date32[day]",
            "at": "timestamp[ms, tz=UTC]", "local": "timestamp[us]", "price": "decimal128(9, 2)",
            // Avro's types without null are required columns.
            "items": "list<item: int64 not null>", "attrs": "map<string, double ('attrs')>",
            "buyer": "struct<name: string not null, age: int32>",
        })
    );
    assert_eq!(
        seen["rows"],
        json!([
            {"id": 1, "qty": 3, "unit": 0.5, "note": "first", "paid": true, "sig": "hex:dead",
             "code": "hex:5859", "kind": "B", "day": "2024-02-29",
             "at": "2024-01-02T03:04:05.123000+00:00", "local": "2024-01-02T03:04:05.000001",
             "price": "12.30", "items": [1, 2], "attrs": [["w", 1.5]],
             "buyer": {"name": "Ann", "age": 40}},
            {"id": 2, "qty": -1, "unit": 2.0, "note": null, "paid": false, "sig": "hex:",
             "code": "hex:4142", "kind": "A", "day": "1970-01-01",
             "at": "1970-01-01T00:00:00+00:00", "local": null, "price": "-0.50",
             "items": [], "attrs": [], "buyer": null},
        ])
    );
    // And back through our decoder: dates and times as ISO text, decimals as numbers.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typed.parquet");
    std::fs::write(&path, &bytes).unwrap();
    let back = records(&path);
    assert_eq!(back[0].get("at"), Some(&s("2024-01-02T03:04:05.123Z")));
    assert_eq!(back[0].get("day"), Some(&s("2024-02-29")));
    assert_eq!(back[0].get("price"), Some(&Value::Float(12.3)));
    assert_eq!(back[1].get("local"), Some(&N));
}

#[test]
fn avro_schema_records_that_do_not_fit_are_rejected_naming_the_field() {
    let mut cfg = cfg();
    cfg.schema = Some(AvroSchema::parse(TYPED_SCHEMA).unwrap());
    let good = |id: i64| {
        map(vec![
            ("id", id.into()),
            ("qty", 1.into()),
            ("unit", Value::Float(1.0)),
            ("paid", true.into()),
            ("sig", Value::Bytes(vec![])),
            ("code", s("XY")),
            ("kind", s("A")),
            ("day", 1.into()),
            ("at", 1.into()),
            ("price", 1.into()),
            ("items", Value::Array(vec![])),
            ("attrs", map(vec![])),
        ])
    };
    let with = |k: &str, v: Value| {
        let Value::Map(mut m) = good(9) else {
            unreachable!()
        };
        m.insert(k, v);
        Value::Map(m)
    };
    let rows = vec![
        good(1),
        with("qty", Value::Int(1 << 40)),
        with("day", s("31/12/2024")),
        with("price", s("1.234")),
        with("buyer", map(vec![("name", 5.into())])),
        with("paid", N),
        good(2),
    ];
    let (bytes, rejected) = write(&cfg, &rows);
    let reasons: Vec<(usize, &str)> = rejected.iter().map(|(i, r)| (*i, r.as_str())).collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(
        reasons[0]
            .1
            .contains("field 'qty': expected an int (32 bits), found integer 1099511627776"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].1.contains("field 'day': expected a date"),
        "{reasons:?}"
    );
    assert!(
        reasons[2]
            .1
            .contains("field 'price': '1.234' has more than the 2 decimal places"),
        "{reasons:?}"
    );
    assert!(
        reasons[3]
            .1
            .contains("field 'buyer.name': expected a string, found integer 5"),
        "{reasons:?}"
    );
    assert!(
        reasons[4]
            .1
            .contains("field 'paid': a value is required, found null"),
        "{reasons:?}"
    );
    let seen = pyarrow_reads(&bytes);
    let ids: Vec<i64> = seen["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn schemas_parquet_cannot_hold_are_refused_when_the_encoder_is_built() {
    for (schema, why) in [
        (
            r#""long""#,
            "a Parquet file's rows are records, and the slot's schema is long",
        ),
        (
            r#"{"type": "record", "name": "R", "fields": [{"name": "x", "type": ["int", "string"]}]}"#,
            "at .x: a union of int, string has no Parquet column type",
        ),
        (
            r#"{"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}"#,
            "at .next: record Node contains itself",
        ),
    ] {
        let mut cfg = cfg();
        cfg.schema = Some(AvroSchema::parse(schema).unwrap());
        let err = codecs::encoder(&cfg, Vec::new())
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn a_record_that_does_not_fit_the_inferred_columns_is_rejected_naming_the_field() {
    let rows = vec![
        map(vec![("id", 1.into()), ("name", s("a"))]),
        // While the columns are inferred: a string where integers were.
        map(vec![("id", s("two")), ("name", s("b"))]),
        map(vec![("id", 3.into()), ("name", s("c"))]),
    ];
    let buf = SharedBuf::default();
    let mut enc = codecs::encoder(&cfg(), buf.clone()).unwrap();
    let mut outcomes = Vec::new();
    for v in &rows {
        outcomes.push(enc.write(v).map_err(|e| e.to_string()));
    }
    // A flush fixes the columns (a row group is written); then a new field and a nested
    // type that does not match are rejected, the others written.
    enc.finish().unwrap();
    for v in [
        map(vec![
            ("id", 4.into()),
            ("name", s("d")),
            ("extra", true.into()),
        ]),
        map(vec![("id", 5.into()), ("name", Value::Array(vec![]))]),
        map(vec![("id", 6.into())]),
        s("not a record"),
    ] {
        outcomes.push(enc.write(&v).map_err(|e| e.to_string()));
    }
    enc.close().unwrap();
    let errors: Vec<(usize, String)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.as_ref().err().map(|e| (i, e.clone())))
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(errors[0].0, 1);
    assert!(
        errors[0]
            .1
            .contains("field 'id': found string where the first records had integers"),
        "{errors:?}"
    );
    assert_eq!(errors[1].0, 3);
    assert!(
        errors[1].1.contains("field 'extra' is not a column of this file: its columns were fixed by its first records (id, name)"),
        "{errors:?}"
    );
    assert!(
        errors[2]
            .1
            .contains("field 'name': expected a string, found array"),
        "{errors:?}"
    );
    assert!(
        errors[3]
            .1
            .contains("a Parquet row is a map of column names to values, not string"),
        "{errors:?}"
    );
    let seen = pyarrow_reads(&buf.bytes());
    assert_eq!(
        seen["rows"],
        json!([{"id": 1, "name": "a"}, {"id": 3, "name": "c"}, {"id": 6, "name": null}])
    );
    assert_eq!(seen["row_groups"], 2, "the flush ended a row group");
}

#[test]
fn many_records_make_several_row_groups_read_back_in_order() {
    let n = codecs::ROW_GROUP_ROWS * 2 + 1000;
    let rows: Vec<Value> = (0..n as i64)
        .map(|i| map(vec![("i", i.into()), ("sq", Value::Float((i * i) as f64))]))
        .collect();
    let (bytes, rejected) = write(&cfg(), &rows);
    assert!(rejected.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.parquet");
    std::fs::write(&path, &bytes).unwrap();
    let out = run_python(
        "import sys, pyarrow.parquet as pq\nf = pq.ParquetFile(sys.argv[1])\nt = f.read()\nprint(f.metadata.num_row_groups, t.num_rows, t.column('i').to_pylist() == list(range(t.num_rows)))",
        &[path.to_str().unwrap()],
    );
    assert_eq!(out.trim(), format!("3 {n} True"));
    let (items, err) = read_all(&path);
    assert!(err.is_none());
    assert_eq!(items.len(), n);
    for (k, item) in items.iter().enumerate() {
        let ReadItem::Record(r) = item else {
            panic!("{item:?}")
        };
        assert_eq!(r.position.record, k as u64 + 1);
        assert_eq!(r.value.get("i"), Some(&Value::Int(k as i128)));
    }
    // In batches of 1,000, as the pipeline reads, which cut across the decoder's batches of
    // 1,024 rows: the same items.
    let mut dec = open(&path);
    let mut batched = Vec::new();
    while dec.next_batch(1000, &mut batched).unwrap() {}
    assert!(batched == items, "batches of 1,000 read other items");
}

#[test]
fn an_empty_output_is_a_valid_file_and_an_empty_input_has_no_rows() {
    let (bytes, _) = write(&cfg(), &[]);
    let seen = pyarrow_reads(&bytes);
    assert_eq!(seen["rows"], json!([]));
    let mut typed = cfg();
    typed.schema = Some(AvroSchema::parse(TYPED_SCHEMA).unwrap());
    let (bytes, _) = write(&typed, &[]);
    let seen = pyarrow_reads(&bytes);
    assert_eq!(seen["rows"], json!([]));
    assert_eq!(seen["types"]["day"], "date32[day]");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.parquet");
    std::fs::write(&path, b"").unwrap();
    let (items, err) = read_all(&path);
    assert!(items.is_empty() && err.is_none(), "{items:?} {err:?}");
}

#[test]
fn a_truncated_file_breaks_the_stream_and_a_corrupt_row_group_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.parquet");
    let corrupt = dir.path().join("corrupt.parquet");
    // Three row groups of 100 rows; the second's first page header overwritten.
    let out = run_python(
        r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
t = pa.table({"i": pa.array(range(300), pa.int64()), "s": pa.array([str(i) * 3 for i in range(300)])})
pq.write_table(t, sys.argv[1], row_group_size=100)
data = bytearray(open(sys.argv[1], "rb").read())
col = pq.ParquetFile(sys.argv[1]).metadata.row_group(1).column(0)
at = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
data[at:at + 24] = b"\xff" * 24
open(sys.argv[2], "wb").write(bytes(data))
print(at)
"#,
        &[good.to_str().unwrap(), corrupt.to_str().unwrap()],
    );
    let damaged_at: u64 = out.trim().parse().unwrap();

    // Cut short: the footer is gone, nothing is read.
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let (items, err) = read_all(&cut);
    assert!(items.is_empty());
    let err = err.expect("the stream breaks").to_string();
    assert!(
        err.contains("does not end with the magic number PAR1"),
        "{err}"
    );
    assert!(err.contains("record 1"), "{err}");

    // Not Parquet at all.
    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"id,name\n1,a\n").unwrap();
    let err = read_all(&junk).1.expect("broken").to_string();
    assert!(err.contains("not a Parquet file"), "{err}");

    // A corrupt row group: its rows are rejected in one rejection naming it, the others read.
    let (items, err) = read_all(&corrupt);
    assert!(err.is_none(), "{err:?}");
    let records: Vec<u64> = items
        .iter()
        .filter(|i| matches!(i, ReadItem::Record(_)))
        .map(|i| i.position().record)
        .collect();
    assert_eq!(records, (1..=100).chain(201..=300).collect::<Vec<_>>());
    let rejections: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            ReadItem::Rejected(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    let r = rejections[0];
    assert_eq!(r.position.record, 101);
    assert_eq!(r.position.byte_offset, Some(damaged_at));
    assert!(
        r.reason
            .contains(&format!("row group 1 at byte offset {damaged_at}"))
            && r.reason.contains("100 rows are skipped"),
        "{}",
        r.reason
    );
}

#[test]
fn a_byte_stream_is_refused_and_so_are_messages() {
    let err = codecs::decoder(&cfg(), std::io::Cursor::new(Vec::new()), "stdin")
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains(
            "Parquet needs a seekable input: a file or an object store, not a stream (stdin)"
        ),
        "{err}"
    );
    let err = codecs::decode_message(&cfg(), b"PAR1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not one record per message"), "{err}");
    assert!(codecs::encode_message(&cfg(), &map(vec![])).is_err());
}

#[test]
fn compressions_spark_and_pyarrow_write_are_read_and_brotli_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for codec in ["snappy", "gzip", "zstd", "lz4", "none", "brotli"] {
        paths.push((codec, dir.path().join(format!("{codec}.parquet"))));
    }
    let args: Vec<&str> = paths.iter().map(|(_, p)| p.to_str().unwrap()).collect();
    run_python(
        r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
t = pa.table({"i": pa.array(range(5), pa.int64()), "s": pa.array(["x"] * 5)})
for path, codec in zip(sys.argv[1:], ["snappy", "gzip", "zstd", "lz4", "none", "brotli"]):
    pq.write_table(t, path, compression=codec)
"#,
        &args,
    );
    for (codec, path) in &paths {
        let (items, err) = read_all(path);
        assert!(err.is_none(), "{codec}: {err:?}");
        if *codec == "brotli" {
            assert_eq!(items.len(), 1, "{items:?}");
            let ReadItem::Rejected(r) = &items[0] else {
                panic!("{items:?}")
            };
            assert!(
                r.reason.contains("BROTLI") || r.reason.contains("brotli"),
                "{}",
                r.reason
            );
            assert!(
                r.reason.contains("its 5 rows are skipped")
                    || r.reason.contains("remaining 5 rows"),
                "{}",
                r.reason
            );
        } else {
            let n = items
                .iter()
                .filter(|i| matches!(i, ReadItem::Record(r) if r.value.get("s") == Some(&s("x"))))
                .count();
            assert_eq!(n, 5, "{codec}: {items:?}");
        }
    }
}
