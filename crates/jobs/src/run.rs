//! The pipeline of a batch job: inputs are read ahead on their own task, the model's
//! session scores batch after batch, and each output slot is written on its own task, so
//! decoding, the model and encoding overlap.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use endpoints::StreamDescriptor;
use runtime_core::{
    AllRecordsFunction, Error as CoreError, Fate, JobLog, LogSource, OutRecord, Position,
    PrepareOptions, ReadItem, Receipt, Record, RecordSink, RecordSource, Rejection, RejectionKind,
    Runner, ScoreItem, Session, SessionConfig, Slot, Value,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::chain::{BadKind, BadRecordLog};
use crate::errors::{kind_of, ErrorRecord, Stage};
use crate::job::{
    Job, JobControl, JobKind, JobOutcome, JobResult, JobStatus, OutputReport, RecordProblem,
    SlotCounts, TrainOutput,
};
use crate::model_files;
use crate::pool::{Pool, Recovery, Scored};

/// Batches in flight between the reader, the model and each writer.
const CHANNEL_DEPTH: usize = 4;

/// Temporary read errors in a row (`Error::is_retriable`) an input survives, waiting
/// `Backoff::default()` between tries (0.1 s doubling to 5 s: about 16 s in all), before
/// the job fails on the next one.
const READ_RETRIES: u32 = 6;

/// Runs a job to its end. Never fails: whatever happens is in the outcome and the log.
pub async fn run_job(job: Job, runner: &dyn Runner, log: Arc<dyn JobLog>) -> JobOutcome {
    let started = Instant::now();
    let (log, console) = crate::console::bound(log, job.options.console_limit_bytes);
    let mut state = State::new(
        job.kind,
        job.options.failures_kept,
        log.clone(),
        job.control.clone(),
    );
    state.console = Some(console);
    let Job {
        kind,
        model,
        source_name,
        state_between_records,
        init,
        inputs,
        outputs,
        errors,
        train_output,
        env,
        options,
        control,
    } = job;
    if errors.is_some() {
        state.errors = Some(OutBatch::default());
    }

    log.info(
        LogSource::Engine,
        format!("batch job received: {} job", kind.as_str()),
    );
    log.info(
        LogSource::Engine,
        format!(
            "loading {} model {}: init={}, score={}, metrics={}, train={}",
            model.language,
            source_name,
            model.entry_points.init.as_deref().unwrap_or("-"),
            model.entry_points.score.as_deref().unwrap_or("-"),
            model.entry_points.metrics.as_deref().unwrap_or("-"),
            model.entry_points.train.as_deref().unwrap_or("-"),
        ),
    );
    for i in &inputs {
        log.info(
            LogSource::Engine,
            format!("slot {}: input {}", i.slot, i.source.describe()),
        );
    }
    for o in &outputs {
        log.info(
            LogSource::Engine,
            format!("slot {}: output {}", o.slot, o.sink.describe()),
        );
    }
    if let Some(e) = &errors {
        log.info(LogSource::Engine, format!("error output: {}", e.describe()));
    }

    let missing = match kind {
        JobKind::Score => model
            .entry_points
            .score
            .is_none()
            .then_some("score (action)"),
        JobKind::Metrics => model.entry_points.metrics.is_none().then_some("metrics"),
        JobKind::Train => model.entry_points.train.is_none().then_some("train"),
    };
    if let Some(what) = missing {
        let reason = format!(
            "the model has no {what} function: mark one with '# modelop.{}' or name it explicitly",
            match kind {
                JobKind::Score => "score",
                JobKind::Metrics => "metrics",
                JobKind::Train => "train",
            }
        );
        return state.finish_error(reason, None, Vec::new(), started);
    }

    // The model's output schemas describe what its score function yields; a metrics or
    // training function's output (a dict of figures) has no schema of its own.
    let mut options = options;
    if kind != JobKind::Score && !options.schemas.outputs.is_empty() {
        let slots: Vec<String> = options
            .schemas
            .outputs
            .keys()
            .map(|s| s.to_string())
            .collect();
        log.info(
            LogSource::Engine,
            format!(
                "the {} output is not checked against the model's output schema (slot {}): \
                 that schema describes what the score function yields",
                kind.as_str(),
                slots.join(", ")
            ),
        );
        options.schemas.outputs.clear();
    }

    // What the model needs before its workers start (its runner's own step: a Python
    // model's requirements installed), held until its workers are closed.
    let prepare = PrepareOptions {
        requirements_assets: options.requirements_assets.clone(),
        relax_requirements: options.relax_requirements,
    };
    let (model, _prepared) = match runner.prepare(&model, &prepare, &log).await {
        Ok(prepared) => (prepared.model, prepared.guard),
        Err(e) => return state.finish_error(e.to_string(), None, Vec::new(), started),
    };

    let config = SessionConfig {
        init,
        log: log.clone(),
        env,
    };
    let workers = match kind {
        JobKind::Score => {
            let slots: Vec<u32> = inputs.iter().map(|i| i.slot.0).collect();
            score_workers(slots, state_between_records, &options, &log)
        }
        JobKind::Metrics | JobKind::Train => 1,
    };
    log.info(
        LogSource::Engine,
        format!(
            "starting the model's runner ({workers} worker{})",
            if workers == 1 { "" } else { "s" }
        ),
    );
    let starts = (0..workers).map(|_| runner.start(&model, config.clone()));
    let mut sessions = Vec::with_capacity(workers);
    let mut start_error = None;
    for started in futures_util::future::join_all(starts).await {
        match started {
            Ok(s) => sessions.push(s),
            Err(e) => {
                start_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = start_error {
        let tb = traceback_of(&e);
        for s in sessions {
            let _ = s.close().await;
        }
        return state.finish_error(
            format!("model initialization failed: {e}"),
            tb,
            Vec::new(),
            started,
        );
    }
    log.info(
        LogSource::Engine,
        "state RUNNING: init succeeded".to_owned(),
    );

    let recovery = Recovery {
        runner,
        model: &model,
        config,
        restarts: runtime_core::Restarts::new(runtime_core::RestartPolicy::with_budget(Some(
            options.max_worker_restarts,
        ))),
        log: log.clone(),
        control: control.clone(),
        enabled: options.worker_limits || options.max_worker_restarts > 0,
    };
    let writers = Writers::start(outputs, errors, log.clone(), options.settle_after_records);
    let (stop_reading, stop_rx) = oneshot::channel();
    let (rx, reader) = start_reader(
        inputs,
        options.batching.size,
        control.clone(),
        stop_rx,
        log.clone(),
    );
    // Receipts of records a metrics or training function took in: settled once its outputs are.
    let mut held = Vec::new();
    let (run_result, sessions) = match kind {
        JobKind::Score => {
            score_all(
                sessions, &recovery, rx, &writers, &mut state, &options, &control,
            )
            .await
        }
        JobKind::Metrics | JobKind::Train => {
            let function = if kind == JobKind::Metrics {
                AllRecordsFunction::Metrics
            } else {
                AllRecordsFunction::Train
            };
            let mut session = sessions;
            let r = match session.first_mut() {
                Some(s) => {
                    run_all(
                        &mut **s, rx, &mut held, &writers, &mut state, &options, &control, function,
                    )
                    .await
                }
                None => Ok(()),
            };
            (r, session)
        }
    };
    drop(stop_reading);
    let restarts = recovery.restarts.deaths_replaced();
    if restarts > 0 {
        log.warn(
            LogSource::Engine,
            format!("{restarts} worker(s) were replaced after dying"),
        );
    }

    log.info(LogSource::Engine, "state FINISHING".to_owned());
    let mut close_result = Ok(());
    for session in sessions {
        if let Err(e) = session.close().await {
            close_result = Err(e);
        }
    }
    log.info(
        LogSource::Engine,
        "runner exited; state FINISHED".to_owned(),
    );
    let reports = writers.finish(&mut state).await;
    log.info(LogSource::Engine, "output flushed and closed".to_owned());
    let outputs_whole = run_result.is_ok() && state.status != JobStatus::Error;
    for receipt in held {
        if outputs_whole {
            receipt.settle(Fate::Delivered);
        }
    }
    close_sources(reader, options.close_grace, &log).await;

    if let Err(e) = run_result {
        let tb = traceback_of(&e);
        return state.finish_error(e.to_string(), tb, reports, started);
    }
    if let Err(e) = close_result {
        // The job's records are all scored: a failing `end` is worth a warning, not an error.
        log.warn(LogSource::Engine, format!("closing the model failed: {e}"));
    }
    if kind == JobKind::Train {
        let copied = {
            let work_dir = model.work_dir.clone();
            tokio::task::spawn_blocking(move || {
                copy_training_products(&work_dir, train_output.as_ref())
            })
            .await
            .unwrap_or_else(|e| {
                Err(CoreError::endpoint_caused(
                    "outputDir",
                    format!("copying the training products failed: {e}"),
                    e,
                ))
            })
        };
        match copied {
            Ok(files) => {
                if files.is_empty() {
                    // A training job's product is its files: none is a failed training,
                    // not a silent success.
                    let reason = format!(
                        "the training function wrote no file under {}/: the job has no product",
                        model_files::OUTPUT_DIR
                    );
                    log.error(LogSource::Engine, reason.clone());
                    state.error.get_or_insert(reason);
                }
                for f in &files {
                    log.info(
                        LogSource::Engine,
                        format!("training product: {}", f.display()),
                    );
                }
                state.trained_files = files;
            }
            Err(e) => return state.finish_error(e.to_string(), None, reports, started),
        }
    }
    if control.is_cancelled() {
        state.status = JobStatus::Cancelled;
        state
            .error
            .get_or_insert_with(|| "the job was cancelled".to_owned());
    }
    state.finish(reports, started)
}

/// How many workers score: the number asked for, but one for a model that reads several
/// input slots (a join: each worker would see only some of each) or keeps state between
/// records, unless the user gave the number explicitly.
fn score_workers(
    mut slots: Vec<u32>,
    state_between_records: Option<String>,
    options: &crate::job::JobOptions,
    log: &Arc<dyn JobLog>,
) -> usize {
    let asked = options.workers.max(1);
    if asked == 1 {
        return 1;
    }
    slots.sort_unstable();
    slots.dedup();
    let reason = if slots.len() > 1 {
        Some(format!(
            "the model reads {} input slots ({}), so every record must reach the same worker",
            slots.len(),
            slots
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        state_between_records.map(|why| format!("the model's {why}"))
    };
    match reason {
        None => asked,
        Some(reason) if options.workers_explicit => {
            log.warn(
                LogSource::Engine,
                format!(
                    "{asked} workers as asked, although {reason}: each worker sees only \
                     some of the records"
                ),
            );
            asked
        }
        Some(reason) => {
            log.info(
                LogSource::Engine,
                format!("one worker: {reason} (ask for more workers explicitly to override)"),
            );
            1
        }
    }
}

fn traceback_of(e: &CoreError) -> Option<String> {
    match e {
        CoreError::ModelFailed { traceback, .. } if !traceback.is_empty() => {
            Some(traceback.clone())
        }
        _ => None,
    }
}

/// Counts and notes, updated as the job goes.
struct State {
    kind: JobKind,
    log: Arc<dyn JobLog>,
    /// Where the counts are published while the job runs.
    control: Arc<JobControl>,
    inputs: BTreeMap<u32, SlotCounts>,
    outputs: BTreeMap<u32, SlotCounts>,
    failed: u64,
    problems: Vec<RecordProblem>,
    failures_kept: usize,
    error: Option<String>,
    status: JobStatus,
    trained_files: Vec<std::path::PathBuf>,
    unrouted_warned: Vec<u32>,
    bad: BadRecordLog,
    /// Error records waiting for the error output, when the job has one.
    errors: Option<OutBatch>,
    /// What the bound on the model's console dropped.
    console: Option<Arc<crate::console::ConsoleCounts>>,
}

impl State {
    fn new(
        kind: JobKind,
        failures_kept: usize,
        log: Arc<dyn JobLog>,
        control: Arc<JobControl>,
    ) -> Self {
        State {
            kind,
            log,
            control,
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            failed: 0,
            problems: Vec::new(),
            failures_kept,
            error: None,
            status: JobStatus::Complete,
            trained_files: Vec::new(),
            unrouted_warned: Vec::new(),
            bad: BadRecordLog::default(),
            errors: None,
            console: None,
        }
    }

    /// A record dealt with for good without being delivered: its error record goes to the
    /// error output with its receipt, or, without one, the receipt is settled as rejected.
    fn park(&mut self, record: impl FnOnce() -> ErrorRecord, receipt: Receipt) {
        match &mut self.errors {
            Some(q) => {
                q.0.push(record().into_value());
                q.1.push(receipt);
            }
            None => receipt.settle(Fate::Rejected),
        }
    }

    /// Counts one bad record and logs it as [`BadRecordLog`] allows.
    fn log_bad(&mut self, kind: BadKind, slot: Slot, message: impl FnOnce() -> String) {
        self.bad.record(self.log.as_ref(), kind, slot, message);
    }

    fn note(&mut self, slot: Slot, position: String, reason: String) {
        if self.problems.len() < self.failures_kept {
            self.problems.push(RecordProblem {
                slot: slot.0,
                position,
                reason,
            });
        }
    }

    fn input_rejected(&mut self, slot: Slot, r: &Rejection) {
        let counts = self.inputs.entry(slot.0).or_default();
        bump(counts, r.kind);
        self.control.add_rejected(1);
        self.log_bad(BadKind::InputRejected, slot, || {
            format!(
                "Record rejected by {}: {} (input slot {slot}, {})",
                r.kind.as_str(),
                r.reason,
                r.position
            )
        });
        self.note(
            slot,
            r.position.to_string(),
            format!("input record rejected by {}: {}", r.kind.as_str(), r.reason),
        );
    }

    fn output_rejected(&mut self, slot: Slot, r: &Rejection) {
        self.output_rejected_at(slot, r, format!("output {}", r.position));
    }

    /// `at` says where the record stands: its output number, or the input it came from.
    fn output_rejected_at(&mut self, slot: Slot, r: &Rejection, at: String) {
        let counts = self.outputs.entry(slot.0).or_default();
        bump(counts, r.kind);
        self.control.add_rejected(1);
        self.log_bad(BadKind::OutputRejected, slot, || {
            format!(
                "Output record rejected by {}: {} (output slot {slot}, {at})",
                r.kind.as_str(),
                r.reason
            )
        });
        self.note(
            slot,
            at,
            format!(
                "output record rejected by {}: {}",
                r.kind.as_str(),
                r.reason
            ),
        );
    }

    fn totals(&self) -> (u64, u64, u64) {
        let records_in = self.inputs.values().map(|c| c.records).sum();
        let records_out = self.outputs.values().map(|c| c.records).sum();
        let rejected = self
            .inputs
            .values()
            .chain(self.outputs.values())
            .map(SlotCounts::rejected)
            .sum();
        (records_in, records_out, rejected)
    }

    fn finish_error(
        mut self,
        reason: String,
        traceback: Option<String>,
        reports: Vec<OutputReport>,
        started: Instant,
    ) -> JobOutcome {
        let mut message = format!("job ended in ERROR: {reason}");
        if let Some(tb) = &traceback {
            message.push('\n');
            message.push_str(tb);
        }
        self.log.error(LogSource::Engine, message);
        self.status = JobStatus::Error;
        self.error = Some(reason);
        let mut out = self.finish(reports, started);
        out.traceback = traceback;
        out
    }

    fn finish(self, output_reports: Vec<OutputReport>, started: Instant) -> JobOutcome {
        self.bad.log_totals(self.log.as_ref());
        if let Some((lines, bytes)) = self
            .console
            .as_ref()
            .map(|c| c.dropped())
            .filter(|&(lines, _)| lines > 0)
        {
            self.log.warn(
                LogSource::Engine,
                format!("the model's console: {lines} line(s), {bytes} bytes, dropped past the job's limit"),
            );
        }
        let (records_in, records_out, records_rejected) = self.totals();
        let result = if self.status == JobStatus::Complete
            && self.failed == 0
            && records_rejected == 0
            && self.error.is_none()
        {
            JobResult::Success
        } else {
            JobResult::Failure
        };
        let outcome = JobOutcome {
            kind: self.kind,
            status: self.status,
            result,
            records_in,
            records_out,
            records_rejected,
            records_failed: self.failed,
            inputs: self.inputs,
            outputs: self.outputs,
            problems: self.problems,
            error: self.error,
            traceback: None,
            output_reports,
            trained_files: self.trained_files,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        self.log.info(
            LogSource::Engine,
            format!(
                "batch job {}: status {}, result {}. Records in/out: {}/{} ({} rejected, {} failed)",
                if outcome.status == JobStatus::Error { "failed" } else { "complete" },
                outcome.status.as_str(),
                outcome.result.as_str(),
                outcome.records_in,
                outcome.records_out,
                outcome.records_rejected,
                outcome.records_failed
            ),
        );
        outcome
    }
}

fn bump(counts: &mut SlotCounts, kind: RejectionKind) {
    match kind {
        RejectionKind::Encoding => counts.rejected_by_encoding += 1,
        RejectionKind::Schema => counts.rejected_by_schema += 1,
        RejectionKind::Size => counts.rejected_by_size += 1,
    }
}

/// The reader's batches, and its task handing the sources back when it ends.
type Reader = (
    mpsc::Receiver<Result<InBatch, CoreError>>,
    JoinHandle<Vec<Box<dyn RecordSource>>>,
);

/// One batch read from an input.
struct InBatch {
    slot: Slot,
    items: Vec<ReadItem>,
}

/// Reads every input in order, a batch at a time, ahead of the model, until the inputs end,
/// the job is cancelled, `stop` fires (or its sender is dropped: the pipeline is done) or
/// the pipeline stops taking batches. The task hands the sources back, to be closed once
/// every receipt is settled.
fn start_reader(
    inputs: Vec<crate::job::JobInput>,
    batch_size: usize,
    control: Arc<JobControl>,
    mut stop: oneshot::Receiver<()>,
    log: Arc<dyn JobLog>,
) -> Reader {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let handle = tokio::spawn(async move {
        let mut sources = Vec::with_capacity(inputs.len());
        let mut reading = true;
        let backoff = runtime_core::Backoff::default();
        control.inputs(inputs.len());
        for (index, mut input) in inputs.into_iter().enumerate() {
            control.input_read(index, input.source.progress());
            let mut failures = 0u32;
            while reading {
                if control.is_cancelled() {
                    reading = false;
                    break;
                }
                let read = tokio::select! {
                    biased;
                    _ = &mut stop => {
                        reading = false;
                        break;
                    }
                    read = input.source.read_batch(batch_size) => read,
                };
                if !matches!(read, Err(ref e) if e.is_retriable()) {
                    failures = 0;
                }
                match read {
                    // An unbounded source with nothing new within its linger time.
                    Ok(Some(items)) if items.is_empty() => {}
                    Err(e) if e.is_retriable() && failures < READ_RETRIES => {
                        failures += 1;
                        let wait = backoff.delay(failures);
                        log.warn(
                            LogSource::Engine,
                            format!(
                                "input {}: {e}; trying again in {} ms ({failures} of {READ_RETRIES})",
                                input.source.describe(),
                                wait.as_millis()
                            ),
                        );
                        tokio::select! {
                            biased;
                            _ = &mut stop => {
                                reading = false;
                                break;
                            }
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    Ok(Some(items)) => {
                        control.add_read(items.len() as u64);
                        control.input_read(index, input.source.progress());
                        let batch = InBatch {
                            slot: input.slot,
                            items,
                        };
                        if tx.send(Ok(batch)).await.is_err() {
                            reading = false;
                        }
                    }
                    Ok(None) => {
                        control.input_read(index, Some(1.0));
                        break;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        reading = false;
                    }
                }
            }
            sources.push(input.source);
        }
        sources
    });
    (rx, handle)
}

/// Closes the inputs once the outputs are finished (every receipt settled or dropped), so
/// each acknowledges what it can; a failure to acknowledge is logged (records may then be
/// read again, never lost).
async fn close_sources(
    reader: JoinHandle<Vec<Box<dyn RecordSource>>>,
    grace: std::time::Duration,
    log: &Arc<dyn JobLog>,
) {
    let sources = match reader.await {
        Ok(sources) => sources,
        Err(e) => {
            log.error(LogSource::Engine, format!("the input reader failed: {e}"));
            return;
        }
    };
    for mut source in sources {
        if let Err(e) = source.close(grace).await {
            log.warn(
                LogSource::Engine,
                format!("closing input {}: {e}", source.describe()),
            );
        }
    }
}

/// Splits a read batch into the records for the model and the rejections (counted and
/// logged here). Returns `true` if the job must stop (a rejection with stop-on-bad-records).
fn take_records(
    mut batch: InBatch,
    state: &mut State,
    options: &crate::job::JobOptions,
    mut keep: impl FnMut(Record),
) -> bool {
    let stop_on_bad = options.stop_on_bad_records;
    let mut stop = false;
    let counts_slot = batch.slot;
    options
        .schemas
        .screen_inputs(batch.slot, &mut batch.items, options.show_rejected_records);
    for item in batch.items {
        match item {
            ReadItem::Record(r) => {
                state.inputs.entry(counts_slot.0).or_default().records += 1;
                keep(r);
            }
            ReadItem::Rejected(mut r) => {
                state.input_rejected(counts_slot, &r);
                if stop_on_bad {
                    state.error = Some(format!(
                        "stopped at the first bad record (slot {counts_slot}, {}): {}",
                        r.position, r.reason
                    ));
                    stop = true;
                }
                let receipt = std::mem::take(&mut r.receipt);
                state.park(
                    move || ErrorRecord {
                        bytes: r.raw.map(Vec::from),
                        ..ErrorRecord::new(
                            Stage::Input,
                            kind_of(r.kind),
                            counts_slot,
                            r.position,
                            r.reason,
                        )
                    },
                    receipt,
                );
                if stop {
                    break;
                }
            }
        }
    }
    stop
}

async fn score_all(
    sessions: Vec<Box<dyn Session>>,
    recovery: &Recovery<'_>,
    mut rx: mpsc::Receiver<Result<InBatch, CoreError>>,
    writers: &Writers,
    state: &mut State,
    options: &crate::job::JobOptions,
    control: &Arc<JobControl>,
) -> (Result<(), CoreError>, Vec<Box<dyn Session>>) {
    let mut pool = Pool::new(sessions, recovery);
    // What each batch in the pool keeps, by its first seqno: its records' positions (a
    // failure names the record as its input numbers it), their receipts when a source waits
    // on them, and their values when the job has an error output.
    let mut kept: BTreeMap<u64, Kept> = BTreeMap::new();
    let keep_values = state.errors.is_some();
    let mut seqno: u64 = 0;
    let mut input_done = false;
    let mut result = Ok(());
    loop {
        let feeding = !input_done && result.is_ok() && pool.has_idle();
        if feeding {
            tokio::select! {
                biased;
                r = pool.complete_one(), if pool.busy() => {
                    if let Err(e) = r {
                        result = Err(e);
                    }
                }
                batch = rx.recv() => match batch {
                    None => input_done = true,
                    Some(Err(e)) => result = Err(e),
                    Some(Ok(batch)) => {
                        let slot = batch.slot;
                        let mut items = Vec::with_capacity(batch.items.len());
                        let mut batch_kept = Kept::default();
                        let mut tracked = false;
                        let stop = take_records(batch, state, options, |r| {
                            seqno += 1;
                            tracked |= r.receipt.is_tracked();
                            batch_kept.receipts.push(r.receipt);
                            batch_kept.positions.push(r.position);
                            if keep_values {
                                batch_kept.values.push(r.value.clone());
                            }
                            items.push(ScoreItem { slot, seqno, value: r.value });
                        });
                        if !tracked {
                            batch_kept.receipts.clear();
                        }
                        if let Some(first) = items.first() {
                            kept.insert(first.seqno, batch_kept);
                            pool.submit(slot, items);
                        }
                        writers.send_errors(state).await;
                        if stop || control.is_cancelled() {
                            input_done = true;
                        }
                    }
                },
            }
        } else if pool.busy() {
            if let Err(e) = pool.complete_one().await {
                result = result.and(Err(e));
            }
        } else {
            break;
        }
        for scored in pool.ready() {
            let batch_kept = kept.remove(&scored.first_seqno).unwrap_or_default();
            emit(scored, batch_kept, writers, state, options).await;
        }
    }
    // Batches still read ahead, and those whose scoring failed, are dropped with their
    // receipts: failed, never acknowledged.
    drop(rx);
    (result, pool.into_sessions().await)
}

/// Checks the values yielded to output `slot` against its schema (conforming them), as a
/// deployment's answers are; a rejection is counted and logged (`at` says where the value
/// at an index came from), and the value dropped.
/// `receipts` (empty, or one per value) loses the receipts of the rejected values, settled
/// as rejected.
fn screen_outputs(
    slot: Slot,
    values: &mut Vec<Value>,
    receipts: &mut Vec<Receipt>,
    state: &mut State,
    options: &crate::job::JobOptions,
    at: impl Fn(usize) -> (String, u64),
) {
    let rejections = options
        .schemas
        .screen_outputs(slot, values, options.show_rejected_records);
    if rejections.is_empty() {
        return;
    }
    // The receipts of the rejected values, in the rejections' order.
    let mut refused = take_refused(receipts, rejections.iter().map(|r| r.index)).into_iter();
    for r in rejections {
        let (text, record) = at(r.index);
        let rejection = Rejection::new(RejectionKind::Schema, Position::default(), r.reason);
        state.output_rejected_at(slot, &rejection, text);
        let reason = rejection.reason;
        state.park(
            || {
                ErrorRecord::new(
                    Stage::Output,
                    "schema",
                    slot,
                    Position::record(record),
                    reason,
                )
            },
            refused.next().unwrap_or_default(),
        );
    }
}

/// One output slot's share of a scored batch: the values, the number in its input of the
/// record that yielded each, and their receipts (empty when no source waits on them).
#[derive(Default)]
struct Routed {
    values: Vec<Value>,
    records: Vec<u64>,
    receipts: Vec<Receipt>,
}

/// What a batch in the pool keeps for when it is scored (see `score_all`).
#[derive(Default)]
struct Kept {
    receipts: Vec<Receipt>,
    positions: Vec<Position>,
    values: Vec<Value>,
}

/// Writes one scored batch and logs its failed records. `kept.receipts` is empty, or holds
/// the receipt of each record of the batch: split among its outputs, settled as delivered
/// when it has none, parked (rejected) when the model failed on it.
async fn emit(
    scored: Scored,
    kept: Kept,
    writers: &Writers,
    state: &mut State,
    options: &crate::job::JobOptions,
) {
    let Scored {
        slot,
        first_seqno,
        outcomes,
    } = scored;
    let tracked = !kept.receipts.is_empty();
    let mut held = kept.receipts.into_iter();
    let mut positions = kept.positions.into_iter();
    let mut values = kept.values.into_iter();
    let mut routed: BTreeMap<Slot, Routed> = BTreeMap::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let receipt = held.next().unwrap_or_default();
        let position = positions
            .next()
            .unwrap_or_else(|| Position::record(first_seqno + i as u64));
        let value = values.next();
        // The record's number in its input (rejected records counted), as every message
        // about it says.
        let n = position.record;
        match outcome {
            Ok(outs) => {
                state.control.add_scored(1);
                let mut shares = receipt.split(if tracked { outs.len() } else { 0 });
                for (out_slot, v) in outs {
                    let r = routed.entry(out_slot).or_default();
                    r.values.push(v);
                    r.records.push(n);
                    if let Some(share) = shares.pop() {
                        r.receipts.push(share);
                    }
                }
            }
            Err(f) => {
                state.failed += 1;
                state.control.add_failed(1);
                let (message, traceback) = (f.message.clone(), f.traceback.clone());
                state.park(
                    || ErrorRecord {
                        traceback: (!traceback.is_empty()).then_some(traceback),
                        value,
                        ..ErrorRecord::new(Stage::Model, "model", slot, position, message)
                    },
                    receipt,
                );
                state.log_bad(BadKind::Failed, slot, || {
                    let mut msg = format!("Record {n} on slot {slot} failed: {}", f.message);
                    if !f.traceback.is_empty() {
                        msg.push('\n');
                        msg.push_str(f.traceback.trim_end());
                    }
                    msg
                });
                state.note(slot, format!("record {n}"), f.message);
            }
        }
    }
    for (out_slot, mut r) in routed {
        let records = &r.records;
        screen_outputs(
            out_slot,
            &mut r.values,
            &mut r.receipts,
            state,
            options,
            |i| (format!("output of record {}", records[i]), records[i]),
        );
        if !r.values.is_empty() {
            writers.send(out_slot, r.values, r.receipts, state).await;
        }
    }
    writers.send_errors(state).await;
}

/// Feeds every record to a metrics or training function, then calls it. The receipts of
/// the records it took go to `held`, settled by the caller once the outputs are finished.
#[allow(clippy::too_many_arguments)]
async fn run_all(
    session: &mut dyn Session,
    mut rx: mpsc::Receiver<Result<InBatch, CoreError>>,
    held: &mut Vec<Receipt>,
    writers: &Writers,
    state: &mut State,
    options: &crate::job::JobOptions,
    control: &Arc<JobControl>,
    function: AllRecordsFunction,
) -> Result<(), CoreError> {
    let mut stopped = false;
    while let Some(batch) = rx.recv().await {
        let batch = batch?;
        let slot = batch.slot;
        let mut values = Vec::with_capacity(batch.items.len());
        let stop = take_records(batch, state, options, |r| {
            values.push(r.value);
            if r.receipt.is_tracked() {
                held.push(r.receipt);
            }
        });
        writers.send_errors(state).await;
        if !values.is_empty() {
            let n = values.len() as u64;
            session.collect(slot, values).await?;
            state.control.add_scored(n);
        }
        if stop || control.is_cancelled() {
            stopped = true;
            break;
        }
    }
    drop(rx);
    if stopped {
        return Ok(());
    }
    state.log.info(
        LogSource::Engine,
        format!("all input read; calling the {} function", function.as_str()),
    );
    let outputs = session.run_all(function).await?;
    // Each slot's values, with the number of each among the function's outputs.
    let mut routed: BTreeMap<Slot, (Vec<Value>, Vec<usize>)> = BTreeMap::new();
    for (i, (slot, v)) in outputs.into_iter().enumerate() {
        let (values, numbers) = routed.entry(slot).or_default();
        values.push(v);
        numbers.push(i + 1);
    }
    for (slot, (mut values, numbers)) in routed {
        screen_outputs(slot, &mut values, &mut Vec::new(), state, options, |i| {
            (
                format!("output {} of {}", numbers[i], function.as_str()),
                numbers[i] as u64,
            )
        });
        if !values.is_empty() {
            writers.send(slot, values, Vec::new(), state).await;
        }
    }
    writers.send_errors(state).await;
    Ok(())
}

/// Values on their way to one sink, with their receipts (empty, or one per value).
type OutBatch = (Vec<Value>, Vec<Receipt>);

/// The output side: a task per output slot, each owning its sink, and one for the error
/// output when the job has one.
struct Writers {
    senders: BTreeMap<Slot, mpsc::Sender<OutBatch>>,
    tasks: Vec<(Slot, JoinHandle<WriterResult>)>,
    errors: Option<(mpsc::Sender<OutBatch>, JoinHandle<WriterResult>)>,
}

/// What a writer writes: a slot's outputs (the records its sink refuses go to the error
/// output when there is one), or the error records.
enum Writes {
    Outputs {
        slot: Slot,
        errors: Option<mpsc::Sender<OutBatch>>,
    },
    Errors,
}

struct WriterResult {
    written: u64,
    rejections: Vec<Rejection>,
    report: Result<runtime_core::SinkReport, CoreError>,
}

impl Writers {
    fn start(
        outputs: Vec<crate::job::JobOutput>,
        errors: Option<Box<dyn RecordSink>>,
        log: Arc<dyn JobLog>,
        settle_after: usize,
    ) -> Writers {
        let errors = errors.map(|sink| {
            let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
            let task = tokio::spawn(write_loop(
                sink,
                rx,
                log.clone(),
                Writes::Errors,
                settle_after,
            ));
            (tx, task)
        });
        let mut senders = BTreeMap::new();
        let mut tasks = Vec::new();
        for out in outputs {
            let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
            senders.insert(out.slot, tx);
            let writes = Writes::Outputs {
                slot: out.slot,
                errors: errors.as_ref().map(|(tx, _)| tx.clone()),
            };
            let task = tokio::spawn(write_loop(out.sink, rx, log.clone(), writes, settle_after));
            tasks.push((out.slot, task));
        }
        Writers {
            senders,
            tasks,
            errors,
        }
    }

    /// Sends the error records `state` gathered to the error output.
    async fn send_errors(&self, state: &mut State) {
        let Some(q) = state.errors.as_mut().filter(|q| !q.0.is_empty()) else {
            return;
        };
        let batch = std::mem::take(q);
        if let Some((tx, _)) = &self.errors {
            // An error output that stopped reports why at finish; its receipts fail.
            let _ = tx.send(batch).await;
        }
    }

    /// Sends `values` to `slot`'s writer. Values for a slot without one are counted as
    /// failed and parked (the error output, or their receipts settled as rejected).
    async fn send(
        &self,
        slot: Slot,
        values: Vec<Value>,
        receipts: Vec<Receipt>,
        state: &mut State,
    ) {
        match self.senders.get(&slot) {
            Some(tx) => {
                // A writer that stopped (its destination failed) reports why at finish; the
                // batch it did not take fails its receipts as it drops.
                let _ = tx.send((values, receipts)).await;
            }
            None => {
                let n = values.len() as u64;
                state.failed += n;
                state.control.add_failed(n);
                let reason =
                    format!("the model yielded to slot {slot}, which has no output attached");
                if !state.unrouted_warned.contains(&slot.0) {
                    state.unrouted_warned.push(slot.0);
                    state.log.error(LogSource::Engine, reason.clone());
                    state.note(slot, "output".to_owned(), reason.clone());
                }
                let mut receipts = receipts.into_iter();
                for value in values {
                    let reason = reason.clone();
                    state.park(
                        || ErrorRecord {
                            value: Some(value),
                            ..ErrorRecord::new(
                                Stage::Output,
                                "unrouted",
                                slot,
                                Position::default(),
                                reason,
                            )
                        },
                        receipts.next().unwrap_or_default(),
                    );
                }
            }
        }
    }

    async fn finish(self, state: &mut State) -> Vec<OutputReport> {
        self.send_errors(state).await;
        drop(self.senders);
        let mut reports = Vec::new();
        for (slot, task) in self.tasks {
            let res = match task.await {
                Ok(r) => r,
                Err(e) => WriterResult {
                    written: 0,
                    rejections: Vec::new(),
                    report: Err(CoreError::endpoint_caused(
                        format!("output slot {slot}"),
                        format!("writer task failed: {e}"),
                        e,
                    )),
                },
            };
            state.outputs.entry(slot.0).or_default().records += res.written;
            for r in &res.rejections {
                state.output_rejected(slot, r);
            }
            match res.report {
                Ok(rep) => reports.push(OutputReport {
                    slot: slot.0,
                    location: rep.location,
                    records: res.written,
                }),
                Err(e) => {
                    state
                        .log
                        .error(LogSource::Engine, format!("output slot {slot}: {e}"));
                    state.status = JobStatus::Error;
                    state
                        .error
                        .get_or_insert_with(|| format!("output slot {slot}: {e}"));
                }
            }
        }
        // The output writers have ended, and with them their senders to the error output.
        if let Some((tx, task)) = self.errors {
            drop(tx);
            let res = task.await.unwrap_or_else(|e| WriterResult {
                written: 0,
                rejections: Vec::new(),
                report: Err(CoreError::endpoint_caused(
                    "error output",
                    format!("writer task failed: {e}"),
                    e,
                )),
            });
            for r in &res.rejections {
                state.log.error(
                    LogSource::Engine,
                    format!("error output: an error record could not be written: {r}"),
                );
            }
            match res.report {
                Ok(rep) => state.log.info(
                    LogSource::Engine,
                    format!(
                        "error output: {} error record(s) written to {}",
                        res.written,
                        rep.location.as_deref().unwrap_or("its sink")
                    ),
                ),
                Err(e) => {
                    state
                        .log
                        .error(LogSource::Engine, format!("error output: {e}"));
                    state.status = JobStatus::Error;
                    state
                        .error
                        .get_or_insert_with(|| format!("error output: {e}"));
                }
            }
        }
        reports
    }
}

/// Writes each batch to `sink`. When a source waits on the batch's records, the sink is
/// flushed after it and the receipts settled: delivered once the flush succeeds, rejected
/// for the values the sink refused; a failed write or flush drops them (failed) and ends the
/// writer without finishing the sink.
async fn write_loop(
    mut sink: Box<dyn RecordSink>,
    mut rx: mpsc::Receiver<OutBatch>,
    log: Arc<dyn JobLog>,
    writes: Writes,
    settle_after: usize,
) -> WriterResult {
    let mut next: u64 = 0;
    let mut written: u64 = 0;
    let mut rejections = Vec::new();
    let mut unsettled = Unsettled::default();
    let fail = |e: CoreError, written, rejections, sink: &dyn RecordSink| {
        log.error(LogSource::Engine, format!("{}: {e}", sink.describe()));
        WriterResult {
            written,
            rejections,
            report: Err(e),
        }
    };
    while let Some((values, receipts)) = rx.recv().await {
        let n = values.len() as u64;
        let first = next + 1;
        let batch = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                next += 1;
                OutRecord {
                    value,
                    position: Position::record(next),
                    meta: receipts.get(i).and_then(|r| r.meta().cloned()),
                }
            })
            .collect();
        let rej = match sink.write_batch(batch).await {
            Ok(rej) => rej,
            Err(e) => return fail(e, written, rejections, &*sink),
        };
        written += n - rej.len() as u64;
        rejections.extend(rej.iter().cloned());
        if let Some((receipts, rej)) = unsettled.hold(first, n as usize, receipts, rej) {
            if let Err(e) = settle_batch(&mut *sink, receipts, first, &rej, &writes).await {
                return fail(e, written, rejections, &*sink);
            }
        }
        // One flush for every batch that came while this one was written.
        if rx.is_empty() || unsettled.len() >= settle_after {
            if let Some(h) = unsettled.take() {
                if let Err(e) =
                    settle_batch(&mut *sink, h.receipts, h.first, &h.refused, &writes).await
                {
                    return fail(e, written, rejections, &*sink);
                }
            }
        }
    }
    if let Some(h) = unsettled.take() {
        if let Err(e) = settle_batch(&mut *sink, h.receipts, h.first, &h.refused, &writes).await {
            return fail(e, written, rejections, &*sink);
        }
    }
    WriterResult {
        written,
        rejections,
        report: sink.finish().await,
    }
}

/// Settles the receipts of a batch written to an output, given the sink's rejections: the
/// refused outputs are parked (their error records, with their receipts, go to the error
/// output when there is one, settled there; else their receipts are settled as rejected).
/// The error output's own records settle as rejected: what they stand for was not
/// delivered.
async fn settle_batch(
    sink: &mut dyn RecordSink,
    receipts: Vec<Receipt>,
    first: u64,
    rejected: &[Rejection],
    writes: &Writes,
) -> Result<(), CoreError> {
    let (slot, errors, delivered) = match writes {
        Writes::Outputs { slot, errors } => (*slot, errors.as_ref(), Fate::Delivered),
        Writes::Errors => (Slot::default(), None, Fate::Rejected),
    };
    let refused = settle_written(sink, receipts, first, rejected, delivered).await?;
    let Some(tx) = errors.filter(|_| !rejected.is_empty()) else {
        for receipt in refused {
            receipt.settle(Fate::Rejected);
        }
        return Ok(());
    };
    let values = rejected
        .iter()
        .map(|r| {
            ErrorRecord::new(
                Stage::Output,
                kind_of(r.kind),
                slot,
                r.position.clone(),
                r.reason.clone(),
            )
            .into_value()
        })
        .collect();
    let receipts = if refused.iter().any(Receipt::is_tracked) {
        refused
    } else {
        Vec::new()
    };
    // An error output that stopped reports why at finish; these receipts then fail.
    let _ = tx.send((values, receipts)).await;
    Ok(())
}

/// The receipts of batches a writer wrote and has not flushed yet, settled together at its
/// next flush (a group commit: an acknowledging sink's flush is a round trip to its server,
/// paid once for every batch that came while the writer wrote). Batch jobs' writers and a
/// deployed model's output streams both hold their receipts here.
#[derive(Debug, Default)]
pub struct Unsettled {
    held: Option<Held>,
}

/// Batches held: the first one's output number, a receipt per record written since (none
/// for a batch no source waits on), what the sink refused among them.
#[derive(Debug)]
pub struct Held {
    pub first: u64,
    pub receipts: Vec<Receipt>,
    pub refused: Vec<Rejection>,
}

impl Unsettled {
    /// Holds a batch of `n` outputs written from number `first` on, its `receipts` (empty,
    /// or one per output) and the sink's rejections, when it or a batch held before it
    /// carries a receipt; otherwise hands them back (nothing waits on them).
    pub fn hold(
        &mut self,
        first: u64,
        n: usize,
        receipts: Vec<Receipt>,
        refused: Vec<Rejection>,
    ) -> Option<(Vec<Receipt>, Vec<Rejection>)> {
        let tracked = receipts.iter().any(Receipt::is_tracked);
        if !tracked && self.held.is_none() {
            return Some((receipts, refused));
        }
        let held = self.held.get_or_insert_with(|| Held {
            first,
            receipts: Vec::new(),
            refused: Vec::new(),
        });
        if tracked {
            held.receipts.extend(receipts);
        } else {
            held.receipts.extend((0..n).map(|_| Receipt::none()));
        }
        held.refused.extend(refused);
        None
    }

    /// Outputs whose receipts are held.
    pub fn len(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.receipts.len())
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_none()
    }

    /// What is held, for [`settle_written`] after a flush.
    pub fn take(&mut self) -> Option<Held> {
        self.held.take()
    }
}

/// Settles the receipts of a batch `sink` took, written from output number `first` on,
/// given the outputs the sink `rejected` (by their position): when any receipt is tracked
/// the sink is flushed first, then the written outputs' receipts are settled as
/// `delivered`. Returns the receipts of the refused outputs, one per rejection in order,
/// for the caller to settle as rejected or to park with an error record. `receipts` is
/// empty (nothing waits on the batch: no flush) or holds one receipt per output.
///
/// A failed flush is returned: the receipts are dropped unsettled, which counts as failed,
/// and the caller must not finish the sink. Batch jobs and a deployed model's streams
/// settle their outputs through this one function.
pub async fn settle_written(
    sink: &mut dyn RecordSink,
    receipts: Vec<Receipt>,
    first: u64,
    rejected: &[Rejection],
    delivered: Fate,
) -> Result<Vec<Receipt>, CoreError> {
    if !receipts.iter().any(Receipt::is_tracked) {
        return Ok(rejected.iter().map(|_| Receipt::none()).collect());
    }
    sink.flush().await?;
    let mut receipts = receipts.into_iter();
    let mut refused = Vec::with_capacity(rejected.len());
    let mut n = first;
    for r in rejected {
        // Receipts of the outputs written before this refused one.
        while n < r.position.record {
            if let Some(receipt) = receipts.next() {
                receipt.settle(delivered);
            }
            n += 1;
        }
        refused.push(receipts.next().unwrap_or_default());
        n += 1;
    }
    for receipt in receipts {
        receipt.settle(delivered);
    }
    Ok(refused)
}

/// Takes the receipts at the `refused` indices (ascending, as a schema screen reports them)
/// out of `receipts`, empty or one per value of a batch, and returns them in that order;
/// the others stay, in order, beside the values kept.
pub fn take_refused(
    receipts: &mut Vec<Receipt>,
    refused: impl IntoIterator<Item = usize>,
) -> Vec<Receipt> {
    let mut taken = Vec::new();
    if receipts.is_empty() {
        return taken;
    }
    let mut refused = refused.into_iter().peekable();
    let mut kept = Vec::with_capacity(receipts.len());
    for (index, receipt) in receipts.drain(..).enumerate() {
        if refused.next_if_eq(&index).is_some() {
            taken.push(receipt);
        } else {
            kept.push(receipt);
        }
    }
    *receipts = kept;
    taken
}

/// Copies what training wrote under `outputDir/` to `dest` (when given) and lists it.
fn copy_training_products(
    work_dir: &Path,
    dest: Option<&TrainOutput>,
) -> Result<Vec<std::path::PathBuf>, CoreError> {
    let out_dir = work_dir.join(model_files::OUTPUT_DIR);
    let files = model_files::list_files(&out_dir)
        .map_err(|e| CoreError::endpoint_source("outputDir", e))?;
    if let Some(dest) = dest {
        let folder = &dest.folder;
        for rel in &files {
            let rel_text = rel.to_string_lossy().replace('\\', "/");
            // `plan::build` refused a folder that has no children.
            let transport = folder.transport.child(&rel_text).ok_or_else(|| {
                CoreError::endpoint(folder.shown(), "training products go to a folder")
            })?;
            let target = StreamDescriptor::new(transport, codecs::Encoding::Raw);
            dest.registry
                .store_file(&target, &out_dir.join(rel))
                .map_err(|e| {
                    CoreError::endpoint_caused(
                        target.shown(),
                        format!("cannot store the training product {rel_text}: {e}"),
                        e,
                    )
                })?;
        }
    }
    Ok(files)
}
