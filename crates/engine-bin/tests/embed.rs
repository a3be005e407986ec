//! The engine embedded in a host program, through the library API only (`service::Engine`):
//! the host owns the listener, mounts the engine's routers under `/engine` beside a route of
//! its own, runs the job queue and shuts the engine down. The Python workers are the real
//! `engine worker python`, the only use of the binary here.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_client::{Client, Part};
use runtime_core::{Language, Slot};
use serde_json::Value;
use service::{Config, Deps, Engine, EngineState, RunnerSet};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What a host gives the engine: a Python runner whose workers are `engine worker python`.
fn deps() -> Deps {
    let base_env = worker::env::worker_environment(std::env::vars_os(), &[]);
    let command = worker::WorkerCommand::new(ENGINE)
        .arg("worker")
        .arg("python")
        .with_base_env(base_env);
    Deps {
        runners: RunnerSet::new().with(
            Language::Python,
            Arc::new(runner_python::PythonRunner::new(command)),
        ),
        environments: None,
        platforms: Arc::new(Vec::new),
        release: "embedded".to_owned(),
        built_on: "unknown".to_owned(),
        registry: endpoints::Registry::default(),
        spark: None,
    }
}

fn config(data_dir: &Path) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        shutdown_grace_ms: 5000,
        ..Config::default()
    }
}

/// The host's app: a route of its own, the engine's control API under `/engine`, its
/// scoring routes alone under `/scoring`.
async fn host(engine: &Arc<Engine>) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let app = axum::Router::new()
        .route("/status", axum::routing::get(|| async { "host ok" }))
        .nest("/engine", engine.control_router())
        .nest("/scoring", engine.scoring_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    (addr, stop)
}

/// A raw request with the headers given, to see what the engine's Host/Origin checks do.
fn raw_status(addr: SocketAddr, path: &str, headers: &str) -> u16 {
    raw_text(addr, path, headers)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The whole answer to a raw GET, head and body.
fn raw_text(addr: SocketAddr, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

fn json(c: &Client, path: &str) -> Value {
    Client::json(c.get(path).unwrap()).unwrap()
}

fn model_parts() -> Vec<Part> {
    let model = repo_root().join("examples/credit-score/model");
    let mut parts = Vec::new();
    for (name, file) in [
        ("source", "model.py"),
        ("asset", "weights.json"),
        ("asset", "application_schema.avsc"),
    ] {
        parts.push(Part::file(name, &model.join(file), file).unwrap());
    }
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_mounts_the_engine_under_a_prefix_scores_runs_a_job_and_shuts_it_down() {
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(data.path()), deps()).await.unwrap();
    let (addr, stop_host) = host(&engine).await;
    engine.set_endpoints(vec![format!("http://{addr}/engine")]);
    let queue = tokio::spawn(engine.run_queue());

    let checks = tokio::task::spawn_blocking(move || {
        let root = Client::new(&format!("http://{addr}"));
        let a = root.get("/status").unwrap();
        assert_eq!((a.status, &a.body[..]), (200, &b"host ok"[..]));

        let c = Client::new(&format!("http://{addr}/engine"));
        assert_eq!(c.get("/1/health").unwrap().status, 200);
        let details = json(&c, "/api/engine");
        assert_eq!(
            details["endpoints"][0],
            format!("http://{addr}/engine"),
            "{details}"
        );
        // An unknown path under the prefix is the engine's JSON 404, not the host's.
        let a = c.get("/api/no-such-route").unwrap();
        assert_eq!(a.status, 404);
        assert!(a.error().to_string().contains("/engine/api/no-such-route"));
        // The pages under the prefix: the dashboard at the prefix names its base so that
        // its relative URLs resolve under the prefix; Swagger UI is sent to `docs/`.
        let port = addr.port();
        let host = format!("Host: 127.0.0.1:{port}\r\n");
        let page = raw_text(addr, "/engine", &host);
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("<base href=\"engine/\">"), "{page}");
        let answer = raw_text(addr, "/engine/docs", &host);
        assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("location: /engine/docs/\r\n"),
            "{answer}"
        );
        for path in ["/engine/ui/app.js", "/engine/docs/", "/engine/openapi.json"] {
            assert_eq!(raw_status(addr, path, &host), 200, "{path}");
        }
        // Without a token the engine answers loopback Hosts and its own Origin only, on
        // the host's listener as on its own.
        assert_eq!(raw_status(addr, "/engine/api/engine", &host), 200);
        assert_eq!(
            raw_status(addr, "/engine/api/engine", "Host: evil.example\r\n"),
            403
        );
        let same = format!("{host}Origin: http://localhost:{port}\r\n");
        assert_eq!(raw_status(addr, "/engine/api/engine", &same), 200);
        let other = format!("{host}Origin: http://localhost:3000\r\n");
        assert_eq!(raw_status(addr, "/engine/api/engine", &other), 403);
        assert_eq!(
            raw_status(addr, "/scoring/api/roundtrip/0/1", "Host: evil.example\r\n"),
            403
        );

        // The example model, deployed and scored through the nested routes.
        let mut parts = model_parts();
        parts.push(Part::text("name", "credit"));
        let a = c.upload("PUT", "/api/deployment/upload", &parts).unwrap();
        assert!(a.status < 300, "{}", a.error());
        let application = br#"{"id": 7, "debt_to_income": 0.1, "late_payments": 0, "years_employed": 12, "credit_utilization": 0.05}"#;
        for (client, path) in [
            (&c, "/api/roundtrip/0/1"),
            (&root, "/scoring/api/roundtrip/0/1"),
        ] {
            let a = client.post(path, "application/json", application).unwrap();
            assert_eq!(a.status, 200, "{path}: {}", a.error());
            let scored: Value = serde_json::from_slice(&a.body).unwrap();
            assert_eq!(scored["id"], 7, "{scored}");
            assert_eq!(scored["decision"], "approve", "{scored}");
        }

        // A job, run by the queue the host spawned.
        let mut parts = model_parts();
        parts.push(Part::text("jobType", "batchjob"));
        let input = repo_root().join("examples/credit-score/applications.jsonl");
        parts.push(Part::file("input", &input, "applications.jsonl").unwrap());
        let created: Value =
            Client::json(c.upload("POST", "/api/jobs/upload", &parts).unwrap()).unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        let job = loop {
            let job = json(&c, &format!("/api/jobs/{id}"));
            if job["jobStatus"] == "COMPLETE" || job["jobStatus"] == "ERROR" {
                break job;
            }
            assert!(Instant::now() < deadline, "job {id} stays {job}");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(job["jobResult"], "SUCCESS", "{job}");
        let result = json(&c, &format!("/api/jobs/{id}/result"));
        let output = result["outputs"][0]["content"].as_str().unwrap_or("");
        assert_eq!(output.lines().count(), 20, "{result}");
    });
    checks.await.unwrap();

    assert_eq!(engine.state(), EngineState::Running);
    let grace = Duration::from_secs(5);
    tokio::time::timeout(grace * 2, engine.shutdown(grace))
        .await
        .expect("the engine stops within its grace");
    let _ = stop_host.send(());
    assert_eq!(engine.state(), EngineState::Finished);
    assert!(engine.deployment().is_none());
    tokio::time::timeout(grace, queue)
        .await
        .expect("the queue returns once the engine is shut down")
        .unwrap();
    // A stopped engine runs no queue again.
    tokio::time::timeout(Duration::from_secs(1), engine.run_queue())
        .await
        .expect("run_queue returns at once after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_policy_holds_under_a_prefix_and_health_stays_open() {
    let data = tempfile::tempdir().unwrap();
    let token = "0123456789abcdef0123";
    let config = Config {
        auth_token: Some(service::auth::Token::new("authToken", token).unwrap()),
        ..config(data.path())
    };
    let engine = Engine::open(config, deps()).await.unwrap();
    let (addr, stop_host) = host(&engine).await;
    tokio::task::spawn_blocking(move || {
        let anonymous = Client::new(&format!("http://{addr}/engine"));
        assert_eq!(anonymous.get("/1/health").unwrap().status, 200);
        assert_eq!(anonymous.get("/api/engine").unwrap().status, 401);
        let options = engine_client::ClientOptions {
            token: Some(engine_client::Token::new(token).unwrap()),
            ..Default::default()
        };
        let c = Client::with_options(&format!("http://{addr}/engine"), &options).unwrap();
        assert_eq!(c.get("/api/engine").unwrap().status, 200);
        // With a token, any Host may call.
        let bearer = format!("Host: evil.example\r\nAuthorization: Bearer {token}\r\n");
        assert_eq!(raw_status(addr, "/engine/api/engine", &bearer), 200);
        // The host's own routes are its business.
        let root = Client::new(&format!("http://{addr}"));
        assert_eq!(root.get("/status").unwrap().status, 200);
    })
    .await
    .unwrap();
    // A queue never run has nothing to wait for: the shutdown is prompt.
    tokio::time::timeout(
        Duration::from_secs(5),
        engine.shutdown(Duration::from_secs(30)),
    )
    .await
    .expect("a shutdown without a running queue is prompt");
    let _ = stop_host.send(());
    assert_eq!(engine.state(), EngineState::Finished);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_deploys_a_model_and_scores_records_in_process() {
    let data = tempfile::tempdir().unwrap();
    let model = repo_root()
        .join("examples/credit-score/model")
        .canonicalize()
        .unwrap();
    let config = Config {
        allowed_paths: vec![model.clone()],
        ..config(data.path())
    };
    let engine = Engine::open(config, deps()).await.unwrap();
    let asset = |name: &str, dir: &Path| {
        serde_json::json!({
            "assetType": "FILE",
            "filename": name,
            "fileUrl": service::document::file_url(&dir.join(name)),
        })
    };
    let document = |weights: Value| {
        serde_json::json!({
            "name": "credit",
            "deployableModel": {"storedModel": {"modelAssets": [
                {
                    "assetType": "SOURCE_CODE",
                    "primaryModelSource": true,
                    "filename": "model.py",
                    "sourceCode": std::fs::read_to_string(model.join("model.py")).unwrap(),
                },
                weights,
                asset("application_schema.avsc", &model),
            ]}},
        })
        .to_string()
    };

    let deployed = engine
        .deploy(document(asset("weights.json", &model)))
        .await
        .unwrap();
    assert_eq!(deployed.name, "credit");
    let application = br#"{"id": 7, "debt_to_income": 0.1, "late_payments": 0, "years_employed": 12, "credit_utilization": 0.05}"#;
    let timeout = Duration::from_secs(30);
    let answer = deployed
        .score_message(Slot(0), Slot(1), application, timeout)
        .await
        .unwrap()
        .expect("the model yields a decision");
    let scored: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(scored["decision"], "approve", "{scored}");
    // A record the slot's schema refuses is the library's error, as the route's 400.
    let refused = deployed
        .score_message(Slot(0), Slot(1), br#"{"id": 8}"#, timeout)
        .await
        .unwrap_err();
    assert_eq!(refused.status().as_u16(), 400, "{refused}");

    // A file outside allowedPaths is refused before anything starts; the model deployed
    // goes on answering.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("weights.json"), "{}").unwrap();
    let Err(refused) = engine
        .deploy(document(asset("weights.json", outside.path())))
        .await
    else {
        panic!("a file outside allowedPaths was deployed");
    };
    assert_eq!(refused.status().as_u16(), 403, "{refused}");
    let answering = engine.deployment().expect("the first model still answers");
    assert!(Arc::ptr_eq(&answering, &deployed));
    // Not a deployment document at all.
    let Err(refused) = engine.deploy("[]".to_owned()).await else {
        panic!("a list was deployed");
    };
    assert_eq!(refused.status().as_u16(), 400, "{refused}");

    tokio::time::timeout(
        Duration::from_secs(10),
        engine.shutdown(Duration::from_secs(5)),
    )
    .await
    .expect("the engine stops within its grace");
    assert!(engine.deployment().is_none());
}
