//! The one place a stream descriptor becomes an endpoint: a [`Registry`] maps each transport
//! to an [`Opener`] and hands it the descriptor, the slot's codec config and the
//! [`Credential`] matching the descriptor's location.
//!
//! Built in: `file` (a path; `-` is standard output for a sink when the registry allows it),
//! `inline` (inputs) and `discard` (outputs). Transports without an opener are refused,
//! naming the transport. Later transports (Kafka, S3...) register their opener with
//! [`Registry::register`]; endpoints written outside the engine with
//! [`Registry::register_custom`], under a name descriptors give as their `Type` (`x-...`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use codecs::CodecConfig;
use runtime_core::{Error, RecordSink, RecordSource, Result};

use crate::credentials::{Credential, Credentials};
use crate::descriptor::{Direction, StreamDescriptor, Transport, TransportType, CUSTOM_PREFIX};
use crate::file::{FolderSource, Looping};
use crate::{DiscardSink, FileSink, FileSource, InlineSource};

/// What an opener is asked to open.
#[derive(Clone, Copy, Debug)]
pub struct OpenRequest<'a> {
    pub descriptor: &'a StreamDescriptor,
    /// The codec to decode or encode with: the descriptor's, with the slot's schema.
    pub codec: &'a CodecConfig,
    pub direction: Direction,
    /// The registry's credential matching the descriptor's location, if any.
    pub credential: Option<&'a Credential>,
    /// Whether a `file` sink may be standard output (`-`).
    pub allow_stdout: bool,
    /// Whether an output takes error records (the error output of a job or of a deployed
    /// model's streams: one record per refused or failed record, as `jobs` describes them)
    /// rather than a model's yields. A message transport may write them in its own form
    /// (Kafka: the original message with the reason in headers).
    pub errors: bool,
    /// Whether an input follows its stream as it grows (a deployed model's stream) rather
    /// than ending at the end the stream had when it was opened (a batch job).
    pub follow: bool,
}

/// Opens the endpoints of one kind of transport. A direction the transport cannot serve
/// keeps the default, which refuses it.
pub trait Opener: Send + Sync {
    fn open_source(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSource>> {
        Err(cannot_serve(req))
    }

    fn open_sink(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSink>> {
        Err(cannot_serve(req))
    }

    /// Copies the whole object `req.descriptor` names to the local file `dest`, bytes as
    /// they are (a model asset fetched before the model starts). Blocking: called on a
    /// thread that may block, never on an async worker. Returns the bytes copied.
    fn fetch_file(&self, req: &OpenRequest<'_>, dest: &Path) -> Result<u64> {
        let _ = dest;
        Err(cannot_copy(req))
    }

    /// Copies the local file `src` to the object `req.descriptor` names, bytes as they are
    /// (a training job's products). Blocking, as [`Opener::fetch_file`]. Returns the bytes
    /// copied.
    fn store_file(&self, req: &OpenRequest<'_>, src: &Path) -> Result<u64> {
        let _ = src;
        Err(cannot_copy(req))
    }
}

fn cannot_copy(req: &OpenRequest<'_>) -> Error {
    let ty = req.descriptor.transport.transport_type();
    Error::descriptor(
        "Transport.Type",
        format!("{ty} cannot copy whole files (as an {})", req.direction),
    )
}

fn cannot_serve(req: &OpenRequest<'_>) -> Error {
    let ty = req.descriptor.transport.transport_type();
    Error::descriptor(
        "Transport.Type",
        format!("{ty} cannot be an {}", req.direction),
    )
}

/// Maps transports to openers, and holds the credentials handed to them.
#[derive(Clone)]
pub struct Registry {
    openers: HashMap<TransportType, Arc<dyn Opener>>,
    /// Transports added outside the engine, by lower-case name.
    custom: HashMap<String, Arc<dyn Opener>>,
    credentials: Credentials,
    allow_stdout: bool,
    follow: bool,
}

impl Default for Registry {
    /// The built-in transports: file, inline, discard.
    fn default() -> Self {
        Registry::empty()
            .register(TransportType::File, Arc::new(FileOpener))
            .register(TransportType::Inline, Arc::new(InlineOpener))
            .register(TransportType::Discard, Arc::new(DiscardOpener))
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("transports", &self.known())
            .field("credentials", &self.credentials)
            .field("allow_stdout", &self.allow_stdout)
            .field("follow", &self.follow)
            .finish()
    }
}

impl Registry {
    /// A registry that opens nothing until openers are registered.
    pub fn empty() -> Registry {
        Registry {
            openers: HashMap::new(),
            custom: HashMap::new(),
            credentials: Credentials::default(),
            allow_stdout: false,
            follow: false,
        }
    }

    /// Opens `transport` with `opener` from now on, replacing any opener it had.
    pub fn register(mut self, transport: TransportType, opener: Arc<dyn Opener>) -> Registry {
        self.openers.insert(transport, opener);
        self
    }

    /// Opens the transport added outside the engine that descriptors name `name` (their
    /// `Transport.Type`, matched ignoring case; it starts with `x-`, else no descriptor can
    /// name it) with `opener` from now on, replacing any opener it had. The opener reads its
    /// own fields from [`Transport::Custom`].
    ///
    /// # Panics
    /// When `name` does not start with `x-` followed by a name: the program registering it
    /// is wrong, and no descriptor could ever reach its opener.
    pub fn register_custom(mut self, name: &str, opener: Arc<dyn Opener>) -> Registry {
        assert!(
            crate::descriptor::is_custom(name),
            "register_custom({name:?}): a transport added outside the engine is named \
             {CUSTOM_PREFIX}<name>, as descriptors' Transport.Type names it"
        );
        self.custom.insert(name.trim().to_ascii_lowercase(), opener);
        self
    }

    /// The transports this registry opens, by name, sorted.
    fn known(&self) -> Vec<&str> {
        let mut known: Vec<&str> = self.openers.keys().map(|t| t.name()).collect();
        known.extend(self.custom.keys().map(String::as_str));
        known.sort_unstable();
        known
    }

    /// The credentials matched against each descriptor's location.
    pub fn with_credentials(mut self, credentials: Credentials) -> Registry {
        self.credentials = credentials;
        self
    }

    /// Lets a `file` sink with the path `-` write to standard output (`engine run`).
    pub fn allowing_stdout(mut self) -> Registry {
        self.allow_stdout = true;
        self
    }

    /// Opens `descriptor` as an input, decoding with `codec`.
    pub fn open_source(
        &self,
        descriptor: &StreamDescriptor,
        codec: &CodecConfig,
    ) -> Result<Box<dyn RecordSource>> {
        self.with_request(descriptor, codec, Direction::Input, |opener, req| {
            opener.open_source(req)
        })
    }

    /// Opens `descriptor` as an output, encoding with `codec`.
    pub fn open_sink(
        &self,
        descriptor: &StreamDescriptor,
        codec: &CodecConfig,
    ) -> Result<Box<dyn RecordSink>> {
        self.with_request(descriptor, codec, Direction::Output, |opener, req| {
            opener.open_sink(req)
        })
    }

    /// Opens `descriptor` as an error output ([`OpenRequest::errors`]), encoding with
    /// `codec`.
    pub fn open_error_sink(
        &self,
        descriptor: &StreamDescriptor,
        codec: &CodecConfig,
    ) -> Result<Box<dyn RecordSink>> {
        self.with_request(descriptor, codec, Direction::Output, |opener, req| {
            opener.open_sink(&OpenRequest {
                errors: true,
                ..*req
            })
        })
    }

    /// Copies the object `descriptor` names to the local file `dest` ([`Opener::fetch_file`]),
    /// with the credential matching its location. Blocking.
    pub fn fetch_file(&self, descriptor: &StreamDescriptor, dest: &Path) -> Result<u64> {
        let codec = descriptor.codec_config();
        self.with_request(descriptor, &codec, Direction::Input, |opener, req| {
            opener.fetch_file(req, dest)
        })
    }

    /// Copies the local file `src` to the object `descriptor` names ([`Opener::store_file`]),
    /// with the credential matching its location. Blocking.
    pub fn store_file(&self, descriptor: &StreamDescriptor, src: &Path) -> Result<u64> {
        let codec = descriptor.codec_config();
        self.with_request(descriptor, &codec, Direction::Output, |opener, req| {
            opener.store_file(req, src)
        })
    }

    /// Opens inputs that follow their stream as it grows, for a deployed model's streams
    /// ([`OpenRequest::follow`]); without it an input ends where its stream ended when
    /// opened, as a batch job reads.
    pub fn following(mut self) -> Registry {
        self.follow = true;
        self
    }

    fn with_request<T>(
        &self,
        descriptor: &StreamDescriptor,
        codec: &CodecConfig,
        direction: Direction,
        open: impl FnOnce(&dyn Opener, &OpenRequest<'_>) -> Result<T>,
    ) -> Result<T> {
        let (name, opener) = match &descriptor.transport {
            Transport::Custom(c) => (
                c.name.as_str(),
                self.custom.get(&c.name.to_ascii_lowercase()),
            ),
            other => {
                let ty = other.transport_type();
                (ty.name(), self.openers.get(&ty))
            }
        };
        let Some(opener) = opener else {
            let why = if matches!(descriptor.transport, Transport::Custom(_)) {
                "no endpoint is registered under that name".to_owned()
            } else {
                format!("{name} endpoints are not supported yet")
            };
            return Err(Error::endpoint(
                name,
                format!("{why} (this engine opens: {})", self.known().join(", ")),
            ));
        };
        // The reading options are the engine's to honour, and the engine cannot tell whether
        // an opener written outside it does: refused rather than read as if absent.
        if let (Transport::Custom(_), Direction::Input) = (&descriptor.transport, direction) {
            let d = descriptor;
            let asked = [
                ("Loop", d.looping),
                ("SkipTo", d.skip_to.is_some()),
                ("SkipToRecord", d.skip_to_record.is_some()),
            ];
            if let Some((field, _)) = asked.iter().find(|(_, set)| *set) {
                return Err(Error::descriptor(
                    *field,
                    format!("the {name} endpoint is not given reading options"),
                ));
            }
        }
        let credential = descriptor
            .transport
            .location()
            .and_then(|(host, path)| self.credentials.matching(&host, &path));
        let req = OpenRequest {
            descriptor,
            codec,
            direction,
            credential,
            allow_stdout: self.allow_stdout,
            errors: false,
            follow: self.follow,
        };
        open(opener.as_ref(), &req)
    }
}

/// Refuses the reading options the built-in endpoints do not implement yet, so a descriptor
/// asking for one is never read as if it had not. (`Loop` they implement: [`looping`].)
fn no_reading_options(req: &OpenRequest<'_>) -> Result<()> {
    let d = req.descriptor;
    let ty = d.transport.transport_type();
    let asked = [
        ("SkipTo", d.skip_to.is_some()),
        ("SkipToRecord", d.skip_to_record.is_some()),
    ];
    match asked.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(Error::descriptor(
            *field,
            format!("the {ty} endpoint does not support it yet"),
        )),
        None => Ok(()),
    }
}

/// The input `open` opens, read again from its start each time it ends when the descriptor
/// says `Loop`.
fn looping(
    req: &OpenRequest<'_>,
    open: impl Fn() -> Result<Box<dyn RecordSource>> + Send + Sync + 'static,
) -> Result<Box<dyn RecordSource>> {
    if req.descriptor.looping {
        Ok(Box::new(Looping::new(Arc::new(open))?))
    } else {
        open()
    }
}

/// `file`: a local path (a folder, for an input).
struct FileOpener;

impl Opener for FileOpener {
    fn open_source(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSource>> {
        let Transport::File { path } = &req.descriptor.transport else {
            return Err(cannot_serve(req));
        };
        no_reading_options(req)?;
        let (path, codec) = (std::path::PathBuf::from(path), req.codec.clone());
        // A folder is read file after file, in name order.
        looping(req, move || -> Result<Box<dyn RecordSource>> {
            Ok(if path.is_dir() {
                Box::new(FolderSource::open(&path, &codec)?)
            } else {
                Box::new(FileSource::open(&path, &codec)?)
            })
        })
    }

    fn open_sink(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSink>> {
        let Transport::File { path } = &req.descriptor.transport else {
            return Err(cannot_serve(req));
        };
        Ok(Box::new(if path == "-" && req.allow_stdout {
            FileSink::stdout(req.codec)?
        } else {
            FileSink::create(Path::new(path), req.codec)?
        }))
    }

    fn fetch_file(&self, req: &OpenRequest<'_>, dest: &Path) -> Result<u64> {
        let Transport::File { path } = &req.descriptor.transport else {
            return Err(cannot_copy(req));
        };
        std::fs::copy(path, dest)
            .map_err(|e| Error::io(format!("cannot copy {path} to {}", dest.display()), e))
    }

    fn store_file(&self, req: &OpenRequest<'_>, src: &Path) -> Result<u64> {
        let Transport::File { path } = &req.descriptor.transport else {
            return Err(cannot_copy(req));
        };
        let path = Path::new(path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        }
        std::fs::copy(src, path).map_err(|e| {
            Error::io(
                format!("cannot copy {} to {}", src.display(), path.display()),
                e,
            )
        })
    }
}

/// `inline`: the descriptor's `Data`, one message per string.
struct InlineOpener;

impl Opener for InlineOpener {
    fn open_source(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSource>> {
        let Transport::Inline { data } = &req.descriptor.transport else {
            return Err(cannot_serve(req));
        };
        no_reading_options(req)?;
        let messages: Vec<Vec<u8>> = data.iter().map(|s| s.as_bytes().to_vec()).collect();
        let codec = req.codec.clone();
        looping(req, move || -> Result<Box<dyn RecordSource>> {
            Ok(Box::new(InlineSource::new(messages.clone(), codec.clone())))
        })
    }
}

/// `discard`: records dropped, counted.
struct DiscardOpener;

impl Opener for DiscardOpener {
    fn open_sink(&self, _req: &OpenRequest<'_>) -> Result<Box<dyn RecordSink>> {
        Ok(Box::new(DiscardSink::default()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use codecs::Encoding;

    use super::*;

    /// Remembers the credential it was handed, then opens a discard sink.
    #[derive(Default)]
    struct Recording(Mutex<Vec<Option<Credential>>>);

    impl Opener for Recording {
        fn open_sink(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSink>> {
            if let Ok(mut seen) = self.0.lock() {
                seen.push(req.credential.cloned());
            }
            Ok(Box::new(DiscardSink::default()))
        }
    }

    fn credential(host: &str, path: Option<&str>, token: &str) -> Credential {
        let mut c = Credential::for_host(host);
        c.path = path.map(str::to_owned);
        c.token = Some(token.to_owned());
        c
    }

    #[test]
    fn an_opener_gets_the_credential_matching_the_location() {
        let recording = Arc::new(Recording::default());
        let registry = Registry::default()
            .register(TransportType::Kafka, recording.clone())
            .with_credentials(Credentials::new(vec![
                credential("broker", None, "any-topic"),
                credential("broker", Some("/scores"), "scores"),
                credential("elsewhere", None, "other"),
            ]));
        for short in [
            "kafka:broker:9092/scores.json",
            "kafka:broker:9092/audit.json",
            "kafka:nobody:9092/scores.json",
        ] {
            let d = StreamDescriptor::parse(short).unwrap();
            registry.open_sink(&d, &d.codec_config()).unwrap();
        }
        let seen = recording.0.lock().unwrap();
        let tokens: Vec<Option<&str>> = seen
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.token.as_deref()))
            .collect();
        assert_eq!(tokens, [Some("scores"), Some("any-topic"), None]);
    }

    #[test]
    fn whole_files_copy_through_the_opener_or_are_refused_by_transport() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a.bin"),
            dir.path().join("sub/b.bin"),
            dir.path().join("c.bin"),
        );
        std::fs::write(&a, b"weights").unwrap();
        let registry = Registry::default();
        let to_b = StreamDescriptor::parse(&format!("file:{}", b.display())).unwrap();
        assert_eq!(registry.store_file(&to_b, &a).unwrap(), 7);
        assert_eq!(registry.fetch_file(&to_b, &c).unwrap(), 7);
        assert_eq!(std::fs::read(&c).unwrap(), b"weights");
        let inline = StreamDescriptor::parse("inline:1,2").unwrap();
        let e = registry.fetch_file(&inline, &c).unwrap_err().to_string();
        assert!(e.contains("inline cannot copy whole files"), "{e}");
    }

    #[test]
    fn a_transport_without_an_opener_is_refused_by_name() {
        let registry = Registry::default();
        for (short, name) in [
            ("kafka:broker:9092/scores.json", "Kafka"),
            ("s3://bucket/in.csv", "S3"),
            ("hdfs://nn:8020/in.json", "HDFS"),
            ("https://example.com/in.json", "HTTP"),
        ] {
            let d = StreamDescriptor::parse(short).unwrap();
            let err = registry
                .open_source(&d, &d.codec_config())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains(&format!("{name} endpoints are not supported yet")),
                "{short}: {err}"
            );
        }
    }

    #[test]
    fn a_transport_added_outside_the_engine_opens_by_its_name() {
        let recording = Arc::new(Recording::default());
        let registry = Registry::default().register_custom("x-queue", recording.clone());
        let d = StreamDescriptor::parse(
            r#"{"Transport": {"Type": "X-Queue", "Key": "scores"}, "Encoding": "json"}"#,
        )
        .unwrap();
        let Transport::Custom(c) = &d.transport else {
            panic!("{d:?}");
        };
        assert_eq!(c.fields.get("Key"), Some(&serde_json::json!("scores")));
        assert_eq!(StreamDescriptor::from_json(&d.to_json()).unwrap(), d);
        registry.open_sink(&d, &d.codec_config()).unwrap();
        assert_eq!(recording.0.lock().unwrap().len(), 1);

        let other = StreamDescriptor::parse(r#"{"Transport": "x-other"}"#).unwrap();
        let err = registry
            .open_sink(&other, &other.codec_config())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("x-other: no endpoint is registered under that name")
                && err.contains("x-queue"),
            "{err}"
        );
        let mut secret = StreamDescriptor::parse(
            r#"{"Transport": {"Type": "x-queue", "Password": "secret://pw", "Depth": 3}}"#,
        )
        .unwrap();
        secret
            .resolve_secrets(|n| (n == "pw").then(|| "hunter2".to_owned()))
            .unwrap();
        let Transport::Custom(c) = &secret.transport else {
            panic!("{secret:?}");
        };
        assert_eq!(
            c.fields.get("Password"),
            Some(&serde_json::json!("hunter2"))
        );
        let shown = secret.to_json().to_string();
        assert!(
            shown.contains("secret://pw") && !shown.contains("hunter2"),
            "{shown}"
        );
        let looped = StreamDescriptor::parse(r#"{"Transport": "x-queue", "Loop": true}"#).unwrap();
        let err = registry
            .open_source(&looped, &looped.codec_config())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("'Loop'"), "{err}");
        for odd in ["€", "x€", "é"] {
            let err = StreamDescriptor::parse(&serde_json::json!({ "Transport": odd }).to_string())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("unknown transport"), "{odd}: {err}");
        }
        let typo = StreamDescriptor::parse(r#"{"Transport": "queue"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(typo.contains("unknown transport 'queue'"), "{typo}");
    }

    #[test]
    fn a_direction_a_transport_cannot_serve_is_refused() {
        let registry = Registry::default();
        let discard = StreamDescriptor::parse("discard:").unwrap();
        let err = registry
            .open_source(&discard, &discard.codec_config())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("discard cannot be an input"), "{err}");
    }

    #[test]
    fn reading_options_the_endpoints_lack_are_refused_by_field() {
        let registry = Registry::default();
        for (text, field) in [
            (
                r#"{"Transport": {"Type": "file", "Path": "in.json"}, "SkipTo": 10}"#,
                "SkipTo",
            ),
            (
                r#"{"Transport": {"Type": "inline", "Data": ["1"]}, "SkipToRecord": 1}"#,
                "SkipToRecord",
            ),
        ] {
            let d = StreamDescriptor::parse(text).unwrap();
            let err = registry
                .open_source(&d, &d.codec_config())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains(&format!("field '{field}'")) && err.contains("not support it yet"),
                "{text}: {err}"
            );
        }
    }

    async fn read_all(source: &mut Box<dyn RecordSource>, at_most: usize) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(batch) = source.read_batch(2).await.unwrap() {
            for item in batch {
                match item {
                    runtime_core::ReadItem::Record(r) => seen.push(format!(
                        "{}@{}",
                        serde_json::to_string(&r.value).unwrap(),
                        r.position.origin.unwrap_or_default()
                    )),
                    runtime_core::ReadItem::Rejected(r) => seen.push(format!("bad {}", r.position)),
                }
            }
            if seen.len() >= at_most {
                break;
            }
        }
        seen
    }

    #[tokio::test]
    async fn a_folder_is_read_file_after_file_in_name_order_links_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "3\n").unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "1\n2\n").unwrap();
        std::fs::write(other.path().join("secret.jsonl"), "99\n").unwrap();
        std::os::unix::fs::symlink(
            other.path().join("secret.jsonl"),
            dir.path().join("c.jsonl"),
        )
        .unwrap();
        let d = StreamDescriptor::file(dir.path().display().to_string(), Encoding::Json);
        let mut source = Registry::default()
            .open_source(&d, &d.codec_config())
            .unwrap();
        let a = dir.path().join("a.jsonl").display().to_string();
        let b = dir.path().join("b.jsonl").display().to_string();
        assert_eq!(
            read_all(&mut source, 100).await,
            [format!("1@{a}"), format!("2@{a}"), format!("3@{b}")]
        );
    }

    #[tokio::test]
    async fn loop_reads_an_input_again_and_an_empty_one_ends() {
        let looping = StreamDescriptor::parse(
            r#"{"Transport": {"Type": "inline", "Data": ["1", "2", "3"]}, "Loop": true}"#,
        )
        .unwrap();
        let mut source = Registry::default()
            .open_source(&looping, &looping.codec_config())
            .unwrap();
        let seen = read_all(&mut source, 7).await;
        assert_eq!(seen[..7], ["1@", "2@", "3@", "1@", "2@", "3@", "1@"]);

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.jsonl");
        std::fs::write(&empty, "").unwrap();
        let d = StreamDescriptor::parse(&format!(
            r#"{{"Transport": {{"Type": "file", "Path": "{}"}}, "Loop": true}}"#,
            empty.display()
        ))
        .unwrap();
        let mut source = Registry::default()
            .open_source(&d, &d.codec_config())
            .unwrap();
        assert!(read_all(&mut source, 1).await.is_empty());
    }

    #[tokio::test]
    async fn inline_data_and_files_open_through_the_registry() {
        let registry = Registry::default();
        let inline = StreamDescriptor::parse(r#"inline:{"a":1},{"a":2}"#).unwrap();
        let mut source = registry
            .open_source(&inline, &inline.codec_config())
            .unwrap();
        let batch = source.read_batch(10).await.unwrap().unwrap_or_default();
        assert_eq!(batch.len(), 2);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let out = StreamDescriptor::file(path.display().to_string(), Encoding::Json);
        let mut sink = registry.open_sink(&out, &out.codec_config()).unwrap();
        let report = sink.finish().await.unwrap();
        assert_eq!(report.records, 0);
        assert!(path.exists());

        // `-` is a file named `-` unless the registry allows standard output.
        let dash = StreamDescriptor::file("-", Encoding::Json);
        assert_eq!(
            Registry::default()
                .allowing_stdout()
                .open_sink(&dash, &dash.codec_config())
                .unwrap()
                .describe(),
            "stdout"
        );
    }
}
