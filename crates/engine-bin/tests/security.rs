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
    /// The separate scoring port's URL, when one was asked for.
    scoring: Option<String>,
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
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        stdout
            .read_line(&mut line)
            .expect("engine says where it listens");
        let scoring = args.contains(&"--scoring-port").then(|| {
            let mut l = String::new();
            stdout
                .read_line(&mut l)
                .expect("engine says where it scores");
            l.trim()
                .strip_prefix("engine scoring on ")
                .unwrap_or_else(|| panic!("unexpected second line: {l:?}"))
                .to_owned()
        });
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
            scoring,
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
        addr_of(&self.url)
    }

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

fn addr_of(url: &str) -> String {
    url.split_once("://")
        .map(|(_, a)| a.to_owned())
        .unwrap_or_default()
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

fn wait_job(client: &engine_client::Client, id: &str) -> Value {
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
fn default_data_dir_relative_to_a_fresh_cwd_deploys_scores_and_runs_jobs() {
    let cwd = tempfile::tempdir().unwrap();
    let e = Serve::start(cwd.path(), &["--port", "0"], &[]);
    let c = engine_client::Client::new(&e.url);
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
fn a_second_engine_on_the_same_data_dir_is_refused_naming_the_first() {
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

const TOKEN: &str = "test-token-0123456789abcdef";
const SCORING_TOKEN: &str = "scoring-token-0123456789abcdef";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn with_a_token_every_route_but_health_needs_it() {
    let cwd = tempfile::tempdir().unwrap();
    let e = Serve::start(
        cwd.path(),
        &["--port", "0", "--data-dir", "data"],
        &[("ENGINE_TOKEN", TOKEN), ("ENGINE_LOG", "debug")],
    );
    let a = e.addr();
    for path in [
        "/api/engine",
        "/2/engine/state",
        "/api/jobs",
        "/api/live",
        "/metrics",
        "/api/roundtrip/0/1",
    ] {
        let (s, body) = raw(&a, "GET", path, &[], "");
        assert_eq!(s, 401, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON body: {body}"));
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer"),
            "{v}"
        );
    }
    let (s, body) = raw(&a, "POST", "/api/roundtrip/0/1", &[], "1");
    assert_eq!(s, 401, "{body}");
    let (s, body) = raw(
        &a,
        "GET",
        "/api/engine",
        &[("Authorization", "Bearer not-the-token-at-all")],
        "",
    );
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("not valid"), "{body}");
    let (s, body) = raw(&a, "GET", "/api/engine", &[("Authorization", TOKEN)], "");
    assert_eq!(s, 401, "a token without the Bearer scheme: {body}");
    let (s, body) = raw(
        &a,
        "GET",
        "/api/engine",
        &[("Authorization", &bearer(TOKEN))],
        "",
    );
    assert_eq!(s, 200, "{body}");
    // A token makes the Host check unnecessary: a client with the token is trusted.
    let (s, _) = raw(
        &a,
        "GET",
        "/api/engine",
        &[
            ("Authorization", &bearer(TOKEN)),
            ("Host", "engine.internal:8003"),
        ],
        "",
    );
    assert_eq!(s, 200);
    let (s, body) = raw(&a, "GET", "/1/health", &[], "");
    assert_eq!(s, 200, "{body}");
    // The pages hold no data: the dashboard, its assets, the API's document and Swagger
    // UI are open; what they show comes from the routes above.
    for path in ["/", "/ui/app.js", "/ui/app.css", "/docs/", "/openapi.json"] {
        let (s, body) = raw(&a, "GET", path, &[], "");
        assert_eq!(s, 200, "{path}: {body}");
    }
    assert!(
        !e.stderr().contains(TOKEN),
        "the token is logged: {}",
        e.stderr()
    );
}

#[test]
fn the_cli_sends_engine_token_or_the_token_file() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("token.txt"), format!("{TOKEN}\n")).unwrap();
    let e = Serve::start(
        cwd.path(),
        &[
            "--port",
            "0",
            "--data-dir",
            "data",
            "--auth-token-file",
            "token.txt",
        ],
        &[],
    );
    let status = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(ENGINE);
        cmd.args(["status", "--json", "--engine", &e.url])
            .args(args)
            .current_dir(cwd.path());
        for var in ENGINE_VARS {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = status(&[], &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("401"), "{err}");
    let (code, out, err) = status(&[], &[("ENGINE_TOKEN", TOKEN)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"state\""), "{out}");
    let (code, _, err) = status(&["--token-file", "token.txt"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = status(&[], &[("ENGINE_TOKEN", "wrong-token-0123456789abcdef")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("not valid"), "{err}");

    // `engine token` prints a fresh token the engine accepts.
    let out = Command::new(ENGINE).arg("token").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let fresh = String::from_utf8(out.stdout).unwrap();
    assert_eq!(fresh.trim().len(), 64, "{fresh}");
    let again = Command::new(ENGINE).arg("token").output().unwrap();
    assert_ne!(fresh, String::from_utf8(again.stdout).unwrap());
}

#[test]
fn the_scoring_port_has_its_own_token_or_is_open_when_configured() {
    let cwd = tempfile::tempdir().unwrap();
    let e = Serve::start(
        cwd.path(),
        &["--port", "0", "--scoring-port", "0", "--data-dir", "one"],
        &[
            ("ENGINE_TOKEN", TOKEN),
            ("ENGINE_SCORING_TOKEN", SCORING_TOKEN),
        ],
    );
    let scoring = addr_of(e.scoring.as_deref().unwrap());
    let (s, _) = raw(&scoring, "POST", "/api/roundtrip/0/1", &[], "1");
    assert_eq!(s, 401);
    let (s, _) = raw(
        &scoring,
        "POST",
        "/api/roundtrip/0/1",
        &[("Authorization", &bearer(TOKEN))],
        "1",
    );
    assert_eq!(s, 401, "the control token is not the scoring port's");
    let (s, body) = raw(
        &scoring,
        "POST",
        "/api/roundtrip/0/1",
        &[("Authorization", &bearer(SCORING_TOKEN))],
        "1",
    );
    assert_eq!(s, 404, "past authentication, no model is deployed: {body}");
    drop(e);

    // Without its own token the scoring port takes the control token.
    let e = Serve::start(
        cwd.path(),
        &["--port", "0", "--scoring-port", "0", "--data-dir", "two"],
        &[("ENGINE_TOKEN", TOKEN)],
    );
    let scoring = addr_of(e.scoring.as_deref().unwrap());
    let (s, _) = raw(&scoring, "POST", "/api/roundtrip/0/1", &[], "1");
    assert_eq!(s, 401);
    let (s, _) = raw(
        &scoring,
        "POST",
        "/api/roundtrip/0/1",
        &[("Authorization", &bearer(TOKEN))],
        "1",
    );
    assert_eq!(s, 404);
    drop(e);

    std::fs::write(
        cwd.path().join("application.json"),
        r#"{"scoringOpen": true}"#,
    )
    .unwrap();
    let e = Serve::start(
        cwd.path(),
        &[
            "--port",
            "0",
            "--scoring-port",
            "0",
            "--data-dir",
            "three",
            "--config",
            "application.json",
        ],
        &[("ENGINE_TOKEN", TOKEN)],
    );
    let scoring = addr_of(e.scoring.as_deref().unwrap());
    let (s, _) = raw(&scoring, "POST", "/api/roundtrip/0/1", &[], "1");
    assert_eq!(s, 404, "an open scoring port needs no token");
    let (s, _) = raw(&e.addr(), "POST", "/api/roundtrip/0/1", &[], "1");
    assert_eq!(s, 401, "the control port still does");
}

#[test]
fn a_non_loopback_bind_without_a_token_refuses_to_start_and_says_how() {
    let cwd = tempfile::tempdir().unwrap();
    let (code, err) = Serve::refused(cwd.path(), &["--port", "0", "--bind", "0.0.0.0"], &[]);
    assert_eq!(code, Some(64), "{err}");
    for want in [
        "0.0.0.0 is not a loopback address",
        "engine token",
        "--auth-token-file",
        "ENGINE_TOKEN",
        "--insecure-no-auth",
    ] {
        assert!(err.contains(want), "{want} missing from {err}");
    }
    assert!(
        !cwd.path().join("engine-data").exists(),
        "nothing is created before refusing"
    );

    let e = Serve::start(
        cwd.path(),
        &[
            "--port",
            "0",
            "--bind",
            "0.0.0.0",
            "--insecure-no-auth",
            "--data-dir",
            "data",
        ],
        &[],
    );
    let port = e.addr().rsplit_once(':').unwrap().1.to_owned();
    let (s, _) = raw(
        &format!("127.0.0.1:{port}"),
        "GET",
        "/api/engine",
        &[("Host", "engine.internal")],
        "",
    );
    assert_eq!(s, 200, "insecure on purpose: no token, any Host");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.stderr().contains("WITHOUT authentication") {
        assert!(Instant::now() < deadline, "no warning in {}", e.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(e.stderr().contains("WARN"), "{}", e.stderr());

    let e = Serve::start(
        cwd.path(),
        &["--port", "0", "--bind", "0.0.0.0", "--data-dir", "data2"],
        &[("ENGINE_TOKEN", TOKEN)],
    );
    let port = e.addr().rsplit_once(':').unwrap().1.to_owned();
    let (s, _) = raw(&format!("127.0.0.1:{port}"), "GET", "/api/engine", &[], "");
    assert_eq!(s, 401);
}

#[test]
fn on_loopback_without_a_token_only_loopback_hosts_and_origins_are_served() {
    let cwd = tempfile::tempdir().unwrap();
    let e = Serve::start(cwd.path(), &["--port", "0", "--data-dir", "data"], &[]);
    let a = e.addr();
    let port = a.rsplit_once(':').unwrap().1.to_owned();
    for host in [
        a.clone(),
        format!("localhost:{port}"),
        "localhost".into(),
        format!("[::1]:{port}"),
        format!("127.0.0.2:{port}"),
    ] {
        let (s, body) = raw(&a, "GET", "/api/engine", &[("Host", &host)], "");
        assert_eq!(s, 200, "{host}: {body}");
    }
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        format!("localhost.evil.example:{port}"),
        format!("10.1.2.3:{port}"),
    ] {
        let (s, body) = raw(&a, "GET", "/api/engine", &[("Host", &host)], "");
        assert_eq!(s, 403, "{host}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("Host"), "{v}");
    }
    let (s, body) = raw(
        &a,
        "POST",
        "/api/jobs",
        &[("Origin", "http://evil.example")],
        &job_document().to_string(),
    );
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("Origin"), "{body}");
    let (s, _) = raw(
        &a,
        "PUT",
        "/api/deployment",
        &[("Origin", "null")],
        &deployment_document().to_string(),
    );
    assert_eq!(s, 403);
    let (s, body) = raw(
        &a,
        "GET",
        "/api/engine",
        &[("Origin", &format!("http://localhost:{port}"))],
        "",
    );
    assert_eq!(s, 200, "{body}");
    // A page of another server on this machine is another origin.
    let (s, body) = raw(
        &a,
        "POST",
        "/api/jobs",
        &[("Origin", "http://localhost:3000")],
        &job_document().to_string(),
    );
    assert_eq!(s, 403, "{body}");
    let (s, _) = raw(&a, "GET", "/api/jobs", &[], "");
    assert_eq!(s, 200);
}

/// A self-signed certificate for localhost and 127.0.0.1, written as `NAME.crt` and
/// `NAME.key` in `dir`.
fn self_signed(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn tls_client(url: &str, ca: &Path) -> engine_client::Client {
    engine_client::Client::with_options(
        url,
        &engine_client::ClientOptions {
            token: Some(engine_client::Token::new(TOKEN).unwrap()),
            ca_file: Some(ca.to_owned()),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn tls_on_both_ports_with_the_cli_and_a_sighup_reload() {
    let cwd = tempfile::tempdir().unwrap();
    let (cert_a, key_a) = self_signed(cwd.path(), "a");
    let (cert_b, key_b) = self_signed(cwd.path(), "b");
    std::fs::copy(&cert_a, cwd.path().join("serve.crt")).unwrap();
    std::fs::copy(&key_a, cwd.path().join("serve.key")).unwrap();
    let mut e = Serve::start(
        cwd.path(),
        &[
            "--port",
            "0",
            "--scoring-port",
            "0",
            "--data-dir",
            "data",
            "--tls-cert",
            "serve.crt",
            "--tls-key",
            "serve.key",
        ],
        &[("ENGINE_TOKEN", TOKEN)],
    );
    assert!(e.url.starts_with("https://127.0.0.1:"), "{}", e.url);
    // Unusable files refuse the start, naming the file.
    let (code, err) = Serve::refused(
        cwd.path(),
        &[
            "--port",
            "0",
            "--data-dir",
            "bad",
            "--tls-cert",
            "serve.crt",
            "--tls-key",
            "missing.key",
        ],
        &[],
    );
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("tlsKey") && err.contains("missing.key"),
        "{err}"
    );
    let (code, err) = Serve::refused(
        cwd.path(),
        &[
            "--port",
            "0",
            "--data-dir",
            "bad",
            "--tls-cert",
            "serve.crt",
            "--tls-key",
            "b.key",
        ],
        &[],
    );
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("does not go with"), "{err}");
    let scoring = e.scoring.clone().unwrap();
    assert!(scoring.starts_with("https://"), "{scoring}");

    let a = tls_client(&e.url, &cert_a).get("/api/engine").unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let a = tls_client(&scoring, &cert_a)
        .post("/api/roundtrip/0/1", "application/json", b"1")
        .unwrap();
    assert_eq!(a.status, 404, "past TLS and the token, no model deployed");
    // Plain HTTP gets no answer from a TLS port.
    let (s, _) = raw(&e.addr(), "GET", "/1/health", &[], "");
    assert_ne!(s, 200);
    // Not trusting the engine's certificate: refused by the client.
    assert!(tls_client(&e.url, &cert_b).get("/1/health").is_err());

    let cli = |ca: &Path| {
        let mut cmd = Command::new(ENGINE);
        cmd.args(["status", "--json", "--engine", &e.url, "--ca-file"])
            .arg(ca)
            .current_dir(cwd.path());
        for var in ENGINE_VARS {
            cmd.env_remove(var);
        }
        let out = cmd.env("ENGINE_TOKEN", TOKEN).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = cli(&cert_a);
    assert_eq!(code, Some(0), "{err}");
    let (code, _) = cli(&cert_b);
    assert_ne!(code, Some(0));

    // A new certificate in the same files, then SIGHUP: new connections get it, on the
    // same listener.
    std::fs::copy(&cert_b, cwd.path().join("serve.crt")).unwrap();
    std::fs::copy(&key_b, cwd.path().join("serve.key")).unwrap();
    let pid = e.child.as_ref().unwrap().id().to_string();
    let hup = |pid: &str| {
        assert!(Command::new("kill")
            .args(["-HUP", pid])
            .status()
            .unwrap()
            .success());
    };
    hup(&pid);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tls_client(&e.url, &cert_b).get("/1/health").is_err() {
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served: {}",
            e.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(tls_client(&e.url, &cert_a).get("/1/health").is_err());
    let a = tls_client(&scoring, &cert_b)
        .post("/api/roundtrip/0/1", "application/json", b"1")
        .unwrap();
    assert_eq!(a.status, 404);
    assert_eq!(cli(&cert_b).0, Some(0));

    // A broken file on reload keeps the certificate in use, and says so.
    std::fs::write(cwd.path().join("serve.crt"), "not a certificate").unwrap();
    hup(&pid);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !e.stderr().contains("TLS reload failed") {
        assert!(
            Instant::now() < deadline,
            "no reload error in {}",
            e.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = tls_client(&e.url, &cert_b).get("/api/engine").unwrap();
    assert_eq!(a.status, 200);
    assert!(
        e.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the engine runs on"
    );
}

fn test_model(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/models/env_echo")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_scrubbed(names: &[String], context: &str) {
    for secret in [
        "ENGINE_TOKEN",
        "ENGINE_SCORING_TOKEN",
        "ENGINE_SECRET_SETTING",
        "MODELOP_DB_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
        "PIP_INDEX_URL",
    ] {
        assert!(
            !names.iter().any(|n| n == secret),
            "{context}: {secret} reached the model: {names:?}"
        );
    }
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("ENGINE_") || n.starts_with("MODELOP_")),
        "{context}: {names:?}"
    );
    for needed in ["PATH", "HOME", "LANG", "DB_URL", "FEATURE_FLAG_A"] {
        assert!(
            names.iter().any(|n| n == needed),
            "{context}: {needed} missing from {names:?}"
        );
    }
}

#[test]
fn model_code_runs_without_the_engines_token_and_secrets() {
    let cwd = tempfile::tempdir().unwrap();
    let e = Serve::start(
        cwd.path(),
        &["--port", "0", "--data-dir", "data"],
        &[
            ("ENGINE_TOKEN", TOKEN),
            ("ENGINE_SCORING_TOKEN", SCORING_TOKEN),
            ("ENGINE_SECRET_SETTING", "x"),
            ("MODELOP_DB_PASSWORD", "x"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("PIP_INDEX_URL", "https://user:pw@index.example/simple"),
            ("DB_URL", "postgres://db"),
            ("FEATURE_FLAG_A", "1"),
            ("LANG", "C.UTF-8"),
            ("ENGINE_WORKER_ENV", "DB_URL, FEATURE_FLAG_*"),
        ],
    );
    let c = engine_client::Client::with_options(
        &e.url,
        &engine_client::ClientOptions {
            token: Some(engine_client::Token::new(TOKEN).unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    let deploy = |file: &str| {
        let doc = json!({"name": file, "deployableModel": {"storedModel": {"modelAssets": [
            {"name": file, "assetType": "SOURCE_CODE", "sourceCode": test_model(file)}]}}});
        let a = c
            .put(
                "/api/deployment",
                "application/json",
                doc.to_string().as_bytes(),
            )
            .unwrap();
        assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
        let a = c
            .post("/api/roundtrip/0/1", "application/json", b"1")
            .unwrap();
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        serde_json::from_slice::<Value>(&a.body).unwrap()
    };
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect()
    };
    assert_scrubbed(&names(&deploy("env_echo.py")), "python deployment");
    assert_scrubbed(&names(&deploy("env_echo.R")["names"]), "R deployment");

    let mut job = job_document();
    job["model"]["storedModel"]["modelAssets"][0]["sourceCode"] = json!(test_model("env_echo.py"));
    let a = c
        .post("/api/jobs", "application/json", job.to_string().as_bytes())
        .unwrap();
    assert_eq!(a.status, 201);
    let id = serde_json::from_slice::<Value>(&a.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = wait_job(&c, &id);
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
    let line = done["jobMessages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .find(|m| m.contains("environment:"))
        .unwrap_or_else(|| panic!("no environment line in {done}"))
        .to_owned();
    let job_names: Vec<String> = line
        .split("environment:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_scrubbed(&job_names, "python job");
}
