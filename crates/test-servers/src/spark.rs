//! A Spark standalone cluster: a master and one worker, started with the `spark-class` of
//! the pyspark that `scripts/setup` installs.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, python, wait_listening, Reaped};

const MISSING: &str = "pip install pyspark (scripts/setup does), with Java 17 on PATH";

/// A standalone master and a worker of two cores on loopback; stopped when dropped.
pub struct SparkCluster {
    // The worker goes first, then the master.
    _worker: Reaped,
    _master: Reaped,
    master: String,
    _logs: tempfile::TempDir,
}

impl SparkCluster {
    /// Starts the master, then the worker, and returns once the worker has registered.
    pub fn start() -> SparkCluster {
        let class = spark_home().join("bin").join("spark-class");
        let logs = tempfile::tempdir().unwrap();
        let (port, ui) = (free_port(), free_port());
        let spawn = |args: &[String], log: &str| {
            let out = std::fs::File::create(logs.path().join(log)).unwrap();
            let child = Command::new(&class)
                .args(args)
                .env("SPARK_LOCAL_IP", "127.0.0.1")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {} ({e}): {MISSING}", class.display()));
            Reaped(child)
        };
        let mut master = spawn(
            &[
                "org.apache.spark.deploy.master.Master".into(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--webui-port".into(),
                ui.to_string(),
            ],
            "master.log",
        );
        let address = format!("127.0.0.1:{port}");
        wait_listening(&mut master.0, &address, "the Spark master");
        let url = format!("spark://{address}");
        let worker = spawn(
            &[
                "org.apache.spark.deploy.worker.Worker".into(),
                url.clone(),
                "--host".into(),
                "127.0.0.1".into(),
                "--cores".into(),
                "2".into(),
                "--memory".into(),
                "2g".into(),
                "--webui-port".into(),
                free_port().to_string(),
            ],
            "worker.log",
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        let log = logs.path().join("worker.log");
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Successfully registered with master") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Spark worker did not register with {url}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        SparkCluster {
            _worker: worker,
            _master: master,
            master: url,
            _logs: logs,
        }
    }

    /// `spark://127.0.0.1:PORT`.
    pub fn master(&self) -> &str {
        &self.master
    }
}

/// The Spark that pyspark bundles.
pub fn spark_home() -> PathBuf {
    let python = python();
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, pyspark; print(os.path.dirname(pyspark.__file__))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}): {MISSING}"));
    assert!(
        out.status.success(),
        "{python} has no pyspark ({MISSING}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The jars Spark reads `s3a://` with (hadoop-aws 3.3.1 and the AWS SDK bundle it was built
/// against), which `scripts/setup` takes out of PyPI's sagemaker-pyspark into the project's
/// cache: `MODEL_RUNTIME_CACHE`, else `XDG_CACHE_HOME/model-runtime`, else
/// `~/.cache/model-runtime`.
pub fn hadoop_aws_jars() -> Vec<PathBuf> {
    // As scripts/setup reads them: an empty variable counts as unset.
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let cache = var("MODEL_RUNTIME_CACHE")
        .map(PathBuf::from)
        .or_else(|| var("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("model-runtime")))
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache/model-runtime")))
        .expect("HOME is set");
    let jars: Vec<PathBuf> = ["hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar"]
        .iter()
        .map(|j| cache.join("hadoop-aws").join(j))
        .collect();
    for j in &jars {
        assert!(
            j.is_file(),
            "{} is missing: scripts/setup fetches the hadoop-aws jars",
            j.display()
        );
    }
    jars
}

/// The `spark.hadoop.fs.s3a.*` settings that point Spark's s3a client at an S3-compatible
/// server at `endpoint` (`http://host:port`) with these keys. hadoop-aws 3.3.1 reads a few
/// durations and sizes as plain numbers, where the Hadoop that pyspark bundles defaults them
/// to strings such as "60s": they are given here as numbers.
pub fn s3a_settings(endpoint: &str, access_key: &str, secret: &str) -> Vec<(String, String)> {
    let conf = [
        ("endpoint", endpoint),
        ("path.style.access", "true"),
        ("connection.ssl.enabled", "false"),
        ("access.key", access_key),
        ("secret.key", secret),
        (
            "aws.credentials.provider",
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        ),
        // Plain numbers where hadoop-aws 3.3.1 cannot read pyspark's duration defaults.
        ("threads.keepalivetime", "60"),
        ("connection.establish.timeout", "30000"),
        ("connection.timeout", "200000"),
        ("connection.ttl", "300000"),
        ("multipart.purge.age", "86400"),
        ("retry.interval", "500"),
        ("retry.throttle.interval", "1000"),
        ("assumed.role.session.duration", "1800"),
        ("connection.request.timeout", "0"),
        ("connection.acquisition.timeout", "60000"),
        ("connection.idle.time", "60000"),
        ("multipart.size", "67108864"),
        ("multipart.threshold", "134217728"),
        ("readahead.range", "65536"),
        ("block.size", "33554432"),
    ];
    conf.into_iter()
        .map(|(k, v)| (format!("spark.hadoop.fs.s3a.{k}"), v.to_owned()))
        .collect()
}
