//! Every built-in endpoint passes the conformance kit: the file source and sink (plain files
//! in a temporary folder), the inline source and the discard sink, each opened through the
//! registry from a stream descriptor as a job opens it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use codecs::{CodecConfig, Encoding};
use endpoint_kit::{
    check_sink, check_source, Check, OpenOptions, SinkFixture, SinkTraits, SourceFixture,
    SourceTraits,
};
use endpoints::{InlineSource, Registry, StreamDescriptor};
use runtime_core::{Error, ReadItem, RecordSink, RecordSource, Result, Value};

/// Plain files in a temporary folder, one per stream.
struct Files {
    dir: tempfile::TempDir,
    next: AtomicU64,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
            next: AtomicU64::new(0),
        }
    }

    fn fresh(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("stream-{n}.jsonl"))
    }
}

fn file_descriptor(path: &std::path::Path) -> StreamDescriptor {
    StreamDescriptor::file(path.display().to_string(), Encoding::Json)
}

fn io(e: std::io::Error) -> Error {
    Error::io("the fixture's file", e)
}

#[async_trait]
impl SourceFixture for Files {
    type Stream = PathBuf;

    fn traits(&self) -> SourceTraits {
        SourceTraits {
            ends: true,
            resumes: false,
        }
    }

    async fn create(&self, messages: &[Vec<u8>]) -> Result<PathBuf> {
        let path = self.fresh();
        let mut bytes = Vec::new();
        for m in messages {
            bytes.extend_from_slice(m);
            bytes.push(b'\n');
        }
        tokio::fs::write(&path, bytes).await.map_err(io)?;
        Ok(path)
    }

    async fn open(&self, path: &PathBuf, options: &OpenOptions) -> Result<Box<dyn RecordSource>> {
        let d = file_descriptor(path);
        let mut codec = d.codec_config();
        codec.max_record_bytes = options.max_record_bytes;
        Registry::default().open_source(&d, &codec)
    }
}

#[async_trait]
impl SinkFixture for Files {
    type Destination = PathBuf;

    fn traits(&self) -> SinkTraits {
        SinkTraits {
            keeps: true,
            breaks: true,
        }
    }

    async fn create(&self) -> Result<PathBuf> {
        Ok(self.fresh())
    }

    async fn open(&self, path: &PathBuf) -> Result<Box<dyn RecordSink>> {
        let d = file_descriptor(path);
        Registry::default().open_sink(&d, &d.codec_config())
    }

    async fn read_back(&self, path: &PathBuf) -> Result<Vec<Value>> {
        let d = file_descriptor(path);
        let mut codec = d.codec_config();
        codec.max_record_bytes = 128 << 20;
        let mut source = Registry::default().open_source(&d, &codec)?;
        let mut values = Vec::new();
        while let Some(batch) = source.read_batch(1000).await? {
            for item in batch {
                match item {
                    ReadItem::Record(r) => values.push(r.value),
                    ReadItem::Rejected(r) => {
                        return Err(Error::endpoint("read back", r.to_string()))
                    }
                }
            }
        }
        Ok(values)
    }

    /// A full disk: `/dev/full` takes the bytes and fails them with ENOSPC.
    async fn open_broken(&self) -> Result<Box<dyn RecordSink>> {
        let d = file_descriptor(std::path::Path::new("/dev/full"));
        Registry::default().open_sink(&d, &d.codec_config())
    }
}

/// Inline data, one message per string, as a descriptor's `Data` gives it.
struct Inline;

#[async_trait]
impl SourceFixture for Inline {
    type Stream = Vec<Vec<u8>>;

    fn traits(&self) -> SourceTraits {
        SourceTraits {
            ends: true,
            resumes: false,
        }
    }

    async fn create(&self, messages: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        Ok(messages.to_vec())
    }

    async fn open(
        &self,
        messages: &Vec<Vec<u8>>,
        options: &OpenOptions,
    ) -> Result<Box<dyn RecordSource>> {
        let data: Vec<String> = messages
            .iter()
            .map(|m| String::from_utf8(m.clone()).unwrap())
            .collect();
        if data.is_empty() {
            // A descriptor's Data must hold a record; the endpoint itself takes none.
            let mut codec = CodecConfig::new(Encoding::Json);
            codec.max_record_bytes = options.max_record_bytes;
            return Ok(Box::new(InlineSource::new(Vec::new(), codec)));
        }
        let d = StreamDescriptor::new(
            endpoints::descriptor::Transport::Inline { data },
            Encoding::Json,
        );
        let mut codec = d.codec_config();
        codec.max_record_bytes = options.max_record_bytes;
        Registry::default().open_source(&d, &codec)
    }
}

/// `discard:`: keeps nothing, cannot break.
struct Discard;

#[async_trait]
impl SinkFixture for Discard {
    type Destination = ();

    fn traits(&self) -> SinkTraits {
        SinkTraits {
            keeps: false,
            breaks: false,
        }
    }

    async fn create(&self) -> Result<()> {
        Ok(())
    }

    async fn open(&self, _: &()) -> Result<Box<dyn RecordSink>> {
        let d = StreamDescriptor::parse("discard:")?;
        Registry::default().open_sink(&d, &d.codec_config())
    }
}

fn skipped(report: &endpoint_kit::Report) -> Vec<Check> {
    report.skipped.iter().map(|(c, _)| *c).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_source_conforms() -> std::result::Result<(), endpoint_kit::Error> {
    let report = check_source(&Files::new()).await?;
    assert_eq!(
        skipped(&report),
        [
            Check::AcksOnlyAfterFlush,
            Check::NoAckForFailedWrite,
            Check::RestartResumes
        ],
        "a file acknowledges nothing, so only the checks of acknowledgements are skipped"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_sink_conforms() -> std::result::Result<(), endpoint_kit::Error> {
    let report = check_sink(&Files::new()).await?;
    assert_eq!(
        skipped(&report),
        [Check::UndecodableBytes, Check::RestartResumes],
        "only the checks of reading are skipped"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inline_source_conforms() -> std::result::Result<(), endpoint_kit::Error> {
    let report = check_source(&Inline).await?;
    assert_eq!(report.passed.len(), 6, "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_discard_sink_conforms() -> std::result::Result<(), endpoint_kit::Error> {
    let report = check_sink(&Discard).await?;
    assert_eq!(
        report.passed,
        [
            Check::AcksOnlyAfterFlush,
            Check::EmptyStream,
            Check::CancelMidStream
        ],
        "{report}"
    );
    Ok(())
}
