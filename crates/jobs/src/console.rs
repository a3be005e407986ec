//! The model's console in a job's log, bounded in volume per job: past the limit its lines
//! are dropped and counted (the engine's own lines always go through), so a model printing
//! without end cannot flood the log. Lines are already cut to a bounded length by the worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use runtime_core::{JobLog, Level, LogLine, LogSource};

/// What the bound let through and dropped, shared with the job's summary.
#[derive(Debug, Default)]
pub(crate) struct ConsoleCounts {
    used: AtomicU64,
    dropped_lines: AtomicU64,
    dropped_bytes: AtomicU64,
}

impl ConsoleCounts {
    /// `(lines, bytes)` dropped so far.
    pub fn dropped(&self) -> (u64, u64) {
        (
            self.dropped_lines.load(Ordering::Relaxed),
            self.dropped_bytes.load(Ordering::Relaxed),
        )
    }
}

/// A job log that lets at most `limit` bytes of model console through.
pub(crate) struct BoundedConsole {
    inner: Arc<dyn JobLog>,
    limit: u64,
    counts: Arc<ConsoleCounts>,
}

/// `log` with the model's console bounded to `limit` bytes, and the counts of what it drops.
pub(crate) fn bound(log: Arc<dyn JobLog>, limit: u64) -> (Arc<dyn JobLog>, Arc<ConsoleCounts>) {
    let counts = Arc::new(ConsoleCounts::default());
    let bounded = BoundedConsole {
        inner: log,
        limit,
        counts: counts.clone(),
    };
    (Arc::new(bounded), counts)
}

impl JobLog for BoundedConsole {
    fn log(&self, line: LogLine) {
        if line.source != LogSource::ModelConsole {
            return self.inner.log(line);
        }
        let len = line.message.len() as u64;
        let before = self.counts.used.fetch_add(len, Ordering::Relaxed);
        if before + len <= self.limit {
            return self.inner.log(line);
        }
        if before <= self.limit {
            self.inner.log(LogLine::new(
                Level::Warn,
                LogSource::Engine,
                format!(
                    "the model's console passed {} bytes in this job: further output is dropped and counted",
                    self.limit
                ),
            ));
        }
        self.counts.dropped_lines.fetch_add(1, Ordering::Relaxed);
        self.counts.dropped_bytes.fetch_add(len, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl JobLog for Lines {
        fn log(&self, line: LogLine) {
            self.0.lock().unwrap().push(line.to_string());
        }
    }

    #[test]
    fn console_past_the_limit_is_dropped_and_counted_engine_lines_are_not() {
        let lines = Arc::new(Lines::default());
        let (log, counts) = bound(lines.clone(), 10);
        for text in ["12345", "67890", "abc", "defg"] {
            log.log(LogLine::new(Level::Info, LogSource::ModelConsole, text));
        }
        log.info(LogSource::Engine, "engine line".to_owned());
        let seen = lines.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(seen[0].ends_with("12345") && seen[1].ends_with("67890"));
        assert!(seen[2].contains("passed 10 bytes"));
        assert!(seen[3].ends_with("engine line"));
        assert_eq!(counts.dropped(), (2, 7));
    }
}
