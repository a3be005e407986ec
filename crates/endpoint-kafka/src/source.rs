//! The Kafka source: a consumer on a thread of its own, offsets committed as records settle.
//!
//! The thread owns the polling of the librdkafka consumer (and so its rebalance callbacks)
//! and hands each message to the source over a bounded channel; the source decodes it, puts
//! a receipt from its ledger on it and, as fates come back in read order, moves each
//! partition's next offset to commit past the records delivered or rejected. A failed
//! record holds its partition: nothing past it is committed by this consumer, so whoever
//! reads the partition next reads it again.
//!
//! An input may read with several consumers (`Consumers`), each a client of its own on a
//! thread of its own, all handing messages to the one source: in a group each is a member
//! and the group splits the partitions among them; assigning directly, consumer `i` takes
//! every `n`th partition from the `i`th. Each partition has one owner at a time, which reads
//! it in order and commits its offsets.
//!
//! Partitions come in two ways:
//! - following a topic with a consumer group (a deployed model's stream): the group assigns
//!   them; when one is revoked the callback waits (up to the drain timeout) for its records
//!   in flight to settle, commits them, and only then lets it go. Records of a partition
//!   this consumer no longer owns are dropped unread and their fates ignored (each
//!   assignment is an epoch).
//! - reading to the end (a batch job), or without a group, or with `Partition`: the thread
//!   assigns the partitions itself, from the group's committed offsets when there are some,
//!   else `SkipToRecord`; a job ends once every partition reached the end it had at the start.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use codecs::CodecConfig;
use endpoints::descriptor::{KafkaTransport, SkipToRecord};
use endpoints::OpenRequest;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use runtime_core::{
    Acks, Error, Fate, MessageMeta, Position, ReadItem, RecordSource, Rejection, RejectionKind,
    Result,
};
use tokio::sync::mpsc;

use crate::{client_config, kafka_error, name, KafkaSettings, DEFAULT_MAX_IN_FLIGHT};

/// How long a read waits for a first message before handing back nothing (so settled
/// records are committed while the topic is quiet).
const TICK: Duration = Duration::from_millis(100);
/// Commits are sent at most this often while records flow (and on close, revoke, idle).
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// Batches of messages the consumer thread hands over before it waits for the source.
const CHANNEL: usize = 16;
/// Messages the consumer thread hands over at once, at most.
const MSG_BATCH: usize = 512;
/// How long a metadata or offsets request to the brokers may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the thread waits before asking the brokers again after they could not answer.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long asking the brokers whether they are back may take (the consumer's thread waits).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The offsets to commit: the next offset of each partition.
fn offsets(topic: &str, next: &[(i32, i64)]) -> rdkafka::error::KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in next {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*offset))?;
    }
    Ok(tpl)
}

/// Commits the offsets waiting to be committed, each partition's through the consumer that
/// owns it (taken together under one lock, so a revoke cannot come between): the offsets
/// whose commit failed, with the last error.
fn commit_pending(
    consumers: &[Arc<Client>],
    shared: &Shared,
    topic: &str,
    mode: CommitMode,
) -> (Vec<(i32, i64)>, Option<KafkaError>) {
    let mut by_owner: Vec<Vec<(i32, i64)>> = vec![Vec::new(); consumers.len()];
    {
        let mut parts = shared.lock();
        let pending: Vec<(i32, i64)> = parts.pending.drain().collect();
        for (p, next) in pending {
            if let Some(list) = parts.owner.get(&p).and_then(|o| by_owner.get_mut(*o)) {
                list.push((p, next));
            }
        }
    }
    let (mut failed, mut error) = (Vec::new(), None);
    for (consumer, mine) in consumers.iter().zip(by_owner) {
        if mine.is_empty() {
            continue;
        }
        if let Err(e) = offsets(topic, &mine).and_then(|tpl| consumer.commit(&tpl, mode)) {
            failed.extend(mine);
            error = Some(e);
        }
    }
    (failed, error)
}

/// A number no other source of this process has.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What the consumer thread hands over.
enum Event {
    /// Messages in the order read, as many as were there at once (up to [`MSG_BATCH`]).
    Messages(Vec<Msg>),
    /// The consumer could not fetch (brokers down, a topic missing); it goes on trying, and
    /// says so again every [`RETRY_AFTER`] until it finds the topic on the brokers.
    Down(Trouble),
    /// The brokers answer again and have the topic (after `Down`).
    Up,
    /// Reading cannot go on (a missing topic, a refused setting): the thread has stopped.
    Failed(Error),
}

/// Why the consumer cannot read for now.
enum Trouble {
    /// The consumer's own error.
    Client(KafkaError),
    /// The brokers answer, without the topic.
    NoTopic(String),
}

impl Trouble {
    /// What went wrong, in words.
    fn why(&self) -> String {
        match self {
            Trouble::Client(e) => match e.rdkafka_error_code() {
                Some(code) if crate::is_transient(code) => {
                    format!("the Kafka brokers cannot be reached ({e})")
                }
                _ => e.to_string(),
            },
            Trouble::NoTopic(why) => why.clone(),
        }
    }

    fn into_error(self, endpoint: &str) -> Error {
        let why = self.why();
        match self {
            Trouble::Client(e) => Error::unavailable(endpoint, why, Some(Box::new(e))),
            Trouble::NoTopic(_) => Error::unavailable(endpoint, why, None),
        }
    }
}

/// One message, copied out of the consumer.
struct Msg {
    partition: i32,
    offset: i64,
    /// The partition's assignment when the message was read.
    epoch: u64,
    payload: Option<Vec<u8>>,
    key: Option<Box<[u8]>>,
    headers: Vec<(String, Option<Box<[u8]>>)>,
    timestamp_ms: Option<i64>,
}

/// Where each partition stands, shared by the source and the consumer thread.
#[derive(Default)]
struct Parts {
    /// Messages handed over and not yet settled, per partition (current epoch only).
    in_flight: HashMap<i32, u64>,
    /// The next offset to commit, per partition, when it moved since the last commit.
    pending: HashMap<i32, i64>,
    /// The next offset committed or to commit, per partition.
    next: HashMap<i32, i64>,
    /// Partitions where a record failed: nothing past it is committed.
    held: HashSet<i32>,
    /// The current assignment's epoch per partition; a partition revoked has none.
    epoch: HashMap<i32, u64>,
    /// Which of the source's consumers owns each partition (commits go through it).
    owner: HashMap<i32, usize>,
    epochs: u64,
}

impl Parts {
    /// Partition `p` is now `owner`'s, in a new `epoch`: what an earlier owner left of it
    /// (records in flight, offsets to commit, a hold) is no longer this assignment's.
    fn take_over(&mut self, p: i32, epoch: u64, owner: usize) {
        self.epoch.insert(p, epoch);
        self.owner.insert(p, owner);
        self.in_flight.remove(&p);
        self.pending.remove(&p);
        self.next.remove(&p);
        self.held.remove(&p);
    }
}

struct Shared {
    parts: Mutex<Parts>,
    /// Signalled whenever records settle (a revoke waits on it).
    settled: Condvar,
    /// Set once the source closes: revokes no longer wait.
    closing: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Parts> {
        self.parts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The consumer's callbacks: a revoked partition is drained and committed first.
struct Callbacks {
    /// This consumer's place among the source's.
    index: usize,
    shared: Arc<Shared>,
    /// The group's lag from the last statistics; -1 while unknown.
    lag: Arc<AtomicI64>,
    topic: String,
    commit: bool,
    drain: Duration,
    name: String,
}

impl ClientContext for Callbacks {
    /// The group's lag on this topic (the brokers' end of each partition less its committed
    /// offset, or the offset read where nothing is committed), from librdkafka's statistics.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut lag = 0i64;
        let mut known = false;
        // Only the partitions this consumer owns: one another of the source's took may
        // still be in these statistics.
        let owned: HashSet<i32> = {
            let parts = self.shared.lock();
            parts
                .owner
                .iter()
                .filter(|(_, o)| **o == self.index)
                .map(|(p, _)| *p)
                .collect()
        };
        for p in topic
            .partitions
            .values()
            .filter(|p| owned.contains(&p.partition))
        {
            let behind = if p.consumer_lag >= 0 {
                p.consumer_lag
            } else if p.hi_offset >= 0 && p.app_offset >= 0 {
                p.hi_offset - p.app_offset
            } else {
                continue;
            };
            known = true;
            lag += behind.max(0);
        }
        self.lag
            .store(if known { lag } else { -1 }, Ordering::Relaxed);
    }
}

impl ConsumerContext for Callbacks {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let lost = consumer.assignment_lost();
        let deadline = Instant::now() + self.drain;
        let mut parts = self.shared.lock();
        // Only what this consumer owns: another of the source's may own a partition by now.
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .filter(|p| parts.owner.get(p).is_none_or(|o| *o == self.index))
            .collect();
        while !lost && !self.shared.closing.load(Ordering::Relaxed) {
            let waiting: u64 = partitions
                .iter()
                .map(|p| parts.in_flight.get(p).copied().unwrap_or(0))
                .sum();
            let left = deadline.saturating_duration_since(Instant::now());
            if waiting == 0 || left.is_zero() {
                if waiting > 0 {
                    tracing::warn!(
                        endpoint = %self.name,
                        records = waiting,
                        "partitions revoked with records still in flight: they will be read again"
                    );
                }
                break;
            }
            parts = self
                .shared
                .settled
                .wait_timeout(parts, left.min(TICK))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let mut pending = Vec::new();
        for p in &partitions {
            if let Some(next) = parts.pending.remove(p) {
                pending.push((*p, next));
            }
            parts.in_flight.remove(p);
            parts.next.remove(p);
            parts.held.remove(p);
            parts.epoch.remove(p);
            parts.owner.remove(p);
        }
        drop(parts);
        if self.commit && !lost && !pending.is_empty() {
            let committed = offsets(&self.topic, &pending)
                .and_then(|tpl| consumer.commit(&tpl, CommitMode::Sync));
            if let Err(e) = committed {
                tracing::warn!(endpoint = %self.name, error = %e, "committing revoked partitions failed");
            }
        }
        tracing::info!(endpoint = %self.name, ?partitions, lost, "partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut parts = self.shared.lock();
            let mut partitions = Vec::new();
            for e in tpl.elements_for_topic(&self.topic) {
                parts.epochs += 1;
                let epoch = parts.epochs;
                parts.take_over(e.partition(), epoch, self.index);
                partitions.push(e.partition());
            }
            drop(parts);
            tracing::info!(endpoint = %self.name, ?partitions, "partitions assigned");
        }
    }
}

type Client = BaseConsumer<Callbacks>;

/// How the thread gets its partitions.
#[derive(Clone, Copy)]
enum Mode {
    /// Join the group and take what it assigns.
    Subscribe,
    /// Assign them here (all of the topic's, or one), from the committed offsets or `start`;
    /// with `to_end`, stop at the end each had when reading began.
    Assign {
        partition: Option<i32>,
        start: Option<SkipToRecord>,
        to_end: bool,
        committed: bool,
    },
}

/// A Kafka topic read through librdkafka.
pub struct KafkaSource {
    name: String,
    topic: String,
    /// The topic, shared by the messages' metadata.
    topic_name: Arc<str>,
    /// The consumers, by index ([`Parts::owner`]).
    consumers: Vec<Arc<Client>>,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Event>,
    acks: Acks<(i32, i64, u64)>,
    max_in_flight: usize,
    codec: CodecConfig,
    /// Hand the model `{"key", "value", "headers", ...}` records (`Metadata`).
    metadata: bool,
    commit: bool,
    max_wait: Option<Duration>,
    last_message: Instant,
    last_commit: Instant,
    read: u64,
    /// Why the consumer cannot read, from its last `Down` until it reads or finds the
    /// brokers again: a quiet read answers it rather than nothing.
    down: Option<String>,
    /// Messages handed over by the consumer thread and not yet read.
    backlog: std::collections::VecDeque<Msg>,
    /// Why reading cannot go on, once a consumer failed for good (the others are stopped):
    /// every read after the messages before it answers it.
    failed: Option<String>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Each consumer's lag on its partitions.
    lags: Vec<Arc<AtomicI64>>,
}

impl KafkaSource {
    pub(crate) fn open(
        t: &KafkaTransport,
        settings: &KafkaSettings,
        req: &OpenRequest<'_>,
    ) -> Result<KafkaSource> {
        let name = name(t);
        let commit = t.commit_offset && t.group.is_some();
        let follow = req.follow;
        let mode = match (&t.group, t.partition, follow) {
            (Some(_), None, true) => {
                if let Some(SkipToRecord::Index(_)) = req.descriptor.skip_to_record {
                    return Err(Error::descriptor(
                        "SkipToRecord",
                        "a number of records needs Group null or a Partition: a consumer \
                         group starts from its committed offsets ('earliest' or 'latest' \
                         where it has none)",
                    ));
                }
                Mode::Subscribe
            }
            (group, partition, follow) => Mode::Assign {
                partition: partition.map(|p| p as i32),
                start: req.descriptor.skip_to_record,
                to_end: !follow,
                committed: group.is_some(),
            },
        };
        let reset = match req.descriptor.skip_to_record {
            Some(SkipToRecord::Latest) => "latest",
            _ => "earliest",
        };
        let mut owned = vec![
            ("enable.auto.commit", "false".to_string()),
            ("enable.auto.offset.store", "false".to_string()),
            // A batch job reads each partition to its end, as the consumer finds it.
            ("enable.partition.eof", (!follow).to_string()),
        ];
        // librdkafka reads only with a group id; without a Group one of this consumer's own
        // is made up, to which nothing is ever committed.
        let group = match &t.group {
            Some(g) => g.clone(),
            None => format!("model-runtime-{}-{}", std::process::id(), unique()),
        };
        owned.push(("group.id", group));
        let mut cfg = client_config(t, settings, &owned)?;
        // Defaults a stream wants, which settings may change: no request waits long for
        // a record that is there (some brokers hold a fetch up to its maximum wait), and
        // a consumer that is gone is noticed within seconds, not librdkafka's 45.
        for (k, v) in [
            ("auto.offset.reset", reset),
            ("fetch.wait.max.ms", "100"),
            ("session.timeout.ms", "10000"),
            // The lag shown beside the stream comes from the client's statistics.
            ("statistics.interval.ms", "5000"),
        ] {
            if !cfg.config_map().contains_key(k) {
                cfg.set(k, v);
            }
        }
        let shared = Arc::new(Shared {
            parts: Mutex::new(Parts::default()),
            settled: Condvar::new(),
            closing: AtomicBool::new(false),
        });
        let n = t.consumers.unwrap_or(1).max(1);
        let (tx, rx) = mpsc::channel(CHANNEL);
        let stop = Arc::new(AtomicBool::new(false));
        // Every client first (a refused setting fails here, before any joins a group), then
        // a thread for each.
        let (mut consumers, mut lags) = (Vec::new(), Vec::new());
        for index in 0..n {
            let lag = Arc::new(AtomicI64::new(-1));
            let callbacks = Callbacks {
                index,
                shared: shared.clone(),
                lag: lag.clone(),
                topic: t.topic.clone(),
                commit,
                drain: settings.drain_timeout,
                name: name.clone(),
            };
            let consumer: Client = cfg
                .create_with_context(callbacks)
                .map_err(|e| Error::descriptor("Transport.Properties", e.to_string()))?;
            consumers.push(Arc::new(consumer));
            lags.push(lag);
        }
        let mut threads = Vec::new();
        for (index, consumer) in consumers.iter().enumerate() {
            let poller = Poller {
                index,
                of: n,
                consumer: consumer.clone(),
                shared: shared.clone(),
                tx: tx.clone(),
                stop: stop.clone(),
                topic: t.topic.clone(),
                name: name.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("kafka-consumer-{index}"))
                .spawn(move || poller.run(mode));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    // Those started stop, and leave their partitions without waiting.
                    shared.closing.store(true, Ordering::Relaxed);
                    stop.store(true, Ordering::Relaxed);
                    return Err(Error::endpoint(
                        &name,
                        format!("cannot start a thread: {e}"),
                    ));
                }
            }
        }
        // The channel closes once every consumer's thread has ended.
        drop(tx);
        let max_in_flight = t.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        Ok(KafkaSource {
            name,
            topic: t.topic.clone(),
            topic_name: Arc::from(t.topic.as_str()),
            consumers,
            shared,
            rx,
            acks: Acks::new(max_in_flight),
            max_in_flight,
            codec: req.codec.clone(),
            metadata: t.metadata,
            commit,
            max_wait: t.max_wait_time_ms.map(Duration::from_millis),
            last_message: Instant::now(),
            last_commit: Instant::now(),
            read: 0,
            down: None,
            backlog: std::collections::VecDeque::new(),
            failed: None,
            stop,
            threads,
            lags,
        })
    }

    /// Moves each partition's next offset past the records delivered or rejected.
    fn apply(&mut self, fates: Vec<((i32, i64, u64), Fate)>) {
        if fates.is_empty() {
            return;
        }
        let mut parts = self.shared.lock();
        for ((p, offset, epoch), fate) in fates {
            if parts.epoch.get(&p) != Some(&epoch) {
                continue; // revoked since: no longer this consumer's to commit
            }
            if let Some(n) = parts.in_flight.get_mut(&p) {
                *n = n.saturating_sub(1);
            }
            if fate == Fate::Failed {
                parts.held.insert(p);
            } else if !parts.held.contains(&p) {
                let next = offset + 1;
                if parts.next.get(&p).is_none_or(|n| *n < next) {
                    parts.next.insert(p, next);
                    parts.pending.insert(p, next);
                }
            }
        }
        drop(parts);
        self.shared.settled.notify_all();
    }

    /// Commits the offsets that moved, at most every [`COMMIT_EVERY`] unless `now`.
    fn commit(&mut self, mode: CommitMode, now: bool) -> Result<()> {
        if !self.commit || (!now && self.last_commit.elapsed() < COMMIT_EVERY) {
            return Ok(());
        }
        if self.shared.lock().pending.is_empty() {
            return Ok(());
        }
        self.last_commit = Instant::now();
        let (failed, error) = commit_pending(&self.consumers, &self.shared, &self.topic, mode);
        if let Some(e) = error {
            // Put them back: the next commit sends them again.
            let mut parts = self.shared.lock();
            for (p, next) in failed {
                if parts.epoch.contains_key(&p) {
                    parts.pending.entry(p).or_insert(next);
                }
            }
            return Err(kafka_error(&self.name, e));
        }
        Ok(())
    }

    fn item(&mut self, m: Msg) -> ReadItem {
        self.read += 1;
        let position = Position {
            origin: Some(format!(
                "topic {} partition {} offset {}",
                self.topic, m.partition, m.offset
            )),
            ..Position::record(self.read)
        };
        let (mut item, value) = match m.payload {
            None => (
                ReadItem::Rejected(Rejection::new(
                    RejectionKind::Encoding,
                    position,
                    "the message has no value",
                )),
                None,
            ),
            Some(bytes) => (
                codecs::read_message(&self.codec, &bytes, position),
                Some(bytes.into_boxed_slice()),
            ),
        };
        // The value stays with the record while it is in flight, for an error record to
        // carry the original message.
        let meta = Arc::new(MessageMeta {
            key: m.key,
            value,
            headers: m.headers,
            topic: Some(self.topic_name.clone()),
            partition: Some(m.partition),
            offset: Some(m.offset),
            timestamp_ms: m.timestamp_ms,
        });
        if self.metadata {
            if let ReadItem::Record(r) = &mut item {
                r.value = crate::meta::message_record(std::mem::take(&mut r.value), &meta);
            }
        }
        *item.receipt_mut() = self
            .acks
            .receipt_with((m.partition, m.offset, m.epoch), Some(meta));
        item
    }

    /// Takes one event of the consumer thread: messages join the backlog, trouble is kept.
    fn take(&mut self, ev: Event, trouble: &mut Option<Error>) {
        match ev {
            Event::Messages(batch) => {
                self.down = None;
                self.backlog.extend(batch);
            }
            Event::Up => self.down = None,
            Event::Down(t) => {
                // The consumer goes on trying: temporary, whatever it is (a topic not
                // created yet, brokers down).
                self.down = Some(t.why());
                *trouble = Some(t.into_error(&self.name));
            }
            Event::Failed(e) => {
                // One consumer cannot go on: the input stops whole rather than read part
                // of the topic.
                self.stop.store(true, Ordering::Relaxed);
                self.failed = Some(match &e {
                    // The reason alone: the later reads' errors name the endpoint again.
                    Error::Endpoint { reason, .. } | Error::Unavailable { reason, .. } => {
                        reason.clone()
                    }
                    other => other.to_string(),
                });
                *trouble = Some(e);
            }
        }
    }

    /// Whether `m` belongs to a partition this consumer still owns in the epoch it was read.
    fn current(&self, msgs: &[Msg]) -> Vec<bool> {
        let parts = self.shared.lock();
        msgs.iter()
            .map(|m| parts.epoch.get(&m.partition) == Some(&m.epoch))
            .collect()
    }
}

#[async_trait]
impl RecordSource for KafkaSource {
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>> {
        let settled = self.acks.settled();
        self.apply(settled);
        if !self.acks.has_room() {
            let mut done = Vec::new();
            // Sleeps until something settles; commits meanwhile are at most late by that.
            self.acks.wait_for_room(&mut done).await;
            self.apply(done);
        }
        if let Err(e) = self.commit(CommitMode::Async, false) {
            tracing::warn!(endpoint = %self.name, error = %e, "commit failed; retried with the next");
        }
        let room = max
            .min(self.max_in_flight.saturating_sub(self.acks.in_flight()))
            .max(1);
        let mut trouble = None;
        if self.backlog.is_empty() {
            if let Some(why) = &self.failed {
                return Err(Error::endpoint(&self.name, why.clone()));
            }
            let first = match tokio::time::timeout(TICK, self.rx.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Ok(None),
                Err(_) => {
                    if let Some(w) = self.max_wait {
                        if self.last_message.elapsed() >= w {
                            return Ok(None);
                        }
                    }
                    let _ = self.commit(CommitMode::Async, true);
                    if let Some(why) = &self.down {
                        return Err(Error::unavailable(&self.name, why.clone(), None));
                    }
                    return Ok(Some(Vec::new()));
                }
            };
            self.take(first, &mut trouble);
            // What else is there, without waiting.
            while trouble.is_none() && self.failed.is_none() && self.backlog.len() < room {
                match self.rx.try_recv() {
                    Ok(ev) => self.take(ev, &mut trouble),
                    Err(_) => break,
                }
            }
        }
        let n = room.min(self.backlog.len());
        let msgs: Vec<Msg> = self.backlog.drain(..n).collect();
        if msgs.is_empty() {
            if let Some(e) = trouble {
                return Err(e);
            }
            return Ok(Some(Vec::new()));
        }
        if let Some(e) = trouble {
            // The messages before the trouble go first; it is seen on the next read.
            tracing::warn!(endpoint = %self.name, error = %e, "Kafka consumer");
        }
        self.last_message = Instant::now();
        let current = self.current(&msgs);
        let items = msgs
            .into_iter()
            .zip(current)
            .filter(|(_, current)| *current)
            .map(|(m, _)| self.item(m))
            .collect();
        Ok(Some(items))
    }

    async fn close(&mut self, grace: Duration) -> Result<()> {
        let rest = self.acks.drain(grace).await;
        self.apply(rest);
        self.shared.closing.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        let committed = if self.commit {
            let consumers = self.consumers.clone();
            let shared = self.shared.clone();
            let topic = self.topic.clone();
            let name = self.name.clone();
            tokio::task::spawn_blocking(move || -> Result<()> {
                match commit_pending(&consumers, &shared, &topic, CommitMode::Sync) {
                    (_, Some(e)) => Err(kafka_error(&name, e)),
                    (_, None) => Ok(()),
                }
            })
            .await
            .map_err(|e| Error::endpoint(&self.name, format!("commit task: {e}")))?
        } else {
            Ok(())
        };
        self.rx.close();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        committed
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    /// The sum of the consumers' lags, of those that know theirs.
    fn lag(&self) -> Option<u64> {
        self.lags
            .iter()
            .filter_map(|l| u64::try_from(l.load(Ordering::Relaxed)).ok())
            .reduce(|a, b| a + b)
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The consumer thread.
struct Poller {
    /// This consumer's place among the source's `of`.
    index: usize,
    of: usize,
    consumer: Arc<Client>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Event>,
    stop: Arc<AtomicBool>,
    topic: String,
    name: String,
}

impl Poller {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.tx.is_closed()
    }

    /// Sends an event; false once the source is gone.
    fn send(&self, ev: Event) -> bool {
        self.tx.blocking_send(ev).is_ok()
    }

    /// Hands messages over, those of partitions still in the assignment they were read in,
    /// counted in flight from here: a revoke while they waited in this thread's batch (a
    /// callback inside `poll`) neither waits for them nor gets them.
    fn hand_over(&self, mut batch: Vec<Msg>) -> bool {
        {
            let mut parts = self.shared.lock();
            batch.retain(|m| parts.epoch.get(&m.partition) == Some(&m.epoch));
            for m in &batch {
                *parts.in_flight.entry(m.partition).or_default() += 1;
            }
        }
        batch.is_empty() || self.send(Event::Messages(batch))
    }

    fn run(self, mode: Mode) {
        let mut ends: Option<HashSet<i32>> = None;
        let mut last_down: Option<Instant> = None;
        let mut batch: Vec<Msg> = Vec::new();
        // Since the source was told the consumer cannot read: until a message comes, or the
        // brokers answer with the topic, they are asked every RETRY_AFTER.
        let mut down = false;
        match mode {
            Mode::Subscribe => {
                if let Err(e) = self.consumer.subscribe(&[&self.topic]) {
                    self.send(Event::Failed(kafka_error(&self.name, e)));
                    return;
                }
            }
            Mode::Assign {
                partition,
                start,
                to_end,
                committed,
            } => loop {
                if self.stopped() {
                    return;
                }
                match self.assign(partition, start, to_end, committed) {
                    Ok(e) => {
                        ends = e;
                        break;
                    }
                    Err(Retry::Later(e)) => {
                        last_down = Some(Instant::now());
                        down = true;
                        if !self.send(Event::Down(Trouble::Client(e))) {
                            return;
                        }
                        std::thread::sleep(RETRY_AFTER);
                    }
                    Err(Retry::Never(e)) => {
                        self.send(Event::Failed(e));
                        return;
                    }
                }
            },
        }
        loop {
            if self.stopped() {
                return;
            }
            if let Some(ends) = &ends {
                if ends.is_empty() {
                    // Every partition read to its end: the channel closes.
                    if !batch.is_empty() {
                        self.hand_over(batch);
                    }
                    return;
                }
            }
            // A message waiting is taken at once, with those behind it, into one batch.
            let wait = if batch.is_empty() {
                TICK
            } else {
                Duration::ZERO
            };
            let polled = self.consumer.poll(wait);
            if !batch.is_empty()
                && (!matches!(polled, Some(Ok(_))) || batch.len() >= MSG_BATCH)
                && !self.hand_over(std::mem::take(&mut batch))
            {
                return;
            }
            match polled {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(ends) = ends.as_mut() {
                        ends.remove(&p);
                    }
                }
                Some(Ok(m)) => {
                    down = false;
                    let p = m.partition();
                    let offset = m.offset();
                    if ends.as_ref().is_some_and(|ends| !ends.contains(&p)) {
                        continue; // past the end this job reads to
                    }
                    let epoch = {
                        let parts = self.shared.lock();
                        match (parts.epoch.get(&p), parts.owner.get(&p)) {
                            (Some(epoch), Some(owner)) if *owner == self.index => *epoch,
                            // Revoked while this message waited, or another's by now.
                            _ => continue,
                        }
                    };
                    let headers = m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_owned(), h.value.map(Box::from)))
                                .collect()
                        })
                        .unwrap_or_default();
                    batch.push(Msg {
                        partition: p,
                        offset,
                        epoch,
                        payload: m.payload().map(<[u8]>::to_vec),
                        key: m.key().map(Box::from),
                        headers,
                        timestamp_ms: m.timestamp().to_millis(),
                    });
                }
                // librdkafka reconnects by itself; the source hears of it once a second at
                // most, as a temporary error.
                Some(Err(e)) if last_down.is_none_or(|t| t.elapsed() >= RETRY_AFTER) => {
                    last_down = Some(Instant::now());
                    down = true;
                    if !self.send(Event::Down(Trouble::Client(e))) {
                        return;
                    }
                }
                Some(Err(_)) => {}
            }
            // librdkafka reports a failure once, not for as long as it lasts: while the
            // source believes the brokers away, they are asked (a metadata request) whether
            // they answer again.
            if down && last_down.is_none_or(|t| t.elapsed() >= RETRY_AFTER) {
                last_down = Some(Instant::now());
                let ev = match self.probe() {
                    Ok(()) => {
                        tracing::info!(endpoint = %self.name, "the brokers answer again");
                        down = false;
                        Event::Up
                    }
                    Err(t) => Event::Down(t),
                };
                if !self.send(ev) {
                    return;
                }
            }
        }
    }

    /// Whether the brokers answer and have the topic.
    fn probe(&self) -> std::result::Result<(), Trouble> {
        let meta = self
            .consumer
            .fetch_metadata(Some(&self.topic), PROBE_TIMEOUT)
            .map_err(Trouble::Client)?;
        match meta.topics().iter().find(|t| t.name() == self.topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            _ => Err(Trouble::NoTopic(format!(
                "topic {} does not exist on the brokers",
                self.topic
            ))),
        }
    }

    /// Assigns the partitions, each from its committed offset or `start`; with `to_end`,
    /// returns them: each is read until the consumer reaches its end.
    fn assign(
        &self,
        partition: Option<i32>,
        start: Option<SkipToRecord>,
        to_end: bool,
        committed: bool,
    ) -> std::result::Result<Option<HashSet<i32>>, Retry> {
        let c = &self.consumer;
        let meta = c
            .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
            .map_err(|e| self.retry(e))?;
        let Some(topic) = meta.topics().iter().find(|t| t.name() == self.topic) else {
            return Err(Retry::Never(self.no_topic()));
        };
        if let Some(err) = topic.error() {
            let code: rdkafka::types::RDKafkaErrorCode = err.into();
            if code == rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
                return Err(Retry::Never(self.no_topic()));
            }
            return Err(self.retry(KafkaError::MetadataFetch(code)));
        }
        let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        if partitions.is_empty() {
            return Err(Retry::Never(self.no_topic()));
        }
        if let Some(p) = partition {
            if !partitions.contains(&p) {
                return Err(Retry::Never(Error::descriptor(
                    "Transport.Partition",
                    format!(
                        "topic {} has no partition {p} (it has {})",
                        self.topic,
                        partitions.len()
                    ),
                )));
            }
            partitions = vec![p];
        }
        // Among several consumers, this one's share: every `of`th from its own index.
        partitions.sort_unstable();
        let partitions: Vec<i32> = partitions
            .into_iter()
            .skip(self.index)
            .step_by(self.of)
            .collect();
        if partitions.is_empty() {
            // More consumers than partitions: this one reads nothing.
            return Ok(to_end.then(HashSet::new));
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(&self.topic, *p);
        }
        let mut from: HashMap<i32, Offset> = HashMap::new();
        if committed {
            let got = c
                .committed_offsets(tpl.clone(), REQUEST_TIMEOUT)
                .map_err(|e| self.retry(e))?;
            for e in got.elements_for_topic(&self.topic) {
                if let Offset::Offset(o) = e.offset() {
                    from.insert(e.partition(), Offset::Offset(o));
                }
            }
        }
        let mut assignment = TopicPartitionList::new();
        for p in &partitions {
            // Offsets are resolved by the consumer as it fetches: a broker's answer to a
            // "latest offset" request is not always right (tansu's is not).
            let begin = match from.get(p).copied() {
                Some(o) => o,
                None => match start {
                    Some(SkipToRecord::Index(n)) => Offset::Offset(n as i64),
                    Some(SkipToRecord::Latest) => Offset::End,
                    Some(SkipToRecord::Earliest) | None => Offset::Beginning,
                },
            };
            assignment
                .add_partition_offset(&self.topic, *p, begin)
                .map_err(|e| Retry::Never(kafka_error(&self.name, e)))?;
        }
        {
            let mut parts = self.shared.lock();
            for p in &partitions {
                parts.epochs += 1;
                let epoch = parts.epochs;
                parts.take_over(*p, epoch, self.index);
            }
        }
        c.assign(&assignment)
            .map_err(|e| Retry::Never(kafka_error(&self.name, e)))?;
        tracing::info!(endpoint = %self.name, partitions = assignment.count(), "partitions assigned");
        Ok(to_end.then(|| partitions.into_iter().collect()))
    }

    fn no_topic(&self) -> Error {
        Error::endpoint(
            &self.name,
            format!("topic {} does not exist on the brokers", self.topic),
        )
    }

    fn retry(&self, e: KafkaError) -> Retry {
        match e.rdkafka_error_code() {
            Some(code) if crate::is_transient(code) => Retry::Later(e),
            _ => Retry::Never(kafka_error(&self.name, e)),
        }
    }
}

enum Retry {
    Later(KafkaError),
    Never(Error),
}
