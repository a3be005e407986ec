//! The servers the object-store tests run against (moto for S3, a Python file server for
//! HTTP), the descriptors naming their objects, and what the tests read sources with.
#![allow(dead_code)]

use std::sync::Arc;

use endpoints::{Registry, StreamDescriptor};
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;
use runtime_core::{ReadItem, RecordSource, Value};
use test_servers::S3Server;

/// The keys the tests sign with (moto takes any, unless started with authentication).
pub const KEY_ID: &str = "AKIATESTKEY";
pub const SECRET: &str = "test-secret-Zq8sW3";

/// moto, in memory; `test_servers::S3Server`'s own client puts and looks at objects.
pub struct Moto(S3Server);

impl Moto {
    pub fn start() -> Moto {
        Moto(S3Server::start())
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

impl std::ops::Deref for Moto {
    type Target = S3Server;

    fn deref(&self) -> &S3Server {
        &self.0
    }
}

/// An S3 client signing with `id` and `secret`, for a server that checks signatures.
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
