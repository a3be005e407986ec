//! The job queue and history in SQLite, under the engine's data folder. Every change of a
//! job's state is committed before it is acted on, so an engine killed at any point finds
//! its queue and history on restart.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{Error, Result};

/// A job's status, as the reference names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Created,
    Waiting,
    Running,
    Complete,
    Error,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "CREATED",
            JobState::Waiting => "WAITING",
            JobState::Running => "RUNNING",
            JobState::Complete => "COMPLETE",
            JobState::Error => "ERROR",
            JobState::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s.to_ascii_uppercase().as_str() {
            "CREATED" => JobState::Created,
            "WAITING" => JobState::Waiting,
            "RUNNING" => JobState::Running,
            "COMPLETE" => JobState::Complete,
            "ERROR" => JobState::Error,
            "CANCELLED" => JobState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Complete | JobState::Error | JobState::Cancelled
        )
    }
}

/// A job as stored.
#[derive(Clone, Debug)]
pub struct JobRow {
    pub id: String,
    pub seq: i64,
    pub job_type: String,
    pub name: Option<String>,
    pub status: JobState,
    pub result: Option<String>,
    pub reason: Option<String>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub records_in: i64,
    pub records_out: i64,
    pub records_rejected: i64,
    pub records_failed: i64,
    /// The job document as submitted (or as synthesized from an upload).
    pub document: String,
    /// The job's outcome as JSON, once finished.
    pub outcome: Option<String>,
    /// How many times the job was started.
    pub runs: i64,
    pub interrupted: bool,
}

impl JobRow {
    /// A job just submitted: `status` (CREATED, or WAITING), nothing run or counted yet.
    pub fn submitted(
        id: String,
        job_type: String,
        name: Option<String>,
        status: JobState,
        created_ms: i64,
        document: String,
    ) -> JobRow {
        JobRow {
            id,
            seq: 0,
            job_type,
            name,
            status,
            result: None,
            reason: None,
            created_ms,
            started_ms: None,
            finished_ms: None,
            records_in: 0,
            records_out: 0,
            records_rejected: 0,
            records_failed: 0,
            document,
            outcome: None,
            runs: 0,
            interrupted: false,
        }
    }
}

/// One stored log line.
#[derive(Clone, Debug)]
pub struct StoredLine {
    pub at_ms: i64,
    pub level: String,
    pub source: String,
    pub message: String,
}

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    job_type TEXT NOT NULL,
    name TEXT,
    status TEXT NOT NULL,
    result TEXT,
    reason TEXT,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER,
    records_in INTEGER NOT NULL DEFAULT 0,
    records_out INTEGER NOT NULL DEFAULT 0,
    records_rejected INTEGER NOT NULL DEFAULT 0,
    records_failed INTEGER NOT NULL DEFAULT 0,
    document TEXT NOT NULL,
    outcome TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    interrupted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, seq);
CREATE TABLE IF NOT EXISTS job_log (
    job_id TEXT NOT NULL,
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    level TEXT NOT NULL,
    source TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_log_by_job ON job_log(job_id, n);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

const JOB_COLUMNS: &str = "id, seq, job_type, name, status, result, reason, created_ms, started_ms, finished_ms, records_in, records_out, records_rejected, records_failed, document, outcome, runs, interrupted";

fn db(e: rusqlite::Error) -> Error {
    Error::Store(e.to_string())
}

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    let status: String = r.get(4)?;
    Ok(JobRow {
        id: r.get(0)?,
        seq: r.get(1)?,
        job_type: r.get(2)?,
        name: r.get(3)?,
        status: JobState::parse(&status).unwrap_or(JobState::Error),
        result: r.get(5)?,
        reason: r.get(6)?,
        created_ms: r.get(7)?,
        started_ms: r.get(8)?,
        finished_ms: r.get(9)?,
        records_in: r.get(10)?,
        records_out: r.get(11)?,
        records_rejected: r.get(12)?,
        records_failed: r.get(13)?,
        document: r.get(14)?,
        outcome: r.get(15)?,
        runs: r.get(16)?,
        interrupted: r.get::<_, i64>(17)? != 0,
    })
}

/// Final figures of a finished run.
#[derive(Clone, Debug)]
pub struct Finish {
    pub status: JobState,
    pub result: Option<String>,
    pub reason: Option<String>,
    pub records_in: i64,
    pub records_out: i64,
    pub records_rejected: i64,
    pub records_failed: i64,
    pub outcome: Option<String>,
    pub interrupted: bool,
}

impl Finish {
    /// A job that ended without results: `status`, result FAILURE, `reason`, nothing
    /// counted, no outcome.
    pub fn failed(status: JobState, reason: impl Into<String>) -> Finish {
        Finish {
            status,
            result: Some("FAILURE".into()),
            reason: Some(reason.into()),
            records_in: 0,
            records_out: 0,
            records_rejected: 0,
            records_failed: 0,
            outcome: None,
            interrupted: false,
        }
    }

    /// A running job stopped from outside: CANCELLED when it was cancelled, else ERROR and
    /// interrupted (the engine shut down).
    pub fn stopped(cancelled: bool, reason: &str) -> Finish {
        let status = if cancelled {
            JobState::Cancelled
        } else {
            JobState::Error
        };
        Finish {
            interrupted: !cancelled,
            ..Finish::failed(status, reason)
        }
    }
}

impl Store {
    /// Opens (creating) `data_dir/engine.db`.
    pub fn open(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io(format!("cannot create {}", data_dir.display()), e))?;
        let conn = Connection::open(data_dir.join("engine.db")).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on tokio's blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| Error::Store("the database lock is poisoned".into()))?;
            f(&mut guard).map_err(db)
        })
        .await
        .map_err(|e| Error::Store(format!("database task failed: {e}")))?
    }

    /// Marks every job found RUNNING as interrupted (the engine stopped under it); returns
    /// their ids.
    pub async fn recover(&self, now_ms: i64) -> Result<Vec<String>> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let ids: Vec<String> = {
                let mut st = tx.prepare("SELECT id FROM jobs WHERE status = 'RUNNING'")?;
                let rows = st.query_map([], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let reason = "interrupted: the engine stopped while the job was running";
            for id in &ids {
                tx.execute(
                    "UPDATE jobs SET status = 'ERROR', result = 'FAILURE', reason = ?2, finished_ms = ?3, interrupted = 1 WHERE id = ?1",
                    params![id, reason, now_ms],
                )?;
                tx.execute(
                    "INSERT INTO job_log (job_id, at_ms, level, source, message) VALUES (?1, ?2, 'ERROR', 'ENGINE', ?3)",
                    params![id, now_ms, format!("{reason}; re-run it with POST /api/jobs/{id}/rerun")],
                )?;
            }
            // A job created but not yet queued when the engine stopped is queued now.
            tx.execute("UPDATE jobs SET status = 'WAITING' WHERE status = 'CREATED'", [])?;
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    pub async fn insert(&self, row: JobRow) -> Result<()> {
        self.with(move |c| {
            let seq: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs", [], |r| r.get(0))?;
            c.execute(
                "INSERT INTO jobs (id, seq, job_type, name, status, created_ms, document) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![row.id, seq, row.job_type, row.name, row.status.as_str(), row.created_ms, row.document],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn get(&self, id: &str) -> Result<Option<JobRow>> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )
            .optional()
        })
        .await
    }

    /// Jobs newest first, optionally of one status.
    pub async fn list(&self, status: Option<JobState>, limit: i64) -> Result<Vec<JobRow>> {
        self.with(move |c| {
            let (sql, arg) = match status {
                Some(s) => (
                    format!("SELECT {JOB_COLUMNS} FROM jobs WHERE status = ?1 ORDER BY seq DESC LIMIT ?2"),
                    s.as_str().to_owned(),
                ),
                None => (
                    format!("SELECT {JOB_COLUMNS} FROM jobs WHERE ?1 = ?1 ORDER BY seq DESC LIMIT ?2"),
                    String::new(),
                ),
            };
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params![arg, limit], job_from_row)?;
            rows.collect()
        })
        .await
    }

    /// Counts of jobs by status.
    pub async fn counts(&self) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// The oldest waiting job.
    pub async fn next_waiting(&self) -> Result<Option<JobRow>> {
        self.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'WAITING' ORDER BY seq LIMIT 1"
                ),
                [],
                job_from_row,
            )
            .optional()
        })
        .await
    }

    /// Moves a job from one status to another; false if it was not in `from`.
    pub async fn transition(&self, id: &str, from: &[JobState], to: JobState) -> Result<bool> {
        let id = id.to_owned();
        let from: Vec<&'static str> = from.iter().map(|s| s.as_str()).collect();
        self.with(move |c| {
            let current: Option<String> = c
                .query_row("SELECT status FROM jobs WHERE id = ?1", params![id], |r| {
                    r.get(0)
                })
                .optional()?;
            match current {
                Some(s) if from.contains(&s.as_str()) => {
                    c.execute(
                        "UPDATE jobs SET status = ?2 WHERE id = ?1",
                        params![id, to.as_str()],
                    )?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
    }

    /// Marks a job RUNNING, counting the run.
    /// Claims a waiting job for running; false when it is no longer waiting (cancelled
    /// between being picked and being started).
    pub async fn start(&self, id: &str, now_ms: i64) -> Result<bool> {
        let id = id.to_owned();
        self.with(move |c| {
            let changed = c.execute(
                "UPDATE jobs SET status = 'RUNNING', started_ms = ?2, runs = runs + 1 \
                 WHERE id = ?1 AND status = 'WAITING'",
                params![id, now_ms],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    pub async fn finish(&self, id: &str, now_ms: i64, f: Finish) -> Result<()> {
        let id = id.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE jobs SET status = ?2, result = ?3, reason = ?4, finished_ms = ?5, records_in = ?6, records_out = ?7, records_rejected = ?8, records_failed = ?9, outcome = ?10, interrupted = ?11 WHERE id = ?1",
                params![
                    id,
                    f.status.as_str(),
                    f.result,
                    f.reason,
                    now_ms,
                    f.records_in,
                    f.records_out,
                    f.records_rejected,
                    f.records_failed,
                    f.outcome,
                    i64::from(f.interrupted)
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Puts a finished job back in the queue, clearing its last run's figures.
    pub async fn requeue(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.with(move |c| {
            let seq: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs", [], |r| r.get(0))?;
            let n = c.execute(
                "UPDATE jobs SET status = 'WAITING', seq = ?2, result = NULL, reason = NULL, started_ms = NULL, finished_ms = NULL, records_in = 0, records_out = 0, records_rejected = 0, records_failed = 0, outcome = NULL, interrupted = 0 WHERE id = ?1 AND status IN ('COMPLETE', 'ERROR', 'CANCELLED')",
                params![id, seq],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn append_log(&self, id: &str, lines: Vec<StoredLine>) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let id = id.to_owned();
        self.with(move |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO job_log (job_id, at_ms, level, source, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for l in &lines {
                    st.execute(params![id, l.at_ms, l.level, l.source, l.message])?;
                }
            }
            tx.commit()
        })
        .await
    }

    pub async fn log(&self, id: &str) -> Result<Vec<StoredLine>> {
        let id = id.to_owned();
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT at_ms, level, source, message FROM job_log WHERE job_id = ?1 ORDER BY n",
            )?;
            let rows = st.query_map(params![id], |r| {
                Ok(StoredLine {
                    at_ms: r.get(0)?,
                    level: r.get(1)?,
                    source: r.get(2)?,
                    message: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT value FROM settings WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    pub async fn set_setting(&self, key: &str, value: Option<String>) -> Result<()> {
        let key = key.to_owned();
        self.with(move |c| {
            match value {
                Some(v) => c.execute(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
                    params![key, v],
                )?,
                None => c.execute("DELETE FROM settings WHERE key = ?1", params![key])?,
            };
            Ok(())
        })
        .await
    }

    /// Finished jobs (COMPLETE, ERROR, CANCELLED), oldest first: id and when it finished.
    pub async fn finished_oldest_first(&self) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, COALESCE(finished_ms, created_ms) AS at FROM jobs WHERE status IN ('COMPLETE', 'ERROR', 'CANCELLED') ORDER BY at, seq",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// Every job's id.
    pub async fn ids(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id FROM jobs")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    /// Deletes a finished job and its log lines; false if it is not finished (or absent).
    pub async fn delete_finished(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.with(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM jobs WHERE id = ?1 AND status IN ('COMPLETE', 'ERROR', 'CANCELLED')",
                params![id],
            )?;
            if n == 1 {
                tx.execute("DELETE FROM job_log WHERE job_id = ?1", params![id])?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
        .await
    }
}
