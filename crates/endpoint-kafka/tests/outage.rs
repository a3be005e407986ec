//! A following source whose brokers cannot be reached says so on every read, not only on
//! the first after the consumer noticed (librdkafka reports a failure once), and reads on
//! once the brokers answer again.

mod support;

use std::time::{Duration, Instant};

use endpoints::{Registry, StreamDescriptor};
use runtime_core::{RecordSource, Result};
use support::Broker;

fn open(servers: &str, topic: &str) -> Box<dyn RecordSource> {
    let d = StreamDescriptor::parse(&format!(
        r#"{{"Transport": {{"Type": "Kafka", "BootstrapServers": ["{servers}"], "Topic": "{topic}",
             "Group": "outage-{topic}", "Properties": {{"session.timeout.ms": 6000}}}},
           "Encoding": "json"}}"#
    ))
    .unwrap();
    endpoint_kafka::register(Registry::default(), Default::default())
        .following()
        .open_source(&d, &d.codec_config())
        .unwrap()
}

/// Reads until `want` holds of a read's outcome, at most `within`.
async fn read_until(
    source: &mut Box<dyn RecordSource>,
    within: Duration,
    want: impl Fn(&Result<Option<Vec<runtime_core::ReadItem>>>) -> bool,
) -> Result<Option<Vec<runtime_core::ReadItem>>> {
    let deadline = Instant::now() + within;
    loop {
        let read = source.read_batch(100).await;
        if want(&read) {
            return read;
        }
        assert!(
            Instant::now() < deadline,
            "reads stay {:?}",
            read.map(|r| r.map(|v| v.len()))
        );
    }
}

/// The reads of the next `d`: each must be a temporary error.
async fn all_down_for(source: &mut Box<dyn RecordSource>, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        match source.read_batch(100).await {
            Err(e) => assert!(e.is_retriable(), "{e}"),
            Ok(r) => panic!(
                "a read worked with the brokers away: {:?}",
                r.map(|v| v.len())
            ),
        }
        // As the engine does between failed reads.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn brokers_nobody_listens_on_fail_every_read() {
    let mut source = open("127.0.0.1:1", "in");
    let first = read_until(&mut source, Duration::from_secs(30), |r| r.is_err()).await;
    let e = first.err().unwrap();
    assert!(e.is_retriable(), "{e}");
    assert!(
        e.to_string()
            .contains("the Kafka brokers cannot be reached"),
        "{e}"
    );
    all_down_for(&mut source, Duration::from_secs(3)).await;
    source.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_back_is_read_again() {
    let mut broker = Broker::start();
    broker.topic("in", 1).await;
    let mut source = open(&broker.address, "in");
    // Reading nothing (the topic is empty).
    let _ = read_until(&mut source, Duration::from_secs(30), |r| {
        matches!(r, Ok(Some(_)))
    })
    .await;
    broker.kill();
    let _ = read_until(&mut source, Duration::from_secs(30), |r| r.is_err()).await;
    all_down_for(&mut source, Duration::from_secs(3)).await;
    // Back (in memory: without its topic, which the source says, then with it).
    broker.restart();
    let e = read_until(&mut source, Duration::from_secs(30), |r| {
        r.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("does not exist"))
    })
    .await
    .err()
    .unwrap();
    assert!(e.is_retriable(), "{e}");
    broker.topic("in", 1).await;
    let _ = read_until(&mut source, Duration::from_secs(30), |r| {
        matches!(r, Ok(Some(_)))
    })
    .await;
    source.close(Duration::from_secs(5)).await.unwrap();
}
