//! Shared by the `engine serve` test binaries: the real engine on a free loopback port and
//! small HTTP helpers. Each test file includes it with `mod common;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine_client::Client;
use serde_json::Value;

pub const ENGINE: &str = env!("CARGO_BIN_EXE_engine");

pub struct Engine {
    pub child: Option<Child>,
    pub url: String,
    pub data: PathBuf,
}

impl Engine {
    pub fn start(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Engine {
        let mut cmd = Command::new(ENGINE);
        cmd.args(["serve", "--port", "0", "--bind", "127.0.0.1", "--data-dir"])
            .arg(data)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for var in [
            "ENGINE_LOG",
            "MODELOP_API_PORT",
            "ENGINE_PORT",
            "ENGINE_CONFIG",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("engine starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("engine says where it listens");
        let url = line
            .trim()
            .strip_prefix("engine listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        Engine {
            child: Some(child),
            url,
            data: data.to_path_buf(),
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url)
    }

    /// A client sending `token` with every request.
    pub fn client_with_token(&self, token: &str) -> Client {
        token_client(&self.url, token)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let a = self.client().get(path).expect("engine answers");
        (
            a.status,
            serde_json::from_slice(&a.body).unwrap_or(Value::Null),
        )
    }

    pub fn send(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let bytes = body.to_string().into_bytes();
        let c = self.client();
        let a = match method {
            "PUT" => c.put(path, "application/json", &bytes),
            _ => c.post(path, "application/json", &bytes),
        }
        .expect("engine answers");
        (
            a.status,
            serde_json::from_slice(&a.body).unwrap_or(Value::Null),
        )
    }

    pub fn score(&self, path: &str, body: &str) -> (u16, String, Option<String>) {
        let a = self
            .client()
            .post(path, "application/json", body.as_bytes())
            .expect("engine answers");
        (
            a.status,
            String::from_utf8_lossy(&a.body).into_owned(),
            None,
        )
    }

    /// The deployment log's messages, one a line.
    pub fn deployment_log_text(&self) -> String {
        let (_, log) = self.get("/api/deployment/log");
        log["lines"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|l| l["message"].as_str().unwrap_or("").to_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    pub fn wait_job(&self, id: &str, done: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, v) = self.get(&format!("/api/jobs/{id}"));
            if done.contains(&v["jobStatus"].as_str().unwrap_or("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "job {id} stays {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&mut self, sig: &str) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("kill runs");
        child.wait().expect("engine exits").code()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A tiny HTTP/1.1 client over a raw socket, to see response headers.
pub mod ureq_free {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    pub struct Agent;

    pub fn agent() -> Agent {
        Agent
    }

    impl Agent {
        pub fn post(&self, url: &str, body: &str) -> (u16, Option<String>) {
            let rest = url.strip_prefix("http://").unwrap();
            let (host, path) = rest.split_once('/').unwrap();
            let mut s = TcpStream::connect(host).unwrap();
            write!(
                s,
                "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            let status = answer
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let retry = answer.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("retry-after:")
                    .map(|v| v.trim().to_owned())
            });
            (status, retry)
        }
    }
}

/// The repository's root, where `engine run` tests run (examples/ and tests/models/).
/// A client of the engine at `url` sending `token` with every request.
pub fn token_client(url: &str, token: &str) -> Client {
    Client::with_options(
        url,
        &engine_client::ClientOptions {
            token: Some(engine_client::Token::new(token).expect("a valid token")),
            ..engine_client::ClientOptions::default()
        },
    )
    .expect("a client")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `engine ARGS...` run from the repository's root, its output collected.
pub fn run_engine(args: &[&str]) -> std::process::Output {
    Command::new(ENGINE)
        .args(args)
        .current_dir(repo_root())
        .env_remove("ENGINE_LOG")
        .output()
        .expect("engine runs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Standard output read as JSON lines.
pub fn json_lines(out: &std::process::Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}
