//! `engine serve` safe on its defaults, through the real binary: the data folder (made
//! absolute, locked), bind and authentication, TLS, and the environment model code gets.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ENGINE;
use serde_json::{json, Value};

const MODEL: &str = r#"# modelop.init
def begin():
    pass

# modelop.score
def action(x):
    yield x
"#;

/// Variables of the test's own environment that would change what the engine does.
const ENGINE_VARS: [&str; 12] = [
    "ENGINE_LOG",
    "ENGINE_PORT",
    "ENGINE_BIND",
    "ENGINE_CONFIG",
    "ENGINE_DATA_DIR",
    "ENGINE_TOKEN",
    "ENGINE_SCORING_TOKEN",
    "ENGINE_URL",
    "MODELOP_API_PORT",
    "MODELOP_APPLICATION_JSON",
    "ENGINE_TLS_CERT",
    "ENGINE_TLS_KEY",
];

/// An `engine serve` started with exactly the given arguments, its standard error kept.
struct Serve {
    child: Option<Child>,
    url: String,
    #[allow(dead_code)]
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    fn command(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(ENGINE);
        cmd.arg("serve")
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in ENGINE_VARS {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the engine and waits for its `engine listening on URL` line.
    fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut child = Serve::command(cwd, args, env)
            .spawn()
            .expect("engine starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let keep = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                keep.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("engine says where it listens");
        let url = line
            .trim()
            .strip_prefix("engine listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line: {line:?}; stderr: {}",
                    stderr.lock().unwrap()
                )
            })
            .to_owned();
        Serve {
            child: Some(child),
            url,
            stderr,
        }
    }

    /// Runs an engine expected to refuse to start: its exit status and standard error.
    fn refused(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
        let mut child = Serve::command(cwd, args, env)
            .spawn()
            .expect("engine starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status.code(), err);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the engine did not refuse to start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn addr(&self) -> String {
        self.url
            .split_once("://")
            .map(|(_, a)| a.to_owned())
            .unwrap_or_default()
    }

    #[allow(dead_code)]
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One plain HTTP/1.1 request with the given extra header lines; status and body.
fn raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("engine accepts");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn job_document() -> Value {
    json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": {"storedModel": {"modelAssets": [{
            "name": "echo.py", "assetType": "SOURCE_CODE", "primaryModelSource": true,
            "sourceCode": MODEL,
        }]}},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": "1\n2\n"}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
    })
}

fn deployment_document() -> Value {
    json!({
        "name": "echo",
        "deployableModel": {"storedModel": {"modelAssets": [{
            "name": "echo.py", "assetType": "SOURCE_CODE", "sourceCode": MODEL,
        }]}},
    })
}

fn wait_job(client: &service::client::Client, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = client
            .get(&format!("/api/jobs/{id}"))
            .expect("engine answers");
        let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        if ["COMPLETE", "ERROR", "CANCELLED"].contains(&v["jobStatus"].as_str().unwrap_or("")) {
            return v;
        }
        assert!(Instant::now() < deadline, "job {id} stays {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn h1_default_data_dir_relative_to_a_fresh_cwd_deploys_scores_and_runs_jobs() {
    let cwd = tempfile::tempdir().unwrap();
    let e = Serve::start(cwd.path(), &["--port", "0"], &[]);
    let c = service::client::Client::new(&e.url);
    let doc = deployment_document().to_string();
    let a = c
        .put("/api/deployment", "application/json", doc.as_bytes())
        .unwrap();
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let a = c
        .post("/api/roundtrip/0/1", "application/json", b"{\"x\": 1}")
        .unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(String::from_utf8_lossy(&a.body), "{\"x\":1}");
    let doc = job_document().to_string();
    let a = c
        .post("/api/jobs", "application/json", doc.as_bytes())
        .unwrap();
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let job: Value = serde_json::from_slice(&a.body).unwrap();
    let done = wait_job(&c, job["id"].as_str().unwrap());
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
    assert!(cwd.path().join("engine-data").join("engine.db").exists());
}

#[test]
fn h1_a_second_engine_on_the_same_data_dir_is_refused_naming_the_first() {
    let cwd = tempfile::tempdir().unwrap();
    let first = Serve::start(cwd.path(), &["--port", "0", "--data-dir", "data"], &[]);
    let pid = first.child.as_ref().unwrap().id().to_string();
    let (code, err) = Serve::refused(cwd.path(), &["--port", "0", "--data-dir", "./data/"], &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("in use by another engine"), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    // The first one goes on.
    let (s, _) = raw(&first.addr(), "GET", "/1/health", &[], "");
    assert_eq!(s, 200);
    drop(first);
    let again = Serve::start(cwd.path(), &["--port", "0", "--data-dir", "data"], &[]);
    assert!(again.url.starts_with("http://"));
}
