//! Kafka as an endpoint of the model runtime (librdkafka, through `rdkafka`).
//!
//! A program adds it to its registry with its client settings (the engine's
//! `kafka.properties`):
//!
//! ```no_run
//! let registry = endpoint_kafka::register(endpoints::Registry::default(), Default::default());
//! ```
//!
//! and a descriptor names it by the FastScore transport `Kafka` (`BootstrapServers`, `Topic`,
//! `Group`, `CommitOffset`, `Partition`, `MaxWaitTime`, and this runtime's `MaxInFlight`,
//! `Consumers` and `Properties`), or the short form `kafka:host:9092/topic.json`.
//!
//! - The source ([`source`]) consumes on a thread of its own that owns the librdkafka
//!   consumer (one per consumer, with `Consumers`). Each record carries a receipt from an [`Acks`](runtime_core::Acks) ledger; an
//!   offset is committed only once every record before it in its partition is delivered (its
//!   outputs durable) or rejected (a poison record never blocks its partition); a failed
//!   record stops commits in its partition, so the next consumer reads it again. A deployed
//!   model's stream joins the consumer group (partitions shared among engines, a revoked
//!   partition's records in flight drained and committed before it goes); a batch job reads
//!   every partition (or `Partition`) from the group's committed offsets, or `SkipToRecord`,
//!   to the end the topic had when the job started.
//! - The sink ([`sink`]) is an idempotent producer (`acks=all`); `flush` returns once the
//!   broker acknowledged every record written.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use endpoints::descriptor::{KafkaTransport, Transport, TransportType};
use endpoints::{OpenRequest, Opener, Registry};
use rdkafka::config::ClientConfig;
use runtime_core::{Error, RecordSink, RecordSource, Result};

mod meta;
pub mod sink;
pub mod source;

/// Records a source has read and not yet settled, when `MaxInFlight` is absent.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;
/// How long a revoked partition's records in flight may take to settle before it is given
/// up (their offsets then stay uncommitted: the next owner reads them again).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a sink waiting for the brokers' acknowledgements says so in the log.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of every Kafka endpoint an engine opens.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// librdkafka settings for every client (`kafka.properties` of `application.json`): a
    /// descriptor's `Properties` take precedence.
    pub properties: BTreeMap<String, String>,
    /// How long a revoked partition's records in flight may take to settle.
    pub drain_timeout: Duration,
    /// How often a sink's flush, waiting for the brokers' acknowledgements, logs that it
    /// still waits (it waits until librdkafka delivers or gives the records up).
    pub flush_timeout: Duration,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            properties: BTreeMap::new(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
        }
    }
}

/// Adds the Kafka transport to `registry`.
pub fn register(registry: Registry, settings: KafkaSettings) -> Registry {
    registry.register(TransportType::Kafka, Arc::new(Kafka { settings }))
}

/// Opens `Kafka` descriptors.
pub struct Kafka {
    settings: KafkaSettings,
}

impl Kafka {
    pub fn new(settings: KafkaSettings) -> Kafka {
        Kafka { settings }
    }
}

impl Opener for Kafka {
    fn open_source(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSource>> {
        let t = transport(req)?;
        Ok(Box::new(source::KafkaSource::open(t, &self.settings, req)?))
    }

    fn open_sink(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSink>> {
        let t = transport(req)?;
        Ok(Box::new(sink::KafkaSink::open(t, &self.settings, req)?))
    }
}

fn transport<'a>(req: &OpenRequest<'a>) -> Result<&'a KafkaTransport> {
    match &req.descriptor.transport {
        Transport::Kafka(k) => Ok(k),
        other => Err(Error::descriptor(
            "Transport.Type",
            format!("is {}, not Kafka", other.transport_type()),
        )),
    }
}

/// The settings the engine owns: neither `kafka.properties` nor a descriptor's `Properties`
/// (refused when it is read) may change them, since the guarantees rest on them.
use endpoints::descriptor::KAFKA_OWNED_PROPERTIES as OWNED;

/// The client configuration of an endpoint: the engine's settings, the descriptor's
/// `Properties` over them, then what the endpoint needs.
fn client_config(
    t: &KafkaTransport,
    settings: &KafkaSettings,
    owned: &[(&str, String)],
) -> Result<ClientConfig> {
    let mut cfg = ClientConfig::new();
    // Defaults a runtime wants, which settings may change.
    cfg.set("client.id", "model-runtime");
    cfg.set("socket.keepalive.enable", "true");
    cfg.set("reconnect.backoff.max.ms", "5000");
    for (k, v) in settings.properties.iter().chain(&t.properties) {
        if OWNED.contains(&k.as_str()) {
            return Err(Error::descriptor(
                format!("kafka.properties.{k}"),
                "is set by the engine (a stream descriptor's own fields choose it) and cannot be given",
            ));
        }
        cfg.set(k, v);
    }
    cfg.set("bootstrap.servers", t.bootstrap_servers.join(","));
    for (k, v) in owned {
        cfg.set(*k, v);
    }
    Ok(cfg)
}

/// A short name for logs and errors: the topic and the first broker, never a setting.
fn name(t: &KafkaTransport) -> String {
    let broker = t.bootstrap_servers.first().map_or("", String::as_str);
    format!("kafka:{broker}/{}", t.topic)
}

/// Whether a client error means the brokers cannot be reached for now (retried), rather than
/// something that will not change (a missing topic, a refused setting).
fn is_transient(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::BrokerNotAvailable
            | C::NetworkException
            | C::RequestTimedOut
            | C::OperationTimedOut
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NotCoordinator
            | C::CoordinatorNotAvailable
            | C::CoordinatorLoadInProgress
            | C::Resolve
            | C::MessageTimedOut
            | C::QueueFull
    )
}

/// A client error as the runtime's: transient ones are [`Error::Unavailable`].
fn kafka_error(endpoint: &str, e: rdkafka::error::KafkaError) -> Error {
    match e.rdkafka_error_code() {
        Some(code) if is_transient(code) => Error::unavailable(
            endpoint,
            format!("the Kafka brokers cannot be reached ({e})"),
            Some(Box::new(e)),
        ),
        _ => Error::endpoint_source(endpoint, e),
    }
}
