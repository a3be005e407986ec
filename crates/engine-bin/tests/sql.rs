//! SQL end to end: the real `engine` binary, a real Python model, and real databases (private
//! PostgreSQL and MariaDB servers started by the test, a SQLite file): `engine run` reads a
//! table through a statement and writes the model's outputs into another table, given ODBC
//! descriptors as JSON on the command line. Rows the output table refuses are counted as
//! rejected (the job's result FAILURE) while the others are committed; the password never
//! shows in what the engine prints.

mod common;

use std::path::Path;
use std::process::Output;

use serde_json::json;
use test_servers::{MariaDbServer, PostgresServer};

/// Each row `{"id": i, "x": x}` gives `{"id": i, "y": 2x}`.
const MODEL: &str = r#"# modelop.score
def action(d):
    yield {"id": d["id"], "y": d["x"] * 2}
"#;

fn odbc(connection_string: &str, field: &str, value: &str) -> String {
    json!({"Transport": {"Type": "ODBC", "ConnectionString": connection_string, field: value}})
        .to_string()
}

/// `engine run doubler.py --input IN --output OUT` in a folder holding the model.
fn run(dir: &Path, input: &str, output: &str) -> (Output, String) {
    std::fs::write(dir.join("doubler.py"), MODEL).unwrap();
    let out = std::process::Command::new(common::ENGINE)
        .args(["run", "doubler.py", "--input", input, "--output", output])
        .current_dir(dir)
        .env_remove("ENGINE_LOG")
        .output()
        .expect("engine runs");
    let err = common::text(&out.stderr);
    (out, err)
}

#[test]
fn engine_run_postgres_to_postgres() {
    let pg = PostgresServer::start();
    pg.psql(
        "CREATE TABLE readings (id int PRIMARY KEY, x float8);
         INSERT INTO readings SELECT g, g / 4.0 FROM generate_series(1, 5000) g;
         CREATE TABLE scores (id int PRIMARY KEY, y float8 NOT NULL CHECK (y <= 2500),
                              scored_at timestamptz DEFAULT now());
         GRANT ALL ON readings, scores TO tester;",
    );
    let dir = tempfile::tempdir().unwrap();
    let url = pg.jdbc_url();
    let input = odbc(
        &url,
        "SelectQuery",
        "SELECT id, x FROM readings ORDER BY id",
    );
    let output = odbc(&url, "InsertIntoTable", "scores");
    let (out, err) = run(dir.path(), &input, &output);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("records in: 5000, out: 5000"), "{err}");
    assert!(!err.contains(PostgresServer::PASSWORD), "{err}");
    assert_eq!(
        pg.psql("SELECT count(*), sum(y), count(scored_at) FROM scores")
            .trim(),
        format!(
            "5000|{}|5000",
            (1..=5000).map(|g| g as f64 / 2.0).sum::<f64>()
        )
    );

    // Rows the table refuses (y above 2500: the doubled ids above 4000) are rejected and
    // counted; the others are committed.
    pg.psql("TRUNCATE scores");
    pg.psql("UPDATE readings SET x = x * 2 WHERE id > 4000");
    let (out, err) = run(dir.path(), &input, &output);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("output slot 1: 1000 rejected"), "{err}");
    assert!(err.contains("violates check constraint"), "{err}");
    assert_eq!(pg.psql("SELECT count(*) FROM scores").trim(), "4000");

    // A missing table fails the job before the model runs, naming the store and table.
    let missing = odbc(&url, "InsertIntoTable", "nowhere");
    let (out, err) = run(dir.path(), &input, &missing);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "postgresql://127.0.0.1:{}/testdb table nowhere",
            pg.port()
        )) && err.contains("does not exist"),
        "{err}"
    );
    assert!(!err.contains(PostgresServer::PASSWORD), "{err}");
}

#[test]
fn engine_run_mariadb_to_mariadb() {
    let db = MariaDbServer::start();
    db.sql(
        "CREATE TABLE readings (id int PRIMARY KEY, x double);
         CREATE TABLE scores (id int PRIMARY KEY, y double NOT NULL);",
    );
    let values: Vec<String> = (1..=3000).map(|i| format!("({i}, {i}.5)")).collect();
    db.sql(&format!("INSERT INTO readings VALUES {}", values.join(",")));
    let dir = tempfile::tempdir().unwrap();
    let input = odbc(
        &db.jdbc_url(),
        "SelectQuery",
        "SELECT id, x FROM readings ORDER BY id",
    );
    // The output through an ODBC-style string.
    let odbc_style = format!(
        "Driver={{MariaDB ODBC 3.1 Driver}};Server=127.0.0.1;Port={};Database={};Uid={};Pwd={}",
        db.port(),
        MariaDbServer::DATABASE,
        MariaDbServer::USER,
        MariaDbServer::PASSWORD
    );
    let output = odbc(&odbc_style, "InsertIntoTable", "scores");
    let (out, err) = run(dir.path(), &input, &output);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("records in: 3000, out: 3000"), "{err}");
    assert!(!err.contains(MariaDbServer::PASSWORD), "{err}");
    let want: f64 = (1..=3000).map(|i| 2.0 * (i as f64 + 0.5)).sum();
    assert_eq!(
        db.sql("SELECT count(*), sum(y) FROM scores").trim(),
        format!("3000\t{want}")
    );
}

#[test]
fn engine_run_sqlite_to_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.db");
    let python = test_servers::python();
    let made = std::process::Command::new(&python)
        .arg("-c")
        .arg(format!(
            "import sqlite3; c = sqlite3.connect({path:?}); \
             c.execute('CREATE TABLE readings (id INTEGER PRIMARY KEY, x REAL)'); \
             c.execute('CREATE TABLE scores (id INTEGER PRIMARY KEY, y REAL NOT NULL)'); \
             c.executemany('INSERT INTO readings VALUES (?, ?)', [(i, i * 0.25) for i in range(1, 2001)]); \
             c.commit()",
            path = file.display().to_string()
        ))
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(made.status.success(), "{}", common::text(&made.stderr));
    let input = odbc(
        &format!("jdbc:sqlite:{}", file.display()),
        "SelectQuery",
        "SELECT id, x FROM readings ORDER BY id",
    );
    let output = odbc(
        &format!("sqlite://{}", file.display()),
        "InsertIntoTable",
        "scores",
    );
    let (out, err) = run(dir.path(), &input, &output);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("records in: 2000, out: 2000"), "{err}");
    let check = std::process::Command::new(&python)
        .arg("-c")
        .arg(format!(
            "import sqlite3; print(sqlite3.connect({:?}).execute('SELECT count(*), sum(y) FROM scores').fetchone())",
            file.display().to_string()
        ))
        .output()
        .unwrap();
    let want: f64 = (1..=2000).map(|i| i as f64 * 0.5).sum();
    assert_eq!(
        common::text(&check.stdout).trim(),
        format!("(2000, {want:?})")
    );
}
