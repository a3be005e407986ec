//! Redis Streams as an endpoint of the model runtime, written outside the engine: it uses only
//! the public API (`runtime-core`'s traits and acknowledgement ledger, `codecs`, the
//! `endpoints` registry), and a program adds it to its registry with one line:
//!
//! ```no_run
//! let registry = redis_streams::register(endpoints::Registry::default());
//! ```
//!
//! A descriptor names it by its transport type, [`TRANSPORT`]:
//!
//! ```json
//! {"Transport": {"Type": "x-redis-streams", "Url": "redis://127.0.0.1:6379",
//!                "Stream": "scores", "Group": "model-runtime", "Consumer": "engine-1"},
//!  "Encoding": "json"}
//! ```
//!
//! - The source reads through a consumer group (`Group`, `Consumer`; created with the stream
//!   if missing). Each entry's `Field` (`data`) is one message, decoded on its own. Each
//!   record carries a receipt from an [`Acks`] ledger; fates come back in read order and the
//!   source sends `XACK` for the entries delivered (or rejected: reading them again would
//!   reject them again). A failed entry stays pending: the next source opened with the same
//!   group and consumer reads the pending entries first, then new ones. The source never
//!   ends; it waits for new entries up to the descriptor's `NagleTime`.
//! - The sink sends `XADD` (the record in `Field`), queued as records are written; `flush`
//!   sends the queue and returns once the server answered each.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use codecs::CodecConfig;
use endpoints::descriptor::{Batching, Transport};
use endpoints::{OpenRequest, Opener, Registry};
use redis::aio::MultiplexedConnection;
use runtime_core::{
    Acks, Error, Fate, OutRecord, Position, ReadItem, RecordSink, RecordSource, Rejection,
    RejectionKind, Result, SinkReport,
};
use serde_json::Value as Json;

/// The transport type descriptors give.
pub const TRANSPORT: &str = "x-redis-streams";
/// The consumer group when `Group` is absent.
pub const DEFAULT_GROUP: &str = "model-runtime";
/// The consumer when `Consumer` is absent.
pub const DEFAULT_CONSUMER: &str = "engine";
/// The entry field holding a record when `Field` is absent.
pub const DEFAULT_FIELD: &str = "data";
/// Records a source has in flight when `MaxInFlight` is absent.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;
/// How long a source waits for new entries when the descriptor's batching says nothing.
const DEFAULT_LINGER: Duration = Duration::from_millis(500);
/// Bytes a sink queues before it sends them without waiting for a flush.
const SINK_QUEUE_BYTES: usize = 8 << 20;

/// Adds the Redis Streams transport to `registry`.
pub fn register(registry: Registry) -> Registry {
    registry.register_custom(TRANSPORT, Arc::new(RedisStreams))
}

/// Opens `x-redis-streams` descriptors.
pub struct RedisStreams;

/// The transport's fields, defaults filled in.
#[derive(Clone, Debug)]
struct Target {
    url: String,
    stream: String,
    group: String,
    consumer: String,
    field: String,
    max_in_flight: usize,
}

impl Target {
    fn of(req: &OpenRequest<'_>) -> Result<Target> {
        let Transport::Custom(t) = &req.descriptor.transport else {
            return Err(Error::descriptor(
                "Transport.Type",
                format!("is not {TRANSPORT}"),
            ));
        };
        let known = ["Url", "Stream", "Group", "Consumer", "Field", "MaxInFlight"];
        if let Some(k) = t
            .fields
            .keys()
            .find(|k| !known.iter().any(|n| n.eq_ignore_ascii_case(k)))
        {
            return Err(Error::descriptor(
                format!("Transport.{k}"),
                format!(
                    "unknown field of a {TRANSPORT} transport (known: {})",
                    known.join(", ")
                ),
            ));
        }
        let get = |name: &str| {
            t.fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let text = |name: &str, default: Option<&str>| -> Result<String> {
            match (get(name), default) {
                (Some(Json::String(s)), _) if !s.trim().is_empty() => Ok(s.clone()),
                (None | Some(Json::Null), Some(d)) => Ok(d.to_owned()),
                (None | Some(Json::Null), None) => Err(Error::descriptor(
                    format!("Transport.{name}"),
                    "is required",
                )),
                (Some(_), _) => Err(Error::descriptor(
                    format!("Transport.{name}"),
                    "must be a non-empty string",
                )),
            }
        };
        let max_in_flight = match get("MaxInFlight") {
            None | Some(Json::Null) => DEFAULT_MAX_IN_FLIGHT,
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    Error::descriptor("Transport.MaxInFlight", "must be a positive number")
                })?,
        };
        Ok(Target {
            url: text("Url", None)?,
            stream: text("Stream", None)?,
            group: text("Group", Some(DEFAULT_GROUP))?,
            consumer: text("Consumer", Some(DEFAULT_CONSUMER))?,
            field: text("Field", Some(DEFAULT_FIELD))?,
            max_in_flight,
        })
    }

    fn name(&self) -> String {
        format!("{TRANSPORT}:{}", self.stream)
    }

    fn client(&self) -> Result<redis::Client> {
        redis::Client::open(self.url.as_str()).map_err(|e| Error::endpoint_source(self.name(), e))
    }
}

impl Opener for RedisStreams {
    fn open_source(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSource>> {
        let target = Target::of(req)?;
        let linger = match req.descriptor.batching {
            Batching::Normal(b) => b.max_wait.unwrap_or(Duration::from_millis(1)),
            Batching::Explicit | Batching::Off => DEFAULT_LINGER,
        };
        Ok(Box::new(RedisSource {
            name: target.name(),
            client: target.client()?,
            acks: Acks::new(target.max_in_flight),
            target,
            codec: req.codec.clone(),
            linger,
            conn: None,
            history: Some("0".to_owned()),
            read: 0,
        }))
    }

    fn open_sink(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSink>> {
        let target = Target::of(req)?;
        Ok(Box::new(RedisSink {
            name: target.name(),
            client: target.client()?,
            target,
            codec: req.codec.clone(),
            conn: None,
            queue: redis::pipe(),
            queued: 0,
            queued_bytes: 0,
            records: 0,
            bytes: 0,
        }))
    }
}

fn failed(name: &str, e: redis::RedisError) -> Error {
    Error::endpoint_source(name, e)
}

async fn connect(
    conn: &mut Option<MultiplexedConnection>,
    client: &redis::Client,
    name: &str,
) -> Result<MultiplexedConnection> {
    if let Some(c) = conn {
        return Ok(c.clone());
    }
    let c = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| failed(name, e))?;
    *conn = Some(c.clone());
    Ok(c)
}

/// One entry of a stream: its id and the value of the record's field, if it has one.
struct Entry {
    id: String,
    data: Option<Vec<u8>>,
}

/// Reads an `XREADGROUP` answer (RESP2: `[[key, [[id, [field, value, ...]], ...]]]`, or nil).
fn entries(reply: redis::Value, field: &str) -> Vec<Entry> {
    use redis::Value as V;
    fn text(v: &V) -> Option<String> {
        match v {
            V::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            V::SimpleString(s) => Some(s.clone()),
            _ => None,
        }
    }
    let mut out = Vec::new();
    let V::Array(streams) = reply else {
        return out;
    };
    for stream in streams {
        let V::Array(mut parts) = stream else {
            continue;
        };
        let Some(V::Array(items)) = parts.pop() else {
            continue;
        };
        for item in items {
            let V::Array(pair) = item else { continue };
            let mut pair = pair.into_iter();
            let Some(id) = pair.next().as_ref().and_then(text) else {
                continue;
            };
            // A pending entry deleted since it was read comes with no fields.
            let data = match pair.next() {
                Some(V::Array(kv)) => kv
                    .chunks(2)
                    .find(|c| c.first().and_then(text).as_deref() == Some(field))
                    .and_then(|c| match c.get(1) {
                        Some(V::BulkString(b)) => Some(b.clone()),
                        Some(V::SimpleString(s)) => Some(s.clone().into_bytes()),
                        _ => None,
                    }),
                _ => None,
            };
            out.push(Entry { id, data });
        }
    }
    out
}

/// A consumer in a group reading a stream.
pub struct RedisSource {
    name: String,
    client: redis::Client,
    target: Target,
    codec: CodecConfig,
    linger: Duration,
    conn: Option<MultiplexedConnection>,
    acks: Acks<String>,
    /// While reading this consumer's pending entries (read before, never acknowledged): the
    /// id after which the next ones are. `None` once they are all read again.
    history: Option<String>,
    /// Items read so far, for positions.
    read: u64,
}

impl RedisSource {
    /// The connection, with the group made sure of on first use.
    async fn connection(&mut self) -> Result<MultiplexedConnection> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let mut c = connect(&mut self.conn, &self.client, &self.name).await?;
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.target.stream)
            .arg(&self.target.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c)
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => {
                self.conn = None;
                return Err(failed(&self.name, e));
            }
        }
        Ok(c)
    }

    /// Acknowledges the entries delivered or rejected; failed ones stay pending.
    async fn acknowledge(&mut self, fates: Vec<(String, Fate)>) -> Result<()> {
        let ids: Vec<String> = fates
            .into_iter()
            .filter(|(_, fate)| *fate != Fate::Failed)
            .map(|(id, _)| id)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.connection().await?;
        redis::cmd("XACK")
            .arg(&self.target.stream)
            .arg(&self.target.group)
            .arg(&ids)
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| failed(&self.name, e))
    }

    fn item(&mut self, entry: Entry) -> ReadItem {
        self.read += 1;
        let position = Position {
            origin: Some(format!("{} {}", self.target.stream, entry.id)),
            ..Position::record(self.read)
        };
        let mut item = match entry.data {
            None => ReadItem::Rejected(Rejection::new(
                RejectionKind::Encoding,
                position,
                format!("the entry has no field '{}'", self.target.field),
            )),
            Some(bytes) => codecs::read_message(&self.codec, &bytes, position),
        };
        *item.receipt_mut() = self.acks.receipt(entry.id);
        item
    }
}

#[async_trait]
impl RecordSource for RedisSource {
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>> {
        let mut c = self.connection().await?;
        let settled = self.acks.settled();
        self.acknowledge(settled).await?;
        if !self.acks.has_room() {
            // Everything in flight waits on the pipeline: sleep until some of it settles.
            let mut settled = Vec::new();
            self.acks.wait_for_room(&mut settled).await;
            self.acknowledge(settled).await?;
        }
        let room = max
            .min(self.target.max_in_flight - self.acks.in_flight())
            .max(1);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.target.group)
            .arg(&self.target.consumer)
            .arg("COUNT")
            .arg(room);
        let start = match &self.history {
            Some(after) => after.clone(),
            None => {
                let block = u64::try_from(self.linger.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                cmd.arg("BLOCK").arg(block);
                ">".to_owned()
            }
        };
        cmd.arg("STREAMS").arg(&self.target.stream).arg(&start);
        let reply: redis::Value = cmd
            .query_async(&mut c)
            .await
            .map_err(|e| failed(&self.name, e))?;
        let entries = entries(reply, &self.target.field);
        if self.history.is_some() {
            self.history = entries.last().map(|e| e.id.clone());
        }
        let items = entries.into_iter().map(|e| self.item(e)).collect();
        Ok(Some(items))
    }

    async fn close(&mut self, grace: Duration) -> Result<()> {
        let rest = self.acks.drain(grace).await;
        let acked = self.acknowledge(rest).await;
        self.conn = None;
        acked
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Adds each record to a stream.
pub struct RedisSink {
    name: String,
    client: redis::Client,
    target: Target,
    codec: CodecConfig,
    conn: Option<MultiplexedConnection>,
    /// `XADD`s not sent yet.
    queue: redis::Pipeline,
    queued: u64,
    queued_bytes: usize,
    records: u64,
    bytes: u64,
}

impl RedisSink {
    /// Sends the queue; returns once the server answered every `XADD` in it.
    async fn send(&mut self) -> Result<()> {
        if self.queued == 0 {
            return Ok(());
        }
        let mut c = connect(&mut self.conn, &self.client, &self.name).await?;
        let queue = std::mem::replace(&mut self.queue, redis::pipe());
        queue
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| failed(&self.name, e))?;
        self.records += self.queued;
        self.bytes += self.queued_bytes as u64;
        self.queued = 0;
        self.queued_bytes = 0;
        Ok(())
    }
}

#[async_trait]
impl RecordSink for RedisSink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
        let mut rejected = Vec::new();
        for r in batch {
            match codecs::encode_message(&self.codec, &r.value) {
                Ok(bytes) => {
                    self.queued_bytes += bytes.len();
                    self.queued += 1;
                    self.queue
                        .cmd("XADD")
                        .arg(&self.target.stream)
                        .arg("*")
                        .arg(&self.target.field)
                        .arg(bytes)
                        .ignore();
                }
                Err(e) => rejected.push(Rejection::new(
                    RejectionKind::Encoding,
                    r.position,
                    e.to_string(),
                )),
            }
        }
        if self.queued_bytes >= SINK_QUEUE_BYTES {
            self.send().await?;
        }
        Ok(rejected)
    }

    async fn flush(&mut self) -> Result<()> {
        self.send().await
    }

    async fn finish(&mut self) -> Result<SinkReport> {
        self.send().await?;
        self.conn = None;
        Ok(SinkReport {
            records: self.records,
            bytes: self.bytes,
            // Not the URL: it may hold a password, and the location goes to the job's log.
            location: Some(self.name.clone()),
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
