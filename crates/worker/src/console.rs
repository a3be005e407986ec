//! A worker's console (its stdout and stderr) passed on to the job's log, a line at a time:
//! a line longer than [`ConsoleLimits::line_bytes`] is cut there (the rest is counted, never
//! held), so a model printing a line without end cannot grow the engine. The volume a job's
//! log takes is bounded by the job (`jobs`), which sees all of its workers.

use std::sync::Arc;

use runtime_core::{JobLog, Level, LogLine, LogSource};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

/// Bounds on what a worker's console may put in the job's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleLimits {
    /// The longest line kept, in bytes (default 64 KiB).
    pub line_bytes: usize,
}

impl Default for ConsoleLimits {
    fn default() -> Self {
        ConsoleLimits {
            line_bytes: 64 * 1024,
        }
    }
}

/// Passes `stream`'s lines to `log` as model console at `level` until it ends.
pub(crate) fn drain(
    stream: impl AsyncRead + Unpin + Send + 'static,
    limits: ConsoleLimits,
    log: Arc<dyn JobLog>,
    level: Level,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::with_capacity(1 << 14, stream);
        let mut line = Vec::with_capacity(256);
        // Bytes of the current line past the line limit: counted, not kept.
        let mut cut: u64 = 0;
        while let Ok(buf) = reader.fill_buf().await {
            if buf.is_empty() {
                if !line.is_empty() || cut > 0 {
                    emit(&mut line, &mut cut, &*log, level);
                }
                break;
            }
            let newline = buf.iter().position(|&b| b == b'\n');
            let chunk = &buf[..newline.unwrap_or(buf.len())];
            let keep = chunk
                .len()
                .min(limits.line_bytes.saturating_sub(line.len()));
            line.extend_from_slice(&chunk[..keep]);
            cut += (chunk.len() - keep) as u64;
            let consumed = chunk.len() + usize::from(newline.is_some());
            reader.consume(consumed);
            if newline.is_some() {
                emit(&mut line, &mut cut, &*log, level);
            }
        }
    })
}

fn emit(line: &mut Vec<u8>, cut: &mut u64, log: &dyn JobLog, level: Level) {
    while matches!(line.last(), Some(b'\r')) {
        line.pop();
    }
    let mut text = String::from_utf8_lossy(line).into_owned();
    if *cut > 0 {
        text.push_str(&format!(" [line truncated: {cut} more bytes not shown]"));
    }
    log.log(LogLine::new(level, LogSource::ModelConsole, text));
    line.clear();
    *cut = 0;
}
