//! The real pipeline (`jobs::run_job`) with the kit's own ends around the endpoint under
//! test: a model that echoes each record to slot 1, a source that tracks every record in an
//! `Acks` ledger and keeps the fates it learns, and a sink that keeps what it is given and
//! fails when told to.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jobs::{Job, JobControl, JobInput, JobKind, JobOptions, JobOutcome, JobOutput};
use runtime_core::{
    Acks, AllRecordsFunction, EntryPoints, Error, Fate, InitContext, Language, MemoryLog,
    ModelSpec, OutRecord, Position, ReadItem, Record, RecordSink, RecordSource, Rejection, Result,
    Runner, ScoreItem, ScoreOutcome, Session, SessionConfig, SinkReport, Slot, Value,
};

/// How long closing a source waits for its records in flight: they are all settled or
/// dropped by then, so this only bounds a source that never lets go.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A value behind a lock that a panic elsewhere does not make unusable.
pub(crate) fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The model: each record comes out unchanged on slot 1. Once it has scored `cancel_after`
/// records it cancels the job (a stop in the middle of the stream).
#[derive(Clone, Default)]
pub(crate) struct Echo {
    cancel_after: Option<(u64, Arc<JobControl>)>,
}

impl Echo {
    pub(crate) fn cancelling(after: u64, control: Arc<JobControl>) -> Echo {
        Echo {
            cancel_after: Some((after, control)),
        }
    }
}

#[async_trait]
impl Runner for Echo {
    async fn start(&self, _model: &ModelSpec, _c: SessionConfig) -> Result<Box<dyn Session>> {
        Ok(Box::new(EchoSession {
            cancel_after: self.cancel_after.clone(),
            scored: 0,
        }))
    }
}

/// Records per batch the checks read with (`source.rs`, `sink.rs`), for the read-ahead a
/// cancel waits for.
const READ_AHEAD_BATCH: u64 = 8;
/// The longest a cancel waits for records read ahead.
const READ_AHEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

struct EchoSession {
    cancel_after: Option<(u64, Arc<JobControl>)>,
    scored: u64,
}

#[async_trait]
impl Session for EchoSession {
    async fn score(&mut self, batch: Vec<ScoreItem>) -> Result<Vec<ScoreOutcome>> {
        self.scored += batch.len() as u64;
        if let Some((after, control)) = &self.cancel_after {
            if self.scored >= *after {
                // Cancel with records read ahead of what was scored (as a real stream has):
                // a source that acknowledged what it read, not what was settled, is then
                // caught whatever the machine's load. A source that cannot read ahead is
                // cancelled after a bounded wait all the same.
                let ahead = self.scored + 2 * READ_AHEAD_BATCH;
                let deadline = tokio::time::Instant::now() + READ_AHEAD_WAIT;
                while control.records_read() < ahead && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                control.cancel();
            }
        }
        Ok(batch
            .into_iter()
            .map(|item| Ok(vec![(Slot::DEFAULT_OUTPUT, item.value)]))
            .collect())
    }

    async fn collect(&mut self, _slot: Slot, _batch: Vec<Value>) -> Result<()> {
        Ok(())
    }

    async fn run_all(&mut self, _f: AllRecordsFunction) -> Result<Vec<(Slot, Value)>> {
        Ok(Vec::new())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// A scoring job from `source` to `sink`, `batch` records at a time.
pub(crate) fn job(
    source: Box<dyn RecordSource>,
    sink: Box<dyn RecordSink>,
    batch: usize,
    control: Arc<JobControl>,
) -> Job {
    Job {
        kind: JobKind::Score,
        model: ModelSpec {
            language: Language::Python,
            work_dir: ".".into(),
            main_source: "echo.py".into(),
            entry_points: EntryPoints {
                score: Some("echo".into()),
                ..EntryPoints::default()
            },
            recordsets: Default::default(),
            import_paths: Vec::new(),
        },
        source_name: "echo.py".into(),
        state_between_records: None,
        init: InitContext::Job {
            raw_json: "{}".into(),
        },
        inputs: vec![JobInput {
            slot: Slot::DEFAULT_INPUT,
            source,
        }],
        outputs: vec![JobOutput {
            slot: Slot::DEFAULT_OUTPUT,
            sink,
        }],
        errors: None,
        train_output: None,
        env: Vec::new(),
        options: JobOptions {
            batching: jobs::Batching::new(batch),
            close_grace: CLOSE_GRACE,
            // A flush after every batch: the checks of acknowledgements count on flushes.
            settle_after_records: 1,
            ..JobOptions::default()
        },
        control,
    }
}

/// Runs `job` with `runner`. For a source that never ends, `stop_after` is the number of
/// items it holds: the job is cancelled once the model, the rejections and the failures
/// account for all of them (nothing is left unread to drop).
pub(crate) async fn drive(job: Job, runner: &Echo, stop_after: Option<u64>) -> JobOutcome {
    let control = job.control.clone();
    let watcher = stop_after.map(|n| {
        tokio::spawn(async move {
            loop {
                let p = control.progress();
                if p.records_scored + p.records_failed + p.records_rejected >= n {
                    control.cancel();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    });
    let outcome = jobs::run_job(job, runner, Arc::new(MemoryLog::default())).await;
    if let Some(w) = watcher {
        w.abort();
    }
    outcome
}

/// The kit's source: fixed items, each tracked in a ledger, the fates kept in the order the
/// ledger gives them back. When `durable` is given, a record delivered before the sink's
/// durable mark reached it is noted as a violation.
pub(crate) struct LedgerSource {
    items: VecDeque<ReadItem>,
    acks: Acks<u64>,
    pub(crate) fates: Arc<Mutex<Vec<(u64, Fate)>>>,
    pub(crate) durable: Option<Arc<AtomicU64>>,
    pub(crate) violations: Arc<Mutex<Vec<String>>>,
}

impl LedgerSource {
    pub(crate) fn new(values: Vec<Value>) -> LedgerSource {
        let items = values
            .into_iter()
            .zip(1..)
            .map(|(v, n)| ReadItem::Record(Record::new(v, Position::record(n))))
            .collect();
        LedgerSource {
            items,
            acks: Acks::new(64),
            fates: Arc::default(),
            durable: None,
            violations: Arc::default(),
        }
    }

    fn learn(&self, fates: Vec<(u64, Fate)>) {
        if let Some(durable) = &self.durable {
            let mark = durable.load(Ordering::SeqCst);
            for (n, fate) in &fates {
                if *fate == Fate::Delivered && *n > mark {
                    locked(&self.violations).push(format!(
                        "record {n} was acknowledged as delivered while the sink had made only \
                         {mark} record(s) durable"
                    ));
                }
            }
        }
        locked(&self.fates).extend(fates);
    }
}

#[async_trait]
impl RecordSource for LedgerSource {
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>> {
        let mut out = Vec::new();
        let mut done = Vec::new();
        while out.len() < max {
            if !self.acks.has_room() && !out.is_empty() {
                break;
            }
            let Some(mut item) = self.items.pop_front() else {
                break;
            };
            if let ReadItem::Record(r) = &mut item {
                r.receipt = self.acks.track(r.position.record, &mut done).await;
            }
            out.push(item);
        }
        done.extend(self.acks.settled());
        self.learn(done);
        Ok((!out.is_empty()).then_some(out))
    }

    async fn close(&mut self, grace: Duration) -> Result<()> {
        let rest = self.acks.drain(grace).await;
        self.learn(rest);
        Ok(())
    }

    fn describe(&self) -> String {
        "the kit's source".into()
    }
}

/// How the kit's sink misbehaves.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum Breaks {
    #[default]
    Never,
    /// Every write fails.
    Writing,
    /// Flushes succeed this many times, then fail.
    FlushingAfter(usize),
}

/// The kit's sink: keeps every value written, and the count written when a flush last
/// succeeded.
#[derive(Clone, Default)]
pub(crate) struct MemorySink {
    pub(crate) values: Arc<Mutex<Vec<Value>>>,
    pub(crate) flushed: Arc<AtomicUsize>,
    flushes: Arc<AtomicUsize>,
    breaks: Breaks,
}

pub(crate) const MEMORY_SINK: &str = "the kit's sink";

impl MemorySink {
    pub(crate) fn breaking(breaks: Breaks) -> MemorySink {
        MemorySink {
            breaks,
            ..MemorySink::default()
        }
    }

    pub(crate) fn values(&self) -> Vec<Value> {
        locked(&self.values).clone()
    }
}

#[async_trait]
impl RecordSink for MemorySink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
        if let Breaks::Writing = self.breaks {
            return Err(Error::endpoint(MEMORY_SINK, "its destination is broken"));
        }
        locked(&self.values).extend(batch.into_iter().map(|r| r.value));
        Ok(Vec::new())
    }

    async fn flush(&mut self) -> Result<()> {
        let n = self.flushes.fetch_add(1, Ordering::SeqCst);
        if let Breaks::FlushingAfter(ok) = self.breaks {
            if n >= ok {
                return Err(Error::endpoint(MEMORY_SINK, "its flush failed"));
            }
        }
        self.flushed
            .store(locked(&self.values).len(), Ordering::SeqCst);
        Ok(())
    }

    async fn finish(&mut self) -> Result<SinkReport> {
        self.flush().await?;
        Ok(SinkReport {
            records: locked(&self.values).len() as u64,
            ..SinkReport::default()
        })
    }

    fn describe(&self) -> String {
        MEMORY_SINK.into()
    }
}

/// A question from [`Probe`] to the check: are these records (everything written so far)
/// durably readable now? The answer says why not.
pub(crate) type Ask = (
    Vec<Value>,
    tokio::sync::oneshot::Sender<std::result::Result<(), String>>,
);

/// Wraps the sink under test: after each flush that returned `Ok`, asks the check whether
/// everything written so far reads back, and only then raises the durable mark the kit's
/// source holds its deliveries against.
pub(crate) struct Probe {
    pub(crate) inner: Box<dyn RecordSink>,
    pub(crate) written: Vec<Value>,
    pub(crate) durable: Arc<AtomicU64>,
    pub(crate) flushes: Arc<AtomicUsize>,
    /// `None` for a sink that keeps nothing to read back.
    pub(crate) ask: Option<tokio::sync::mpsc::Sender<Ask>>,
    pub(crate) violations: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl RecordSink for Probe {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
        let values: Vec<Value> = batch.iter().map(|r| r.value.clone()).collect();
        let rejected = self.inner.write_batch(batch).await?;
        if !rejected.is_empty() {
            locked(&self.violations).push(format!(
                "the sink refused {} plain JSON record(s): {}",
                rejected.len(),
                rejected[0]
            ));
        }
        self.written.extend(values);
        Ok(rejected)
    }

    async fn flush(&mut self) -> Result<()> {
        self.inner.flush().await?;
        self.flushes.fetch_add(1, Ordering::SeqCst);
        if let Some(ask) = &self.ask {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if ask.send((self.written.clone(), tx)).await.is_ok() {
                if let Ok(Err(why)) = rx.await {
                    locked(&self.violations).push(why);
                    return Ok(());
                }
            }
        }
        self.durable
            .store(self.written.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    async fn finish(&mut self) -> Result<SinkReport> {
        self.inner.finish().await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
