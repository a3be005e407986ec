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
//! Not here yet: acknowledgements (a record's receipt settled when its output is
//! durable, a sink flushed as it goes) and resuming where they left off: after a restart,
//! an attached input is read again from its start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use endpoints::descriptor::{Batching, Schema, TransportType};
use endpoints::{Direction, Registry, StreamDescriptor};
use runtime_core::{
    JobLog, LogSource, OutRecord, Position, ReadItem, RecordSink, RecordSource, Slot, Value,
};
use tokio::sync::{mpsc, watch, Semaphore};

use super::rest::{RestOpener, RestQueues};
use super::{Deployment, Enqueued, Origin, Pending};
use crate::error::{Error, Result};
use crate::joblog::RingLog;

/// Records of one input stream between its reader and its collector.
const IN_FLIGHT_RECORDS: usize = 1024;
/// Batches of yields waiting for an output stream's writer.
const WRITER_QUEUE: usize = 4;

/// How long a detached stream gets to get its records through.
const DETACH_GRACE: Duration = super::CLOSE_GRACE;

fn detach_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + DETACH_GRACE
}

/// Where a stream stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamState {
    Running,
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
    /// Input: the model failed on them. Output: lost with a sink that failed.
    pub records_failed: u64,
}

/// What a stream's tasks and the API share.
#[derive(Default)]
struct Shared {
    records_in: AtomicU64,
    records_out: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    state: Mutex<Option<StreamState>>,
}

impl Shared {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn set_state(&self, state: StreamState) {
        if let Ok(mut s) = self.state.lock() {
            *s = Some(state);
        }
    }

    fn state(&self) -> StreamState {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or(StreamState::Running)
    }
}

struct Attached {
    slot: Slot,
    descriptor: StreamDescriptor,
    endpoint: String,
    shared: Arc<Shared>,
    /// Tells an input's reader to stop.
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// An output's writer queue, while it takes yields.
    writer: Mutex<Option<mpsc::Sender<Vec<Value>>>>,
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
        }
    }

    /// Stops the stream once what it holds is through, by `deadline` at the latest: past
    /// it (an output nobody takes records from holds everything up) its task is cut
    /// short, and the loss is logged. A REST input takes no more records and reads what
    /// was posted; another input stops reading.
    async fn drain(&self, rest: &RestQueues, log: &RingLog, deadline: tokio::time::Instant) {
        if self.shared.state() == StreamState::Running {
            self.shared.set_state(StreamState::Draining);
        }
        let is_rest = self.descriptor.transport.transport_type() == TransportType::Rest;
        if self.slot.is_input() && is_rest {
            rest.close_input(self.slot.0);
        } else {
            let _ = self.stop.send(true);
        }
        if self.slot.is_output() && is_rest {
            // Readers may never come: what it holds is dropped and counted when forgotten.
            rest.release_output(self.slot.0);
        }
        drop(self.writer.lock().ok().and_then(|mut w| w.take()));
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(mut task) = task {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
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
            in_queue: Arc::new(Semaphore::new((queue_bound / 2).max(1))),
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
    fn writer(&self, slot: Slot) -> Option<mpsc::Sender<Vec<Value>>> {
        let attached = self.attached.lock().ok()?;
        let a = attached.get(&slot.0)?;
        let w = a.writer.lock().ok()?;
        w.clone()
    }

    fn writes(&self, slot: Slot) -> bool {
        self.writer(slot).is_some()
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
    pub(crate) async fn detach_all(&self, deadline: tokio::time::Instant) {
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

    /// Hands `values`, yields of one batch to output `slot`, to its writer (waiting while
    /// the writer is behind); with no writer they are counted and logged.
    async fn deliver(&self, d: &Deployment, slot: Slot, values: Vec<Value>) {
        let n = values.len() as u64;
        let sent = match self.writer(slot) {
            Some(tx) => tx.send(values).await.is_ok(),
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
    let (stop, stopped) = watch::channel(false);
    // Opening a file is file work: on the blocking pool.
    let open = {
        let (descriptor, input) = (descriptor.clone(), slot.is_input());
        tokio::task::spawn_blocking(move || {
            if input {
                registry
                    .open_source(&descriptor, &codec)
                    .map(Endpoint::Source)
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

/// A queued record on its way from an input's reader to its collector, or the end of a
/// batch read.
enum InFlight {
    Record {
        position: Position,
        outcome: Result<Pending>,
        /// Its place among the streams' records in the deployment's queue.
        _permit: tokio::sync::OwnedSemaphorePermit,
    },
    BatchEnd,
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
    /// `_ended` tells the outputs it ended however the task ends (cut short too).
    async fn run(
        self,
        mut source: Box<dyn RecordSource>,
        mut stop: watch::Receiver<bool>,
        _ended: InputEnded,
    ) {
        let (tx, rx) = mpsc::channel(IN_FLIGHT_RECORDS);
        let reader = async {
            let tx = tx;
            loop {
                let read = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return None,
                    read = source.read_batch(self.batch) => read,
                };
                let items = match read {
                    Ok(Some(items)) => items,
                    Ok(None) => return Some(StreamState::Finished),
                    Err(e) => return Some(StreamState::Failed(e.to_string())),
                };
                for item in items {
                    if !self.queue(item, &tx).await {
                        return None;
                    }
                }
                if tx.send(InFlight::BatchEnd).await.is_err() {
                    return None;
                }
            }
        };
        let (ended, ()) = tokio::join!(reader, self.collect(rx));
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

    /// Screens one item read and queues it for the workers; `false` when the collector is
    /// gone. Each step is tried at once first and awaited only when it must wait: a stream
    /// moves its records one by one, and most of them need not wait.
    async fn queue(&self, item: ReadItem, tx: &mpsc::Sender<InFlight>) -> bool {
        let d = &self.d;
        let Some((position, value)) = self.screen(item) else {
            return true;
        };
        let permit = match d.streams.in_queue.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match d.streams.in_queue.clone().acquire_owned().await {
                Ok(permit) => permit,
                Err(_) => return false,
            },
        };
        let outcome = match d.try_enqueue(self.slot, value) {
            Enqueued::Now(pending) => Ok(pending),
            Enqueued::Full(request) => d.enqueue(request).await,
            Enqueued::Closed(e) => Err(e),
        };
        let record = InFlight::Record {
            position,
            outcome,
            _permit: permit,
        };
        match tx.try_send(record) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(record)) => tx.send(record).await.is_ok(),
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Counts one item read and screens it; a rejection is counted and logged.
    fn screen(&self, item: ReadItem) -> Option<(Position, Value)> {
        let d = &self.d;
        Shared::add(&self.shared.records_in, 1);
        let record = match item {
            ReadItem::Record(r) => r,
            ReadItem::Rejected(r) => {
                Shared::add(&self.shared.rejected, 1);
                d.input_rejected(
                    self.slot,
                    r.kind,
                    r.reason,
                    Origin::Stream(&self.name, &r.position),
                );
                return None;
            }
        };
        let position = record.position;
        let origin = Origin::Stream(&self.name, &position);
        match d.take_input(self.slot, record.value, position.clone(), origin) {
            Ok(value) => Some((position, value)),
            Err(_) => {
                Shared::add(&self.shared.rejected, 1);
                None
            }
        }
    }

    /// Takes the outcomes in order; at the end of each batch hands each output slot's
    /// yields to its writer.
    async fn collect(&self, mut rx: mpsc::Receiver<InFlight>) {
        let d = &self.d;
        let mut yields: BTreeMap<Slot, Vec<Value>> = BTreeMap::new();
        loop {
            let item = match rx.try_recv() {
                Ok(item) => item,
                Err(mpsc::error::TryRecvError::Empty) => match rx.recv().await {
                    Some(item) => item,
                    None => break,
                },
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            let (position, outcome) = match item {
                InFlight::Record {
                    position, outcome, ..
                } => (position, outcome),
                InFlight::BatchEnd => {
                    for (slot, values) in std::mem::take(&mut yields) {
                        d.streams.deliver(d, slot, values).await;
                    }
                    continue;
                }
            };
            let outcome = match outcome {
                Ok(mut pending) => match pending.try_outcome() {
                    Some(outcome) => outcome,
                    None => pending.outcome().await,
                },
                Err(e) => Err(e),
            };
            match outcome {
                Ok(outs) => {
                    Shared::add(&self.shared.records_out, 1);
                    let routed = d.route_yields(
                        outs,
                        |slot| d.streams.writes(slot),
                        |_| "to which no output stream is attached; counted, not written".into(),
                    );
                    for (slot, mut values) in routed {
                        yields.entry(slot).or_default().append(&mut values);
                    }
                }
                Err(e) => {
                    Shared::add(&self.shared.failed, 1);
                    d.record_failed(self.slot, &e, Origin::Stream(&self.name, &position));
                }
            }
        }
        // A reader stopped in the middle of a batch: what it scored goes on all the same.
        for (slot, values) in yields {
            d.streams.deliver(d, slot, values).await;
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
    async fn run(
        self,
        mut sink: Box<dyn RecordSink>,
        mut rx: mpsc::Receiver<Vec<Value>>,
        mut inputs: watch::Receiver<InputsSeen>,
    ) {
        let ended_before = inputs.borrow().ended;
        let mut watching = true;
        let mut written = 0u64;
        let failed = loop {
            let seen = *inputs.borrow_and_update();
            // The inputs that fed it have all ended: it closes once LingerTime passes
            // without a record.
            let lingering = seen.running == 0 && seen.ended > ended_before;
            let values = tokio::select! {
                values = rx.recv() => match values {
                    Some(values) => values,
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
            };
            if let Err(why) = self.write(sink.as_mut(), values, &mut written).await {
                break Some(why);
            }
        };
        let d = &self.d;
        let failed = match failed {
            Some(why) => Some(why),
            None => sink.finish().await.err().map(|e| e.to_string()),
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

    /// Screens yields by the slot's schema and writes them; `Err` when the sink failed
    /// (its records are counted failed).
    async fn write(
        &self,
        sink: &mut dyn RecordSink,
        mut values: Vec<Value>,
        written: &mut u64,
    ) -> std::result::Result<(), String> {
        let d = &self.d;
        Shared::add(&self.shared.records_in, values.len() as u64);
        let rejected = d.screen_yields(self.slot, &mut values, Origin::Sink(&self.name));
        Shared::add(&self.shared.rejected, rejected.len() as u64);
        let batch: Vec<OutRecord> = values
            .into_iter()
            .map(|value| {
                *written += 1;
                OutRecord {
                    value,
                    position: Position::record(*written),
                }
            })
            .collect();
        let n = batch.len() as u64;
        match sink.write_batch(batch).await {
            Ok(rejections) => {
                let refused = rejections.len() as u64;
                for r in rejections {
                    d.output_rejected(
                        self.slot,
                        r.kind,
                        r.reason,
                        Origin::Stream(&self.name, &r.position),
                    );
                }
                Shared::add(&self.shared.rejected, refused);
                Shared::add(&self.shared.records_out, n - refused);
                d.outputs_delivered(self.slot, n - refused);
                Ok(())
            }
            Err(e) => {
                Shared::add(&self.shared.failed, n);
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
