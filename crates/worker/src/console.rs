//! A worker's console (its stdout and stderr) passed on to the job's log, bounded: a line
//! longer than [`ConsoleLimits::line_bytes`] is cut there (the rest is counted, never held),
//! and past [`ConsoleLimits::total_bytes`] from one worker its lines are dropped and counted,
//! so a model printing without end cannot grow the engine or flood the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use runtime_core::{JobLog, Level, LogLine, LogSource};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

/// Bounds on what a worker's console may put in the job's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleLimits {
    /// The longest line kept, in bytes (default 64 KiB).
    pub line_bytes: usize,
    /// The most bytes of lines one worker's stdout and stderr together put in the log
    /// (default 10 MiB).
    pub total_bytes: u64,
}

impl Default for ConsoleLimits {
    fn default() -> Self {
        ConsoleLimits {
            line_bytes: 64 * 1024,
            total_bytes: 10 * 1024 * 1024,
        }
    }
}

/// The console of one worker: its streams share one volume budget.
pub(crate) struct Console {
    limits: ConsoleLimits,
    used: Arc<AtomicU64>,
}

impl Console {
    pub fn new(limits: ConsoleLimits) -> Console {
        Console {
            limits,
            used: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Passes `stream`'s lines to `log` as model console at `level` until it ends.
    pub fn drain(
        &self,
        stream: impl AsyncRead + Unpin + Send + 'static,
        log: Arc<dyn JobLog>,
        level: Level,
    ) -> JoinHandle<()> {
        let mut drain = Drain {
            limits: self.limits,
            used: self.used.clone(),
            log,
            level,
            line: Vec::with_capacity(256),
            cut: 0,
            dropped_lines: 0,
            dropped_bytes: 0,
        };
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(1 << 14, stream);
            while let Ok(buf) = reader.fill_buf().await {
                if buf.is_empty() {
                    if !drain.line.is_empty() || drain.cut > 0 {
                        drain.emit();
                    }
                    break;
                }
                let newline = buf.iter().position(|&b| b == b'\n');
                let chunk = &buf[..newline.unwrap_or(buf.len())];
                let room = drain.limits.line_bytes.saturating_sub(drain.line.len());
                let keep = chunk.len().min(room);
                drain.line.extend_from_slice(&chunk[..keep]);
                drain.cut += (chunk.len() - keep) as u64;
                let consumed = chunk.len() + usize::from(newline.is_some());
                reader.consume(consumed);
                if newline.is_some() {
                    drain.emit();
                }
            }
            drain.finish();
        })
    }
}

struct Drain {
    limits: ConsoleLimits,
    used: Arc<AtomicU64>,
    log: Arc<dyn JobLog>,
    level: Level,
    line: Vec<u8>,
    /// Bytes of the current line past the line limit.
    cut: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl Drain {
    fn emit(&mut self) {
        while matches!(self.line.last(), Some(b'\r')) {
            self.line.pop();
        }
        let len = self.line.len() as u64;
        let before = self.used.fetch_add(len, Ordering::Relaxed);
        if before + len > self.limits.total_bytes {
            if before <= self.limits.total_bytes {
                self.log.log(LogLine::new(
                    Level::Warn,
                    LogSource::Engine,
                    format!(
                        "the model's console passed {} bytes for this worker: further output is dropped (and counted)",
                        self.limits.total_bytes
                    ),
                ));
            }
            self.dropped_lines += 1;
            self.dropped_bytes += len + self.cut;
        } else {
            let mut text = String::from_utf8_lossy(&self.line).into_owned();
            if self.cut > 0 {
                text.push_str(&format!(
                    " [line truncated: {} more bytes not shown]",
                    self.cut
                ));
            }
            self.log
                .log(LogLine::new(self.level, LogSource::ModelConsole, text));
        }
        self.line.clear();
        self.cut = 0;
    }

    fn finish(&self) {
        if self.dropped_lines > 0 {
            self.log.log(LogLine::new(
                Level::Warn,
                LogSource::Engine,
                format!(
                    "the model's console: {} line(s), {} bytes, dropped past the limit of {} bytes",
                    self.dropped_lines, self.dropped_bytes, self.limits.total_bytes
                ),
            ));
        }
    }
}
