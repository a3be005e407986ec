//! The servers the object-store tests run against (moto for S3, a Python file server for
//! HTTP) and a client of their own to put objects there and look at what the endpoints left.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::sync::Arc;

use endpoints::{Registry, StreamDescriptor};
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use runtime_core::{ReadItem, RecordSource, Value};
use test_servers::{free_port, python, wait_listening, Reaped, S3Server};

/// The keys the tests sign with (moto takes any, unless started with authentication).
pub const KEY_ID: &str = "AKIATESTKEY";
pub const SECRET: &str = "test-secret-Zq8sW3";

/// moto, in memory.
pub struct Moto {
    pub server: S3Server,
}

impl Moto {
    pub fn start() -> Moto {
        Moto {
            server: S3Server::start(),
        }
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// A client of the test's own for `bucket`.
    pub fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        client(&self.endpoint(), bucket, KEY_ID, SECRET)
    }

    pub fn bucket(&self, bucket: &str) {
        self.server.create_bucket(bucket);
    }

    /// The descriptor of `s3://bucket/key` on this server, keys in the descriptor.
    pub fn descriptor(&self, bucket: &str, key: &str, extra: &str) -> StreamDescriptor {
        StreamDescriptor::parse(&format!(
            r#"{{"Transport": {{"Type": "S3", "Bucket": "{bucket}", "ObjectKey": "{key}",
                 "EndpointUrl": "{}", "AccessKeyID": "{KEY_ID}",
                 "SecretAccessKey": "{SECRET}"}}{extra}}}"#,
            self.endpoint()
        ))
        .unwrap()
    }
}

pub fn client(endpoint: &str, bucket: &str, id: &str, secret: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(id)
            .with_secret_access_key(secret)
            .build()
            .unwrap(),
    )
}

pub async fn put(store: &Arc<dyn ObjectStore>, key: &str, bytes: Vec<u8>) {
    store
        .put(&Path::from(key), PutPayload::from(bytes))
        .await
        .unwrap();
}

pub async fn get(store: &Arc<dyn ObjectStore>, key: &str) -> Vec<u8> {
    store
        .get(&Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// Every key of the bucket, sorted.
pub async fn keys(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let mut k: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    k.sort();
    k
}

/// The multipart uploads in progress in `bucket` (moto answers an unsigned listing).
pub fn uploads_in_progress(moto: &Moto, bucket: &str) -> usize {
    let answer = test_servers::http(
        moto.server.address(),
        &format!("GET /{bucket}?uploads HTTP/1.1"),
    );
    answer.matches("<Upload>").count()
}

/// The registry the engine would have, with `settings`.
pub fn registry(settings: endpoint_store::StoreSettings) -> Registry {
    endpoint_store::register(Registry::default(), settings)
}

/// Settings for tests: small parts, quick to give up on a server that is not there.
pub fn settings() -> endpoint_store::StoreSettings {
    endpoint_store::StoreSettings {
        part_bytes: 5 << 20,
        max_retries: 1,
        retry_timeout: std::time::Duration::from_secs(3),
        ..Default::default()
    }
}

/// Every item of a source, as `value@origin` (or `bad position: reason`).
pub async fn drain(source: &mut Box<dyn RecordSource>) -> runtime_core::Result<Vec<String>> {
    let mut seen = Vec::new();
    while let Some(batch) = source.read_batch(500).await? {
        for item in batch {
            seen.push(match item {
                ReadItem::Record(r) => format!(
                    "{}@{}",
                    serde_json::to_string(&r.value).unwrap(),
                    r.position.origin.unwrap_or_default()
                ),
                ReadItem::Rejected(r) => format!("bad {}", r),
            });
        }
    }
    Ok(seen)
}

/// The values of every record of a source.
pub async fn values(source: &mut Box<dyn RecordSource>) -> runtime_core::Result<Vec<Value>> {
    let mut out = Vec::new();
    while let Some(batch) = source.read_batch(1000).await? {
        for item in batch {
            match item {
                ReadItem::Record(r) => out.push(r.value),
                ReadItem::Rejected(r) => {
                    return Err(runtime_core::Error::endpoint("values", r.to_string()))
                }
            }
        }
    }
    Ok(out)
}

/// moto on `port`, in memory, stopped when dropped.
pub fn moto_on(port: u16) -> Reaped {
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
    let mut child = Reaped(child);
    wait_listening(&mut child.0, &format!("127.0.0.1:{port}"), "moto_server");
    child
}

/// moto requiring signed requests from a user it knows: the returned keys are that user's.
pub struct AuthMoto {
    _child: Reaped,
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
}

impl AuthMoto {
    /// moto lets the first three requests through unsigned (creating the user, its key and
    /// its policy, done here with boto3), then checks every signature.
    pub fn start(bucket: &str) -> AuthMoto {
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
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} -m moto.server: {e}"));
        let mut child = Reaped(child);
        wait_listening(&mut child.0, &address, "moto_server");
        let endpoint = format!("http://{address}");
        let script = format!(
            r#"
import boto3, json
kw = dict(endpoint_url="{endpoint}", region_name="us-east-1",
          aws_access_key_id="x", aws_secret_access_key="y")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="engine")
k = iam.create_access_key(UserName="engine")["AccessKey"]
iam.put_user_policy(UserName="engine", PolicyName="all", PolicyDocument=json.dumps(
    {{"Version": "2012-10-17",
      "Statement": [{{"Effect": "Allow", "Action": "*", "Resource": "*"}}]}}))
s3 = boto3.client("s3", endpoint_url="{endpoint}", region_name="us-east-1",
                  aws_access_key_id=k["AccessKeyId"], aws_secret_access_key=k["SecretAccessKey"])
s3.create_bucket(Bucket="{bucket}")
s3.put_object(Bucket="{bucket}", Key="in.jsonl", Body=b'{{"a": 1}}\n')
print(k["AccessKeyId"], k["SecretAccessKey"])
"#
        );
        let out = Command::new(&python)
            .arg("-c")
            .arg(script)
            .output()
            .expect("boto3 runs");
        assert!(
            out.status.success(),
            "setting moto's user up failed (pip install boto3): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut words = text.split_whitespace();
        let key_id = words.next().unwrap().to_owned();
        let secret = words.next().unwrap().to_owned();
        AuthMoto {
            _child: child,
            endpoint,
            key_id,
            secret,
        }
    }
}
