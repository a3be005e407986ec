//! Kafka end to end: the real `engine` binary, a real Python model, and a real
//! Kafka-compatible broker (tansu, started by the test: ../endpoint-kafka/tests/support),
//! written to and read by the test's own librdkafka clients. What is checked is what a
//! Kafka user relies on: every record scored, at least once across a killed engine and a
//! killed broker, a partition's records in order, offsets committed to the end, a group's
//! partitions shared between engines, bad descriptors refused before anything runs, keys
//! and headers carried, poison records on the error topic, `engine run` on topics.

#[path = "../../endpoint-kafka/tests/support/mod.rs"]
mod broker;
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use broker::Broker;
use common::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{json, Value};

/// Each record `{"id": i, "x": i}` gives `{"id": i, "y": 2i}`.
const MODEL: &str = r#"# modelop.score
def action(d):
    yield {"id": d["id"], "y": d["x"] * 2}
"#;

/// The longest any wait of these tests may take (a wait ends as soon as its condition
/// holds; this only bounds a test that would otherwise hang).
const PATIENCE: Duration = Duration::from_secs(120);

/// How long a broker restarted mid-stream stays down.
const OUTAGE: Duration = Duration::from_secs(3);

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

// ---- the broker side: topics, the test's producer and readers ----

fn create_topic(b: &Broker, name: &str, partitions: i32) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(b.topic(name, partitions));
}

/// Where the broker put each record produced: its partition and offset, by id.
type Placed = HashMap<u64, (i32, i64)>;

/// The producer's delivery reports.
#[derive(Default)]
struct Reports {
    placed: Mutex<Placed>,
    failed: Mutex<Vec<String>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        match result {
            Ok(m) => {
                self.placed
                    .lock()
                    .unwrap()
                    .insert(id as u64, (m.partition(), m.offset()));
            }
            Err((e, _)) => self
                .failed
                .lock()
                .unwrap()
                .push(format!("record {id}: {e}")),
        }
    }
}

/// Produces `{"id": i, "x": i}` for each `i` of `ids`, keyed `key-i`, to partition
/// `i % partitions`, and waits until the broker acknowledged every one. A partition's
/// records are written in increasing id order (an idempotent producer keeps it).
fn produce(b: &Broker, topic: &str, partitions: i32, ids: std::ops::Range<u64>) -> Placed {
    let producer: ThreadedProducer<Reports> = b
        .config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create_with_context(Reports::default())
        .expect("a producer");
    let n = ids.end - ids.start;
    for id in ids {
        let key = format!("key-{id}");
        let payload = json!({"id": id, "x": id}).to_string();
        loop {
            let record = BaseRecord::with_opaque_to(topic, id as usize)
                .partition((id % partitions as u64) as i32)
                .key(&key)
                .payload(&payload);
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("producing record {id}: {e}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("the broker acknowledges every record");
    let failed = producer.context().failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "{failed:?}");
    let placed = std::mem::take(&mut *producer.context().placed.lock().unwrap());
    assert_eq!(placed.len() as u64, n, "a delivery report per record");
    placed
}

/// A test-side consumer of a whole topic from its beginning, in no group's name (it commits
/// nothing), that knows when it reached each partition's end (`enable.partition.eof`: the
/// end as the broker's fetch answers say, never its "latest offset" answer, wrong in tansu).
struct Reader {
    consumer: BaseConsumer,
    partitions: i32,
    at_end: HashSet<i32>,
    /// The ids of the output records, in the order read (one partition: the order written).
    got: Vec<u64>,
    seen: HashSet<u64>,
}

impl Reader {
    fn new(b: &Broker, topic: &str, partitions: i32) -> Reader {
        let consumer: BaseConsumer = b
            .config()
            .set(
                "group.id",
                format!("reader-{}-{}", std::process::id(), unique()),
            )
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        Reader {
            consumer,
            partitions,
            at_end: HashSet::new(),
            got: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Takes what arrives within `d` (a broker down only makes it wait).
    fn poll_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.consumer.poll(left) {
                None => return,
                Some(Ok(m)) => {
                    let v: Value = serde_json::from_slice(m.payload().unwrap_or_default())
                        .unwrap_or_else(|e| panic!("an output record is not JSON: {e}"));
                    let id = v["id"].as_u64().unwrap_or_else(|| panic!("no id: {v}"));
                    assert_eq!(v["y"], json!(id * 2), "{v}");
                    self.at_end.remove(&m.partition());
                    self.got.push(id);
                    self.seen.insert(id);
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    self.at_end.insert(p);
                }
                Some(Err(_)) => {} // the broker away: librdkafka reconnects
            }
        }
    }

    /// Reads on until every partition reached its end.
    fn reach_ends(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while self.at_end.len() < self.partitions as usize {
            assert!(
                Instant::now() < deadline,
                "the reader did not reach the end of every partition ({:?} of {}, {} records)",
                self.at_end,
                self.partitions,
                self.got.len()
            );
            self.poll_for(Duration::from_millis(200));
        }
    }

    fn distinct(&self) -> u64 {
        self.seen.len() as u64
    }
}

/// Every record of `topic` as it is now, read by a fresh consumer to each partition's end.
fn read_all(b: &Broker, topic: &str, partitions: i32) -> Vec<u64> {
    let mut r = Reader::new(b, topic, partitions);
    r.reach_ends();
    r.got
}

/// How many times each id appears.
fn tally(ids: &[u64]) -> BTreeMap<u64, usize> {
    let mut t = BTreeMap::new();
    for id in ids {
        *t.entry(*id).or_default() += 1;
    }
    t
}

/// The group's committed offset of each partition of `topic` (0 where it has none), as the
/// broker answers an offset fetch (nothing joins the group).
fn committed(b: &Broker, group: &str, topic: &str, partitions: i32) -> Result<Vec<i64>, String> {
    let c: BaseConsumer = b
        .config()
        .set("group.id", group)
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok((0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        })
        .collect())
}

/// How many members `group` has, as the broker describes it (tansu leaves out their
/// assignments).
fn members(b: &Broker, group: &str) -> Result<usize, String> {
    let c: BaseConsumer = b.config().create().map_err(|e| e.to_string())?;
    let list = c
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let g = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .ok_or_else(|| format!("no group {group}"))?;
    Ok(g.members().len())
}

fn committed_sum(b: &Broker, group: &str, topic: &str, partitions: i32) -> i64 {
    committed(b, group, topic, partitions).map_or(-1, |c| c.iter().sum())
}

/// Waits until `check` answers `Ok`, at most [`PATIENCE`]; its last `Err` says what was
/// seen when it gives up.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check() {
            Ok(t) => return t,
            Err(seen) => assert!(Instant::now() < deadline, "{what}: still {seen}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Outputs seen over time, to know how many arrived in the last second.
#[derive(Default)]
struct Pace {
    seen: Vec<(Instant, u64)>,
}

impl Pace {
    fn note(&mut self, records: u64) {
        self.seen.push((Instant::now(), records));
    }

    /// Records out now less those out a second or more ago.
    fn last_second(&self, now: u64) -> u64 {
        let second_ago = Instant::now() - Duration::from_secs(1);
        let then = self
            .seen
            .iter()
            .rev()
            .find(|(t, _)| *t <= second_ago)
            .map_or(0, |(_, n)| *n);
        now - then
    }
}

// ---- the engine side ----

fn start_engine(data: &std::path::Path, workers: u32) -> Engine {
    Engine::start(data, &[], &[("ENGINE_SCORE_WORKERS", &workers.to_string())])
}

fn deploy(e: &Engine) {
    let doc = json!({
        "name": "doubler",
        "deployableModel": {"storedModel": {"modelAssets": [{
            "name": "doubler.py", "assetType": "SOURCE_CODE", "sourceCode": MODEL,
        }]}},
    });
    let (s, v) = e.send("PUT", "/api/deployment", &doc);
    assert_eq!(s, 201, "{v}");
}

fn put_stream(e: &Engine, slot: u32, body: &str) -> (u16, Value) {
    let a = e
        .client()
        .put(
            &format!("/2/active/stream/{slot}"),
            "application/json",
            body.as_bytes(),
        )
        .expect("engine answers");
    (
        a.status,
        serde_json::from_slice(&a.body).unwrap_or(Value::Null),
    )
}

fn attach(e: &Engine, slot: u32, descriptor: &Value) -> Value {
    let (s, v) = put_stream(e, slot, &descriptor.to_string());
    assert_eq!(s, 201, "attaching {descriptor}: {v}");
    v
}

fn streams(e: &Engine) -> Vec<Value> {
    let (s, v) = e.get("/2/active/stream");
    assert_eq!(s, 200, "{v}");
    v["streams"].as_array().cloned().unwrap_or_default()
}

fn stream(e: &Engine, slot: u32) -> Value {
    streams(e)
        .into_iter()
        .find(|s| s["slot"] == slot)
        .unwrap_or(Value::Null)
}

fn count(s: &Value, field: &str) -> u64 {
    s[field].as_u64().unwrap_or(0)
}

/// A Kafka descriptor of `topic` on `b`, with `fields` added to its transport.
fn kafka(b: &Broker, topic: &str, fields: Value) -> Value {
    let mut t = json!({"Type": "Kafka", "BootstrapServers": [b.address], "Topic": topic});
    if let (Some(t), Some(fields)) = (t.as_object_mut(), fields.as_object()) {
        t.extend(fields.clone());
    }
    json!({"Transport": t, "Encoding": "json"})
}

/// An input following `topic` in `group` (the group's join takes about half of the session
/// timeout in tansu: 6 s keeps it short).
fn kafka_input(b: &Broker, topic: &str, group: &str, fields: Value) -> Value {
    let mut d = kafka(
        b,
        topic,
        json!({"Group": group, "Properties": {"session.timeout.ms": 6000}}),
    );
    if let (Some(t), Some(fields)) = (d["Transport"].as_object_mut(), fields.as_object()) {
        t.extend(fields.clone());
    }
    d
}

/// Attaches the output (first: a yield to a slot without a stream is not kept) and the input.
fn attach_both(e: &Engine, b: &Broker, input: &str, output: &str, group: &str, fields: Value) {
    let out = attach(e, 1, &kafka(b, output, json!({})));
    assert_eq!(out["state"], "running", "{out}");
    let inp = attach(e, 0, &kafka_input(b, input, group, fields));
    assert_eq!(inp["state"], "running", "{inp}");
}

fn state(e: &Engine, slot: u32) -> String {
    stream(e, slot)["state"]
        .as_str()
        .unwrap_or("none")
        .to_owned()
}

// ---- the tests ----

/// 10,000 keyed records over 4 partitions, scored by two workers into a topic of one
/// partition: every record once, each input partition's records in the order they were
/// produced, and the group's offsets committed to the end of the input.
#[test]
fn a_topic_is_scored_into_another_each_record_once_and_in_partition_order() {
    const N: u64 = 10_000;
    const PARTITIONS: i32 = 4;
    let b = Broker::start();
    create_topic(&b, "in", PARTITIONS);
    // One partition: the output's order is the order the engine wrote.
    create_topic(&b, "out", 1);
    let placed = produce(&b, "in", PARTITIONS, 0..N);

    let dir = tempfile::tempdir().unwrap();
    let e = start_engine(&dir.path().join("data"), 2);
    deploy(&e);
    // Two consumers in the group, splitting the four partitions.
    attach_both(&e, &b, "in", "out", "roundtrip", json!({"Consumers": 2}));

    let group_end = wait_for("the group's offsets reach the input's end", || {
        let c = committed(&b, "roundtrip", "in", PARTITIONS)?;
        if c.iter().sum::<i64>() == N as i64 {
            Ok(c)
        } else {
            Err(format!("{c:?}; input stream {}", stream(&e, 0)))
        }
    });
    // Each partition's committed offset is its end: the number of records it holds.
    for p in 0..PARTITIONS {
        let held = placed.values().filter(|(q, _)| *q == p).count() as i64;
        assert_eq!(group_end[p as usize], held, "partition {p}: {group_end:?}");
    }

    // The input's two consumers are the group's two members.
    assert_eq!(members(&b, "roundtrip"), Ok(2), "the group's members");

    let out = read_all(&b, "out", 1);
    let t = tally(&out);
    assert_eq!(t.len() as u64, N, "every id is out");
    let twice: Vec<_> = t.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "scored more than once: {twice:?}");
    assert_eq!(out.len() as u64, N);
    // Within each input partition, the outputs come in the order of the inputs.
    let mut last: HashMap<i32, (i64, u64)> = HashMap::new();
    for id in &out {
        let (p, offset) = placed[id];
        if let Some((before, earlier)) = last.insert(p, (offset, *id)) {
            assert!(
                offset > before,
                "input partition {p}: id {id} (offset {offset}) came out after id {earlier} (offset {before})"
            );
        }
    }

    let log = e.deployment_log_text();
    assert!(log.contains("deployed with 2 worker(s)"), "{log}");
    let inp = stream(&e, 0);
    assert_eq!(inp["state"], "running", "{inp}");
    assert_eq!(count(&inp, "recordsIn"), N, "{inp}");
    assert_eq!(count(&inp, "recordsOut"), N, "{inp}");
    assert_eq!(
        count(&inp, "recordsFailed") + count(&inp, "recordsRejected"),
        0
    );
    let outs = stream(&e, 1);
    assert_eq!(outs["state"], "running", "{outs}");
    assert_eq!(count(&outs, "recordsOut"), N, "{outs}");
}

/// A pseudo-random number for where to cut a run (the clock's nanoseconds).
fn roll(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos) % n
}

/// The engine killed (SIGKILL) in the middle of 100,000 records and started again on its
/// data dir: the deployment and its streams come back by themselves, the input resumes
/// from the group's committed offsets, every record is scored, and the records scored
/// twice are only those the killed engine had written out but not yet committed.
#[test]
fn a_killed_engine_resumes_from_its_commits_and_scores_every_record() {
    const N: u64 = 100_000;
    const PARTITIONS: i32 = 4;
    const WINDOW: u64 = 2_000;
    let b = Broker::start();
    create_topic(&b, "in", PARTITIONS);
    create_topic(&b, "out", 2);
    let placed = produce(&b, "in", PARTITIONS, 0..N);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut e = start_engine(&data, 1);
    deploy(&e);
    attach_both(
        &e,
        &b,
        "in",
        "out",
        "resume",
        json!({"MaxInFlight": WINDOW}),
    );
    let descriptors: Vec<Value> = streams(&e)
        .iter()
        .map(|s| s["descriptor"].clone())
        .collect();

    // Killed once the output holds between 20% and 80% of the records.
    let cut = N * (20 + roll(61)) / 100;
    let mut r = Reader::new(&b, "out", 2);
    let mut pace = Pace::default();
    let deadline = Instant::now() + PATIENCE;
    while r.distinct() < cut {
        assert!(
            Instant::now() < deadline,
            "only {} of {cut} records out; input stream {}",
            r.distinct(),
            stream(&e, 0)
        );
        r.poll_for(Duration::from_millis(20));
        pace.note(r.got.len() as u64);
    }
    assert_eq!(e.signal("-KILL"), None, "killed by the signal");
    let out_last_second = pace.last_second(r.got.len() as u64);

    // What the killed engine left: its commits, and the outputs on the broker.
    let at_kill = committed(&b, "resume", "in", PARTITIONS).expect("offsets");
    let left = read_all(&b, "out", 2);
    let left_tally = tally(&left);
    assert!(
        left_tally.values().all(|n| *n == 1),
        "the engine scored a record twice before it was killed"
    );
    assert!(
        at_kill.iter().sum::<i64>() < N as i64,
        "every record was committed before the kill, which was not mid-stream: {at_kill:?}"
    );
    // At least once: a committed offset means every record before it is out.
    let uncommitted = |id: &u64| {
        let (p, offset) = placed[id];
        offset >= at_kill[p as usize]
    };
    let lost: Vec<u64> = placed
        .keys()
        .filter(|id| !uncommitted(id) && !left_tally.contains_key(id))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "{} records committed ({at_kill:?}) with no output, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Out but not committed: these the next engine reads and scores again.
    let gap: HashSet<u64> = left_tally
        .keys()
        .filter(|id| uncommitted(id))
        .copied()
        .collect();

    // Started again on the same data dir: the model and both streams are back as they were.
    let e = start_engine(&data, 1);
    let (s, d) = e.get("/api/deployment");
    assert_eq!(s, 200, "the deployment is restored: {d}");
    let again: Vec<Value> = streams(&e)
        .iter()
        .map(|s| s["descriptor"].clone())
        .collect();
    assert_eq!(again, descriptors, "the streams are restored");

    wait_for("every record is out after the restart", || {
        r.poll_for(Duration::from_millis(200));
        let c = committed_sum(&b, "resume", "in", PARTITIONS);
        if r.distinct() == N && c == N as i64 {
            Ok(())
        } else {
            Err(format!(
                "{} of {N} ids out, {c} committed; input stream {}",
                r.distinct(),
                stream(&e, 0)
            ))
        }
    });
    let all = read_all(&b, "out", 2);
    let t = tally(&all);
    assert_eq!(t.len() as u64, N, "every id is out");
    let twice: HashSet<u64> = t
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    assert!(
        t.values().all(|n| *n <= 2),
        "a record was scored more than twice across one kill"
    );
    // Only uncommitted records are read again, and each of those already out is out twice.
    let recommitted: Vec<_> = twice.iter().filter(|id| !uncommitted(id)).collect();
    assert!(
        recommitted.is_empty(),
        "records before the committed offsets were scored again: {:?}",
        &recommitted[..recommitted.len().min(5)]
    );
    let missing: Vec<_> = gap.difference(&twice).collect();
    assert!(
        missing.is_empty(),
        "records out but uncommitted at the kill were not read again: {:?}",
        &missing[..missing.len().min(5)]
    );
    // How many that can be. The killed engine's records past its committed offsets that it
    // had already written out are (1) records in flight, read and not yet settled: at most
    // MaxInFlight, the source reads no more until some settle; and (2) records settled
    // (their outputs acknowledged by the broker) whose offsets were not committed yet: the
    // source commits what settled at most every 200 ms while records flow (and an
    // asynchronous commit may still be on its way to the broker), so this is what settles
    // in about 200 ms plus a commit's round trip. The bound takes a whole second of the
    // rate the reader saw just before the kill for (2), five times the commit interval,
    // for a machine whose cores are shared.
    let bound = WINDOW + out_last_second;
    eprintln!(
        "killed at {cut} out: {} out and uncommitted at the kill, {} scored twice \
         (bound {bound} = MaxInFlight {WINDOW} + {out_last_second} out in the last second)",
        gap.len(),
        twice.len()
    );
    assert!(
        twice.len() as u64 <= bound,
        "{} records scored twice, more than {bound}",
        twice.len()
    );
    let inp = stream(&e, 0);
    assert_eq!(inp["state"], "running", "{inp}");
}

/// The broker killed (SIGKILL) while records flow and started again on its storage a few
/// seconds later: the streams come back to `running` by themselves, every record is out at
/// least once, and the records scored twice are only those in flight or settled and not
/// yet committed when the broker went.
#[test]
fn a_broker_killed_mid_stream_loses_nothing_and_the_streams_recover() {
    const N: u64 = 20_000;
    const PARTITIONS: i32 = 2;
    const WINDOW: u64 = 2_000;
    let mut b = Broker::start_durable();
    create_topic(&b, "in", PARTITIONS);
    create_topic(&b, "out", 1);
    let placed = produce(&b, "in", PARTITIONS, 0..N);

    let dir = tempfile::tempdir().unwrap();
    let e = start_engine(&dir.path().join("data"), 1);
    deploy(&e);
    attach_both(
        &e,
        &b,
        "in",
        "out",
        "outage",
        json!({"MaxInFlight": WINDOW}),
    );

    let mut r = Reader::new(&b, "out", 1);
    let mut pace = Pace::default();
    wait_for("a quarter of the records out", || {
        r.poll_for(Duration::from_millis(20));
        pace.note(r.got.len() as u64);
        if r.distinct() >= N / 4 {
            Ok(())
        } else {
            Err(format!(
                "{} out; input stream {}",
                r.distinct(),
                stream(&e, 0)
            ))
        }
    });
    // Committed by now, so before the kill: these records are never read again.
    let before = committed(&b, "outage", "in", PARTITIONS).expect("offsets");
    b.kill();
    let out_last_second = pace.last_second(r.got.len() as u64);
    // Down for a few seconds, as a broker being restarted is: long enough for every client to
    // lose its connections and its group, well within the sink's patience (its flush waits
    // 30 s for the broker's acknowledgements).
    std::thread::sleep(OUTAGE);
    b.restart();

    wait_for("every record out after the broker came back", || {
        r.poll_for(Duration::from_millis(200));
        let c = committed_sum(&b, "outage", "in", PARTITIONS);
        if r.distinct() == N && c == N as i64 {
            Ok(())
        } else {
            Err(format!(
                "{} of {N} ids out, {c} committed; input {}; output {}",
                r.distinct(),
                stream(&e, 0),
                stream(&e, 1)
            ))
        }
    });
    // Both streams are running again, nothing failed or rejected on the way.
    for slot in [0, 1] {
        let s = stream(&e, slot);
        assert_eq!(s["state"], "running", "slot {slot}: {s}");
        assert_eq!(
            count(&s, "recordsFailed") + count(&s, "recordsRejected"),
            0,
            "slot {slot}: {s}"
        );
    }
    let t = tally(&read_all(&b, "out", 1));
    assert_eq!(t.len() as u64, N, "every id is out");
    let twice: Vec<u64> = t
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    let recommitted: Vec<_> = twice
        .iter()
        .filter(|id| {
            let (p, offset) = placed[id];
            offset < before[p as usize]
        })
        .collect();
    assert!(
        recommitted.is_empty(),
        "records committed before the broker went were scored again: {:?}",
        &recommitted[..recommitted.len().min(5)]
    );
    // The broker's restart ends the consumer's group membership: its partitions are lost,
    // not revoked (no chance to commit), and the group gives them back from the committed
    // offsets. Read again are the records the engine had read past those: in flight (at
    // most MaxInFlight; their outputs are written once the broker is back) or settled and
    // not yet committed (what settles between two commits, 200 ms apart while records flow;
    // a second of the rate seen before the kill bounds it with room, as in the test of the
    // killed engine).
    let bound = WINDOW + out_last_second;
    let read = count(&stream(&e, 0), "recordsIn");
    eprintln!(
        "broker restart: {} records out twice, {} read twice (bound {bound} = MaxInFlight \
         {WINDOW} + {out_last_second} out in the last second)",
        twice.len(),
        read - N
    );
    assert!(
        twice.len() as u64 <= bound,
        "{} records scored twice, more than {bound}",
        twice.len()
    );

    // Gone again while the input waits for records: it says so (`retrying`, why) for as
    // long as the broker is away, and reads on by itself once it is back.
    b.kill();
    let down = wait_for("the input sees the broker gone", || {
        let s = stream(&e, 0);
        if s["state"] == "retrying" {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    });
    assert!(
        down["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("brokers cannot be reached"),
        "{down}"
    );
    b.restart();
    produce(&b, "in", PARTITIONS, N..N + 1000);
    wait_for(
        "the records produced after the broker came back are out",
        || {
            r.poll_for(Duration::from_millis(200));
            if r.distinct() == N + 1000 {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} ids out; input {}",
                    r.distinct(),
                    N + 1000,
                    stream(&e, 0)
                ))
            }
        },
    );
    let s = stream(&e, 0);
    assert_eq!(s["state"], "running", "{s}");
    assert!(
        e.deployment_log_text().contains("reading again"),
        "{}",
        e.deployment_log_text()
    );
}

/// Two engines in one group share a topic's partitions: the second joins while the first
/// is reading, the partitions are split between them, and together they score each record
/// once.
#[test]
fn two_engines_in_one_group_share_the_partitions_and_score_each_record_once() {
    const N: u64 = 30_000;
    const PARTITIONS: i32 = 4;
    let b = Broker::start();
    create_topic(&b, "in", PARTITIONS);
    create_topic(&b, "out", 1);
    let dir = tempfile::tempdir().unwrap();
    let engines: Vec<Engine> = ["a", "b"]
        .iter()
        .map(|name| {
            let e = start_engine(&dir.path().join(name), 1);
            deploy(&e);
            e
        })
        .collect();
    let (first, second) = (&engines[0], &engines[1]);

    // The first engine reads alone...
    let mut placed = produce(&b, "in", PARTITIONS, 0..N / 3);
    attach_both(first, &b, "in", "out", "shared", json!({}));
    wait_for("the first engine reads", || {
        let s = stream(first, 0);
        if count(&s, "recordsIn") >= 1000 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    // ... until the second joins its group: the group takes partitions from the first
    // (drained and committed before they go) and gives them to the second. Records keep
    // coming, a thousand at a time, until the second has read some.
    // (The second with two consumers: three members share the four partitions.)
    attach_both(second, &b, "in", "out", "shared", json!({"Consumers": 2}));
    let mut next = N / 3;
    wait_for("the second engine reads", || {
        placed.extend(produce(&b, "in", PARTITIONS, next..next + 1000));
        next += 1000;
        let s = stream(second, 0);
        if count(&s, "recordsIn") > 0 {
            Ok(())
        } else {
            Err(format!("{s} after {next} records"))
        }
    });
    assert!(next < N, "{next} records before the second engine read any");
    placed.extend(produce(&b, "in", PARTITIONS, next..N));
    assert_eq!(placed.len() as u64, N);

    let mut r = Reader::new(&b, "out", 1);
    wait_for("every record out", || {
        r.poll_for(Duration::from_millis(200));
        let c = committed_sum(&b, "shared", "in", PARTITIONS);
        if r.distinct() == N && c == N as i64 {
            Ok(())
        } else {
            Err(format!("{} of {N} ids out, {c} committed", r.distinct()))
        }
    });
    let t = tally(&read_all(&b, "out", 1));
    assert_eq!(t.len() as u64, N, "every id is out");
    // A partition changing hands is drained first: its records in flight are scored and
    // written, their offsets committed, before the other engine reads on from there.
    let twice: Vec<_> = t.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} scored twice: {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    let read: Vec<u64> = engines
        .iter()
        .map(|e| count(&stream(e, 0), "recordsIn"))
        .collect();
    assert!(read.iter().all(|n| *n > 0), "{read:?}");
    assert_eq!(
        read.iter().sum::<u64>(),
        N,
        "each record read by one engine: {read:?}"
    );
}

/// Descriptors that cannot work are refused with 400 naming the field; a broker that
/// cannot be reached leaves the stream attached, retrying, and the engine serving.
#[test]
fn bad_kafka_descriptors_are_refused_and_an_unreachable_broker_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let e = start_engine(&dir.path().join("data"), 1);
    deploy(&e);
    let nowhere = r#""BootstrapServers": ["127.0.0.1:1"]"#;
    for (slot, body, field) in [
        (
            0,
            format!(
                r#"{{"Transport": {{"Type": "Kafka", {nowhere}, "Topic": "in", "Topik": "x"}}}}"#
            ),
            "Transport.Topik",
        ),
        (
            0,
            format!(r#"{{"Transport": {{"Type": "Kafka", {nowhere}}}}}"#),
            "Transport.Topic",
        ),
        (
            0,
            format!(
                r#"{{"Transport": {{"Type": "Kafka", {nowhere}, "Topic": "in",
                     "Properties": {{"enable.auto.commit": true}}}}}}"#
            ),
            "Transport.Properties.enable.auto.commit",
        ),
        (
            1,
            format!(
                r#"{{"Transport": {{"Type": "Kafka", {nowhere}, "Topic": "out",
                     "Properties": {{"acks": "1"}}}}}}"#
            ),
            "Transport.Properties.acks",
        ),
        (
            0,
            format!(
                r#"{{"Transport": {{"Type": "Kafka", {nowhere}, "Topic": "in", "MaxInFlight": 0}}}}"#
            ),
            "Transport.MaxInFlight",
        ),
    ] {
        let (s, v) = put_stream(&e, slot, &body);
        assert_eq!(s, 400, "{body}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(&format!("'{field}'")), "{body}: {msg}");
    }
    assert!(streams(&e).is_empty(), "{:?}", streams(&e));

    // A broker nobody listens on: attached all the same, retrying, saying why.
    let (s, v) = put_stream(
        &e,
        0,
        r#"{"Transport": {"Type": "Kafka", "BootstrapServers": ["127.0.0.1:1"], "Topic": "in", "Group": "nowhere", "Properties": {"session.timeout.ms": 6000}}, "Encoding": "json"}"#,
    );
    assert_eq!(s, 201, "{v}");
    let retrying = wait_for("the input retries", || {
        let s = stream(&e, 0);
        if s["state"] == "retrying" {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    });
    let reason = retrying["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("kafka:127.0.0.1:1/in") && reason.contains("brokers cannot be reached"),
        "{retrying}"
    );
    // And it stays so while the brokers stay away: a quiet read is not a read that worked.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let s = stream(&e, 0);
        assert_eq!(s["state"], "retrying", "{s}");
    }
    // The engine goes on: healthy, scoring over REST.
    assert_eq!(e.get("/1/health").0, 200);
    let (s, body, _) = e.score("/api/roundtrip/0/1", r#"{"id": 7, "x": 21}"#);
    assert_eq!((s, body.as_str()), (200, r#"{"id":7,"y":42}"#));
    assert_eq!(state(&e, 0), "retrying");
    // And the stream can be detached while its broker is away.
    let a = e.client().delete("/2/active/stream/0").unwrap();
    assert_eq!(a.status, 204);
    assert!(streams(&e).is_empty());
}

/// `engine ARGS...` in `dir`, its output collected.
fn run_engine_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::ENGINE)
        .args(args)
        .current_dir(dir)
        .env_remove("ENGINE_LOG")
        .output()
        .expect("engine runs")
}

/// `engine run` reads a topic to its end into a file, and writes a file into a topic; a
/// second run of the same group finds nothing new (the first committed what it read).
///
/// Ignored until `engine run` takes descriptors: its `--input` and `--output` are file
/// paths only (run.rs makes `StreamDescriptor::file` of each), so `--input kafka:...` is
/// refused as "no such file" and `--output kafka:host:port/topic.json` writes a local file
/// `kafka:host:port/topic.json`. The test passed against a build whose `--input`/`--output`
/// parse a `kafka:` short form as a descriptor.
#[test]
fn engine_run_reads_a_topic_to_its_end_and_writes_a_topic() {
    const N: u64 = 1_000;
    let b = Broker::start();
    create_topic(&b, "jobin", 3);
    create_topic(&b, "jobout", 2);
    produce(&b, "jobin", 3, 0..N);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("doubler.py"), MODEL).unwrap();
    // The short form: the group is the default one, `model-runtime` (a fresh broker's).
    let topic_in = format!("kafka:{}/jobin.json", b.address);
    let run = |output: &str| {
        let out = run_engine_in(
            dir.path(),
            &[
                "run",
                "doubler.py",
                "--input",
                &topic_in,
                "--output",
                output,
            ],
        );
        let err = common::text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        err
    };

    let err = run("first.jsonl");
    assert!(err.contains(&format!("Records in/out: {N}/{N}")), "{err}");
    let first = std::fs::read_to_string(dir.path().join("first.jsonl")).unwrap();
    let ids: Vec<u64> = first
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["y"], json!(v["id"].as_u64().unwrap() * 2), "{v}");
            v["id"].as_u64().unwrap()
        })
        .collect();
    let t = tally(&ids);
    assert_eq!(t.len() as u64, N, "every id once");
    assert!(t.values().all(|n| *n == 1));
    assert_eq!(
        committed(&b, "model-runtime", "jobin", 3).unwrap(),
        vec![334, 333, 333],
        "the job committed what it read"
    );

    // Again, same group: nothing new to read.
    let err = run("second.jsonl");
    assert!(err.contains("Records in/out: 0/0"), "{err}");
    let second = std::fs::read_to_string(dir.path().join("second.jsonl")).unwrap_or_default();
    assert_eq!(second, "", "the second run read records again");

    // A file into a topic.
    let input: String = (0..500)
        .map(|i| format!("{{\"id\": {i}, \"x\": {i}}}\n"))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let out = run_engine_in(
        dir.path(),
        &[
            "run",
            "doubler.py",
            "--input",
            "in.jsonl",
            "--output",
            &format!("kafka:{}/jobout.json", b.address),
        ],
    );
    let err = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("Records in/out: 500/500"), "{err}");
    let t = tally(&read_all(&b, "jobout", 2));
    assert_eq!(t.len(), 500, "every id is in the topic");
    assert!(t.values().all(|n| *n == 1), "each once");
    // Nothing was written where a file of that name would go.
    let strays: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kafka:"))
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
}

/// A message as the broker holds it: key, value, headers.
type Msg = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Every message of a topic from its beginning to the end of each partition.
fn messages(b: &Broker, topic: &str, partitions: i32) -> Vec<Msg> {
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = b
        .config()
        .set("group.id", format!("messages-{}", unique()))
        .set("enable.partition.eof", "true")
        .create()
        .expect("a consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut ended = HashSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while ended.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "{topic}: no end of partition in time"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("{topic}: {e}"),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                ));
            }
        }
    }
    out
}

/// Produces `values` to partition 0 of `topic`, the i-th keyed `k-i` with a header
/// `trace: t-i`.
fn produce_raw(b: &Broker, topic: &str, values: &[Vec<u8>]) {
    let producer: ThreadedProducer<Reports> = b
        .config()
        .create_with_context(Reports::default())
        .expect("a producer");
    for (i, v) in values.iter().enumerate() {
        let key = format!("k-{i}");
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "trace",
            value: Some(format!("t-{i}").as_bytes()),
        });
        let record = BaseRecord::with_opaque_to(topic, i)
            .partition(0)
            .key(&key)
            .headers(headers)
            .payload(v);
        producer.send(record).map_err(|(e, _)| e).expect("queued");
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("acknowledged");
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}

/// Keys and headers go from each input message to its output; a record that does not
/// decode and one the model raises on go to the error topic as their original messages
/// with the reason in headers, and neither holds its partition up (the group's offset
/// reaches the end); the stream list and `/api/engine` show the input's lag. A second
/// deployment asks for the `Metadata` form: the model sees key and headers and chooses the
/// output's.
#[test]
fn keys_and_headers_are_carried_and_poison_records_go_to_the_error_topic() {
    const N: usize = 200;
    let b = Broker::start();
    for t in ["in", "out", "errors"] {
        create_topic(&b, t, 1);
    }
    let values: Vec<Vec<u8>> = (0..N)
        .map(|i| match i {
            50 => b"not json".to_vec(),
            _ => json!({"id": i, "x": i}).to_string().into_bytes(),
        })
        .collect();
    produce_raw(&b, "in", &values);

    let dir = tempfile::tempdir().unwrap();
    let e = start_engine(&dir.path().join("data"), 1);
    let model = r#"# modelop.score
def action(d):
    if d["x"] == 13:
        raise ValueError("unlucky thirteen")
    yield {"id": d["id"], "y": d["x"] * 2}
"#;
    let doc = json!({
        "name": "keyed",
        "deployableModel": {"storedModel": {"modelAssets": [{
            "name": "keyed.py", "assetType": "SOURCE_CODE", "sourceCode": model,
        }]}},
    });
    let (s, v) = e.send("PUT", "/api/deployment", &doc);
    assert_eq!(s, 201, "{v}");
    let (s, v) = e.send(
        "PUT",
        "/2/active/stream/errors",
        &kafka(&b, "errors", json!({})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["slot"], "errors", "{v}");
    attach_both(&e, &b, "in", "out", "keyed", json!({}));
    wait_for("the group's offset reaches the input's end", || {
        let c = committed_sum(&b, "keyed", "in", 1);
        if c == N as i64 {
            Ok(())
        } else {
            Err(format!("{c} committed; {}", stream(&e, 0)))
        }
    });

    let out = messages(&b, "out", 1);
    assert_eq!(
        out.len(),
        N - 2,
        "every record but the two poison ones is out"
    );
    for (key, value, headers) in &out {
        let v: Value = serde_json::from_slice(value).unwrap();
        let id = v["id"].as_u64().unwrap();
        assert_eq!(v["y"], id * 2);
        assert_eq!(key.as_deref(), Some(format!("k-{id}").as_bytes()), "{v}");
        assert_eq!(
            header(headers, "trace"),
            Some(format!("t-{id}").as_str()),
            "{v}"
        );
    }
    let errors = messages(&b, "errors", 1);
    assert_eq!(errors.len(), 2, "{errors:?}");
    let (key, value, headers) = &errors[0];
    assert_eq!(key.as_deref(), Some(&b"k-13"[..]));
    assert_eq!(value, &values[13], "the original message");
    assert_eq!(header(headers, "trace"), Some("t-13"));
    assert_eq!(header(headers, "error.stage"), Some("model"));
    assert!(
        header(headers, "error.reason")
            .unwrap()
            .contains("unlucky thirteen"),
        "{headers:?}"
    );
    assert_eq!(header(headers, "error.topic"), Some("in"));
    assert_eq!(header(headers, "error.partition"), Some("0"));
    assert_eq!(header(headers, "error.offset"), Some("13"));
    let (key, value, headers) = &errors[1];
    assert_eq!(key.as_deref(), Some(&b"k-50"[..]));
    assert_eq!(value, b"not json");
    assert_eq!(header(headers, "error.stage"), Some("input"));
    assert_eq!(header(headers, "error.kind"), Some("encoding"));
    assert_eq!(header(headers, "error.offset"), Some("50"));

    let inp = stream(&e, 0);
    assert_eq!(count(&inp, "recordsRejected"), 1, "{inp}");
    assert_eq!(count(&inp, "recordsFailed"), 1, "{inp}");
    // The lag comes from the client's statistics (every 5 s): nothing is left.
    wait_for("the input's lag is known and nothing", || {
        let (_, engine) = e.get("/api/engine");
        let listed = engine["streams"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["slot"] == 0).cloned())
            .unwrap_or(Value::Null);
        if listed["lag"] == 0 && stream(&e, 0)["lag"] == 0 {
            Ok(())
        } else {
            Err(format!("{listed}"))
        }
    });

    // The Metadata form: the model reads the key and header, and writes its own.
    let model = r#"# modelop.score
def action(m):
    yield {"key": m["key"] + "-out", "headers": {"seen": m["headers"]["trace"]},
           "value": {"id": m["value"]["id"], "partition": m["partition"], "offset": m["offset"]}}
"#;
    let doc = json!({
        "name": "metadata",
        "deployableModel": {"storedModel": {"modelAssets": [{
            "name": "metadata.py", "assetType": "SOURCE_CODE", "sourceCode": model,
        }]}},
    });
    let (s, v) = e.send("PUT", "/api/deployment", &doc);
    assert_eq!(s, 201, "{v}");
    create_topic(&b, "in2", 1);
    create_topic(&b, "out2", 1);
    produce_raw(&b, "in2", &values[..3]);
    attach(&e, 1, &kafka(&b, "out2", json!({"Metadata": true})));
    attach(
        &e,
        0,
        &kafka_input(&b, "in2", "metadata", json!({"Metadata": true})),
    );
    wait_for("the second group's offset reaches the end", || {
        let c = committed_sum(&b, "metadata", "in2", 1);
        if c == 3 {
            Ok(())
        } else {
            Err(format!("{c} committed; {}", stream(&e, 0)))
        }
    });
    let out = messages(&b, "out2", 1);
    assert_eq!(out.len(), 3);
    for (i, (key, value, headers)) in out.iter().enumerate() {
        assert_eq!(key.as_deref(), Some(format!("k-{i}-out").as_bytes()));
        assert_eq!(header(headers, "seen"), Some(format!("t-{i}").as_str()));
        let v: Value = serde_json::from_slice(value).unwrap();
        assert_eq!(v, json!({"id": i, "partition": 0, "offset": i}));
    }
}
