//! A job's log: the lines a user reads to learn what happened to a job. Separate from the
//! engine's own tracing, which operators read.

use std::fmt;
use std::sync::Mutex;
use std::time::SystemTime;

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
