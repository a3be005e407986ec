//! A job's log as `engine run` shows it: one line per entry on standard error (or a file),
//! with the time and who said it, without tearing a progress bar.

use std::io::Write;
use std::sync::Mutex;

use indicatif::ProgressBar;
use runtime_core::{JobLog, LogLine};

pub struct WriterLog {
    out: Mutex<Box<dyn Write + Send>>,
    bar: Option<ProgressBar>,
    /// `Some(job id)`: each line is a JSON object carrying the id.
    json: Option<String>,
}

impl WriterLog {
    pub fn new(out: Box<dyn Write + Send>, bar: Option<ProgressBar>) -> Self {
        WriterLog {
            out: Mutex::new(out),
            bar,
            json: None,
        }
    }

    /// Lines as JSON objects (`timestamp`, `level`, `target`, `job_id`, `source`,
    /// `message`), one per line.
    pub fn json(mut self, job_id: String) -> Self {
        self.json = Some(job_id);
        self
    }

    pub fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }
}

impl JobLog for WriterLog {
    fn log(&self, line: LogLine) {
        let timestamp = runtime_core::utc_timestamp(line.at);
        let text = match &self.json {
            None => format!("{timestamp} {line}\n"),
            Some(job_id) => {
                let object = serde_json::json!({
                    "timestamp": timestamp,
                    "level": line.level.as_str(),
                    "target": "job",
                    "job_id": job_id,
                    "source": line.source.as_str(),
                    "message": line.message,
                });
                format!("{object}\n")
            }
        };
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
