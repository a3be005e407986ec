//! The SQL sink: records inserted into a table, in transactions.
//!
//! Each `write_batch` sends its rows inside the open transaction (one begun by the first
//! write after a commit): PostgreSQL with `COPY ... FROM STDIN` under a savepoint, MySQL and
//! SQLite with multi-row `INSERT`s of bound parameters (each statement atomic). A batch the
//! server refuses for a row's sake (a constraint, a type, a value out of range) is sent
//! again row by row: the rows refused come back as rejections at their positions with the
//! server's message, the others stay in the transaction. `flush` commits (the rows are then
//! durable) and `finish` commits and closes; a sink dropped or failed before its commit
//! leaves nothing (the server rolls the transaction back when the connection goes).
//!
//! Memory is one batch: rows are encoded (COPY text or parameters) from the records of the
//! batch being written and sent with it.

use std::sync::Arc;

use async_trait::async_trait;
use runtime_core::{
    Error, OutRecord, Position, RecordSink, Rejection, RejectionKind, Result, SinkReport,
};
use sqlx::{AssertSqlSafe, Executor};

use crate::connect::{Conn, Target};
use crate::error::{self, Failure};
use crate::mysql::MyKind;
use crate::pg::{self, PgKind};
use crate::types::{Fields, Param};

/// Parameters of one `INSERT`, at most (SQLite's limit is 32,766; MySQL's 65,535).
const MAX_PARAMS: usize = 30_000;
/// Bytes of parameters of one `INSERT`, about (MariaDB's default packet is 16 MiB).
const MAX_STATEMENT_BYTES: usize = 4 << 20;

/// The table's columns, how each is written.
#[derive(Clone, Debug)]
pub(crate) enum Kinds {
    Pg(Vec<PgKind>),
    MySql(Vec<MyKind>),
    Sqlite,
}

/// Rows inserted into a table.
pub struct SqlSink {
    name: String,
    target: Arc<Target>,
    table: String,
    /// The table's columns, in its order.
    columns: Vec<String>,
    kinds: Kinds,
    fields: Fields,
    conn: Option<Conn>,
    /// PostgreSQL's transaction and savepoint.
    pg_tx: pg::Tx,
    /// A MySQL or SQLite transaction is open.
    in_tx: bool,
    /// Why the sink cannot go on, once a write or commit failed.
    broken: Option<String>,
    /// Rows written since the last commit.
    uncommitted: u64,
    committed: u64,
}

impl SqlSink {
    pub(crate) fn new(
        name: String,
        target: Arc<Target>,
        table: String,
        columns: Vec<String>,
        kinds: Kinds,
        fields: Fields,
    ) -> SqlSink {
        SqlSink {
            name,
            target,
            table,
            columns,
            kinds,
            fields,
            conn: None,
            pg_tx: pg::Tx::default(),
            in_tx: false,
            broken: None,
            uncommitted: 0,
            committed: 0,
        }
    }

    fn check(&self) -> Result<()> {
        match &self.broken {
            Some(reason) => Err(Error::endpoint(
                &self.name,
                format!("the sink failed before: {reason}"),
            )),
            None => Ok(()),
        }
    }

    /// Marks the sink failed with `e`, and drops the connection (its transaction rolls back).
    fn fail(&mut self, e: Error) -> Error {
        self.broken = Some(e.to_string());
        self.conn = None;
        self.uncommitted = 0;
        e
    }

    /// The connection, taken out (put it back with `self.conn = Some(..)`); connects the
    /// first time.
    async fn take_connection(&mut self) -> Result<Conn> {
        match self.conn.take() {
            Some(c) => Ok(c),
            None => self.target.connect(&self.name).await,
        }
    }

    fn rejection(position: Position, reason: String) -> Rejection {
        Rejection::new(RejectionKind::Encoding, position, reason)
    }

    /// The names of the columns written (once the first record fixed them).
    fn chosen_names(&self) -> Vec<&str> {
        self.fields
            .chosen()
            .unwrap_or_default()
            .iter()
            .map(|&i| self.columns[i].as_str())
            .collect()
    }

    async fn write_pg(
        &mut self,
        batch: Vec<OutRecord>,
        rejections: &mut Vec<Rejection>,
    ) -> Result<u64> {
        let Kinds::Pg(kinds) = &self.kinds else {
            return Err(Error::endpoint(&self.name, "not a PostgreSQL table"));
        };
        let kinds = kinds.clone();
        let mut data = Vec::new();
        let mut ends = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        // The columns written, once a record fixed them.
        let mut cols: Vec<(&str, &PgKind)> = Vec::new();
        for rec in batch {
            let values = match self.fields.values(&rec.value, &self.columns) {
                Ok(v) => v,
                Err(reason) => {
                    rejections.push(Self::rejection(rec.position, reason));
                    continue;
                }
            };
            if cols.is_empty() {
                cols = self
                    .fields
                    .chosen()
                    .unwrap_or_default()
                    .iter()
                    .map(|&i| (self.columns[i].as_str(), &kinds[i]))
                    .collect();
            }
            match pg::copy_row(&mut data, &cols, &values) {
                Ok(()) => {
                    ends.push(data.len());
                    positions.push(rec.position);
                }
                Err(reason) => rejections.push(Self::rejection(rec.position, reason)),
            }
        }
        if ends.is_empty() {
            return Ok(0);
        }
        let statement = pg::copy_statement(&self.table, &self.chosen_names());
        let mut conn = self.take_connection().await?;
        let refused = match &mut conn {
            Conn::Pg(c) => pg::write(c, &mut self.pg_tx, &statement, &data, &ends).await,
            _ => return Err(Error::endpoint(&self.name, "not a PostgreSQL connection")),
        };
        self.conn = Some(conn);
        self.settle_refused(refused, positions, rejections)
    }

    /// Turns the rows the server refused into rejections; the count of rows kept.
    fn settle_refused(
        &mut self,
        refused: std::result::Result<Vec<(usize, sqlx::Error)>, sqlx::Error>,
        mut positions: Vec<Position>,
        rejections: &mut Vec<Rejection>,
    ) -> Result<u64> {
        let refused = match refused {
            Ok(r) => r,
            Err(e) => {
                let e = error::convert(&self.name, &self.target, Failure::Write, e);
                return Err(self.fail(e));
            }
        };
        let kept = (positions.len() - refused.len()) as u64;
        for (i, e) in refused {
            let reason = match &e {
                sqlx::Error::Database(db) => error::database_message(&self.target, db.as_ref()),
                other => self.target.scrub(&other.to_string()),
            };
            let position = std::mem::take(&mut positions[i]);
            rejections.push(Self::rejection(
                position,
                format!("the table refused the row: {reason}"),
            ));
        }
        Ok(kept)
    }

    async fn write_params(
        &mut self,
        batch: Vec<OutRecord>,
        rejections: &mut Vec<Rejection>,
    ) -> Result<u64> {
        let mut rows: Vec<Vec<Param>> = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        for rec in batch {
            let values = match self.fields.values(&rec.value, &self.columns) {
                Ok(v) => v,
                Err(reason) => {
                    rejections.push(Self::rejection(rec.position, reason));
                    continue;
                }
            };
            let chosen = self.fields.chosen().unwrap_or_default();
            let params: std::result::Result<Vec<Param>, String> = values
                .iter()
                .zip(chosen)
                .map(|(v, &i)| {
                    let p = match &self.kinds {
                        Kinds::MySql(k) => crate::mysql::param(k[i], v),
                        _ => crate::sqlite::param(v),
                    };
                    p.map_err(|e| format!("column '{}': {e}", self.columns[i]))
                })
                .collect();
            match params {
                Ok(p) => {
                    rows.push(p);
                    positions.push(rec.position);
                }
                Err(reason) => rejections.push(Self::rejection(rec.position, reason)),
            }
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let names = self.chosen_names();
        let quoted: Vec<String> = names
            .iter()
            .map(|n| match self.kinds {
                Kinds::MySql(_) => crate::mysql::quote(n),
                _ => pg::quote(n),
            })
            .collect();
        let prefix = format!("INSERT INTO {} ({}) VALUES ", self.table, quoted.join(", "));
        let begin = if self.in_tx { None } else { Some(()) };
        let mut conn = self.take_connection().await?;
        let refused = match &mut conn {
            Conn::MySql(c) => {
                insert::<sqlx::MySql>(
                    c,
                    begin,
                    "START TRANSACTION",
                    &prefix,
                    &rows,
                    crate::mysql::bind,
                )
                .await
            }
            Conn::Sqlite(c) => {
                insert::<sqlx::Sqlite>(c, begin, "BEGIN", &prefix, &rows, crate::sqlite::bind).await
            }
            Conn::Pg(_) => return Err(Error::endpoint(&self.name, "a PostgreSQL connection")),
        };
        self.conn = Some(conn);
        if refused.is_ok() {
            self.in_tx = true;
        }
        self.settle_refused(refused, positions, rejections)
    }
}

/// `VALUES` lists of `rows` (each of `width` parameters), in chunks within the parameter
/// and size limits; a chunk refused for a row's sake goes again row by row. Returns the rows
/// refused, with the server's error.
async fn insert<DB>(
    conn: &mut DB::Connection,
    begin: Option<()>,
    begin_sql: &'static str,
    prefix: &str,
    rows: &[Vec<Param>],
    bind: fn(&mut DB::Arguments, &Param) -> std::result::Result<(), sqlx::error::BoxDynError>,
) -> std::result::Result<Vec<(usize, sqlx::Error)>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    if begin.is_some() {
        conn.execute(sqlx::raw_sql(begin_sql)).await?;
    }
    let width = rows.first().map_or(1, Vec::len).max(1);
    let per_statement = (MAX_PARAMS / width).max(1);
    let mut refused = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        // As many rows as the limits allow, one at least.
        let mut end = start;
        let mut bytes = 0;
        while end < rows.len() && end - start < per_statement {
            let size: usize = rows[end].iter().map(Param::size).sum();
            if end > start && bytes + size > MAX_STATEMENT_BYTES {
                break;
            }
            bytes += size;
            end += 1;
        }
        match execute::<DB>(conn, prefix, &rows[start..end], bind).await {
            Ok(()) => {}
            Err(e) if crate::error::is_row_error(&e) => {
                for i in start..end {
                    match execute::<DB>(conn, prefix, &rows[i..=i], bind).await {
                        Ok(()) => {}
                        Err(e) if crate::error::is_row_error(&e) => refused.push((i, e)),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
        start = end;
    }
    Ok(refused)
}

async fn execute<DB>(
    conn: &mut DB::Connection,
    prefix: &str,
    rows: &[Vec<Param>],
    bind: fn(&mut DB::Arguments, &Param) -> std::result::Result<(), sqlx::error::BoxDynError>,
) -> std::result::Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    let width = rows.first().map_or(0, Vec::len);
    let mut sql = String::with_capacity(prefix.len() + rows.len() * (3 * width + 3));
    sql.push_str(prefix);
    let mut args = DB::Arguments::default();
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for (i, p) in row.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('?');
            bind(&mut args, p).map_err(sqlx::Error::Encode)?;
        }
        sql.push(')');
    }
    sqlx::query_with(AssertSqlSafe(sql), args)
        .execute(conn)
        .await
        .map(|_| ())
}

#[async_trait]
impl RecordSink for SqlSink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
        self.check()?;
        let mut rejections = Vec::new();
        let kept = match self.kinds {
            Kinds::Pg(_) => self.write_pg(batch, &mut rejections).await?,
            _ => self.write_params(batch, &mut rejections).await?,
        };
        self.uncommitted += kept;
        rejections.sort_by_key(|r| r.position.record);
        Ok(rejections)
    }

    async fn flush(&mut self) -> Result<()> {
        self.check()?;
        let committed = match &mut self.conn {
            None => Ok(()),
            Some(Conn::Pg(c)) => pg::commit(c, &mut self.pg_tx).await,
            Some(Conn::MySql(c)) if self.in_tx => {
                c.execute(sqlx::raw_sql("COMMIT")).await.map(|_| ())
            }
            Some(Conn::Sqlite(c)) if self.in_tx => {
                c.execute(sqlx::raw_sql("COMMIT")).await.map(|_| ())
            }
            Some(_) => Ok(()),
        };
        match committed {
            Ok(()) => {
                self.in_tx = false;
                self.committed += std::mem::take(&mut self.uncommitted);
                Ok(())
            }
            Err(e) => {
                let e = error::convert(&self.name, &self.target, Failure::Commit, e);
                Err(self.fail(e))
            }
        }
    }

    async fn finish(&mut self) -> Result<SinkReport> {
        self.flush().await?;
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        Ok(SinkReport {
            records: self.committed,
            bytes: 0,
            location: Some(self.name.clone()),
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
