//! The pipeline's bookkeeping, with in-memory endpoints and a session that doubles `x`:
//! counts, routing by slot, rejections, failures, stop-on-bad-records, a dying session.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jobs::{
    run_job, Job, JobControl, JobInput, JobKind, JobOptions, JobOutput, JobProgress, JobResult,
    JobStatus,
};
use runtime_core::{
    Acks, AllRecordsFunction, EntryPoints, Error, Fate, InitContext, Language, MemoryLog,
    ModelSpec, OutRecord, Position, ReadItem, Record, RecordFailure, RecordSink, RecordSource,
    Rejection, RejectionKind, Runner, ScoreItem, ScoreOutcome, Session, SessionConfig, SinkReport,
    Slot, Value,
};

struct VecSource(Vec<ReadItem>);

#[async_trait]
impl RecordSource for VecSource {
    async fn read_batch(&mut self, max: usize) -> runtime_core::Result<Option<Vec<ReadItem>>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let n = max.min(self.0.len());
        Ok(Some(self.0.drain(..n).collect()))
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

#[derive(Clone, Default)]
struct VecSink(Arc<Mutex<Vec<Value>>>);

#[async_trait]
impl RecordSink for VecSink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> runtime_core::Result<Vec<Rejection>> {
        let mut rejected = Vec::new();
        for r in batch {
            if r.value == Value::from("unencodable") {
                rejected.push(Rejection::new(
                    RejectionKind::Encoding,
                    r.position,
                    "cannot encode",
                ));
            } else {
                self.0.lock().unwrap().push(r.value);
            }
        }
        Ok(rejected)
    }
    async fn finish(&mut self) -> runtime_core::Result<SinkReport> {
        Ok(SinkReport::default())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

/// Scores `{"x": n}` into `{"y": 2n}` on slot 1 and `n` itself on slot 3; fails on x == 13;
/// yields an unencodable value for x == 7; dies on x == 99.
struct Doubler {
    collected: Vec<(Slot, Vec<Value>)>,
    failed: Option<u64>,
}

#[async_trait]
impl Session for Doubler {
    async fn score(&mut self, batch: Vec<ScoreItem>) -> runtime_core::Result<Vec<ScoreOutcome>> {
        let mut out = Vec::new();
        // Later batches of small numbers finish first, so a pool must reorder.
        if let Some(Value::Int(x)) = batch.first().and_then(|i| i.value.get("x")) {
            let delay = 20u64.saturating_sub(*x as u64 % 20);
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        for item in batch {
            let x = match item.value.get("x") {
                Some(Value::Int(x)) => *x,
                _ => 0,
            };
            if x == 66 {
                self.failed = Some(item.seqno);
                return Err(Error::LimitExceeded {
                    limit: "time".into(),
                    detail: "a record ran longer than the per-record timeout of 10 ms".into(),
                    last_record: None,
                });
            }
            if x == 99 {
                self.failed = Some(item.seqno);
                return Err(Error::WorkerDied {
                    reason: "killed by signal 9".into(),
                    last_record: Some(item.seqno.to_string()),
                });
            }
            if x == 13 {
                out.push(Err(RecordFailure {
                    message: "ValueError: unlucky".into(),
                    traceback: "Traceback...".into(),
                }));
            } else if x == 7 {
                out.push(Ok(vec![(Slot(1), Value::from("unencodable"))]));
            } else {
                let y: runtime_core::Map = [("y", Value::Int(2 * x))].into_iter().collect();
                out.push(Ok(vec![(Slot(1), Value::Map(y)), (Slot(3), Value::Int(x))]));
            }
        }
        Ok(out)
    }
    async fn collect(&mut self, slot: Slot, batch: Vec<Value>) -> runtime_core::Result<()> {
        self.collected.push((slot, batch));
        Ok(())
    }
    async fn run_all(
        &mut self,
        _f: AllRecordsFunction,
    ) -> runtime_core::Result<Vec<(Slot, Value)>> {
        let n: usize = self.collected.iter().map(|(_, b)| b.len()).sum();
        Ok(vec![(Slot(1), Value::from(n))])
    }
    async fn close(self: Box<Self>) -> runtime_core::Result<()> {
        Ok(())
    }
    fn failed_seqno(&self) -> Option<u64> {
        self.failed
    }
}

#[derive(Default)]
struct DoublerRunner {
    starts: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl Runner for DoublerRunner {
    async fn start(
        &self,
        _m: &ModelSpec,
        _c: SessionConfig,
    ) -> runtime_core::Result<Box<dyn Session>> {
        self.starts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Box::new(Doubler {
            collected: Vec::new(),
            failed: None,
        }))
    }
}

fn record(n: u64, x: i64) -> ReadItem {
    let v: runtime_core::Map = [("x", Value::from(x))].into_iter().collect();
    ReadItem::Record(Record::new(Value::Map(v), Position::record(n)))
}

fn bad(n: u64) -> ReadItem {
    ReadItem::Rejected(Rejection::new(
        RejectionKind::Encoding,
        Position::record(n),
        "not JSON",
    ))
}

fn job(kind: JobKind, items: Vec<ReadItem>, sinks: &[(u32, VecSink)], stop: bool) -> Job {
    Job {
        kind,
        model: ModelSpec {
            language: Language::Python,
            work_dir: std::env::temp_dir(),
            main_source: "__model.py".into(),
            entry_points: EntryPoints {
                score: Some("action".into()),
                metrics: Some("metrics".into()),
                ..EntryPoints::default()
            },
            recordsets: Default::default(),
            import_paths: Vec::new(),
        },
        source_name: "model.py".into(),
        state_between_records: None,
        init: InitContext::Job {
            raw_json: "{}".into(),
        },
        inputs: vec![JobInput {
            slot: Slot(0),
            source: Box::new(VecSource(items)),
        }],
        outputs: sinks
            .iter()
            .map(|(s, sink)| JobOutput {
                slot: Slot(*s),
                sink: Box::new(sink.clone()),
            })
            .collect(),
        errors: None,
        train_output: None,
        env: Vec::new(),
        options: JobOptions {
            stop_on_bad_records: stop,
            batching: jobs::Batching::new(3),
            failures_kept: 10,
            ..JobOptions::default()
        },
        control: Arc::new(JobControl::default()),
    }
}

#[tokio::test]
async fn a_clean_job_succeeds_and_routes_by_slot() {
    let (s1, s3) = (VecSink::default(), VecSink::default());
    let items = [1, 2, 3, 4, 5, 6, 8, 9]
        .iter()
        .enumerate()
        .map(|(i, x)| record(i as u64 + 1, *x))
        .collect();
    let out = run_job(
        job(
            JobKind::Score,
            items,
            &[(1, s1.clone()), (3, s3.clone())],
            false,
        ),
        &DoublerRunner::default(),
        Arc::new(MemoryLog::default()),
    )
    .await;
    assert_eq!(
        (out.status, out.result),
        (JobStatus::Complete, JobResult::Success)
    );
    assert_eq!(out.records_in, 8);
    assert_eq!(out.records_out, 16);
    assert_eq!(s1.0.lock().unwrap().len(), 8);
    assert_eq!(s3.0.lock().unwrap()[0], Value::Int(1));
}

#[tokio::test]
async fn failures_and_rejections_are_counted_and_the_job_goes_on() {
    let s1 = VecSink::default();
    let items = vec![
        record(1, 1),
        bad(2),
        record(3, 13),
        record(4, 7),
        record(5, 5),
    ];
    let log = Arc::new(MemoryLog::default());
    let out = run_job(
        job(JobKind::Score, items, &[(1, s1.clone())], false),
        &DoublerRunner::default(),
        log.clone(),
    )
    .await;
    assert_eq!(
        (out.status, out.result),
        (JobStatus::Complete, JobResult::Failure)
    );
    assert_eq!(out.records_in, 4);
    assert_eq!(
        out.records_failed,
        1 + 2,
        "one raised, two outputs went to slot 3 with no output attached"
    );
    assert_eq!(out.inputs[&0].rejected_by_encoding, 1);
    assert_eq!(out.outputs[&1].rejected_by_encoding, 1);
    assert_eq!(out.outputs[&1].records, 2);
    let lines: Vec<String> = log.lines().iter().map(|l| l.message.clone()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Record 3 on slot 0 failed: ValueError: unlucky")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Record rejected by encoding: not JSON (input slot 0, record 2)")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("Records in/out: 4/")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn stop_on_bad_records_ends_at_the_first_rejection() {
    let s1 = VecSink::default();
    let items = vec![record(1, 1), bad(2), record(3, 3), record(4, 4)];
    let out = run_job(
        job(
            JobKind::Score,
            items,
            &[(1, s1.clone()), (3, VecSink::default())],
            true,
        ),
        &DoublerRunner::default(),
        Arc::new(MemoryLog::default()),
    )
    .await;
    assert_eq!(out.result, JobResult::Failure);
    assert_eq!(out.records_in, 1);
    assert!(
        out.error
            .as_deref()
            .unwrap_or("")
            .contains("first bad record"),
        "{:?}",
        out.error
    );
}

#[tokio::test]
async fn a_dying_session_ends_the_job_in_error_and_keeps_what_was_written() {
    let s1 = VecSink::default();
    let items = vec![
        record(1, 1),
        record(2, 2),
        record(3, 3),
        record(4, 99),
        record(5, 5),
    ];
    let out = run_job(
        job(
            JobKind::Score,
            items,
            &[(1, s1.clone()), (3, VecSink::default())],
            false,
        ),
        &DoublerRunner::default(),
        Arc::new(MemoryLog::default()),
    )
    .await;
    assert_eq!(out.status, JobStatus::Error);
    assert!(
        out.error.as_deref().unwrap_or("").contains("died"),
        "{:?}",
        out.error
    );
    assert_eq!(s1.0.lock().unwrap().len(), 3, "the first batch was written");
}

#[tokio::test]
async fn metrics_get_everything_once() {
    let s1 = VecSink::default();
    let items = (1..=7).map(|i| record(i, 1)).collect();
    let out = run_job(
        job(JobKind::Metrics, items, &[(1, s1.clone())], false),
        &DoublerRunner::default(),
        Arc::new(MemoryLog::default()),
    )
    .await;
    assert_eq!(out.result, JobResult::Success);
    assert_eq!(*s1.0.lock().unwrap(), vec![Value::Int(7)]);
}

#[tokio::test]
async fn a_job_without_its_function_is_an_error_naming_it() {
    let mut j = job(JobKind::Train, vec![], &[], false);
    j.model.entry_points.train = None;
    let out = run_job(j, &DoublerRunner::default(), Arc::new(MemoryLog::default())).await;
    assert_eq!(out.status, JobStatus::Error);
    assert!(out.error.unwrap().contains("modelop.train"));
}

fn ys(sink: &VecSink) -> Vec<i128> {
    sink.0
        .lock()
        .unwrap()
        .iter()
        .map(|v| match v.get("y") {
            Some(Value::Int(y)) => *y,
            _ => -1,
        })
        .collect()
}

#[tokio::test]
async fn several_workers_keep_the_input_order() {
    let s1 = VecSink::default();
    let xs: Vec<i64> = (1..=60).filter(|x| ![7, 13, 66, 99].contains(x)).collect();
    let items = xs
        .iter()
        .enumerate()
        .map(|(i, x)| record(i as u64 + 1, *x))
        .collect();
    let mut j = job(
        JobKind::Score,
        items,
        &[(1, s1.clone()), (3, VecSink::default())],
        false,
    );
    j.options.workers = 4;
    let runner = DoublerRunner::default();
    let out = run_job(j, &runner, Arc::new(MemoryLog::default())).await;
    assert_eq!(out.result, JobResult::Success, "{:?}", out.error);
    assert_eq!(
        ys(&s1),
        xs.iter().map(|x| 2 * i128::from(*x)).collect::<Vec<_>>()
    );
    assert_eq!(runner.starts.load(std::sync::atomic::Ordering::Relaxed), 4);
}

#[tokio::test]
async fn a_model_keeping_state_runs_in_one_worker_unless_more_are_asked_for() {
    for explicit in [false, true] {
        let items = (1..=6).map(|x| record(x as u64, x)).collect();
        let sinks = [(1, VecSink::default()), (3, VecSink::default())];
        let mut j = job(JobKind::Score, items, &sinks, false);
        j.options.workers = 4;
        j.options.workers_explicit = explicit;
        j.state_between_records = Some("line 3 changes global state".into());
        let runner = DoublerRunner::default();
        let log = Arc::new(MemoryLog::default());
        let out = run_job(j, &runner, log.clone()).await;
        assert_eq!(out.result, JobResult::Success, "{:?}", out.error);
        let starts = runner.starts.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(starts, if explicit { 4 } else { 1 });
        let said = log.lines().iter().any(|l| {
            l.message
                .contains("the model's line 3 changes global state")
        });
        assert!(said, "{:#?}", log.lines());
    }
}

#[tokio::test]
async fn a_record_over_a_limit_fails_alone_and_a_new_worker_goes_on() {
    let s1 = VecSink::default();
    let items = [1, 2, 66, 4, 5, 6, 66, 8]
        .iter()
        .enumerate()
        .map(|(i, x)| record(i as u64 + 1, *x))
        .collect();
    let runner = DoublerRunner::default();
    let log = Arc::new(MemoryLog::default());
    let mut j = job(
        JobKind::Score,
        items,
        &[(1, s1.clone()), (3, VecSink::default())],
        false,
    );
    j.options.worker_limits = true;
    let out = run_job(j, &runner, log.clone()).await;
    assert_eq!(
        (out.status, out.result),
        (JobStatus::Complete, JobResult::Failure),
        "{:?}",
        out.error
    );
    assert_eq!(out.records_failed, 2);
    assert_eq!(ys(&s1), vec![2, 4, 8, 10, 12, 16]);
    assert_eq!(runner.starts.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(out.problems[0].position, "record 3");
    assert!(
        out.problems[0].reason.contains("per-record timeout"),
        "{:?}",
        out.problems
    );
}

#[tokio::test]
async fn worker_deaths_are_survived_only_within_the_restart_budget() {
    let items = || {
        [1, 99, 3, 99, 5]
            .iter()
            .enumerate()
            .map(|(i, x)| record(i as u64 + 1, *x))
            .collect()
    };
    let sinks = || [(1, VecSink::default()), (3, VecSink::default())];
    let out = run_job(
        job(JobKind::Score, items(), &sinks(), false),
        &DoublerRunner::default(),
        Arc::new(MemoryLog::default()),
    )
    .await;
    assert_eq!(
        out.status,
        JobStatus::Error,
        "no budget: the first death ends the job"
    );
    let mut j = job(JobKind::Score, items(), &sinks(), false);
    j.options.max_worker_restarts = 1;
    let out = run_job(j, &DoublerRunner::default(), Arc::new(MemoryLog::default())).await;
    assert_eq!(
        out.status,
        JobStatus::Error,
        "the second death is over the budget"
    );
    let mut j = job(JobKind::Score, items(), &sinks(), false);
    j.options.max_worker_restarts = 2;
    let s1 = VecSink::default();
    j.outputs[0].sink = Box::new(s1.clone());
    let out = run_job(j, &DoublerRunner::default(), Arc::new(MemoryLog::default())).await;
    assert_eq!(
        (out.status, out.result),
        (JobStatus::Complete, JobResult::Failure)
    );
    assert_eq!(ys(&s1), vec![2, 6, 10]);
}

#[tokio::test]
async fn progress_counts_read_scored_failed_and_rejected_records() {
    let (s1, s3) = (VecSink::default(), VecSink::default());
    let items = vec![
        record(1, 1),
        bad(2),
        record(3, 13),
        record(4, 7),
        record(5, 5),
    ];
    let job = job(
        JobKind::Score,
        items,
        &[(1, s1.clone()), (3, s3.clone())],
        false,
    );
    let control = job.control.clone();
    assert_eq!(control.progress(), JobProgress::default());
    let out = run_job(
        job,
        &DoublerRunner::default(),
        Arc::new(MemoryLog::default()),
    )
    .await;
    assert_eq!(
        control.progress(),
        JobProgress {
            records_read: 5,
            records_scored: 3,
            records_failed: 1,
            records_rejected: 2,
            fraction: Some(1.0),
        },
        "one input rejected by encoding, one output rejected by encoding; the input read whole"
    );
    assert_eq!(out.records_failed, control.progress().records_failed);
    assert_eq!(out.records_rejected, control.progress().records_rejected);
}

/// Gives each item a receipt from its ledger (at most `max_in_flight` unsettled) and keeps
/// the fates it learns, in the order it learns them; `close` drains the rest.
struct AckingSource {
    items: std::collections::VecDeque<ReadItem>,
    acks: Acks<u64>,
    fates: Arc<Mutex<Vec<(u64, Fate)>>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl AckingSource {
    fn new(items: Vec<ReadItem>, max_in_flight: usize) -> AckingSource {
        AckingSource {
            items: items.into(),
            acks: Acks::new(max_in_flight),
            fates: Arc::default(),
            closed: Arc::default(),
        }
    }
}

#[async_trait]
impl RecordSource for AckingSource {
    async fn read_batch(&mut self, max: usize) -> runtime_core::Result<Option<Vec<ReadItem>>> {
        let mut out = Vec::new();
        let mut done = Vec::new();
        while out.len() < max {
            // Never wait for room while holding records the pipeline has not seen.
            if !self.acks.has_room() && !out.is_empty() {
                break;
            }
            let Some(mut item) = self.items.pop_front() else {
                break;
            };
            let n = item.position().record;
            *item.receipt_mut() = self.acks.track(n, &mut done).await;
            out.push(item);
        }
        done.extend(self.acks.settled());
        self.fates.lock().unwrap().extend(done);
        Ok((!out.is_empty()).then_some(out))
    }
    async fn close(&mut self, grace: std::time::Duration) -> runtime_core::Result<()> {
        let rest = self.acks.drain(grace).await;
        self.fates.lock().unwrap().extend(rest);
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    fn describe(&self) -> String {
        "acking".into()
    }
}

/// Keeps what it is given; counts flushes and finishes; fails its flushes and its finish when
/// told to.
#[derive(Clone, Default)]
struct FlushingSink {
    inner: VecSink,
    flushes: Arc<std::sync::atomic::AtomicUsize>,
    finished: Arc<std::sync::atomic::AtomicBool>,
    fail_flush: bool,
}

#[async_trait]
impl RecordSink for FlushingSink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> runtime_core::Result<Vec<Rejection>> {
        self.inner.write_batch(batch).await
    }
    async fn flush(&mut self) -> runtime_core::Result<()> {
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail_flush {
            return Err(Error::endpoint("flushing", "the broker is gone"));
        }
        Ok(())
    }
    async fn finish(&mut self) -> runtime_core::Result<SinkReport> {
        self.finished
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if self.fail_flush {
            return Err(Error::endpoint("flushing", "the broker is gone"));
        }
        Ok(SinkReport::default())
    }
    fn describe(&self) -> String {
        "flushing".into()
    }
}

fn job_with(
    kind: JobKind,
    source: AckingSource,
    sinks: &[(u32, FlushingSink)],
    batch: usize,
) -> Job {
    let mut j = job(kind, Vec::new(), &[], false);
    j.inputs[0].source = Box::new(source);
    j.outputs = sinks
        .iter()
        .map(|(s, sink)| JobOutput {
            slot: Slot(*s),
            sink: Box::new(sink.clone()),
        })
        .collect();
    j.options.batching = jobs::Batching::new(batch);
    j
}

#[tokio::test]
async fn each_record_is_acknowledged_in_order_with_its_fate_once_its_outputs_are_flushed() {
    let (s1, s3) = (FlushingSink::default(), FlushingSink::default());
    let items = vec![
        record(1, 1),
        bad(2),
        record(3, 13),
        record(4, 7),
        record(5, 5),
    ];
    let source = AckingSource::new(items, 100);
    let (fates, closed) = (source.fates.clone(), source.closed.clone());
    let out = run_job(
        job_with(
            JobKind::Score,
            source,
            &[(1, s1.clone()), (3, s3.clone())],
            3,
        ),
        &DoublerRunner::default(),
        Arc::new(MemoryLog::default()),
    )
    .await;
    assert_eq!(out.status, JobStatus::Complete);
    assert!(closed.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(
        *fates.lock().unwrap(),
        vec![
            (1, Fate::Delivered),
            (2, Fate::Rejected),
            (3, Fate::Rejected),
            (4, Fate::Rejected),
            (5, Fate::Delivered),
        ],
        "a bad input, a model failure on the record or an output the sink refuses rejects"
    );
    assert!(s1.flushes.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(s3.flushes.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn a_sink_fed_without_receipts_is_flushed_only_by_finishing() {
    let s1 = FlushingSink::default();
    let mut j = job_with(
        JobKind::Score,
        AckingSource::new(Vec::new(), 1),
        &[(1, s1.clone()), (3, FlushingSink::default())],
        3,
    );
    j.inputs[0].source = Box::new(VecSource((1..=9).map(|i| record(i, 1)).collect()));
    let out = run_job(j, &DoublerRunner::default(), Arc::new(MemoryLog::default())).await;
    assert_eq!(out.result, JobResult::Success);
    assert_eq!(s1.inner.0.lock().unwrap().len(), 9);
    assert_eq!(s1.flushes.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(s1.finished.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn a_sink_that_cannot_flush_fails_its_records_and_is_not_finished() {
    let s1 = FlushingSink {
        fail_flush: true,
        ..FlushingSink::default()
    };
    let source = AckingSource::new((1..=5).map(|i| record(i, 1)).collect(), 100);
    let fates = source.fates.clone();
    let out = run_job(
        job_with(
            JobKind::Score,
            source,
            &[(1, s1.clone()), (3, FlushingSink::default())],
            2,
        ),
        &DoublerRunner::default(),
        Arc::new(MemoryLog::default()),
    )
    .await;
    assert_eq!(out.status, JobStatus::Error);
    assert!(
        out.error
            .as_deref()
            .unwrap_or("")
            .contains("broker is gone"),
        "{:?}",
        out.error
    );
    assert!(!s1.finished.load(std::sync::atomic::Ordering::SeqCst));
    let fates = fates.lock().unwrap();
    assert_eq!(fates.len(), 5, "every record learns its fate: {fates:?}");
    assert!(
        fates.iter().all(|(_, f)| *f == Fate::Failed),
        "nothing is acknowledged as delivered: {fates:?}"
    );
}

#[tokio::test]
async fn a_small_ledger_slows_the_source_and_every_record_gets_through_in_order() {
    let (s1, s3) = (FlushingSink::default(), FlushingSink::default());
    let source = AckingSource::new((1..=40).map(|i| record(i, i as i64 % 5)).collect(), 2);
    let fates = source.fates.clone();
    let mut j = job_with(JobKind::Score, source, &[(1, s1.clone()), (3, s3)], 5);
    j.options.workers = 2;
    j.options.workers_explicit = true;
    let out = run_job(j, &DoublerRunner::default(), Arc::new(MemoryLog::default())).await;
    assert_eq!(out.result, JobResult::Success);
    let fates = fates.lock().unwrap();
    let expected: Vec<(u64, Fate)> = (1..=40).map(|n| (n, Fate::Delivered)).collect();
    assert_eq!(*fates, expected);
    assert_eq!(s1.inner.0.lock().unwrap().len(), 40);
}

#[tokio::test]
async fn a_metrics_job_acknowledges_its_records_only_once_its_output_is_written() {
    let ok = FlushingSink::default();
    let source = AckingSource::new((1..=7).map(|i| record(i, 1)).collect(), 100);
    let fates = source.fates.clone();
    let out = run_job(
        job_with(JobKind::Metrics, source, &[(1, ok.clone())], 3),
        &DoublerRunner::default(),
        Arc::new(MemoryLog::default()),
    )
    .await;
    assert_eq!(out.result, JobResult::Success);
    assert_eq!(fates.lock().unwrap().len(), 7);
    assert!(fates
        .lock()
        .unwrap()
        .iter()
        .all(|(_, f)| *f == Fate::Delivered));

    let broken = FlushingSink {
        fail_flush: true,
        ..FlushingSink::default()
    };
    let source = AckingSource::new((1..=7).map(|i| record(i, 1)).collect(), 100);
    let fates = source.fates.clone();
    let out = run_job(
        job_with(JobKind::Metrics, source, &[(1, broken)], 3),
        &DoublerRunner::default(),
        Arc::new(MemoryLog::default()),
    )
    .await;
    assert_eq!(out.status, JobStatus::Error);
    assert!(fates
        .lock()
        .unwrap()
        .iter()
        .all(|(_, f)| *f == Fate::Failed));
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name)
}

#[tokio::test]
async fn an_error_output_gets_one_error_record_per_refused_or_failed_record() {
    let (s1, s3, errors) = (
        FlushingSink::default(),
        FlushingSink::default(),
        FlushingSink::default(),
    );
    let items = vec![
        record(1, 1),
        bad(2),
        record(3, 13),
        record(4, 7),
        record(5, 5),
    ];
    let source = AckingSource::new(items, 100);
    let fates = source.fates.clone();
    let mut j = job_with(JobKind::Score, source, &[(1, s1.clone()), (3, s3)], 3);
    j.errors = Some(Box::new(errors.clone()));
    let out = run_job(j, &DoublerRunner::default(), Arc::new(MemoryLog::default())).await;
    assert_eq!(out.status, JobStatus::Complete);
    assert_eq!(out.result, JobResult::Failure);
    let got = errors.inner.0.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:?}");
    let by_stage = |stage: &str| {
        got.iter()
            .find(|v| field(v, "stage") == Some(&Value::from(stage)))
            .unwrap_or_else(|| panic!("no {stage} error record in {got:?}"))
            .clone()
    };
    let input = by_stage("input");
    assert_eq!(field(&input, "kind"), Some(&Value::from("encoding")));
    assert_eq!(field(&input, "record"), Some(&Value::Int(2)));
    assert_eq!(field(&input, "reason"), Some(&Value::from("not JSON")));
    let model = by_stage("model");
    assert_eq!(field(&model, "record"), Some(&Value::Int(3)));
    assert_eq!(
        field(&model, "reason"),
        Some(&Value::from("ValueError: unlucky"))
    );
    assert_eq!(
        field(&model, "traceback"),
        Some(&Value::from("Traceback..."))
    );
    let x13: runtime_core::Map = [("x", Value::Int(13))].into_iter().collect();
    assert_eq!(field(&model, "value"), Some(&Value::Map(x13)));
    let output = by_stage("output");
    assert_eq!(field(&output, "slot"), Some(&Value::Int(1)));
    assert_eq!(
        field(&output, "reason"),
        Some(&Value::from("cannot encode"))
    );
    assert!(errors.flushes.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert_eq!(
        *fates.lock().unwrap(),
        vec![
            (1, Fate::Delivered),
            (2, Fate::Rejected),
            (3, Fate::Rejected),
            (4, Fate::Rejected),
            (5, Fate::Delivered),
        ]
    );
}

#[tokio::test]
async fn records_whose_error_record_cannot_be_written_are_failed_not_acknowledged() {
    let errors = FlushingSink {
        fail_flush: true,
        ..FlushingSink::default()
    };
    let source = AckingSource::new(vec![record(1, 1), bad(2), record(3, 3)], 100);
    let fates = source.fates.clone();
    let mut j = job_with(
        JobKind::Score,
        source,
        &[(1, FlushingSink::default()), (3, FlushingSink::default())],
        3,
    );
    j.errors = Some(Box::new(errors));
    let out = run_job(j, &DoublerRunner::default(), Arc::new(MemoryLog::default())).await;
    assert_eq!(out.status, JobStatus::Error);
    assert!(
        out.error.as_deref().unwrap_or("").contains("error output"),
        "{:?}",
        out.error
    );
    assert_eq!(
        *fates.lock().unwrap(),
        vec![
            (1, Fate::Delivered),
            (2, Fate::Failed),
            (3, Fate::Delivered)
        ]
    );
}

/// Fails its first reads with a temporary error, then reads its records.
struct FlakySource {
    failures_left: u32,
    inner: VecSource,
    fatal: bool,
}

#[async_trait]
impl RecordSource for FlakySource {
    async fn read_batch(&mut self, max: usize) -> runtime_core::Result<Option<Vec<ReadItem>>> {
        if self.failures_left > 0 {
            self.failures_left -= 1;
            return Err(if self.fatal {
                Error::endpoint("flaky", "the object is corrupt")
            } else {
                Error::unavailable("flaky", "connection reset by the broker", None)
            });
        }
        self.inner.read_batch(max).await
    }
    fn describe(&self) -> String {
        "flaky".into()
    }
}

#[tokio::test]
async fn a_temporary_read_error_is_retried_and_a_fatal_one_fails_the_job() {
    let s1 = VecSink::default();
    let mut j = job(
        JobKind::Score,
        Vec::new(),
        &[(1, s1.clone()), (3, VecSink::default())],
        false,
    );
    j.inputs[0].source = Box::new(FlakySource {
        failures_left: 2,
        inner: VecSource((1..=4).map(|i| record(i, 1)).collect()),
        fatal: false,
    });
    let log = Arc::new(MemoryLog::default());
    let out = run_job(j, &DoublerRunner::default(), log.clone()).await;
    assert_eq!(out.result, JobResult::Success, "{:?}", out.error);
    assert_eq!(s1.0.lock().unwrap().len(), 4);
    let lines = log.lines();
    assert!(
        lines.iter().any(|l| l.message.contains("trying again")),
        "{lines:?}"
    );

    let mut j = job(JobKind::Score, Vec::new(), &[], false);
    j.inputs[0].source = Box::new(FlakySource {
        failures_left: 1,
        inner: VecSource(Vec::new()),
        fatal: true,
    });
    let out = run_job(j, &DoublerRunner::default(), Arc::new(MemoryLog::default())).await;
    assert_eq!(out.status, JobStatus::Error);
    assert!(
        out.error.as_deref().unwrap_or("").contains("corrupt"),
        "{:?}",
        out.error
    );
}
