//! The HTTP client the CLI uses to talk to a running engine. Blocking (the CLI has no
//! async runtime of its own); errors carry the engine's own message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Largest answer read (a job's embedded result can be big).
const ANSWER_LIMIT: u64 = 1 << 30;

pub struct Client {
    base: String,
    agent: ureq::Agent,
}

/// How the client reaches the engine besides its address.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Sent as `Authorization: Bearer ...` with every request.
    pub token: Option<crate::auth::Token>,
    /// For `https://`: the PEM certificates trusted instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// An answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// The engine's detail of an error (`X-Engine-Detail`), when it gives one.
    pub detail: Option<String>,
}

/// One part of a multipart upload.
pub enum Part {
    Text {
        name: String,
        value: String,
    },
    File {
        name: String,
        file_name: String,
        bytes: Vec<u8>,
    },
    /// A file on disk, read as it is sent.
    Path {
        name: String,
        file_name: String,
        path: PathBuf,
    },
}

impl Part {
    pub fn text(name: &str, value: impl Into<String>) -> Part {
        Part::Text {
            name: name.to_owned(),
            value: value.into(),
        }
    }

    /// A file on disk, sent under `file_name` (read as it is sent).
    pub fn file(name: &str, path: &Path, file_name: &str) -> Result<Part> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        // A folder opens like a file; it would fail only once the upload is on its way.
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Error::Client(format!(
                "{} is a folder; give the files in it",
                path.display()
            )));
        }
        Ok(Part::Path {
            name: name.to_owned(),
            file_name: file_name.to_owned(),
            path: path.to_path_buf(),
        })
    }
}

impl Client {
    /// A client of the engine at `base` (`http://127.0.0.1:8003`), without a token;
    /// `https://` is checked against the system's roots.
    pub fn new(base: &str) -> Client {
        Client::build(base, None, ureq::tls::RootCerts::PlatformVerifier)
    }

    /// A client of the engine at `base` sending `options`' token with every request and
    /// trusting its CA file, if any (read now).
    pub fn with_options(base: &str, options: &ClientOptions) -> Result<Client> {
        let roots = match &options.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
                let mut certs = Vec::new();
                for item in ureq::tls::parse_pem(&pem) {
                    if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| {
                        Error::Client(format!("{} is not a PEM file: {e}", path.display()))
                    })? {
                        certs.push(c);
                    }
                }
                if certs.is_empty() {
                    return Err(Error::Client(format!(
                        "{} holds no certificate",
                        path.display()
                    )));
                }
                ureq::tls::RootCerts::new_with_certs(&certs)
            }
            None => ureq::tls::RootCerts::PlatformVerifier,
        };
        Ok(Client::build(base, options.token.as_ref(), roots))
    }

    fn build(
        base: &str,
        token: Option<&crate::auth::Token>,
        roots: ureq::tls::RootCerts,
    ) -> Client {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
        if let Some(token) = token {
            let value = format!("Bearer {}", token.expose());
            config = config.middleware(
                move |mut request: ureq::http::Request<ureq::SendBody>,
                      next: ureq::middleware::MiddlewareNext| {
                    if let Ok(v) = ureq::http::HeaderValue::from_str(&value) {
                        request
                            .headers_mut()
                            .insert(ureq::http::header::AUTHORIZATION, v);
                    }
                    next.handle(request)
                },
            );
        }
        Client {
            base: base.trim_end_matches('/').to_owned(),
            agent: config.build().into(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(
        &self,
        r: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer> {
        let mut r = r.map_err(|e| {
            let text = e.to_string();
            let hint = match &e {
                ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    "; is `engine serve` running there? (--engine URL or ENGINE_URL names another)"
                }
                _ if text.contains("CaUsedAsEndEntity") => {
                    "; the engine's certificate is a CA certificate (`openssl req -x509` makes one unless given `-addext basicConstraints=critical,CA:FALSE`): serve a certificate made for the server, signed by the CA that --ca-file names, or a self-signed one with CA:FALSE"
                }
                _ if text.contains("invalid peer certificate") => {
                    "; a certificate of a private CA, or a self-signed one, is trusted with --ca-file PATH"
                }
                _ if text.contains("http parse fail") && self.base.starts_with("http://") => {
                    "; does the engine serve https://? (tlsCert)"
                }
                _ if text.contains("corrupt message") && self.base.starts_with("https://") => {
                    "; does the engine serve plain http://? (no tlsCert)"
                }
                _ => "",
            };
            Error::Client(format!(
                "cannot reach the engine at {}: {text}{hint}",
                self.base
            ))
        })?;
        let status = r.status().as_u16();
        let detail = r
            .headers()
            .get("x-engine-detail")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = r
            .body_mut()
            .with_config()
            .limit(ANSWER_LIMIT)
            .read_to_vec()
            .map_err(|e| Error::Client(format!("cannot read the engine's answer: {e}")))?;
        Ok(Answer {
            status,
            body,
            detail,
        })
    }

    pub fn get(&self, path: &str) -> Result<Answer> {
        self.finish(self.agent.get(self.url(path)).call())
    }

    pub fn delete(&self, path: &str) -> Result<Answer> {
        self.finish(self.agent.delete(self.url(path)).call())
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Answer> {
        self.send("POST", path, content_type, body)
    }

    pub fn put(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Answer> {
        self.send("PUT", path, content_type, body)
    }

    /// Sends a body. A body past `EXPECT_CONTINUE_FROM` asks `Expect: 100-continue`, so an
    /// engine refusing it (413: too large) answers before it is sent instead of closing the
    /// connection under the client (a broken pipe that says nothing); small bodies, one
    /// record each, spare the round trip.
    fn send(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Result<Answer> {
        let request = match method {
            "PUT" => self.agent.put(self.url(path)),
            _ => self.agent.post(self.url(path)),
        };
        let mut request = request.content_type(content_type);
        if body.len() >= EXPECT_CONTINUE_FROM {
            request = request.header("expect", "100-continue");
        }
        self.finish(request.send(body))
    }

    /// Streams the body of a GET to the file `dest` (written beside it, then renamed, so a
    /// broken download leaves no partial file under its name); returns the bytes written.
    /// An error status becomes the engine's error message.
    pub fn download(&self, path: &str, dest: &Path) -> Result<u64> {
        let response = self.agent.get(self.url(path)).call();
        let mut response = match response {
            Ok(r) if r.status().as_u16() < 400 => r,
            other => return Err(Error::Client(error_text(&self.finish(other)?))),
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let part = dest.with_file_name(format!(".{name}.part"));
        let written = (|| {
            let mut file = std::fs::File::create(&part)?;
            let n = std::io::copy(&mut response.body_mut().as_reader(), &mut file)?;
            file.sync_all()?;
            std::fs::rename(&part, dest)?;
            Ok(n)
        })();
        written.map_err(|e: std::io::Error| {
            let _ = std::fs::remove_file(&part);
            Error::io(format!("cannot download {path} to {}", dest.display()), e)
        })
    }

    /// Reads a JSON answer; a status of 400 and above becomes the engine's error message.
    pub fn json<T: DeserializeOwned>(answer: Answer) -> Result<T> {
        if answer.status >= 400 {
            return Err(Error::Client(error_text(&answer)));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| Error::Client(format!("unexpected answer from the engine: {e}")))
    }
}

/// Bodies from this size on ask the engine to accept them before they are sent.
const EXPECT_CONTINUE_FROM: usize = 64 << 10;

/// The engine's error message in an answer.
pub fn error_text(answer: &Answer) -> String {
    let text = String::from_utf8_lossy(&answer.body);
    let msg = serde_json::from_slice::<crate::error::ErrorBody>(&answer.body)
        .map(|b| match b.traceback {
            Some(tb) => format!("{}\n{}", b.error, tb.trim_end()),
            None => b.error,
        })
        .unwrap_or_else(|_| text.trim().to_owned());
    let hint = match answer.status {
        401 => "; the CLI sends the token in ENGINE_TOKEN, or in the file --token-file PATH names",
        _ => "",
    };
    format!("the engine answered {}: {msg}{hint}", answer.status)
}

fn file_part_head(name: &str, file_name: &str) -> String {
    format!(
        "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
        quote(name),
        quote(file_name)
    )
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The model's parts for an upload: a source file alone, or a folder's main source and
/// every other file under its relative path. The main source of a folder is the only
/// `.py`/`.R` at its top, else the one carrying `modelop.` markers.
pub fn model_parts(model: &Path) -> Result<Vec<Part>> {
    let located = jobs::LocatedModel::from_path(model, None)?;
    let mut parts = vec![Part::File {
        name: "source".into(),
        file_name: located.source_name.clone(),
        bytes: located.source_text.into_bytes(),
    }];
    for (rel, path) in &located.assets {
        let rel: PathBuf = rel.clone();
        parts.push(Part::file("asset", path, &rel.to_string_lossy())?);
    }
    Ok(parts)
}

impl Client {
    /// Sends a multipart/form-data body with `method` (POST or PUT), streaming file parts
    /// from disk as they are sent: memory stays small whatever their size. The body's
    /// length is announced and `Expect: 100-continue` asked, so an upload the engine
    /// refuses (too large, too many at once) is answered before it is sent.
    pub fn upload(&self, method: &str, path: &str, parts: &[Part]) -> Result<Answer> {
        let boundary = format!("engine-{}", uuid::Uuid::new_v4().simple());
        let mut pieces: Vec<Piece> = Vec::new();
        for p in parts {
            pieces.push(Piece::Bytes(format!("--{boundary}\r\n").into_bytes()));
            match p {
                Part::Text { name, value } => {
                    pieces.push(Piece::Bytes(
                        format!(
                            "Content-Disposition: form-data; name=\"{}\"\r\n\r\n{value}",
                            quote(name)
                        )
                        .into_bytes(),
                    ));
                }
                Part::File {
                    name,
                    file_name,
                    bytes,
                } => {
                    pieces.push(Piece::Bytes(file_part_head(name, file_name).into_bytes()));
                    pieces.push(Piece::Bytes(bytes.clone()));
                }
                Part::Path {
                    name,
                    file_name,
                    path,
                } => {
                    pieces.push(Piece::Bytes(file_part_head(name, file_name).into_bytes()));
                    let len = std::fs::metadata(path)
                        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?
                        .len();
                    pieces.push(Piece::File(path.clone(), len));
                }
            }
            pieces.push(Piece::Bytes(b"\r\n".to_vec()));
        }
        pieces.push(Piece::Bytes(format!("--{boundary}--\r\n").into_bytes()));
        let length: u64 = pieces.iter().map(Piece::len).sum();
        let reader = PiecesReader {
            pieces: pieces.into(),
            current: None,
        };
        let ctype = format!("multipart/form-data; boundary={boundary}");
        let url = self.url(path);
        let request = match method {
            "PUT" => self.agent.put(url),
            _ => self.agent.post(url),
        };
        self.finish(
            request
                .header("content-type", ctype)
                .header("content-length", length.to_string())
                .header("expect", "100-continue")
                .send(ureq::SendBody::from_owned_reader(reader)),
        )
    }
}

/// A piece of a streamed body: bytes at hand, or a file of a known length.
enum Piece {
    Bytes(Vec<u8>),
    File(PathBuf, u64),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File(_, n) => *n,
        }
    }
}

/// Reads the pieces one after the other, opening each file when its turn comes.
struct PiecesReader {
    pieces: std::collections::VecDeque<Piece>,
    current: Option<Box<dyn std::io::Read + Send>>,
}

impl std::io::Read for PiecesReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(r) = self.current.as_mut() {
                let n = r.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.current = None;
            }
            match self.pieces.pop_front() {
                None => return Ok(0),
                Some(Piece::Bytes(b)) => self.current = Some(Box::new(std::io::Cursor::new(b))),
                Some(Piece::File(path, len)) => {
                    // Exactly the announced length, even if the file changes meanwhile.
                    let f = std::fs::File::open(&path)?;
                    self.current = Some(Box::new(std::io::Read::take(f, len)));
                }
            }
        }
    }
}
