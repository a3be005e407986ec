//! An input reading with several consumers (`Consumers`) as a batch job reads: each takes its
//! share of the partitions, every record is read once and in order within its partition,
//! what was settled is committed by the consumer that read it, and the group's next run
//! starts after it.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use endpoints::{Registry, StreamDescriptor};
use rdkafka::producer::{FutureProducer, FutureRecord};
use runtime_core::{Fate, ReadItem, RecordSource, Value};
use support::Broker;

const PARTITIONS: i32 = 5;
const N: u64 = 2_000;

fn open(b: &Broker, consumers: usize) -> Box<dyn RecordSource> {
    let d = StreamDescriptor::parse(&format!(
        r#"{{"Transport": {{"Type": "Kafka", "BootstrapServers": ["{}"], "Topic": "in",
             "Group": "several", "Consumers": {consumers}}},
           "Encoding": "json"}}"#,
        b.address
    ))
    .unwrap();
    endpoint_kafka::register(Registry::default(), Default::default())
        .open_source(&d, &d.codec_config())
        .unwrap()
}

/// Produces `{"i": i, "p": p}` to partition `p` of the topic.
async fn send(producer: &FutureProducer, i: u64, p: i32) {
    let value = format!(r#"{{"i": {i}, "p": {p}}}"#);
    producer
        .send(
            FutureRecord::<(), str>::to("in")
                .partition(p)
                .payload(&value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Reads `source` to its end, settling every record as delivered: each record's value.
async fn read_to_end(source: &mut Box<dyn RecordSource>) -> Vec<Value> {
    let mut values = Vec::new();
    while let Some(batch) = source.read_batch(100).await.unwrap() {
        for item in batch {
            match item {
                ReadItem::Record(r) => {
                    values.push(r.value);
                    r.receipt.settle(Fate::Delivered);
                }
                ReadItem::Rejected(r) => panic!("rejected: {}", r.reason),
            }
        }
    }
    values
}

/// The consumer threads of this process (named `kafka-consumer-N`, cut to 15 bytes).
fn consumer_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("kafka-consumer"))
        .count()
}

fn field(v: &Value, name: &str) -> u64 {
    match v {
        Value::Map(m) => match m.get(name) {
            Some(Value::Int(n)) => *n as u64,
            other => panic!("{name} of {v:?}: {other:?}"),
        },
        other => panic!("not a map: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn several_consumers_share_the_partitions_and_read_each_record_once_in_order() {
    let b = Broker::start();
    b.topic("in", PARTITIONS).await;
    let producer: FutureProducer = b.config().create().unwrap();
    for i in 0..N {
        send(&producer, i, (i % PARTITIONS as u64) as i32).await;
    }

    // Three consumers over five partitions: two take two, one takes one.
    let mut source = open(&b, 3);
    // (A thread names itself once it runs.)
    let started = std::time::Instant::now();
    while consumer_threads() < 3 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(consumer_threads(), 3, "one thread per consumer");
    let values = read_to_end(&mut source).await;
    source.close(Duration::from_secs(10)).await.unwrap();
    assert_eq!(values.len() as u64, N, "every record, once");
    let mut last: HashMap<u64, u64> = HashMap::new();
    for v in &values {
        let (i, p) = (field(v, "i"), field(v, "p"));
        if let Some(before) = last.insert(p, i) {
            assert!(i > before, "partition {p}: {i} read after {before}");
        }
    }
    assert_eq!(last.len(), PARTITIONS as usize, "{last:?}");

    // Each consumer committed its partitions' ends: the group's next run reads nothing.
    let mut again = open(&b, 2);
    let values = read_to_end(&mut again).await;
    again.close(Duration::from_secs(10)).await.unwrap();
    assert!(values.is_empty(), "{} records read again", values.len());

    // More consumers than partitions: those without any end at once; the others read
    // what came since.
    for i in N..N + 10 {
        send(&producer, i, 0).await;
    }
    let mut many = open(&b, 8);
    let values = read_to_end(&mut many).await;
    many.close(Duration::from_secs(10)).await.unwrap();
    let ids: Vec<u64> = values.iter().map(|v| field(v, "i")).collect();
    assert_eq!(ids, (N..N + 10).collect::<Vec<_>>());
}
