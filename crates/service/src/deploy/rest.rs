//! The REST transport of streams (`"Transport": "REST"`, `rest:`): `POST /1/job/input/{slot}`
//! writes one record to the REST input stream attached to `slot`, `GET /1/job/output/{slot}`
//! reads one record of the REST output stream attached there. The queues between those
//! routes and the streams are the service's; the opener, bound to one slot, is registered
//! into the endpoints `Registry` when a stream is attached (`streams::attach`).
//!
//! Each queue holds [`REST_QUEUE_BOUND`] messages: a full input queue refuses the request
//! (503, retry later), a full output queue holds up the model's yields to it until a reader
//! takes some (the stream's reader is slowed, as by any slow sink).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use codecs::CodecConfig;
use endpoints::descriptor::{RestMode, Transport};
use endpoints::{OpenRequest, Opener};
use runtime_core::{
    OutRecord, Position, ReadItem, RecordSink, RecordSource, Rejection, RejectionKind, SinkReport,
};
use tokio::sync::{mpsc, Notify};

/// Messages each REST stream's queue holds.
pub const REST_QUEUE_BOUND: usize = 1024;

/// The queues of a deployment's REST streams, by slot.
#[derive(Default)]
pub(crate) struct RestQueues {
    inputs: Mutex<HashMap<u32, mpsc::Sender<Vec<u8>>>>,
    outputs: Mutex<HashMap<u32, Arc<RestOutput>>>,
}

/// What became of a posted record.
pub(crate) enum Posted {
    Queued,
    /// No REST input stream is attached to the slot.
    NoStream,
    /// The stream's queue is full.
    Full,
}

/// What a reader of an output slot gets.
pub(crate) enum Taken {
    /// One record, encoded, with its media type.
    Record(Vec<u8>, &'static str),
    /// Nothing yet: the stream is open.
    NothingYet,
    /// The stream ended and every record was read.
    Ended,
}

impl RestQueues {
    pub(crate) fn post(&self, slot: u32, body: Vec<u8>) -> Posted {
        let Some(tx) = self
            .inputs
            .lock()
            .ok()
            .and_then(|inputs| inputs.get(&slot).cloned())
        else {
            return Posted::NoStream;
        };
        match tx.try_send(body) {
            Ok(()) => Posted::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Posted::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Posted::NoStream,
        }
    }

    /// The next record of `slot`'s REST output; `None`: no REST output stream is attached.
    pub(crate) fn take(&self, slot: u32) -> Option<Taken> {
        let out = self.outputs.lock().ok()?.get(&slot).cloned()?;
        let next = out.queue.lock().ok().and_then(|mut q| q.pop_front());
        Some(match next {
            Some(bytes) => {
                out.room.notify_one();
                Taken::Record(bytes, out.content_type)
            }
            None if out.finished.load(Ordering::Acquire) => Taken::Ended,
            None => Taken::NothingYet,
        })
    }

    /// Lets the REST output on `slot` take what it is handed without waiting for readers:
    /// it is being detached, and what no reader took is dropped (and counted) with it.
    pub(crate) fn release_output(&self, slot: u32) {
        let out = self.outputs.lock().ok().and_then(|o| o.get(&slot).cloned());
        if let Some(out) = out {
            out.released.store(true, Ordering::Release);
            out.room.notify_one();
        }
    }

    /// Takes no more records for input `slot`: its stream reads what is queued, then ends.
    pub(crate) fn close_input(&self, slot: u32) {
        if let Ok(mut inputs) = self.inputs.lock() {
            inputs.remove(&slot);
        }
    }

    /// Forgets `slot`'s queues (its stream was detached): the routes answer 404 for it.
    /// Returns how many output records no reader took.
    pub(crate) fn remove(&self, slot: u32) -> usize {
        self.close_input(slot);
        let out = self.outputs.lock().ok().and_then(|mut o| o.remove(&slot));
        out.and_then(|o| o.queue.lock().ok().map(|q| q.len()))
            .unwrap_or(0)
    }
}

/// Opens REST streams on one slot.
pub(crate) struct RestOpener {
    slot: u32,
    queues: Arc<RestQueues>,
}

impl RestOpener {
    pub(crate) fn new(slot: u32, queues: Arc<RestQueues>) -> RestOpener {
        RestOpener { slot, queues }
    }
}

fn simple_mode(req: &OpenRequest<'_>) -> runtime_core::Result<()> {
    match req.descriptor.transport {
        Transport::Rest {
            mode: RestMode::Simple,
        } => Ok(()),
        _ => Err(runtime_core::Error::descriptor(
            "Transport.Mode",
            "chunked REST streams are not supported yet (simple: one record per request)",
        )),
    }
}

impl Opener for RestOpener {
    fn open_source(&self, req: &OpenRequest<'_>) -> runtime_core::Result<Box<dyn RecordSource>> {
        simple_mode(req)?;
        let (tx, rx) = mpsc::channel(REST_QUEUE_BOUND);
        if let Ok(mut inputs) = self.queues.inputs.lock() {
            inputs.insert(self.slot, tx);
        }
        let wait = match req.descriptor.batching {
            endpoints::descriptor::Batching::Normal(b) => b.max_wait,
            _ => None,
        };
        Ok(Box::new(RestSource {
            origin: format!("POST /1/job/input/{}", self.slot),
            rx,
            codec: req.codec.clone(),
            wait,
            read: 0,
        }))
    }

    fn open_sink(&self, req: &OpenRequest<'_>) -> runtime_core::Result<Box<dyn RecordSink>> {
        simple_mode(req)?;
        let out = Arc::new(RestOutput {
            queue: Mutex::new(VecDeque::new()),
            room: Notify::new(),
            finished: AtomicBool::new(false),
            released: AtomicBool::new(false),
            content_type: crate::deploy::content_type(req.codec.encoding),
        });
        if let Ok(mut outputs) = self.queues.outputs.lock() {
            outputs.insert(self.slot, out.clone());
        }
        Ok(Box::new(RestSink {
            name: format!("GET /1/job/output/{}", self.slot),
            out,
            codec: req.codec.clone(),
            records: 0,
        }))
    }
}

/// Records posted to `POST /1/job/input/{slot}`, one message each. It ends only when its
/// queue is forgotten (the stream detached).
struct RestSource {
    origin: String,
    rx: mpsc::Receiver<Vec<u8>>,
    codec: CodecConfig,
    /// The descriptor's `NagleTime`: how long a batch short of its size waits for more.
    wait: Option<std::time::Duration>,
    read: u64,
}

#[async_trait]
impl RecordSource for RestSource {
    async fn read_batch(&mut self, max: usize) -> runtime_core::Result<Option<Vec<ReadItem>>> {
        let Some(first) = self.rx.recv().await else {
            return Ok(None);
        };
        let messages = super::gather(&mut self.rx, first, max, self.wait).await;
        let mut items = Vec::with_capacity(messages.len());
        for message in messages {
            self.read += 1;
            // The stream's name says where it came from.
            let position = Position::record(self.read);
            items.push(codecs::read_message(&self.codec, &message, position));
        }
        Ok(Some(items))
    }

    fn describe(&self) -> String {
        self.origin.clone()
    }
}

/// The queue `GET /1/job/output/{slot}` reads.
struct RestOutput {
    queue: Mutex<VecDeque<Vec<u8>>>,
    /// Told when a reader took a record.
    room: Notify,
    /// The stream ended: once the queue is empty, readers are told so (204).
    finished: AtomicBool,
    /// Being detached: it takes records without waiting for room.
    released: AtomicBool,
    content_type: &'static str,
}

impl RestOutput {
    /// Queues one message, waiting while the queue is full (unless it is released).
    async fn push(&self, message: Vec<u8>) {
        let mut message = Some(message);
        loop {
            if let Ok(mut q) = self.queue.lock() {
                if q.len() < REST_QUEUE_BOUND || self.released.load(Ordering::Acquire) {
                    if let Some(m) = message.take() {
                        q.push_back(m);
                    }
                    return;
                }
            } else {
                return;
            }
            // `notify_one` keeps a wake-up for a reader that took one meanwhile.
            self.room.notified().await;
        }
    }
}

struct RestSink {
    name: String,
    out: Arc<RestOutput>,
    codec: CodecConfig,
    records: u64,
}

#[async_trait]
impl RecordSink for RestSink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> runtime_core::Result<Vec<Rejection>> {
        let mut rejected = Vec::new();
        for rec in batch {
            match codecs::encode_message(&self.codec, &rec.value) {
                Ok(bytes) => {
                    self.out.push(bytes).await;
                    self.records += 1;
                }
                Err(e) => rejected.push(Rejection::new(
                    RejectionKind::Encoding,
                    rec.position,
                    e.to_string(),
                )),
            }
        }
        Ok(rejected)
    }

    async fn finish(&mut self) -> runtime_core::Result<SinkReport> {
        self.out.finished.store(true, Ordering::Release);
        Ok(SinkReport {
            records: self.records,
            bytes: 0,
            location: Some(self.name.clone()),
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
