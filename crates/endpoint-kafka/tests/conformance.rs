//! The Kafka source and sink pass the conformance kit against a real Kafka-compatible broker
//! (tansu, started here; see `support`).

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use endpoint_kit::{
    check_sink, check_source, Check, OpenOptions, SinkFixture, SinkTraits, SourceFixture,
    SourceTraits,
};
use endpoints::{Registry, StreamDescriptor};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use runtime_core::{Error, RecordSink, RecordSource, Result, Value};
use support::Broker;

/// Big enough for the kit's 64 MiB record: Kafka's own limits are about 1 MB.
const BIG: &str = "100000000";
/// librdkafka wants its receive limit above its fetch limit.
const BIGGER: &str = "100001000";

/// Topics on one broker, each of one partition, opened as a batch job opens them (read to
/// the end, resumed from the group's committed offsets).
struct Topics {
    broker: Broker,
    registry: Registry,
    next: AtomicU64,
}

impl Topics {
    fn new() -> Topics {
        Topics {
            broker: Broker::start(),
            registry: endpoint_kafka::register(Registry::default(), Default::default()),
            next: AtomicU64::new(0),
        }
    }

    async fn fresh(&self) -> String {
        let topic = format!("kit-{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.broker.topic(&topic, 1).await;
        topic
    }

    fn descriptor(&self, topic: &str, extra: &str) -> StreamDescriptor {
        StreamDescriptor::parse(&format!(
            r#"{{"Transport": {{"Type": "Kafka", "BootstrapServers": ["{}"], "Topic": "{topic}",
                 "Group": "group-{topic}", "Properties": {{"message.max.bytes": {BIG},
                 "fetch.max.bytes": {BIG}, "receive.message.max.bytes": {BIGGER}}}{extra}}},
               "Encoding": "json"}}"#,
            self.broker.address
        ))
        .unwrap()
    }
}

fn fixture_error(e: impl std::fmt::Display) -> Error {
    Error::endpoint("fixture", e.to_string())
}

#[async_trait]
impl SourceFixture for Topics {
    type Stream = String;

    fn traits(&self) -> SourceTraits {
        SourceTraits {
            ends: true,
            resumes: true,
        }
    }

    async fn create(&self, messages: &[Vec<u8>]) -> Result<String> {
        let topic = self.fresh().await;
        let producer: FutureProducer = self
            .broker
            .config()
            .set("message.max.bytes", BIG)
            .create()
            .map_err(fixture_error)?;
        for m in messages {
            producer
                .send(
                    FutureRecord::<(), [u8]>::to(&topic).payload(m.as_slice()),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| fixture_error(e))?;
        }
        Ok(topic)
    }

    async fn open(&self, topic: &String, options: &OpenOptions) -> Result<Box<dyn RecordSource>> {
        let d = self.descriptor(topic, "");
        let mut codec = d.codec_config();
        codec.max_record_bytes = options.max_record_bytes;
        self.registry.open_source(&d, &codec)
    }
}

#[async_trait]
impl SinkFixture for Topics {
    type Destination = String;

    fn traits(&self) -> SinkTraits {
        SinkTraits {
            keeps: true,
            breaks: true,
        }
    }

    async fn create(&self) -> Result<String> {
        Ok(self.fresh().await)
    }

    async fn open(&self, topic: &String) -> Result<Box<dyn RecordSink>> {
        let d = self.descriptor(topic, "");
        self.registry.open_sink(&d, &d.codec_config())
    }

    async fn read_back(&self, topic: &String) -> Result<Vec<Value>> {
        let topic = topic.clone();
        let config = self.broker.config();
        let codec = {
            let mut c = self.descriptor(&topic, "").codec_config();
            c.max_record_bytes = usize::MAX;
            c
        };
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config
                .clone()
                .set("group.id", "read-back")
                .set("enable.partition.eof", "true")
                .set("fetch.max.bytes", BIG)
                .set("receive.message.max.bytes", BIGGER)
                .create()
                .map_err(fixture_error)?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, Offset::Beginning)
                .map_err(fixture_error)?;
            consumer.assign(&tpl).map_err(fixture_error)?;
            let mut values = Vec::new();
            // To the end of the partition (a broker's "latest offset" answer is not to be
            // trusted: tansu's is not right).
            loop {
                match consumer.poll(Duration::from_secs(30)) {
                    None => return Err(fixture_error("no end of partition within 30 s")),
                    Some(Err(KafkaError::PartitionEOF(_))) => break,
                    Some(Err(e)) => return Err(fixture_error(e)),
                    Some(Ok(m)) => {
                        let v = codecs::decode_message(&codec, m.payload().unwrap_or_default())
                            .map_err(fixture_error)?;
                        values.push(v);
                    }
                }
            }
            Ok(values)
        })
        .await
        .map_err(fixture_error)?
    }

    /// A partition the topic does not have: every record is refused.
    async fn open_broken(&self) -> Result<Box<dyn RecordSink>> {
        let topic = self.fresh().await;
        let d = self.descriptor(&topic, r#", "Partition": 7"#);
        self.registry.open_sink(&d, &d.codec_config())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kafka_source_conforms() -> std::result::Result<(), endpoint_kit::Error> {
    let topics = Topics::new();
    let report = check_source(&topics).await?;
    assert!(report.skipped.is_empty(), "every check applies: {report}");
    assert_eq!(report.passed.len(), Check::ALL.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kafka_sink_conforms() -> std::result::Result<(), endpoint_kit::Error> {
    let topics = Topics::new();
    let report = check_sink(&topics).await?;
    assert_eq!(
        report.skipped.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [Check::UndecodableBytes, Check::RestartResumes],
        "only the checks of reading are skipped"
    );
    Ok(())
}
