//! A job's log as `engine run` shows it: one line per entry on standard error (or a file),
//! with the time and who said it, without tearing a progress bar.
//!
//! Lines are written by a thread of their own: `log` is called from the job's async tasks,
//! and a slow terminal or disk must not hold a tokio worker thread.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;

use indicatif::ProgressBar;
use runtime_core::{JobLog, Level, LogLine, LogSource};

/// Lines waiting for the writer at most; beyond it lines are counted, not kept.
const QUEUE_MAX: usize = 10_000;

enum Message {
    Line(String),
    /// Flush what came before, then answer.
    Flush(mpsc::Sender<()>),
}

pub struct WriterLog {
    tx: Option<SyncSender<Message>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Lines dropped because the writer was [`QUEUE_MAX`] lines behind.
    dropped: AtomicU64,
    /// `Some(job id)`: each line is a JSON object carrying the id.
    json: Option<String>,
}

impl WriterLog {
    pub fn new(out: Box<dyn Write + Send>, bar: Option<ProgressBar>) -> Self {
        let (tx, rx) = mpsc::sync_channel(QUEUE_MAX);
        let writer = std::thread::Builder::new()
            .name("job-log".to_owned())
            .spawn(move || write_lines(out, bar, rx))
            .ok();
        WriterLog {
            tx: writer.as_ref().map(|_| tx),
            writer: Mutex::new(writer),
            dropped: AtomicU64::new(0),
            json: None,
        }
    }

    /// Lines as JSON objects (`timestamp`, `level`, `target`, `job_id`, `source`,
    /// `message`), one per line.
    pub fn json(mut self, job_id: String) -> Self {
        self.json = Some(job_id);
        self
    }

    /// Waits until every line logged so far is written and flushed (says how many were
    /// dropped, if any).
    pub fn flush(&self) {
        let Some(tx) = &self.tx else {
            return;
        };
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let line = LogLine::new(
                Level::Warn,
                LogSource::Engine,
                format!(
                    "{dropped} log lines were dropped: the job logged faster than they could \
                     be written"
                ),
            );
            let _ = tx.send(Message::Line(self.format(line)));
        }
        let (done, wait) = mpsc::channel();
        if tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    fn format(&self, line: LogLine) -> String {
        let timestamp = runtime_core::utc_timestamp(line.at);
        match &self.json {
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
        }
    }
}

impl Drop for WriterLog {
    fn drop(&mut self) {
        self.flush();
        // The writer ends when its channel closes.
        self.tx = None;
        if let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = writer.join();
        }
    }
}

impl JobLog for WriterLog {
    fn log(&self, line: LogLine) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(Message::Line(self.format(line))) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The writer thread: lines in order until the channel closes.
fn write_lines(mut out: Box<dyn Write + Send>, bar: Option<ProgressBar>, rx: Receiver<Message>) {
    for message in rx {
        match message {
            Message::Line(text) => {
                // A log that cannot be written must not stop the job.
                let mut write = || {
                    let _ = out.write_all(text.as_bytes());
                };
                match &bar {
                    Some(bar) => bar.suspend(write),
                    None => write(),
                }
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Condvar};
    use std::time::Duration;

    /// A destination that takes nothing until it is opened, then keeps what it gets.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Gate {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }
        fn text(&self) -> String {
            String::from_utf8(self.got.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut open = self.open.0.lock().unwrap();
            while !*open {
                open = self.open.1.wait(open).unwrap();
            }
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(i: usize) -> LogLine {
        LogLine::new(Level::Info, LogSource::Engine, format!("line {i}"))
    }

    #[test]
    fn logging_does_not_wait_for_a_stuck_destination_and_nothing_is_lost_silently() {
        let gate = Gate::default();
        let log = Arc::new(WriterLog::new(Box::new(gate.clone()), None));
        let n = QUEUE_MAX + 50;
        // Logged from another thread, bounded by a timeout: a log that waited for its
        // destination would never return while the gate is shut.
        let (done, logged) = mpsc::channel();
        let logger = log.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                logger.log(line(i));
            }
            let _ = done.send(());
        });
        logged
            .recv_timeout(Duration::from_secs(60))
            .expect("logging returned while the destination was stuck");
        gate.open();
        log.flush();
        let text = gate.text();
        let lines: Vec<&str> = text.lines().collect();
        // The first line went to the writer, which is stuck on it; the queue holds QUEUE_MAX
        // more; the rest are counted and reported, in order after the kept ones.
        let kept: Vec<&str> = lines
            .iter()
            .filter(|l| l.contains(" line "))
            .copied()
            .collect();
        assert!(
            kept.len() > QUEUE_MAX - 1 && kept.len() < n,
            "{}",
            kept.len()
        );
        for (i, l) in kept.iter().enumerate() {
            assert!(l.ends_with(&format!("INFO ENGINE line {i}")), "{l}");
        }
        let dropped = n - kept.len();
        let last = lines.last().unwrap();
        assert!(
            last.contains(&format!("WARN ENGINE {dropped} log lines were dropped")),
            "{last}"
        );
    }

    #[test]
    fn json_lines_carry_the_job_id() {
        let gate = Gate::default();
        gate.open();
        let log = WriterLog::new(Box::new(gate.clone()), None).json("job-7".to_owned());
        log.log(line(1));
        log.flush();
        let v: serde_json::Value = serde_json::from_str(gate.text().trim()).unwrap();
        assert_eq!(v["job_id"], "job-7");
        assert_eq!(v["message"], "line 1");
    }
}
