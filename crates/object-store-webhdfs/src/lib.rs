//! HDFS as an [`object_store::ObjectStore`], through the WebHDFS REST API that Hadoop
//! namenodes (`http://namenode:9870/webhdfs/v1`) and HttpFS gateways serve: how enterprise
//! clusters let services outside the cluster read and write their files.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use object_store::{ObjectStore, ObjectStoreExt};
//! use object_store_webhdfs::{split_url, WebHdfsBuilder};
//!
//! let (server, path) = split_url("hdfs://namenode:8020/data/in/part-0.csv")?;
//! let store = WebHdfsBuilder::new()
//!     .with_url(server)
//!     .with_namenode("namenode:8020", "http://namenode:9870")
//!     .with_user("etl")
//!     .build()?;
//! let bytes = store.get(&path).await?.bytes().await?;
//! # Ok(()) }
//! ```
//!
//! - [`WebHdfsBuilder`]: the server from a `hdfs://`, `webhdfs://`, `swebhdfs://` or
//!   `http(s)://` URL (an `hdfs://` URL's namenode RPC address mapped to its HTTP address),
//!   a root folder, simple authentication (`user.name=`) or a delegation token
//!   (`delegation=`). Kerberos (SPNEGO) is not supported yet: a server that asks for it
//!   (401 with `WWW-Authenticate: Negotiate`) fails every operation with
//!   [`Error::KerberosNotSupported`].
//! - [`WebHdfs`]: the store; its documentation maps each operation onto WebHDFS's.
//!   Reads and writes stream: a get is the datanode's answer as it arrives, a put sends
//!   the payload's chunks as they are, a multipart upload keeps only the parts given and
//!   not yet appended, a copy streams from one datanode to the other.
//! - [`Error`]: what went wrong, the `source` of the `object_store::Error` the store
//!   returns; Hadoop's `RemoteException` is mapped to `NotFound` (`FileNotFoundException`),
//!   `AlreadyExists` (`FileAlreadyExistsException`), `PermissionDenied`
//!   (`AccessControlException`) or `Generic`, with the server's message.
//!
//! Not here: retries (errors say whether one may help, [`Error::is_retriable`]), HA
//! failover between namenodes, Kerberos, checksums, attributes and tags on objects.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod builder;
mod client;
mod error;
mod store;
mod upload;

pub use builder::{
    split_url, WebHdfsBuilder, DEFAULT_ENDPOINT_PATH, DEFAULT_HTTPS_PORT, DEFAULT_HTTP_PORT,
    DEFAULT_RPC_PORT,
};
pub use error::Error;
pub use store::WebHdfs;
