//! SQLite: values read by storage class and written back, rows a table refuses rejected with
//! SQLite's message while the others commit, and a missing table or file.

use runtime_core::{ReadItem, RejectionKind, Value};

use crate::support::{descriptor, open_sink, out_records, read_all, record, values, Db};

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_types_constraints_and_errors() {
    let db = Db::sqlite();
    db.exec(
        "CREATE TABLE every_type (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB,
                                  flag BOOLEAN, ts DATETIME, j JSON, any_)",
    )
    .await;
    db.exec(
        "INSERT INTO every_type VALUES
           (1, 9007199254740993, 2.5, 'é\tx', x'00ff', 1, '2024-05-01T12:30:00Z', '{\"a\":1}', 3),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'text in an untyped column')",
    )
    .await;
    let mut s = db
        .source("SELECT * FROM every_type ORDER BY id")
        .await
        .unwrap();
    let rows = values(read_all(&mut *s, 10).await);
    assert_eq!(
        rows,
        [
            record(&[
                ("id", Value::Int(1)),
                ("i", Value::Int(9007199254740993)),
                ("r", Value::Float(2.5)),
                ("t", Value::from("é\tx")),
                ("b", Value::Bytes(vec![0, 0xff])),
                ("flag", Value::Bool(true)),
                ("ts", Value::from("2024-05-01T12:30:00Z")),
                ("j", Value::from("{\"a\":1}")),
                ("any_", Value::Int(3)),
            ]),
            record(&[
                ("id", Value::Int(2)),
                ("i", Value::Null),
                ("r", Value::Null),
                ("t", Value::Null),
                ("b", Value::Null),
                ("flag", Value::Null),
                ("ts", Value::Null),
                ("j", Value::Null),
                ("any_", Value::from("text in an untyped column")),
            ]),
        ]
    );
    db.exec("CREATE TABLE every_type_out AS SELECT * FROM every_type WHERE 0")
        .await;
    let mut sink = db.sink("every_type_out").await.unwrap();
    assert!(sink
        .write_batch(out_records(rows.clone()))
        .await
        .unwrap()
        .is_empty());
    sink.finish().await.unwrap();
    let mut again = db
        .source("SELECT * FROM every_type_out ORDER BY id")
        .await
        .unwrap();
    let back = values(read_all(&mut *again, 10).await);
    // `CREATE TABLE AS` keeps no BOOLEAN declaration: the flag comes back as the integer.
    let mut want = rows.clone();
    if let Value::Map(m) = &mut want[0] {
        m.insert("flag", Value::Int(1));
    }
    assert_eq!(back, want);

    // Rows the table refuses; a map goes in as JSON text.
    db.exec(
        "CREATE TABLE scores (id INTEGER PRIMARY KEY, score REAL NOT NULL CHECK (score >= 0),
                              doc TEXT) STRICT",
    )
    .await;
    let batch = vec![
        record(&[
            ("id", Value::Int(1)),
            ("score", Value::Float(0.5)),
            ("doc", record(&[("k", Value::Int(1))])),
        ]),
        record(&[("id", Value::Int(2)), ("score", Value::Null)]),
        record(&[("id", Value::Int(3)), ("score", Value::Float(-1.0))]),
        record(&[("id", Value::Int(1)), ("score", Value::Float(0.7))]),
        record(&[("id", Value::Int(5)), ("score", Value::from("high"))]),
        record(&[("id", Value::Int(6)), ("score", Value::Float(f64::NAN))]),
        record(&[("id", Value::Int(7)), ("score", Value::Float(2.0))]),
    ];
    let mut sink = db.sink("scores").await.unwrap();
    let refused = sink.write_batch(out_records(batch)).await.unwrap();
    let at: Vec<(u64, RejectionKind)> = refused
        .iter()
        .map(|r| (r.position.record, r.kind))
        .collect();
    assert_eq!(
        at.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6],
        "{refused:#?}"
    );
    for (r, says) in refused.iter().zip([
        "NOT NULL constraint failed",
        "CHECK constraint failed",
        "UNIQUE constraint failed",
        "cannot store TEXT value in REAL column",
        "SQLite cannot store NaN",
    ]) {
        assert!(r.reason.contains(says), "{} (expected: {says})", r.reason);
    }
    sink.flush().await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM scores").await, 2);
    assert_eq!(
        db.count("SELECT count(*) FROM scores WHERE doc = '{\"k\":1}'")
            .await,
        1
    );
    sink.finish().await.unwrap();

    // A table that is not there; a file that is not there.
    let e = db.sink("nowhere").await.err().unwrap().to_string();
    assert!(
        e.contains(&db.store()) && e.contains("does not exist"),
        "{e}"
    );
    let d = descriptor(
        "sqlite:///nonexistent/folder/x.db",
        serde_json::json!({"InsertIntoTable": "t"}),
    );
    let registry = endpoint_sql::register(endpoints::Registry::default(), Default::default());
    let e = open_sink(registry, d).await.err().unwrap().to_string();
    assert!(
        e.contains("sqlite:/nonexistent/folder/x.db") && e.contains("cannot be opened"),
        "{e}"
    );

    // A statement's rows on a second pass with Loop; an empty pass ends it.
    let d = db.descriptor(serde_json::json!({"SelectQuery": "SELECT id FROM scores ORDER BY id"}));
    let mut json = d.to_json();
    json["Loop"] = serde_json::json!(true);
    let d = endpoints::StreamDescriptor::from_json(&json).unwrap();
    let registry = endpoint_sql::register(endpoints::Registry::default(), Default::default());
    let mut s = crate::support::open_source(registry, d, None)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        for item in s.read_batch(2).await.unwrap().unwrap() {
            let ReadItem::Record(r) = item else { panic!() };
            seen.push((r.position.record, r.value.get("id").cloned().unwrap()));
        }
    }
    assert_eq!(
        seen[..5],
        [
            (1, Value::Int(1)),
            (2, Value::Int(7)),
            (3, Value::Int(1)),
            (4, Value::Int(7)),
            (5, Value::Int(1))
        ]
    );
}
