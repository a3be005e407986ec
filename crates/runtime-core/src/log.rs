//! A job's log: the lines a user reads to learn what happened to a job. Separate from the
//! engine's own tracing, which operators read.

use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// Who said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// The engine: lifecycle, counts, rejections.
    Engine,
    /// What the model printed (stdout/stderr of its worker).
    ModelConsole,
    /// The language runner inside the worker (tracebacks, load messages).
    Runner,
}

impl LogSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Engine => "ENGINE",
            LogSource::ModelConsole => "MODEL-CONSOLE",
            LogSource::Runner => "RUNNER",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub at: SystemTime,
    pub level: Level,
    pub source: LogSource,
    pub message: String,
}

impl LogLine {
    pub fn new(level: Level, source: LogSource, message: impl Into<String>) -> Self {
        LogLine {
            at: SystemTime::now(),
            level,
            source,
            message: message.into(),
        }
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.level.as_str(),
            self.source.as_str(),
            self.message
        )
    }
}

/// Where a job's log lines go. Implementations must not block for long: they are called
/// from the threads that drain a worker's output.
pub trait JobLog: Send + Sync {
    fn log(&self, line: LogLine);

    fn info(&self, source: LogSource, message: String) {
        self.log(LogLine::new(Level::Info, source, message));
    }
    fn warn(&self, source: LogSource, message: String) {
        self.log(LogLine::new(Level::Warn, source, message));
    }
    fn error(&self, source: LogSource, message: String) {
        self.log(LogLine::new(Level::Error, source, message));
    }
}

/// A log kept in memory (tests, and jobs whose lines are returned with their result).
#[derive(Debug, Default)]
pub struct MemoryLog {
    lines: Mutex<Vec<LogLine>>,
}

impl MemoryLog {
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl JobLog for MemoryLog {
    fn log(&self, line: LogLine) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }
}

/// Milliseconds since the Unix epoch as UTC RFC 3339 with milliseconds
/// (`2026-11-22T04:20:34.123Z`): how log lines and the API show times.
pub fn utc_timestamp_ms(ms: i64) -> String {
    let ms = ms.max(0);
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

/// [`utc_timestamp_ms`] of a point in time.
pub fn utc_timestamp(at: SystemTime) -> String {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    utc_timestamp_ms(ms)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_rfc_3339() {
        assert_eq!(
            utc_timestamp_ms(1_795_321_234_123),
            "2026-11-22T04:20:34.123Z"
        );
        assert_eq!(utc_timestamp_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            utc_timestamp_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        let t = UNIX_EPOCH + Duration::from_millis(1_795_321_234_123);
        assert_eq!(utc_timestamp(t), "2026-11-22T04:20:34.123Z");
    }
}
