//! The pipeline's bookkeeping, with in-memory endpoints and a session that doubles `x`:
//! counts, routing by slot, rejections, failures, stop-on-bad-records, a dying session.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jobs::{
    run_job, Job, JobControl, JobInput, JobKind, JobOptions, JobOutput, JobProgress, JobResult,
    JobStatus,
};
use runtime_core::{
    AllRecordsFunction, EntryPoints, Error, InitContext, Language, MemoryLog, ModelSpec, OutRecord,
    Position, ReadItem, Record, RecordFailure, RecordSink, RecordSource, Rejection, RejectionKind,
    Runner, ScoreItem, ScoreOutcome, Session, SessionConfig, SinkReport, Slot, Value,
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
                rejected.push(Rejection {
                    kind: RejectionKind::Encoding,
                    position: r.position,
                    reason: "cannot encode".into(),
                });
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
    ReadItem::Record(Record {
        value: Value::Map(v),
        position: Position::record(n),
    })
}

fn bad(n: u64) -> ReadItem {
    ReadItem::Rejected(Rejection {
        kind: RejectionKind::Encoding,
        position: Position::record(n),
        reason: "not JSON".into(),
    })
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
            .any(|l| l.contains("Record 2 on slot 0 failed: ValueError: unlucky")),
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
        },
        "one input rejected by encoding, one output rejected by encoding"
    );
    assert_eq!(out.records_failed, control.progress().records_failed);
    assert_eq!(out.records_rejected, control.progress().records_rejected);
}
