//! The WebHDFS REST protocol: request URLs, authentication, the namenode's redirects to
//! datanodes, the two-step writes, and the server's errors read into [`Error`].

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Body, Method, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::Error;

/// How the client says who it is. Its `Debug` hides the delegation token.
#[derive(Clone, Default)]
pub(crate) struct Auth {
    pub(crate) user: Option<String>,
    pub(crate) proxy_user: Option<String>,
    pub(crate) delegation_token: Option<String>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("user", &self.user)
            .field("proxy_user", &self.proxy_user)
            .field(
                "delegation_token",
                &self.delegation_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Auth {
    /// The query parameters every request carries: a delegation token, else `user.name`;
    /// `doas` with either.
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        match (&self.delegation_token, &self.user) {
            (Some(token), _) => params.push(("delegation", token.clone())),
            (None, Some(user)) => params.push(("user.name", user.clone())),
            (None, None) => {}
        }
        if let Some(doas) = &self.proxy_user {
            params.push(("doas", doas.clone()));
        }
        params
    }
}

/// Who answers a request: the server the store was built for, or a datanode it redirected
/// to. Messages name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Namenode,
    Datanode,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Namenode => "namenode",
            Role::Datanode => "datanode",
        }
    }
}

/// Characters of an HDFS path segment sent as they are; every other byte is
/// percent-encoded (`;` would start path parameters in Jetty, `%` an escape).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The name suffix of the files multipart uploads and copies write before renaming them into
/// place (Hadoop's own `hdfs dfs -put` uses it too). Listings leave such files out.
pub(crate) const TEMPORARY_SUFFIX: &str = "._COPYING_";

/// Answers longer than this are not read whole for an error message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Redirects followed for one request (a namenode to a datanode is one).
const MAX_REDIRECTS: usize = 4;

/// One HDFS file or folder's status, as `GETFILESTATUS` and listings give it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileStatus {
    #[serde(default)]
    pub(crate) path_suffix: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) length: u64,
    #[serde(default)]
    pub(crate) modification_time: i64,
    #[serde(default)]
    pub(crate) file_id: Option<u64>,
}

impl FileStatus {
    pub(crate) fn is_file(&self) -> bool {
        self.kind == "FILE"
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.kind == "DIRECTORY"
    }

    /// An entity tag made of what changes when the file does (HDFS keeps none): its inode,
    /// modification time and length.
    pub(crate) fn e_tag(&self) -> String {
        match self.file_id {
            Some(id) => format!("{id:x}-{:x}-{:x}", self.modification_time, self.length),
            None => format!("{:x}-{:x}", self.modification_time, self.length),
        }
    }
}

#[derive(Deserialize)]
struct FileStatusAnswer {
    #[serde(rename = "FileStatus")]
    status: FileStatus,
}

#[derive(Deserialize)]
struct FileStatuses {
    #[serde(rename = "FileStatus", default)]
    statuses: Vec<FileStatus>,
}

#[derive(Deserialize)]
struct ListAnswer {
    #[serde(rename = "FileStatuses")]
    statuses: FileStatuses,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartialListing {
    partial_listing: ListAnswer,
    #[serde(default)]
    remaining_entries: u64,
}

#[derive(Deserialize)]
struct BatchAnswer {
    #[serde(rename = "DirectoryListing")]
    listing: PartialListing,
}

#[derive(Deserialize)]
struct BooleanAnswer {
    boolean: bool,
}

#[derive(Deserialize)]
struct RemoteExceptionAnswer {
    #[serde(rename = "RemoteException")]
    remote: RemoteException,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoteException {
    #[serde(default)]
    exception: String,
    #[serde(default)]
    java_class_name: String,
    #[serde(default)]
    message: String,
}

/// A page of a folder's listing: its entries and whether more follow.
pub(crate) struct Page {
    pub(crate) entries: Vec<FileStatus>,
    pub(crate) more: bool,
}

/// The HTTP side of a store: one per server, shared by its clones.
pub(crate) struct Client {
    http: reqwest::Client,
    /// For requests that send data: without the read timeout, which would fire while a
    /// large body is still being sent (the server answers only once it has it all).
    http_upload: reqwest::Client,
    /// `scheme://host:port` of the namenode (or HttpFS server).
    base: Url,
    /// `base` as text, for messages.
    address: String,
    endpoint_path: String,
    /// The HDFS folder object paths are relative to: `/a/b`, or empty for `/`.
    root: String,
    auth: Auth,
    /// `auth`'s query parameters, added to every request and to redirects that lack them.
    auth_params: Vec<(&'static str, String)>,
    /// Set once the server refused `LISTSTATUS_BATCH` (an old or HttpFS server): whole
    /// listings from then on.
    no_batch_listing: AtomicBool,
    /// Makes temporary names unique within this store (with a random part across stores).
    temporaries: AtomicU64,
    random: u64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebHdfs")
            .field("address", &self.address)
            .field("endpoint_path", &self.endpoint_path)
            .field("root", &self.root)
            .field("auth", &self.auth)
            .finish()
    }
}

/// `scheme://host:port` of a URL, what messages name a server by (never its query).
fn origin(url: &Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port_or_known_default() {
        out.push_str(&format!(":{port}"));
    }
    out
}

impl Client {
    pub(crate) fn new(
        (http, http_upload): (reqwest::Client, reqwest::Client),
        base: Url,
        endpoint_path: String,
        root: String,
        auth: Auth,
    ) -> Client {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(std::process::id().into());
        Client {
            address: origin(&base),
            http,
            http_upload,
            base,
            endpoint_path,
            root,
            auth_params: auth.params(),
            auth,
            no_batch_listing: AtomicBool::new(false),
            temporaries: AtomicU64::new(0),
            random: hasher.finish(),
        }
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn root(&self) -> &str {
        &self.root
    }

    /// The absolute HDFS path of an object path (`/` for the root itself).
    pub(crate) fn hdfs_path(&self, location: &object_store::path::Path) -> String {
        let mut path = self.root.clone();
        if !location.as_ref().is_empty() {
            path.push('/');
            path.push_str(location.as_ref());
        }
        if path.is_empty() {
            path.push('/');
        }
        path
    }

    /// A sibling of `hdfs` to write before renaming onto it: hidden (a leading `.`, which
    /// Hadoop's input formats skip), unique, and ending in [`TEMPORARY_SUFFIX`].
    pub(crate) fn temporary_path(&self, hdfs: &str) -> String {
        let n = self.temporaries.fetch_add(1, Ordering::Relaxed);
        let (parent, name) = match hdfs.rfind('/') {
            Some(i) => (&hdfs[..i], &hdfs[i + 1..]),
            None => ("", hdfs),
        };
        format!(
            "{parent}/.{name}.{:016x}{n:x}{TEMPORARY_SUFFIX}",
            self.random
        )
    }

    /// The request URL of `op` on `hdfs` with `params` and the authentication.
    fn url(&self, hdfs: &str, op: &str, params: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        let mut path = self.endpoint_path.clone();
        for segment in hdfs.split('/').filter(|s| !s.is_empty()) {
            path.push('/');
            path.extend(utf8_percent_encode(segment, SEGMENT));
        }
        if hdfs.ends_with('/') || path == self.endpoint_path {
            path.push('/');
        }
        url.set_path(&path);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("op", op);
            for (k, v) in params {
                query.append_pair(k, v);
            }
            for (k, v) in &self.auth_params {
                query.append_pair(k, v);
            }
        }
        url
    }

    /// A redirect's `Location` resolved against the URL redirected, with this client's
    /// authentication added where the server left it out (a datanode checks it too).
    fn resolve(&self, from: &Url, role: Role, location: &str) -> Result<Url, Error> {
        let mut url = from.join(location).map_err(|e| Error::Protocol {
            role: role.name(),
            address: origin(from),
            what: format!("a redirect to an invalid Location: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Protocol {
                role: role.name(),
                address: origin(from),
                what: format!("a redirect to a {}: URL", url.scheme()),
            });
        }
        let present: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let mut missing = self
            .auth_params
            .iter()
            .filter(|(k, _)| !present.iter().any(|p| p == k))
            .peekable();
        if missing.peek().is_some() {
            let mut query = url.query_pairs_mut();
            for (k, v) in missing {
                query.append_pair(k, v);
            }
        }
        tracing::debug!(from = %origin(from), to = %origin(&url), "WebHDFS redirect");
        Ok(url)
    }

    /// The target of a redirect answer.
    fn redirected(&self, from: &Url, role: Role, response: &Response) -> Result<Url, Error> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Protocol {
                role: role.name(),
                address: origin(from),
                what: format!("a redirect ({}) without a Location", response.status()),
            })?;
        self.resolve(from, role, location)
    }

    /// Sends one request; failing to connect or to get an answer is [`Error::Unreachable`].
    async fn send(
        &self,
        role: Role,
        method: Method,
        url: Url,
        body: Option<(Body, Option<u64>)>,
    ) -> Result<Response, Error> {
        let address = origin(&url);
        let http = if body.is_some() {
            &self.http_upload
        } else {
            &self.http
        };
        let mut request = http.request(method, url);
        request = match body {
            None => request.header(CONTENT_LENGTH, 0).body(Vec::new()),
            Some((body, length)) => {
                let request = request
                    .header(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    )
                    .body(body);
                match length {
                    Some(n) => request.header(CONTENT_LENGTH, n),
                    None => request,
                }
            }
        };
        request.send().await.map_err(|e| Error::Unreachable {
            role: role.name(),
            address,
            source: e.without_url(),
        })
    }

    /// The error an unsuccessful answer stands for: Hadoop's `RemoteException`, a Kerberos
    /// challenge, or the status and the start of the body.
    async fn failure(&self, role: Role, response: Response) -> Error {
        let status = response.status();
        let address = origin(response.url());
        let negotiate = status == StatusCode::UNAUTHORIZED
            && response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .any(|v| {
                    v.to_str()
                        .is_ok_and(|v| v.trim_start().to_ascii_lowercase().starts_with("negotiate"))
                });
        if negotiate {
            return Error::KerberosNotSupported {
                role: role.name(),
                address,
            };
        }
        let body = read_limited(response).await;
        if let Ok(answer) = serde_json::from_slice::<RemoteExceptionAnswer>(&body) {
            let remote = answer.remote;
            let exception = if remote.exception.is_empty() {
                remote
                    .java_class_name
                    .rsplit(['.', '$'])
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            } else {
                remote.exception
            };
            return Error::Remote {
                role: role.name(),
                address,
                status: status.as_u16(),
                exception,
                message: remote.message,
            };
        }
        let text = String::from_utf8_lossy(&body);
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = match text.char_indices().nth(300) {
            Some((i, _)) => format!("{}...", &text[..i]),
            None => text,
        };
        Error::Status {
            role: role.name(),
            address,
            status: status.as_u16(),
            body: text,
        }
    }

    /// A metadata operation answered by the namenode with JSON (`None` for an empty body).
    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        hdfs: &str,
        op: &str,
        params: &[(&str, String)],
    ) -> Result<Option<T>, Error> {
        let url = self.url(hdfs, op, params);
        let response = self.send(Role::Namenode, method, url, None).await?;
        if !response.status().is_success() {
            return Err(self.failure(Role::Namenode, response).await);
        }
        let address = origin(response.url());
        let body = response.bytes().await.map_err(|e| Error::Unreachable {
            role: "namenode",
            address: address.clone(),
            source: e.without_url(),
        })?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| Error::Protocol {
                role: "namenode",
                address,
                what: format!("{op} answered JSON that does not parse: {e}"),
            })
    }

    fn missing(&self, op: &str) -> Error {
        Error::Protocol {
            role: "namenode",
            address: self.address.clone(),
            what: format!("{op} answered no JSON"),
        }
    }

    /// `GETFILESTATUS`; `None` when nothing is at `hdfs`.
    pub(crate) async fn status(&self, hdfs: &str) -> Result<Option<FileStatus>, Error> {
        match self
            .json::<FileStatusAnswer>(Method::GET, hdfs, "GETFILESTATUS", &[])
            .await
        {
            Ok(Some(answer)) => Ok(Some(answer.status)),
            Ok(None) => Err(self.missing("GETFILESTATUS")),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of `hdfs`'s listing, after the entry named `after`; `None` when nothing is at
    /// `hdfs`. A file lists as itself, with an empty `path_suffix`.
    pub(crate) async fn list_page(
        &self,
        hdfs: &str,
        after: Option<&str>,
    ) -> Result<Option<Page>, Error> {
        if !self.no_batch_listing.load(Ordering::Relaxed) {
            let params = [("startAfter", after.unwrap_or_default().to_owned())];
            match self
                .json::<BatchAnswer>(Method::GET, hdfs, "LISTSTATUS_BATCH", &params)
                .await
            {
                Ok(Some(answer)) => {
                    return Ok(Some(Page {
                        entries: answer.listing.partial_listing.statuses.statuses,
                        more: answer.listing.remaining_entries > 0,
                    }))
                }
                Ok(None) => return Err(self.missing("LISTSTATUS_BATCH")),
                Err(e) if e.is_not_found() => return Ok(None),
                Err(Error::Remote {
                    exception, message, ..
                }) if exception == "UnsupportedOperationException"
                    || (exception == "IllegalArgumentException"
                        && message.contains("LISTSTATUS_BATCH")) =>
                {
                    // A server without batched listings (HttpFS, Hadoop before 2.8).
                    self.no_batch_listing.store(true, Ordering::Relaxed);
                    if after.is_some() {
                        return Err(Error::Protocol {
                            role: "namenode",
                            address: self.address.clone(),
                            what: "LISTSTATUS_BATCH was refused in the middle of a listing".into(),
                        });
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match self
            .json::<ListAnswer>(Method::GET, hdfs, "LISTSTATUS", &[])
            .await
        {
            Ok(Some(answer)) => Ok(Some(Page {
                entries: answer.statuses.statuses,
                more: false,
            })),
            Ok(None) => Err(self.missing("LISTSTATUS")),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `MKDIRS` of `hdfs` and its parents.
    pub(crate) async fn mkdirs(&self, hdfs: &str) -> Result<(), Error> {
        let answer = self
            .json::<BooleanAnswer>(Method::PUT, hdfs, "MKDIRS", &[])
            .await?;
        match answer {
            Some(BooleanAnswer { boolean: true }) => Ok(()),
            _ => Err(Error::Protocol {
                role: "namenode",
                address: self.address.clone(),
                what: format!("MKDIRS {hdfs} answered false"),
            }),
        }
    }

    /// `DELETE` (not recursive): whether something was deleted.
    pub(crate) async fn delete(&self, hdfs: &str) -> Result<bool, Error> {
        let answer = self
            .json::<BooleanAnswer>(
                Method::DELETE,
                hdfs,
                "DELETE",
                &[("recursive", "false".into())],
            )
            .await?;
        Ok(answer.is_some_and(|a| a.boolean))
    }

    /// `RENAME` with `renameoptions` (Hadoop's `rename2`: `OVERWRITE` replaces a file at
    /// `to`, `NONE` refuses one). `Ok(false)` when a server that only knows the old rename
    /// answered `false`.
    pub(crate) async fn rename(
        &self,
        from: &str,
        to: &str,
        overwrite: bool,
    ) -> Result<bool, Error> {
        let options = if overwrite { "OVERWRITE" } else { "NONE" };
        let answer = self
            .json::<serde_json::Value>(
                Method::PUT,
                from,
                "RENAME",
                &[
                    ("destination", to.to_owned()),
                    ("renameoptions", options.to_owned()),
                ],
            )
            .await?;
        Ok(!matches!(
            answer.as_ref().and_then(|a| a.get("boolean")),
            Some(serde_json::Value::Bool(false))
        ))
    }

    /// `OPEN` of `length` bytes at `offset`, following the namenode's redirect to a
    /// datanode; the answer's body is the data.
    pub(crate) async fn open(
        &self,
        hdfs: &str,
        offset: u64,
        length: u64,
    ) -> Result<Response, Error> {
        let mut url = self.url(
            hdfs,
            "OPEN",
            &[
                ("offset", offset.to_string()),
                ("length", length.to_string()),
            ],
        );
        let mut role = Role::Namenode;
        for _ in 0..MAX_REDIRECTS {
            let response = self.send(role, Method::GET, url.clone(), None).await?;
            if response.status().is_redirection() {
                url = self.redirected(&url, role, &response)?;
                role = Role::Datanode;
                continue;
            }
            if !response.status().is_success() {
                return Err(self.failure(role, response).await);
            }
            return Ok(response);
        }
        Err(Error::Protocol {
            role: role.name(),
            address: origin(&url),
            what: format!("more than {MAX_REDIRECTS} redirects for OPEN {hdfs}"),
        })
    }

    /// A two-step write (`CREATE` or `APPEND`): the namenode gets the request without data
    /// and answers with a redirect to a datanode, which gets the data.
    async fn write(
        &self,
        method: Method,
        hdfs: &str,
        op: &str,
        params: &[(&str, String)],
        body: Body,
        length: Option<u64>,
    ) -> Result<(), Error> {
        let url = self.url(hdfs, op, params);
        let response = self
            .send(Role::Namenode, method.clone(), url.clone(), None)
            .await?;
        let target = if response.status().is_redirection() {
            self.redirected(&url, Role::Namenode, &response)?
        } else if response.status().is_success() {
            // `noredirect=true` servers answer 200 with {"Location": ...}; anything else
            // means the namenode did not say where the data goes.
            let address = origin(response.url());
            let body = read_limited(response).await;
            let location = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("Location")?.as_str().map(str::to_owned))
                .ok_or_else(|| Error::Protocol {
                    role: "namenode",
                    address,
                    what: format!("{op} answered without redirecting the data to a datanode"),
                })?;
            self.resolve(&url, Role::Namenode, &location)?
        } else {
            return Err(self.failure(Role::Namenode, response).await);
        };
        let response = self
            .send(Role::Datanode, method, target, Some((body, length)))
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.failure(Role::Datanode, response).await)
        }
    }

    /// `CREATE`: writes `body` (`length` bytes, when known) as the file `hdfs`, replacing
    /// it when `overwrite`, else refusing an existing one (`FileAlreadyExistsException`).
    pub(crate) async fn create(
        &self,
        hdfs: &str,
        body: Body,
        length: Option<u64>,
        overwrite: bool,
    ) -> Result<(), Error> {
        self.write(
            Method::PUT,
            hdfs,
            "CREATE",
            &[("overwrite", overwrite.to_string())],
            body,
            length,
        )
        .await
    }

    /// `APPEND`: adds `body` at the end of the file `hdfs`.
    pub(crate) async fn append(
        &self,
        hdfs: &str,
        body: Body,
        length: Option<u64>,
    ) -> Result<(), Error> {
        self.write(Method::POST, hdfs, "APPEND", &[], body, length)
            .await
    }

    /// The data of an `OPEN` answer as a stream of chunks.
    pub(crate) fn data_stream(
        response: Response,
        hdfs: String,
    ) -> impl futures_util::Stream<Item = Result<Bytes, Error>> + Send + 'static {
        let address = origin(response.url());
        response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| Error::Read {
                path: hdfs.clone(),
                address: address.clone(),
                source: e.without_url(),
            })
        })
    }
}

/// The start of an answer's body, for an error message.
async fn read_limited(response: Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = ERROR_BODY_LIMIT.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    body
}
