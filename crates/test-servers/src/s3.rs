//! An S3-compatible server in memory: moto's server mode.

use crate::{free_port, http, python_module, wait_listening, Reaped};

/// An S3-compatible server (moto) on a free loopback port, in memory, stopped when dropped.
/// It takes any access key and secret, and unsigned requests too; region `us-east-1`.
pub struct S3Server {
    _child: Reaped,
    address: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let mut child = python_module(
            "moto.server",
            &["-H", "127.0.0.1", "-p", &port.to_string()],
            "the S3-compatible server moto is missing: pip install \"moto[server]\" boto3 \
             (scripts/requirements-test.txt; scripts/setup installs it)",
        );
        wait_listening(&mut child.0, &address, "moto_server");
        S3Server {
            _child: child,
            address,
        }
    }

    /// `http://127.0.0.1:PORT`, what S3 clients take as their endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Creates `bucket` (a bare unsigned PUT, which moto takes).
    pub fn create_bucket(&self, bucket: &str) {
        let answer = http(&self.address, &format!("PUT /{bucket} HTTP/1.1"));
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "creating the bucket {bucket}: {answer}"
        );
    }
}
