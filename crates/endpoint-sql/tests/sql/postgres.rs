//! PostgreSQL: every mapped type read and written back, rows the table refuses rejected with
//! the server's message while the others commit, and the errors of a missing table, a wrong
//! password and a server that is not there, each naming the store, never the password.

use endpoints::{Credential, Credentials};
use runtime_core::{ReadItem, RejectionKind, Value};

use crate::support::{
    descriptor, open_sink, open_source, out_records, read_all, record, registry_with, values, Db,
};

const TYPES: &str = "CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN score AS numeric(5, 2);
CREATE TABLE every_type (
    id int PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, o oid,
    n_whole numeric(30, 0), n_scaled numeric(10, 3), n_free numeric, n_nan numeric,
    f4 float4, f8 float8, t text, vc varchar(20), c char(3), nm name,
    ts timestamp, tstz timestamptz, d date, tm time, tmtz timetz,
    u uuid, by bytea, j json, jb jsonb, ai int4[], at text[], a2 float8[],
    e mood, s score)";

const ROW: &str = "INSERT INTO every_type VALUES (
    1, true, -7, 123456, 9007199254740993, 42,
    123456789012345678901234567890, 3.250, 0.5, 'NaN',
    0.1, 2.5e-10, 'tab\there, line\nnew, back\\slash, é', 'vc', 'ab', 'nm',
    '2024-05-01 12:30:00.25', '2024-05-01 14:30:00+02', '2024-02-29', '23:59:59.000001', '10:00:00-05:30',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10', '{\"a\": [1, 2.5, null]}', '{\"k\": {\"x\": \"y\"}}',
    '{1, NULL, 3}', '{\"a b\", \"q\\\"uote\"}', '{{1.5, 2}, {3, 4}}',
    'happy', 12.5)";

fn every_value() -> Value {
    let json_a = serde_json::json!({"a": [1, 2.5, null]});
    let json_k = serde_json::json!({"k": {"x": "y"}});
    record(&[
        ("id", Value::Int(1)),
        ("b", Value::Bool(true)),
        ("i2", Value::Int(-7)),
        ("i4", Value::Int(123456)),
        ("i8", Value::Int(9007199254740993)),
        ("o", Value::Int(42)),
        ("n_whole", Value::Int(123456789012345678901234567890)),
        ("n_scaled", Value::Float(3.25)),
        ("n_free", Value::Float(0.5)),
        ("n_nan", Value::Float(f64::NAN)),
        ("f4", Value::Float(0.1)),
        ("f8", Value::Float(2.5e-10)),
        ("t", Value::from("tab\there, line\nnew, back\\slash, é")),
        ("vc", Value::from("vc")),
        ("c", Value::from("ab ")),
        ("nm", Value::from("nm")),
        ("ts", Value::from("2024-05-01T12:30:00.250")),
        ("tstz", Value::from("2024-05-01T12:30:00Z")),
        ("d", Value::from("2024-02-29")),
        ("tm", Value::from("23:59:59.000001")),
        ("tmtz", Value::from("10:00:00-05:30")),
        ("u", Value::from("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        ("by", Value::Bytes(vec![0, 0xff, 0x10])),
        ("j", serde_json::from_value(json_a).unwrap()),
        ("jb", serde_json::from_value(json_k).unwrap()),
        (
            "ai",
            Value::Array(vec![Value::Int(1), Value::Null, Value::Int(3)]),
        ),
        (
            "at",
            Value::Array(vec![Value::from("a b"), Value::from("q\"uote")]),
        ),
        (
            "a2",
            Value::Array(vec![
                Value::Array(vec![Value::Float(1.5), Value::Float(2.0)]),
                Value::Array(vec![Value::Float(3.0), Value::Float(4.0)]),
            ]),
        ),
        ("e", Value::from("happy")),
        ("s", Value::Float(12.5)),
    ])
}

/// NaN is not equal to itself: compares the debug forms.
fn same(a: &Value, b: &Value) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_reads_and_writes_back() {
    let db = Db::postgres();
    db.exec(TYPES).await;
    db.exec(ROW).await;
    db.exec("INSERT INTO every_type (id) VALUES (2)").await;
    db.exec("CREATE TABLE every_type_out (LIKE every_type)")
        .await;

    let mut source = db
        .source("SELECT * FROM every_type ORDER BY id")
        .await
        .unwrap();
    let rows = values(read_all(&mut *source, 10).await);
    assert_eq!(rows.len(), 2);
    let want = every_value();
    for ((k, got), (_, w)) in rows[0]
        .as_map()
        .unwrap()
        .iter()
        .zip(want.as_map().unwrap().iter())
    {
        assert!(same(got, w), "column {k:?}: read {got:?}, expected {w:?}");
    }
    assert!(same(&rows[0], &want));
    // Every column of the second row is null but its id.
    let nulls = rows[1].as_map().unwrap();
    assert_eq!(nulls.len(), want.as_map().unwrap().len());
    assert!(
        nulls.iter().skip(1).all(|(_, v)| *v == Value::Null),
        "{nulls:?}"
    );

    // Written back as read: the same rows, compared by the server.
    let mut sink = db.sink("every_type_out").await.unwrap();
    let refused = sink.write_batch(out_records(rows.clone())).await.unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    let report = sink.finish().await.unwrap();
    assert_eq!(report.records, 2);
    let differ = db
        .count(
            "SELECT count(*) FROM (
                (SELECT id, b, i2, i4, i8, o, n_whole, n_scaled, n_free, n_nan, f4, f8, t, vc, c,
                        nm, ts, tstz, d, tm, tmtz, u, by, jb, ai, at, a2, e, s
                   FROM every_type
                 EXCEPT
                 SELECT id, b, i2, i4, i8, o, n_whole, n_scaled, n_free, n_nan, f4, f8, t, vc, c,
                        nm, ts, tstz, d, tm, tmtz, u, by, jb, ai, at, a2, e, s
                   FROM every_type_out)) x",
        )
        .await;
    // json keeps its text as written (spacing): compared as jsonb.
    let json_differs = db
        .count(
            "SELECT count(*) FROM every_type a JOIN every_type_out b USING (id)
              WHERE a.j::jsonb IS DISTINCT FROM b.j::jsonb",
        )
        .await;
    assert_eq!((differ, json_differs), (0, 0));
    let mut again = db
        .source("SELECT * FROM every_type_out ORDER BY id")
        .await
        .unwrap();
    let back = values(read_all(&mut *again, 10).await);
    assert!(same(&back[0], &want), "{:?}", back[0]);

    // Text written into typed columns: ISO strings into timestamps, a map into jsonb.
    let mut sink = db.sink("every_type_out").await.unwrap();
    let typed = record(&[
        ("id", Value::Int(3)),
        ("tstz", Value::from("2024-05-01T14:30:00+02:00")),
        ("ts", Value::from("2024-05-01 12:30:00")),
        ("jb", record(&[("m", Value::Int(1))])),
        ("j", Value::from("just text")),
        ("i8", Value::Float(5.0)),
        ("b", Value::Int(1)),
    ]);
    let refused = sink.write_batch(out_records(vec![typed])).await.unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    sink.finish().await.unwrap();
    let mut s = db
        .source("SELECT tstz, ts, jb, j, i8, b FROM every_type_out WHERE id = 3")
        .await
        .unwrap();
    let got = values(read_all(&mut *s, 10).await);
    assert_eq!(
        got,
        [record(&[
            ("tstz", Value::from("2024-05-01T12:30:00Z")),
            ("ts", Value::from("2024-05-01T12:30:00")),
            ("jb", record(&[("m", Value::Int(1))])),
            ("j", Value::from("just text")),
            ("i8", Value::Int(5)),
            ("b", Value::Bool(true)),
        ])]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn types_it_does_not_read_are_refused_by_column_and_rows_stream_with_positions() {
    let db = Db::postgres();
    let e = db
        .source("SELECT 1 AS ok, interval '1 day' AS span")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("'span'") && e.contains("INTERVAL") && e.contains(&db.store()),
        "{e}"
    );

    // Many rows, read in small batches, numbered from 1; SkipToRecord skips rows.
    let mut s = db
        .source("SELECT g AS n FROM generate_series(1, 5000) g")
        .await
        .unwrap();
    let items = read_all(&mut *s, 7).await;
    assert_eq!(items.len(), 5000);
    for (i, item) in items.iter().enumerate() {
        let ReadItem::Record(r) = item else {
            panic!("{item:?}")
        };
        assert_eq!(r.position.record, i as u64 + 1);
        assert_eq!(r.value.get("n"), Some(&Value::Int(i as i128 + 1)));
    }
    let d = db.descriptor(
        serde_json::json!({"SelectQuery": "SELECT g AS n FROM generate_series(1, 5) g"}),
    );
    let mut text = d.to_json();
    text["SkipToRecord"] = serde_json::json!(3);
    let d = endpoints::StreamDescriptor::from_json(&text).unwrap();
    let registry = endpoint_sql::register(endpoints::Registry::default(), Default::default());
    let mut s = open_source(registry, d, None).await.unwrap();
    let items = read_all(&mut *s, 10).await;
    let got: Vec<(u64, Value)> = items
        .into_iter()
        .map(|i| match i {
            ReadItem::Record(r) => (r.position.record, r.value.get("n").cloned().unwrap()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, [(4, Value::Int(4)), (5, Value::Int(5))]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_the_table_refuses_are_rejected_and_the_others_commit() {
    let db = Db::postgres();
    db.exec(
        "CREATE TABLE scores (id int PRIMARY KEY, score float8 NOT NULL CHECK (score >= 0),
                              label text, at timestamptz)",
    )
    .await;
    let rows = vec![
        record(&[
            ("id", Value::Int(1)),
            ("score", Value::Float(0.5)),
            ("label", Value::Null),
            ("at", Value::Null),
        ]),
        record(&[("id", Value::Int(2)), ("score", Value::Null)]),
        record(&[("id", Value::Int(3)), ("score", Value::Float(-1.0))]),
        record(&[("id", Value::Int(1)), ("score", Value::Float(0.7))]),
        record(&[
            ("id", Value::Int(5)),
            ("score", Value::from("not a number")),
        ]),
        record(&[
            ("id", Value::Int(6)),
            ("score", Value::Float(0.9)),
            ("at", Value::from("2024-13-45")),
        ]),
        record(&[
            ("id", Value::Int(7)),
            ("score", Value::Float(1.5)),
            ("label", Value::from("x\ty")),
        ]),
        record(&[
            ("id", Value::Int(8)),
            ("score", Value::Float(2.5)),
            ("nope", Value::Int(1)),
        ]),
        record(&[("id", Value::Float(9.5)), ("score", Value::Float(2.5))]),
    ];
    let mut sink = db.sink("scores").await.unwrap();
    let refused = sink.write_batch(out_records(rows)).await.unwrap();
    let got: Vec<(u64, RejectionKind)> = refused
        .iter()
        .map(|r| (r.position.record, r.kind))
        .collect();
    assert_eq!(
        got.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6, 8, 9],
        "{refused:#?}"
    );
    let reasons: Vec<&str> = refused.iter().map(|r| r.reason.as_str()).collect();
    for (reason, says) in reasons.iter().zip([
        "violates not-null constraint",
        "violates check constraint",
        "duplicate key value violates unique constraint",
        "invalid input syntax for type double precision",
        "out of range",
        "the field 'nope' is not a column of the table",
        "9.5 is not an integer",
    ]) {
        assert!(reason.contains(says), "{reason} (expected: {says})");
    }
    assert!(reasons[0].contains("SQLSTATE 23502"), "{}", reasons[0]);
    // Nothing is durable before the flush; the good rows are after it.
    assert_eq!(db.count("SELECT count(*) FROM scores").await, 0);
    sink.flush().await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM scores").await, 2);
    assert_eq!(
        db.count("SELECT count(*) FROM scores WHERE label = E'x\\ty'")
            .await,
        1
    );

    // The next batch goes on in a new transaction; a sink dropped unflushed leaves nothing.
    let more = vec![record(&[
        ("id", Value::Int(10)),
        ("score", Value::Float(1.0)),
    ])];
    assert!(sink
        .write_batch(out_records(more))
        .await
        .unwrap()
        .is_empty());
    drop(sink);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(db.count("SELECT count(*) FROM scores").await, 2);

    // OutputFields choose the columns; other fields are not written.
    let d = db.descriptor(serde_json::json!({
        "InsertIntoTable": "scores", "OutputFields": ["id", "score"]
    }));
    let registry = endpoint_sql::register(endpoints::Registry::default(), Default::default());
    let mut sink = open_sink(registry.clone(), d).await.unwrap();
    let rows = vec![record(&[
        ("id", Value::Int(11)),
        ("score", Value::Float(3.0)),
        ("label", Value::from("ignored")),
    ])];
    assert!(sink
        .write_batch(out_records(rows))
        .await
        .unwrap()
        .is_empty());
    sink.finish().await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM scores WHERE id = 11 AND label IS NULL")
            .await,
        1
    );
    let d = db.descriptor(serde_json::json!({
        "InsertIntoTable": "scores", "OutputFields": ["id", "points"]
    }));
    let e = open_sink(registry, d)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("'points'") && e.contains("OutputFields"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_store_and_never_the_password() {
    let db = Db::postgres();
    let store = db.store();
    let password = db.password();

    // A missing table: for a sink when it opens, for a source's statement too.
    let e = db.sink("nowhere").await.err().unwrap();
    let text = e.to_string();
    assert!(!e.is_retriable(), "{text}");
    assert!(
        text.contains(&store) && text.contains("table nowhere") && text.contains("does not exist"),
        "{text}"
    );
    let e = db
        .source("SELECT * FROM nowhere")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&store)
            && e.contains("nowhere")
            && e.contains("does not exist")
            && e.contains("42P01"),
        "{e}"
    );
    let e = db.source("SELEKT 1").await.err().unwrap().to_string();
    assert!(e.contains("syntax error") && e.contains(&store), "{e}");

    // A wrong password.
    let port = match &db.server {
        crate::support::Server::Pg(pg, _) => pg.port(),
        _ => unreachable!(),
    };
    let wrong =
        format!("jdbc:postgresql://127.0.0.1:{port}/testdb?user=tester&password=hunter2-wrong");
    let d = descriptor(&wrong, serde_json::json!({"SelectQuery": "SELECT 1"}));
    let registry = endpoint_sql::register(endpoints::Registry::default(), Default::default());
    let e = open_source(registry.clone(), d, None).await.err().unwrap();
    let text = e.to_string();
    assert!(!e.is_retriable(), "{text}");
    assert!(
        text.contains("authentication failed for user 'tester'") && text.contains(&store),
        "{text}"
    );
    assert!(
        !text.contains("hunter2") && !format!("{e:?}").contains("hunter2"),
        "{text}"
    );

    // Nothing listening: temporary, naming host and database.
    let closed = test_servers::free_port();
    let gone = format!("postgresql://tester:{password}@127.0.0.1:{closed}/testdb");
    let d = descriptor(&gone, serde_json::json!({"InsertIntoTable": "t"}));
    let e = open_sink(registry.clone(), d).await.err().unwrap();
    let text = e.to_string();
    assert!(e.is_retriable(), "{text}");
    assert!(
        text.contains(&format!("postgresql://127.0.0.1:{closed}/testdb")),
        "{text}"
    );
    assert!(!text.contains(password), "{text}");

    // describe() names the store, never the password.
    db.exec("CREATE TABLE t (n int)").await;
    let sink = db.sink("t").await.unwrap();
    assert_eq!(sink.describe(), format!("{store} table t"));
    let source = db.source("SELECT n FROM t").await.unwrap();
    assert_eq!(
        source.describe(),
        format!("{store} query \"SELECT n FROM t\"")
    );
    assert!(!format!(
        "{}",
        db.descriptor(serde_json::json!({"SelectQuery": "x"}))
            .to_json()
    )
    .is_empty());
    let shown = format!(
        "{:?}",
        db.descriptor(serde_json::json!({"SelectQuery": "x"}))
    );
    assert!(
        !shown.contains(password) && shown.contains("password=***"),
        "{shown}"
    );
    assert_eq!(
        endpoint_sql::mask(&db.connection_string()),
        db.connection_string().replace(password, "***")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_user_and_password_come_from_the_credentials_for_the_host() {
    let db = Db::postgres();
    db.exec("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await;
    let port = match &db.server {
        crate::support::Server::Pg(pg, _) => pg.port(),
        _ => unreachable!(),
    };
    let mut c = Credential::for_host("127.0.0.1");
    c.path = Some("/testdb".into());
    c.username = Some("tester".into());
    c.password = Some(db.password().into());
    let registry = registry_with(Credentials::new(vec![c]));
    for bare in [
        format!("jdbc:postgresql://127.0.0.1:{port}/testdb"),
        format!("Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={port};Database=testdb"),
    ] {
        let d = descriptor(&bare, serde_json::json!({"SelectQuery": "SELECT n FROM t"}));
        let mut s = open_source(registry.clone(), d, None)
            .await
            .unwrap_or_else(|e| panic!("{bare}: {e}"));
        assert_eq!(
            values(read_all(&mut *s, 10).await),
            [record(&[("n", Value::Int(1))])]
        );
    }
    // Another database on that host has no credential: no password, refused.
    let d = descriptor(
        &format!("jdbc:postgresql://127.0.0.1:{port}/postgres?user=tester"),
        serde_json::json!({"SelectQuery": "SELECT 1"}),
    );
    let e = open_source(registry, d, None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("authentication failed"), "{e}");
}
