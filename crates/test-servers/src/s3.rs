//! An S3-compatible server in memory: moto's server mode, and a client of the tests' own to
//! put objects there and look at what an endpoint left (plain HTTP: not the client the
//! endpoints use, so a test does not check the code under test with itself).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::{free_port, python, python_module, wait_listening, Reaped};

const MISSING: &str = "the S3-compatible server moto is missing: pip install \"moto[server]\" \
                       boto3 (scripts/requirements-test.txt; scripts/setup installs it)";

/// moto serves an object only to a request that says who sends it; without authentication it
/// checks no signature, so any will do.
const ANYONE: &str = "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/s3/aws4_request, \
                      SignedHeaders=host, Signature=0";

/// What a key keeps as it is in a request's path.
const KEY_CHARS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An S3-compatible server (moto) on a loopback port, in memory, stopped when dropped.
/// Region `us-east-1`. Started by [`S3Server::start`] or [`S3Server::start_on`], it takes
/// any access key and secret, and unsigned requests too.
pub struct S3Server {
    _child: Reaped,
    address: String,
    access_key: Option<(String, String)>,
}

impl S3Server {
    /// On a free port.
    pub fn start() -> S3Server {
        Self::start_on(free_port())
    }

    /// On `port`: a server that comes (back) where a client already looks for it.
    pub fn start_on(port: u16) -> S3Server {
        let address = format!("127.0.0.1:{port}");
        let mut child = python_module(
            "moto.server",
            &["-H", "127.0.0.1", "-p", &port.to_string()],
            MISSING,
        );
        wait_listening(&mut child.0, &address, "moto_server");
        S3Server {
            _child: child,
            address,
            access_key: None,
        }
    }

    /// One that checks the signature of every request against the keys of the one user it
    /// knows ([`S3Server::access_key`]), with `buckets` made by that user. The requests of
    /// [`S3Server::put`] and the others here are not signed: they are refused.
    pub fn start_signed(buckets: &[&str]) -> S3Server {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let python = python();
        // `python_module` takes no environment: moto reads this one from it.
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} -m moto.server ({e}): {MISSING}"));
        let mut child = Reaped(child);
        wait_listening(&mut child.0, &address, "moto_server");
        // The three requests let through unsigned make the user, its key and its policy.
        let script = r#"
import boto3, json, sys
endpoint, buckets = sys.argv[1], sys.argv[2:]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="x", aws_secret_access_key="y")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="engine")
k = iam.create_access_key(UserName="engine")["AccessKey"]
iam.put_user_policy(UserName="engine", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
kw.update(aws_access_key_id=k["AccessKeyId"], aws_secret_access_key=k["SecretAccessKey"])
s3 = boto3.client("s3", **kw)
for b in buckets:
    s3.create_bucket(Bucket=b)
print(k["AccessKeyId"], k["SecretAccessKey"])
"#;
        let out = Command::new(&python)
            .args(["-c", script, &format!("http://{address}")])
            .args(buckets)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        assert!(
            out.status.success(),
            "setting moto's user up failed (pip install boto3): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace().map(str::to_owned);
        let (Some(id), Some(secret)) = (words.next(), words.next()) else {
            panic!("boto3 printed no access key: {text}");
        };
        S3Server {
            _child: child,
            address,
            access_key: Some((id, secret)),
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

    /// The access key ID and secret of a server from [`S3Server::start_signed`].
    pub fn access_key(&self) -> Option<(&str, &str)> {
        self.access_key
            .as_ref()
            .map(|(id, secret)| (id.as_str(), secret.as_str()))
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.request("PUT", &format!("/{bucket}"), &[]);
        assert_eq!(status, 200, "creating the bucket {bucket}: {}", text(&body));
    }

    /// Puts the object `key` of `bucket`.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let (status, body) = self.request("PUT", &object(bucket, key), bytes);
        assert_eq!(status, 200, "putting s3://{bucket}/{key}: {}", text(&body));
    }

    /// The object `key` of `bucket`, or `None` when there is none.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.request("GET", &object(bucket, key), &[]) {
            (200, body) => Some(body),
            (404, _) => None,
            (status, body) => panic!("getting s3://{bucket}/{key}: {status} {}", text(&body)),
        }
    }

    /// The keys of the objects of `bucket` that start with `prefix`, sorted.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let target = format!(
            "/{bucket}?list-type=2&prefix={}",
            utf8_percent_encode(prefix, NON_ALPHANUMERIC)
        );
        let (status, body) = self.request("GET", &target, &[]);
        let body = text(&body);
        assert_eq!(status, 200, "listing s3://{bucket}/{prefix}: {body}");
        assert!(
            body.contains("<IsTruncated>false</IsTruncated>"),
            "more than one page of keys under s3://{bucket}/{prefix}: {body}"
        );
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>"))
            .map(|(key, _)| unescape(key))
            .collect();
        keys.sort();
        keys
    }

    /// The multipart uploads of `bucket` begun and neither completed nor aborted.
    pub fn uploads_in_progress(&self, bucket: &str) -> usize {
        let (status, body) = self.request("GET", &format!("/{bucket}?uploads"), &[]);
        let body = text(&body);
        assert_eq!(status, 200, "listing the uploads of {bucket}: {body}");
        body.matches("<Upload>").count()
    }

    /// One request with `body`: the answer's status and body.
    fn request(&self, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(&self.address).expect("connect to moto");
        write!(
            s,
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: {ANYONE}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.address,
            body.len()
        )
        .and_then(|()| s.write_all(body))
        .expect("send to moto");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("read moto's answer");
        let end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("moto's answer has no end of headers: {}", text(&answer)));
        let head = text(&answer[..end]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("moto's answer has no status: {head}"));
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "moto answered in chunks, which this client does not read: {head}"
        );
        (status, answer.split_off(end + 4))
    }
}

/// The request path of an object.
fn object(bucket: &str, key: &str) -> String {
    format!("/{bucket}/{}", utf8_percent_encode(key, KEY_CHARS))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The text of an XML element.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_go_in_and_come_back_as_they_were() {
        let s3 = S3Server::start();
        s3.create_bucket("things");
        let odd = "day=1/a b&c+d.txt";
        s3.put("things", odd, b"one");
        s3.put("things", "day=2/x.bin", &[0, 255, 13, 10, 13, 10]);
        s3.put("things", "other", b"");
        assert_eq!(s3.get("things", odd).as_deref(), Some(&b"one"[..]));
        assert_eq!(
            s3.get("things", "day=2/x.bin").as_deref(),
            Some(&[0, 255, 13, 10, 13, 10][..])
        );
        assert_eq!(s3.get("things", "day=3/none"), None);
        assert_eq!(s3.list("things", "day="), [odd, "day=2/x.bin"]);
        assert_eq!(s3.list("things", "").len(), 3);
        assert_eq!(s3.uploads_in_progress("things"), 0);
    }

    #[test]
    fn a_signed_server_gives_its_keys_and_refuses_unsigned_requests() {
        let s3 = S3Server::start_signed(&["locked"]);
        let (id, secret) = s3.access_key().expect("keys");
        assert!(!id.is_empty() && !secret.is_empty());
        let (status, body) = s3.request("GET", &object("locked", "k"), &[]);
        assert_eq!(status, 403, "{}", text(&body));
    }
}
