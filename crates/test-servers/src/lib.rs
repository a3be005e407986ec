//! The real servers the workspace's tests run against: each started by the test on a free
//! loopback port from what `scripts/setup` installs, and stopped when its handle is dropped.
//! A missing server fails the test loudly, saying how to install it; nothing is skipped.
//!
//! - [`S3Server`]: an S3-compatible server in memory (moto, PyPI `moto[server]`).
//! - [`PostgresServer`]: a private PostgreSQL cluster (Debian's `postgresql`).
//! - [`MariaDbServer`]: a private MariaDB server (Debian's `mariadb-server`).
//! - [`WebHdfsServer`]: a WebHDFS namenode and datanode over a temporary folder (in process).
//! - [`SparkCluster`]: a Spark standalone master and worker (pyspark's `spark-class`).
//! - [`HttpFiles`]: a folder's files over HTTP (Python's `http.server`), with redirects,
//!   chosen statuses and Basic or bearer authentication.
//!
//! A test crate takes this as a dev-dependency; transports' own test support (a Kafka
//! broker, a database) builds on [`free_port`] and [`wait_listening`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod http;
mod mariadb;
mod postgres;
mod s3;
mod spark;
mod webhdfs;

pub use http::HttpFiles;
pub use mariadb::MariaDbServer;
pub use postgres::PostgresServer;
pub use s3::S3Server;
pub use spark::{hadoop_aws_jars, s3a_settings, spark_home, SparkCluster};
pub use webhdfs::{WebHdfsOptions, WebHdfsRequest, WebHdfsServer};

/// The Python the project builds with (`scripts/env.sh` sets `PYO3_PYTHON`), which
/// `scripts/setup` installs the Python-packaged servers into.
pub fn python() -> String {
    std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits (30 s at most) until something listens on `address`, failing if `child` exits
/// first.
pub fn wait_listening(child: &mut Child, address: &str, what: &str) {
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

/// One HTTP/1.1 request without a body to `address`; the answer's text, headers and all.
pub fn http(address: &str, request_line: &str) -> String {
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

/// A child process killed and reaped when dropped.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `python -m <module> <args>` quietly, failing with `missing` when Python cannot
/// even start it or the module exits at once (not installed).
pub fn python_module(module: &str, args: &[&str], missing: &str) -> Reaped {
    let python = python();
    let mut child = Command::new(&python)
        .arg("-m")
        .arg(module)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} -m {module} ({e}): {missing}"));
    std::thread::sleep(Duration::from_millis(200));
    if let Ok(Some(status)) = child.try_wait() {
        panic!("{python} -m {module} exited at start ({status}): {missing}");
    }
    Reaped(child)
}
