//! A job's log as `engine run` shows it: one line per entry on standard error (or a file),
//! with the time and who said it, without tearing a progress bar.

use std::io::Write;
use std::sync::Mutex;

use indicatif::ProgressBar;
use runtime_core::{JobLog, LogLine};

pub struct WriterLog {
    out: Mutex<Box<dyn Write + Send>>,
    bar: Option<ProgressBar>,
}

impl WriterLog {
    pub fn new(out: Box<dyn Write + Send>, bar: Option<ProgressBar>) -> Self {
        WriterLog {
            out: Mutex::new(out),
            bar,
        }
    }

    pub fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }
}

impl JobLog for WriterLog {
    fn log(&self, line: LogLine) {
        let text = format!("{} {line}\n", runtime_core::utc_timestamp(line.at));
        let write = || {
            if let Ok(mut out) = self.out.lock() {
                // A log that cannot be written must not stop the job.
                let _ = out.write_all(text.as_bytes());
            }
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}
