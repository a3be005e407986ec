//! From a descriptor to a store and a key: the only part that knows S3, HTTP and HDFS. Everything
//! else reads and writes an `Arc<dyn ObjectStore>` at a [`Path`], so one more store is one
//! more arm in `locate`.

use std::sync::Arc;

use endpoints::descriptor::{S3Transport, Transport, DEFAULT_S3_REGION};
use endpoints::{Credential, OpenRequest};
use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, HeaderMap, HeaderValue, ObjectStore, RetryConfig,
};
use runtime_core::{Error, Result};

use crate::settings::StoreSettings;

/// A store as the endpoints use it: the client, and how to name it without a secret.
pub(crate) struct Store {
    pub client: Arc<dyn ObjectStore>,
    /// What an object's name starts with: `s3://bucket`, `https://host:port`.
    pub root: String,
    /// Where the store is, for errors: `S3 at http://127.0.0.1:9000`, `S3 (region us-east-1)`.
    pub place: String,
    /// Where the credentials came from, for an error refusing access.
    pub identity: String,
    /// Texts never to show (secret keys, passwords, tokens, a URL's query): scrubbed from
    /// every message the endpoint makes of the store's errors.
    secrets: Vec<String>,
}

impl Store {
    /// `text` with every secret of this store replaced by [`endpoints::REDACTED`].
    ///
    /// Not [`endpoints::redact`], which finds secrets by their form (`password=`, a URL's
    /// `user:password@`) in text a user wrote: a store's client and server echo the values
    /// themselves, without a key naming them (a bearer token, a URL's whole query whatever
    /// its parameters are called), and this store knows exactly which they are.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if !s.is_empty() {
                out = out.replace(s.as_str(), endpoints::REDACTED);
            }
        }
        out
    }
}

/// An object, or a prefix of objects, of a store.
#[derive(Clone)]
pub(crate) struct Located {
    pub store: Arc<Store>,
    /// The key as the descriptor gives it (a prefix ends with `/`).
    pub key: String,
    /// The key as a store path (a prefix without its `/`): a key the store's paths cannot
    /// hold is refused when it is located, before anything is read or written.
    pub path: Path,
}

impl Located {
    fn new(store: Arc<Store>, key: String) -> Result<Located> {
        let path = Path::parse(key.trim_end_matches('/')).map_err(|e| {
            Error::endpoint(
                object_name(&store, &key),
                format!(
                    "the key cannot be used as it is written ({e}): keys with empty parts (//), \
                     '.' or '..' parts, or characters such as % # [ ] {{ }} are not supported yet"
                ),
            )
        })?;
        Ok(Located { store, key, path })
    }

    /// Whether the key names every object under it (it ends with `/`).
    pub fn is_prefix(&self) -> bool {
        self.key.ends_with('/')
    }

    /// The object's (or prefix's) name: `s3://bucket/key`, the URL.
    pub fn name(&self) -> String {
        object_name(&self.store, &self.key)
    }

    /// The object `key` of the same store.
    pub fn object(&self, key: String) -> Result<Located> {
        Located::new(self.store.clone(), key)
    }
}

pub(crate) fn object_name(store: &Store, key: &str) -> String {
    if key.is_empty() {
        store.root.clone()
    } else {
        format!("{}/{key}", store.root)
    }
}

/// The store and key `req` names.
pub(crate) fn locate(req: &OpenRequest<'_>, settings: &StoreSettings) -> Result<Located> {
    refuse_unresolved(req)?;
    match &req.descriptor.transport {
        Transport::S3(s3) => s3_store(s3, req.credential, settings),
        Transport::Http { url } => http_store(url, req.credential, settings),
        Transport::Hdfs { name_node, path } => {
            hdfs_store(name_node, path, req.credential, settings)
        }
        other => Err(Error::descriptor(
            "Transport.Type",
            format!("{} is not an object store", other.transport_type()),
        )),
    }
}

/// A `secret://` reference nobody resolved would be sent as the secret itself.
fn refuse_unresolved(req: &OpenRequest<'_>) -> Result<()> {
    match req.descriptor.unresolved_secrets().into_iter().next() {
        Some((field, name)) => Err(Error::descriptor(
            field,
            format!("the secret '{name}' was not resolved: this engine has no secret store to look it up in yet"),
        )),
        None => Ok(()),
    }
}

fn client_options(settings: &StoreSettings) -> ClientOptions {
    // No overall timeout: reading a large object as records flow takes as long as the model.
    ClientOptions::new()
        .with_timeout_disabled()
        .with_connect_timeout(settings.connect_timeout)
        .with_read_timeout(settings.read_timeout)
}

fn retry(settings: &StoreSettings) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: settings.max_retries,
        retry_timeout: settings.retry_timeout,
    }
}

fn s3_store(
    s3: &S3Transport,
    credential: Option<&Credential>,
    settings: &StoreSettings,
) -> Result<Located> {
    let aws = &settings.aws;
    let region = s3
        .region
        .clone()
        .or_else(|| aws.region.clone())
        .unwrap_or_else(|| DEFAULT_S3_REGION.to_owned());
    let endpoint = s3.endpoint_url.clone().or_else(|| aws.endpoint_url.clone());
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(&region)
        .with_virtual_hosted_style_request(!s3.path_style)
        .with_retry(retry(settings));
    let mut options = client_options(settings);
    let place = match &endpoint {
        Some(url) => {
            let url = url.trim_end_matches('/').to_owned();
            // An S3-compatible server named by an http:// URL is reached over plain HTTP.
            options = options.with_allow_http(url.to_ascii_lowercase().starts_with("http://"));
            builder = builder.with_endpoint(&url);
            format!("S3 at {}", endpoints::redact(&url))
        }
        None => format!("S3 (region {region})"),
    };
    builder = builder.with_client_options(options);

    let mut secrets = Vec::new();
    let keys = |id: &Option<String>, key: &Option<String>| match (id, key) {
        (Some(id), Some(key)) => Some((id.clone(), key.clone())),
        _ => None,
    };
    let identity;
    if let Some((id, key)) = keys(&s3.access_key_id, &s3.secret_access_key) {
        secrets.push(key.clone());
        builder = builder.with_access_key_id(id).with_secret_access_key(key);
        identity = "the descriptor's AccessKeyID".to_owned();
    } else if let Some((c, (id, key))) =
        credential.and_then(|c| keys(&c.access_key_id, &c.secret_access_key).map(|k| (c, k)))
    {
        secrets.push(key.clone());
        builder = builder.with_access_key_id(id).with_secret_access_key(key);
        if let Some(token) = &c.token {
            secrets.push(token.clone());
            builder = builder.with_token(token);
        }
        identity = format!("the credentials entry for host '{}'", c.host);
    } else if let Some((id, key)) = keys(&aws.access_key_id, &aws.secret_access_key) {
        secrets.push(key.clone());
        builder = builder.with_access_key_id(id).with_secret_access_key(key);
        if let Some(token) = &aws.session_token {
            secrets.push(token.clone());
            builder = builder.with_token(token);
        }
        identity = format!(
            "the engine's {}",
            aws.keys_from.as_deref().unwrap_or("AWS settings")
        );
    } else if let (Some(file), Some(role)) = (&aws.web_identity_token_file, &aws.role_arn) {
        use object_store::aws::AmazonS3ConfigKey as K;
        builder = builder
            .with_config(K::WebIdentityTokenFile, file)
            .with_config(K::RoleArn, role);
        if let Some(name) = &aws.role_session_name {
            builder = builder.with_config(K::RoleSessionName, name);
        }
        identity = format!("the web identity of role {role}");
    } else if let Some(uri) = &aws.container_credentials_relative_uri {
        builder = builder.with_config(
            object_store::aws::AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
            uri,
        );
        identity = "the container's task role".to_owned();
    } else if aws.instance_metadata {
        identity = "the instance metadata service (no other credentials were found)".to_owned();
    } else {
        builder = builder.with_skip_signature(true);
        identity = "no credentials: the requests went unsigned".to_owned();
    }
    let client = builder.build().map_err(|e| {
        Error::endpoint_caused(
            format!("s3://{}", s3.bucket),
            format!("cannot set up the S3 client: {e}"),
            e,
        )
    })?;
    let store = Store {
        client: Arc::new(client),
        root: format!("s3://{}", s3.bucket),
        place,
        identity,
        secrets,
    };
    Located::new(Arc::new(store), s3.object_key.clone())
}

/// HDFS through its WebHDFS (or HttpFS) REST API: `NameNode` is `host:port` (an RPC
/// address, mapped to its HTTP address by the settings, 8020 to 9870 by default) or the
/// HTTP address itself (`webhdfs://host:port`, `swebhdfs://`, `http(s)://`). The user and a
/// delegation token come from the credentials entry for the namenode's host, else the
/// settings.
fn hdfs_store(
    name_node: &str,
    path: &str,
    credential: Option<&Credential>,
    settings: &StoreSettings,
) -> Result<Located> {
    let server = if name_node.contains("://") {
        name_node.trim_end_matches('/').to_owned()
    } else {
        format!("hdfs://{name_node}")
    };
    let hdfs = &settings.hdfs;
    let user = credential
        .and_then(|c| c.username.clone())
        .or_else(|| hdfs.user.clone());
    let token = credential
        .and_then(|c| c.token.clone())
        .or_else(|| hdfs.delegation_token.clone());
    let identity = match (&token, &user) {
        (Some(_), _) => "a delegation token".to_owned(),
        (None, Some(u)) => format!("user '{u}'"),
        (None, None) => "no user".to_owned(),
    };
    let mut builder = object_store_webhdfs::WebHdfsBuilder::new()
        .with_url(server.clone())
        .with_namenodes(hdfs.namenodes.clone())
        .with_connect_timeout(settings.connect_timeout)
        .with_read_timeout(settings.read_timeout);
    if let Some(u) = &user {
        builder = builder.with_user(u.clone());
    }
    let mut secrets = Vec::new();
    if let Some(t) = &token {
        secrets.push(t.clone());
        builder = builder.with_delegation_token(t.clone());
    }
    let client = builder.build().map_err(|e| {
        Error::endpoint(
            server.clone(),
            format!("cannot set up the WebHDFS client: {e}"),
        )
    })?;
    let store = Store {
        client: Arc::new(client),
        root: server.clone(),
        place: format!("HDFS at {server}"),
        identity,
        secrets,
    };
    Located::new(Arc::new(store), path.trim_start_matches('/').to_owned())
}

/// An HTTP(S) document: the whole URL is the store (its query kept), the key is empty.
fn http_store(
    url: &str,
    credential: Option<&Credential>,
    settings: &StoreSettings,
) -> Result<Located> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let bare = format!("{scheme}://{host}{tail}");
    let tail_no_fragment = tail.split('#').next().unwrap_or(tail);
    let (path, query) = match tail_no_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail_no_fragment, None),
    };
    let mut secrets: Vec<String> = Vec::new();
    if let Some(q) = query {
        secrets.push(q.to_owned());
    }
    // A URL's own user:password, else the credentials entry for its host.
    let (user, password, token, identity) = match userinfo {
        Some(u) => {
            let (user, pw) = u.split_once(':').unwrap_or((u, ""));
            (
                Some(decode(user)),
                Some(decode(pw)),
                None,
                "the URL's user and password".to_owned(),
            )
        }
        None => match credential {
            Some(c) => (
                c.username.clone(),
                c.password.clone(),
                c.token.clone(),
                format!("the credentials entry for host '{}'", c.host),
            ),
            None => (None, None, None, "no credentials".to_owned()),
        },
    };
    let mut headers = HeaderMap::new();
    let authorization = match (&user, &token) {
        (_, Some(token)) => {
            secrets.push(token.clone());
            Some(format!("Bearer {token}"))
        }
        (Some(user), None) => {
            let pw = password.clone().unwrap_or_default();
            if !pw.is_empty() {
                secrets.push(pw.clone());
            }
            Some(format!("Basic {}", base64(&format!("{user}:{pw}"))))
        }
        (None, None) => None,
    };
    let name = format!("{scheme}://{host}{path}");
    if let Some(a) = authorization {
        let mut v = HeaderValue::from_str(&a).map_err(|_| {
            Error::endpoint(
                name.clone(),
                "the credentials hold characters a header cannot carry",
            )
        })?;
        v.set_sensitive(true);
        headers.insert("authorization", v);
    }
    let options = client_options(settings)
        .with_allow_http(scheme.eq_ignore_ascii_case("http"))
        .with_default_headers(headers);
    let client = HttpBuilder::new()
        .with_url(bare.as_str())
        .with_client_options(options)
        .with_retry(retry(settings))
        .build()
        .map_err(|e| {
            Error::endpoint(name.clone(), format!("cannot set up the HTTP client: {e}"))
        })?;
    let store = Store {
        client: Arc::new(client),
        root: name,
        place: format!("HTTP server {scheme}://{host}"),
        identity,
        secrets,
    };
    Located::new(Arc::new(store), String::new())
}

/// A URL's percent-encoded user or password, decoded.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_percent_decoding() {
        assert_eq!(base64("user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64("a"), "YQ==");
        assert_eq!(base64("ab"), "YWI=");
        assert_eq!(decode("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(decode("100%"), "100%");
    }
}
