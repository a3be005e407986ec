//! [`WebHdfsBuilder`]: where the namenode's HTTP address comes from (the URL forms), the root,
//! the authentication, the HTTP client's timeouts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use reqwest::Url;

use crate::client::{Auth, Client};
use crate::{Error, WebHdfs};

/// The namenode RPC port `hdfs://` URLs name when they name none (Hadoop's
/// `dfs.namenode.rpc-address` default).
pub const DEFAULT_RPC_PORT: u16 = 8020;
/// The namenode HTTP port (`dfs.namenode.http-address`, Hadoop 3) `webhdfs://` URLs default
/// to, and the one `hdfs://host:8020` maps to when no address is configured for it.
pub const DEFAULT_HTTP_PORT: u16 = 9870;
/// The namenode HTTPS port (`dfs.namenode.https-address`, Hadoop 3) `swebhdfs://` URLs
/// default to.
pub const DEFAULT_HTTPS_PORT: u16 = 9871;
/// The REST API's path on a namenode or HttpFS server.
pub const DEFAULT_ENDPOINT_PATH: &str = "/webhdfs/v1";

/// Builds a [`WebHdfs`] store.
///
/// ```
/// use object_store_webhdfs::WebHdfsBuilder;
/// let store = WebHdfsBuilder::new()
///     .with_url("hdfs://namenode:8020")
///     .with_namenode("namenode:8020", "http://namenode.example.com:9870")
///     .with_user("etl")
///     .build()
///     .unwrap();
/// ```
///
/// The URL says which server to talk to:
///
/// | URL | server |
/// |---|---|
/// | `http://host:port`, `https://host:port` | that WebHDFS (namenode) or HttpFS server |
/// | `webhdfs://host[:port]` | `http://host:port`, port 9870 if none |
/// | `swebhdfs://host[:port]` | `https://host:port`, port 9871 if none |
/// | `hdfs://host[:port]` | the HTTP address configured with [`with_namenode`](Self::with_namenode) for `host:port` (port 8020 if none) or for `host` (an HA nameservice); without one, `http://host:9870` when the port is 8020, else an error |
///
/// A path in the URL is the store's root (every object path is under it), unless
/// [`with_root`](Self::with_root) gives one; object paths of a store built from
/// [`split_url`](crate::split_url)'s first half are absolute HDFS paths.
#[derive(Clone, Debug, Default)]
pub struct WebHdfsBuilder {
    url: Option<String>,
    namenodes: HashMap<String, String>,
    root: Option<String>,
    /// Its `Debug` hides the delegation token.
    auth: Auth,
    endpoint_path: Option<String>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
}

impl WebHdfsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The server: `http(s)://host:port`, `webhdfs://host[:port]`, `swebhdfs://host[:port]` or
    /// `hdfs://host[:port]` (see the table above). A path in it is the store's root.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The HTTP address (`http://host:9870`, `https://host:9871`, or an HttpFS server
    /// `http://host:14000`) of the namenode `hdfs://` URLs name as `namenode`: `host:port` as
    /// in the URL (`host` alone means port 8020), or an HA nameservice's name. May be
    /// called once per namenode; only `hdfs://` URLs look here.
    pub fn with_namenode(
        mut self,
        namenode: impl Into<String>,
        http_url: impl Into<String>,
    ) -> Self {
        self.namenodes
            .insert(normalize_namenode(&namenode.into()), http_url.into());
        self
    }

    /// Several [`with_namenode`](Self::with_namenode) at once, e.g. from a configuration's
    /// `hdfs.namenodes` map.
    pub fn with_namenodes<K, V>(mut self, namenodes: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        for (k, v) in namenodes {
            self = self.with_namenode(k, v);
        }
        self
    }

    /// The HDFS folder every object path is relative to (default: the URL's path, else `/`).
    pub fn with_root(mut self, root: impl Into<String>) -> Self {
        self.root = Some(root.into());
        self
    }

    /// Simple authentication: every request says `user.name=<user>` (a cluster without
    /// Kerberos trusts it). Not sent when a delegation token is given.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.auth.user = Some(user.into());
        self
    }

    /// Acts on behalf of another user (`doas=`), which the server allows only to proxy users.
    pub fn with_proxy_user(mut self, user: impl Into<String>) -> Self {
        self.auth.proxy_user = Some(user.into());
        self
    }

    /// A Hadoop delegation token (its URL-safe string form, as `hdfs fetchdt` or a job's
    /// credentials give it), sent as `delegation=` instead of `user.name`. Never logged.
    pub fn with_delegation_token(mut self, token: impl Into<String>) -> Self {
        self.auth.delegation_token = Some(token.into());
        self
    }

    /// The REST API's path on the server (default `/webhdfs/v1`), e.g.
    /// `/gateway/default/webhdfs/v1` behind an Apache Knox gateway.
    pub fn with_endpoint_path(mut self, path: impl Into<String>) -> Self {
        self.endpoint_path = Some(path.into());
        self
    }

    /// How long connecting to a namenode or datanode may take (default 30 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long a server may stay silent in the middle of an answer (default 60 s, Hadoop's
    /// `dfs.webhdfs.socket.read-timeout`). No bound is put on a whole transfer, nor on the
    /// answer to a request that sends data (a datanode answers once it has it all; TCP
    /// keepalive finds a peer that went away).
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// The store. Fails on a URL it cannot use; nothing is sent to the server yet.
    pub fn build(self) -> Result<WebHdfs, Error> {
        let text = self.url.clone().ok_or_else(|| Error::InvalidUrl {
            url: String::new(),
            reason: "no URL given (with_url)".into(),
        })?;
        let url = Url::parse(&text).map_err(|e| Error::InvalidUrl {
            url: text.clone(),
            reason: e.to_string(),
        })?;
        let base = self.http_address(&url, &text)?;
        let root = normalize_root(match &self.root {
            Some(root) => root,
            None => url.path(),
        });
        let root = percent_encoding::percent_decode_str(&root)
            .decode_utf8()
            .map_err(|_| Error::InvalidUrl {
                url: text.clone(),
                reason: "the path is not UTF-8".into(),
            })?
            .into_owned();
        let endpoint_path = normalize_root(
            self.endpoint_path
                .as_deref()
                .unwrap_or(DEFAULT_ENDPOINT_PATH),
        );
        let connect_timeout = self.connect_timeout.unwrap_or(Duration::from_secs(30));
        let client = |read_timeout: Option<Duration>| {
            let builder = reqwest::Client::builder()
                // Redirects are followed by hand: a datanode gets the same authentication,
                // and a write's data goes only to where the namenode's 307 points.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(connect_timeout)
                // A peer gone silently is found even while a long upload is sent.
                .tcp_keepalive(Duration::from_secs(30));
            match read_timeout {
                Some(t) => builder.read_timeout(t),
                None => builder,
            }
            .build()
            .map_err(|e| Error::Client(e.without_url()))
        };
        let read_timeout = self.read_timeout.unwrap_or(Duration::from_secs(60));
        let http = (client(Some(read_timeout))?, client(None)?);
        let client = Client::new(http, base, endpoint_path, root, self.auth);
        Ok(WebHdfs {
            client: Arc::new(client),
        })
    }

    /// The namenode's HTTP(S) address (`scheme://host:port`, no path) for `url`.
    fn http_address(&self, url: &Url, text: &str) -> Result<Url, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("no host"))?;
        let origin = |scheme: &str, port: u16| {
            Url::parse(&format!("{scheme}://{}:{port}", host_for_url(host)))
                .map_err(|e| invalid(&e.to_string()))
        };
        match url.scheme() {
            "http" => origin("http", url.port().unwrap_or(80)),
            "https" => origin("https", url.port().unwrap_or(443)),
            "webhdfs" => origin("http", url.port().unwrap_or(DEFAULT_HTTP_PORT)),
            "swebhdfs" => origin("https", url.port().unwrap_or(DEFAULT_HTTPS_PORT)),
            "hdfs" => {
                let port = url.port().unwrap_or(DEFAULT_RPC_PORT);
                let host = host.to_ascii_lowercase();
                let with_port = format!("{host}:{port}");
                // `host` alone names port 8020, or an HA nameservice (no port).
                let configured = self.namenodes.get(&with_port).or_else(|| {
                    (port == DEFAULT_RPC_PORT)
                        .then(|| self.namenodes.get(&host))
                        .flatten()
                });
                match configured {
                    Some(http) => {
                        let parsed = Url::parse(http).map_err(|e| Error::InvalidUrl {
                            url: http.clone(),
                            reason: format!("the HTTP address of the namenode {with_port}: {e}"),
                        })?;
                        if !matches!(parsed.scheme(), "http" | "https") {
                            return Err(Error::InvalidUrl {
                                url: http.clone(),
                                reason: format!(
                                    "the HTTP address of the namenode {with_port} must be \
                                     http:// or https://"
                                ),
                            });
                        }
                        let configured_host = parsed.host_str().unwrap_or_default().to_owned();
                        let default_port = if parsed.scheme() == "https" { 443 } else { 80 };
                        let port = parsed.port().unwrap_or(default_port);
                        Url::parse(&format!(
                            "{}://{}:{port}",
                            parsed.scheme(),
                            host_for_url(&configured_host)
                        ))
                        .map_err(|e| invalid(&e.to_string()))
                    }
                    None if port == DEFAULT_RPC_PORT => origin("http", DEFAULT_HTTP_PORT),
                    None => Err(Error::NoNamenodeAddress {
                        namenode: with_port,
                    }),
                }
            }
            other => Err(invalid(&format!(
                "the scheme {other}: is not one of hdfs, webhdfs, swebhdfs, http, https"
            ))),
        }
    }
}

/// `host:port` for a namenode key; a bare host stays bare (a nameservice, or port 8020).
fn normalize_namenode(namenode: &str) -> String {
    let trimmed = namenode
        .trim()
        .trim_start_matches("hdfs://")
        .trim_end_matches('/');
    trimmed.to_ascii_lowercase()
}

/// IPv6 addresses need their brackets back in a URL.
fn host_for_url(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `/a/b` from `a/b/`, `/a//b`; `` for the file system's root.
fn normalize_root(root: &str) -> String {
    let mut out = String::new();
    for part in root.split('/').filter(|p| !p.is_empty()) {
        out.push('/');
        out.push_str(part);
    }
    out
}

/// Splits a URL naming a file or folder on HDFS into the server part a [`WebHdfsBuilder`]
/// takes (`scheme://authority`, to build or reuse one store per server) and the object path
/// within that store (the URL's path, percent-decoded, relative to `/`).
///
/// ```
/// use object_store_webhdfs::split_url;
/// let (server, path) = split_url("hdfs://namenode:8020/data/in/day%3D1/part-0.csv").unwrap();
/// assert_eq!(server, "hdfs://namenode:8020");
/// assert_eq!(path.as_ref(), "data/in/day=1/part-0.csv");
/// ```
pub fn split_url(url: &str) -> Result<(String, Path), Error> {
    let parsed = Url::parse(url).map_err(|e| Error::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if !matches!(
        parsed.scheme(),
        "hdfs" | "webhdfs" | "swebhdfs" | "http" | "https"
    ) {
        return Err(Error::InvalidUrl {
            url: url.to_owned(),
            reason: format!(
                "the scheme {}: is not one of hdfs, webhdfs, swebhdfs, http, https",
                parsed.scheme()
            ),
        });
    }
    let host = parsed.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err(Error::InvalidUrl {
            url: url.to_owned(),
            reason: "no host".into(),
        });
    }
    let server = match parsed.port() {
        Some(port) => format!("{}://{}:{port}", parsed.scheme(), host_for_url(host)),
        None => format!("{}://{}", parsed.scheme(), host_for_url(host)),
    };
    let path = Path::from_url_path(parsed.path()).map_err(|e| Error::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((server, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(b: WebHdfsBuilder) -> String {
        b.build().unwrap().client.address().to_owned()
    }

    #[test]
    fn url_forms_name_the_namenode_http_address() {
        let b = WebHdfsBuilder::new;
        assert_eq!(base(b().with_url("webhdfs://nn")), "http://nn:9870");
        assert_eq!(base(b().with_url("webhdfs://nn:50070")), "http://nn:50070");
        assert_eq!(base(b().with_url("swebhdfs://nn")), "https://nn:9871");
        assert_eq!(base(b().with_url("http://nn:14000")), "http://nn:14000");
        assert_eq!(base(b().with_url("hdfs://nn")), "http://nn:9870");
        assert_eq!(base(b().with_url("hdfs://nn:8020/x")), "http://nn:9870");
        assert_eq!(
            base(
                b().with_url("hdfs://nn:8020")
                    .with_namenode("nn:8020", "https://nn.example.com:50470")
            ),
            "https://nn.example.com:50470"
        );
        assert_eq!(
            base(
                b().with_url("hdfs://cluster1/data")
                    .with_namenode("cluster1", "http://nn1:9870/")
            ),
            "http://nn1:9870"
        );
        // A bare host configured stands for port 8020.
        assert_eq!(
            base(
                b().with_url("hdfs://nn:8020")
                    .with_namenode("nn", "http://a:1")
            ),
            "http://a:1"
        );
        let e = b().with_url("hdfs://nn:9000").build().unwrap_err();
        assert!(matches!(e, Error::NoNamenodeAddress { .. }), "{e}");
        assert!(e.to_string().contains("nn:9000"), "{e}");
        let e = b().with_url("s3://bucket").build().unwrap_err();
        assert!(matches!(e, Error::InvalidUrl { .. }), "{e}");
    }

    #[test]
    fn the_root_comes_from_the_url_or_with_root() {
        let b = WebHdfsBuilder::new;
        let root = |b: WebHdfsBuilder| b.build().unwrap().client.root().to_owned();
        assert_eq!(root(b().with_url("webhdfs://nn")), "");
        assert_eq!(root(b().with_url("webhdfs://nn/")), "");
        assert_eq!(root(b().with_url("webhdfs://nn/data/x/")), "/data/x");
        assert_eq!(root(b().with_url("webhdfs://nn/my%20data")), "/my data");
        assert_eq!(
            root(b().with_url("webhdfs://nn/data").with_root("other//y")),
            "/other/y"
        );
    }

    #[test]
    fn split_url_separates_server_and_path() {
        let (server, path) = split_url("webhdfs://nn:9870/a/b%20c.csv").unwrap();
        assert_eq!(server, "webhdfs://nn:9870");
        assert_eq!(path.as_ref(), "a/b c.csv");
        let (server, path) = split_url("hdfs://cluster1/").unwrap();
        assert_eq!(server, "hdfs://cluster1");
        assert!(path.is_root());
        assert!(split_url("file:///x").is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let b = WebHdfsBuilder::new()
            .with_url("webhdfs://nn")
            .with_delegation_token("SECRET-TOKEN");
        assert!(!format!("{b:?}").contains("SECRET-TOKEN"));
        let store = b.build().unwrap();
        assert!(!format!("{store:?}").contains("SECRET-TOKEN"));
        assert!(!format!("{store}").contains("SECRET-TOKEN"));
    }
}
