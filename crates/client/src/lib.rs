//! A blocking client of a running engine's control API: the `engine` CLI's, and one a host
//! program can use too. Every request carries the token, if any; `https://` is checked
//! against the system's roots or a CA file; uploads stream their files from disk with
//! `Expect: 100-continue`, so a refused upload is answered before it is sent. Errors say
//! what to do, and carry the engine's own message when it answered one.
//!
//! ```no_run
//! use engine_client::Client;
//!
//! let engine = Client::new("http://127.0.0.1:8003");
//! let details: serde_json::Value = Client::json(engine.get("/api/engine")?)?;
//! println!("engine {}", details["id"]);
//! # Ok::<(), engine_client::Error>(())
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// What can go wrong talking to the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local file (a CA file, a file to upload, a download's destination) could not be used.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The engine could not be reached (refused, TLS, not HTTP); `hint` says what to check.
    #[error("cannot reach the engine at {base}: {source}{hint}")]
    Unreachable {
        base: String,
        #[source]
        source: Box<ureq::Error>,
        hint: &'static str,
    },

    /// The engine answered with an error status; `message` is its own message (and the
    /// model's traceback, when it gives one).
    #[error("the engine answered {status}: {message}{hint}")]
    Status {
        status: u16,
        message: String,
        hint: &'static str,
    },

    /// The engine's answer could not be read or is not what the request expects.
    #[error("{0}")]
    Answer(String),

    /// An argument the client cannot use (a folder where a file is wanted, a CA file without
    /// certificates, a token that cannot be sent).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Largest answer read (a job's embedded result can be big).
const ANSWER_LIMIT: u64 = 1 << 30;

/// Shortest token accepted, as the engine does: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

/// The engine's token. Its text never appears in Debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from its text: surrounding whitespace (a file's newline) is trimmed; it must be
    /// at least [`MIN_TOKEN_LEN`] visible ASCII characters, as the engine requires.
    pub fn new(text: &str) -> Result<Token> {
        let t = text.trim();
        if t.len() < MIN_TOKEN_LEN {
            return Err(Error::Invalid(format!(
                "a token must have at least {MIN_TOKEN_LEN} characters (`engine token` prints a fresh one)"
            )));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Invalid(
                "a token must be visible ASCII characters, without spaces".into(),
            ));
        }
        Ok(Token(t.to_owned()))
    }

    /// The token's text, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The body of the engine's error answers.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in one sentence.
    pub error: String,
    /// The model's traceback, when model code raised.
    #[serde(default)]
    pub traceback: Option<String>,
}

pub struct Client {
    base: String,
    agent: ureq::Agent,
}

/// How the client reaches the engine besides its address.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Sent as `Authorization: Bearer ...` with every request.
    pub token: Option<Token>,
    /// For `https://`: the PEM certificates trusted instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// How long one request may take in all; `None`: [`DEFAULT_TIMEOUT`] (long enough for
    /// large uploads and answers; a probe wants less).
    pub timeout: Option<Duration>,
}

/// How long one request may take when [`ClientOptions::timeout`] does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// An answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// The engine's detail of an error (`X-Engine-Detail`), when it gives one.
    pub detail: Option<String>,
}

impl Answer {
    /// The error this answer's status and body say (meant for statuses of 400 and above).
    pub fn error(&self) -> Error {
        let message = serde_json::from_slice::<ErrorBody>(&self.body)
            .map(|b| match b.traceback {
                Some(tb) => format!("{}\n{}", b.error, tb.trim_end()),
                None => b.error,
            })
            .unwrap_or_else(|_| String::from_utf8_lossy(&self.body).trim().to_owned());
        let hint = match self.status {
            401 => {
                "; the CLI sends the token in ENGINE_TOKEN, or in the file --token-file PATH names"
            }
            _ => "",
        };
        Error::Status {
            status: self.status,
            message,
            hint,
        }
    }
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
            return Err(Error::Invalid(format!(
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
        Client::build(
            base,
            None,
            ureq::tls::RootCerts::PlatformVerifier,
            DEFAULT_TIMEOUT,
        )
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
                        Error::Invalid(format!("{} is not a PEM file: {e}", path.display()))
                    })? {
                        certs.push(c);
                    }
                }
                if certs.is_empty() {
                    return Err(Error::Invalid(format!(
                        "{} holds no certificate",
                        path.display()
                    )));
                }
                ureq::tls::RootCerts::new_with_certs(&certs)
            }
            None => ureq::tls::RootCerts::PlatformVerifier,
        };
        let timeout = options.timeout.unwrap_or(DEFAULT_TIMEOUT);
        Ok(Client::build(base, options.token.as_ref(), roots, timeout))
    }

    fn build(
        base: &str,
        token: Option<&Token>,
        roots: ureq::tls::RootCerts,
        timeout: Duration,
    ) -> Client {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
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
            Error::Unreachable {
                base: self.base.clone(),
                source: Box::new(e),
                hint,
            }
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
            .map_err(|e| Error::Answer(format!("cannot read the engine's answer: {e}")))?;
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
            other => return Err(self.finish(other)?.error()),
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
            return Err(answer.error());
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| Error::Answer(format!("unexpected answer from the engine: {e}")))
    }
}

/// Bodies from this size on ask the engine to accept them before they are sent.
const EXPECT_CONTINUE_FROM: usize = 64 << 10;

/// The engine's error message in an answer, as one line of text.
pub fn error_text(answer: &Answer) -> String {
    answer.error().to_string()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
            detail: None,
        }
    }

    #[test]
    fn errors_carry_the_engines_message_and_traceback() {
        let e = answer(
            400,
            r#"{"error": "bad record", "traceback": "Traceback\n  x\n"}"#,
        )
        .error();
        assert_eq!(
            e.to_string(),
            "the engine answered 400: bad record\nTraceback\n  x"
        );
        let e = answer(502, " upstream down \n").error();
        assert_eq!(e.to_string(), "the engine answered 502: upstream down");
        let e = answer(401, r#"{"error": "authentication required"}"#).error();
        assert!(e.to_string().contains("ENGINE_TOKEN"), "{e}");
        assert!(matches!(e, Error::Status { status: 401, .. }));
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        let t = Token::new(" 0123456789abcdef\n").unwrap();
        assert_eq!(t.expose(), "0123456789abcdef");
        assert!(!format!("{t:?}").contains("0123"));
        assert!(!format!(
            "{:?}",
            ClientOptions {
                token: Some(t),
                ..Default::default()
            }
        )
        .contains("0123"));
        assert!(Token::new("short").is_err());
        assert!(Token::new("0123456789 abcdef").is_err());
    }

    #[test]
    fn a_multipart_body_is_its_pieces_in_order_files_cut_to_their_length() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("part.bin");
        std::fs::write(&file, b"0123456789").unwrap();
        let mut reader = PiecesReader {
            pieces: vec![
                Piece::Bytes(b"head;".to_vec()),
                Piece::File(file.clone(), 4),
                Piece::Bytes(Vec::new()),
                Piece::Bytes(b";tail".to_vec()),
            ]
            .into(),
            current: None,
        };
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"head;0123;tail");
    }
}
