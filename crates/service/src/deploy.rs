//! A deployed model: warm worker sessions (`score_workers`, each with its own loop) fed by
//! one bounded queue of scoring requests, so requests go to whichever worker is free.
//!
//! A REST body goes through [`Deployment::score_message`]: decoded by its slot's codec
//! (built once at deploy time, the slot's schema attached), screened by the input slot's
//! schema as a batch job's records are (`jobs::chain::screen_record`), scored, the answer
//! slot's yields screened by its schema (`SlotSchemas::screen_outputs`, as a batch job's
//! outputs) and encoded. Every rejection and every yield to a slot the request did not ask
//! for is counted per slot and logged as a job's bad records are (`BadRecordLog`).
//!
//! Streams attached to its slots ([`streams`], the REST transport in `rest`) take the same
//! steps, shared with `score_message` (`take_input`, the queue through `enqueue`,
//! `route_yields`, `screen_yields`), their own codecs decoding and encoding.
//!
//! A request's records are one entry of the queue ([`Deployment::score_values`]), whose
//! bound counts records. Entries waiting when a worker becomes free go to it together as
//! one batch (its `Batching`, the deployment document's or the engine's: entries are taken
//! while the batch holds fewer than `scoreBatchMax` records, waiting up to
//! `scoreBatchWaitMs` for more, and never split), so concurrency costs no extra round trips
//! and a request's records reach a record-set model in one call. A full queue refuses new requests (503) instead
//! of growing. A worker that dies fails the requests of its batch with a clear error and is
//! restarted and re-initialized before the next batch, under the deployment's
//! [`RestartPolicy`] (the one batch jobs use too).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codecs::{CodecConfig, Encoding, Framing};
use jobs::chain::{screen_record, BadKind, BadRecordLog};
use jobs::{Batching, SlotCounts};
use runtime_core::{
    Fate, JobLog, LogSource, ModelSpec, Position, Receipt, RecordFailure, RejectionKind,
    RestartPolicy, Restarts, Runner, ScoreItem, Session, SessionConfig, Slot, Value,
};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};
use crate::joblog::RingLog;

mod lifecycle;
mod rest;
pub mod streams;
pub(crate) use lifecycle::{
    attach_stream, checked_stream, deploy_document, deployment_uploads_root, detach_stream,
    prune_deployment_uploads, undeploy,
};
pub use lifecycle::{restore_deployment, take_deployment};
pub use rest::REST_QUEUE_BOUND;
pub(crate) use rest::{Posted, Taken};

/// Why a model could not be deployed or undeployed: the library's error, with no HTTP in
/// it (`error::Error::status` answers it, as every error of the service).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The document or its model cannot be deployed as they are: an encoding without what
    /// it needs, schemas that do not resolve, no score function, requirements that do not
    /// install.
    #[error("{0}")]
    Refused(String),
    /// The model's workers could not start: its code did not load or its init raised.
    #[error(transparent)]
    Model(runtime_core::Error),
    /// The engine is stopping and takes no new deployment.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// Nothing is deployed (nor failed to deploy).
    #[error("no model is deployed")]
    NoDeployment,
    /// Reading the document's parts, writing the model's folder or storing the document
    /// failed; the cause says whose fault it is.
    #[error(transparent)]
    Engine(Box<Error>),
}

impl From<Error> for DeployError {
    fn from(e: Error) -> Self {
        DeployError::Engine(Box::new(e))
    }
}

impl DeployError {
    /// The model's traceback, when its init raised.
    pub fn traceback(&self) -> Option<&str> {
        match self {
            DeployError::Model(runtime_core::Error::ModelFailed { traceback, .. })
                if !traceback.trim().is_empty() =>
            {
                Some(traceback)
            }
            DeployError::Engine(e) => e.traceback(),
            _ => None,
        }
    }
}

/// How long an undeployed or stopping model gets to run its `end` and exit.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerState {
    Ready,
    Restarting(String),
    Failed(String),
    Stopped,
}

impl WorkerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            WorkerState::Ready => "READY",
            WorkerState::Restarting(_) => "RESTARTING",
            WorkerState::Failed(_) => "FAILED",
            WorkerState::Stopped => "STOPPED",
        }
    }
}

/// Why a queued record has no yields.
#[derive(Clone)]
pub(crate) enum Refusal {
    Raised(RecordFailure),
    /// The model could not take it (undeployed, its worker gone or not replaced).
    Unavailable(String),
    /// Its worker died on it; the worker is being replaced.
    Died(String),
    /// The record broke a worker limit (`time`, `memory`); the worker was replaced.
    Limit {
        limit: String,
        detail: String,
    },
}

impl Refusal {
    /// What the record's source learns: the model failed on the record itself (it raised,
    /// broke a limit, its worker died on it) is rejected, as in a batch job (reading it
    /// again would end the same way); a model that could not take it leaves it failed.
    pub(crate) fn fate(&self) -> Fate {
        match self {
            Refusal::Raised(_) | Refusal::Died(_) | Refusal::Limit { .. } => Fate::Rejected,
            Refusal::Unavailable(_) => Fate::Failed,
        }
    }

    /// The error a REST request is answered with.
    pub(crate) fn into_error(self) -> Error {
        match self {
            Refusal::Raised(f) => Error::ModelRaised(f.message),
            Refusal::Unavailable(why) | Refusal::Died(why) => Error::ModelUnavailable(why),
            Refusal::Limit { limit, detail } => Error::ModelLimit { limit, detail },
        }
    }
}

pub(crate) type Reply = std::result::Result<Vec<(Slot, Value)>, Refusal>;

/// One entry of the deployment's queue: the records of one request (or a run of a stream's
/// records), scored in one batch together and answered together, one reply per record.
struct Request {
    slot: Slot,
    values: Vec<Value>,
    reply: oneshot::Sender<Vec<Reply>>,
    /// Its records' room in the queue (`scoreQueueBound` counts records), given back
    /// when a worker takes it.
    room: Option<OwnedSemaphorePermit>,
    /// Counts it among the deployment's outstanding requests until it is answered.
    outstanding: Outstanding,
}

/// How many callers a deployment is serving: its requests not answered yet, and when two
/// or more were last outstanding at once (or went in one batch). A batch short of `scoreBatchMax` waits
/// `scoreBatchWaitMs` for more only when this says others are sending, so a client alone
/// never has the wait added to its answers.
struct Load {
    outstanding: AtomicUsize,
    /// Milliseconds from `since` to the last time two requests were outstanding at once.
    concurrent_at: AtomicU64,
    since: std::time::Instant,
}

/// How long concurrency seen once keeps batches waiting for more.
const CONCURRENCY_MEMORY: Duration = Duration::from_secs(1);

impl Load {
    fn new() -> Load {
        Load {
            outstanding: AtomicUsize::new(0),
            concurrent_at: AtomicU64::new(u64::MAX),
            since: std::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Notes that several requests were outstanding at once (just now).
    fn concurrent(&self) {
        self.concurrent_at.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether a batch holding `taken` requests should wait for more: other requests are
    /// outstanding now, or were within the last second.
    fn more_coming(&self, taken: usize) -> bool {
        if self.outstanding.load(Ordering::Relaxed) > taken {
            return true;
        }
        let at = self.concurrent_at.load(Ordering::Relaxed);
        at != u64::MAX && self.now_ms().saturating_sub(at) < CONCURRENCY_MEMORY.as_millis() as u64
    }
}

/// One request the deployment has not answered yet (queued, or being scored): counted in
/// its [`Load`] while it lives.
struct Outstanding(Arc<Load>);

impl Outstanding {
    fn new(load: &Arc<Load>) -> Outstanding {
        if load.outstanding.fetch_add(1, Ordering::Relaxed) >= 1 {
            load.concurrent();
        }
        Outstanding(load.clone())
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

fn undeploying() -> Error {
    Error::ModelUnavailable("the model is being undeployed".into())
}

/// A queued entry's outcome, to come: one reply per record, in order.
pub(crate) struct Pending(oneshot::Receiver<Vec<Reply>>);

/// What [`Deployment::try_enqueue`] did with a request's records.
pub(crate) enum Enqueued {
    Now(Pending),
    /// The queue is full: the records, to queue with [`Deployment::enqueue`].
    Full(QueuedLater),
    Closed(Error),
}

/// Records the deployment's queue had no room for yet.
pub(crate) struct QueuedLater(Slot, Vec<Value>);

impl Pending {
    /// The worker's replies, one per record of the entry, if they are there already.
    pub(crate) fn try_replies(&mut self) -> Option<Vec<Reply>> {
        match self.0.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(vec![Err(stopped_before_answer())]),
            Ok(replies) => Some(replies),
        }
    }

    /// The worker's replies, one per record of the entry: what the model yielded for each,
    /// by slot, or why it yielded nothing.
    pub(crate) async fn replies(self) -> Vec<Reply> {
        self.0
            .await
            .unwrap_or_else(|_| vec![Err(stopped_before_answer())])
    }
}

/// Half the queue's bound, at least one record: what waiting requests may take of it, and
/// the share of it all of a deployment's streams may hold at once.
pub(crate) fn half_queue(queue_bound: usize) -> usize {
    (queue_bound / 2).max(1)
}

fn stopped_before_answer() -> Refusal {
    Refusal::Unavailable(
        "the model was stopped (undeployed or the engine shutting down) before it answered".into(),
    )
}

/// A worker's reply as the record's outcome.
fn outcome_of(reply: Reply) -> Result<Vec<(Slot, Value)>> {
    reply.map_err(Refusal::into_error)
}

/// A deployment that could not start (its model failed to load or its init raised); the
/// model deployed before it, if any, goes on answering.
#[derive(Clone)]
pub struct DeployFailure {
    pub name: String,
    pub at_ms: i64,
    /// Why, in one line.
    pub reason: String,
    /// The model's traceback, when its code raised.
    pub traceback: Option<String>,
    /// The failed attempt's log (its console, the reason and the traceback).
    pub log: Arc<RingLog>,
}

impl DeployFailure {
    /// Records why `error` stopped the deployment of `name`, in `log` too.
    pub fn new(name: &str, error: &DeployError, log: Arc<RingLog>) -> DeployFailure {
        let traceback = error.traceback().map(str::to_owned);
        let reason = error.to_string();
        let mut line = format!("model {name} could not be deployed: {reason}");
        if let Some(tb) = &traceback {
            line.push('\n');
            line.push_str(tb);
        }
        log.error(LogSource::Engine, line);
        DeployFailure {
            name: name.to_owned(),
            at_ms: crate::time::now_ms(),
            reason,
            traceback,
            log,
        }
    }
}

/// What a deployment is made of.
pub struct DeploySpec {
    pub id: String,
    pub name: String,
    pub document: String,
    pub model: ModelSpec,
    pub source_name: String,
    /// The codec of each slot's REST bodies ([`message_codecs`]); JSON where none is.
    pub codecs: BTreeMap<u32, CodecConfig>,
    /// Schemas requests and answers are checked against.
    pub schemas: schema::SlotSchemas,
    /// The schemas resolved for the slots' codecs (checked or not), which attached streams'
    /// codecs take too.
    pub codec_schemas: schema::SlotSchemas,
    pub dir: PathBuf,
    pub session: SessionConfig,
    pub queue_bound: usize,
    /// How waiting requests are taken together to a free worker.
    pub batching: Batching,
    /// Warm workers, each initialized before the deployment answers.
    pub workers: usize,
    /// What its runner prepared for it (a Python model's environment), held while it is
    /// deployed.
    pub environment: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// Per-record limits of its workers, and whether its runner enforces them.
    pub limits: worker::WorkerLimits,
    pub limits_enforced: bool,
    /// How its workers are replaced when they die or break a limit.
    pub restart: RestartPolicy,
    /// Told of each batch its model scores.
    pub observer: Option<Arc<dyn runtime_core::BatchObserver>>,
    /// The libraries of its own environment (`name==version`), built from its
    /// `requirements.txt`; empty when it runs on the platform's.
    pub libraries: Vec<String>,
}

pub struct Deployment {
    pub id: String,
    pub name: String,
    pub document: String,
    pub model: ModelSpec,
    pub source_name: String,
    codecs: BTreeMap<u32, CodecConfig>,
    pub schemas: schema::SlotSchemas,
    codec_schemas: schema::SlotSchemas,
    /// The streams attached to its slots.
    pub streams: streams::Streams,
    pub since_ms: i64,
    pub dir: PathBuf,
    pub queue_bound: usize,
    /// How its workers batch what waits in the queue.
    pub batching: Batching,
    pub log: Arc<RingLog>,
    counters: Arc<Counters>,
    state: Arc<Mutex<WorkerState>>,
    tx: mpsc::Sender<Request>,
    /// The queue's room, in records (`queue_bound` permits).
    room: Arc<Semaphore>,
    /// The callers it serves (shared with the actors, whose batches wait only for others).
    load: Arc<Load>,
    stop: Arc<Notify>,
    actors: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub workers: usize,
    _environment: Option<Box<dyn std::any::Any + Send + Sync>>,
    pub limits: worker::WorkerLimits,
    pub limits_enforced: bool,
    /// The libraries of its own environment (`DeploySpec::libraries`).
    pub libraries: Vec<String>,
}

#[derive(Default)]
struct Counters {
    /// The bad-record log's floods, shared by every request.
    bad: Mutex<BadRecordLog>,
    scored: AtomicU64,
    failed: AtomicU64,
    restarts: AtomicU64,
    /// Workers killed for a record past the time limit.
    timeouts: AtomicU64,
    /// Workers killed for memory past the limit.
    memory_kills: AtomicU64,
    /// The latest reason a worker was replaced, and when.
    last_problem: Mutex<Option<(i64, String)>>,
    /// Per slot: records in and answered, rejections, yields no request asked for.
    slots: Mutex<SlotTallies>,
}

/// What went through each slot of a deployment's REST requests.
#[derive(Clone, Debug, Default)]
pub struct SlotTallies {
    /// Input slots: requests decoded and checked (`records`) or rejected.
    pub inputs: BTreeMap<u32, SlotCounts>,
    /// Output slots: records answered (`records`) or rejected.
    pub outputs: BTreeMap<u32, SlotCounts>,
    /// Yields to an output slot other than the one its request asked for: nothing reads
    /// them, so they are counted here (by the slot yielded to) and logged.
    pub unanswered: BTreeMap<u32, u64>,
}

impl Counters {
    fn problem(&self, why: &str) {
        if let Ok(mut p) = self.last_problem.lock() {
            *p = Some((crate::time::now_ms(), why.to_owned()));
        }
    }
}

/// Figures of a deployment.
#[derive(Clone, Debug)]
pub struct DeploymentStats {
    pub records_scored: u64,
    pub records_failed: u64,
    pub restarts: u64,
    pub queued: usize,
    pub state: WorkerState,
    pub timeouts: u64,
    pub memory_kills: u64,
    pub last_problem: Option<(i64, String)>,
    pub slots: SlotTallies,
}

/// A REST request's answer: the encoded yields of the slot it asked for.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    /// The answer slot's encoding as a media type.
    pub content_type: &'static str,
}

/// The codec of each slot's REST bodies (every slot of `encodings`; others are JSON), built
/// once at deploy time: a message is the whole body, and Avro and CSV get their slot's
/// schema (Avro cannot be read or written without one; CSV cells are typed by it). A slot
/// whose codec cannot work (Avro without a schema) refuses the deployment.
pub fn message_codecs(
    encodings: &BTreeMap<u32, Encoding>,
    schemas: &schema::SlotSchemas,
) -> std::result::Result<BTreeMap<u32, CodecConfig>, DeployError> {
    let mut codecs = BTreeMap::new();
    for (&slot, &encoding) in encodings {
        let mut cfg = CodecConfig::new(encoding).with_framing(Framing::Message);
        cfg.schema = slot_schema(schemas, Slot(slot), encoding);
        if let Err(e) = cfg.resolved_framing() {
            let mut why = format!("encodings.{slot} ({encoding}): {e}");
            if cfg.schema.is_none() && encoding == Encoding::AvroBinary {
                why.push_str(&format!(
                    "; declare the slot's schema in the model (# modelop.schema.{slot}: <file>.avsc)"
                ));
            }
            return Err(DeployError::Refused(why));
        }
        codecs.insert(slot, cfg);
    }
    Ok(codecs)
}

/// The slot's schema, for an encoding that reads or writes by one (Avro cannot be read or
/// written without one; CSV cells are typed by it; a written Parquet file's columns are
/// made of it).
fn slot_schema(
    schemas: &schema::SlotSchemas,
    slot: Slot,
    encoding: Encoding,
) -> Option<codecs::AvroSchema> {
    matches!(
        encoding,
        Encoding::AvroBinary | Encoding::Csv | Encoding::Parquet
    )
    .then(|| schemas.get(slot).map(|c| c.avro().clone()))
    .flatten()
}

/// Where a record came from or goes, for the bad-record log.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Origin<'a> {
    /// A REST roundtrip request.
    Request,
    /// A record of an attached stream: its name and position.
    Stream(&'a str, &'a Position),
    /// Yields on their way to an attached output stream, by its name.
    Sink(&'a str),
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Request => f.write_str("request"),
            Origin::Stream(name, position) => write!(f, "stream {name}, {position}"),
            Origin::Sink(name) => write!(f, "stream {name}"),
        }
    }
}

pub(crate) fn content_type(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Json => "application/json",
        Encoding::Utf8 | Encoding::Csv => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

impl Deployment {
    /// Starts the model's workers (init runs in each now: its failure is the deployment's) and the
    /// loop feeding it.
    pub async fn start(
        spec: DeploySpec,
        runner: Arc<dyn Runner>,
        log: Arc<RingLog>,
    ) -> Result<Arc<Deployment>> {
        let workers = spec.workers.max(1);
        let mut sessions = Vec::with_capacity(workers);
        for started in futures_util::future::join_all(
            (0..workers).map(|_| runner.start(&spec.model, spec.session.clone())),
        )
        .await
        {
            // A failed init is the deployment's failure; the sessions started are dropped
            // (their workers killed).
            sessions.push(started?);
        }
        log.info(
            LogSource::Engine,
            format!(
                "model {} deployed with {workers} worker(s); state RUNNING",
                spec.name
            ),
        );
        let (tx, rx) = mpsc::channel(spec.queue_bound.max(1));
        let counters = Arc::new(Counters::default());
        let state = Arc::new(Mutex::new(WorkerState::Ready));
        let stop = Arc::new(Notify::new());
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let seqno = Arc::new(AtomicU64::new(0));
        let load = Arc::new(Load::new());
        let restarts = Arc::new(Restarts::new(spec.restart));
        let handles = sessions
            .into_iter()
            .map(|session| {
                let actor = Actor {
                    runner: runner.clone(),
                    model: spec.model.clone(),
                    config: spec.session.clone(),
                    log: log.clone(),
                    counters: counters.clone(),
                    state: state.clone(),
                    batching: spec.batching,
                    seqno: seqno.clone(),
                    load: load.clone(),
                    restarts: restarts.clone(),
                    given_up: None,
                    observer: spec.observer.clone(),
                };
                tokio::spawn(actor.run(session, rx.clone(), stop.clone()))
            })
            .collect();
        Ok(Arc::new(Deployment {
            id: spec.id,
            name: spec.name,
            document: spec.document,
            model: spec.model,
            source_name: spec.source_name,
            codecs: spec.codecs,
            schemas: spec.schemas,
            codec_schemas: spec.codec_schemas,
            streams: streams::Streams::new(spec.queue_bound, log.clone()),
            since_ms: crate::time::now_ms(),
            dir: spec.dir,
            queue_bound: spec.queue_bound,
            batching: spec.batching,
            log,
            counters,
            state,
            tx,
            room: Arc::new(Semaphore::new(spec.queue_bound.max(1))),
            load,
            stop,
            actors: Mutex::new(handles),
            workers,
            _environment: spec.environment,
            limits: spec.limits,
            limits_enforced: spec.limits_enforced,
            libraries: spec.libraries,
        }))
    }

    /// The encoding of `slot`'s REST bodies.
    pub fn encoding_of(&self, slot: u32) -> Encoding {
        self.codecs
            .get(&slot)
            .map_or(Encoding::Json, |c| c.encoding)
    }

    /// The slots whose encoding the deployment names, with it.
    pub fn encodings(&self) -> impl Iterator<Item = (u32, Encoding)> + '_ {
        self.codecs.iter().map(|(s, c)| (*s, c.encoding))
    }

    fn tally(&self, f: impl FnOnce(&mut SlotTallies)) {
        if let Ok(mut t) = self.counters.slots.lock() {
            f(&mut t);
        }
    }

    fn log_bad(&self, kind: BadKind, slot: Slot, message: impl FnOnce() -> String) {
        if let Ok(mut bad) = self.counters.bad.lock() {
            bad.record(self.log.as_ref(), kind, slot, message);
        }
    }

    /// Counts an input rejected on `slot` and logs it with where it came from; the error
    /// says why.
    pub(crate) fn input_rejected(
        &self,
        slot: Slot,
        kind: RejectionKind,
        reason: String,
        origin: Origin<'_>,
    ) -> Error {
        self.tally(|t| bump(t.inputs.entry(slot.0).or_default(), kind));
        self.log_bad(BadKind::InputRejected, slot, || {
            format!(
                "Record rejected by {}: {reason} (input slot {slot}, {origin})",
                kind.as_str()
            )
        });
        match kind {
            RejectionKind::Schema => Error::InputRejectedBySchema(reason),
            _ => Error::InputRejectedByEncoding(reason),
        }
    }

    /// Counts an output rejected on `slot` and logs it with where it was going; the error
    /// says why.
    pub(crate) fn output_rejected(
        &self,
        slot: Slot,
        kind: RejectionKind,
        reason: String,
        origin: Origin<'_>,
    ) -> Error {
        self.tally(|t| bump(t.outputs.entry(slot.0).or_default(), kind));
        self.log_bad(BadKind::OutputRejected, slot, || {
            format!(
                "Output record rejected by {}: {reason} (output slot {slot}, {origin})",
                kind.as_str()
            )
        });
        match kind {
            RejectionKind::Schema => Error::OutputRejectedBySchema(reason),
            _ => Error::OutputRejectedByEncoding(reason),
        }
    }

    /// One decoded record through the chain every request takes: screened by `input`'s
    /// schema and counted, scored, and what the model yielded to `output` screened by that
    /// slot's schema (yields to other slots are counted and logged, not answered). The
    /// caller encodes the answer and counts it delivered ([`Deployment::outputs_delivered`]).
    /// A full queue refuses the record (`Error::QueueFull`).
    pub async fn score_value(
        &self,
        input: Slot,
        output: Slot,
        value: Value,
        timeout: Duration,
    ) -> Result<Vec<Value>> {
        self.score_values(input, output, vec![value], timeout, false)
            .await?
            .pop()
            .unwrap_or_else(|| Err(stopped_before_answer().into_error()))
    }

    /// The records of one request through the chain of [`Deployment::score_value`],
    /// queued as one entry: a worker scores them in one batch (a record-set model in one
    /// call), never split, with whatever other requests wait beside them. One result per
    /// record, in order: a record refused by the input schema, failed in the model or
    /// whose answer the output schema refused has its error. The request as a whole fails
    /// when the queue is full (refused at once, or with `wait`, waited on), on `timeout`,
    /// or when the model is stopped.
    pub async fn score_values(
        &self,
        input: Slot,
        output: Slot,
        values: Vec<Value>,
        timeout: Duration,
        wait: bool,
    ) -> Result<Vec<Result<Vec<Value>>>> {
        let mut results: Vec<Option<Result<Vec<Value>>>> = Vec::with_capacity(values.len());
        let mut taken = Vec::with_capacity(values.len());
        for value in values {
            match self.take_input(input, value, Position::default(), Origin::Request) {
                Ok(v) => {
                    taken.push(v);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let mut replies = if taken.is_empty() {
            Vec::new()
        } else {
            self.score(input, taken, timeout, wait).await?
        }
        .into_iter();
        let mut out = Vec::with_capacity(results.len());
        for result in results {
            let result = match result {
                Some(refused) => refused,
                None => match replies.next() {
                    Some(reply) => outcome_of(reply).and_then(|outs| self.answer(output, outs)),
                    None => Err(stopped_before_answer().into_error()),
                },
            };
            out.push(result);
        }
        Ok(out)
    }

    /// What the model yielded for one record, as its answer on `output`: yields to other
    /// slots counted and logged, the answer's screened by `output`'s schema.
    fn answer(&self, output: Slot, outs: Vec<(Slot, Value)>) -> Result<Vec<Value>> {
        let (mut by_slot, _) = self.route_yields(outs, |slot| slot == output, |_| {
            format!("which the request (answered on slot {output}) does not read; counted, not answered")
        });
        let mut values = by_slot.remove(&output).unwrap_or_default();
        // A rejected yield fails the answer (a partial answer would pass for whole); each
        // is counted and logged, the first one's reason answered.
        if let Some(e) = self
            .screen_yields(output, &mut values, &mut Vec::new(), Origin::Request)
            .into_iter()
            .next()
        {
            return Err(e);
        }
        Ok(values)
    }

    /// The Avro schema (JSON) resolved for `slot`'s records, checked or not.
    pub fn schema_json(&self, slot: Slot) -> Option<&str> {
        self.codec_schemas.get(slot).map(|c| c.json())
    }

    /// One REST request, the same chain as a batch job's records: decodes `body` by
    /// `input`'s codec, screens it by the slot's schema, scores it, screens what the model
    /// yielded to `output` by that slot's schema and encodes it (one yield as itself,
    /// several as a JSON array, or one message per line for other encodings). Yields to
    /// other output slots are counted and logged, not answered. `None`: nothing was
    /// yielded to `output`.
    pub async fn score_message(
        &self,
        input: Slot,
        output: Slot,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Option<Answer>> {
        let in_codec = self.codec(input.0);
        let rejected = |why: codecs::CodecError| {
            let kind = match why {
                codecs::CodecError::TooLarge { .. } => RejectionKind::Size,
                _ => RejectionKind::Encoding,
            };
            self.input_rejected(input, kind, why.to_string(), Origin::Request)
        };
        // A record-set model takes a set of records in one request, a JSON array or a CSV
        // body of several rows: scored in one call, answered together (a JSON array always,
        // even of one answer or none).
        let set = self.model.recordsets.get(&input).copied().unwrap_or(false);
        let message = if set {
            codecs::decode_message_records(&in_codec, body)
        } else {
            codecs::decode_message(&in_codec, body).map(codecs::MessageRecords::One)
        };
        let (values, array) = match message.map_err(rejected)? {
            codecs::MessageRecords::One(value) => (
                self.score_value(input, output, value, timeout).await?,
                false,
            ),
            codecs::MessageRecords::Set(records) => {
                let mut values = Vec::new();
                let scored = self
                    .score_values(input, output, records, timeout, true)
                    .await?;
                for (i, r) in scored.into_iter().enumerate() {
                    values.extend(r.map_err(|e| e.of_record(i))?);
                }
                (values, in_codec.encoding == Encoding::Json)
            }
        };
        let out_codec = self.codec(output.0);
        let mut encoded = Vec::with_capacity(values.len());
        for v in &values {
            let bytes = codecs::encode_message(&out_codec, v).map_err(|why| {
                self.output_rejected(
                    output,
                    RejectionKind::Encoding,
                    why.to_string(),
                    Origin::Request,
                )
            })?;
            encoded.push(bytes);
        }
        let array = array && out_codec.encoding == Encoding::Json;
        let body = match encoded.len() {
            0 if !array => return Ok(None),
            1 if !array => encoded.pop().unwrap_or_default(),
            _ => {
                let (open, sep, close): (&[u8], &[u8], &[u8]) =
                    if out_codec.encoding == Encoding::Json {
                        (b"[", b",", b"]")
                    } else {
                        (b"", b"\n", b"")
                    };
                let mut out = open.to_vec();
                for (i, bytes) in encoded.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(sep);
                    }
                    out.extend_from_slice(bytes);
                }
                out.extend_from_slice(close);
                out
            }
        };
        self.outputs_delivered(output, values.len() as u64);
        Ok(Some(Answer {
            body,
            content_type: content_type(out_codec.encoding),
        }))
    }

    // The chain's steps, shared by a REST request (`score_message`) and an attached
    // stream's records (`streams`): each counts and logs what it refuses.

    /// A decoded record arriving on input `slot`, screened by the slot's schema (as a batch
    /// job's are) and counted; a rejection is counted and logged.
    pub(crate) fn take_input(
        &self,
        slot: Slot,
        value: Value,
        position: Position,
        origin: Origin<'_>,
    ) -> Result<Value> {
        let value = screen_record(&self.schemas, slot, value, position, false)
            .map_err(|r| self.input_rejected(slot, r.kind, r.reason, origin))?;
        self.tally(|t| t.inputs.entry(slot.0).or_default().records += 1);
        Ok(value)
    }

    /// What the model yielded (a value, and what goes with it), by output slot, for the
    /// slots `read` says are read; yields to other slots are counted per slot and logged
    /// (`unread` says why nobody reads them), and handed back.
    pub(crate) fn route_yields<T>(
        &self,
        outs: impl IntoIterator<Item = (Slot, T)>,
        read: impl Fn(Slot) -> bool,
        unread: impl Fn(Slot) -> String,
    ) -> (BTreeMap<Slot, Vec<T>>, Vec<T>) {
        let mut read_by: BTreeMap<Slot, Vec<T>> = BTreeMap::new();
        let mut others: BTreeMap<Slot, u64> = BTreeMap::new();
        let mut unrouted = Vec::new();
        for (slot, v) in outs {
            if read(slot) {
                read_by.entry(slot).or_default().push(v);
            } else {
                *others.entry(slot).or_default() += 1;
                unrouted.push(v);
            }
        }
        for (slot, n) in others {
            self.yields_unread(slot, n, || unread(slot));
        }
        (read_by, unrouted)
    }

    /// Counts `n` yields to `slot` that nothing reads, and logs them.
    pub(crate) fn yields_unread(&self, slot: Slot, n: u64, why: impl FnOnce() -> String) {
        self.tally(|t| *t.unanswered.entry(slot.0).or_default() += n);
        self.log_bad(BadKind::Unanswered, slot, || {
            format!("the model yielded {n} record(s) to slot {slot}, {}", why())
        });
    }

    /// Screens yields to output `slot` by its schema: rejected ones are taken out, counted
    /// and logged, and their errors returned in order. `receipts` (empty, or one per value)
    /// loses the receipts of the rejected values, settled as rejected.
    pub(crate) fn screen_yields(
        &self,
        slot: Slot,
        values: &mut Vec<Value>,
        receipts: &mut Vec<Receipt>,
        origin: Origin<'_>,
    ) -> Vec<Error> {
        let rejections = self.schemas.screen_outputs(slot, values, false);
        for receipt in jobs::take_refused(receipts, rejections.iter().map(|r| r.index)) {
            receipt.settle(Fate::Rejected);
        }
        rejections
            .into_iter()
            .map(|r| self.output_rejected(slot, RejectionKind::Schema, r.reason, origin))
            .collect()
    }

    /// Counts records that reached their output on `slot` (answered, or written).
    pub fn outputs_delivered(&self, slot: Slot, n: u64) {
        self.tally(|t| t.outputs.entry(slot.0).or_default().records += n);
    }

    /// A record failed in the model (it raised, or its worker broke a limit or died):
    /// counted per slot and logged with where it came from.
    pub(crate) fn record_failed(&self, slot: Slot, why: &Error, origin: Origin<'_>) {
        self.log_bad(BadKind::Failed, slot, || {
            let detail = match why {
                Error::ModelRaised(message) => message.clone(),
                other => other.to_string(),
            };
            format!("Record failed: {detail} (input slot {slot}, {origin})")
        });
    }

    /// The codec a stream on `slot` reads or writes with: its descriptor's, with the slot's
    /// schema where its encoding needs one (as the REST bodies' codecs have it).
    pub(crate) fn stream_codec(&self, slot: Slot, mut codec: CodecConfig) -> CodecConfig {
        if codec.schema.is_none() {
            codec.schema = slot_schema(&self.codec_schemas, slot, codec.encoding);
        }
        codec
    }

    fn codec(&self, slot: u32) -> std::borrow::Cow<'_, CodecConfig> {
        match self.codecs.get(&slot) {
            Some(c) => std::borrow::Cow::Borrowed(c),
            None => std::borrow::Cow::Owned(CodecConfig::new(Encoding::Json)),
        }
    }

    pub fn stats(&self) -> DeploymentStats {
        DeploymentStats {
            records_scored: self.counters.scored.load(Ordering::Relaxed),
            records_failed: self.counters.failed.load(Ordering::Relaxed),
            restarts: self.counters.restarts.load(Ordering::Relaxed),
            queued: self
                .queue_bound
                .saturating_sub(self.room.available_permits()),
            timeouts: self.counters.timeouts.load(Ordering::Relaxed),
            memory_kills: self.counters.memory_kills.load(Ordering::Relaxed),
            last_problem: self
                .counters
                .last_problem
                .lock()
                .ok()
                .and_then(|p| p.clone()),
            slots: self
                .counters
                .slots
                .lock()
                .map(|t| t.clone())
                .unwrap_or_default(),
            state: self
                .state
                .lock()
                .map(|s| s.clone())
                .unwrap_or(WorkerState::Failed("state lock poisoned".into())),
        }
    }

    /// Scores one record from input slot `input`; returns everything it yielded, by slot.
    /// A full queue refuses it at once (the caller is told to retry).
    async fn score(
        &self,
        input: Slot,
        values: Vec<Value>,
        timeout: Duration,
        wait: bool,
    ) -> Result<Vec<Reply>> {
        let scored = async {
            let pending = match self.try_enqueue(input, values) {
                Enqueued::Now(pending) => pending,
                Enqueued::Full(later) if wait => self.enqueue(later).await?,
                Enqueued::Full(_) => {
                    return Err(Error::QueueFull {
                        bound: self.queue_bound,
                    })
                }
                Enqueued::Closed(e) => return Err(e),
            };
            Ok(pending.replies().await)
        };
        match tokio::time::timeout(timeout, scored).await {
            Err(_) => Err(Error::RoundtripTimeout {
                millis: timeout.as_millis() as u64,
            }),
            Ok(outcome) => outcome,
        }
    }

    /// The room `n` records take in the queue: one permit each, the whole queue at most
    /// (so a request larger than the queue still goes, alone).
    fn room_for(&self, n: usize) -> u32 {
        u32::try_from(n.clamp(1, self.queue_bound.max(1))).unwrap_or(u32::MAX)
    }

    /// The room records that wait for it take: half the queue at most. A waiter takes every
    /// permit given back until it has its own, refusing the requests behind it meanwhile,
    /// so what it waits for is kept to half the queue.
    fn room_waited_for(&self, n: usize) -> u32 {
        self.room_for(n.min(half_queue(self.queue_bound)))
    }

    /// Queues records from input slot `input` for scoring, as one entry, if the queue has
    /// room for them now; their outcomes come later. A full queue hands them back for
    /// [`Self::enqueue`].
    pub(crate) fn try_enqueue(&self, input: Slot, values: Vec<Value>) -> Enqueued {
        match self
            .room
            .clone()
            .try_acquire_many_owned(self.room_for(values.len()))
        {
            Ok(room) => self.send(input, values, room),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                Enqueued::Full(QueuedLater(input, values))
            }
            Err(tokio::sync::TryAcquireError::Closed) => Enqueued::Closed(undeploying()),
        }
    }

    /// Queues records the queue had no room for, waiting while it is full (a stream's
    /// reader is slowed, not refused).
    pub(crate) async fn enqueue(&self, later: QueuedLater) -> Result<Pending> {
        let QueuedLater(input, values) = later;
        let room = self
            .room
            .clone()
            .acquire_many_owned(self.room_waited_for(values.len()))
            .await
            .map_err(|_| undeploying())?;
        match self.send(input, values, room) {
            Enqueued::Now(pending) => Ok(pending),
            Enqueued::Closed(e) => Err(e),
            Enqueued::Full(_) => Err(undeploying()),
        }
    }

    /// Puts an entry whose room is taken on the queue. The channel holds at most one entry
    /// per permit, so it is never full here.
    fn send(&self, slot: Slot, values: Vec<Value>, room: OwnedSemaphorePermit) -> Enqueued {
        let (reply, rx) = oneshot::channel();
        let req = Request {
            slot,
            values,
            reply,
            room: Some(room),
            outstanding: Outstanding::new(&self.load),
        };
        match self.tx.try_send(req) {
            Ok(()) => Enqueued::Now(Pending(rx)),
            Err(mpsc::error::TrySendError::Full(r)) => {
                Enqueued::Full(QueuedLater(r.slot, r.values))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Enqueued::Closed(undeploying()),
        }
    }

    /// Stops the streams, the loop and the workers within `within` in all: attached streams
    /// are drained (detached) first, requests already queued are answered and the model's
    /// `end` runs, as long as time allows; past it the workers are killed and the requests
    /// still waiting get 503.
    pub async fn stop(&self, within: Duration) {
        let now = tokio::time::Instant::now();
        let deadline = now + within;
        // The streams get half the time at most: the model's `end` needs its share.
        self.streams.detach_all(now + within / 2).await;
        self.stop.notify_one();
        let handles: Vec<_> = self
            .actors
            .lock()
            .map(|mut h| h.drain(..).collect())
            .unwrap_or_default();
        let mut cut = false;
        for mut h in handles {
            if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
                // Dropping the actor drops its session (the worker is killed) and the
                // replies it held (their requests answer 503).
                h.abort();
                cut = true;
            }
        }
        if let Ok(mut s) = self.state.lock() {
            *s = WorkerState::Stopped;
        }
        if cut {
            self.log.warn(
                LogSource::Engine,
                format!(
                    "model {}: its workers did not finish within {} ms and were killed",
                    self.name,
                    within.as_millis()
                ),
            );
        }
        self.log
            .info(LogSource::Engine, format!("model {} undeployed", self.name));
    }
}

/// `first`, then what is already waiting in `rx`, up to `size` items; with `wait`, a batch
/// short of `size` waits that long for more. How a REST input stream makes its batches.
pub(crate) async fn gather<T>(
    rx: &mut mpsc::Receiver<T>,
    first: T,
    size: usize,
    wait: Option<Duration>,
) -> Vec<T> {
    gather_weighed(rx, first, size, wait, |_| 1, |_| true).await
}

/// [`gather`] counting each item as `weight` says: items are taken while the batch holds
/// less than `size`, so the last one taken may bring it past `size` (an entry is never
/// split). The wait is only taken when `more_coming(items taken)` says others are sending.
/// How the deployment's workers make their batches of requests' records.
async fn gather_weighed<T>(
    rx: &mut mpsc::Receiver<T>,
    first: T,
    size: usize,
    wait: Option<Duration>,
    weight: impl Fn(&T) -> usize,
    more_coming: impl Fn(usize) -> bool,
) -> Vec<T> {
    let mut held = weight(&first);
    let mut batch = vec![first];
    while held < size {
        match rx.try_recv() {
            Ok(r) => {
                held += weight(&r);
                batch.push(r);
            }
            Err(_) => break,
        }
    }
    if let Some(wait) = wait.filter(|_| held < size && more_coming(batch.len())) {
        let until = tokio::time::Instant::now() + wait;
        while held < size {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(r)) => {
                    held += weight(&r);
                    batch.push(r);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    batch
}

/// The replies of a batch's entries, filled record by record; an entry is answered as soon
/// as each of its records has its reply (before a worker that died is replaced), the rest
/// when the batch is done (a record never answered is answered as stopped).
struct Answers(Vec<Option<Answering>>);

/// An entry being answered: where its replies go, those there so far, and its place among
/// the outstanding requests (given up once it is answered).
type Answering = (oneshot::Sender<Vec<Reply>>, Vec<Option<Reply>>, Outstanding);

/// Where a record's reply goes: its entry, and its place in the entry.
#[derive(Clone, Copy)]
struct To(usize, usize);

impl Answers {
    fn set(&mut self, To(entry, row): To, reply: Reply) {
        if let Some(slot) = self
            .0
            .get_mut(entry)
            .and_then(|e| e.as_mut())
            .and_then(|(_, r, _)| r.get_mut(row))
        {
            *slot = Some(reply);
        }
    }

    /// Answers the entries whose records all have their replies.
    fn send_done(&mut self) {
        for entry in &mut self.0 {
            if entry
                .as_ref()
                .is_some_and(|(_, r, _)| r.iter().all(Option::is_some))
            {
                if let Some((tx, replies, outstanding)) = entry.take() {
                    // No longer outstanding before its caller hears back (and sends again).
                    drop(outstanding);
                    let _ = tx.send(replies.into_iter().flatten().collect());
                }
            }
        }
    }

    fn send(self) {
        for (tx, replies, outstanding) in self.0.into_iter().flatten() {
            drop(outstanding);
            let replies = replies
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(stopped_before_answer())))
                .collect();
            let _ = tx.send(replies);
        }
    }
}

/// Every record of `batch` refused for the same reason.
fn refuse_all(batch: Vec<Request>, why: &str) {
    for Request {
        values,
        reply,
        outstanding,
        ..
    } in batch
    {
        drop(outstanding);
        let replies = values
            .iter()
            .map(|_| Err(Refusal::Unavailable(why.to_owned())))
            .collect();
        let _ = reply.send(replies);
    }
}

struct Actor {
    runner: Arc<dyn Runner>,
    model: ModelSpec,
    config: SessionConfig,
    log: Arc<RingLog>,
    counters: Arc<Counters>,
    state: Arc<Mutex<WorkerState>>,
    batching: Batching,
    /// Shared by the deployment's workers: seqno counts every request.
    seqno: Arc<AtomicU64>,
    /// The deployment's callers: a batch waits for more only when others are sending.
    load: Arc<Load>,
    /// The deployment's restart policy and what it allowed, shared by its workers.
    restarts: Arc<Restarts>,
    /// Why this worker is no longer replaced (the restart budget is spent).
    given_up: Option<String>,
    observer: Option<Arc<dyn runtime_core::BatchObserver>>,
}

impl Actor {
    fn set_state(&self, s: WorkerState) {
        if let Ok(mut st) = self.state.lock() {
            *st = s;
        }
    }

    async fn run(
        mut self,
        first: Box<dyn Session>,
        shared: Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>,
        stop: Arc<Notify>,
    ) {
        let mut session = Some(first);
        let mut stopping = false;
        loop {
            // One worker at a time takes what is waiting; the others wait for the queue.
            let mut batch = {
                let mut rx = shared.lock().await;
                let first = tokio::select! {
                    r = rx.recv() => match r { Some(r) => r, None => break },
                    _ = stop.notified() => {
                        // Answer what is already queued (every worker drains it), then stop.
                        rx.close();
                        stopping = true;
                        continue;
                    }
                };
                gather_weighed(
                    &mut rx,
                    first,
                    self.batching.size,
                    self.batching.max_wait,
                    |r: &Request| r.values.len(),
                    // A batch waits for more only while others are sending (`Load`): one
                    // client alone never has the wait added to its answers.
                    |taken| self.load.more_coming(taken),
                )
                .await
            };
            // The queue has room for the next records as soon as a worker has these.
            for r in &mut batch {
                r.room = None;
            }
            if batch.len() > 1 {
                self.load.concurrent();
            }
            // Requests whose caller gave up (timeout, disconnect) are not scored.
            batch.retain(|r| !r.reply.is_closed());
            if batch.is_empty() {
                continue;
            }
            if let (None, Some(why)) = (&session, &self.given_up) {
                refuse_all(batch, why);
                continue;
            }
            if session.is_none() {
                match self.restart().await {
                    Ok(s) => session = Some(s),
                    Err(why) => {
                        refuse_all(batch, &why);
                        tokio::time::sleep(self.restarts.start_failed()).await;
                        continue;
                    }
                }
            }
            let records = batch.iter().map(|r| r.values.len()).sum();
            let mut pending = Vec::with_capacity(records);
            let mut answers = Vec::with_capacity(batch.len());
            for (entry, r) in batch.into_iter().enumerate() {
                answers.push(Some((
                    r.reply,
                    Vec::with_capacity(r.values.len()),
                    r.outstanding,
                )));
                for (row, value) in r.values.into_iter().enumerate() {
                    let seqno = self.seqno.fetch_add(1, Ordering::Relaxed) + 1;
                    let item = ScoreItem {
                        slot: r.slot,
                        seqno,
                        value,
                    };
                    if let Some((_, replies, _)) = &mut answers[entry] {
                        replies.push(None);
                    }
                    pending.push((item, To(entry, row)));
                }
            }
            let mut answers = Answers(answers);
            session = self.score(session, pending, &mut answers, stopping).await;
            answers.send();
        }
        if let Some(s) = session {
            match tokio::time::timeout(CLOSE_GRACE, s.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self
                    .log
                    .warn(LogSource::Engine, format!("closing the model failed: {e}")),
                Err(_) => self.log.warn(
                    LogSource::Engine,
                    "the model's worker did not stop in time".to_owned(),
                ),
            }
        }
    }

    /// Scores `pending` and answers each request. A worker that dies or breaks a limit
    /// fails the request it was on (all of them when that is not known) and is replaced;
    /// the others of the batch go to the new worker. Returns the session left, if any.
    async fn score(
        &mut self,
        mut session: Option<Box<dyn Session>>,
        mut pending: Vec<(ScoreItem, To)>,
        answers: &mut Answers,
        stopping: bool,
    ) -> Option<Box<dyn Session>> {
        while !pending.is_empty() {
            let Some(s) = session.as_mut() else {
                answers.send_done();
                match self.restart().await {
                    Ok(s) => {
                        session = Some(s);
                        continue;
                    }
                    Err(why) => {
                        self.fail(pending, answers, |_| Refusal::Unavailable(why.clone()));
                        return None;
                    }
                }
            };
            // Kept to send again to a new worker should this one die on another record.
            let items: Vec<ScoreItem> = pending.iter().map(|(i, _)| i.clone()).collect();
            let (records, started) = (items.len(), std::time::Instant::now());
            let scored = s.score(items).await;
            if let Some(o) = &self.observer {
                o.scored(records, started.elapsed());
            }
            let e = match scored {
                Ok(outcomes) => {
                    for ((_, to), outcome) in pending.into_iter().zip(outcomes) {
                        match outcome {
                            Ok(outs) => {
                                self.counters.scored.fetch_add(1, Ordering::Relaxed);
                                answers.set(to, Ok(outs));
                            }
                            Err(f) => {
                                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                                self.log.error(
                                    LogSource::Runner,
                                    format!("record failed: {}\n{}", f.message, f.traceback),
                                );
                                answers.set(to, Err(Refusal::Raised(f)));
                            }
                        }
                    }
                    return session;
                }
                Err(e) => e,
            };
            let culprit = s.failed_seqno();
            // Dropping the session kills what is left of the worker (and its group).
            session = None;
            let refusal = match &e {
                runtime_core::Error::LimitExceeded { limit, detail, .. } => {
                    let counter = if limit == "time" {
                        &self.counters.timeouts
                    } else {
                        &self.counters.memory_kills
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    Refusal::Limit {
                        limit: limit.clone(),
                        detail: detail.clone(),
                    }
                }
                _ => Refusal::Unavailable(format!("{e}; the worker is being restarted")),
            };
            if !self.restarts.allow(&e) && matches!(e, runtime_core::Error::WorkerDied { .. }) {
                let budget = self.restarts.policy().budget.unwrap_or_default();
                let why = format!(
                    "{e}; the worker is not replaced: {budget} restart(s) of the deployed \
                     model's workers were allowed and all are spent"
                );
                self.log.error(LogSource::Engine, why.clone());
                self.counters.problem(&why);
                self.set_state(WorkerState::Failed(why.clone()));
                self.fail(pending, answers, |_| Refusal::Unavailable(why.clone()));
                self.given_up = Some(why);
                return None;
            }
            let why = format!("{e}; the worker is being replaced");
            self.log.error(LogSource::Engine, why.clone());
            self.counters.problem(&why);
            self.set_state(WorkerState::Restarting(e.to_string()));
            let at = culprit.and_then(|q| pending.iter().position(|(i, _)| i.seqno == q));
            match at {
                Some(at) => {
                    let (_, to) = pending.remove(at);
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    let refusal = match refusal {
                        Refusal::Unavailable(why) => Refusal::Died(why),
                        other => other,
                    };
                    answers.set(to, Err(refusal));
                }
                None => {
                    // Which request it was on is not known: none of them is retried.
                    self.fail(std::mem::take(&mut pending), answers, |_| refusal.clone());
                }
            }
            if stopping {
                self.fail(pending, answers, |_| {
                    Refusal::Unavailable("the model is being undeployed".into())
                });
                return None;
            }
            if pending.is_empty() {
                // The next batch finds no session and starts a new worker first; starting it
                // now keeps the next request from waiting for it.
                answers.send_done();
                if let Ok(s) = self.restart().await {
                    session = Some(s);
                }
            }
        }
        session
    }

    fn fail(
        &self,
        pending: Vec<(ScoreItem, To)>,
        answers: &mut Answers,
        refusal: impl Fn(&ScoreItem) -> Refusal,
    ) {
        self.counters
            .failed
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        for (item, to) in pending {
            answers.set(to, Err(refusal(&item)));
        }
    }

    async fn restart(&mut self) -> std::result::Result<Box<dyn Session>, String> {
        self.counters.restarts.fetch_add(1, Ordering::Relaxed);
        self.log.info(
            LogSource::Engine,
            "starting a new worker for the deployed model".to_owned(),
        );
        match self.runner.start(&self.model, self.config.clone()).await {
            Ok(s) => {
                self.restarts.started();
                self.set_state(WorkerState::Ready);
                self.log.info(
                    LogSource::Engine,
                    "the deployed model's worker was restarted and re-initialized".to_owned(),
                );
                Ok(s)
            }
            Err(e) => {
                let why = format!("the model's worker cannot be restarted: {e}");
                self.log.error(LogSource::Engine, why.clone());
                self.set_state(WorkerState::Failed(e.to_string()));
                Err(why)
            }
        }
    }
}

fn bump(counts: &mut SlotCounts, kind: RejectionKind) {
    match kind {
        RejectionKind::Encoding => counts.rejected_by_encoding += 1,
        RejectionKind::Schema => counts.rejected_by_schema += 1,
        RejectionKind::Size => counts.rejected_by_size += 1,
    }
}
