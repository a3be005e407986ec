//! The SQL source and sink pass the conformance kit against PostgreSQL, MariaDB and SQLite.
//!
//! A source's stream is a table of `(pos, n, text)` rows read by `SELECT n, text ... ORDER BY
//! pos`: each JSON message of the kit is a row of its fields; a message that is not JSON is
//! a row whose value cannot become a record's (in SQLite text that is not UTF-8; in
//! PostgreSQL, which never sends such text, a JSON number beyond a float's range), which
//! must come out as an encoding rejection in its place. MariaDB cannot hold such a row in
//! that table: there the check fails as expected, and `mariadb.rs` tests its own kind of
//! undecodable value. A sink's destination is a table of `(id, n, text)`, read back in `id` order; a
//! broken destination is a table dropped after the sink opened. The source acknowledges
//! nothing (a statement has no position to commit), so the checks of resuming are skipped.

use async_trait::async_trait;
use endpoint_kit::{
    check_sink, check_source, Check, OpenOptions, SinkFixture, SinkTraits, SourceFixture,
    SourceTraits,
};
use runtime_core::{Error, RecordSink, RecordSource, Result, Value};
use sqlx::{AssertSqlSafe, Executor};

use crate::support::{open_source, Client, Db, Server};

struct Fixture<'a>(&'a Db);

fn fixture_error(e: impl std::fmt::Display) -> Error {
    Error::endpoint("fixture", e.to_string())
}

impl Fixture<'_> {
    fn text_type(&self) -> &'static str {
        match self.0.server {
            Server::Maria(_) => "longtext",
            _ => "text",
        }
    }

    /// The type of the source table's `text` column. PostgreSQL never sends text that is not
    /// UTF-8 (it checks on the way out), so there the column is `json`: the kit's texts are
    /// JSON strings, and a message that is not JSON is the JSON number 1e999, which
    /// PostgreSQL keeps and no record can hold (beyond a 64-bit float).
    fn source_text_type(&self) -> &'static str {
        match self.0.server {
            Server::Pg(..) => "json",
            _ => self.text_type(),
        }
    }

    async fn insert(&self, c: &mut Client, table: &str, pos: i64, message: &[u8]) -> Result<()> {
        let fields = serde_json::from_slice::<serde_json::Value>(message).ok();
        let (n, text) = match &fields {
            Some(v) => (
                v.get("n").and_then(serde_json::Value::as_i64),
                v.get("text")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
            ),
            None => (None, None),
        };
        // Not JSON: the row's text holds a byte that is not UTF-8, then the message.
        let bad: Vec<u8> = [&[0xffu8][..], message].concat();
        let done = match (c, text) {
            (Client::Pg(c), Some(text)) => sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {table} (pos, n, text) VALUES ($1, $2, to_json($3::text))"
            )))
            .bind(pos)
            .bind(n)
            .bind(text)
            .execute(c)
            .await
            .map(|_| ()),
            (Client::Pg(c), None) => sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {table} (pos, n, text) VALUES ($1, NULL, '1e999'::json)"
            )))
            .bind(pos)
            .execute(c)
            .await
            .map(|_| ()),
            (Client::My(c), Some(text)) => sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {table} (pos, n, text) VALUES (?, ?, ?)"
            )))
            .bind(pos)
            .bind(n)
            .bind(text)
            .execute(c)
            .await
            .map(|_| ()),
            // Never read: MariaDB converts what it cannot hold as utf8mb4 (see below).
            (Client::My(c), None) => sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {table} (pos, n, text) VALUES (?, NULL, ?)"
            )))
            .bind(pos)
            .bind(bad)
            .execute(c)
            .await
            .map(|_| ()),
            (Client::Lite(c), text) => {
                let q = sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {table} (pos, n, text) VALUES (?, ?, CAST(? AS TEXT))"
                )))
                .bind(pos)
                .bind(n);
                let q = match text {
                    Some(t) => q.bind(t.into_bytes()),
                    None => q.bind(bad),
                };
                q.execute(c).await.map(|_| ())
            }
        };
        done.map_err(fixture_error)
    }
}

#[async_trait]
impl SourceFixture for Fixture<'_> {
    type Stream = String;

    fn traits(&self) -> SourceTraits {
        SourceTraits {
            ends: true,
            resumes: false,
        }
    }

    async fn create(&self, messages: &[Vec<u8>]) -> Result<String> {
        let table = self.0.table("kit_in");
        let mut c = self.0.client().await;
        c.exec(&format!(
            "CREATE TABLE {table} (pos integer PRIMARY KEY, n bigint, text {})",
            self.source_text_type()
        ))
        .await;
        if let Client::My(my) = &mut c {
            // Bytes that are not utf8mb4 become '?' rather than an error.
            my.execute("SET SESSION sql_mode = ''")
                .await
                .map_err(fixture_error)?;
        }
        for (i, m) in messages.iter().enumerate() {
            self.insert(&mut c, &table, i as i64 + 1, m).await?;
        }
        Ok(table)
    }

    async fn open(&self, table: &String, options: &OpenOptions) -> Result<Box<dyn RecordSource>> {
        let d = self.0.descriptor(serde_json::json!({
            "SelectQuery": format!("SELECT n, text FROM {table} ORDER BY pos")
        }));
        let registry = endpoint_sql::register(endpoints::Registry::default(), Default::default());
        open_source(registry, d, Some(options.max_record_bytes)).await
    }
}

#[async_trait]
impl SinkFixture for Fixture<'_> {
    type Destination = String;

    fn traits(&self) -> SinkTraits {
        SinkTraits {
            keeps: true,
            breaks: true,
        }
    }

    async fn create(&self) -> Result<String> {
        let table = self.0.table("kit_out");
        let id = match self.0.server {
            Server::Pg(..) => "id bigserial PRIMARY KEY",
            Server::Maria(_) => "id bigint AUTO_INCREMENT PRIMARY KEY",
            Server::Lite(_) => "id INTEGER PRIMARY KEY AUTOINCREMENT",
        };
        self.0
            .exec(&format!(
                "CREATE TABLE {table} ({id}, n bigint, text {})",
                self.text_type()
            ))
            .await;
        Ok(table)
    }

    async fn open(&self, table: &String) -> Result<Box<dyn RecordSink>> {
        self.0.sink(table).await
    }

    async fn read_back(&self, table: &String) -> Result<Vec<Value>> {
        Ok(self.0.n_text(table).await)
    }

    async fn open_broken(&self) -> Result<Box<dyn RecordSink>> {
        let table = SinkFixture::create(self).await?;
        let sink = self.0.sink(&table).await?;
        self.0.exec(&format!("DROP TABLE {table}")).await;
        Ok(sink)
    }
}

/// Runs the kit's source and sink checks against `db`; the source must pass every check
/// but `unreachable` (those the fixture cannot set up, which fail as the kit says).
async fn conforms(db: &Db, unreachable: &[Check]) {
    let fixture = Fixture(db);
    match check_source(&fixture).await {
        Ok(report) => {
            assert!(unreachable.is_empty(), "{report}");
            let skipped: Vec<Check> = report.skipped.iter().map(|(c, _)| *c).collect();
            assert_eq!(
                skipped,
                [
                    Check::AcksOnlyAfterFlush,
                    Check::NoAckForFailedWrite,
                    Check::RestartResumes
                ],
                "{report}"
            );
        }
        Err(endpoint_kit::Error::Failed { failures }) => {
            let failed: Vec<Check> = failures.iter().map(|f| f.check).collect();
            assert_eq!(failed, unreachable, "{}: {failures:#?}", db.store());
        }
        Err(e) => panic!("{}: {e}", db.store()),
    }
    let report = check_sink(&fixture)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", db.store()));
    let skipped: Vec<Check> = report.skipped.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        skipped,
        [Check::UndecodableBytes, Check::RestartResumes],
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_source_and_sink_conform() {
    conforms(&Db::postgres(), &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_source_and_sink_conform() {
    // MariaDB converts text to the connection's character set (utf8mb4) on the way out, so
    // no row of the kit's (n, text) table can fail to decode: its undecodable values are
    // dates no calendar has, tested in `mariadb.rs`.
    conforms(&Db::mariadb(), &[Check::UndecodableBytes]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_source_and_sink_conform() {
    conforms(&Db::sqlite(), &[]).await;
}
