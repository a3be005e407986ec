//! Stream descriptors: where a stream's records come from or go to ([`Transport`]), how each
//! record's bytes are encoded (`Encoding`, the codecs' [`Encoding`] with its [`CsvOptions`]),
//! where one record ends (`Envelope`, the codecs' [`Framing`]), which Avro [`Schema`] applies
//! and how records are grouped ([`Batching`]).
//!
//! Two written forms are read, both into the same fully defaulted [`StreamDescriptor`]:
//! - the FastScore JSON form, with capitalised field names (matched case-insensitively);
//! - short forms such as `rest:`, `file:data/in.csv` or `kafka:host:9092/topic.json`.
//!
//! Invariants:
//! - A `StreamDescriptor` built by [`StreamDescriptor::parse`] (or any `from_*`) has every
//!   default filled in and has passed [`StreamDescriptor::validate`]; [`StreamDescriptor::to_json`]
//!   writes that defaulted form, and reading it back gives the same descriptor.
//! - In the JSON form an absent field takes its default and `null` switches the default off;
//!   the two are never confused.
//! - Unknown fields are refused, naming the field: a misspelt field never falls back to a
//!   default silently.
//! - `secret://name` values stay references until [`StreamDescriptor::resolve_secrets`] is
//!   called with a lookup the caller supplies; `to_json` and `Debug` always show the reference,
//!   never a resolved value.
//!
//! The forms, defaults and refusals are described for users in `docs/stream-descriptors.md`.
//!
//! Deliberately not here: opening anything (the [`Registry`](crate::Registry) does), reading
//! the environment or a secrets folder, and checking Avro schemas (the codecs crate does that).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use codecs::CodecConfig;
pub use codecs::{CsvOptions, Encoding, Framing, OcfCodec};
use runtime_core::{Error, Result};
use serde_json::{Map as JsonMap, Value as Json};

/// Records per batch when `Batching` says nothing else.
pub const DEFAULT_WATERMARK: u64 = 1000;
/// How long a batch waits for more records after its first one, when `Batching` says nothing
/// else (REST transports wait 0 ms).
pub const DEFAULT_NAGLE_TIME_MS: u64 = 500;
/// How long an output stays open after the end of its input (`LingerTime`).
pub const DEFAULT_LINGER_TIME_MS: u64 = 3000;
/// The Kafka consumer group when `Group` is absent.
pub const DEFAULT_KAFKA_GROUP: &str = "model-runtime";
/// The S3 region when neither the descriptor's `Region` nor the engine's environment
/// (`AWS_REGION`, a profile's `region`) names one.
pub const DEFAULT_S3_REGION: &str = "us-east-1";
/// What a secret written into a descriptor as it is (not a `secret://` reference) shows as
/// in [`StreamDescriptor::to_shown_json`] and `Debug`.
pub const HIDDEN: &str = crate::redact::REDACTED;
/// The separator of a `delimited` envelope when `Separator` is absent.
pub const DEFAULT_SEPARATOR: &str = "\n";
/// The address a UDP input binds when `Host` is absent.
pub const DEFAULT_UDP_HOST: &str = "0.0.0.0";
/// Values starting with this are references to a secret, resolved by
/// [`StreamDescriptor::resolve_secrets`].
pub const SECRET_PREFIX: &str = "secret://";

/// Whether a stream is read (an input slot) or written (an output slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Input,
    Output,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

/// A stream descriptor with every default filled in. Build one with [`StreamDescriptor::parse`],
/// [`StreamDescriptor::from_json`], [`StreamDescriptor::from_short_form`] or
/// [`StreamDescriptor::new`]; after changing fields by hand, call
/// [`StreamDescriptor::validate`] again.
///
/// Serde reads either form (a JSON object or a short-form string) and writes the defaulted
/// JSON form.
#[derive(Clone, PartialEq)]
pub struct StreamDescriptor {
    /// `Version`, echoed as given (FastScore wrote `"1.2"`); not interpreted.
    pub version: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    pub transport: Transport,
    pub encoding: Encoding,
    /// The CSV dialect (`Delimiter`, `QuoteCharacter`, `Header` of a csv `Encoding`); the
    /// default for other encodings.
    pub csv: CsvOptions,
    /// `Envelope`: `Lines`/`Delimited`, `Fixed`, `Ocf` (ocf-block) or `Csv` (delimited-csv).
    /// `None`: no envelope (each message is one record, or the encoding delimits itself, or
    /// the whole stream is one record).
    pub envelope: Option<Framing>,
    /// The block codec of an `ocf-block` envelope (`Envelope.Codec`): what written container
    /// files compress their blocks with (a file read names its own). `Null` for other
    /// envelopes.
    pub ocf_codec: OcfCodec,
    pub schema: Schema,
    pub batching: Batching,
    /// `LingerTime`: how long, in ms, an output stays open after the end of its input.
    pub linger_time_ms: u64,
    /// `Loop`: read the input again from the start each time it ends.
    pub looping: bool,
    /// `SkipTo`: byte offset at which reading starts (seekable inputs only).
    pub skip_to: Option<u64>,
    /// `SkipToRecord`: where in the records reading starts.
    pub skip_to_record: Option<SkipToRecord>,
    /// Field path -> secret name, for every field `resolve_secrets` filled in.
    secret_refs: BTreeMap<String, String>,
}

/// Where records come from or go to, with the transport's own fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Records posted to / read from the engine's REST API.
    Rest {
        mode: RestMode,
    },
    /// A document fetched from `Url` (input only).
    Http {
        url: String,
    },
    Kafka(KafkaTransport),
    S3(S3Transport),
    /// A local file; a relative `Path` is relative to the job's working directory.
    File {
        path: String,
    },
    Odbc(OdbcTransport),
    /// A file in HDFS: `NameNode` is `host:port`.
    Hdfs {
        name_node: String,
        path: String,
    },
    Tcp {
        host: String,
        port: u16,
    },
    /// UDP datagrams, one record each; an input binds `host`.
    Udp {
        host: String,
        port: u16,
    },
    /// The standard output of a command (input only).
    Exec {
        run: String,
    },
    /// Records written in the descriptor itself, one string each (input only).
    Inline {
        data: Vec<String>,
    },
    /// Records are dropped (output only).
    Discard,
    /// A transport an embedding program adds (`Registry::register_custom`): its `Type` starts
    /// with [`CUSTOM_PREFIX`], its other fields are kept as given for its opener to read.
    Custom(CustomTransport),
}

/// The URL schemes of data in stores that a short form names (`s3://bucket/key`,
/// `hdfs://namenode:8020/path`, `https://host/file.csv`...): what a job document's
/// `fileUrl` and `engine run`'s arguments may be besides a local path.
pub const STORE_SCHEMES: [&str; 6] = ["s3", "hdfs", "webhdfs", "swebhdfs", "http", "https"];

/// Whether `text` is a URL of one of the [`STORE_SCHEMES`] (any case).
pub fn names_a_store(text: &str) -> bool {
    split_scheme(text.trim_start()).is_some_and(|(scheme, rest)| {
        rest.starts_with("//") && STORE_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme))
    })
}

/// A descriptor's `Type` naming a transport added outside the engine starts with this
/// (`x-redis-streams`); any other unknown name is refused as a misspelling.
pub const CUSTOM_PREFIX: &str = "x-";

/// A transport added outside the engine: its name and its fields besides `Type`, unread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomTransport {
    /// `Type`, as written (matched ignoring case).
    pub name: String,
    pub fields: JsonMap<String, Json>,
}

/// `Mode` of a REST transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RestMode {
    /// One request body is one message.
    #[default]
    Simple,
    /// A chunked request body is a stream of records, framed by the envelope.
    Chunked,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTransport {
    /// `BootstrapServers`, `host:port` each; a comma-separated string is accepted too.
    pub bootstrap_servers: Vec<String>,
    pub topic: String,
    /// `Group`: the consumer group; `None` (`null`) reads without a group (no committed
    /// offsets, all partitions or `Partition` assigned directly).
    pub group: Option<String>,
    /// `CommitOffset`: commit the offsets of records read (needs a group).
    pub commit_offset: bool,
    /// `Partition`: read or write this partition only.
    pub partition: Option<u32>,
    /// `MaxWaitTime`: an input ends after this many ms without a message; `None` waits forever.
    pub max_wait_time_ms: Option<u64>,
    /// `Metadata` (an extension of this runtime): an input hands the model each message as a
    /// record `{"key", "value", "headers", "topic", "partition", "offset", "timestamp"}`
    /// instead of its value alone; an output takes records of that form (its `key`,
    /// `headers` and `value`). Off by default.
    pub metadata: bool,
    /// `MaxInFlight` (an extension of this runtime): the records an input has read and not
    /// yet settled, at most; `None` leaves it to the endpoint. It bounds the duplicates a
    /// crash can cause.
    pub max_in_flight: Option<usize>,
    /// `Consumers` (an extension of this runtime): how many Kafka consumers an input reads
    /// with, each on a thread and a connection of its own, splitting the topic's partitions
    /// (through the group, or among themselves without one); `None` is one. Order is kept per
    /// partition, as each partition is read by one consumer at a time.
    pub consumers: Option<usize>,
    /// `Properties` (an extension of this runtime): client settings passed to the Kafka
    /// client as they are (`security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`...), over the engine's `kafka.properties`. Values may be `secret://`
    /// references.
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct S3Transport {
    /// `Region`; `None` (absent or `null`): the engine's (`AWS_REGION`, `AWS_DEFAULT_REGION`,
    /// its profile's `region`), else [`DEFAULT_S3_REGION`].
    pub region: Option<String>,
    pub bucket: String,
    pub object_key: String,
    /// `AccessKeyID` and `SecretAccessKey` come together; both `None` uses the engine's own
    /// credentials.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `EndpointUrl` (an extension of this runtime): an S3-compatible server such as MinIO.
    /// An `http://` URL allows plain HTTP to it.
    pub endpoint_url: Option<String>,
    /// `PathStyle` (an extension of this runtime, default true): requests name the bucket in
    /// the path (`https://server/bucket/key`), as S3-compatible servers expect; false names
    /// it in the host (`https://bucket.server/key`, virtual-hosted style).
    pub path_style: bool,
}

impl fmt::Debug for S3Transport {
    /// Every field but the secret key, which shows as [`HIDDEN`] when set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Transport")
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("object_key", &self.object_key)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| HIDDEN),
            )
            .field("endpoint_url", &self.endpoint_url)
            .field("path_style", &self.path_style)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OdbcTransport {
    pub connection_string: String,
    /// `SelectQuery`: the rows read by an input, one record each.
    pub select_query: Option<String>,
    /// `InsertIntoTable`: the table an output inserts into.
    pub insert_into_table: Option<String>,
    /// `OutputFields`: the record fields written as columns, in order; `None`: every field.
    pub output_fields: Option<Vec<String>>,
}

/// The kinds of transport, for names and listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportType {
    Rest,
    Http,
    Kafka,
    S3,
    File,
    Odbc,
    Hdfs,
    Tcp,
    Udp,
    Exec,
    Inline,
    Discard,
    /// Any transport added outside the engine ([`Transport::Custom`]); not in [`Self::ALL`].
    Custom,
}

impl TransportType {
    pub const ALL: [TransportType; 12] = [
        TransportType::Rest,
        TransportType::Http,
        TransportType::Kafka,
        TransportType::S3,
        TransportType::File,
        TransportType::Odbc,
        TransportType::Hdfs,
        TransportType::Tcp,
        TransportType::Udp,
        TransportType::Exec,
        TransportType::Inline,
        TransportType::Discard,
    ];

    /// The name written in descriptors (read case-insensitively).
    pub fn name(self) -> &'static str {
        match self {
            TransportType::Rest => "REST",
            TransportType::Http => "HTTP",
            TransportType::Kafka => "Kafka",
            TransportType::S3 => "S3",
            TransportType::File => "file",
            TransportType::Odbc => "ODBC",
            TransportType::Hdfs => "HDFS",
            TransportType::Tcp => "TCP",
            TransportType::Udp => "UDP",
            TransportType::Exec => "exec",
            TransportType::Inline => "inline",
            TransportType::Discard => "discard",
            TransportType::Custom => "custom",
        }
    }

    /// Looks a transport up by name, ignoring case.
    pub fn from_name(name: &str) -> Option<TransportType> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
    }

    fn known_list() -> String {
        Self::ALL.map(TransportType::name).join(", ")
    }
}

impl fmt::Display for TransportType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The encoding's name as messages write it (`null (raw)` for raw bytes).
fn label(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Raw => "null (raw)",
        other => other.name(),
    }
}

/// Whether records of this encoding are binary, so may hold any separator.
fn is_binary(encoding: Encoding) -> bool {
    matches!(encoding, Encoding::MsgPack | Encoding::AvroBinary)
}

/// The Avro schema of a stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Schema {
    /// `Schema` absent: the schema of the model's slot applies.
    Inherit,
    /// `"Schema": null`: this stream has no schema.
    Off,
    /// `{"$ref": "name"}`, or a string that is not an Avro primitive type name: a schema
    /// known by name (a model asset such as `input_schema.avsc`, or a stored schema).
    Named(String),
    /// An Avro schema given in place (a primitive type name, an object or a union array);
    /// checked by the codecs crate, not here.
    Inline(Json),
}

const AVRO_PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// How records are grouped into batches on their way to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batching {
    /// A batch closes at `Watermark` records (`size`), or `NagleTime` after its first
    /// record (`max_wait`; 0: it takes only what is already there): the engine's one
    /// batching bound, as jobs and deployed models use it.
    Normal(runtime_core::Batching),
    /// Batches are delimited by the stream's own control records.
    Explicit,
    /// `null`: every record is its own batch.
    Off,
}

impl Batching {
    /// The default batching of a transport: 1000 records / 500 ms, and no delay for REST.
    pub fn default_for(transport: &Transport) -> Batching {
        Batching::Normal(normal(DEFAULT_WATERMARK, default_nagle_time(transport)))
    }
}

/// The bound a descriptor's `Watermark` and `NagleTime` (ms) give; a watermark of 0 is kept
/// as it is for `validate` to refuse.
fn normal(watermark: u64, nagle_time_ms: u64) -> runtime_core::Batching {
    runtime_core::Batching {
        size: usize::try_from(watermark).unwrap_or(usize::MAX),
        max_wait: (nagle_time_ms > 0).then(|| std::time::Duration::from_millis(nagle_time_ms)),
    }
}

fn default_nagle_time(transport: &Transport) -> u64 {
    match transport {
        // A REST roundtrip waits for its answer: holding a batch open only adds latency.
        Transport::Rest { .. } => 0,
        _ => DEFAULT_NAGLE_TIME_MS,
    }
}

/// `SkipToRecord`: where reading starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipToRecord {
    /// Skip this many records: the first record read is number `n + 1`. For Kafka, the offset
    /// to start from in each partition read.
    Index(u64),
    /// Kafka: from the oldest record kept.
    Earliest,
    /// Kafka: only records written from now on.
    Latest,
}

// ---------------------------------------------------------------------------------------
// Transport helpers

impl Transport {
    pub fn transport_type(&self) -> TransportType {
        match self {
            Transport::Rest { .. } => TransportType::Rest,
            Transport::Http { .. } => TransportType::Http,
            Transport::Kafka(_) => TransportType::Kafka,
            Transport::S3(_) => TransportType::S3,
            Transport::File { .. } => TransportType::File,
            Transport::Odbc(_) => TransportType::Odbc,
            Transport::Hdfs { .. } => TransportType::Hdfs,
            Transport::Tcp { .. } => TransportType::Tcp,
            Transport::Udp { .. } => TransportType::Udp,
            Transport::Exec { .. } => TransportType::Exec,
            Transport::Inline { .. } => TransportType::Inline,
            Transport::Discard => TransportType::Discard,
            Transport::Custom(_) => TransportType::Custom,
        }
    }

    /// Whether each record travels as its own message (REST in simple mode, Kafka, UDP,
    /// inline items, ODBC rows, transports added outside the engine; discard, which carries
    /// nothing), so no envelope is needed.
    /// The others carry a byte stream that an envelope cuts into records.
    pub fn is_message_transport(&self) -> bool {
        match self {
            Transport::Rest { mode } => *mode == RestMode::Simple,
            Transport::Kafka(_)
            | Transport::Udp { .. }
            | Transport::Inline { .. }
            | Transport::Odbc(_)
            | Transport::Discard
            | Transport::Custom(_) => true,
            Transport::Http { .. }
            | Transport::S3(_)
            | Transport::File { .. }
            | Transport::Hdfs { .. }
            | Transport::Tcp { .. }
            | Transport::Exec { .. } => false,
        }
    }

    /// The lower-case extension of the file or object this transport names, if any.
    pub fn name_extension(&self) -> Option<String> {
        let name = match self {
            Transport::File { path } | Transport::Hdfs { path, .. } => path.as_str(),
            Transport::S3(s3) => s3.object_key.as_str(),
            Transport::Http { url } => {
                let end = url.find(['?', '#']).unwrap_or(url.len());
                url[..end].split_once("://").map_or(&url[..end], |(_, r)| r)
            }
            _ => return None,
        };
        extension(name)
    }

    /// The encoding used when the descriptor names none: JSON for REST, inline, ODBC and
    /// S3 prefixes (an `ObjectKey` ending in `/`, whose objects' names the engine chooses or
    /// does not know), else what the file or object's extension suggests, else raw bytes.
    pub fn guessed_encoding(&self) -> Encoding {
        match self {
            Transport::Rest { .. } | Transport::Inline { .. } | Transport::Odbc(_) => {
                Encoding::Json
            }
            Transport::S3(s3) if s3.object_key.ends_with('/') => Encoding::Json,
            _ => self
                .name_extension()
                .and_then(|e| Encoding::of_extension(&e))
                .unwrap_or(Encoding::Raw),
        }
    }

    /// The envelope used when the descriptor names none (see the module docs).
    pub fn default_envelope(&self, encoding: Encoding) -> Option<Framing> {
        if self.is_message_transport() {
            return None;
        }
        match encoding {
            // Parquet files frame their own rows, as MessagePack values delimit themselves.
            Encoding::MsgPack | Encoding::Parquet => None,
            // A `.avro` file is a container file; other avro-binary streams are bare datums.
            Encoding::AvroBinary if self.name_extension().as_deref() == Some("avro") => {
                Some(Framing::Ocf)
            }
            Encoding::AvroBinary => None,
            Encoding::Csv => Some(Framing::Csv),
            Encoding::Raw | Encoding::Utf8 | Encoding::Json => Some(Framing::Lines),
        }
    }

    /// The host and path of what this transport reaches, for matching credentials: a URL's
    /// host and path, an S3 bucket and key, a Kafka bootstrap server's host and the topic, an
    /// HDFS name node's host and path, a database server's host and `/database` (ODBC).
    /// `None` for local and in-engine transports.
    pub fn location(&self) -> Option<(String, String)> {
        fn host_of(authority: &str) -> &str {
            let authority = authority.rsplit('@').next().unwrap_or(authority);
            match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(v6),
                None => authority.split(':').next().unwrap_or(authority),
            }
        }
        match self {
            Transport::Http { url } => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
                let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
                Some((host_of(authority).to_owned(), path.to_owned()))
            }
            Transport::S3(s3) => Some((s3.bucket.clone(), format!("/{}", s3.object_key))),
            Transport::Kafka(k) => {
                let server = k.bootstrap_servers.first()?;
                Some((host_of(server).to_owned(), format!("/{}", k.topic)))
            }
            Transport::Hdfs { name_node, path } => {
                let authority = name_node
                    .split_once("://")
                    .map_or(name_node.as_str(), |(_, a)| a);
                Some((host_of(authority).to_owned(), path.clone()))
            }
            Transport::Tcp { host, .. } | Transport::Udp { host, .. } => {
                Some((host.clone(), String::new()))
            }
            // A database server's host and `/database`; none for SQLite or a string that
            // does not read (the SQL endpoint refuses it when opened).
            Transport::Odbc(o) => crate::sql::SqlTarget::parse(&o.connection_string)
                .ok()
                .and_then(|t| t.location()),
            Transport::Rest { .. }
            | Transport::File { .. }
            | Transport::Exec { .. }
            | Transport::Inline { .. }
            | Transport::Discard
            | Transport::Custom(_) => None,
        }
    }

    /// Every string field that may hold a `secret://` reference, with its field path.
    fn text_fields_mut(&mut self) -> Vec<(String, &mut String)> {
        fn f(name: &str) -> String {
            format!("Transport.{name}")
        }
        let mut out: Vec<(String, &mut String)> = Vec::new();
        match self {
            Transport::Rest { .. } | Transport::Inline { .. } | Transport::Discard => {}
            // A transport added outside the engine: its top-level text fields, whatever
            // they are named, may be secret references too.
            Transport::Custom(c) => {
                for (name, value) in c.fields.iter_mut() {
                    if let Json::String(s) = value {
                        out.push((f(name), s));
                    }
                }
            }
            Transport::Http { url } => out.push((f("Url"), url)),
            Transport::Kafka(k) => {
                for (i, s) in k.bootstrap_servers.iter_mut().enumerate() {
                    out.push((format!("Transport.BootstrapServers[{i}]"), s));
                }
                out.push((f("Topic"), &mut k.topic));
                if let Some(g) = k.group.as_mut() {
                    out.push((f("Group"), g));
                }
                for (name, v) in k.properties.iter_mut() {
                    out.push((format!("Transport.Properties.{name}"), v));
                }
            }
            Transport::S3(s3) => {
                if let Some(r) = s3.region.as_mut() {
                    out.push((f("Region"), r));
                }
                out.push((f("Bucket"), &mut s3.bucket));
                out.push((f("ObjectKey"), &mut s3.object_key));
                if let Some(v) = s3.access_key_id.as_mut() {
                    out.push((f("AccessKeyID"), v));
                }
                if let Some(v) = s3.secret_access_key.as_mut() {
                    out.push((f("SecretAccessKey"), v));
                }
                if let Some(v) = s3.endpoint_url.as_mut() {
                    out.push((f("EndpointUrl"), v));
                }
            }
            Transport::File { path } => out.push((f("Path"), path)),
            Transport::Odbc(o) => {
                out.push((f("ConnectionString"), &mut o.connection_string));
                if let Some(v) = o.select_query.as_mut() {
                    out.push((f("SelectQuery"), v));
                }
                if let Some(v) = o.insert_into_table.as_mut() {
                    out.push((f("InsertIntoTable"), v));
                }
            }
            Transport::Hdfs { name_node, path } => {
                out.push((f("NameNode"), name_node));
                out.push((f("Path"), path));
            }
            Transport::Tcp { host, .. } | Transport::Udp { host, .. } => {
                out.push((f("Host"), host))
            }
            Transport::Exec { run } => out.push((f("Run"), run)),
        }
        out
    }

    /// Where this transport reaches, for people: a path, `s3://bucket/key`, a URL, a
    /// topic, a database; any secret in a URL or connection string hidden
    /// ([`crate::redact`]). A local path is shown as it is: it holds no secret, and callers
    /// open it again by what this says.
    pub fn shown(&self) -> String {
        let text = match self {
            Transport::File { path } => return path.clone(),
            Transport::S3(s3) => format!("s3://{}/{}", s3.bucket, s3.object_key),
            Transport::Http { url } => url.clone(),
            Transport::Hdfs { name_node, path } => {
                let server = if name_node.contains("://") {
                    name_node.clone()
                } else {
                    format!("hdfs://{name_node}")
                };
                format!("{server}/{}", path.trim_start_matches('/'))
            }
            Transport::Kafka(k) => format!("kafka:{}/{}", k.bootstrap_servers.join(","), k.topic),
            Transport::Odbc(o) => match (&o.select_query, &o.insert_into_table) {
                (_, Some(table)) => format!("{} table {table}", o.connection_string),
                _ => o.connection_string.clone(),
            },
            other => other.transport_type().name().to_owned(),
        };
        crate::redact(&text)
    }

    /// The transport of the file `rel` (a relative `/`-separated path) under the folder or
    /// prefix this one names: a local folder, an S3 prefix, an HDFS folder. A training job's
    /// products are stored so, one file each. `None` for transports that name no folder.
    pub fn child(&self, rel: &str) -> Option<Transport> {
        fn join(base: &str, rel: &str) -> String {
            if base.is_empty() {
                rel.to_owned()
            } else {
                format!("{}/{rel}", base.trim_end_matches('/'))
            }
        }
        let rel = rel.trim_start_matches('/');
        Some(match self {
            Transport::File { path } => Transport::File {
                path: join(path, rel),
            },
            Transport::S3(s3) => Transport::S3(S3Transport {
                object_key: join(&s3.object_key, rel),
                ..s3.clone()
            }),
            Transport::Hdfs { name_node, path } => Transport::Hdfs {
                name_node: name_node.clone(),
                path: join(path, rel),
            },
            _ => return None,
        })
    }
}

fn extension(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = last.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

fn is_secret_ref(s: &str) -> bool {
    s.starts_with(SECRET_PREFIX)
}

// ---------------------------------------------------------------------------------------
// The descriptor

impl StreamDescriptor {
    /// A descriptor for `transport` and `encoding` with every other field defaulted.
    pub fn new(transport: Transport, encoding: Encoding) -> StreamDescriptor {
        let envelope = transport.default_envelope(encoding);
        let batching = Batching::default_for(&transport);
        StreamDescriptor {
            version: None,
            description: None,
            transport,
            encoding,
            csv: CsvOptions::default(),
            envelope,
            ocf_codec: OcfCodec::Null,
            schema: Schema::Inherit,
            batching,
            linger_time_ms: DEFAULT_LINGER_TIME_MS,
            looping: false,
            skip_to: None,
            skip_to_record: None,
            secret_refs: BTreeMap::new(),
        }
    }

    /// Reads either form: text starting with `{` is the JSON form (`[` and `"` are read as
    /// JSON too, so a JSON string holding a short form works), anything else a short form.
    pub fn parse(text: &str) -> Result<StreamDescriptor> {
        let trimmed = text.trim();
        if trimmed.starts_with(['{', '[', '"']) {
            let doc: Json = serde_json::from_str(trimmed)
                .map_err(|e| Error::descriptor("(document)", format!("not valid JSON: {e}")))?;
            Self::from_json(&doc)
        } else {
            Self::from_short_form(trimmed)
        }
    }

    /// Reads a parsed JSON document: an object in the FastScore form, or a string holding a
    /// short form. Fills every default and validates (direction-agnostic).
    pub fn from_json(doc: &Json) -> Result<StreamDescriptor> {
        match doc {
            Json::Object(map) => Self::from_object(map),
            Json::String(s) => Self::from_short_form(s),
            _ => Err(Error::descriptor(
                "(document)",
                "a stream descriptor is a JSON object or a short-form string",
            )),
        }
    }

    fn from_object(map: &JsonMap<String, Json>) -> Result<StreamDescriptor> {
        let obj = Fields::new("", map)?;
        obj.check("a stream descriptor", TOP_FIELDS)?;
        let version = obj.take("Version");
        let description = obj.take("Description");
        let transport = obj.take("Transport");
        let encoding = obj.take("Encoding");
        let envelope = obj.take("Envelope");
        let schema = obj.take("Schema");
        let batching = obj.take("Batching");
        let linger = obj.take("LingerTime");
        let looping = obj.take("Loop");
        let skip_to = obj.take("SkipTo");
        let skip_to_record = obj.take("SkipToRecord");

        let transport = match transport {
            Given::Set(v) => parse_transport(v)?,
            Given::Absent | Given::Null => {
                return Err(Error::descriptor(
                    "Transport",
                    format!(
                        "is required: where records come from or go to (one of {})",
                        TransportType::known_list()
                    ),
                ))
            }
        };
        let (encoding, csv) = match encoding {
            Given::Absent => (transport.guessed_encoding(), CsvOptions::default()),
            Given::Null => (Encoding::Raw, CsvOptions::default()),
            Given::Set(v) => parse_encoding(v)?,
        };
        let (envelope, ocf_codec) = match envelope {
            Given::Absent => (transport.default_envelope(encoding), OcfCodec::Null),
            Given::Null => (None, OcfCodec::Null),
            Given::Set(v) => {
                let (envelope, codec) = parse_envelope(v)?;
                (Some(envelope), codec)
            }
        };
        let schema = match schema {
            Given::Absent => Schema::Inherit,
            Given::Null => Schema::Off,
            Given::Set(v) => parse_schema(v)?,
        };
        let batching = match batching {
            Given::Absent => Batching::default_for(&transport),
            Given::Null => Batching::Off,
            Given::Set(v) => parse_batching(v, &transport)?,
        };
        let descriptor = StreamDescriptor {
            version: version.try_map(|v| text(v, "Version"))?.value(),
            description: description.try_map(|v| text(v, "Description"))?.value(),
            encoding,
            csv,
            envelope,
            ocf_codec,
            schema,
            batching,
            // null: no lingering.
            linger_time_ms: linger
                .try_map(|v| uint(v, "LingerTime"))?
                .or_default(DEFAULT_LINGER_TIME_MS)
                .unwrap_or(0),
            looping: looping
                .try_map(|v| boolean(v, "Loop"))?
                .value()
                .unwrap_or(false),
            skip_to: skip_to.try_map(|v| uint(v, "SkipTo"))?.value(),
            skip_to_record: skip_to_record.try_map(parse_skip_to_record)?.value(),
            transport,
            secret_refs: BTreeMap::new(),
        };
        descriptor.validate()?;
        Ok(descriptor)
    }

    /// Reads a short form: `rest:`, `rest:chunked`, `inline:1,2,3`,
    /// `kafka:host:9092[,host2:9092]/topic.json`, `file:/path.json`, `file:data/in.csv`,
    /// `s3://bucket/key.csv`, `hdfs://namenode:8020/path`, `http(s)://...`, `discard:`, or a
    /// plain path (a file). The encoding is guessed from the extension.
    pub fn from_short_form(text: &str) -> Result<StreamDescriptor> {
        Self::from_object(&short_form_to_json(text.trim())?)
    }

    /// A descriptor for a local file read or written with the codec's own framing for
    /// `encoding` (an Avro container, CSV rows, lines, MessagePack values), whatever the
    /// file's extension: what `engine run` and job documents give.
    pub fn file(path: impl Into<String>, encoding: Encoding) -> StreamDescriptor {
        let mut d = StreamDescriptor::new(Transport::File { path: path.into() }, encoding);
        d.envelope = match encoding.default_framing() {
            Framing::MsgPackStream | Framing::ParquetFile => None,
            framing => Some(framing),
        };
        d
    }

    /// The codec config this descriptor reads or writes with: its encoding, CSV dialect and
    /// envelope. No envelope is one record per message on a message transport; on a byte
    /// stream it is bare Avro datums, MessagePack values back to back, a Parquet file's
    /// rows, or for the other encodings the whole stream as one record. The caller adds what the slot gives (its
    /// schema).
    pub fn codec_config(&self) -> CodecConfig {
        let mut codec = CodecConfig::new(self.encoding);
        codec.csv = self.csv.clone();
        codec.ocf_codec = self.ocf_codec;
        codec.framing = Some(match &self.envelope {
            Some(framing) => framing.clone(),
            None if self.is_message_transport() => Framing::Message,
            None => match self.encoding {
                Encoding::AvroBinary => Framing::AvroDatums,
                Encoding::MsgPack => Framing::MsgPackStream,
                Encoding::Parquet => Framing::ParquetFile,
                _ => Framing::Message,
            },
        });
        codec
    }

    /// Where the descriptor reaches, for people, secrets hidden ([`Transport::shown`]).
    pub fn shown(&self) -> String {
        self.transport.shown()
    }

    /// Whether each record travels as its own message; see [`Transport::is_message_transport`].
    pub fn is_message_transport(&self) -> bool {
        self.transport.is_message_transport()
    }

    /// The fully defaulted JSON form (what a `?dry-run=true` attach answers). Resolved secrets
    /// are written back as their `secret://` references. A schema inherited from the model is
    /// written as no `Schema` field at all.
    pub fn to_json(&self) -> Json {
        let mut m = JsonMap::new();
        if let Some(v) = &self.version {
            m.insert("Version".into(), Json::from(v.as_str()));
        }
        m.insert("Description".into(), opt_json(self.description.as_deref()));
        m.insert("Transport".into(), self.transport_json());
        m.insert("Encoding".into(), encoding_json(self.encoding, &self.csv));
        m.insert(
            "Envelope".into(),
            self.envelope
                .as_ref()
                .map_or(Json::Null, |e| envelope_json(e, self.ocf_codec)),
        );
        match &self.schema {
            Schema::Inherit => {}
            Schema::Off => {
                m.insert("Schema".into(), Json::Null);
            }
            Schema::Named(name) => {
                let mut r = JsonMap::new();
                r.insert("$ref".into(), Json::from(name.as_str()));
                m.insert("Schema".into(), Json::Object(r));
            }
            Schema::Inline(v) => {
                m.insert("Schema".into(), v.clone());
            }
        }
        m.insert("Batching".into(), batching_json(&self.batching));
        m.insert("LingerTime".into(), Json::from(self.linger_time_ms));
        m.insert("Loop".into(), Json::from(self.looping));
        m.insert("SkipTo".into(), self.skip_to.map_or(Json::Null, Json::from));
        m.insert(
            "SkipToRecord".into(),
            match self.skip_to_record {
                None => Json::Null,
                Some(SkipToRecord::Index(n)) => Json::from(n),
                Some(SkipToRecord::Earliest) => Json::from("earliest"),
                Some(SkipToRecord::Latest) => Json::from("latest"),
            },
        );
        Json::Object(m)
    }

    /// The defaulted form with the secrets written into it as they are hidden: what an API
    /// answers and a log shows. A `SecretAccessKey` given as its value shows as [`HIDDEN`],
    /// the password of a URL's `user:password@` or a connection string's as [`HIDDEN`] too
    /// ([`crate::redact`]); `secret://` references
    /// show as they are (as in [`StreamDescriptor::to_json`], which keeps the values: it is
    /// what the engine stores to open the stream again).
    pub fn to_shown_json(&self) -> Json {
        let mut doc = self.to_json();
        let Some(t) = doc.get_mut("Transport").and_then(Json::as_object_mut) else {
            return doc;
        };
        let referenced = |field: &str| self.secret_refs.contains_key(&format!("Transport.{field}"));
        if !referenced("SecretAccessKey") {
            if let Some(v) = t.get_mut("SecretAccessKey").filter(|v| v.is_string()) {
                *v = Json::from(HIDDEN);
            }
        }
        for field in ["Url", "EndpointUrl", "ConnectionString"] {
            if referenced(field) {
                continue;
            }
            if let Some(Json::String(text)) = t.get_mut(field) {
                *text = crate::redact(text);
            }
        }
        doc
    }

    fn transport_json(&self) -> Json {
        // A resolved secret is written back as its reference.
        let t = |field: &str, value: &str| -> Json {
            match self.secret_refs.get(&format!("Transport.{field}")) {
                Some(name) => Json::from(format!("{SECRET_PREFIX}{name}")),
                None => Json::from(value),
            }
        };
        let ot = |field: &str, value: Option<&str>| value.map_or(Json::Null, |v| t(field, v));
        let mut m = JsonMap::new();
        let name = match &self.transport {
            Transport::Custom(c) => c.name.as_str(),
            other => other.transport_type().name(),
        };
        m.insert("Type".into(), Json::from(name));
        let mut put = |k: &str, v: Json| {
            m.insert(k.to_string(), v);
        };
        match &self.transport {
            Transport::Rest { mode } => put(
                "Mode",
                Json::from(match mode {
                    RestMode::Simple => "simple",
                    RestMode::Chunked => "chunked",
                }),
            ),
            Transport::Http { url } => put("Url", t("Url", url)),
            Transport::Kafka(k) => {
                let servers = k
                    .bootstrap_servers
                    .iter()
                    .enumerate()
                    .map(|(i, s)| t(&format!("BootstrapServers[{i}]"), s))
                    .collect();
                put("BootstrapServers", Json::Array(servers));
                put("Topic", t("Topic", &k.topic));
                put("Group", ot("Group", k.group.as_deref()));
                put("CommitOffset", Json::from(k.commit_offset));
                put("Partition", k.partition.map_or(Json::Null, Json::from));
                put(
                    "MaxWaitTime",
                    k.max_wait_time_ms.map_or(Json::Null, Json::from),
                );
                put("Metadata", Json::from(k.metadata));
                put(
                    "MaxInFlight",
                    k.max_in_flight.map_or(Json::Null, Json::from),
                );
                put("Consumers", k.consumers.map_or(Json::Null, Json::from));
                if !k.properties.is_empty() {
                    let props = k
                        .properties
                        .iter()
                        .map(|(name, v)| (name.clone(), t(&format!("Properties.{name}"), v)))
                        .collect();
                    put("Properties", Json::Object(props));
                }
            }
            Transport::S3(s3) => {
                put("Region", ot("Region", s3.region.as_deref()));
                put("Bucket", t("Bucket", &s3.bucket));
                put("ObjectKey", t("ObjectKey", &s3.object_key));
                put(
                    "AccessKeyID",
                    ot("AccessKeyID", s3.access_key_id.as_deref()),
                );
                put(
                    "SecretAccessKey",
                    ot("SecretAccessKey", s3.secret_access_key.as_deref()),
                );
                put("EndpointUrl", ot("EndpointUrl", s3.endpoint_url.as_deref()));
                put("PathStyle", Json::from(s3.path_style));
            }
            Transport::File { path } => put("Path", t("Path", path)),
            Transport::Odbc(o) => {
                put(
                    "ConnectionString",
                    t("ConnectionString", &o.connection_string),
                );
                put("SelectQuery", ot("SelectQuery", o.select_query.as_deref()));
                put(
                    "InsertIntoTable",
                    ot("InsertIntoTable", o.insert_into_table.as_deref()),
                );
                put(
                    "OutputFields",
                    o.output_fields
                        .as_ref()
                        .map_or(Json::Null, |f| Json::from(f.clone())),
                );
            }
            Transport::Hdfs { name_node, path } => {
                put("NameNode", t("NameNode", name_node));
                put("Path", t("Path", path));
            }
            Transport::Tcp { host, port } | Transport::Udp { host, port } => {
                put("Host", t("Host", host));
                put("Port", Json::from(*port));
            }
            Transport::Exec { run } => put("Run", t("Run", run)),
            Transport::Inline { data } => put("Data", Json::from(data.clone())),
            Transport::Discard => {}
            Transport::Custom(c) => {
                for (k, v) in &c.fields {
                    let v = match v {
                        Json::String(s) => t(k, s),
                        other => other.clone(),
                    };
                    put(k, v);
                }
            }
        }
        Json::Object(m)
    }

    /// Replaces every `secret://name` value of the transport's fields by `lookup(name)`.
    /// Either every reference resolves or nothing changes; an unknown secret is an error
    /// naming the field. `to_json` keeps showing the references.
    pub fn resolve_secrets(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<()> {
        let StreamDescriptor {
            transport,
            secret_refs,
            ..
        } = self;
        let mut fields = transport.text_fields_mut();
        let mut found = Vec::new();
        for (i, (field, value)) in fields.iter().enumerate() {
            if secret_refs.contains_key(field) {
                continue; // resolved before; its value is the secret itself
            }
            let Some(name) = value.strip_prefix(SECRET_PREFIX) else {
                continue;
            };
            if name.is_empty() {
                return Err(Error::descriptor(
                    field.clone(),
                    "'secret://' names no secret",
                ));
            }
            match lookup(name) {
                Some(secret) => found.push((i, name.to_string(), secret)),
                None => {
                    return Err(Error::descriptor(
                        field.clone(),
                        format!("secret '{name}' is not known"),
                    ))
                }
            }
        }
        for (i, name, secret) in found {
            let (field, value) = &mut fields[i];
            **value = secret;
            secret_refs.insert(field.clone(), name);
        }
        Ok(())
    }

    /// Names of the secrets the transport still refers to, with their fields.
    pub fn unresolved_secrets(&self) -> Vec<(String, String)> {
        let mut transport = self.transport.clone();
        transport
            .text_fields_mut()
            .into_iter()
            .filter(|(field, _)| !self.secret_refs.contains_key(field))
            .filter_map(|(field, value)| {
                value
                    .strip_prefix(SECRET_PREFIX)
                    .map(|name| (field, name.to_string()))
            })
            .collect()
    }

    /// Checks what holds whichever way the stream is used: required fields, values in range,
    /// and encoding / envelope / transport combinations that can work.
    pub fn validate(&self) -> Result<()> {
        validate_transport(&self.transport)?;
        self.validate_encoding()?;
        self.validate_envelope()?;
        self.validate_reading_options()?;
        if let Batching::Normal(runtime_core::Batching { size: 0, .. }) = self.batching {
            return Err(Error::descriptor(
                "Batching.Watermark",
                "must be a positive number of records",
            ));
        }
        if let Schema::Named(name) = &self.schema {
            if name.trim().is_empty() {
                return Err(Error::descriptor(
                    "Schema",
                    "a schema name must not be empty",
                ));
            }
        }
        Ok(())
    }

    fn validate_encoding(&self) -> Result<()> {
        if self.encoding == Encoding::Csv {
            let csv = &self.csv;
            check_csv_char(csv.delimiter, "Encoding.Delimiter")?;
            check_csv_char(csv.quote, "Encoding.QuoteCharacter")?;
            if csv.delimiter == csv.quote {
                return Err(Error::descriptor(
                    "Encoding.QuoteCharacter",
                    "must differ from the Delimiter",
                ));
            }
        }
        if self.encoding == Encoding::Parquet && self.is_message_transport() {
            return Err(Error::descriptor(
                "Encoding",
                format!(
                    "a Parquet file holds many rows and is read through its footer: it travels on file, S3, HDFS or HTTP, not {} (one record per message)",
                    self.transport.transport_type()
                ),
            ));
        }
        if let Transport::Odbc(_) = self.transport {
            if self.encoding != Encoding::Json {
                return Err(Error::descriptor(
                    "Encoding",
                    format!(
                        "ODBC rows are records (objects keyed by column name): the encoding must be json, not {}",
                        label(self.encoding)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_envelope(&self) -> Result<()> {
        let enc = self.encoding;
        if self.ocf_codec != OcfCodec::Null && self.envelope != Some(Framing::Ocf) {
            return Err(Error::descriptor(
                "Envelope.Codec",
                "a block codec applies to an ocf-block envelope (an Avro container file) only",
            ));
        }
        let Some(envelope) = &self.envelope else {
            return Ok(());
        };
        if enc == Encoding::Parquet && !matches!(envelope, Framing::ParquetFile) {
            return Err(Error::descriptor(
                "Envelope",
                format!(
                    "a Parquet file frames its own rows: its envelope is null, not {}",
                    envelope.name()
                ),
            ));
        }
        if let Transport::Odbc(_) = self.transport {
            return Err(Error::descriptor(
                "Envelope",
                "ODBC rows are records already: the envelope must be null",
            ));
        }
        match envelope {
            Framing::Lines | Framing::Delimited { .. } => {
                if matches!(envelope, Framing::Delimited { separator } if separator.is_empty()) {
                    return Err(Error::descriptor("Envelope.Separator", "must not be empty"));
                }
                if is_binary(enc) {
                    return Err(Error::descriptor(
                        "Envelope",
                        format!(
                            "{} records are binary and may contain the separator: use no envelope{}",
                            label(enc),
                            if enc == Encoding::AvroBinary { " or ocf-block" } else { "" }
                        ),
                    ));
                }
                if enc == Encoding::Csv {
                    return Err(Error::descriptor(
                        "Envelope",
                        "csv records are framed by delimited-csv (a quoted field may hold line breaks), not delimited",
                    ));
                }
            }
            Framing::Fixed { size } => {
                if *size == 0 {
                    return Err(Error::descriptor(
                        "Envelope.Size",
                        "must be at least 1 byte",
                    ));
                }
                if self.transport.is_message_transport() {
                    return Err(Error::descriptor(
                        "Envelope",
                        format!(
                            "a fixed envelope cuts a byte stream, but {} carries one record per message",
                            self.transport.transport_type()
                        ),
                    ));
                }
                if enc != Encoding::Raw {
                    return Err(Error::descriptor(
                        "Envelope",
                        format!(
                            "fixed-size records are raw bytes (Encoding null), not {}",
                            label(enc)
                        ),
                    ));
                }
            }
            Framing::Ocf => {
                if enc != Encoding::AvroBinary {
                    return Err(Error::descriptor(
                        "Envelope",
                        format!(
                            "ocf-block (an Avro container file) needs Encoding avro-binary, not {}",
                            label(enc)
                        ),
                    ));
                }
            }
            Framing::Csv => {
                if enc != Encoding::Csv {
                    return Err(Error::descriptor(
                        "Envelope",
                        format!("delimited-csv needs Encoding csv, not {}", label(enc)),
                    ));
                }
            }
            Framing::AvroDatums
            | Framing::MsgPackStream
            | Framing::ParquetFile
            | Framing::Message => {
                return Err(Error::descriptor(
                    "Envelope",
                    format!(
                        "'{}' is a framing, not an envelope: no envelope is written null",
                        envelope.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_reading_options(&self) -> Result<()> {
        let ty = self.transport.transport_type();
        if self.looping
            && matches!(
                ty,
                TransportType::Rest
                    | TransportType::Kafka
                    | TransportType::Tcp
                    | TransportType::Udp
                    | TransportType::Discard
            )
        {
            return Err(Error::descriptor(
                "Loop",
                format!("a {ty} input has no start to go back to: only inputs that end can loop"),
            ));
        }
        if self.skip_to.is_some() {
            if !matches!(
                ty,
                TransportType::File | TransportType::S3 | TransportType::Hdfs | TransportType::Http
            ) {
                return Err(Error::descriptor(
                    "SkipTo",
                    format!(
                        "a byte offset needs a seekable input (file, S3, HDFS, HTTP), not {ty}"
                    ),
                ));
            }
            if self.skip_to_record.is_some() {
                return Err(Error::descriptor(
                    "SkipTo",
                    "give SkipTo (bytes) or SkipToRecord (records), not both",
                ));
            }
        }
        match self.skip_to_record {
            None => {}
            Some(SkipToRecord::Earliest | SkipToRecord::Latest) if ty != TransportType::Kafka => {
                return Err(Error::descriptor(
                    "SkipToRecord",
                    format!("'earliest' and 'latest' are Kafka positions; {ty} takes a number of records"),
                ));
            }
            Some(_) if matches!(ty, TransportType::Rest | TransportType::Discard) => {
                return Err(Error::descriptor(
                    "SkipToRecord",
                    format!("a {ty} stream has no records to skip"),
                ));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// [`validate`](Self::validate), plus what depends on the stream being an input or an
    /// output: inline, exec and HTTP only read; discard only writes; ODBC needs `SelectQuery`
    /// to read and `InsertIntoTable` to write; `Loop` and skipping only apply to inputs.
    pub fn validate_for(&self, direction: Direction) -> Result<()> {
        self.validate()?;
        let ty = self.transport.transport_type();
        match direction {
            Direction::Input => match &self.transport {
                Transport::Discard => {
                    return Err(Error::descriptor(
                        "Transport.Type",
                        "discard cannot be an input: it has no records to read",
                    ))
                }
                Transport::Odbc(o) if o.select_query.is_none() => {
                    return Err(Error::descriptor(
                        "Transport.SelectQuery",
                        "an ODBC input needs the query whose rows it reads",
                    ))
                }
                _ => {}
            },
            Direction::Output => {
                match &self.transport {
                    Transport::Inline { .. } | Transport::Exec { .. } | Transport::Http { .. } => {
                        return Err(Error::descriptor(
                            "Transport.Type",
                            format!("{ty} cannot be an output: it only reads records"),
                        ))
                    }
                    Transport::Odbc(o) if o.insert_into_table.is_none() => {
                        return Err(Error::descriptor(
                            "Transport.InsertIntoTable",
                            "an ODBC output needs the table it inserts into",
                        ))
                    }
                    Transport::Udp { host, .. } if host == DEFAULT_UDP_HOST => {
                        return Err(Error::descriptor(
                            "Transport.Host",
                            "a UDP output needs the host it sends to",
                        ))
                    }
                    _ => {}
                }
                if self.looping {
                    return Err(Error::descriptor("Loop", "only an input can loop"));
                }
                if self.skip_to.is_some() {
                    return Err(Error::descriptor("SkipTo", "only an input can skip"));
                }
                if self.skip_to_record.is_some() {
                    return Err(Error::descriptor("SkipToRecord", "only an input can skip"));
                }
            }
        }
        Ok(())
    }
}

fn check_csv_char(c: u8, field: &str) -> Result<()> {
    if !c.is_ascii() || c == b'\n' || c == b'\r' {
        return Err(Error::descriptor(
            field,
            "must be one ASCII character other than a line break",
        ));
    }
    Ok(())
}

fn validate_transport(transport: &Transport) -> Result<()> {
    fn non_empty(value: &str, field: &str) -> Result<()> {
        if value.trim().is_empty() {
            return Err(Error::descriptor(field, "must not be empty"));
        }
        Ok(())
    }
    fn url(value: &str, field: &str) -> Result<()> {
        non_empty(value, field)?;
        let lower = value.to_ascii_lowercase();
        if !is_secret_ref(value) && !lower.starts_with("http://") && !lower.starts_with("https://")
        {
            return Err(Error::descriptor(
                field,
                format!("'{value}' is not an http:// or https:// URL"),
            ));
        }
        Ok(())
    }
    fn port(port: u16) -> Result<()> {
        if port == 0 {
            return Err(Error::descriptor("Transport.Port", "must be 1 to 65535"));
        }
        Ok(())
    }
    match transport {
        Transport::Rest { .. } | Transport::Discard | Transport::Custom(_) => {}
        Transport::Http { url: u } => url(u, "Transport.Url")?,
        Transport::Kafka(k) => {
            if k.bootstrap_servers.is_empty() {
                return Err(Error::descriptor(
                    "Transport.BootstrapServers",
                    "a Kafka transport needs at least one bootstrap server (host:port)",
                ));
            }
            for s in &k.bootstrap_servers {
                non_empty(s, "Transport.BootstrapServers")?;
            }
            non_empty(&k.topic, "Transport.Topic")?;
            if let Some(g) = &k.group {
                non_empty(g, "Transport.Group")?;
            }
            if k.commit_offset && k.group.is_none() {
                return Err(Error::descriptor(
                    "Transport.CommitOffset",
                    "committing offsets needs a consumer Group",
                ));
            }
        }
        Transport::S3(s3) => {
            if let Some(r) = &s3.region {
                non_empty(r, "Transport.Region")?;
            }
            non_empty(&s3.bucket, "Transport.Bucket")?;
            non_empty(&s3.object_key, "Transport.ObjectKey")?;
            match (&s3.access_key_id, &s3.secret_access_key) {
                (Some(_), None) => {
                    return Err(Error::descriptor(
                        "Transport.SecretAccessKey",
                        "AccessKeyID is given without its SecretAccessKey",
                    ))
                }
                (None, Some(_)) => {
                    return Err(Error::descriptor(
                        "Transport.AccessKeyID",
                        "SecretAccessKey is given without its AccessKeyID",
                    ))
                }
                _ => {}
            }
            if let Some(u) = &s3.endpoint_url {
                url(u, "Transport.EndpointUrl")?;
            }
        }
        Transport::File { path } => non_empty(path, "Transport.Path")?,
        Transport::Odbc(o) => {
            non_empty(&o.connection_string, "Transport.ConnectionString")?;
            if o.select_query.is_none() && o.insert_into_table.is_none() {
                return Err(Error::descriptor(
                    "Transport.SelectQuery",
                    "an ODBC transport needs SelectQuery (to read) or InsertIntoTable (to write)",
                ));
            }
            if let Some(q) = &o.select_query {
                non_empty(q, "Transport.SelectQuery")?;
            }
            if let Some(t) = &o.insert_into_table {
                non_empty(t, "Transport.InsertIntoTable")?;
            }
            if let Some(fields) = &o.output_fields {
                if fields.is_empty() {
                    return Err(Error::descriptor(
                        "Transport.OutputFields",
                        "must name at least one field (null writes every field)",
                    ));
                }
                for f in fields {
                    non_empty(f, "Transport.OutputFields")?;
                }
            }
        }
        Transport::Hdfs { name_node, path } => {
            non_empty(name_node, "Transport.NameNode")?;
            non_empty(path, "Transport.Path")?;
        }
        Transport::Tcp { host, port: p } => {
            non_empty(host, "Transport.Host")?;
            port(*p)?;
        }
        Transport::Udp { host, port: p } => {
            non_empty(host, "Transport.Host")?;
            port(*p)?;
        }
        Transport::Exec { run } => non_empty(run, "Transport.Run")?,
        Transport::Inline { data } => {
            if data.is_empty() {
                return Err(Error::descriptor(
                    "Transport.Data",
                    "an inline transport needs at least one record in Data",
                ));
            }
        }
    }
    Ok(())
}

impl fmt::Debug for StreamDescriptor {
    /// The defaulted JSON form with its secrets hidden ([`StreamDescriptor::to_shown_json`]),
    /// so no secret reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamDescriptor({})", self.to_shown_json())
    }
}

impl FromStr for StreamDescriptor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        StreamDescriptor::parse(s)
    }
}

impl serde::Serialize for StreamDescriptor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&self.to_json(), serializer)
    }
}

impl<'de> serde::Deserialize<'de> for StreamDescriptor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let doc = <Json as serde::Deserialize>::deserialize(deserializer)?;
        StreamDescriptor::from_json(&doc).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------
// Writing JSON

fn opt_json(v: Option<&str>) -> Json {
    v.map_or(Json::Null, Json::from)
}

fn char_json(c: u8) -> Json {
    Json::from(char::from(c).to_string())
}

fn encoding_json(encoding: Encoding, csv: &CsvOptions) -> Json {
    match encoding {
        Encoding::Raw => Json::Null,
        Encoding::Csv => {
            let mut m = JsonMap::new();
            m.insert("Type".into(), Json::from("csv"));
            m.insert("Delimiter".into(), char_json(csv.delimiter));
            m.insert("QuoteCharacter".into(), char_json(csv.quote));
            m.insert("Header".into(), Json::from(csv.has_header));
            Json::Object(m)
        }
        other => Json::from(other.name()),
    }
}

fn envelope_json(envelope: &Framing, ocf_codec: OcfCodec) -> Json {
    let mut m = JsonMap::new();
    m.insert("Type".into(), Json::from(envelope.name()));
    match envelope {
        // The default codec keeps the short form: `"ocf-block"`.
        Framing::Ocf if ocf_codec != OcfCodec::Null => {
            m.insert("Codec".into(), Json::from(ocf_codec.name()));
        }
        Framing::Lines => {
            m.insert("Separator".into(), Json::from(DEFAULT_SEPARATOR));
        }
        Framing::Delimited { separator } => {
            let separator = String::from_utf8_lossy(separator).into_owned();
            m.insert("Separator".into(), Json::from(separator));
        }
        Framing::Fixed { size } => {
            m.insert("Size".into(), Json::from(*size));
        }
        _ => return Json::from(envelope.name()),
    }
    Json::Object(m)
}

fn batching_json(batching: &Batching) -> Json {
    match batching {
        Batching::Normal(b) => {
            let nagle_ms = b.max_wait.map_or(0, |w| w.as_millis() as u64);
            let mut m = JsonMap::new();
            m.insert("Watermark".into(), Json::from(b.size as u64));
            m.insert("NagleTime".into(), Json::from(nagle_ms));
            Json::Object(m)
        }
        Batching::Explicit => Json::from("explicit"),
        Batching::Off => Json::Null,
    }
}

// ---------------------------------------------------------------------------------------
// Reading JSON

const TOP_FIELDS: &[&str] = &[
    "Version",
    "Description",
    "Transport",
    "Encoding",
    "Envelope",
    "Schema",
    "Batching",
    "LingerTime",
    "Loop",
    "SkipTo",
    "SkipToRecord",
];

/// A field as the document gives it: absent, `null`, or a value.
enum Given<T> {
    Absent,
    Null,
    Set(T),
}

impl<'a> Given<&'a Json> {
    fn try_map<U>(self, f: impl FnOnce(&'a Json) -> Result<U>) -> Result<Given<U>> {
        Ok(match self {
            Given::Absent => Given::Absent,
            Given::Null => Given::Null,
            Given::Set(v) => Given::Set(f(v)?),
        })
    }
}

impl<T> Given<T> {
    /// Absent: the default; null: `None`; a value: that value.
    fn or_default(self, default: T) -> Option<T> {
        match self {
            Given::Absent => Some(default),
            Given::Null => None,
            Given::Set(v) => Some(v),
        }
    }

    /// For fields whose default is "nothing": absent and null are both `None`.
    fn value(self) -> Option<T> {
        match self {
            Given::Set(v) => Some(v),
            Given::Absent | Given::Null => None,
        }
    }

    fn required(self, field: &str, what: &str) -> Result<T> {
        match self {
            Given::Set(v) => Ok(v),
            Given::Absent | Given::Null => {
                Err(Error::descriptor(field, format!("is required: {what}")))
            }
        }
    }
}

/// The fields of one JSON object, looked up ignoring case.
struct Fields<'a> {
    prefix: &'static str,
    entries: Vec<(&'a str, &'a Json)>,
}

impl<'a> Fields<'a> {
    fn new(prefix: &'static str, map: &'a JsonMap<String, Json>) -> Result<Self> {
        let entries: Vec<_> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
        for (i, (a, _)) in entries.iter().enumerate() {
            if let Some((b, _)) = entries[..i].iter().find(|(b, _)| b.eq_ignore_ascii_case(a)) {
                return Err(Error::descriptor(
                    format!("{prefix}{a}"),
                    format!("given twice ('{b}' and '{a}'; field names ignore case)"),
                ));
            }
        }
        Ok(Fields { prefix, entries })
    }

    fn empty(prefix: &'static str) -> Self {
        Fields {
            prefix,
            entries: Vec::new(),
        }
    }

    fn field(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    fn take(&self, name: &str) -> Given<&'a Json> {
        match self
            .entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            None => Given::Absent,
            Some((_, v)) if v.is_null() => Given::Null,
            Some((_, v)) => Given::Set(*v),
        }
    }

    /// Refuses the first field that is not in `known` (before any value is read, so a
    /// misspelt field is reported as such, not as the missing field it was meant to be).
    fn check(&self, what: &str, known: &[&str]) -> Result<()> {
        let Some((name, _)) = self
            .entries
            .iter()
            .find(|(k, _)| !known.iter().any(|n| n.eq_ignore_ascii_case(k)))
        else {
            return Ok(());
        };
        let hint = known
            .iter()
            .filter(|k| edit_distance(&k.to_ascii_lowercase(), &name.to_ascii_lowercase()) <= 2)
            .min_by_key(|k| edit_distance(&k.to_ascii_lowercase(), &name.to_ascii_lowercase()))
            .map(|k| format!("did you mean '{k}'? "))
            .unwrap_or_default();
        Err(Error::descriptor(
            format!("{}{}", self.prefix, name),
            format!(
                "unknown field of {what}; {hint}known fields: {}",
                known.join(", ")
            ),
        ))
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn text(v: &Json, field: &str) -> Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::descriptor(field, format!("must be a string, not {}", type_name(v))))
}

fn uint(v: &Json, field: &str) -> Result<u64> {
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    let reason = match v {
        Json::Number(n) if n.as_i64().is_some() => "must not be negative".to_string(),
        Json::Number(_) => "must be a whole number".to_string(),
        other => format!("must be a number, not {}", type_name(other)),
    };
    Err(Error::descriptor(field, reason))
}

fn port_number(v: &Json, field: &str) -> Result<u16> {
    let n = uint(v, field)?;
    u16::try_from(n).map_err(|_| Error::descriptor(field, "must be 1 to 65535"))
}

fn boolean(v: &Json, field: &str) -> Result<bool> {
    v.as_bool().ok_or_else(|| {
        Error::descriptor(
            field,
            format!("must be true or false, not {}", type_name(v)),
        )
    })
}

fn strings(v: &Json, field: &str) -> Result<Vec<String>> {
    let Json::Array(items) = v else {
        return Err(Error::descriptor(
            field,
            format!("must be a list of strings, not {}", type_name(v)),
        ));
    };
    items.iter().map(|item| text(item, field)).collect()
}

/// One ASCII character (CSV delimiter and quote).
fn ascii_char(v: &Json, field: &str) -> Result<u8> {
    let s = text(v, field)?;
    match s.as_bytes() {
        [c] if c.is_ascii() => Ok(*c),
        _ => Err(Error::descriptor(
            field,
            format!("must be exactly one ASCII character, not '{s}'"),
        )),
    }
}

/// A `Type` (or other enumerated) name, ignoring case.
fn choice<T: Copy>(v: &Json, field: &str, options: &[(&str, T)]) -> Result<T> {
    let s = text(v, field)?;
    options
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()))
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            Error::descriptor(
                field,
                format!("unknown value '{s}'; expected one of {}", names.join(", ")),
            )
        })
}

fn parse_transport(v: &Json) -> Result<Transport> {
    let (ty, obj) = match v {
        Json::String(name) if is_custom(name) => return Ok(custom(name, JsonMap::new())),
        Json::String(name) => (transport_type(name)?, Fields::empty("Transport.")),
        Json::Object(map) => {
            let obj = Fields::new("Transport.", map)?;
            let ty = match obj.take("Type") {
                Given::Set(Json::String(name)) if is_custom(name) => {
                    let fields = map
                        .iter()
                        .filter(|(k, _)| !k.eq_ignore_ascii_case("Type"))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    return Ok(custom(name, fields));
                }
                Given::Set(Json::String(name)) => transport_type(name)?,
                Given::Set(other) => {
                    return Err(Error::descriptor(
                        "Transport.Type",
                        format!("must be a string, not {}", type_name(other)),
                    ))
                }
                Given::Absent | Given::Null => {
                    return Err(Error::descriptor(
                        "Transport.Type",
                        format!("is required (one of {})", TransportType::known_list()),
                    ))
                }
            };
            (ty, obj)
        }
        other => {
            return Err(Error::descriptor(
                "Transport",
                format!(
                    "must be a transport name or an object with a Type, not {}",
                    type_name(other)
                ),
            ))
        }
    };
    obj.check(&format!("a {ty} transport"), transport_fields(ty))?;
    let transport = match ty {
        TransportType::Rest => {
            let mode = obj
                .take("Mode")
                .try_map(|v| {
                    choice(
                        v,
                        "Transport.Mode",
                        &[("simple", RestMode::Simple), ("chunked", RestMode::Chunked)],
                    )
                })?
                .value()
                .unwrap_or_default();
            Transport::Rest { mode }
        }
        TransportType::Http => {
            let url = req_text(&obj, "Url", "the URL to read")?;
            Transport::Http { url }
        }
        TransportType::Kafka => {
            let servers = obj
                .take("BootstrapServers")
                .try_map(|v| match v {
                    Json::String(s) => Ok(s.split(',').map(|s| s.trim().to_string()).collect()),
                    other => strings(other, "Transport.BootstrapServers"),
                })?
                .required(
                    "Transport.BootstrapServers",
                    "the Kafka brokers to connect to (host:port)",
                )?;
            let topic = req_text(&obj, "Topic", "the Kafka topic")?;
            let group = obj
                .take("Group")
                .try_map(|v| text(v, "Transport.Group"))?
                .or_default(DEFAULT_KAFKA_GROUP.to_string());
            // Without a group there is nothing to commit to, so the default follows the group.
            let commit_offset = obj
                .take("CommitOffset")
                .try_map(|v| boolean(v, "Transport.CommitOffset"))?;
            let commit_offset = match commit_offset {
                Given::Absent => group.is_some(),
                Given::Null => false,
                Given::Set(b) => b,
            };
            let partition = obj
                .take("Partition")
                .try_map(|v| {
                    let n = uint(v, "Transport.Partition")?;
                    u32::try_from(n)
                        .map_err(|_| Error::descriptor("Transport.Partition", "is too large"))
                })?
                .value();
            let max_wait_time_ms = obj
                .take("MaxWaitTime")
                .try_map(|v| uint(v, "Transport.MaxWaitTime"))?
                .value();
            let max_in_flight = obj
                .take("MaxInFlight")
                .try_map(|v| {
                    let n = uint(v, "Transport.MaxInFlight")?;
                    usize::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                        Error::descriptor("Transport.MaxInFlight", "must be at least 1")
                    })
                })?
                .value();
            let consumers = obj
                .take("Consumers")
                .try_map(|v| {
                    let n = uint(v, "Transport.Consumers")?;
                    usize::try_from(n)
                        .ok()
                        .filter(|n| (1..=MAX_KAFKA_CONSUMERS).contains(n))
                        .ok_or_else(|| {
                            Error::descriptor(
                                "Transport.Consumers",
                                format!("must be from 1 to {MAX_KAFKA_CONSUMERS}"),
                            )
                        })
                })?
                .value();
            if partition.is_some() && consumers.is_some_and(|n| n > 1) {
                return Err(Error::descriptor(
                    "Transport.Consumers",
                    "one Partition is read by one consumer: drop Consumers or Partition",
                ));
            }
            let metadata = obj
                .take("Metadata")
                .try_map(|v| boolean(v, "Transport.Metadata"))?
                .value()
                .unwrap_or(false);
            let properties = obj
                .take("Properties")
                .try_map(kafka_properties)?
                .value()
                .unwrap_or_default();
            Transport::Kafka(KafkaTransport {
                bootstrap_servers: servers,
                topic,
                group,
                commit_offset,
                partition,
                max_wait_time_ms,
                metadata,
                max_in_flight,
                consumers,
                properties,
            })
        }
        TransportType::S3 => {
            let region = opt_text(&obj, "Region")?;
            let bucket = req_text(&obj, "Bucket", "the S3 bucket")?;
            let object_key = req_text(&obj, "ObjectKey", "the key of the S3 object")?;
            let access_key_id = opt_text(&obj, "AccessKeyID")?;
            let secret_access_key = opt_text(&obj, "SecretAccessKey")?;
            let endpoint_url = opt_text(&obj, "EndpointUrl")?;
            let path_style = obj
                .take("PathStyle")
                .try_map(|v| boolean(v, "Transport.PathStyle"))?
                .value()
                .unwrap_or(true);
            Transport::S3(S3Transport {
                region,
                bucket,
                object_key,
                access_key_id,
                secret_access_key,
                endpoint_url,
                path_style,
            })
        }
        TransportType::File => {
            let path = req_text(&obj, "Path", "the file to read or write")?;
            Transport::File { path }
        }
        TransportType::Odbc => {
            let connection_string =
                req_text(&obj, "ConnectionString", "how to reach the database")?;
            let select_query = opt_text(&obj, "SelectQuery")?;
            let insert_into_table = opt_text(&obj, "InsertIntoTable")?;
            let output_fields = obj
                .take("OutputFields")
                .try_map(|v| strings(v, "Transport.OutputFields"))?
                .value();
            Transport::Odbc(OdbcTransport {
                connection_string,
                select_query,
                insert_into_table,
                output_fields,
            })
        }
        TransportType::Hdfs => {
            let name_node = req_text(&obj, "NameNode", "the HDFS name node (host:port)")?;
            let path = req_text(&obj, "Path", "the HDFS file")?;
            Transport::Hdfs { name_node, path }
        }
        TransportType::Tcp | TransportType::Udp => {
            let host = obj.take("Host").try_map(|v| text(v, "Transport.Host"))?;
            let host = if ty == TransportType::Udp {
                host.value().unwrap_or_else(|| DEFAULT_UDP_HOST.to_string())
            } else {
                host.required("Transport.Host", "the host to connect to")?
            };
            let port = obj
                .take("Port")
                .try_map(|v| port_number(v, "Transport.Port"))?
                .required("Transport.Port", "the port number")?;
            if ty == TransportType::Tcp {
                Transport::Tcp { host, port }
            } else {
                Transport::Udp { host, port }
            }
        }
        TransportType::Exec => {
            let run = req_text(&obj, "Run", "the command whose output is read")?;
            Transport::Exec { run }
        }
        TransportType::Inline => {
            let data = obj.take("Data");
            let separator = obj
                .take("Separator")
                .try_map(|v| text(v, "Transport.Separator"))?
                .value();
            let data = match (data, separator) {
                (Given::Absent | Given::Null, _) => return Err(Error::descriptor(
                    "Transport.Data",
                    "is required: the records, a list of strings or one string cut by Separator",
                )),
                (Given::Set(Json::String(s)), Some(sep)) => {
                    if sep.is_empty() {
                        return Err(Error::descriptor(
                            "Transport.Separator",
                            "must not be empty",
                        ));
                    }
                    s.split(sep.as_str()).map(str::to_string).collect()
                }
                (Given::Set(Json::String(s)), None) => vec![s.clone()],
                (Given::Set(v @ Json::Array(_)), None) => strings(v, "Transport.Data")?,
                (Given::Set(Json::Array(_)), Some(_)) => {
                    return Err(Error::descriptor(
                        "Transport.Separator",
                        "only applies when Data is one string",
                    ))
                }
                (Given::Set(other), _) => {
                    return Err(Error::descriptor(
                        "Transport.Data",
                        format!(
                            "must be a list of strings or one string, not {}",
                            type_name(other)
                        ),
                    ))
                }
            };
            Transport::Inline { data }
        }
        TransportType::Discard => Transport::Discard,
        // Read above, before the fields are checked.
        TransportType::Custom => return Err(Error::descriptor("Transport.Type", "is required")),
    };
    Ok(transport)
}

/// Whether `name` names a transport added outside the engine: `x-` and at least one more
/// character (compared as bytes: a name may hold any text).
pub(crate) fn is_custom(name: &str) -> bool {
    let name = name.trim().as_bytes();
    name.len() > CUSTOM_PREFIX.len()
        && name[..CUSTOM_PREFIX.len()].eq_ignore_ascii_case(CUSTOM_PREFIX.as_bytes())
}

fn custom(name: &str, fields: JsonMap<String, Json>) -> Transport {
    Transport::Custom(CustomTransport {
        name: name.trim().to_owned(),
        fields,
    })
}

fn transport_fields(ty: TransportType) -> &'static [&'static str] {
    match ty {
        TransportType::Rest => &["Type", "Mode"],
        TransportType::Http => &["Type", "Url"],
        TransportType::Kafka => KAFKA_FIELDS,
        TransportType::S3 => S3_FIELDS,
        TransportType::File => &["Type", "Path"],
        TransportType::Odbc => ODBC_FIELDS,
        TransportType::Hdfs => &["Type", "NameNode", "Path"],
        TransportType::Tcp | TransportType::Udp => &["Type", "Host", "Port"],
        TransportType::Exec => &["Type", "Run"],
        TransportType::Inline => &["Type", "Data", "Separator"],
        TransportType::Discard => &["Type"],
        TransportType::Custom => &[],
    }
}

const KAFKA_FIELDS: &[&str] = &[
    "Type",
    "BootstrapServers",
    "Topic",
    "Group",
    "CommitOffset",
    "Partition",
    "MaxWaitTime",
    "Metadata",
    "MaxInFlight",
    "Consumers",
    "Properties",
];

/// The most Kafka consumers one input may read with (`Transport.Consumers`).
pub const MAX_KAFKA_CONSUMERS: usize = 16;

/// Kafka client settings the engine sets itself, which `Properties` may not give: the
/// descriptor's own fields choose them, and the delivery guarantees rest on them.
pub const KAFKA_OWNED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "enable.partition.eof",
];

/// `Transport.Properties`: an object of Kafka client settings; numbers and booleans are
/// taken as their text, as the client reads every setting as text.
fn kafka_properties(v: &Json) -> Result<BTreeMap<String, String>> {
    let Json::Object(m) = v else {
        return Err(Error::descriptor(
            "Transport.Properties",
            "must be an object of Kafka client settings",
        ));
    };
    m.iter()
        .map(|(k, v)| {
            if KAFKA_OWNED_PROPERTIES.contains(&k.as_str()) {
                return Err(Error::descriptor(
                    format!("Transport.Properties.{k}"),
                    "is set by the engine (the descriptor's own fields choose it) and cannot be given",
                ));
            }
            let text = match v {
                Json::String(s) => s.clone(),
                Json::Number(n) => n.to_string(),
                Json::Bool(b) => b.to_string(),
                _ => {
                    return Err(Error::descriptor(
                        format!("Transport.Properties.{k}"),
                        "must be a string, a number or a boolean",
                    ))
                }
            };
            Ok((k.clone(), text))
        })
        .collect()
}
const S3_FIELDS: &[&str] = &[
    "Type",
    "Region",
    "Bucket",
    "ObjectKey",
    "AccessKeyID",
    "SecretAccessKey",
    "EndpointUrl",
    "PathStyle",
];
const ODBC_FIELDS: &[&str] = &[
    "Type",
    "ConnectionString",
    "SelectQuery",
    "InsertIntoTable",
    "OutputFields",
];

fn transport_type(name: &str) -> Result<TransportType> {
    TransportType::from_name(name).ok_or_else(|| {
        Error::descriptor(
            "Transport.Type",
            format!(
                "unknown transport '{name}'; known transports: {} (a transport added \
                 outside the engine is named {CUSTOM_PREFIX}...)",
                TransportType::known_list()
            ),
        )
    })
}

fn req_text(obj: &Fields<'_>, name: &str, what: &str) -> Result<String> {
    let field = obj.field(name);
    obj.take(name)
        .try_map(|v| text(v, &field))?
        .required(&field, what)
}

fn opt_text(obj: &Fields<'_>, name: &str) -> Result<Option<String>> {
    let field = obj.field(name);
    Ok(obj.take(name).try_map(|v| text(v, &field))?.value())
}

const ENCODING_NAMES: &str = "null, utf-8, json, csv, msgpack, avro-binary, parquet";

fn encoding_by_name(name: &str, field: &str) -> Result<Encoding> {
    let unknown = || {
        Error::descriptor(
            field,
            format!("unknown encoding '{name}'; known encodings: {ENCODING_NAMES}"),
        )
    };
    // The codecs read an empty name as raw bytes; a descriptor names its encoding.
    if name.trim().is_empty() {
        return Err(unknown());
    }
    name.parse::<Encoding>().map_err(|_| unknown())
}

/// An `Encoding` field: the encoding, and the CSV dialect a csv one gives.
fn parse_encoding(v: &Json) -> Result<(Encoding, CsvOptions)> {
    let map = match v {
        Json::String(name) => {
            return Ok((encoding_by_name(name, "Encoding")?, CsvOptions::default()))
        }
        Json::Object(map) => map,
        other => {
            return Err(Error::descriptor(
                "Encoding",
                format!(
                    "must be an encoding name, null, or an object with a Type, not {}",
                    type_name(other)
                ),
            ))
        }
    };
    let obj = Fields::new("Encoding.", map)?;
    let encoding = match obj.take("Type") {
        Given::Set(t) => encoding_by_name(&text(t, "Encoding.Type")?, "Encoding.Type")?,
        Given::Null => Encoding::Raw,
        Given::Absent => {
            return Err(Error::descriptor(
                "Encoding.Type",
                format!("is required (one of {ENCODING_NAMES})"),
            ))
        }
    };
    match encoding {
        Encoding::Csv => obj.check(
            "a csv encoding",
            &["Type", "Delimiter", "QuoteCharacter", "Header"],
        )?,
        other => obj.check(&format!("a {} encoding", label(other)), &["Type"])?,
    }
    let mut csv = CsvOptions::default();
    match encoding {
        Encoding::Csv => {
            csv.delimiter = obj
                .take("Delimiter")
                .try_map(|v| ascii_char(v, "Encoding.Delimiter"))?
                .or_default(csv.delimiter)
                .ok_or_else(|| Error::descriptor("Encoding.Delimiter", "CSV needs a delimiter"))?;
            csv.quote = obj
                .take("QuoteCharacter")
                .try_map(|v| ascii_char(v, "Encoding.QuoteCharacter"))?
                .or_default(csv.quote)
                .ok_or_else(|| {
                    Error::descriptor(
                        "Encoding.QuoteCharacter",
                        "CSV needs a quote character (data without quotes reads the same)",
                    )
                })?;
            csv.has_header = obj
                .take("Header")
                .try_map(|v| boolean(v, "Encoding.Header"))?
                .or_default(true)
                .unwrap_or(false);
            Ok((Encoding::Csv, csv))
        }
        other => Ok((other, csv)),
    }
}

const ENVELOPE_NAMES: &str = "delimited, fixed, ocf-block, delimited-csv, null";

/// The envelope, and the block codec an `ocf-block` one names (`Codec`, default null).
fn parse_envelope(v: &Json) -> Result<(Framing, OcfCodec)> {
    let (name, obj, field) = match v {
        Json::String(name) => (name.as_str(), Fields::empty("Envelope."), "Envelope"),
        Json::Object(map) => {
            let obj = Fields::new("Envelope.", map)?;
            let name = match obj.take("Type") {
                Given::Set(Json::String(name)) => name.as_str(),
                Given::Set(other) => {
                    return Err(Error::descriptor(
                        "Envelope.Type",
                        format!("must be a string, not {}", type_name(other)),
                    ))
                }
                Given::Absent | Given::Null => {
                    return Err(Error::descriptor(
                        "Envelope.Type",
                        format!("is required (one of {ENVELOPE_NAMES})"),
                    ))
                }
            };
            (name, obj, "Envelope.Type")
        }
        other => {
            return Err(Error::descriptor(
                "Envelope",
                format!(
                    "must be an envelope name, null, or an object with a Type, not {}",
                    type_name(other)
                ),
            ))
        }
    };
    let lname = name.trim().to_ascii_lowercase();
    let known: &[&str] = match lname.as_str() {
        "delimited" => &["Type", "Separator"],
        "fixed" => &["Type", "Size"],
        "ocf-block" | "ocf" => &["Type", "Codec"],
        _ => &["Type"],
    };
    let mut ocf_codec = OcfCodec::Null;
    let envelope = match lname.as_str() {
        "delimited" => {
            obj.check("a delimited envelope", known)?;
            let separator = obj
                .take("Separator")
                .try_map(|v| text(v, "Envelope.Separator"))?
                .or_default(DEFAULT_SEPARATOR.to_string())
                .ok_or_else(|| {
                    Error::descriptor(
                        "Envelope.Separator",
                        "a delimited envelope needs a separator",
                    )
                })?;
            if separator == DEFAULT_SEPARATOR {
                Framing::Lines
            } else {
                Framing::Delimited {
                    separator: separator.into_bytes(),
                }
            }
        }
        "fixed" => {
            obj.check("a fixed envelope", known)?;
            let size = obj
                .take("Size")
                .try_map(|v| uint(v, "Envelope.Size"))?
                .required("Envelope.Size", "the size of every record in bytes")?;
            let size = usize::try_from(size)
                .map_err(|_| Error::descriptor("Envelope.Size", "is too large"))?;
            Framing::Fixed { size }
        }
        "ocf-block" | "ocf" => {
            obj.check("an ocf-block envelope", known)?;
            let codec = obj
                .take("Codec")
                .try_map(|v| text(v, "Envelope.Codec"))?
                .or_default(OcfCodec::Null.name().to_owned());
            if let Some(name) = codec {
                ocf_codec = name.parse().map_err(|_| {
                    Error::descriptor(
                        "Envelope.Codec",
                        format!(
                            "unknown Avro block codec '{name}'; known codecs: {}",
                            OcfCodec::known()
                        ),
                    )
                })?;
            }
            Framing::Ocf
        }
        "delimited-csv" => {
            obj.check("a delimited-csv envelope", known)?;
            Framing::Csv
        }
        _ => {
            return Err(Error::descriptor(
                field,
                format!("unknown envelope '{name}'; known envelopes: {ENVELOPE_NAMES}"),
            ))
        }
    };
    Ok((envelope, ocf_codec))
}

fn parse_schema(v: &Json) -> Result<Schema> {
    match v {
        Json::String(s) if AVRO_PRIMITIVES.contains(&s.as_str()) => Ok(Schema::Inline(v.clone())),
        Json::String(s) => Ok(Schema::Named(s.clone())),
        Json::Object(map) if map.contains_key("$ref") => {
            if map.len() > 1 {
                return Err(Error::descriptor(
                    "Schema",
                    "a {\"$ref\": name} schema takes no other field",
                ));
            }
            Ok(Schema::Named(text(&map["$ref"], "Schema.$ref")?))
        }
        Json::Object(_) | Json::Array(_) => Ok(Schema::Inline(v.clone())),
        other => Err(Error::descriptor(
            "Schema",
            format!(
                "must be an Avro schema, a schema name or {{\"$ref\": name}}, not {}",
                type_name(other)
            ),
        )),
    }
}

fn parse_batching(v: &Json, transport: &Transport) -> Result<Batching> {
    let map = match v {
        Json::String(s) => {
            return match s.trim().to_ascii_lowercase().as_str() {
                "normal" => Ok(Batching::default_for(transport)),
                "explicit" => Ok(Batching::Explicit),
                _ => Err(Error::descriptor(
                    "Batching",
                    format!(
                        "unknown batching '{s}'; expected normal, explicit, null, or an object with Watermark and NagleTime"
                    ),
                )),
            }
        }
        Json::Object(map) => map,
        other => {
            return Err(Error::descriptor(
                "Batching",
                format!(
                    "must be normal, explicit, null, or an object, not {}",
                    type_name(other)
                ),
            ))
        }
    };
    let obj = Fields::new("Batching.", map)?;
    obj.check("Batching", &["Watermark", "NagleTime"])?;
    let watermark = obj
        .take("Watermark")
        .try_map(|v| uint(v, "Batching.Watermark"))?
        .or_default(DEFAULT_WATERMARK)
        .ok_or_else(|| {
            Error::descriptor(
                "Batching.Watermark",
                "a batch needs a size limit; write \"Batching\": null to switch batching off",
            )
        })?;
    // null: no waiting, same as 0.
    let nagle_time_ms = obj
        .take("NagleTime")
        .try_map(|v| uint(v, "Batching.NagleTime"))?
        .or_default(default_nagle_time(transport))
        .unwrap_or(0);
    Ok(Batching::Normal(normal(watermark, nagle_time_ms)))
}

fn parse_skip_to_record(v: &Json) -> Result<SkipToRecord> {
    match v {
        Json::String(s) if s.eq_ignore_ascii_case("earliest") => Ok(SkipToRecord::Earliest),
        Json::String(s) if s.eq_ignore_ascii_case("latest") => Ok(SkipToRecord::Latest),
        Json::String(s) => Err(Error::descriptor(
            "SkipToRecord",
            format!("unknown position '{s}'; expected a number of records, earliest or latest"),
        )),
        other => uint(other, "SkipToRecord").map(SkipToRecord::Index),
    }
}

// ---------------------------------------------------------------------------------------
// Short forms

const SHORT_FORMS: &str =
    "rest:, inline:, kafka:, file:, s3://, hdfs://, http(s)://, discard:, or a plain file path";

/// Turns a short form into the JSON form it stands for (defaults are left to the JSON reader).
fn short_form_to_json(text: &str) -> Result<JsonMap<String, Json>> {
    let mut transport = JsonMap::new();
    let mut doc = JsonMap::new();
    let set = |m: &mut JsonMap<String, Json>, k: &str, v: Json| {
        m.insert(k.to_string(), v);
    };
    if text.is_empty() {
        return Err(Error::descriptor(
            "Transport",
            format!("an empty short form; expected {SHORT_FORMS}"),
        ));
    }
    let Some((scheme, rest)) = split_scheme(text) else {
        set(&mut transport, "Type", Json::from("file"));
        set(&mut transport, "Path", Json::from(text));
        set(&mut doc, "Transport", Json::Object(transport));
        return Ok(doc);
    };
    match scheme.to_ascii_lowercase().as_str() {
        "file" => {
            // file:///abs/path and file:/abs/path both name /abs/path.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            set(&mut transport, "Type", Json::from("file"));
            set(&mut transport, "Path", Json::from(path));
        }
        "rest" => {
            set(&mut transport, "Type", Json::from("REST"));
            if !rest.is_empty() {
                set(&mut transport, "Mode", Json::from(rest));
            }
        }
        "discard" => {
            if !rest.is_empty() {
                return Err(Error::descriptor(
                    "Transport",
                    format!("'discard:' takes nothing after the colon, not '{rest}'"),
                ));
            }
            set(&mut transport, "Type", Json::from("discard"));
        }
        "inline" => {
            set(&mut transport, "Type", Json::from("inline"));
            let data: Vec<Json> = split_top_level(rest).into_iter().map(Json::from).collect();
            set(&mut transport, "Data", Json::Array(data));
        }
        "kafka" => {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let Some((servers, topic)) = rest.split_once('/') else {
                return Err(Error::descriptor(
                    "Transport.Topic",
                    "the Kafka short form is kafka:host:port[,host:port]/topic[.ext]",
                ));
            };
            // The topic's extension, if it names an encoding, is the encoding, not the topic.
            let (topic, encoding) = match topic.rsplit_once('.') {
                Some((stem, ext)) if !stem.is_empty() => match Encoding::of_extension(ext) {
                    Some(enc) => (stem, Some(enc)),
                    None => (topic, None),
                },
                _ => (topic, None),
            };
            set(&mut transport, "Type", Json::from("Kafka"));
            set(&mut transport, "BootstrapServers", Json::from(servers));
            set(&mut transport, "Topic", Json::from(topic));
            if let Some(enc) = encoding {
                set(&mut doc, "Encoding", encoding_json(enc, &CsvOptions::default()));
            }
        }
        "s3" => {
            let Some(rest) = rest.strip_prefix("//") else {
                return Err(Error::descriptor(
                    "Transport",
                    "the S3 short form is s3://bucket/key",
                ));
            };
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            set(&mut transport, "Type", Json::from("S3"));
            set(&mut transport, "Bucket", Json::from(bucket));
            set(&mut transport, "ObjectKey", Json::from(key));
        }
        "hdfs" | "webhdfs" | "swebhdfs" => {
            let Some(rest) = rest.strip_prefix("//") else {
                return Err(Error::descriptor(
                    "Transport",
                    "the HDFS short forms are hdfs://namenode:port/path, webhdfs://host:port/path and swebhdfs://host:port/path",
                ));
            };
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            // hdfs:// names the namenode's RPC address (mapped to its HTTP address by the
            // engine's settings); webhdfs:// and swebhdfs:// its HTTP address itself.
            let name_node = if scheme.eq_ignore_ascii_case("hdfs") {
                authority.to_owned()
            } else {
                format!("{}://{authority}", scheme.to_ascii_lowercase())
            };
            set(&mut transport, "Type", Json::from("HDFS"));
            set(&mut transport, "NameNode", Json::from(name_node));
            set(&mut transport, "Path", Json::from(path));
        }
        "http" | "https" => {
            set(&mut transport, "Type", Json::from("HTTP"));
            set(&mut transport, "Url", Json::from(text));
        }
        _ => {
            return Err(Error::descriptor(
                "Transport",
                format!("unknown short form '{scheme}:'; known: {SHORT_FORMS} (write file:{text} for a path holding a colon)"),
            ))
        }
    }
    set(&mut doc, "Transport", Json::Object(transport));
    Ok(doc)
}

/// `scheme:rest`, where a scheme is a letter followed by at least one letter, digit, `+`,
/// `-` or `.`; a single letter (a Windows drive) or anything else is no scheme.
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && scheme.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// Splits `inline:` data at commas outside quotes, brackets and braces, so JSON values with
/// commas stay whole: `{"a":1,"b":2},[1,2]` is two records.
fn split_top_level(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    if text.is_empty() {
        return items;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(text[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(text[start..].to_string());
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_top_level_keeps_json_values_whole() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("1", &["1"]),
            ("1,2,3", &["1", "2", "3"]),
            (r#"{"a":1,"b":2},[1,2]"#, &[r#"{"a":1,"b":2}"#, "[1,2]"]),
            (r#""x,y",z"#, &[r#""x,y""#, "z"]),
            (r#""a\",b",c"#, &[r#""a\",b""#, "c"]),
            ("a,,b", &["a", "", "b"]),
        ];
        for (input, expected) in cases {
            assert_eq!(&split_top_level(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn store_urls_are_told_from_paths_and_other_schemes() {
        for text in [
            "s3://b/k",
            "HDFS://nn:8020/x",
            " webhdfs://h/x",
            "https://h/f.csv",
        ] {
            assert!(names_a_store(text), "{text}");
        }
        for text in [
            "file:///x",
            "kafka:h:9092/t",
            "s3:b/k",
            "data/s3://x",
            "ftp://h/x",
            "",
        ] {
            assert!(!names_a_store(text), "{text}");
        }
    }

    #[test]
    fn split_scheme_tells_schemes_from_paths() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("rest:", Some(("rest", ""))),
            ("s3://b/k", Some(("s3", "//b/k"))),
            ("C:\\data\\x.csv", None),
            ("data/in.csv", None),
            ("/abs/x:y.csv", None),
            ("2x:y", None),
        ];
        for (input, expected) in cases {
            assert_eq!(split_scheme(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn extension_of_names() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/a/b.JSON", Some("json")),
            ("x.tar.gz", Some("gz")),
            ("/a.b/c", None),
            (".hidden", None),
            ("noext", None),
            ("dir\\f.csv", Some("csv")),
        ];
        for (input, expected) in cases {
            assert_eq!(extension(input).as_deref(), *expected, "input {input:?}");
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("topic", "topik"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("partition", "partition"), 0);
        assert_eq!(edit_distance("abc", "cab"), 2);
    }
}
