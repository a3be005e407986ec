//! The Redis Streams endpoint passes the conformance kit against a real `redis-server`,
//! started here on a free loopback port without persistence. A missing `redis-server` fails
//! the test: `scripts/setup` installs it (the Debian package `redis-server`).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use endpoint_kit::{
    check_sink, check_source, Check, OpenOptions, SinkFixture, SinkTraits, SourceFixture,
    SourceTraits,
};
use endpoints::{Registry, StreamDescriptor};
use runtime_core::{Error, RecordSink, RecordSource, Result, Value};

/// A `redis-server` of the test's own, stopped when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    async fn start() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install the Debian package redis-server \
                     (scripts/setup does)"
                )
            });
        let url = format!("redis://127.0.0.1:{port}/");
        let mut server = Server { child, url };
        let client = redis::Client::open(server.url.as_str()).unwrap();
        for _ in 0..200 {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    return server;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server exited at start: {status}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not answer on port {port}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Streams on one server, each under a key of its own, opened through a registry the
/// endpoint was added to.
struct Streams {
    server: Server,
    registry: Registry,
    next: AtomicU64,
}

impl Streams {
    async fn new() -> Streams {
        Streams {
            server: Server::start().await,
            registry: redis_streams::register(Registry::default()),
            next: AtomicU64::new(0),
        }
    }

    fn fresh(&self) -> String {
        format!("stream-{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn descriptor(&self, key: &str) -> StreamDescriptor {
        StreamDescriptor::parse(&format!(
            r#"{{"Transport": {{"Type": "x-redis-streams", "Url": "{}", "Stream": "{key}",
                 "Group": "kit", "Consumer": "one"}},
               "Encoding": "json", "Batching": {{"Watermark": 100, "NagleTime": 50}}}}"#,
            self.server.url
        ))
        .unwrap()
    }

    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.server.url.as_str())
            .map_err(|e| Error::endpoint_source("fixture", e))?;
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| Error::endpoint_source("fixture", e))
    }
}

fn redis_error(e: redis::RedisError) -> Error {
    Error::endpoint_source("fixture", e)
}

#[async_trait]
impl SourceFixture for Streams {
    type Stream = String;

    fn traits(&self) -> SourceTraits {
        SourceTraits {
            ends: false,
            resumes: true,
        }
    }

    async fn create(&self, messages: &[Vec<u8>]) -> Result<String> {
        let key = self.fresh();
        let mut c = self.connection().await?;
        for m in messages {
            redis::cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("data")
                .arg(m.as_slice())
                .query_async::<String>(&mut c)
                .await
                .map_err(redis_error)?;
        }
        Ok(key)
    }

    async fn open(&self, key: &String, options: &OpenOptions) -> Result<Box<dyn RecordSource>> {
        let d = self.descriptor(key);
        let mut codec = d.codec_config();
        codec.max_record_bytes = options.max_record_bytes;
        self.registry.open_source(&d, &codec)
    }
}

#[async_trait]
impl SinkFixture for Streams {
    type Destination = String;

    fn traits(&self) -> SinkTraits {
        SinkTraits {
            keeps: true,
            breaks: true,
        }
    }

    async fn create(&self) -> Result<String> {
        Ok(self.fresh())
    }

    async fn open(&self, key: &String) -> Result<Box<dyn RecordSink>> {
        let d = self.descriptor(key);
        self.registry.open_sink(&d, &d.codec_config())
    }

    async fn read_back(&self, key: &String) -> Result<Vec<Value>> {
        let mut c = self.connection().await?;
        let entries: Vec<(String, Vec<(String, Vec<u8>)>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .map_err(redis_error)?;
        let mut codec = self.descriptor(key).codec_config();
        codec.max_record_bytes = usize::MAX;
        entries
            .into_iter()
            .map(|(id, fields)| {
                let data = fields
                    .into_iter()
                    .find(|(k, _)| k == "data")
                    .map(|(_, v)| v)
                    .ok_or_else(|| Error::endpoint("fixture", format!("entry {id} has no data")))?;
                codecs::decode_message(&codec, &data)
                    .map_err(|e| Error::endpoint("fixture", format!("entry {id}: {e}")))
            })
            .collect()
    }

    /// A key holding a string, not a stream: every `XADD` to it fails (WRONGTYPE).
    async fn open_broken(&self) -> Result<Box<dyn RecordSink>> {
        let key = self.fresh();
        let mut c = self.connection().await?;
        redis::cmd("SET")
            .arg(&key)
            .arg("not a stream")
            .query_async::<()>(&mut c)
            .await
            .map_err(redis_error)?;
        SinkFixture::open(self, &key).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_redis_streams_source_conforms() -> std::result::Result<(), endpoint_kit::Error> {
    let streams = Streams::new().await;
    let report = check_source(&streams).await?;
    assert!(report.skipped.is_empty(), "every check applies: {report}");
    assert_eq!(report.passed.len(), Check::ALL.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_redis_streams_sink_conforms() -> std::result::Result<(), endpoint_kit::Error> {
    let streams = Streams::new().await;
    let report = check_sink(&streams).await?;
    assert_eq!(
        report.skipped.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [Check::UndecodableBytes, Check::RestartResumes],
        "only the checks of reading are skipped"
    );
    Ok(())
}
