//! SQL databases as endpoints of the model runtime: PostgreSQL, MySQL/MariaDB and SQLite
//! (bundled), through `sqlx` on tokio with rustls.
//!
//! A program adds it to its registry:
//!
//! ```no_run
//! let registry = endpoint_sql::register(endpoints::Registry::default(), Default::default());
//! ```
//!
//! and a descriptor names it by FastScore's `ODBC` transport: `ConnectionString` (a JDBC URL
//! as ModelOp sends it, a `postgresql://`, `mysql://` or `sqlite:` URL, or an ODBC-style
//! `Driver=...;Server=...` string: `endpoints::sql`), `SelectQuery` for an input,
//! `InsertIntoTable` (and `OutputFields`) for an output. A user or password the string lacks
//! comes from the registry's credential for its host and database.
//!
//! - The source ([`SqlSource`]) streams the statement's rows as records (a map of column to
//!   value each), numbered from 1, and ends after the last one.
//! - The sink ([`SqlSink`]) inserts records into the table in transactions: `COPY` for
//!   PostgreSQL, multi-row `INSERT`s for MySQL and SQLite; a row the table refuses is a
//!   rejected record with the database's message, `flush` commits.
//!
//! Opening an endpoint connects once to check what can be checked before any record moves
//! (the server and credentials, the statement and its column types, the table and its
//! columns); the endpoint connects again when it first reads or writes, on the runtime that
//! drives it. Types, transactions and errors: `docs/data.md`.
//!
//! Passwords never show: `describe()` names the store by its driver, host, port and
//! database (and the table or the statement), errors scrub the password, and [`mask`] hides
//! it in a connection string for anything that shows one.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use endpoints::descriptor::{OdbcTransport, SkipToRecord, Transport, TransportType};
use endpoints::{OpenRequest, Opener, Registry};
use runtime_core::{Error, RecordSink, RecordSource, Result};

mod connect;
mod error;
mod mysql;
mod pg;
mod sink;
mod source;
mod sqlite;
mod time;
mod types;

/// A connection string (any form) with its password hidden: `endpoints::redact`.
pub use endpoints::redact as mask;
pub use endpoints::sql::{SqlTarget, MASK};
pub use sink::SqlSink;
pub use source::SqlSource;

use connect::{Conn, Target};
use error::Failure;
use source::Col;

/// How long connecting may take when the connection string says nothing.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of every SQL endpoint an engine opens.
#[derive(Clone, Debug)]
pub struct SqlSettings {
    /// How long connecting may take (a string's `connect_timeout` or `connectTimeout` wins).
    pub connect_timeout: Duration,
    /// The name the engine's connections give PostgreSQL (`application_name`).
    pub application_name: String,
}

impl Default for SqlSettings {
    fn default() -> Self {
        SqlSettings {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            application_name: "model-runtime".to_owned(),
        }
    }
}

/// Adds the SQL transport (`ODBC`) to `registry`.
pub fn register(registry: Registry, settings: SqlSettings) -> Registry {
    registry.register(TransportType::Odbc, Arc::new(Sql::new(settings)))
}

/// Opens `ODBC` descriptors.
pub struct Sql {
    settings: SqlSettings,
}

impl Sql {
    pub fn new(settings: SqlSettings) -> Sql {
        Sql { settings }
    }
}

fn transport<'a>(req: &OpenRequest<'a>) -> Result<&'a OdbcTransport> {
    match &req.descriptor.transport {
        Transport::Odbc(o) => Ok(o),
        other => Err(Error::descriptor(
            "Transport.Type",
            format!("is {}, not ODBC", other.transport_type()),
        )),
    }
}

/// A statement shortened for a name: its words, 60 characters at most.
fn short(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let one = words.join(" ");
    match one.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &one[..i]),
        None => one,
    }
}

impl Opener for Sql {
    fn open_source(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSource>> {
        let t = transport(req)?;
        let query = t.select_query.clone().ok_or_else(|| {
            Error::descriptor(
                "Transport.SelectQuery",
                "an ODBC input needs the query whose rows it reads",
            )
        })?;
        let target = Target::resolve(&t.connection_string, req.credential, &self.settings)?;
        let name = format!("{} query \"{}\"", target.store, short(&query));
        let skip = match req.descriptor.skip_to_record {
            None => 0,
            Some(SkipToRecord::Index(n)) => n,
            Some(_) => {
                return Err(Error::descriptor(
                    "SkipToRecord",
                    "earliest and latest are Kafka's: an SQL input takes a number of rows",
                ))
            }
        };
        let (probe_target, probe_name, probe_query) = (target.clone(), name.clone(), query.clone());
        blocking(&name, async move {
            bounded(
                &probe_target,
                &probe_name,
                check_statement(&probe_target, &probe_name, &probe_query),
            )
            .await
        })?;
        Ok(Box::new(SqlSource::new(
            name,
            target,
            query,
            req.codec.max_record_bytes,
            req.descriptor.looping,
            skip,
        )))
    }

    fn open_sink(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSink>> {
        let t = transport(req)?;
        let table = t.insert_into_table.clone().ok_or_else(|| {
            Error::descriptor(
                "Transport.InsertIntoTable",
                "an ODBC output needs the table it inserts into",
            )
        })?;
        types::check_table(&table).map_err(|why| {
            Error::descriptor(
                "Transport.InsertIntoTable",
                format!("'{table}' does not name a table: {why}"),
            )
        })?;
        let target = Target::resolve(&t.connection_string, req.credential, &self.settings)?;
        let name = format!("{} table {table}", target.store);
        let (probe_target, probe_name, probe_table) = (target.clone(), name.clone(), table.clone());
        let (columns, kinds) = blocking(&name, async move {
            bounded(
                &probe_target,
                &probe_name,
                table_columns(&probe_target, &probe_name, &probe_table),
            )
            .await
        })?;
        let fields = types::Fields::new(t.output_fields.as_deref(), &columns)
            .map_err(|why| Error::descriptor("Transport.OutputFields", why))?;
        Ok(Box::new(SqlSink::new(
            name, target, table, columns, kinds, fields,
        )))
    }
}

/// Runs `work` to its end on a thread and runtime of its own: openers are called where
/// blocking is allowed (before a job's runtime starts, or on a blocking thread), and a
/// connection made here is not kept (it belongs to this runtime).
fn blocking<T: Send + 'static>(
    name: &str,
    work: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let thread = std::thread::Builder::new()
        .name("sql-open".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("cannot start a runtime to reach the database", e))?;
            runtime.block_on(work)
        })
        .map_err(|e| Error::io("cannot start a thread to reach the database", e))?;
    thread
        .join()
        .map_err(|_| Error::endpoint(name, "checking the database failed (the thread panicked)"))?
}

/// `check` within twice the connect timeout: a server that takes the connection but never
/// answers does not hold the opening forever.
async fn bounded<T>(
    target: &Target,
    name: &str,
    check: impl Future<Output = Result<T>>,
) -> Result<T> {
    let limit = target.connect_timeout() * 2;
    match tokio::time::timeout(limit, check).await {
        Ok(done) => done,
        Err(_) => Err(Error::unavailable(
            name,
            format!(
                "the database server did not answer within {} s",
                limit.as_secs_f64()
            ),
            None,
        )),
    }
}

/// Connects and prepares `query`: the server, the credentials and the statement are
/// right, and every column is of a type this engine reads.
async fn check_statement(target: &Target, name: &str, query: &str) -> Result<()> {
    let mut conn = target.connect(name).await?;
    let checked = describe(&mut conn, query).await;
    conn.close().await;
    let columns = checked.map_err(|e| error::convert(name, target, Failure::Describe, e))?;
    if let Some(col) = columns.iter().find(|c| !c.kind) {
        return Err(Error::endpoint(name, source::unknown_type(col)));
    }
    Ok(())
}

/// The columns of `sql`'s result, with whether this engine reads each.
async fn describe(conn: &mut Conn, sql: &str) -> std::result::Result<Vec<Col<bool>>, sqlx::Error> {
    use sqlx::{Executor, SqlSafeStr, Statement};
    let sql = sqlx::AssertSqlSafe(sql.to_owned()).into_sql_str();
    Ok(match conn {
        Conn::Pg(c) => described(c.prepare(sql).await?.columns(), |t| {
            pg::PgKind::of(t) != pg::PgKind::Other
        }),
        Conn::MySql(c) => described(c.prepare(sql).await?.columns(), |t| {
            mysql::MyKind::of(t) != mysql::MyKind::Other
        }),
        Conn::Sqlite(c) => described(c.prepare(sql).await?.columns(), |_| true),
    })
}

/// A prepared statement's columns: name, type name and whether `reads` takes the type.
fn described<C: sqlx::Column>(
    columns: &[C],
    reads: impl Fn(&<C::Database as sqlx::Database>::TypeInfo) -> bool,
) -> Vec<Col<bool>> {
    use sqlx::TypeInfo;
    columns
        .iter()
        .map(|c| Col {
            name: c.name().to_owned(),
            type_name: c.type_info().name().to_owned(),
            kind: reads(c.type_info()),
        })
        .collect()
}

/// The table's columns and how each is written; a table that does not exist (or cannot be
/// read) is refused now, before any record is written.
async fn table_columns(
    target: &Target,
    name: &str,
    table: &str,
) -> Result<(Vec<String>, sink::Kinds)> {
    use sqlx::{Column, Executor, SqlSafeStr, Statement};
    let mut conn = target.connect(name).await?;
    let sql = sqlx::AssertSqlSafe(format!("SELECT * FROM {table} WHERE 1 = 0")).into_sql_str();
    let found = match &mut conn {
        Conn::Pg(c) => c.prepare(sql).await.map(|s| {
            let names = s.columns().iter().map(|c| c.name().to_owned()).collect();
            let kinds = s
                .columns()
                .iter()
                .map(|c| pg::PgKind::of(c.type_info()))
                .collect();
            (names, sink::Kinds::Pg(kinds))
        }),
        Conn::MySql(c) => c.prepare(sql).await.map(|s| {
            let names = s.columns().iter().map(|c| c.name().to_owned()).collect();
            let kinds = s
                .columns()
                .iter()
                .map(|c| mysql::MyKind::of(c.type_info()))
                .collect();
            (names, sink::Kinds::MySql(kinds))
        }),
        Conn::Sqlite(c) => c.prepare(sql).await.map(|s| {
            let names = s.columns().iter().map(|c| c.name().to_owned()).collect();
            (names, sink::Kinds::Sqlite)
        }),
    };
    conn.close().await;
    let (columns, kinds): (Vec<String>, sink::Kinds) =
        found.map_err(|e| error::convert(name, target, Failure::Describe, e))?;
    if columns.is_empty() {
        return Err(Error::endpoint(name, "the table has no columns"));
    }
    Ok((columns, kinds))
}
