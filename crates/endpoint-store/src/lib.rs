//! Object stores as endpoints of the model runtime, through `object_store`: S3 and
//! S3-compatible servers (inputs, outputs, whole-file copies), HDFS through WebHDFS
//! (`object-store-webhdfs`; the same) and HTTP(S) GET (inputs and fetched files).
//!
//! A program adds them to its registry with the engine's AWS settings:
//!
//! ```no_run
//! let registry = endpoint_store::register(endpoints::Registry::default(), Default::default());
//! ```
//!
//! and descriptors name them by the transports `S3` (`s3://bucket/key`), `HDFS`
//! (`hdfs://namenode:8020/path`, `webhdfs://host:9870/path`) and `HTTP`
//! (`https://host/path`).
//!
//! - Inputs (`read`): an object is read as records flow, its GET stream bridged into the
//!   blocking reader the file endpoint's decoder reads on the blocking pool; a key ending in
//!   `/` reads every object under it in key order. A transfer cut in the middle is taken up
//!   where it stopped. A store that cannot be reached for now is
//!   `runtime_core::Error::Unavailable` (the job retries); a missing
//!   bucket or object, or access denied, is fatal and names the store, bucket and key.
//! - Outputs (`write`): records encoded by the file endpoint's sink into an upload, a
//!   multipart one past one part; one object completes when the sink finishes, a prefix
//!   (`ObjectKey` ending in `/`) gets an object per flush that has records in it.
//! - Whole files (`copy`): `Opener::fetch_file` / `store_file`, streamed to and from disk.
//!
//! Everything past `target::locate` works on an `Arc<dyn ObjectStore>` and a path: another
//! store is one more arm there.
//!
//! Credentials, first found wins: the descriptor's `AccessKeyID`/`SecretAccessKey` (or a
//! URL's `user:password@`), the registry's `Credential` for the bucket (or host), then the
//! engine's [`AwsSettings`] (S3). Secrets are never in `describe()`, errors or logs.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use endpoints::descriptor::{Direction, Transport, TransportType};
use endpoints::{Looping, OpenRequest, Opener, Registry};
use runtime_core::{Error, RecordSink, RecordSource, Result};

mod copy;
mod error;
mod read;
mod settings;
mod target;
mod write;

pub use settings::{
    AwsSettings, HdfsSettings, StoreSettings, DEFAULT_PARTS_IN_FLIGHT, DEFAULT_PART_BYTES,
    DEFAULT_ROLL_BYTES,
};

/// Adds the `S3`, `HTTP` and `HDFS` (WebHDFS) transports to `registry`.
pub fn register(registry: Registry, settings: StoreSettings) -> Registry {
    let stores = Arc::new(Stores::new(settings));
    registry
        .register(TransportType::S3, stores.clone())
        .register(TransportType::Hdfs, stores.clone())
        .register(TransportType::Http, stores)
}

/// Opens `S3`, `HTTP` and `HDFS` descriptors.
pub struct Stores {
    settings: Arc<StoreSettings>,
}

impl Stores {
    pub fn new(settings: StoreSettings) -> Stores {
        Stores {
            settings: Arc::new(settings),
        }
    }
}

/// The refusal of a Parquet object, until the codecs read Parquet by random access.
pub(crate) fn parquet_refusal(name: &str) -> Error {
    Error::endpoint(
        name,
        "reading Parquet from S3, HDFS or HTTP is not supported yet: copy the object to a \
         local file and read that",
    )
}

fn is_parquet(key: &str) -> bool {
    key.to_ascii_lowercase().ends_with(".parquet")
}

impl Opener for Stores {
    fn open_source(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSource>> {
        let d = req.descriptor;
        if d.skip_to_record.is_some() {
            return Err(Error::descriptor(
                "SkipToRecord",
                format!(
                    "the {} endpoint does not support it yet",
                    d.transport.transport_type()
                ),
            ));
        }
        let at = target::locate(req, &self.settings)?;
        // The name ends as the key does (an HTTP document's, without its query, as its path).
        let name = at.name();
        if is_parquet(&name) {
            return Err(parquet_refusal(&name));
        }
        if at.is_prefix() && d.skip_to.is_some() {
            return Err(Error::descriptor(
                "SkipTo",
                "a byte offset needs one object, not a prefix",
            ));
        }
        let (codec, settings, skip) = (req.codec.clone(), self.settings.clone(), d.skip_to);
        let open = move || -> Result<Box<dyn RecordSource>> {
            Ok(if at.is_prefix() {
                Box::new(read::PrefixSource::new(
                    at.clone(),
                    codec.clone(),
                    settings.clone(),
                ))
            } else {
                Box::new(
                    read::ObjectSource::new(at.clone(), codec.clone(), settings.clone())
                        .starting_at(skip.unwrap_or(0)),
                )
            })
        };
        if d.looping {
            Ok(Box::new(Looping::new(Arc::new(open))?))
        } else {
            open()
        }
    }

    fn open_sink(&self, req: &OpenRequest<'_>) -> Result<Box<dyn RecordSink>> {
        if matches!(req.descriptor.transport, Transport::Http { .. }) {
            return Err(Error::descriptor(
                "Transport.Type",
                "HTTP cannot be an output (it only reads)",
            ));
        }
        let at = target::locate(req, &self.settings)?;
        if is_parquet(&at.key) {
            return Err(Error::endpoint(
                at.name(),
                "writing Parquet to S3 or HDFS is not supported yet: write a local file and \
                 store that",
            ));
        }
        Ok(if at.is_prefix() {
            Box::new(write::RollingSink::open(
                at,
                req.codec,
                self.settings.clone(),
            )?)
        } else {
            Box::new(write::ObjectSink::open(at, req.codec, &self.settings)?)
        })
    }

    fn fetch_file(&self, req: &OpenRequest<'_>, dest: &std::path::Path) -> Result<u64> {
        let at = target::locate(req, &self.settings)?;
        copy::fetch(&at, dest, &self.settings)
    }

    fn store_file(&self, req: &OpenRequest<'_>, src: &std::path::Path) -> Result<u64> {
        if req.direction == Direction::Output
            && matches!(req.descriptor.transport, Transport::Http { .. })
        {
            return Err(Error::descriptor(
                "Transport.Type",
                "HTTP cannot store files (it only reads)",
            ));
        }
        let at = target::locate(req, &self.settings)?;
        copy::store(&at, src, &self.settings)
    }
}
