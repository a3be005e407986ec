//! Streams attached to a deployed model's slots (`PUT /2/active/stream/{slot}`): an input
//! stream's records go through the deployment's one chain, the one a REST request takes
//! (`Deployment::take_input`, the deployment's queue and workers, `route_yields`,
//! `screen_yields`), and what the model yields to an output slot goes to the stream attached
//! there, encoded by that stream's codec.
//!
//! An input stream is two futures on one task: the reader reads a batch (the descriptor's
//! `Batching`), screens each record and queues it for the deployment's workers; the
//! collector takes the outcomes in order and, at the end of each batch, hands each output
//! slot's yields to that slot's writer. An output stream is a writer task that screens
//! the yields by the slot's schema and writes them through its sink. Everything between
//! them is bounded (records in flight per input, batches queued per writer, the
//! deployment's queue, of which streams take at most half so REST requests keep the rest):
//! a slow sink slows the reader, and memory stays bounded.
//!
//! A bad record (decode, schema, model error) is counted on its stream and logged with its
//! position and reason; the stream goes on. A source that ends finishes its stream; a
//! source or sink that fails marks its stream failed with the reason. An output stream
//! closes (its sink finished, state finished) `LingerTime` after the last input stream
//! ended; detaching drains a stream: an input stops reading and its records in flight are
//! scored and written, an output writes what it was handed and finishes its sink.
//!
//! Acknowledgements (`runtime_core::ack`) follow the records as in a batch job: each
//! record's receipt stays beside it in flight (the workers never see it); a rejected input
//! or a record the model failed on settles rejected; the yields' shares
//! (`Receipt::split`) go with each value to its output's writer, and a yield to a slot
//! with no stream settles its share rejected. A writer flushes its sink after a batch that
//! carries tracked receipts and settles them (`jobs::settle_written`, the batch job's
//! own); a failed write or flush drops them (failed) and fails the stream. Without
//! receipts a writer still flushes at most `LingerTime` after a record was written, so a
//! file output shows its records on disk as the stream runs. An input's source is closed
//! (`RecordSource::close`) when it ends, is detached or the engine stops, once its
//! records in flight are through or the drain's deadline passed, with what remains of
//! the deadline as its grace.
//!
//! A source that keeps no acknowledged position of its own (a file) is read again from its
//! start when the engine restarts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use endpoints::descriptor::{Batching, Schema, TransportType};
use endpoints::{Direction, Registry, StreamDescriptor};
use runtime_core::{
    Fate, JobLog, LogSource, OutRecord, Position, ReadItem, Receipt, RecordSink, RecordSource,
    Slot, Value,
};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use jobs::errors::{ErrorRecord, Stage};

use super::rest::{RestOpener, RestQueues};
use super::{Deployment, Enqueued, Origin, Pending};
use crate::error::{Error, Result};
use crate::joblog::RingLog;

/// Entries of one input stream between its reader and its collector (runs of records
/// queued together, records refused on the way in, ends of batches); the records in them
/// are bounded by the streams' share of the queue.
const IN_FLIGHT_ENTRIES: usize = 1024;
/// Batches of yields waiting for an output stream's writer.
const WRITER_QUEUE: usize = 4;

/// How long a detached stream gets to get its records through, and an input that ended
/// waits for its records to settle before its source is closed.
const DETACH_GRACE: Duration = super::CLOSE_GRACE;

/// What an input's source gets past the drain's deadline to acknowledge what settled,
/// before its task is cut short.
const CLOSE_MARGIN: Duration = Duration::from_secs(1);

fn detach_deadline() -> Instant {
    Instant::now() + DETACH_GRACE
}

/// An input being drained: by when its records must be through, and whether it stops
/// reading (a REST input reads what was posted first).
#[derive(Clone, Copy, Debug)]
struct Drain {
    deadline: Instant,
    stop_reading: bool,
}

/// Yields of a batch for one output stream, with their receipts: none when no source
/// waits on them (files pay nothing), else one per value.
#[derive(Default)]
struct Yields {
    values: Vec<Value>,
    receipts: Vec<Receipt>,
}

impl Yields {
    fn push(&mut self, value: Value, receipt: Receipt) {
        if receipt.is_tracked() {
            // The values before it had no receipt: theirs are none.
            self.receipts.resize_with(self.values.len(), Receipt::none);
            self.receipts.push(receipt);
        } else if !self.receipts.is_empty() {
            self.receipts.push(receipt);
        }
        self.values.push(value);
    }
}

/// Where a stream stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StreamState {
    #[default]
    Running,
    /// Its source cannot be reached for now (`Error::is_retriable`): it tries again with
    /// back-off, for as long as it stays attached; the reason.
    Retrying(String),
    /// Being detached: what it holds is scored and written first.
    Draining,
    /// Its input ended, or its output closed after its inputs ended.
    Finished,
    /// Its source or sink failed; the reason.
    Failed(String),
}

impl StreamState {
    pub fn as_str(&self) -> &'static str {
        match self {
            StreamState::Running => "running",
            StreamState::Retrying(_) => "retrying",
            StreamState::Draining => "draining",
            StreamState::Finished => "finished",
            StreamState::Failed(_) => "failed",
        }
    }
}

/// An attached stream as the API shows it.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    pub slot: u32,
    pub descriptor: StreamDescriptor,
    /// Its endpoint (`file:/data/in.jsonl`, `POST /1/job/input/0`).
    pub endpoint: String,
    pub state: StreamState,
    /// Input: records read. Output: records the model yielded to it.
    pub records_in: u64,
    /// Input: records scored. Output: records written.
    pub records_out: u64,
    /// Rejected by encoding or schema.
    pub records_rejected: u64,
    /// Input: the model failed on them. Output: lost with a sink that failed (the write that
    /// failed, and what was written since the last flush when a flush or write failed).
    pub records_failed: u64,
    /// Input: the records its stream holds not acknowledged yet (a Kafka group's lag),
    /// when its source knows.
    pub lag: Option<u64>,
}

/// What a stream's tasks and the API share.
#[derive(Default)]
struct Shared {
    records_in: AtomicU64,
    records_out: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    /// The source's lag plus one; 0 while unknown.
    lag: AtomicU64,
    state: Mutex<StreamState>,
}

impl Shared {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn set_state(&self, state: StreamState) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    fn state(&self) -> StreamState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|_| StreamState::Failed("state lock poisoned".into()))
    }
}

struct Attached {
    slot: Slot,
    descriptor: StreamDescriptor,
    endpoint: String,
    shared: Arc<Shared>,
    /// Tells an input it is drained.
    stop: watch::Sender<Option<Drain>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// An output's writer queue, while it takes yields.
    writer: Mutex<Option<mpsc::Sender<Yields>>>,
}

impl Attached {
    fn info(&self) -> StreamInfo {
        let s = &self.shared;
        StreamInfo {
            slot: self.slot.0,
            descriptor: self.descriptor.clone(),
            endpoint: self.endpoint.clone(),
            state: s.state(),
            records_in: s.records_in.load(Ordering::Relaxed),
            records_out: s.records_out.load(Ordering::Relaxed),
            records_rejected: s.rejected.load(Ordering::Relaxed),
            records_failed: s.failed.load(Ordering::Relaxed),
            lag: s.lag.load(Ordering::Relaxed).checked_sub(1),
        }
    }

    /// Stops the stream once what it holds is through, by `deadline` at the latest: past
    /// it (an output nobody takes records from holds everything up) an input lets go of
    /// its records in flight (failed) and closes its source, and a task still running
    /// soon after is cut short; the loss is logged. A REST input takes no more records and
    /// reads what was posted; another input stops reading.
    async fn drain(&self, rest: &RestQueues, log: &RingLog, deadline: Instant) {
        if self.shared.state() == StreamState::Running {
            self.shared.set_state(StreamState::Draining);
        }
        let is_rest = self.descriptor.transport.transport_type() == TransportType::Rest;
        let rest_input = self.slot.is_input() && is_rest;
        if rest_input {
            rest.close_input(self.slot.0);
        }
        self.stop.send_replace(Some(Drain {
            deadline,
            stop_reading: !rest_input,
        }));
        if self.slot.is_output() && is_rest {
            // Readers may never come: what it holds is dropped and counted when forgotten.
            rest.release_output(self.slot.0);
        }
        drop(self.writer.lock().ok().and_then(|mut w| w.take()));
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        // An input closes its source by the deadline: a moment more for it to acknowledge.
        let cut = if self.slot.is_input() {
            deadline + CLOSE_MARGIN
        } else {
            deadline
        };
        if let Some(mut task) = task {
            if tokio::time::timeout_at(cut, &mut task).await.is_err() {
                task.abort();
                log.warn(
                    LogSource::Engine,
                    format!(
                        "stream {} on slot {} was not through its records in time and was stopped; records it held are lost",
                        self.endpoint, self.slot
                    ),
                );
            }
        }
    }
}

/// Input streams reading now, and how many have ended since the deployment started.
#[derive(Clone, Copy, Debug, Default)]
struct InputsSeen {
    running: usize,
    ended: u64,
}

/// The streams attached to one deployment's slots.
pub struct Streams {
    attached: Mutex<BTreeMap<u32, Arc<Attached>>>,
    /// Serializes attaching and detaching.
    changing: tokio::sync::Mutex<()>,
    pub(crate) rest: Arc<RestQueues>,
    inputs: watch::Sender<InputsSeen>,
    /// Records of all streams in the deployment's queue at once.
    in_queue: Arc<Semaphore>,
    /// How many that is: half the queue's bound.
    queue_share: usize,
    /// The deployment's log.
    log: Arc<RingLog>,
}

impl Streams {
    /// No stream yet, for a deployment whose request queue holds `queue_bound`.
    pub(crate) fn new(queue_bound: usize, log: Arc<RingLog>) -> Streams {
        Streams {
            attached: Mutex::new(BTreeMap::new()),
            changing: tokio::sync::Mutex::new(()),
            rest: Arc::new(RestQueues::default()),
            inputs: watch::channel(InputsSeen::default()).0,
            in_queue: Arc::new(Semaphore::new(super::half_queue(queue_bound))),
            queue_share: super::half_queue(queue_bound),
            log,
        }
    }

    /// Every attached stream, by slot.
    pub fn list(&self) -> Vec<StreamInfo> {
        self.attached
            .lock()
            .map(|a| a.values().map(|s| s.info()).collect())
            .unwrap_or_default()
    }

    /// The descriptor of each attached stream, by slot (what is stored to attach them again).
    pub fn descriptors(&self) -> BTreeMap<u32, StreamDescriptor> {
        self.attached
            .lock()
            .map(|a| {
                a.iter()
                    .map(|(slot, s)| (*slot, s.descriptor.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn take(&self, slot: u32) -> Option<Arc<Attached>> {
        self.attached.lock().ok().and_then(|mut a| a.remove(&slot))
    }

    /// The writer queue of the output stream on `slot`, while it takes yields.
    fn writer(&self, slot: Slot) -> Option<mpsc::Sender<Yields>> {
        let attached = self.attached.lock().ok()?;
        let a = attached.get(&slot.0)?;
        let w = a.writer.lock().ok()?;
        w.clone()
    }

    /// Whether a stream is attached to `slot` (taking yields or not: one whose sink failed
    /// or that closed after its inputs is still there).
    fn has_stream(&self, slot: Slot) -> bool {
        self.attached.lock().is_ok_and(|a| a.contains_key(&slot.0))
    }

    /// The output stream on `slot` takes no more yields (it closed after its inputs, or
    /// its sink failed); `shared` says it is still that stream.
    fn close_writer(&self, slot: Slot, shared: &Arc<Shared>) {
        if let Ok(attached) = self.attached.lock() {
            if let Some(a) = attached.get(&slot.0) {
                if Arc::ptr_eq(&a.shared, shared) {
                    drop(a.writer.lock().ok().and_then(|mut w| w.take()));
                }
            }
        }
    }

    /// Detaches the stream on `slot`, draining it; `false` when none is attached.
    pub(crate) async fn detach(&self, slot: Slot) -> bool {
        let _changing = self.changing.lock().await;
        let Some(a) = self.take(slot.0) else {
            return false;
        };
        a.drain(&self.rest, &self.log, detach_deadline()).await;
        self.forget_rest(slot);
        true
    }

    /// Forgets the REST queues of `slot`; output records no reader took are said to be
    /// dropped.
    fn forget_rest(&self, slot: Slot) {
        let unread = self.rest.remove(slot.0);
        if unread > 0 {
            self.log.warn(
                LogSource::Engine,
                format!(
                    "the REST stream on slot {slot} was detached with {unread} record(s) no reader took (GET /1/job/output/{slot}); they are dropped"
                ),
            );
        }
    }

    /// Detaches every stream by `deadline`: inputs first (their records in flight still
    /// reach the outputs, which stay attached meanwhile), then outputs.
    pub(crate) async fn detach_all(&self, deadline: Instant) {
        let _changing = self.changing.lock().await;
        // A REST output nobody reads would hold the inputs up until the deadline.
        for a in self.attached_where(|a| a.slot.is_output()) {
            if a.descriptor.transport.transport_type() == TransportType::Rest {
                self.rest.release_output(a.slot.0);
            }
        }
        let drain = |a: Arc<Attached>| async move {
            a.drain(&self.rest, &self.log, deadline).await;
            self.forget_rest(a.slot);
        };
        let inputs = self.take_where(|a| a.slot.is_input());
        futures_util::future::join_all(inputs.into_iter().map(drain)).await;
        let outputs = self.take_where(|_| true);
        futures_util::future::join_all(outputs.into_iter().map(drain)).await;
    }

    fn attached_where(&self, which: impl Fn(&Attached) -> bool) -> Vec<Arc<Attached>> {
        self.attached
            .lock()
            .map(|a| a.values().filter(|s| which(s)).cloned().collect())
            .unwrap_or_default()
    }

    /// Takes the streams `which` picks out of the attached ones.
    fn take_where(&self, which: impl Fn(&Attached) -> bool) -> Vec<Arc<Attached>> {
        let Ok(mut attached) = self.attached.lock() else {
            return Vec::new();
        };
        let slots: Vec<u32> = attached
            .iter()
            .filter(|(_, a)| which(a))
            .map(|(slot, _)| *slot)
            .collect();
        slots
            .iter()
            .filter_map(|slot| attached.remove(slot))
            .collect()
    }

    /// Hands `yields` of one batch to output `slot`'s writer (waiting while the writer is
    /// behind); with no writer they are counted and logged, and their receipts dropped
    /// (failed: the stream they were routed to went away or its sink failed).
    async fn deliver(&self, d: &Deployment, slot: Slot, yields: Yields) {
        let n = yields.values.len() as u64;
        let sent = match self.writer(slot) {
            Some(tx) => tx.send(yields).await.is_ok(),
            None => false,
        };
        if !sent {
            d.yields_unread(slot, n, || {
                "whose output stream closed before they reached it; counted, not written".into()
            });
        }
    }
}

/// Checks what a stream on `slot` may be: the descriptor valid for the slot's direction,
/// and nothing asked that streams do not do yet.
pub fn check_descriptor(descriptor: &StreamDescriptor, slot: Slot) -> Result<()> {
    let direction = if slot.is_input() {
        Direction::Input
    } else {
        Direction::Output
    };
    descriptor.validate_for(direction)?;
    if descriptor.schema != Schema::Inherit {
        return Err(runtime_core::Error::descriptor(
            "Schema",
            "a stream's own schema is not supported yet: the model's schema of the slot applies (leave Schema out)",
        )
        .into());
    }
    if descriptor.batching == Batching::Explicit {
        return Err(runtime_core::Error::descriptor(
            "Batching",
            "explicit batches are not supported yet: give a Watermark and a NagleTime",
        )
        .into());
    }
    Ok(())
}

/// Attaches `descriptor` to `slot` of `d`, opening it through `registry` (with the REST
/// transport bound to the slot); a stream already on the slot is drained and replaced.
pub(crate) async fn attach(
    d: &Arc<Deployment>,
    slot: Slot,
    descriptor: StreamDescriptor,
    registry: &Registry,
) -> Result<StreamInfo> {
    check_descriptor(&descriptor, slot)?;
    let streams = &d.streams;
    let _changing = streams.changing.lock().await;
    if let Some(old) = streams.take(slot.0) {
        old.drain(&streams.rest, &streams.log, detach_deadline())
            .await;
        streams.forget_rest(slot);
    }
    let registry = registry.clone().register(
        TransportType::Rest,
        Arc::new(RestOpener::new(slot.0, streams.rest.clone())),
    );
    let codec = d.stream_codec(slot, descriptor.codec_config());
    let shared = Arc::new(Shared::default());
    let (stop, stopped) = watch::channel(None);
    // Opening a file is file work: on the blocking pool.
    let open = {
        let (descriptor, input) = (descriptor.clone(), slot.is_input());
        tokio::task::spawn_blocking(move || {
            if input {
                registry
                    .open_source(&descriptor, &codec)
                    .map(Endpoint::Source)
            } else if slot == Slot::ERRORS {
                registry
                    .open_error_sink(&descriptor, &codec)
                    .map(Endpoint::Sink)
            } else {
                registry.open_sink(&descriptor, &codec).map(Endpoint::Sink)
            }
        })
        .await
        .map_err(|e| Error::Store(format!("opening the stream failed: {e}")))?
    };
    let endpoint = match open {
        Ok(e) => e,
        Err(e) => {
            streams.forget_rest(slot);
            return Err(match e {
                runtime_core::Error::Descriptor { .. } => e.into(),
                other => Error::BadRequest(format!("stream on slot {slot}: {other}")),
            });
        }
    };
    let (name, task, writer) = match endpoint {
        Endpoint::Source(source) => {
            let name = source.describe();
            let batch = match descriptor.batching {
                Batching::Normal(b) => b.size.max(1),
                _ => 1,
            };
            streams.inputs.send_modify(|s| s.running += 1);
            let ended = InputEnded(d.clone());
            let input = Input {
                d: d.clone(),
                slot,
                name: name.clone(),
                batch,
                shared: shared.clone(),
            };
            (name, tokio::spawn(input.run(source, stopped, ended)), None)
        }
        Endpoint::Sink(sink) => {
            let name = sink.describe();
            let (tx, rx) = mpsc::channel(WRITER_QUEUE);
            let output = Output {
                d: d.clone(),
                slot,
                name: name.clone(),
                shared: shared.clone(),
                linger: Duration::from_millis(descriptor.linger_time_ms),
            };
            let inputs = streams.inputs.subscribe();
            (name, tokio::spawn(output.run(sink, rx, inputs)), Some(tx))
        }
    };
    d.log.info(
        LogSource::Engine,
        format!("stream {name} attached to slot {slot}"),
    );
    let attached = Arc::new(Attached {
        slot,
        descriptor,
        endpoint: name,
        shared,
        stop,
        task: Mutex::new(Some(task)),
        writer: Mutex::new(writer),
    });
    let info = attached.info();
    if let Ok(mut a) = streams.attached.lock() {
        a.insert(slot.0, attached);
    }
    Ok(info)
}

enum Endpoint {
    Source(Box<dyn RecordSource>),
    Sink(Box<dyn RecordSink>),
}

/// Records queued together on their way from an input's reader to its collector, or the
/// end of a batch read.
enum InFlight {
    /// Records of a batch read, queued as one entry of the deployment's queue (scored in
    /// one batch, as a request's records are).
    Records {
        positions: Vec<Position>,
        /// Their replies to come, one per record, or why they never reached the queue
        /// (kept small: the error is rare).
        outcome: std::result::Result<Pending, Box<Error>>,
        /// Their source's receipts, settled by the collector or the writers.
        receipts: Vec<Receipt>,
        /// Their places among the streams' records in the deployment's queue.
        _permit: tokio::sync::OwnedSemaphorePermit,
    },
    /// A record refused on its way in, for the error stream with its receipt.
    Parked {
        error: Value,
        receipt: Receipt,
    },
    BatchEnd,
}

/// Records of a batch read that go to the model, in order.
#[derive(Default)]
struct Taken {
    positions: Vec<Position>,
    values: Vec<Value>,
    receipts: Vec<Receipt>,
}

/// What screening a record read leads to.
enum Screened {
    /// It goes to the model.
    Take(Position, Value, Receipt),
    /// Refused: its error record and receipt go to the error stream.
    Park(Value, Receipt),
    /// Refused and settled.
    Done,
}

/// Tells the outputs an input stream ended, when dropped.
struct InputEnded(Arc<Deployment>);

impl Drop for InputEnded {
    fn drop(&mut self) {
        self.0.streams.inputs.send_modify(|s| {
            s.running = s.running.saturating_sub(1);
            s.ended += 1;
        });
    }
}

struct Input {
    d: Arc<Deployment>,
    slot: Slot,
    name: String,
    batch: usize,
    shared: Arc<Shared>,
}

impl Input {
    /// Reads, scores and routes until the source ends or fails or the input is drained;
    /// then closes the source. `_ended` tells the outputs it ended however the task ends
    /// (cut short too).
    async fn run(
        self,
        mut source: Box<dyn RecordSource>,
        drain: watch::Receiver<Option<Drain>>,
        _ended: InputEnded,
    ) {
        let (tx, rx) = mpsc::channel(IN_FLIGHT_ENTRIES);
        let mut stop = drain.clone();
        let reader = async {
            let tx = tx;
            let backoff = runtime_core::Backoff::default();
            let mut failures = 0u32;
            loop {
                let read = tokio::select! {
                    biased;
                    _ = stop.wait_for(|d| d.is_some_and(|d| d.stop_reading)) => return None,
                    read = source.read_batch(self.batch) => read,
                };
                self.shared.lag.store(
                    source.lag().map_or(0, |l| l.saturating_add(1)),
                    Ordering::Relaxed,
                );
                let items = match read {
                    Ok(Some(items)) => items,
                    Ok(None) => return Some(StreamState::Finished),
                    // A source unreachable for now: no busy loop, no failure; it is read
                    // again after a wait that doubles up to 5 s, as long as it is attached.
                    Err(e) if e.is_retriable() => {
                        failures += 1;
                        if failures == 1 || failures.is_power_of_two() {
                            self.d.log.warn(
                                LogSource::Engine,
                                format!(
                                    "stream {} on slot {}: {e}; retrying ({failures} in a row)",
                                    self.name, self.slot
                                ),
                            );
                        }
                        self.shared.set_state(StreamState::Retrying(e.to_string()));
                        tokio::select! {
                            biased;
                            _ = stop.wait_for(|d| d.is_some_and(|d| d.stop_reading)) => return None,
                            _ = tokio::time::sleep(backoff.delay(failures)) => {}
                        }
                        continue;
                    }
                    Err(e) => return Some(StreamState::Failed(e.to_string())),
                };
                if failures > 0 {
                    failures = 0;
                    self.d.log.info(
                        LogSource::Engine,
                        format!("stream {} on slot {}: reading again", self.name, self.slot),
                    );
                    if matches!(self.shared.state(), StreamState::Retrying(_)) {
                        self.shared.set_state(StreamState::Running);
                    }
                }
                // The records taken go to the queue in runs of at most a deployment batch
                // (or the streams' share of the queue), each run one entry.
                let run = self.d.batching.size.min(self.d.streams.queue_share).max(1);
                let mut taken = Taken::default();
                for item in items {
                    match self.screen(item) {
                        Screened::Take(position, value, receipt) => {
                            taken.positions.push(position);
                            taken.values.push(value);
                            taken.receipts.push(receipt);
                            if taken.values.len() >= run
                                && !self.queue(std::mem::take(&mut taken), &tx).await
                            {
                                return None;
                            }
                        }
                        Screened::Park(error, receipt) => {
                            // The records before it go first: the collector keeps read order.
                            if !taken.values.is_empty()
                                && !self.queue(std::mem::take(&mut taken), &tx).await
                            {
                                return None;
                            }
                            if tx.send(InFlight::Parked { error, receipt }).await.is_err() {
                                return None;
                            }
                        }
                        Screened::Done => {}
                    }
                }
                if !taken.values.is_empty() && !self.queue(taken, &tx).await {
                    return None;
                }
                if tx.send(InFlight::BatchEnd).await.is_err() {
                    return None;
                }
            }
        };
        let mut cut = drain.clone();
        let past_deadline = async move {
            let deadline = match cut.wait_for(Option::is_some).await {
                Ok(d) => d.map(|d| d.deadline),
                Err(_) => None,
            };
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            (ended, ()) = async { tokio::join!(reader, self.collect(rx)) } => ended,
            () = past_deadline => {
                self.d.log.warn(
                    LogSource::Engine,
                    format!(
                        "stream {} on slot {} was not through its records in time; records it held are lost (failed, for its source)",
                        self.name, self.slot
                    ),
                );
                None
            }
        };
        // Every record it read is settled, handed to a writer, or dropped (failed): the
        // source waits for the writers' acknowledgements within what is left of the time.
        let grace = match *drain.borrow() {
            Some(d) => d.deadline.saturating_duration_since(Instant::now()),
            None => DETACH_GRACE,
        };
        if let Err(e) = source.close(grace).await {
            self.d.log.warn(
                LogSource::Engine,
                format!(
                    "closing stream {} on slot {}: {e}; records may be read again",
                    self.name, self.slot
                ),
            );
        }
        let d = &self.d;
        match ended {
            Some(StreamState::Failed(why)) => {
                d.log.error(
                    LogSource::Engine,
                    format!("stream {} on slot {} failed: {why}", self.name, self.slot),
                );
                self.shared.set_state(StreamState::Failed(why));
            }
            Some(state) => {
                d.log.info(
                    LogSource::Engine,
                    format!(
                        "stream {} on slot {} finished: {} read, {} scored, {} rejected, {} failed",
                        self.name,
                        self.slot,
                        self.shared.records_in.load(Ordering::Relaxed),
                        self.shared.records_out.load(Ordering::Relaxed),
                        self.shared.rejected.load(Ordering::Relaxed),
                        self.shared.failed.load(Ordering::Relaxed),
                    ),
                );
                self.shared.set_state(state);
            }
            None => {}
        }
    }

    /// Queues records taken from a batch read for the workers, as one entry; `false` when
    /// the collector is gone. Each step is tried at once first and awaited only when it
    /// must wait.
    async fn queue(&self, taken: Taken, tx: &mpsc::Sender<InFlight>) -> bool {
        let d = &self.d;
        let Taken {
            positions,
            values,
            receipts,
        } = taken;
        let n = u32::try_from(values.len().clamp(1, d.streams.queue_share)).unwrap_or(u32::MAX);
        let permit = match d.streams.in_queue.clone().try_acquire_many_owned(n) {
            Ok(permit) => permit,
            Err(_) => match d.streams.in_queue.clone().acquire_many_owned(n).await {
                Ok(permit) => permit,
                Err(_) => return false,
            },
        };
        let outcome = match d.try_enqueue(self.slot, values) {
            Enqueued::Now(pending) => Ok(pending),
            Enqueued::Full(request) => d.enqueue(request).await.map_err(Box::new),
            Enqueued::Closed(e) => Err(Box::new(e)),
        };
        let records = InFlight::Records {
            positions,
            outcome,
            receipts,
            _permit: permit,
        };
        match tx.try_send(records) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(records)) => tx.send(records).await.is_ok(),
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Counts one item read and screens it; a rejection is counted and logged, and parked
    /// for the error stream when one is attached, else its receipt settled as rejected.
    fn screen(&self, item: ReadItem) -> Screened {
        let d = &self.d;
        Shared::add(&self.shared.records_in, 1);
        let record = match item {
            ReadItem::Record(r) => r,
            ReadItem::Rejected(mut r) => {
                Shared::add(&self.shared.rejected, 1);
                let receipt = std::mem::take(&mut r.receipt);
                d.input_rejected(
                    self.slot,
                    r.kind,
                    r.reason.clone(),
                    Origin::Stream(&self.name, &r.position),
                );
                return self.park(receipt, || ErrorRecord {
                    bytes: r.raw.map(Vec::from),
                    ..ErrorRecord::new(
                        Stage::Input,
                        jobs::errors::kind_of(r.kind),
                        self.slot,
                        r.position,
                        r.reason,
                    )
                });
            }
        };
        let runtime_core::Record {
            value,
            position,
            receipt,
        } = record;
        let origin = Origin::Stream(&self.name, &position);
        match d.take_input(self.slot, value, position.clone(), origin) {
            Ok(value) => Screened::Take(position, value, receipt),
            Err(e) => {
                Shared::add(&self.shared.rejected, 1);
                self.park(receipt, || {
                    ErrorRecord::new(Stage::Input, "schema", self.slot, position, e.to_string())
                })
            }
        }
    }

    /// A refused record's receipt: with its error record for the error stream when one is
    /// attached, else settled as rejected.
    fn park(&self, receipt: Receipt, error: impl FnOnce() -> ErrorRecord) -> Screened {
        if self.d.streams.has_stream(Slot::ERRORS) {
            Screened::Park(error().into_value(), receipt)
        } else {
            receipt.settle(Fate::Rejected);
            Screened::Done
        }
    }

    /// Takes the outcomes in order; at the end of each batch hands each output slot's
    /// yields, with their receipts' shares, to its writer.
    async fn collect(&self, mut rx: mpsc::Receiver<InFlight>) {
        let d = &self.d;
        let mut yields: BTreeMap<Slot, Yields> = BTreeMap::new();
        loop {
            let item = match rx.try_recv() {
                Ok(item) => item,
                Err(mpsc::error::TryRecvError::Empty) => match rx.recv().await {
                    Some(item) => item,
                    None => break,
                },
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            let (positions, outcome, receipts) = match item {
                InFlight::Records {
                    positions,
                    outcome,
                    receipts,
                    ..
                } => (positions, outcome, receipts),
                InFlight::Parked { error, receipt } => {
                    yields.entry(Slot::ERRORS).or_default().push(error, receipt);
                    continue;
                }
                InFlight::BatchEnd => {
                    for (slot, batch) in std::mem::take(&mut yields) {
                        d.streams.deliver(d, slot, batch).await;
                    }
                    continue;
                }
            };
            let replies = match outcome {
                Ok(mut pending) => match pending.try_replies() {
                    Some(replies) => Ok(replies),
                    None => Ok(pending.replies().await),
                },
                // They never reached the queue (the model is being undeployed).
                Err(e) => Err(e),
            };
            match replies {
                Ok(replies) => {
                    let mut replies = replies.into_iter();
                    for (position, receipt) in positions.into_iter().zip(receipts) {
                        let reply = replies
                            .next()
                            .unwrap_or_else(|| Err(super::stopped_before_answer()));
                        self.settle(position, Ok(reply), receipt, &mut yields);
                    }
                }
                Err(e) => {
                    let why = match *e {
                        Error::ModelUnavailable(why) => why,
                        other => other.to_string(),
                    };
                    for (position, receipt) in positions.into_iter().zip(receipts) {
                        let e = Box::new(Error::ModelUnavailable(why.clone()));
                        self.settle(position, Err(e), receipt, &mut yields);
                    }
                }
            }
        }
        // A reader stopped in the middle of a batch: what it scored goes on all the same.
        for (slot, batch) in yields {
            d.streams.deliver(d, slot, batch).await;
        }
    }

    /// One record's reply: its yields, with its receipt's shares, added to the batch's for
    /// each output slot; a failure counted and logged, its receipt settled (or its error
    /// record and receipt added for the error stream).
    fn settle(
        &self,
        position: Position,
        reply: std::result::Result<super::Reply, Box<Error>>,
        receipt: Receipt,
        yields: &mut BTreeMap<Slot, Yields>,
    ) {
        let d = &self.d;
        let failed = match reply {
            Ok(Ok(outs)) => {
                Shared::add(&self.shared.records_out, 1);
                let tracked = receipt.is_tracked();
                let mut shares = receipt.split(if tracked { outs.len() } else { 0 });
                let outs = outs
                    .into_iter()
                    .map(|(slot, v)| (slot, (v, shares.pop().unwrap_or_default())));
                let (routed, unrouted) = d.route_yields(
                    outs,
                    |slot| d.streams.has_stream(slot),
                    |_| "to which no output stream is attached; counted, not written".into(),
                );
                for (_, share) in unrouted {
                    share.settle(Fate::Rejected);
                }
                for (slot, values) in routed {
                    let batch = yields.entry(slot).or_default();
                    for (v, share) in values {
                        batch.push(v, share);
                    }
                }
                None
            }
            Ok(Err(refusal)) => {
                let fate = refusal.fate();
                let e = refusal.into_error();
                if fate == Fate::Rejected && d.streams.has_stream(Slot::ERRORS) {
                    // The model failed on it: its error record goes to the error stream.
                    let reason = match &e {
                        Error::ModelRaised(message) => message.clone(),
                        other => other.to_string(),
                    };
                    let error = ErrorRecord::new(
                        Stage::Model,
                        "model",
                        self.slot,
                        position.clone(),
                        reason,
                    );
                    yields
                        .entry(Slot::ERRORS)
                        .or_default()
                        .push(error.into_value(), receipt);
                } else {
                    receipt.settle(fate);
                }
                Some(e)
            }
            Err(e) => {
                receipt.settle(Fate::Failed);
                Some(*e)
            }
        };
        if let Some(e) = failed {
            Shared::add(&self.shared.failed, 1);
            d.record_failed(self.slot, &e, Origin::Stream(&self.name, &position));
        }
    }
}

struct Output {
    d: Arc<Deployment>,
    slot: Slot,
    name: String,
    shared: Arc<Shared>,
    linger: Duration,
}

impl Output {
    /// Whether it is the error stream: error records are not screened by a schema, and
    /// once durable they settle their records as rejected (what they stand for was not
    /// delivered; the source moves past them).
    fn is_errors(&self) -> bool {
        self.slot == Slot::ERRORS
    }
}

/// Where an output's writing stands.
#[derive(Default)]
struct Written {
    /// Records handed to the sink (the last one's number).
    records: u64,
    /// Records the sink took since it was last flushed.
    unflushed: u64,
    /// When the first of those was written: the sink is flushed `LingerTime` later.
    since: Option<Instant>,
    /// Batches written whose receipts wait for the next flush.
    unsettled: jobs::Unsettled,
}

/// Receipts an output holds for one flush at most: past it, it flushes even with more
/// batches waiting (a batch job's writers' default).
const SETTLE_AFTER_RECORDS: usize = jobs::SETTLE_AFTER_RECORDS;

impl Output {
    async fn run(
        self,
        mut sink: Box<dyn RecordSink>,
        mut rx: mpsc::Receiver<Yields>,
        mut inputs: watch::Receiver<InputsSeen>,
    ) {
        let ended_before = inputs.borrow().ended;
        let mut watching = true;
        let mut written = Written::default();
        let failed = loop {
            let seen = *inputs.borrow_and_update();
            // The inputs that fed it have all ended: it closes once LingerTime passes
            // without a record.
            let lingering = seen.running == 0 && seen.ended > ended_before;
            let flush_at = written.since.map(|t| t + self.linger);
            let batch = tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => batch,
                    None => break None,
                },
                changed = inputs.changed(), if watching => {
                    watching = changed.is_ok();
                    continue;
                }
                _ = tokio::time::sleep(self.linger), if lingering => {
                    // What was handed over is written; then the channel ends.
                    self.d.streams.close_writer(self.slot, &self.shared);
                    rx.close();
                    watching = false;
                    continue;
                }
                _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                    match self.flush(sink.as_mut(), &mut written).await {
                        Ok(()) => continue,
                        Err(why) => break Some(why),
                    }
                }
            };
            if let Err(why) = self.write(sink.as_mut(), batch, &mut written).await {
                break Some(why);
            }
            // One flush for every batch that came while the last one was written (a group
            // commit): a message broker's acknowledgement costs a round trip, not a record.
            if rx.is_empty() || written.unsettled.len() >= SETTLE_AFTER_RECORDS {
                if let Err(why) = self.settle(sink.as_mut(), &mut written).await {
                    break Some(why);
                }
            }
        };
        let d = &self.d;
        let failed = match failed {
            Some(why) => Some(why),
            None => match self.settle(sink.as_mut(), &mut written).await {
                Ok(()) => sink.finish().await.err().map(|e| e.to_string()),
                Err(why) => Some(why),
            },
        };
        match failed {
            Some(why) => {
                // Nothing more is handed to it: yields to the slot are counted as unread.
                d.streams.close_writer(self.slot, &self.shared);
                d.log.error(
                    LogSource::Engine,
                    format!("stream {} on slot {} failed: {why}", self.name, self.slot),
                );
                self.shared.set_state(StreamState::Failed(why));
            }
            None => {
                d.log.info(
                    LogSource::Engine,
                    format!(
                        "stream {} on slot {} finished: {} written, {} rejected",
                        self.name,
                        self.slot,
                        self.shared.records_out.load(Ordering::Relaxed),
                        self.shared.rejected.load(Ordering::Relaxed),
                    ),
                );
                if self.shared.state() == StreamState::Running {
                    self.shared.set_state(StreamState::Finished);
                }
            }
        }
    }

    /// Screens yields by the slot's schema and writes them; a batch carrying receipts keeps
    /// them for the next flush ([`Output::settle`], once no batch waits), another is flushed
    /// once `LingerTime` passed since the sink was last flushed. `Err` when the sink failed:
    /// what it did not make durable is counted failed, and the receipts are dropped
    /// (failed).
    async fn write(
        &self,
        sink: &mut dyn RecordSink,
        batch: Yields,
        written: &mut Written,
    ) -> std::result::Result<(), String> {
        let d = &self.d;
        let Yields {
            mut values,
            mut receipts,
        } = batch;
        Shared::add(&self.shared.records_in, values.len() as u64);
        if !self.is_errors() {
            let rejected = d.screen_yields(
                self.slot,
                &mut values,
                &mut receipts,
                Origin::Sink(&self.name),
            );
            Shared::add(&self.shared.rejected, rejected.len() as u64);
        }
        if values.is_empty() {
            return Ok(());
        }
        let first = written.records + 1;
        let batch: Vec<OutRecord> = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                written.records += 1;
                OutRecord {
                    value,
                    position: Position::record(written.records),
                    meta: receipts.get(i).and_then(|r| r.meta().cloned()),
                }
            })
            .collect();
        let n = batch.len() as u64;
        let rejections = match sink.write_batch(batch).await {
            Ok(rejections) => rejections,
            Err(e) => {
                Shared::add(&self.shared.failed, n + written.unflushed);
                return Err(e.to_string());
            }
        };
        let refused = rejections.len() as u64;
        for r in &rejections {
            d.output_rejected(
                self.slot,
                r.kind,
                r.reason.clone(),
                Origin::Stream(&self.name, &r.position),
            );
        }
        Shared::add(&self.shared.rejected, refused);
        Shared::add(&self.shared.records_out, n - refused);
        d.outputs_delivered(self.slot, n - refused);
        written.unflushed += n - refused;
        written.since.get_or_insert_with(Instant::now);
        // Held for the next flush when a source waits on them; else nothing to settle.
        let untracked = written
            .unsettled
            .hold(first, n as usize, receipts, rejections)
            .is_some();
        if untracked && written.since.is_some_and(|t| t.elapsed() >= self.linger) {
            self.flush(sink, written).await?;
        }
        Ok(())
    }

    /// Flushes the sink and settles the receipts of what was written since the last flush
    /// (`jobs::settle_written`, the batch job's own): delivered (for the error stream:
    /// rejected), rejected where the sink refused. `Err` when the flush failed: what it did
    /// not make durable is counted failed, and the receipts are dropped (failed).
    async fn settle(
        &self,
        sink: &mut dyn RecordSink,
        written: &mut Written,
    ) -> std::result::Result<(), String> {
        let Some(jobs::Held {
            first,
            receipts,
            refused: rejections,
        }) = written.unsettled.take()
        else {
            return Ok(());
        };
        let delivered = if self.is_errors() {
            Fate::Rejected
        } else {
            Fate::Delivered
        };
        match jobs::settle_written(sink, receipts, first, &rejections, delivered).await {
            Ok(refused) => {
                for receipt in refused {
                    receipt.settle(Fate::Rejected);
                }
                written.unflushed = 0;
                written.since = None;
                Ok(())
            }
            Err(e) => {
                Shared::add(&self.shared.failed, written.unflushed);
                Err(e.to_string())
            }
        }
    }

    /// Flushes what the sink took since it was last flushed.
    async fn flush(
        &self,
        sink: &mut dyn RecordSink,
        written: &mut Written,
    ) -> std::result::Result<(), String> {
        if !written.unsettled.is_empty() {
            return self.settle(sink, written).await;
        }
        written.since = None;
        if written.unflushed == 0 {
            return Ok(());
        }
        match sink.flush().await {
            Ok(()) => {
                written.unflushed = 0;
                Ok(())
            }
            Err(e) => {
                Shared::add(&self.shared.failed, written.unflushed);
                Err(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_takes_the_slots_direction_and_refuses_what_streams_lack() {
        let discard = StreamDescriptor::parse("discard:").unwrap();
        let err = check_descriptor(&discard, Slot(0)).unwrap_err().to_string();
        assert!(err.contains("Transport.Type"), "{err}");
        check_descriptor(&discard, Slot(1)).unwrap();
        let own_schema =
            StreamDescriptor::parse(r#"{"Transport": "REST", "Schema": "double"}"#).unwrap();
        let err = check_descriptor(&own_schema, Slot(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'Schema'"), "{err}");
        let explicit =
            StreamDescriptor::parse(r#"{"Transport": "REST", "Batching": "explicit"}"#).unwrap();
        let err = check_descriptor(&explicit, Slot(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'Batching'"), "{err}");
    }
}

/// Acknowledgements through a deployed model's streams, with endpoints built here (as a
/// Kafka or Redis Streams endpoint will attach: an opener in the registry) and a model
/// scored in-process, so each record's fate can be chosen and checked.
#[cfg(test)]
mod acks {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use async_trait::async_trait;
    use endpoints::{OpenRequest, Opener};
    use runtime_core::{
        Acks, AllRecordsFunction, EntryPoints, InitContext, Language, ModelSpec, Record,
        RecordFailure, Rejection, RejectionKind, Runner, ScoreItem, ScoreOutcome, Session,
        SessionConfig, SinkReport,
    };

    use super::*;
    use crate::deploy::DeploySpec;

    /// Scores `x` into `{"y": x}` on slot 1, except: 13 raises, 7 yields a value the sink
    /// refuses, 5 also yields to slot 3 (no stream there), 0 yields nothing, 99 kills its
    /// worker.
    #[derive(Default)]
    struct Model {
        died_on: Option<u64>,
    }

    #[async_trait]
    impl Session for Model {
        async fn score(
            &mut self,
            batch: Vec<ScoreItem>,
        ) -> runtime_core::Result<Vec<ScoreOutcome>> {
            if let Some(item) = batch.iter().find(|i| i.value == Value::Int(99)) {
                self.died_on = Some(item.seqno);
                return Err(runtime_core::Error::WorkerDied {
                    reason: "killed by signal 9".into(),
                    last_record: Some(item.seqno.to_string()),
                });
            }
            Ok(batch
                .into_iter()
                .map(|item| {
                    let x = match item.value {
                        Value::Int(x) => x,
                        _ => -1,
                    };
                    let y = |v: Value| (Slot(1), Value::Map([("y", v)].into_iter().collect()));
                    match x {
                        13 => Err(RecordFailure {
                            message: "ValueError: unlucky".into(),
                            traceback: String::new(),
                        }),
                        7 => Ok(vec![y(Value::from("unencodable"))]),
                        5 => Ok(vec![y(Value::Int(x)), (Slot(3), Value::Int(x))]),
                        0 => Ok(Vec::new()),
                        _ => Ok(vec![y(Value::Int(x))]),
                    }
                })
                .collect())
        }
        async fn collect(&mut self, _: Slot, _: Vec<Value>) -> runtime_core::Result<()> {
            Ok(())
        }
        async fn run_all(
            &mut self,
            _: AllRecordsFunction,
        ) -> runtime_core::Result<Vec<(Slot, Value)>> {
            Ok(Vec::new())
        }
        async fn close(self: Box<Self>) -> runtime_core::Result<()> {
            Ok(())
        }
        fn failed_seqno(&self) -> Option<u64> {
            self.died_on
        }
    }

    struct InProcess;

    #[async_trait]
    impl Runner for InProcess {
        async fn start(
            &self,
            _: &ModelSpec,
            _: SessionConfig,
        ) -> runtime_core::Result<Box<dyn Session>> {
            Ok(Box::<Model>::default())
        }
    }

    async fn deployment() -> Arc<Deployment> {
        let log = Arc::new(RingLog::new(1000));
        let spec = DeploySpec {
            id: "acks".into(),
            name: "acks".into(),
            document: "{}".into(),
            model: ModelSpec {
                language: Language::Python,
                work_dir: std::env::temp_dir(),
                main_source: "__model.py".into(),
                entry_points: EntryPoints {
                    score: Some("action".into()),
                    ..EntryPoints::default()
                },
                recordsets: Default::default(),
                import_paths: Vec::new(),
            },
            source_name: "model.py".into(),
            codecs: BTreeMap::new(),
            schemas: Default::default(),
            codec_schemas: Default::default(),
            dir: std::env::temp_dir(),
            session: SessionConfig {
                init: InitContext::Deployment {
                    raw_json: "{}".into(),
                },
                log: log.clone(),
                env: Vec::new(),
            },
            queue_bound: 64,
            batching: jobs::Batching::new(4),
            workers: 1,
            environment: None,
            limits: Default::default(),
            limits_enforced: false,
            restart: runtime_core::RestartPolicy::with_budget(Some(3)),
            observer: None,
            libraries: Vec::new(),
        };
        Deployment::start(spec, Arc::new(InProcess), log)
            .await
            .unwrap()
    }

    /// What an acknowledging source learned, in the order it learned it.
    #[derive(Clone, Default)]
    struct Learned {
        fates: Arc<Mutex<Vec<(u64, Fate)>>>,
        closed: Arc<AtomicBool>,
    }

    /// Gives each item a receipt from its ledger and keeps the fates it learns; `close`
    /// drains the rest. Unbounded, it returns empty batches once its items are read, as a
    /// topic with nothing new does after its linger time.
    struct AckingSource {
        items: VecDeque<ReadItem>,
        acks: Acks<u64>,
        learned: Learned,
        unbounded: bool,
        /// Reads that fail with a temporary error before the first one succeeds.
        unavailable_first: u32,
    }

    impl AckingSource {
        fn new(items: Vec<ReadItem>, unbounded: bool) -> (AckingSource, Learned) {
            let learned = Learned::default();
            let source = AckingSource {
                items: items.into(),
                acks: Acks::new(100),
                learned: learned.clone(),
                unbounded,
                unavailable_first: 0,
            };
            (source, learned)
        }
    }

    #[async_trait]
    impl RecordSource for AckingSource {
        async fn read_batch(&mut self, max: usize) -> runtime_core::Result<Option<Vec<ReadItem>>> {
            if self.unavailable_first > 0 {
                self.unavailable_first -= 1;
                return Err(runtime_core::Error::unavailable(
                    "acking",
                    "the broker is not reachable",
                    None,
                ));
            }
            let mut out = Vec::new();
            let mut done = Vec::new();
            while out.len() < max {
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
            self.learned.fates.lock().unwrap().extend(done);
            if out.is_empty() && self.unbounded {
                tokio::time::sleep(Duration::from_millis(5)).await;
                return Ok(Some(out));
            }
            Ok((!out.is_empty()).then_some(out))
        }
        async fn close(&mut self, grace: Duration) -> runtime_core::Result<()> {
            let rest = self.acks.drain(grace).await;
            self.learned.fates.lock().unwrap().extend(rest);
            self.learned.closed.store(true, Ordering::SeqCst);
            Ok(())
        }
        fn describe(&self) -> String {
            "acking".into()
        }
    }

    /// Keeps what it is given, refusing `{"y": "unencodable"}`; counts its flushes and
    /// fails them when told to.
    #[derive(Clone, Default)]
    struct FlushingSink {
        kept: Arc<Mutex<Vec<Value>>>,
        flushes: Arc<AtomicUsize>,
        finished: Arc<AtomicBool>,
        fail_flush: bool,
    }

    #[async_trait]
    impl RecordSink for FlushingSink {
        async fn write_batch(
            &mut self,
            batch: Vec<OutRecord>,
        ) -> runtime_core::Result<Vec<Rejection>> {
            let mut refused = Vec::new();
            for r in batch {
                if r.value.get("y") == Some(&Value::from("unencodable")) {
                    refused.push(Rejection::new(
                        RejectionKind::Encoding,
                        r.position,
                        "cannot encode",
                    ));
                } else {
                    self.kept.lock().unwrap().push(r.value);
                }
            }
            Ok(refused)
        }
        async fn flush(&mut self) -> runtime_core::Result<()> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            if self.fail_flush {
                return Err(runtime_core::Error::endpoint(
                    "flushing",
                    "the broker is gone",
                ));
            }
            Ok(())
        }
        async fn finish(&mut self) -> runtime_core::Result<SinkReport> {
            self.finished.store(true, Ordering::SeqCst);
            Ok(SinkReport::default())
        }
        fn describe(&self) -> String {
            "flushing".into()
        }
    }

    /// Opens the source and the sink built by the test, once each.
    struct Prepared {
        source: Mutex<Option<Box<dyn RecordSource>>>,
        sink: Mutex<Option<Box<dyn RecordSink>>>,
    }

    impl Opener for Prepared {
        fn open_source(&self, _: &OpenRequest<'_>) -> runtime_core::Result<Box<dyn RecordSource>> {
            Ok(self.source.lock().unwrap().take().expect("one source"))
        }
        fn open_sink(&self, _: &OpenRequest<'_>) -> runtime_core::Result<Box<dyn RecordSink>> {
            Ok(self.sink.lock().unwrap().take().expect("one sink"))
        }
    }

    /// Attaches `sink` to slot 1, then `source` to slot 0, both as Kafka streams opened by
    /// the test's opener.
    async fn attach_both(d: &Arc<Deployment>, source: AckingSource, sink: FlushingSink) {
        let registry = Registry::empty().register(
            TransportType::Kafka,
            Arc::new(Prepared {
                source: Mutex::new(Some(Box::new(source))),
                sink: Mutex::new(Some(Box::new(sink))),
            }),
        );
        let out = StreamDescriptor::parse("kafka:localhost:9092/out").unwrap();
        attach(d, Slot(1), out, &registry).await.unwrap();
        let input = StreamDescriptor::parse(
            r#"{"Transport": {"Type": "Kafka", "BootstrapServers": ["localhost:9092"], "Topic": "in"}, "Batching": {"Watermark": 3}}"#,
        )
        .unwrap();
        attach(d, Slot(0), input, &registry).await.unwrap();
    }

    fn record(n: u64, x: i64) -> ReadItem {
        ReadItem::Record(Record::new(Value::Int(x.into()), Position::record(n)))
    }

    fn bad(n: u64) -> ReadItem {
        ReadItem::Rejected(Rejection::new(
            RejectionKind::Encoding,
            Position::record(n),
            "not json",
        ))
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_record_is_acknowledged_in_order_with_its_fate_once_its_output_is_flushed() {
        let d = deployment().await;
        let sink = FlushingSink::default();
        let items = vec![
            record(1, 1),
            bad(2),
            record(3, 13),
            record(4, 7),
            record(5, 5),
            record(6, 0),
            record(7, 2),
        ];
        let (source, learned) = AckingSource::new(items, false);
        attach_both(&d, source, sink.clone()).await;
        until("the source is closed", || {
            learned.closed.load(Ordering::SeqCst)
        })
        .await;
        assert_eq!(
            *learned.fates.lock().unwrap(),
            vec![
                (1, Fate::Delivered),
                (2, Fate::Rejected),
                (3, Fate::Rejected),
                (4, Fate::Rejected),
                (5, Fate::Rejected),
                (6, Fate::Delivered),
                (7, Fate::Delivered),
            ],
            "a bad input, a model failure, an output the sink refuses or a yield to a slot \
             without a stream rejects; no yield at all delivers"
        );
        assert!(sink.flushes.load(Ordering::SeqCst) > 0);
        let y = |x: i64| Value::Map([("y", Value::Int(x.into()))].into_iter().collect());
        assert_eq!(*sink.kept.lock().unwrap(), vec![y(1), y(5), y(2)]);
        let input = d.streams.list().into_iter().find(|s| s.slot == 0).unwrap();
        assert_eq!(input.state, StreamState::Finished);
        d.stop(Duration::from_secs(10)).await;
        assert!(sink.finished.load(Ordering::SeqCst));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_source_unreachable_for_now_is_read_again_with_back_off_not_failed() {
        let d = deployment().await;
        let sink = FlushingSink::default();
        let (mut source, learned) = AckingSource::new(vec![record(1, 1), record(2, 2)], false);
        source.unavailable_first = 3;
        attach_both(&d, source, sink.clone()).await;
        until("the source is closed", || {
            learned.closed.load(Ordering::SeqCst)
        })
        .await;
        assert_eq!(
            *learned.fates.lock().unwrap(),
            vec![(1, Fate::Delivered), (2, Fate::Delivered)]
        );
        let input = d.streams.list().into_iter().find(|s| s.slot == 0).unwrap();
        assert_eq!(input.state, StreamState::Finished);
        let log: Vec<String> = d.log.lines().into_iter().map(|l| l.message).collect();
        assert!(
            log.iter()
                .any(|l| l.contains("not reachable") && l.contains("retrying")),
            "{log:?}"
        );
        assert!(log.iter().any(|l| l.contains("reading again")), "{log:?}");
        d.stop(Duration::from_secs(10)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_its_worker_dies_on_is_rejected_and_the_others_are_delivered() {
        let d = deployment().await;
        let sink = FlushingSink::default();
        let items = (1..=6)
            .map(|n| record(n, if n == 3 { 99 } else { 1 }))
            .collect();
        let (source, learned) = AckingSource::new(items, false);
        attach_both(&d, source, sink.clone()).await;
        until("the source is closed", || {
            learned.closed.load(Ordering::SeqCst)
        })
        .await;
        let expected: Vec<(u64, Fate)> = (1..=6)
            .map(|n| {
                (
                    n,
                    if n == 3 {
                        Fate::Rejected
                    } else {
                        Fate::Delivered
                    },
                )
            })
            .collect();
        assert_eq!(
            *learned.fates.lock().unwrap(),
            expected,
            "a poison record is moved past, as in a batch job; its batch goes to a new worker"
        );
        assert_eq!(sink.kept.lock().unwrap().len(), 5);
        d.stop(Duration::from_secs(10)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sink_that_cannot_flush_leaves_its_records_failed_and_is_not_finished() {
        let d = deployment().await;
        let sink = FlushingSink {
            fail_flush: true,
            ..FlushingSink::default()
        };
        let (source, learned) = AckingSource::new((1..=8).map(|n| record(n, 1)).collect(), false);
        attach_both(&d, source, sink.clone()).await;
        until("the source is closed", || {
            learned.closed.load(Ordering::SeqCst)
        })
        .await;
        let fates = learned.fates.lock().unwrap().clone();
        let expected: Vec<(u64, Fate)> = (1..=8).map(|n| (n, Fate::Failed)).collect();
        assert_eq!(
            fates, expected,
            "nothing is acknowledged past a failed flush"
        );
        let output = d.streams.list().into_iter().find(|s| s.slot == 1).unwrap();
        match &output.state {
            StreamState::Failed(why) => assert!(why.contains("broker is gone"), "{why}"),
            other => panic!("the output is {other:?}"),
        }
        assert!(output.records_failed > 0, "{output:?}");
        d.stop(Duration::from_secs(10)).await;
        assert!(!sink.finished.load(Ordering::SeqCst));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn detaching_an_unbounded_input_closes_its_source_once_its_records_are_settled() {
        let d = deployment().await;
        let sink = FlushingSink::default();
        let (source, learned) = AckingSource::new((1..=20).map(|n| record(n, 1)).collect(), true);
        attach_both(&d, source, sink.clone()).await;
        until("every record is read", || {
            d.streams
                .list()
                .iter()
                .any(|s| s.slot == 0 && s.records_in == 20)
        })
        .await;
        assert!(
            !learned.closed.load(Ordering::SeqCst),
            "an unbounded source is open until it is detached"
        );
        assert!(d.streams.detach(Slot(0)).await);
        assert!(learned.closed.load(Ordering::SeqCst));
        let expected: Vec<(u64, Fate)> = (1..=20).map(|n| (n, Fate::Delivered)).collect();
        assert_eq!(*learned.fates.lock().unwrap(), expected);
        assert_eq!(sink.kept.lock().unwrap().len(), 20);
        d.stop(Duration::from_secs(10)).await;
    }
}
