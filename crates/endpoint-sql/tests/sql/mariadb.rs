//! MariaDB: its types read and written back, an impossible date rejected where it stands, rows the
//! table refuses rejected with the server's message while the others commit, and the errors
//! of a missing table and a wrong password.

use runtime_core::{ReadItem, RejectionKind, Value};

use crate::support::{descriptor, open_source, out_records, read_all, record, values, Db};

const TYPES: &str = "CREATE TABLE every_type (
    id int PRIMARY KEY, b boolean, ti tinyint, si smallint, mi mediumint, i int, bi bigint,
    ubi bigint unsigned, dec_whole decimal(30, 0), dec_scaled decimal(10, 3), f float, d double,
    c char(3), vc varchar(20), t text, lt longtext, en enum('sad', 'happy'), st set('a', 'b'),
    bin binary(3), vb varbinary(10), bl blob, j json, dt date, tm time, dtm datetime(6),
    ts timestamp(6) NULL, y year, bin_text varchar(10) COLLATE utf8mb4_bin)";

const ROW: &str = "INSERT INTO every_type VALUES (
    1, true, -7, 300, 70000, 123456, 9007199254740993, 18446744073709551615,
    123456789012345678901234567890, 3.250, 0.5, 2.5e-10,
    'ab', 'vc', 'tab\there, line\nnew, é', 'long', 'happy', 'a,b',
    x'00ff10', x'0102', x'03', '{\"a\": [1, 2.5, null]}', '2024-02-29', '-01:02:03',
    '2024-05-01 12:30:00.25', '2024-05-01 12:30:00', 2024, 'BinText')";

fn every_value() -> Value {
    record(&[
        ("id", Value::Int(1)),
        ("b", Value::Bool(true)),
        ("ti", Value::Int(-7)),
        ("si", Value::Int(300)),
        ("mi", Value::Int(70000)),
        ("i", Value::Int(123456)),
        ("bi", Value::Int(9007199254740993)),
        ("ubi", Value::Int(18446744073709551615)),
        ("dec_whole", Value::Int(123456789012345678901234567890)),
        ("dec_scaled", Value::Float(3.25)),
        ("f", Value::Float(0.5)),
        ("d", Value::Float(2.5e-10)),
        ("c", Value::from("ab")),
        ("vc", Value::from("vc")),
        ("t", Value::from("tab\there, line\nnew, é")),
        ("lt", Value::from("long")),
        ("en", Value::from("happy")),
        ("st", Value::from("a,b")),
        ("bin", Value::Bytes(vec![0, 0xff, 0x10])),
        ("vb", Value::Bytes(vec![1, 2])),
        ("bl", Value::Bytes(vec![3])),
        // MariaDB keeps JSON as text (LONGTEXT): it reads as the text.
        ("j", Value::from("{\"a\": [1, 2.5, null]}")),
        ("dt", Value::from("2024-02-29")),
        ("tm", Value::from("-01:02:03")),
        ("dtm", Value::from("2024-05-01T12:30:00.250")),
        ("ts", Value::from("2024-05-01T12:30:00Z")),
        ("y", Value::Int(2024)),
        ("bin_text", Value::from("BinText")),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_types_dates_constraints_and_errors() {
    let db = Db::mariadb();

    // Every type read, and written back.
    db.exec(TYPES).await;
    db.exec(ROW).await;
    db.exec("INSERT INTO every_type (id) VALUES (2)").await;
    db.exec("CREATE TABLE every_type_out LIKE every_type").await;
    let mut source = db
        .source("SELECT * FROM every_type ORDER BY id")
        .await
        .unwrap();
    let rows = values(read_all(&mut *source, 10).await);
    let want = every_value();
    for ((k, got), (_, w)) in rows[0]
        .as_map()
        .unwrap()
        .iter()
        .zip(want.as_map().unwrap().iter())
    {
        assert_eq!(got, w, "column {k:?}");
    }
    assert_eq!(rows[0], want);
    assert!(rows[1]
        .as_map()
        .unwrap()
        .iter()
        .skip(1)
        .all(|(_, v)| *v == Value::Null));
    let mut sink = db.sink("every_type_out").await.unwrap();
    let refused = sink.write_batch(out_records(rows)).await.unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(sink.finish().await.unwrap().records, 2);
    let differ = db
        .count(
            "SELECT count(*) FROM (SELECT * FROM every_type EXCEPT SELECT * FROM every_type_out) x",
        )
        .await;
    assert_eq!(differ, 0);

    // A date no calendar has is a rejection in its place, the rows around it are read; a
    // zero date reads as null (the driver's rule, as Connector/J's convertToNull).
    db.exec("CREATE TABLE dates (id int, d date)").await;
    {
        let mut c = db.client().await;
        c.exec("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'").await;
        c.exec("INSERT INTO dates VALUES (1, '2024-01-02'), (2, '2024-02-30'), (3, '0000-00-00')")
            .await;
    }
    let mut s = db
        .source("SELECT id, d FROM dates ORDER BY id")
        .await
        .unwrap();
    let items = read_all(&mut *s, 10).await;
    match items.as_slice() {
        [ReadItem::Record(a), ReadItem::Rejected(z), ReadItem::Record(c)] => {
            assert_eq!(a.value.get("d"), Some(&Value::from("2024-01-02")));
            assert_eq!((z.kind, z.position.record), (RejectionKind::Encoding, 2));
            assert!(z.reason.contains("column 'd' (DATE)"), "{}", z.reason);
            assert_eq!(c.value.get("d"), Some(&Value::Null));
        }
        other => panic!("{other:?}"),
    }

    // Rows the table refuses.
    db.exec(
        "CREATE TABLE scores (id int PRIMARY KEY, score double NOT NULL CHECK (score >= 0),
                              at datetime NULL, n int)",
    )
    .await;
    let batch = vec![
        record(&[
            ("id", Value::Int(1)),
            ("score", Value::Float(0.5)),
            ("at", Value::from("2024-05-01T14:30:00+02:00")),
            ("n", Value::Null),
        ]),
        record(&[("id", Value::Int(2)), ("score", Value::Null)]),
        record(&[("id", Value::Int(3)), ("score", Value::Float(-1.0))]),
        record(&[("id", Value::Int(1)), ("score", Value::Float(0.7))]),
        record(&[
            ("id", Value::Int(5)),
            ("score", Value::Float(1.0)),
            ("n", Value::Float(2.5)),
        ]),
        record(&[
            ("id", Value::Int(6)),
            ("score", Value::Float(1.0)),
            ("n", Value::Int(1 << 40)),
        ]),
        record(&[("id", Value::Int(7)), ("score", Value::Float(2.0))]),
    ];
    let mut sink = db.sink("scores").await.unwrap();
    let refused = sink.write_batch(out_records(batch)).await.unwrap();
    let at: Vec<u64> = refused.iter().map(|r| r.position.record).collect();
    assert_eq!(at, [2, 3, 4, 5, 6], "{refused:#?}");
    for (r, says) in refused.iter().zip([
        "cannot be null",
        "CONSTRAINT",
        "Duplicate entry",
        "2.5 is not an integer",
        "Out of range",
    ]) {
        assert!(r.reason.contains(says), "{} (expected: {says})", r.reason);
    }
    assert_eq!(db.count("SELECT count(*) FROM scores").await, 0);
    sink.flush().await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM scores").await, 2);
    assert_eq!(
        db.count("SELECT count(*) FROM scores WHERE at = '2024-05-01 12:30:00'")
            .await,
        1
    );
    sink.finish().await.unwrap();

    // Errors.
    let e = db.sink("nowhere").await.err().unwrap().to_string();
    assert!(
        e.contains(&db.store()) && e.contains("does not exist") && e.contains("1146"),
        "{e}"
    );
    let port = match &db.server {
        crate::support::Server::Maria(m) => m.port(),
        _ => unreachable!(),
    };
    let wrong = format!("jdbc:mysql://127.0.0.1:{port}/testdb?user=tester&password=hunter2-wrong");
    let d = descriptor(&wrong, serde_json::json!({"SelectQuery": "SELECT 1"}));
    let registry = endpoint_sql::register(endpoints::Registry::default(), Default::default());
    let e = open_source(registry, d, None).await.err().unwrap();
    let text = e.to_string();
    assert!(!e.is_retriable(), "{text}");
    assert!(
        text.contains("authentication failed for user 'tester'") && text.contains(&db.store()),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}
