//! The S3 source and sink pass the conformance kit against a real S3-compatible server
//! (moto, started here): the source reading objects, the sink writing prefixes (an output to
//! one object cannot be durable before it finishes, and the kit flushes as it goes).

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use endpoint_kit::{
    check_sink, check_source, Check, OpenOptions, SinkFixture, SinkTraits, SourceFixture,
    SourceTraits,
};
use endpoints::Registry;
use runtime_core::{RecordSink, RecordSource, Result, Value};
use support::Moto;

const BUCKET: &str = "kit";

struct Objects {
    moto: Moto,
    registry: Registry,
    next: AtomicU64,
}

impl Objects {
    fn new() -> Objects {
        let moto = Moto::start();
        moto.create_bucket(BUCKET);
        Objects {
            moto,
            registry: support::registry(support::settings()),
            next: AtomicU64::new(0),
        }
    }

    fn fresh(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

#[async_trait]
impl SourceFixture for Objects {
    type Stream = String;

    fn traits(&self) -> SourceTraits {
        SourceTraits {
            ends: true,
            resumes: false,
        }
    }

    async fn create(&self, messages: &[Vec<u8>]) -> Result<String> {
        let key = format!("in/stream-{}.jsonl", self.fresh());
        let mut bytes = Vec::new();
        for m in messages {
            bytes.extend_from_slice(m);
            bytes.push(b'\n');
        }
        self.moto.put(BUCKET, &key, &bytes);
        Ok(key)
    }

    async fn open(&self, key: &String, options: &OpenOptions) -> Result<Box<dyn RecordSource>> {
        let d = self.moto.descriptor(BUCKET, key, "");
        let mut codec = d.codec_config();
        codec.max_record_bytes = options.max_record_bytes;
        self.registry.open_source(&d, &codec)
    }
}

#[async_trait]
impl SinkFixture for Objects {
    type Destination = String;

    fn traits(&self) -> SinkTraits {
        SinkTraits {
            keeps: true,
            breaks: true,
        }
    }

    async fn create(&self) -> Result<String> {
        Ok(format!("out/dest-{}/", self.fresh()))
    }

    async fn open(&self, prefix: &String) -> Result<Box<dyn RecordSink>> {
        let d = self
            .moto
            .descriptor(BUCKET, prefix, r#", "Encoding": "json""#);
        self.registry.open_sink(&d, &d.codec_config())
    }

    /// Every object under the prefix, in key order, read back through the source.
    async fn read_back(&self, prefix: &String) -> Result<Vec<Value>> {
        let d = self
            .moto
            .descriptor(BUCKET, prefix, r#", "Encoding": "json""#);
        let mut codec = d.codec_config();
        codec.max_record_bytes = 128 << 20;
        let mut source = self.registry.open_source(&d, &codec)?;
        support::values(&mut source).await
    }

    /// A bucket that does not exist: every upload is refused.
    async fn open_broken(&self) -> Result<Box<dyn RecordSink>> {
        let d = self
            .moto
            .descriptor("no-such-bucket", "out/", r#", "Encoding": "json""#);
        self.registry.open_sink(&d, &d.codec_config())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_s3_source_conforms() -> std::result::Result<(), endpoint_kit::Error> {
    let objects = Objects::new();
    let report = check_source(&objects).await?;
    assert_eq!(
        report.skipped.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [
            Check::AcksOnlyAfterFlush,
            Check::NoAckForFailedWrite,
            Check::RestartResumes
        ],
        "an object acknowledges nothing, so only the checks of acknowledgements are skipped"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_s3_prefix_sink_conforms() -> std::result::Result<(), endpoint_kit::Error> {
    let objects = Objects::new();
    let report = check_sink(&objects).await?;
    assert_eq!(
        report.skipped.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [Check::UndecodableBytes, Check::RestartResumes],
        "only the checks of reading are skipped"
    );
    Ok(())
}
