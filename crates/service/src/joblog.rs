//! A job's log lines on their way to the store: buffered in memory (bounded) by whoever
//! logs, written to SQLite by the queue in batches.

use std::sync::Mutex;

use runtime_core::{JobLog, Level, LogLine, LogSource};

use crate::store::StoredLine;
use crate::time::ms_of;

/// Lines held before the next flush at most; beyond it lines are counted, not kept.
const BUFFER_MAX: usize = 50_000;

#[derive(Default)]
pub struct BufferedLog {
    inner: Mutex<Buffer>,
    /// The job the lines belong to, on the engine's own log.
    job_id: Option<String>,
}

#[derive(Default)]
struct Buffer {
    lines: Vec<StoredLine>,
    dropped: u64,
}

impl BufferedLog {
    /// The log of job `id`: its lines also go to the engine's own log (at DEBUG), with the id.
    pub fn for_job(id: &str) -> Self {
        BufferedLog {
            job_id: Some(id.to_owned()),
            ..BufferedLog::default()
        }
    }

    /// The lines logged since the last call (and one saying how many were dropped).
    pub fn take(&self) -> Vec<StoredLine> {
        let Ok(mut b) = self.inner.lock() else {
            return Vec::new();
        };
        let mut lines = std::mem::take(&mut b.lines);
        if b.dropped > 0 {
            lines.push(StoredLine {
                at_ms: crate::time::now_ms(),
                level: Level::Warn.as_str().to_owned(),
                source: LogSource::Engine.as_str().to_owned(),
                message: format!(
                    "{} log lines were dropped: the job logged faster than they could be stored",
                    b.dropped
                ),
            });
            b.dropped = 0;
        }
        lines
    }

    pub fn engine(&self, level: Level, message: impl Into<String>) {
        self.log(LogLine::new(level, LogSource::Engine, message));
    }
}

impl JobLog for BufferedLog {
    fn log(&self, line: LogLine) {
        // The level is the event's own: the message does not repeat it.
        tracing::debug!(
            target: "job",
            job_id = self.job_id.as_deref().unwrap_or(""),
            source = line.source.as_str(),
            "{} {}",
            line.source.as_str(),
            line.message
        );
        if let Ok(mut b) = self.inner.lock() {
            if b.lines.len() >= BUFFER_MAX {
                b.dropped += 1;
                return;
            }
            b.lines.push(StoredLine {
                at_ms: ms_of(line.at),
                level: line.level.as_str().to_owned(),
                source: line.source.as_str().to_owned(),
                message: line.message,
            });
        }
    }
}

/// A bounded ring of the latest lines (a deployed model's log).
pub struct RingLog {
    inner: Mutex<std::collections::VecDeque<StoredLine>>,
    cap: usize,
}

impl RingLog {
    pub fn new(cap: usize) -> Self {
        RingLog {
            inner: Mutex::new(std::collections::VecDeque::with_capacity(cap.min(1024))),
            cap,
        }
    }

    pub fn lines(&self) -> Vec<StoredLine> {
        self.inner
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl JobLog for RingLog {
    fn log(&self, line: LogLine) {
        // The level is the event's own: the message does not repeat it.
        let (source, message) = (line.source.as_str(), &line.message);
        match line.level {
            Level::Error => tracing::error!(target: "deployment", source, "{source} {message}"),
            Level::Warn => tracing::warn!(target: "deployment", source, "{source} {message}"),
            Level::Info => tracing::info!(target: "deployment", source, "{source} {message}"),
            Level::Debug => tracing::debug!(target: "deployment", source, "{source} {message}"),
        }
        if let Ok(mut l) = self.inner.lock() {
            if l.len() >= self.cap {
                l.pop_front();
            }
            l.push_back(StoredLine {
                at_ms: ms_of(line.at),
                level: line.level.as_str().to_owned(),
                source: line.source.as_str().to_owned(),
                message: line.message,
            });
        }
    }
}
