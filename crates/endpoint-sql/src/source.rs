//! The SQL source: a statement's rows as records, streamed.
//!
//! A task of its own (started by the first read, on the job's runtime) owns the connection,
//! runs the statement and decodes its rows as the server sends them (sqlx's `fetch`: the
//! result is never held whole), handing them over in chunks through a bounded channel; the
//! source numbers them. A chunk goes as soon as no further row is at hand, so a slow
//! statement's rows do not wait for a chunk to fill. The input ends after the last row
//! (`Loop`: the statement runs again; a pass with no row ends it).
//!
//! Each row is a map of column name to value (see `docs/data.md` for the types); a row
//! whose value does not decode (text that is not UTF-8) is an encoding rejection in its place,
//! a row larger than the codec's record limit a size rejection, and the stream goes on.
//!
//! The source acknowledges nothing: a statement has nowhere to commit a position. A
//! connection that fails before the first row is retriable (the statement is run again);
//! after rows were read it is fatal, since the same statement may not give the same rows in
//! the same order again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use runtime_core::{
    Error, Map, Position, ReadItem, Record, RecordSource, Rejection, RejectionKind, Result, Value,
};
use sqlx::{AssertSqlSafe, Column, Row, TypeInfo, ValueRef};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::connect::{Conn, Target};
use crate::error::{self, Failure};
use crate::mysql::MyKind;
use crate::pg::PgKind;
use crate::sqlite::LiteKind;

/// Rows per chunk handed from the reading task.
const CHUNK_ROWS: usize = 512;
/// Bytes of values per chunk, at most (one large row is a chunk of its own).
const CHUNK_BYTES: usize = 4 << 20;
/// Chunks waiting between the task and the source.
const CHUNKS_IN_FLIGHT: usize = 4;

/// A row as the reading task hands it over.
enum RowItem {
    Value(Value),
    Refused(RejectionKind, String),
}

enum Chunk {
    Rows(Vec<RowItem>),
    End,
    Failed(Error),
}

enum State {
    /// The statement is to run (at the start, again for `Loop`, or after a retriable
    /// failure before any row).
    Idle,
    Reading {
        rx: mpsc::Receiver<Chunk>,
        task: JoinHandle<()>,
    },
    Done,
    /// The statement failed before any row for a reason that may pass: the error is
    /// returned once, then the statement runs again.
    Retry(Error),
    /// The input cannot go on: every read says why.
    Failed(String),
}

/// A statement's rows, one record each.
pub struct SqlSource {
    name: String,
    target: Arc<Target>,
    query: String,
    max_record_bytes: usize,
    looping: bool,
    /// Rows skipped at the start of the first pass (`SkipToRecord`).
    skip: u64,
    state: State,
    pending: VecDeque<ReadItem>,
    /// The position of the last item given.
    position: u64,
    /// Rows read in the current pass.
    pass_rows: u64,
}

impl SqlSource {
    pub(crate) fn new(
        name: String,
        target: Arc<Target>,
        query: String,
        max_record_bytes: usize,
        looping: bool,
        skip: u64,
    ) -> SqlSource {
        SqlSource {
            name,
            target,
            query,
            max_record_bytes,
            looping,
            skip,
            state: State::Idle,
            pending: VecDeque::new(),
            position: skip,
            pass_rows: 0,
        }
    }

    fn start(&mut self) {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let reader = Reader {
            name: self.name.clone(),
            target: self.target.clone(),
            query: self.query.clone(),
            skip: std::mem::take(&mut self.skip),
            max_bytes: self.max_record_bytes,
            tx,
        };
        let task = tokio::spawn(reader.run());
        self.pass_rows = 0;
        self.state = State::Reading { rx, task };
    }

    /// Takes what the reading task handed over: rows numbered into `pending`; the end or a
    /// failure into the state, which `read_batch` acts on once `pending` is given out.
    fn accept(&mut self, chunk: Option<Chunk>) {
        match chunk {
            Some(Chunk::Rows(rows)) => {
                for row in rows {
                    self.position += 1;
                    self.pass_rows += 1;
                    let position = Position::record(self.position);
                    self.pending.push_back(match row {
                        RowItem::Value(v) => ReadItem::Record(Record::new(v, position)),
                        RowItem::Refused(kind, reason) => {
                            ReadItem::Rejected(Rejection::new(kind, position, reason))
                        }
                    });
                }
            }
            Some(Chunk::End) | None => {
                let more = self.looping && self.pass_rows > 0;
                self.state = if more { State::Idle } else { State::Done };
            }
            // Nothing was read: running the statement again is safe.
            Some(Chunk::Failed(e)) if self.pass_rows == 0 && e.is_retriable() => {
                self.state = State::Retry(e);
            }
            Some(Chunk::Failed(e)) => {
                // The error names this input already: its reason alone.
                let e = match e {
                    Error::Endpoint { reason, .. } | Error::Unavailable { reason, .. } => reason,
                    other => other.to_string(),
                };
                let reason = if self.pass_rows > 0 {
                    format!(
                        "reading stopped after {} rows and cannot be resumed (the statement \
                         would start over): {e}",
                        self.pass_rows
                    )
                } else {
                    e
                };
                self.state = State::Failed(reason);
            }
        }
    }

    fn take(&mut self, max: usize) -> Vec<ReadItem> {
        let n = max.max(1).min(self.pending.len());
        self.pending.drain(..n).collect()
    }
}

#[async_trait]
impl RecordSource for SqlSource {
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>> {
        let max = max.max(1);
        loop {
            // Rows already at hand fill the batch up to `max` (a batch is what the model
            // scores and the output writes at once): chunks waiting are taken without waiting.
            while self.pending.len() < max {
                let State::Reading { rx, .. } = &mut self.state else {
                    break;
                };
                match rx.try_recv() {
                    Ok(chunk) => self.accept(Some(chunk)),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => self.accept(None),
                }
            }
            if !self.pending.is_empty() {
                return Ok(Some(self.take(max)));
            }
            match &mut self.state {
                State::Done => return Ok(None),
                State::Failed(reason) => return Err(Error::endpoint(&self.name, reason.clone())),
                State::Retry(_) => {
                    let State::Retry(e) = std::mem::replace(&mut self.state, State::Idle) else {
                        continue;
                    };
                    return Err(e);
                }
                State::Idle => self.start(),
                State::Reading { rx, .. } => {
                    let chunk = rx.recv().await;
                    self.accept(chunk);
                }
            }
        }
    }

    async fn close(&mut self, _grace: Duration) -> Result<()> {
        if let State::Reading { task, .. } = &self.state {
            task.abort();
        }
        self.state = State::Done;
        Ok(())
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

impl Drop for SqlSource {
    fn drop(&mut self) {
        if let State::Reading { task, .. } = &self.state {
            task.abort();
        }
    }
}

/// The reading task.
struct Reader {
    name: String,
    target: Arc<Target>,
    query: String,
    skip: u64,
    max_bytes: usize,
    tx: mpsc::Sender<Chunk>,
}

impl Reader {
    async fn run(self) {
        let conn = match self.target.connect(&self.name).await {
            Ok(c) => c,
            Err(e) => {
                let _ = self.tx.send(Chunk::Failed(e)).await;
                return;
            }
        };
        let query = AssertSqlSafe(self.query.clone());
        let max = self.max_bytes;
        let outcome = match conn {
            Conn::Pg(mut c) => {
                let mut kinds: Option<Vec<Col<PgKind>>> = None;
                let rows = sqlx::query(query).fetch(&mut c);
                let out = self
                    .pump(rows, |row: &sqlx::postgres::PgRow| {
                        let cols = kinds.get_or_insert_with(|| pg_columns(row));
                        pg_row(cols, row, max)
                    })
                    .await;
                let _ = sqlx::Connection::close(c).await;
                out
            }
            Conn::MySql(mut c) => {
                let mut kinds: Option<Vec<Col<MyKind>>> = None;
                let rows = sqlx::query(query).fetch(&mut c);
                let out = self
                    .pump(rows, |row: &sqlx::mysql::MySqlRow| {
                        let cols = kinds.get_or_insert_with(|| my_columns(row));
                        my_row(cols, row, max)
                    })
                    .await;
                let _ = sqlx::Connection::close(c).await;
                out
            }
            Conn::Sqlite(mut c) => {
                let mut kinds: Option<Vec<Col<LiteKind>>> = None;
                let rows = sqlx::query(query).fetch(&mut c);
                let out = self
                    .pump(rows, |row: &sqlx::sqlite::SqliteRow| {
                        let cols = kinds.get_or_insert_with(|| lite_columns(row));
                        lite_row(cols, row, max)
                    })
                    .await;
                let _ = sqlx::Connection::close(c).await;
                out
            }
        };
        let last = match outcome {
            Ok(()) => Chunk::End,
            Err(e) => Chunk::Failed(e),
        };
        let _ = self.tx.send(last).await;
    }

    /// Decodes the rows of `rows` as they come and hands them over in chunks.
    async fn pump<R>(
        &self,
        mut rows: futures_util::stream::BoxStream<'_, std::result::Result<R, sqlx::Error>>,
        mut decode: impl FnMut(&R) -> std::result::Result<RowItem, String>,
    ) -> Result<()> {
        let mut chunk = Vec::with_capacity(CHUNK_ROWS);
        let mut bytes = 0usize;
        let mut skip = self.skip;
        loop {
            // What is at hand now; when nothing is, the chunk goes before waiting.
            let next = match rows.next().now_or_never() {
                Some(next) => next,
                None => {
                    if !chunk.is_empty() && !self.send(&mut chunk, &mut bytes).await {
                        return Ok(());
                    }
                    rows.next().await
                }
            };
            let row = match next {
                None => break,
                Some(Ok(row)) => row,
                Some(Err(e)) => {
                    return Err(error::convert(&self.name, &self.target, Failure::Read, e))
                }
            };
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let item = decode(&row).map_err(|reason| Error::endpoint(&self.name, reason))?;
            if let RowItem::Value(v) = &item {
                bytes += crate::types::size_of(v);
            }
            chunk.push(item);
            if (chunk.len() >= CHUNK_ROWS || bytes >= CHUNK_BYTES)
                && !self.send(&mut chunk, &mut bytes).await
            {
                return Ok(());
            }
        }
        if !chunk.is_empty() {
            self.send(&mut chunk, &mut bytes).await;
        }
        Ok(())
    }

    /// Hands the chunk over; `false` when the source is gone.
    async fn send(&self, chunk: &mut Vec<RowItem>, bytes: &mut usize) -> bool {
        *bytes = 0;
        let rows = std::mem::replace(chunk, Vec::with_capacity(CHUNK_ROWS));
        self.tx.send(Chunk::Rows(rows)).await.is_ok()
    }
}

/// A result column: its name, its type's name and how its values read.
#[derive(Clone, Debug)]
pub(crate) struct Col<K> {
    pub(crate) name: String,
    pub(crate) type_name: String,
    pub(crate) kind: K,
}

pub(crate) fn pg_columns(row: &sqlx::postgres::PgRow) -> Vec<Col<PgKind>> {
    row.columns()
        .iter()
        .map(|c| Col {
            name: c.name().to_owned(),
            type_name: c.type_info().name().to_owned(),
            kind: PgKind::of(c.type_info()),
        })
        .collect()
}

fn my_columns(row: &sqlx::mysql::MySqlRow) -> Vec<Col<MyKind>> {
    row.columns()
        .iter()
        .map(|c| Col {
            name: c.name().to_owned(),
            type_name: c.type_info().name().to_owned(),
            kind: MyKind::of(c.type_info()),
        })
        .collect()
}

fn lite_columns(row: &sqlx::sqlite::SqliteRow) -> Vec<Col<LiteKind>> {
    row.columns()
        .iter()
        .map(|c| Col {
            name: c.name().to_owned(),
            type_name: c.type_info().name().to_owned(),
            kind: LiteKind::of(c.type_info()),
        })
        .collect()
}

/// A row too large for the record limit.
fn too_large(size: usize, max: usize) -> RowItem {
    RowItem::Refused(
        RejectionKind::Size,
        format!("the row holds {size} bytes, more than the record limit of {max} bytes"),
    )
}

fn refused_value<K>(col: &Col<K>, reason: String) -> RowItem {
    RowItem::Refused(
        RejectionKind::Encoding,
        format!("column '{}' ({}): {reason}", col.name, col.type_name),
    )
}

/// A PostgreSQL row; `Err` for a column of a type this engine does not read (which stops
/// the stream).
fn pg_row(
    cols: &[Col<PgKind>],
    row: &sqlx::postgres::PgRow,
    max: usize,
) -> std::result::Result<RowItem, String> {
    let mut raws = Vec::with_capacity(cols.len());
    let mut size = 0;
    for i in 0..cols.len() {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        let bytes = if raw.is_null() {
            None
        } else {
            Some(raw.as_bytes().map_err(|e| e.to_string())?)
        };
        size += bytes.map_or(0, <[u8]>::len);
        raws.push(bytes);
    }
    if size > max {
        return Ok(too_large(size, max));
    }
    let mut map = Map::with_capacity(cols.len());
    for (col, raw) in cols.iter().zip(raws) {
        let value = match raw {
            None => Value::Null,
            Some(_) if col.kind == PgKind::Other => return Err(unknown_type(col)),
            Some(bytes) => match crate::pg::decode(&col.kind, bytes) {
                Ok(v) => v,
                Err(reason) => return Ok(refused_value(col, reason)),
            },
        };
        map.push(col.name.as_str(), value);
    }
    Ok(RowItem::Value(Value::Map(map)))
}

pub(crate) fn unknown_type<K>(col: &Col<K>) -> String {
    format!(
        "the column '{}' is of type {}, which this engine does not read: cast it in the \
         statement (for example to text)",
        col.name, col.type_name
    )
}

fn my_row(
    cols: &[Col<MyKind>],
    row: &sqlx::mysql::MySqlRow,
    max: usize,
) -> std::result::Result<RowItem, String> {
    let mut map = Map::with_capacity(cols.len());
    let mut size = 0;
    for (i, col) in cols.iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        let value = if raw.is_null() {
            Value::Null
        } else if col.kind == MyKind::Other {
            return Err(unknown_type(col));
        } else {
            match crate::mysql::decode(col.kind, raw) {
                Ok(v) => v,
                Err(reason) => return Ok(refused_value(col, reason)),
            }
        };
        size += crate::types::size_of(&value);
        if size > max {
            return Ok(too_large(size, max));
        }
        map.push(col.name.as_str(), value);
    }
    Ok(RowItem::Value(Value::Map(map)))
}

fn lite_row(
    cols: &[Col<LiteKind>],
    row: &sqlx::sqlite::SqliteRow,
    max: usize,
) -> std::result::Result<RowItem, String> {
    let mut map = Map::with_capacity(cols.len());
    let mut size = 0;
    for (i, col) in cols.iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        let value = match crate::sqlite::decode(col.kind, raw) {
            Ok(v) => v,
            Err(reason) => return Ok(refused_value(col, reason)),
        };
        size += crate::types::size_of(&value);
        if size > max {
            return Ok(too_large(size, max));
        }
        map.push(col.name.as_str(), value);
    }
    Ok(RowItem::Value(Value::Map(map)))
}
