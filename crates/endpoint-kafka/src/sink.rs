//! The Kafka sink: an idempotent producer (`acks=all`) whose `flush` returns once the broker
//! acknowledged every record written.
//!
//! Records are handed to librdkafka as they are written (it batches them, `linger.ms`); a
//! full local queue makes the write wait, so a slow broker slows the pipeline. `flush` waits
//! for every delivery report: one the broker refused fails the flush (the records' sources
//! are then not acknowledged), as does a broker that does not answer within the flush
//! timeout.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use codecs::CodecConfig;
use endpoints::descriptor::KafkaTransport;
use endpoints::OpenRequest;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use runtime_core::{
    Error, OutRecord, RecordSink, Rejection, RejectionKind, Result, SinkReport, Value,
};

use crate::{client_config, kafka_error, name, KafkaSettings};

/// How long a flush sleeps between looks at the delivery reports.
const FLUSH_POLL: Duration = Duration::from_micros(200);
/// How long a write waits before trying again when the producer's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// Delivery reports, counted.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self
                .first_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Headers for a message, `None` when there are none.
fn headers_of<'a>(
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Option<OwnedHeaders> {
    let mut out: Option<OwnedHeaders> = None;
    for (key, value) in headers {
        let h = out.take().unwrap_or_default();
        out = Some(h.insert(Header { key, value }));
    }
    out
}

/// Headers given as owned names and values.
fn owned_headers(headers: &[(String, Option<Vec<u8>>)]) -> Option<OwnedHeaders> {
    headers_of(headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())))
}

/// Writes each record as one message of a topic.
pub struct KafkaSink {
    name: String,
    topic: String,
    partition: Option<i32>,
    /// Polled by the sink itself (its writes serve the delivery reports, its flush waits for
    /// them): a producer with a polling thread of its own would take the reports a flush
    /// waits for, and the flush would sleep its whole poll interval each time.
    producer: Arc<BaseProducer<Deliveries>>,
    codec: CodecConfig,
    /// Records are `{"key", "value", "headers"}` (`Metadata`).
    metadata: bool,
    /// Records are error records, written as the original messages (an error output).
    errors: bool,
    flush_timeout: Duration,
    /// Delivery failures already reported by a flush.
    failures_seen: u64,
    records: u64,
    bytes: u64,
}

impl KafkaSink {
    pub(crate) fn open(
        t: &KafkaTransport,
        settings: &KafkaSettings,
        req: &OpenRequest<'_>,
    ) -> Result<KafkaSink> {
        let name = name(t);
        let owned = [
            ("enable.idempotence", "true".to_string()),
            ("acks", "all".to_string()),
        ];
        let mut cfg = client_config(t, settings, &owned)?;
        // The sink batches itself (a write, then a flush once nothing more waits): records
        // held back for librdkafka's linger only delay each flush by that much.
        if !cfg.config_map().contains_key("linger.ms") {
            cfg.set("linger.ms", "0");
        }
        let producer = Arc::new(
            cfg.create_with_context(Deliveries::default())
                .map_err(|e| Error::descriptor("Transport.Properties", e.to_string()))?,
        );
        Ok(KafkaSink {
            name,
            topic: t.topic.clone(),
            partition: t.partition.map(|p| p as i32),
            producer,
            codec: req.codec.clone(),
            metadata: t.metadata,
            errors: req.errors,
            flush_timeout: settings.flush_timeout,
            failures_seen: 0,
            records: 0,
            bytes: 0,
        })
    }

    /// Hands one message to the producer, waiting while its queue is full.
    async fn send(
        &self,
        payload: &[u8],
        key: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> std::result::Result<(), KafkaError> {
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        if let Some(p) = self.partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Delivery reports make room; the record comes back to be sent again.
                    record = back;
                    self.producer.poll(Duration::ZERO);
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Waits for every delivery report; fails if the broker refused any record since the
    /// last flush. While the brokers cannot be reached it keeps waiting (librdkafka keeps
    /// the records and retries them until `message.timeout.ms`, 5 minutes by default, then
    /// reports them failed), saying so in the log every flush timeout.
    async fn delivered(&mut self) -> Result<()> {
        let producer = self.producer.clone();
        let timeout = self.flush_timeout;
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            // Not `Producer::flush`: rdkafka's polls for 100 ms at a time whatever arrives,
            // so each flush would take 100 ms. The queue counts the records not yet
            // acknowledged and their reports not yet served.
            let mut since = std::time::Instant::now();
            while producer.in_flight_count() > 0 {
                // rdkafka's poll spins until its deadline when less than a millisecond is
                // left: serve what is there, then sleep.
                producer.poll(Duration::ZERO);
                if producer.in_flight_count() > 0 {
                    std::thread::sleep(FLUSH_POLL);
                }
                if since.elapsed() >= timeout {
                    tracing::warn!(
                        endpoint = %name,
                        records = producer.in_flight_count(),
                        seconds = since.elapsed().as_secs(),
                        "records not yet acknowledged by the brokers; still waiting"
                    );
                    since = std::time::Instant::now();
                }
            }
        })
        .await
        .map_err(|e| Error::endpoint(&self.name, format!("flush task: {e}")))?;
        let failed = self.producer.context().failed.load(Ordering::Relaxed);
        if failed > self.failures_seen {
            let n = failed - self.failures_seen;
            self.failures_seen = failed;
            let first = self
                .producer
                .context()
                .first_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .unwrap_or_default();
            return Err(Error::endpoint(
                &self.name,
                format!("the brokers refused {n} records ({first})"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl RecordSink for KafkaSink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
        let mut rejected = Vec::new();
        for r in batch {
            let OutRecord {
                value,
                position,
                meta,
            } = r;
            let encode =
                |v: &Value| codecs::encode_message(&self.codec, v).map_err(|e| e.to_string());
            let message = if self.errors {
                // The original message, its reason in headers.
                crate::meta::error_message(value, meta.as_deref(), encode)
                    .map(|g| (g.value, g.key.map(Cow::Owned), owned_headers(&g.headers)))
            } else if self.metadata {
                // The key and headers the model gave.
                crate::meta::given(value).and_then(|g| {
                    let bytes = encode(&g.value)?;
                    Ok((bytes, g.key.map(Cow::Owned), owned_headers(&g.headers)))
                })
            } else {
                // Those of the message the record was made of, as they are.
                let m = meta.as_deref();
                encode(&value).map(|bytes| {
                    let key = m.and_then(|m| m.key.as_deref()).map(Cow::Borrowed);
                    let headers = m.and_then(|m| {
                        headers_of(m.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())))
                    });
                    (bytes, key, headers)
                })
            };
            let (bytes, key, headers) = match message {
                Ok(m) => m,
                Err(reason) => {
                    rejected.push(Rejection::new(RejectionKind::Encoding, position, reason));
                    continue;
                }
            };
            match self.send(&bytes, key.as_deref(), headers).await {
                Ok(()) => {
                    self.records += 1;
                    self.bytes += bytes.len() as u64;
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {
                    rejected.push(Rejection::new(
                        RejectionKind::Size,
                        position,
                        format!(
                            "{} bytes is more than the producer's message.max.bytes",
                            bytes.len()
                        ),
                    ));
                }
                Err(e) => return Err(kafka_error(&self.name, e)),
            }
        }
        // Delivery reports of earlier writes, taken as they come.
        self.producer.poll(Duration::ZERO);
        Ok(rejected)
    }

    async fn flush(&mut self) -> Result<()> {
        self.delivered().await
    }

    async fn finish(&mut self) -> Result<SinkReport> {
        self.delivered().await?;
        Ok(SinkReport {
            records: self.records,
            bytes: self.bytes,
            location: Some(self.name.clone()),
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
