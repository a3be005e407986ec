//! The HTTP client the CLI uses to talk to a running engine. Blocking (the CLI has no
//! async runtime of its own); errors carry the engine's own message.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
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
        std::fs::File::open(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        Ok(Part::Path {
            name: name.to_owned(),
            file_name: file_name.to_owned(),
            path: path.to_path_buf(),
        })
    }
}

impl Client {
    /// A client of the engine at `base` (`http://127.0.0.1:8003`).
    pub fn new(base: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(
        &self,
        r: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer> {
        let mut r =
            r.map_err(|e| Error::Client(format!("cannot reach the engine at {}: {e}", self.base)))?;
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

    /// Sends a body. An engine that refuses a body (413: too large) answers and closes the
    /// connection before reading all of it, which an HTTP client only sees as a broken pipe;
    /// the request is then made again over a plain socket that reads that answer.
    fn send(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Result<Answer> {
        let request = match method {
            "PUT" => self.agent.put(self.url(path)),
            _ => self.agent.post(self.url(path)),
        };
        match request.content_type(content_type).send(body) {
            Err(ureq::Error::Io(e)) if closed_early(&e) => self
                .send_reading_early_answer(method, path, content_type, body)
                .ok_or_else(|| {
                    Error::Client(format!(
                        "the engine at {} closed the connection while the request ({} bytes) was being sent: {e}",
                        self.base,
                        body.len()
                    ))
                }),
            r => self.finish(r),
        }
    }

    /// The request written by hand, its answer read even after the engine stopped reading.
    /// `None` when there is no answer to read (or the engine is not plain HTTP).
    fn send_reading_early_answer(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Option<Answer> {
        let rest = self.base.strip_prefix("http://")?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let mut stream = TcpStream::connect(authority).ok()?;
        stream.set_read_timeout(Some(EARLY_ANSWER_WAIT)).ok()?;
        stream.set_write_timeout(Some(EARLY_ANSWER_WAIT)).ok()?;
        let head = format!(
            "{method} {prefix}{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        // Writing stops where the engine stopped reading; its answer is already on its way.
        let _ = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body));
        let mut raw = Vec::new();
        // A reset after the answer ends the read with an error; what came before is kept.
        let _ = (&mut stream).take(EARLY_ANSWER_LIMIT).read_to_end(&mut raw);
        parse_answer(&raw)
    }

    /// Sends a multipart/form-data body with `method` (POST or PUT).
    pub fn multipart(&self, method: &str, path: &str, parts: &[Part]) -> Result<Answer> {
        let boundary = format!("engine-{}", uuid::Uuid::new_v4().simple());
        let body = multipart_body(&boundary, parts)?;
        let ctype = format!("multipart/form-data; boundary={boundary}");
        match method {
            "PUT" => self.put(path, &ctype, &body),
            _ => self.post(path, &ctype, &body),
        }
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

/// How long the engine's answer to a refused body is waited for.
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(30);
/// Largest answer to a refused body read.
const EARLY_ANSWER_LIMIT: u64 = 1 << 20;

/// The engine closed the connection while the request was sent.
fn closed_early(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

/// An HTTP/1.1 answer read off a socket: status, `X-Engine-Detail`, body (by its length,
/// chunked, or up to the end).
fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(raw).ok()? else {
        return None;
    };
    let status = response.code?;
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(|v| v.trim().to_owned())
    };
    let detail = header("x-engine-detail");
    let rest = &raw[head_len..];
    let body = if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)
    } else {
        match header("content-length").and_then(|l| l.parse::<usize>().ok()) {
            Some(n) => rest[..n.min(rest.len())].to_vec(),
            None => rest.to_vec(),
        }
    };
    Some(Answer {
        status,
        body,
        detail,
    })
}

/// A chunked body's data, as far as it was received.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(httparse::Status::Complete((start, len))) = httparse::parse_chunk_size(rest) {
        let Ok(len) = usize::try_from(len) else { break };
        if len == 0 {
            break;
        }
        let end = (start + len).min(rest.len());
        body.extend_from_slice(&rest[start..end]);
        rest = rest.get(end + 2..).unwrap_or_default();
    }
    body
}

/// The engine's error message in an answer.
pub fn error_text(answer: &Answer) -> String {
    let text = String::from_utf8_lossy(&answer.body);
    let msg = serde_json::from_slice::<crate::error::ErrorBody>(&answer.body)
        .map(|b| b.error)
        .unwrap_or_else(|_| text.trim().to_owned());
    format!("the engine answered {}: {msg}", answer.status)
}

fn multipart_body(boundary: &str, parts: &[Part]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match p {
            Part::Text { name, value } => {
                out.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{}\"\r\n\r\n",
                        quote(name)
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(value.as_bytes());
            }
            Part::File {
                name,
                file_name,
                bytes,
            } => {
                out.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                        quote(name),
                        quote(file_name)
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(bytes);
            }
            Part::Path {
                name,
                file_name,
                path,
            } => {
                out.extend_from_slice(file_part_head(name, file_name).as_bytes());
                let bytes = std::fs::read(path)
                    .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
                out.extend_from_slice(&bytes);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::parse_answer;

    #[test]
    fn an_answer_read_off_a_socket_keeps_status_detail_and_body() {
        let raw = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 22\r\nX-Engine-Detail: limit 16 MiB\r\n\r\nthe body is over 16MiBtrailing";
        let a = parse_answer(raw).unwrap();
        assert_eq!(a.status, 413);
        assert_eq!(a.detail.as_deref(), Some("limit 16 MiB"));
        assert_eq!(a.body, b"the body is over 16MiB");
        let chunked = b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n4\r\nover\r\n3\r\n 16\r\n0\r\n\r\n";
        assert_eq!(parse_answer(chunked).unwrap().body, b"over 16");
        assert!(parse_answer(b"HTTP/1.1 413 Payl").is_none());
    }
}
