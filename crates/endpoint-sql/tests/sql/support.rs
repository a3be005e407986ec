//! The databases the tests run against (private servers started here, a SQLite file in a
//! temporary folder), a client of their own to set up and read back tables, and the
//! endpoints opened as the engine opens them: from a descriptor, through a registry.

use std::sync::atomic::{AtomicUsize, Ordering};

use endpoints::{Credentials, Registry, StreamDescriptor};
use runtime_core::{ReadItem, RecordSink, RecordSource, Value};
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};
use test_servers::{MariaDbServer, PostgresServer};

pub enum Server {
    /// The cluster and the database the tests use in it.
    Pg(PostgresServer, String),
    Maria(MariaDbServer),
    Lite(tempfile::TempDir),
}

/// A database to test against.
pub struct Db {
    pub server: Server,
    tables: AtomicUsize,
}

pub enum Client {
    Pg(PgConnection),
    My(MySqlConnection),
    Lite(SqliteConnection),
}

impl Db {
    pub fn postgres() -> Db {
        let pg = PostgresServer::start();
        Db::of(Server::Pg(pg, PostgresServer::DATABASE.to_owned()))
    }

    pub fn mariadb() -> Db {
        Db::of(Server::Maria(MariaDbServer::start()))
    }

    pub fn sqlite() -> Db {
        Db::of(Server::Lite(
            tempfile::tempdir().expect("a temporary folder"),
        ))
    }

    fn of(server: Server) -> Db {
        Db {
            server,
            tables: AtomicUsize::new(0),
        }
    }

    /// A table name no other test uses.
    pub fn table(&self, prefix: &str) -> String {
        format!("{prefix}_{}", self.tables.fetch_add(1, Ordering::SeqCst))
    }

    /// The connection string the endpoints get (JDBC URLs, as ModelOp sends them).
    pub fn connection_string(&self) -> String {
        match &self.server {
            Server::Pg(pg, db) => format!(
                "jdbc:postgresql://127.0.0.1:{}/{db}?user={}&password={}",
                pg.port(),
                PostgresServer::USER,
                PostgresServer::PASSWORD
            ),
            Server::Maria(m) => m.jdbc_url(),
            Server::Lite(dir) => format!("jdbc:sqlite:{}", dir.path().join("test.db").display()),
        }
    }

    /// The store's name as the endpoints give it.
    pub fn store(&self) -> String {
        match &self.server {
            Server::Pg(pg, db) => format!("postgresql://127.0.0.1:{}/{db}", pg.port()),
            Server::Maria(m) => {
                format!("mysql://127.0.0.1:{}/{}", m.port(), MariaDbServer::DATABASE)
            }
            Server::Lite(dir) => format!("sqlite:{}", dir.path().join("test.db").display()),
        }
    }

    pub fn password(&self) -> &'static str {
        match &self.server {
            Server::Pg(..) => PostgresServer::PASSWORD,
            Server::Maria(_) => MariaDbServer::PASSWORD,
            Server::Lite(_) => "no password",
        }
    }

    pub async fn client(&self) -> Client {
        match &self.server {
            Server::Pg(pg, db) => {
                let url = format!(
                    "postgresql://{}:{}@127.0.0.1:{}/{db}",
                    PostgresServer::USER,
                    PostgresServer::PASSWORD,
                    pg.port()
                );
                Client::Pg(PgConnection::connect(&url).await.expect("connect"))
            }
            Server::Maria(m) => {
                Client::My(MySqlConnection::connect(&m.url()).await.expect("connect"))
            }
            Server::Lite(dir) => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Client::Lite(SqliteConnection::connect(&url).await.expect("connect"))
            }
        }
    }

    /// Runs one statement.
    pub async fn exec(&self, sql: &str) {
        self.client().await.exec(sql).await;
    }

    /// `(n, text)` rows of `table` in `id` order: what a sink wrote, read back without the
    /// endpoint.
    pub async fn n_text(&self, table: &str) -> Vec<Value> {
        let sql = format!("SELECT n, text FROM {table} ORDER BY id");
        let mut c = self.client().await;
        type NText = (Option<i64>, Option<String>);
        let rows: Vec<NText> = match &mut c {
            Client::Pg(c) => {
                sqlx::query_as::<_, NText>(AssertSqlSafe(sql.clone()))
                    .fetch_all(c)
                    .await
            }
            Client::My(c) => {
                sqlx::query_as::<_, NText>(AssertSqlSafe(sql.clone()))
                    .fetch_all(c)
                    .await
            }
            Client::Lite(c) => {
                sqlx::query_as::<_, NText>(AssertSqlSafe(sql.clone()))
                    .fetch_all(c)
                    .await
            }
        }
        .expect("reading back");
        rows.into_iter()
            .map(|(n, text)| {
                let m: runtime_core::Map = [
                    ("n", n.map_or(Value::Null, Value::from)),
                    ("text", text.map_or(Value::Null, Value::from)),
                ]
                .into_iter()
                .collect();
                Value::Map(m)
            })
            .collect()
    }

    /// One integer a statement gives (a count).
    pub async fn count(&self, sql: &str) -> i64 {
        let mut c = self.client().await;
        match &mut c {
            Client::Pg(c) => sqlx::query(AssertSqlSafe(sql.to_owned()))
                .fetch_one(c)
                .await
                .expect(sql)
                .get::<i64, _>(0),
            Client::My(c) => sqlx::query(AssertSqlSafe(sql.to_owned()))
                .fetch_one(c)
                .await
                .expect(sql)
                .get::<i64, _>(0),
            Client::Lite(c) => sqlx::query(AssertSqlSafe(sql.to_owned()))
                .fetch_one(c)
                .await
                .expect(sql)
                .get::<i64, _>(0),
        }
    }

    fn registry(&self) -> Registry {
        endpoint_sql::register(Registry::default(), Default::default())
    }

    /// An ODBC descriptor on this database.
    pub fn descriptor(&self, fields: serde_json::Value) -> StreamDescriptor {
        descriptor(&self.connection_string(), fields)
    }

    /// Opens the rows of `query` as the engine does.
    pub async fn source(&self, query: &str) -> runtime_core::Result<Box<dyn RecordSource>> {
        let d = self.descriptor(serde_json::json!({ "SelectQuery": query }));
        open_source(self.registry(), d, None).await
    }

    /// Opens a sink into `table` as the engine does.
    pub async fn sink(&self, table: &str) -> runtime_core::Result<Box<dyn RecordSink>> {
        let d = self.descriptor(serde_json::json!({ "InsertIntoTable": table }));
        open_sink(self.registry(), d).await
    }
}

impl Client {
    pub async fn exec(&mut self, sql: &str) {
        let q = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()));
        let done = match self {
            Client::Pg(c) => c.execute(q).await.map(|_| ()),
            Client::My(c) => c.execute(q).await.map(|_| ()),
            Client::Lite(c) => c.execute(q).await.map(|_| ()),
        };
        if let Err(e) = done {
            panic!("{sql}: {e}");
        }
    }
}

/// An ODBC descriptor: `fields` are the transport's fields besides the connection string.
pub fn descriptor(connection_string: &str, fields: serde_json::Value) -> StreamDescriptor {
    let mut transport = serde_json::json!({"Type": "ODBC", "ConnectionString": connection_string});
    if let (Some(t), Some(f)) = (transport.as_object_mut(), fields.as_object()) {
        t.extend(f.clone());
    }
    let d = serde_json::json!({ "Transport": transport });
    StreamDescriptor::parse(&d.to_string()).expect("a descriptor")
}

pub fn registry_with(credentials: Credentials) -> Registry {
    endpoint_sql::register(Registry::default(), Default::default()).with_credentials(credentials)
}

/// Opens a source on the blocking pool, as the engine's service does.
pub async fn open_source(
    registry: Registry,
    d: StreamDescriptor,
    max_record_bytes: Option<usize>,
) -> runtime_core::Result<Box<dyn RecordSource>> {
    tokio::task::spawn_blocking(move || {
        let mut codec = d.codec_config();
        if let Some(max) = max_record_bytes {
            codec.max_record_bytes = max;
        }
        registry.open_source(&d, &codec)
    })
    .await
    .expect("the opening thread")
}

pub async fn open_sink(
    registry: Registry,
    d: StreamDescriptor,
) -> runtime_core::Result<Box<dyn RecordSink>> {
    tokio::task::spawn_blocking(move || registry.open_sink(&d, &d.codec_config()))
        .await
        .expect("the opening thread")
}

/// Every item of a source, read in batches of `batch`.
pub async fn read_all(source: &mut dyn RecordSource, batch: usize) -> Vec<ReadItem> {
    let mut items = Vec::new();
    while let Some(b) = source.read_batch(batch).await.expect("read_batch") {
        items.extend(b);
    }
    items
}

/// The values of the records read, refusing rejections.
pub fn values(items: Vec<ReadItem>) -> Vec<Value> {
    items
        .into_iter()
        .map(|i| match i {
            ReadItem::Record(r) => r.value,
            ReadItem::Rejected(r) => panic!("rejected: {r}"),
        })
        .collect()
}

/// A map record from its fields.
pub fn record(fields: &[(&str, Value)]) -> Value {
    Value::Map(fields.iter().map(|(k, v)| (*k, v.clone())).collect())
}

/// Records numbered from 1, as a pipeline writes them.
pub fn out_records(values: Vec<Value>) -> Vec<runtime_core::OutRecord> {
    values
        .into_iter()
        .zip(1..)
        .map(|(value, n)| runtime_core::OutRecord {
            value,
            position: runtime_core::Position::record(n),
            meta: None,
        })
        .collect()
}
