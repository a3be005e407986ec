//! A WebHDFS-compatible server over a temporary folder, for tests of WebHDFS clients.
//!
//! It answers the REST protocol Hadoop's namenodes and datanodes speak (`/webhdfs/v1/<path>?op=`)
//! on two loopback ports: the "namenode" answers metadata operations and redirects `OPEN`,
//! `CREATE` and `APPEND` with a 307 to the "datanode", which moves the data. Checked against
//! Apache Hadoop's own client, `org.apache.hadoop.hdfs.web.WebHdfsFileSystem`
//! (`crates/object-store-webhdfs/tests/hadoop.rs`).
//!
//! What it implements, as HDFS does it: `GETFILESTATUS`, `LISTSTATUS`, `LISTSTATUS_BATCH`
//! (`startAfter`), `GETFILEBLOCKLOCATIONS`, `GETHOMEDIRECTORY`, `OPEN` (`offset`, `length`),
//! `CREATE` (`overwrite`), `APPEND`, `MKDIRS`, `DELETE` (`recursive`), `RENAME` (the old
//! boolean rename, and `renameoptions=NONE|OVERWRITE` as Hadoop's `rename2`); errors as
//! `{"RemoteException": {"exception", "javaClassName", "message"}}` with the status Hadoop's
//! exception handler gives each; simple authentication (`user.name`), delegation tokens
//! (`delegation`) and, as an option, a server that asks for Kerberos (401 with
//! `WWW-Authenticate: Negotiate`). Data answers carry `application/octet-stream`; JSON
//! answers no Content-Type at all (Hadoop's shaded client jars, pyspark's, fail on parsing
//! one: `json_response`). [`WebHdfsOptions::httpfs`] makes it behave as an HttpFS gateway
//! instead. Files are kept in a temporary
//! folder ([`WebHdfsServer::dir`]); owners, permissions and replication are not kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// What the server accepts and how it behaves; [`Default`] is a cluster with simple
/// authentication that requires `user.name`.
#[derive(Clone, Debug, Default)]
pub struct WebHdfsOptions {
    /// Users whose every request is refused with `AccessControlException` (403).
    pub refused_users: Vec<String>,
    /// Delegation tokens the server knows, each with the user it stands for.
    pub delegation_tokens: Vec<(String, String)>,
    /// Requests with neither `user.name` nor `delegation` act as `dr.who` instead of being
    /// refused with 401.
    pub anonymous: bool,
    /// Every request is answered 401 with `WWW-Authenticate: Negotiate`, as a Kerberized
    /// cluster answers a client without a ticket.
    pub kerberos: bool,
    /// The namenode's redirects leave out `user.name` and `delegation`, so only a client that
    /// sends its authentication again to the datanode gets through (the datanode checks it).
    pub redirect_without_auth: bool,
    /// Entries per `LISTSTATUS_BATCH` answer (0: 1000, HDFS's `dfs.ls.limit`).
    pub list_batch: usize,
    /// Behaves as an HttpFS gateway of Hadoop 2 does: one port serves the data itself (`OPEN`
    /// answers with it; `CREATE` and `APPEND` redirect to the same URL with `data=true`,
    /// which takes the data as `application/octet-stream`), `LISTSTATUS_BATCH` is unknown,
    /// and `RENAME` ignores `renameoptions` (the old rename, answering a boolean).
    pub httpfs: bool,
}

/// One request the server answered, for tests to check what a client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebHdfsRequest {
    /// `namenode` or `datanode`.
    pub role: &'static str,
    pub method: String,
    /// The operation, upper case (`OPEN`, `CREATE`...).
    pub op: String,
    /// The HDFS path, decoded.
    pub path: String,
    /// The query's pairs, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Bytes of the request's body.
    pub body_bytes: u64,
}

impl WebHdfsRequest {
    /// The value of the query parameter `name`, if sent.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A WebHDFS namenode and datanode on free loopback ports over a temporary folder, stopped
/// (and the folder removed) when dropped.
pub struct WebHdfsServer {
    namenode: SocketAddr,
    datanode: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct Shared {
    root: PathBuf,
    /// Where `CREATE` writes before moving the file into place.
    staging: PathBuf,
    staged: AtomicUsize,
    options: WebHdfsOptions,
    namenode: SocketAddr,
    datanode: SocketAddr,
    requests: Mutex<Vec<WebHdfsRequest>>,
    fail_next: AtomicUsize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Namenode,
    Datanode,
}

impl WebHdfsServer {
    /// A server with the default options (simple authentication, `user.name` required).
    pub fn start() -> WebHdfsServer {
        WebHdfsServer::start_with(WebHdfsOptions::default())
    }

    pub fn start_with(options: WebHdfsOptions) -> WebHdfsServer {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path().join("fs");
        std::fs::create_dir(&root).expect("the file system's root folder");
        let staging = dir.path().join("staging");
        std::fs::create_dir(&staging).expect("the staging folder");
        let namenode_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let datanode_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        namenode_listener
            .set_nonblocking(true)
            .expect("nonblocking");
        datanode_listener
            .set_nonblocking(true)
            .expect("nonblocking");
        let namenode = namenode_listener.local_addr().expect("address");
        let datanode = datanode_listener.local_addr().expect("address");
        let shared = Arc::new(Shared {
            root,
            staging,
            staged: AtomicUsize::new(0),
            options,
            namenode,
            datanode,
            requests: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(0),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("webhdfs-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a runtime");
                rt.block_on(async move {
                    let nn = tokio::net::TcpListener::from_std(namenode_listener).unwrap();
                    let dn = tokio::net::TcpListener::from_std(datanode_listener).unwrap();
                    let nn_app = Router::new()
                        .fallback(handle)
                        .with_state((state.clone(), Role::Namenode));
                    let dn_app = Router::new()
                        .fallback(handle)
                        .with_state((state, Role::Datanode));
                    let serve = async {
                        let _ = tokio::join!(axum::serve(nn, nn_app), axum::serve(dn, dn_app));
                    };
                    tokio::select! {
                        _ = serve => {}
                        _ = stopped => {}
                    }
                });
                // Connections still open (a client's keep-alive) end with the runtime.
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("the server's thread");
        WebHdfsServer {
            namenode,
            datanode,
            shared,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`: the namenode's HTTP address, what WebHDFS clients are given.
    pub fn url(&self) -> String {
        format!("http://{}", self.namenode)
    }

    /// `webhdfs://127.0.0.1:PORT`, the URL Hadoop's `FileSystem` takes.
    pub fn webhdfs_url(&self) -> String {
        format!("webhdfs://{}", self.namenode)
    }

    /// `127.0.0.1:PORT` of the namenode.
    pub fn address(&self) -> String {
        self.namenode.to_string()
    }

    /// `127.0.0.1:PORT` of the datanode the namenode redirects data to.
    pub fn datanode_address(&self) -> String {
        self.datanode.to_string()
    }

    /// The local folder holding the file system's root `/`.
    pub fn dir(&self) -> &Path {
        &self.shared.root
    }

    /// The requests answered so far, in order.
    pub fn requests(&self) -> Vec<WebHdfsRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Forgets the requests answered so far.
    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// The next `n` requests are answered 503 Service Unavailable, as a gateway in front of
    /// a namenode that is restarting answers.
    pub fn fail_next_requests(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }
}

impl Drop for WebHdfsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A failure as Hadoop's `ExceptionHandler` answers it.
struct Remote {
    status: StatusCode,
    exception: &'static str,
    class: &'static str,
    message: String,
}

impl Remote {
    fn not_found(message: impl Into<String>) -> Remote {
        Remote {
            status: StatusCode::NOT_FOUND,
            exception: "FileNotFoundException",
            class: "java.io.FileNotFoundException",
            message: message.into(),
        }
    }

    fn already_exists(message: impl Into<String>) -> Remote {
        Remote {
            status: StatusCode::FORBIDDEN,
            exception: "FileAlreadyExistsException",
            class: "org.apache.hadoop.fs.FileAlreadyExistsException",
            message: message.into(),
        }
    }

    fn io(message: impl Into<String>) -> Remote {
        Remote {
            status: StatusCode::FORBIDDEN,
            exception: "IOException",
            class: "java.io.IOException",
            message: message.into(),
        }
    }

    fn illegal_argument(message: impl Into<String>) -> Remote {
        Remote {
            status: StatusCode::BAD_REQUEST,
            exception: "IllegalArgumentException",
            class: "java.lang.IllegalArgumentException",
            message: message.into(),
        }
    }

    fn parent_not_directory(message: impl Into<String>) -> Remote {
        Remote {
            status: StatusCode::FORBIDDEN,
            exception: "ParentNotDirectoryException",
            class: "org.apache.hadoop.fs.ParentNotDirectoryException",
            message: message.into(),
        }
    }

    fn response(self) -> Response {
        let body = json!({"RemoteException": {
            "exception": self.exception,
            "javaClassName": self.class,
            "message": self.message,
        }});
        json_response(self.status, &body)
    }
}

/// A JSON answer, sent without a Content-Type: Hadoop's client parses any Content-Type it
/// is given with Jersey's `MediaType`, which the shaded client jars (pyspark's
/// hadoop-client-runtime) cannot load, and then fails every call.
fn json_response(status: StatusCode, body: &Value) -> Response {
    let text = serde_json::to_vec(body).unwrap();
    Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, text.len())
        .body(Body::from(text))
        .unwrap()
}

fn empty_response(status: StatusCode) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .unwrap()
}

fn boolean(b: bool) -> Result<Response, Remote> {
    Ok(json_response(StatusCode::OK, &json!({ "boolean": b })))
}

const PREFIX: &str = "/webhdfs/v1";
const BLOCK_SIZE: u64 = 128 * 1024 * 1024;

/// One request: the operation from its query, run as the namenode or the datanode.
struct Call {
    role: Role,
    method: Method,
    op: String,
    /// The HDFS path, decoded, absolute, without a trailing `/` (but `/` itself).
    path: String,
    /// The request path as sent, still encoded, for the redirect's Location.
    raw_path: String,
    query: Vec<(String, String)>,
    user: String,
    content_type: Option<String>,
}

/// The value of the query parameter `name`: the last one when it is given more than once,
/// as Hadoop's servers read it.
fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Call {
    fn param(&self, name: &str) -> Option<&str> {
        param(&self.query, name)
    }

    fn flag(&self, name: &str, default: bool) -> Result<bool, Remote> {
        match self.param(name) {
            None | Some("") => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(Remote::illegal_argument(format!(
                "Invalid value for webhdfs parameter \"{name}\": {v}"
            ))),
        }
    }

    fn number(&self, name: &str) -> Result<Option<u64>, Remote> {
        match self.param(name) {
            None | Some("") | Some("null") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                Remote::illegal_argument(format!(
                    "Invalid value for webhdfs parameter \"{name}\": {v}"
                ))
            }),
        }
    }
}

async fn handle(State((shared, role)): State<(Arc<Shared>, Role)>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if shared.options.kerberos && !negotiates(&parts.headers) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Negotiate")
            .header(header::CONTENT_TYPE, "text/html;charset=iso-8859-1")
            .body(Body::from(
                "<html><body><h2>HTTP ERROR 401 Authentication required</h2></body></html>",
            ))
            .unwrap();
    }
    if shared
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("Service Unavailable"))
            .unwrap();
    }
    let raw_path = parts.uri.path().to_owned();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let op = param(&query, "op")
        .map(str::to_ascii_uppercase)
        .unwrap_or_default();
    let mut record = WebHdfsRequest {
        role: match role {
            Role::Namenode => "namenode",
            Role::Datanode => "datanode",
        },
        method: parts.method.to_string(),
        op: op.clone(),
        path: String::new(),
        query: query.clone(),
        body_bytes: 0,
    };
    let answer = async {
        let path = hdfs_path(&raw_path)?;
        record.path = path.clone();
        let user = authenticate(&shared.options, &query)?;
        if shared.options.refused_users.contains(&user) {
            return Err(Remote {
                status: StatusCode::FORBIDDEN,
                exception: "AccessControlException",
                class: "org.apache.hadoop.security.AccessControlException",
                message: format!(
                    "Permission denied: user={user}, access=ALL, inode=\"{path}\":hdfs:supergroup:drwxr-xr-x"
                ),
            });
        }
        let call = Call {
            role,
            method: parts.method.clone(),
            op,
            path,
            raw_path: raw_path.clone(),
            query: query.clone(),
            user,
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        dispatch(&shared, &call, body, &mut record.body_bytes).await
    }
    .await;
    shared.requests.lock().unwrap().push(record);
    answer.unwrap_or_else(Remote::response)
}

fn negotiates(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Negotiate "))
}

/// The user a request acts as: its delegation token's, or its `user.name`.
fn authenticate(options: &WebHdfsOptions, query: &[(String, String)]) -> Result<String, Remote> {
    if let Some(token) = param(query, "delegation") {
        return match options.delegation_tokens.iter().find(|(t, _)| t == token) {
            Some((_, user)) => Ok(user.clone()),
            None => Err(Remote {
                status: StatusCode::FORBIDDEN,
                exception: "InvalidToken",
                class: "org.apache.hadoop.security.token.SecretManager$InvalidToken",
                message: "token can't be found in cache".into(),
            }),
        };
    }
    match param(query, "user.name") {
        Some(user) if !user.is_empty() => Ok(user.to_owned()),
        _ if options.anonymous => Ok("dr.who".into()),
        _ => Err(Remote {
            status: StatusCode::UNAUTHORIZED,
            exception: "SecurityException",
            class: "java.lang.SecurityException",
            message: "Failed to obtain user group information: \
                      java.io.IOException: Security enabled but user not authenticated by filter"
                .into(),
        }),
    }
}

/// The HDFS path of a request path `/webhdfs/v1/<path>`, decoded; `..` and `.` refused.
fn hdfs_path(raw: &str) -> Result<String, Remote> {
    let rest = raw
        .strip_prefix(PREFIX)
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .ok_or_else(|| Remote::illegal_argument(format!("not a WebHDFS path: {raw}")))?;
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| Remote::illegal_argument(format!("not UTF-8: {raw}")))?;
    let mut path = String::new();
    for part in decoded.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(Remote::illegal_argument(format!(
                "Invalid path name {decoded}"
            )));
        }
        path.push('/');
        path.push_str(part);
    }
    if path.is_empty() {
        path.push('/');
    }
    Ok(path)
}

impl Shared {
    fn local(&self, hdfs: &str) -> PathBuf {
        let mut p = self.root.clone();
        for part in hdfs.split('/').filter(|p| !p.is_empty()) {
            p.push(part);
        }
        p
    }

    /// The datanode URL a namenode redirects `call` to: the same path and parameters, with
    /// the namenode's address added (and the authentication left out, if so configured).
    fn redirect(&self, call: &Call) -> Response {
        self.redirect_to(
            call,
            self.datanode,
            ("namenoderpcaddress", self.namenode.to_string()),
        )
    }

    /// A redirect of `call` to `to`, with the parameter `extra` added.
    fn redirect_to(&self, call: &Call, to: SocketAddr, extra: (&str, String)) -> Response {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &call.query {
            let auth = k == "user.name" || k == "delegation" || k == "doas";
            if auth && self.options.redirect_without_auth {
                continue;
            }
            query.append_pair(k, v);
        }
        query.append_pair(extra.0, &extra.1);
        let location = format!("http://{to}{}?{}", call.raw_path, query.finish());
        Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, location)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, 0)
            .body(Body::empty())
            .unwrap()
    }
}

async fn dispatch(
    shared: &Shared,
    call: &Call,
    body: Body,
    body_bytes: &mut u64,
) -> Result<Response, Remote> {
    let data_op = matches!(call.op.as_str(), "OPEN" | "CREATE" | "APPEND");
    if call.role == Role::Datanode && !data_op {
        return Err(Remote::illegal_argument(format!(
            "a datanode does not answer {}",
            call.op
        )));
    }
    let expected = match call.op.as_str() {
        "OPEN"
        | "GETFILESTATUS"
        | "LISTSTATUS"
        | "LISTSTATUS_BATCH"
        | "GETFILEBLOCKLOCATIONS"
        | "GETHOMEDIRECTORY" => Method::GET,
        "CREATE" | "MKDIRS" | "RENAME" => Method::PUT,
        "APPEND" => Method::POST,
        "DELETE" => Method::DELETE,
        other => {
            let kind = match call.method {
                Method::PUT => "PutOpParam",
                Method::POST => "PostOpParam",
                Method::DELETE => "DeleteOpParam",
                _ => "GetOpParam",
            };
            return Err(Remote::illegal_argument(format!(
                "Invalid value for webhdfs parameter \"op\": No enum constant \
                 org.apache.hadoop.hdfs.web.resources.{kind}.Op.{other}"
            )));
        }
    };
    if call.method != expected {
        return Err(Remote::illegal_argument(format!(
            "Invalid value for webhdfs parameter \"op\": {} is not a valid {} operation",
            call.op, call.method
        )));
    }
    let local = shared.local(&call.path);
    if shared.options.httpfs {
        return httpfs(shared, call, &local, body, body_bytes).await;
    }
    match (call.role, call.op.as_str()) {
        (Role::Namenode, "CREATE" | "APPEND") => {
            // The two-step protocol: the namenode takes no data, only says where it goes.
            no_data(
                call,
                body,
                body_bytes,
                "of data to the namenode; data goes to the datanode its redirect names",
            )
            .await?;
            if call.op == "APPEND" {
                file_meta(&local, &call.path).await?;
            }
            Ok(shared.redirect(call))
        }
        (Role::Namenode, "OPEN") => {
            file_meta(&local, &call.path).await?;
            Ok(shared.redirect(call))
        }
        (Role::Datanode, "OPEN") => open(call, &local).await,
        (Role::Datanode, "CREATE") => create(shared, call, &local, body, body_bytes).await,
        (Role::Datanode, "APPEND") => append(call, &local, body, body_bytes).await,
        (_, "RENAME") => rename(shared, call, &local, false).await,
        _ => metadata(shared, call, &local).await,
    }
}

/// HttpFS's way: the data on the same port, after a redirect to the same URL with
/// `data=true`.
async fn httpfs(
    shared: &Shared,
    call: &Call,
    local: &Path,
    body: Body,
    body_bytes: &mut u64,
) -> Result<Response, Remote> {
    let data = call.flag("data", false)?;
    match call.op.as_str() {
        "OPEN" => open(call, local).await,
        "CREATE" | "APPEND" if !data => {
            no_data(call, body, body_bytes, "without data=true").await?;
            Ok(shared.redirect_to(call, shared.namenode, ("data", "true".into())))
        }
        "CREATE" | "APPEND" => {
            if call.content_type.as_deref() != Some("application/octet-stream") {
                return Err(Remote::illegal_argument(format!(
                    "Data upload requests must have content-type set to \
                     'application/octet-stream', not {:?}",
                    call.content_type
                )));
            }
            if call.op == "CREATE" {
                create(shared, call, local, body, body_bytes).await
            } else {
                append(call, local, body, body_bytes).await
            }
        }
        "LISTSTATUS_BATCH" => Err(Remote::illegal_argument(
            "Invalid value for webhdfs parameter \"op\": No enum constant \
             org.apache.hadoop.fs.http.client.HttpFSFileSystem.Operation.LISTSTATUS_BATCH",
        )),
        "RENAME" => rename(shared, call, local, true).await,
        _ => metadata(shared, call, local).await,
    }
}

/// The operations a namenode answers itself, all from the namespace.
async fn metadata(shared: &Shared, call: &Call, local: &Path) -> Result<Response, Remote> {
    let local = local.to_owned();
    match call.op.as_str() {
        "GETFILESTATUS" => {
            let meta = meta_or_not_found(&local, &call.path).await?;
            let status = file_status(&local, &meta, "").await;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "FileStatus": status }),
            ))
        }
        "LISTSTATUS" => {
            let statuses = list(&local, &call.path, None, usize::MAX).await?.0;
            Ok(json_response(
                StatusCode::OK,
                &json!({"FileStatuses": {"FileStatus": statuses}}),
            ))
        }
        "LISTSTATUS_BATCH" => {
            let batch = match shared.options.list_batch {
                0 => 1000,
                n => n,
            };
            let after = call.param("startAfter").filter(|s| !s.is_empty());
            let (statuses, remaining) = list(&local, &call.path, after, batch).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"DirectoryListing": {
                    "partialListing": {"FileStatuses": {"FileStatus": statuses}},
                    "remainingEntries": remaining,
                }}),
            ))
        }
        "GETFILEBLOCKLOCATIONS" => {
            let meta = file_meta(&local, &call.path).await?;
            let offset = call.number("offset")?.unwrap_or(0);
            let length = call.number("length")?.unwrap_or(u64::MAX);
            let end = offset.saturating_add(length).min(meta.len());
            let mut blocks = Vec::new();
            let mut start = (offset / BLOCK_SIZE) * BLOCK_SIZE;
            while start < end {
                let len = BLOCK_SIZE.min(meta.len() - start);
                let name = shared.datanode.to_string();
                blocks.push(json!({
                    "cachedHosts": [],
                    "corrupt": false,
                    "hosts": [shared.datanode.ip().to_string()],
                    "length": len,
                    "names": [name],
                    "offset": start,
                    "storageIds": ["DS-test-servers"],
                    "storageTypes": ["DISK"],
                    "topologyPaths": [format!("/default-rack/{name}")],
                }));
                start += BLOCK_SIZE;
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"BlockLocations": {"BlockLocation": blocks}}),
            ))
        }
        "GETHOMEDIRECTORY" => Ok(json_response(
            StatusCode::OK,
            &json!({ "Path": format!("/user/{}", call.user) }),
        )),
        "MKDIRS" => {
            make_dirs(shared, &call.path).await?;
            boolean(true)
        }
        "DELETE" => delete(call, &local).await,
        _ => Err(Remote::illegal_argument(format!(
            "{} is not answered here",
            call.op
        ))),
    }
}

/// The first request of a two-step write, which must carry no data: its bytes are read,
/// counted into `body_bytes`, and refused (`{op} sent N bytes {why}`).
async fn no_data(call: &Call, body: Body, body_bytes: &mut u64, why: &str) -> Result<(), Remote> {
    let mut stream = body.into_data_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        *body_bytes += chunk.len() as u64;
    }
    match *body_bytes {
        0 => Ok(()),
        n => Err(Remote::illegal_argument(format!(
            "{} sent {n} bytes {why}",
            call.op
        ))),
    }
}

async fn meta_or_not_found(local: &Path, hdfs: &str) -> Result<std::fs::Metadata, Remote> {
    tokio::fs::metadata(local)
        .await
        .map_err(|_| Remote::not_found(format!("File does not exist: {hdfs}")))
}

async fn file_meta(local: &Path, hdfs: &str) -> Result<std::fs::Metadata, Remote> {
    let meta = meta_or_not_found(local, hdfs).await?;
    if meta.is_dir() {
        return Err(Remote::not_found(format!("Path is not a file: {hdfs}")));
    }
    Ok(meta)
}

fn millis(t: std::io::Result<std::time::SystemTime>) -> u64 {
    t.ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An HDFS `FileStatus` of a local file or folder.
async fn file_status(local: &Path, meta: &std::fs::Metadata, suffix: &str) -> Value {
    use std::os::unix::fs::MetadataExt;
    let dir = meta.is_dir();
    let children = if dir {
        let mut n = 0;
        if let Ok(mut entries) = tokio::fs::read_dir(local).await {
            while let Ok(Some(_)) = entries.next_entry().await {
                n += 1;
            }
        }
        n
    } else {
        0
    };
    json!({
        "accessTime": if dir { 0 } else { millis(meta.accessed()) },
        "blockSize": if dir { 0 } else { BLOCK_SIZE },
        "childrenNum": children,
        "fileId": meta.ino(),
        "group": "supergroup",
        "length": if dir { 0 } else { meta.len() },
        "modificationTime": millis(meta.modified()),
        "owner": "hdfs",
        "pathSuffix": suffix,
        "permission": if dir { "755" } else { "644" },
        "replication": if dir { 0 } else { 1 },
        "storagePolicy": 0,
        "type": if dir { "DIRECTORY" } else { "FILE" },
    })
}

/// The statuses of a folder's entries in name order (a file lists as itself), those after
/// `after` and at most `limit`, and how many remain after them.
async fn list(
    local: &Path,
    hdfs: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Value>, usize), Remote> {
    let meta = tokio::fs::metadata(local)
        .await
        .map_err(|_| Remote::not_found(format!("File {hdfs} does not exist.")))?;
    if !meta.is_dir() {
        return Ok((vec![file_status(local, &meta, "").await], 0));
    }
    let mut names = Vec::new();
    let mut entries = tokio::fs::read_dir(local)
        .await
        .map_err(|e| Remote::io(e.to_string()))?;
    while let Ok(Some(entry)) = entries.next_entry().await {
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    // HDFS orders a listing by the names' bytes.
    names.sort();
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| after.is_none_or(|a| n.as_str() > a))
        .collect();
    let mut statuses = Vec::new();
    for name in names.iter().take(limit) {
        let path = local.join(name);
        // An entry removed while listing is left out, as HDFS's snapshot of the folder would.
        if let Ok(meta) = tokio::fs::metadata(&path).await {
            statuses.push(file_status(&path, &meta, name).await);
        }
    }
    Ok((statuses, names.len().saturating_sub(limit)))
}

/// Creates `hdfs` and its parents as folders; a file in the way is refused as HDFS does.
async fn make_dirs(shared: &Shared, hdfs: &str) -> Result<(), Remote> {
    let mut at = String::new();
    for part in hdfs.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        let local = shared.local(&at);
        match tokio::fs::metadata(&local).await {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) if at.len() == hdfs.len() => {
                return Err(Remote::already_exists(format!(
                    "Path is not a directory: {at}"
                )))
            }
            Ok(_) => {
                return Err(Remote::parent_not_directory(format!(
                    "Parent path is not a directory: {at}"
                )))
            }
            Err(_) => match tokio::fs::create_dir(&local).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Remote::io(e.to_string())),
            },
        }
    }
    Ok(())
}

fn parent(hdfs: &str) -> &str {
    match hdfs.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &hdfs[..i],
    }
}

async fn open(call: &Call, local: &Path) -> Result<Response, Remote> {
    let meta = file_meta(local, &call.path).await?;
    let offset = call.number("offset")?.unwrap_or(0);
    let size = meta.len();
    if offset > size || (offset == size && size > 0) {
        return Err(Remote::io(format!(
            "Offset={offset} out of the range [0, {size}); OPEN, path={}",
            call.path
        )));
    }
    let length = call
        .number("length")?
        .map_or(size - offset, |l| l.min(size - offset));
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(|e| Remote::io(e.to_string()))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| Remote::io(e.to_string()))?;
    let stream = futures_util::stream::unfold((file, length), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(64 * 1024) as usize];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(buf)),
                    (file, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_stream(stream))
        .unwrap())
}

/// Writes a request's body to `file`, counting it.
async fn receive(body: Body, file: &mut tokio::fs::File, count: &mut u64) -> Result<(), Remote> {
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Remote::io(format!("reading the data: {e}")))?;
        *count += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| Remote::io(e.to_string()))?;
    }
    file.flush().await.map_err(|e| Remote::io(e.to_string()))
}

async fn create(
    shared: &Shared,
    call: &Call,
    local: &Path,
    body: Body,
    body_bytes: &mut u64,
) -> Result<Response, Remote> {
    let overwrite = call.flag("overwrite", false)?;
    if let Ok(meta) = tokio::fs::metadata(local).await {
        if meta.is_dir() {
            return Err(Remote::already_exists(format!(
                "{} already exists as a directory",
                call.path
            )));
        }
        if !overwrite {
            return Err(Remote::already_exists(format!(
                "{} for client 127.0.0.1 already exists",
                call.path
            )));
        }
    }
    let parent_path = parent(&call.path);
    if call.flag("createparent", true)? {
        make_dirs(shared, parent_path).await?;
    } else if !tokio::fs::metadata(shared.local(parent_path))
        .await
        .is_ok_and(|m| m.is_dir())
    {
        return Err(Remote::not_found(format!(
            "Parent directory doesn't exist: {parent_path}"
        )));
    }
    // Written aside and moved into place: the new file is a new inode (its fileId changes,
    // as HDFS gives an overwritten file a new one).
    let staged = shared
        .staging
        .join(format!("{}", shared.staged.fetch_add(1, Ordering::SeqCst)));
    let mut file = tokio::fs::File::create(&staged)
        .await
        .map_err(|e| Remote::io(e.to_string()))?;
    let received = receive(body, &mut file, body_bytes).await;
    drop(file);
    if let Err(e) = received {
        let _ = tokio::fs::remove_file(&staged).await;
        return Err(e);
    }
    tokio::fs::rename(&staged, local)
        .await
        .map_err(|e| Remote::io(e.to_string()))?;
    let location = format!("webhdfs://{}{}", shared.namenode, call.raw_path);
    Ok(Response::builder()
        .status(StatusCode::CREATED)
        .header(
            header::LOCATION,
            HeaderValue::from_str(&location).unwrap_or(HeaderValue::from_static("webhdfs://")),
        )
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .unwrap())
}

async fn append(
    call: &Call,
    local: &Path,
    body: Body,
    body_bytes: &mut u64,
) -> Result<Response, Remote> {
    file_meta(local, &call.path).await?;
    let mut file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(local)
        .await
        .map_err(|e| Remote::io(e.to_string()))?;
    receive(body, &mut file, body_bytes).await?;
    Ok(empty_response(StatusCode::OK))
}

async fn delete(call: &Call, local: &Path) -> Result<Response, Remote> {
    let Ok(meta) = tokio::fs::symlink_metadata(local).await else {
        return boolean(false);
    };
    if call.path == "/" {
        return boolean(false);
    }
    if meta.is_dir() {
        let recursive = call.flag("recursive", false)?;
        let empty = tokio::fs::read_dir(local)
            .await
            .map_err(|e| Remote::io(e.to_string()))?
            .next_entry()
            .await
            .ok()
            .flatten()
            .is_none();
        if !empty && !recursive {
            return Err(Remote {
                status: StatusCode::FORBIDDEN,
                exception: "PathIsNotEmptyDirectoryException",
                class: "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
                message: format!("`{} is non empty': Directory is not empty", call.path),
            });
        }
        tokio::fs::remove_dir_all(local)
            .await
            .map_err(|e| Remote::io(e.to_string()))?;
    } else {
        tokio::fs::remove_file(local)
            .await
            .map_err(|e| Remote::io(e.to_string()))?;
    }
    boolean(true)
}

/// `RENAME`: Hadoop's `rename2` when `renameoptions` is given (unless `ignore_options`, as
/// HttpFS of Hadoop 2), else the old rename.
async fn rename(
    shared: &Shared,
    call: &Call,
    local: &Path,
    ignore_options: bool,
) -> Result<Response, Remote> {
    let destination = call
        .param("destination")
        .filter(|d| d.starts_with('/'))
        .ok_or_else(|| {
            Remote::illegal_argument("Invalid value for webhdfs parameter \"destination\"")
        })?;
    let destination = hdfs_path(&format!("{PREFIX}{destination}"))?;
    let to = shared.local(&destination);
    let options = match ignore_options {
        true => "",
        false => call.param("renameoptions").unwrap_or_default(),
    };
    let source = tokio::fs::metadata(local).await;
    let target = tokio::fs::metadata(&to).await;
    let target_parent = tokio::fs::metadata(shared.local(parent(&destination))).await;
    let moved = |from: &Path, to: &Path| {
        let (from, to) = (from.to_owned(), to.to_owned());
        async move {
            tokio::fs::rename(&from, &to)
                .await
                .map_err(|e| Remote::io(e.to_string()))
        }
    };
    if destination == call.path || destination.starts_with(&format!("{}/", call.path)) {
        return if options.is_empty() {
            boolean(false)
        } else {
            Err(Remote::io(format!(
                "Rename destination {destination} is a descendant of source {}",
                call.path
            )))
        };
    }
    if options.is_empty() {
        // The old rename: false for what it cannot do; into a folder that exists.
        if source.is_err() {
            return boolean(false);
        }
        match target {
            Ok(t) if t.is_dir() => {
                let name = call.path.rsplit('/').next().unwrap_or_default();
                let inside = to.join(name);
                if tokio::fs::metadata(&inside).await.is_ok() {
                    return boolean(false);
                }
                moved(local, &inside).await?;
                boolean(true)
            }
            Ok(_) => boolean(false),
            Err(_) if !target_parent.is_ok_and(|m| m.is_dir()) => boolean(false),
            Err(_) => {
                moved(local, &to).await?;
                boolean(true)
            }
        }
    } else {
        // rename2: NONE refuses an existing target, OVERWRITE replaces a file or empty folder.
        let overwrite = match options.to_ascii_uppercase().as_str() {
            "NONE" => false,
            "OVERWRITE" => true,
            other => {
                return Err(Remote::illegal_argument(format!(
                    "Invalid value for webhdfs parameter \"renameoptions\": {other}"
                )))
            }
        };
        let source = source
            .map_err(|_| Remote::not_found(format!("rename source {} is not found.", call.path)))?;
        if !target_parent.is_ok_and(|m| m.is_dir()) {
            return Err(Remote::not_found(format!(
                "rename destination parent {} not found.",
                parent(&destination)
            )));
        }
        if let Ok(target) = target {
            if !overwrite {
                return Err(Remote::already_exists(format!(
                    "rename destination {destination} already exists."
                )));
            }
            if target.is_dir() != source.is_dir() {
                return Err(Remote::io(format!(
                    "Source {} and destination {destination} must both be directories",
                    call.path
                )));
            }
        }
        moved(local, &to).await?;
        Ok(empty_response(StatusCode::OK))
    }
}
