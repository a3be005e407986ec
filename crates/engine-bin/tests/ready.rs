//! `GET /ready`, the readiness route: 200 only while a deployed model is loaded and its
//! workers are warm, 503 with the reason otherwise; open without a token and whatever the
//! Host, as `/1/health` is.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Engine;
use serde_json::{json, Value};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A model whose init sleeps 3 s when the file `slow` names exists (so a restarted worker
/// stays cold long enough to be seen), and whose worker dies on "die".
fn model(slow: &std::path::Path) -> String {
    format!(
        r#"import os, time
# modelop.init
def begin():
    if os.path.exists({slow:?}):
        time.sleep(3)

# modelop.score
def action(x):
    if x == "die":
        os._exit(3)
    yield x
"#,
        slow = slow.display().to_string()
    )
}

fn deployment(name: &str, source: &str) -> Value {
    json!({
        "name": name,
        "deployableModel": {"storedModel": {"modelAssets": [{
            "name": "m.py", "assetType": "SOURCE_CODE", "sourceCode": source,
        }]}},
    })
}

/// `GET path` over a raw socket, with the Host and headers given, no token unless given:
/// the status and the body as JSON.
fn raw_get(url: &str, path: &str, host: &str, headers: &[&str]) -> (u16, Value) {
    let addr = url.strip_prefix("http://").expect("a plain http engine");
    let mut s = TcpStream::connect(addr).expect("engine listens");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn authed(e: &Engine, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let options = engine_client::ClientOptions {
        token: Some(engine_client::Token::new(TOKEN).unwrap()),
        ..Default::default()
    };
    let c = engine_client::Client::with_options(&e.url, &options).unwrap();
    let bytes = body.to_string().into_bytes();
    let a = match method {
        "PUT" => c.put(path, "application/json", &bytes),
        "POST" => c.post(path, "application/json", &bytes),
        "DELETE" => c.delete(path),
        _ => c.get(path),
    }
    .expect("engine answers");
    (
        a.status,
        serde_json::from_slice(&a.body).unwrap_or(Value::Null),
    )
}

/// Polls `/ready` until `want(status, body)` holds, within `within`.
fn wait_ready(e: &Engine, within: Duration, want: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (s, v) = raw_get(&e.url, "/ready", "localhost", &[]);
        if want(s, &v) {
            return v;
        }
        assert!(Instant::now() < deadline, "/ready stays {s} {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ready_follows_the_deployed_model_and_needs_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow");
    let e = Engine::start(&dir.path().join("data"), &[], &[("ENGINE_TOKEN", TOKEN)]);

    // No model: not ready, answered without a token, and with any Host.
    let (s, r) = raw_get(&e.url, "/ready", "localhost", &[]);
    assert_eq!(s, 503, "{r}");
    assert_eq!(r["ready"], false);
    assert_eq!(r["reason"], "no model is deployed");
    let (s, _) = raw_get(&e.url, "/ready", "engine.example:8003", &[]);
    assert_eq!(s, 503);
    let (s, _) = raw_get(&e.url, "/api/engine", "localhost", &[]);
    assert_eq!(s, 401, "the rest of the API still needs the token");
    let (s, _) = raw_get(&e.url, "/1/health", "localhost", &[]);
    assert_eq!(
        s, 200,
        "health is liveness: up whether or not a model is ready"
    );

    // Deployed: ready, naming the model and its warm workers.
    let (s, d) = authed(
        &e,
        "PUT",
        "/api/deployment",
        &deployment("echo", &model(&slow)),
    );
    assert_eq!(s, 201, "{d}");
    let (s, r) = raw_get(&e.url, "/ready", "localhost", &[]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r,
        json!({"ready": true, "model": "echo", "workers": 1, "reason": null})
    );

    // Its worker dies and the replacement's init is slow: not ready while it starts, then
    // ready again, while health stays 200 throughout.
    std::fs::write(&slow, "").unwrap();
    let (s, _) = authed(&e, "POST", "/api/roundtrip/0/1", &json!("die"));
    assert_eq!(s, 503);
    let r = wait_ready(&e, Duration::from_secs(10), |s, _| s == 503);
    assert_eq!(r["model"], "echo");
    assert!(
        r["reason"].as_str().unwrap_or("").contains("restarted"),
        "{r}"
    );
    assert_eq!(raw_get(&e.url, "/1/health", "localhost", &[]).0, 200);
    wait_ready(&e, Duration::from_secs(30), |s, _| s == 200);
    std::fs::remove_file(&slow).unwrap();

    // A failed redeploy leaves the old model answering: still ready.
    let broken = "# modelop.init\ndef begin():\n    raise ValueError('no')\n\n# modelop.score\ndef action(x):\n    yield x\n";
    let (s, _) = authed(&e, "PUT", "/api/deployment", &deployment("broken", broken));
    assert_eq!(s, 400);
    let (s, r) = raw_get(&e.url, "/ready", "localhost", &[]);
    assert_eq!((s, &r["model"]), (200, &json!("echo")), "{r}");

    // Undeployed: not ready.
    let (s, _) = authed(&e, "DELETE", "/api/deployment", &Value::Null);
    assert!(s == 200 || s == 204, "{s}");
    let (s, r) = raw_get(&e.url, "/ready", "localhost", &[]);
    assert_eq!((s, &r["reason"]), (503, &json!("no model is deployed")));

    // A first deployment that cannot start: not ready, saying so, the model's own words
    // (its exception) kept off this open route.
    let (s, _) = authed(&e, "PUT", "/api/deployment", &deployment("broken", broken));
    assert_eq!(s, 400);
    let (s, r) = raw_get(&e.url, "/ready", "localhost", &[]);
    assert_eq!(s, 503, "{r}");
    let reason = r["reason"].as_str().unwrap_or("");
    assert!(reason.contains("could not start"), "{r}");
    assert!(!r.to_string().contains("ValueError"), "{r}");
}

#[test]
fn ready_says_when_the_workers_are_spent() {
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow");
    let e = Engine::start(
        &dir.path().join("data"),
        &["--worker-restart-budget", "0"],
        &[],
    );
    let (s, d) = e.send("PUT", "/api/deployment", &deployment("echo", &model(&slow)));
    assert_eq!(s, 201, "{d}");
    assert_eq!(e.get("/ready").0, 200);
    let (s, _, _) = e.score("/api/roundtrip/0/1", "\"die\"");
    assert_eq!(s, 503);
    let r = wait_ready(&e, Duration::from_secs(10), |s, _| s == 503);
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be started or replaced"),
        "{r}"
    );
    assert_eq!(e.get("/2/engine/state").1["state"], "ERROR");
}

#[test]
fn ready_is_in_the_openapi_document_with_both_answers() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let (_, api) = e.get("/openapi.json");
    let responses = &api["paths"]["/ready"]["get"]["responses"];
    assert!(responses["200"].is_object(), "{responses}");
    assert!(responses["503"].is_object(), "{responses}");
}

fn engine_cmd(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(common::ENGINE);
    cmd.args(args)
        .env_remove("ENGINE_TOKEN")
        .env_remove("ENGINE_TOKEN_FILE")
        .env_remove("ENGINE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("engine runs");
    (
        out.status.code(),
        common::text(&out.stdout),
        common::text(&out.stderr),
    )
}

#[test]
fn engine_health_probes_liveness_and_readiness_and_the_token_comes_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let token_env = token_file.to_str().unwrap();
    // The token from a file named by ENGINE_TOKEN_FILE (a mounted secret).
    let e = Engine::start(
        &dir.path().join("data"),
        &[],
        &[("ENGINE_TOKEN_FILE", token_env)],
    );
    let (s, _) = raw_get(&e.url, "/api/engine", "localhost", &[]);
    assert_eq!(s, 401);
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (s, _) = raw_get(&e.url, "/api/engine", "localhost", &[&bearer]);
    assert_eq!(s, 200);

    // The probe needs no token.
    let (code, out, err) = engine_cmd(&["health", "--engine", &e.url], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("ok: engine "), "{out}");
    let (code, out, _) = engine_cmd(&["health", "--ready"], &[("ENGINE_URL", &e.url)]);
    assert_eq!(code, Some(1));
    assert_eq!(out.trim(), "not ready: no model is deployed");

    // The CLI takes the token from ENGINE_TOKEN_FILE too.
    let src = dir.path().join("echo.py");
    std::fs::write(&src, model(&dir.path().join("never"))).unwrap();
    let (code, out, err) = engine_cmd(
        &["deploy", src.to_str().unwrap(), "--engine", &e.url],
        &[("ENGINE_TOKEN_FILE", token_env)],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = engine_cmd(&["health", "--ready", "--engine", &e.url], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.trim(), "ready: model echo, 1 worker(s)");
    let (code, out, _) = engine_cmd(&["health", "--ready", "--json", "--engine", &e.url], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["ready"], true);

    // Nobody listening: not healthy, saying where it looked.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let (code, _, err) = engine_cmd(&["health", "--engine", &url], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&url) || err.contains("127.0.0.1"), "{err}");
}

#[test]
fn engine_health_gives_up_on_an_engine_that_never_answers() {
    // Connections are taken into the backlog and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let (code, _, err) = engine_cmd(&["health", "--timeout", "1", "--engine", &url], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("did not answer (waited 1 s at most)"), "{err}");
    assert!(err.contains(&url), "{err}");
    // Well short of the client's default wait of minutes.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

#[test]
fn a_bad_token_in_engine_token_file_is_reported_as_the_files() {
    // The Kubernetes Secret's placeholder, mounted where ENGINE_TOKEN_FILE names it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "replace me: kubectl create secret\n").unwrap();
    let path = file.to_str().unwrap();
    let data = dir.path().join("data");
    let want = format!("the token file {path}: a token must be visible ASCII characters");

    let (code, _, err) = engine_cmd(
        &["serve", "--port", "0", "--data-dir", data.to_str().unwrap()],
        &[("ENGINE_TOKEN_FILE", path)],
    );
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains(&want), "{err}");

    let (code, _, err) = engine_cmd(
        &["status", "--engine", "http://127.0.0.1:9"],
        &[("ENGINE_TOKEN_FILE", path)],
    );
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains(&want), "{err}");
}
