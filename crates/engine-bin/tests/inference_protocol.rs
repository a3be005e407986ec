//! The Open Inference Protocol (V2) on a deployed model, through the clients others wrote
//! (tests/v2/clients.py: tritonclient's HTTP client, kserve's REST client, in the
//! virtualenv scripts/setup makes from tests/v2/requirements.txt), and a record-set model whose
//! concurrent V2 requests are batched into one call yet answered each with its own rows.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Engine;
use engine_client::Client;
use serde_json::{json, Value};

const TOKEN: &str = "v2-token-0123456789abcdef";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn client(e: &Engine) -> Client {
    e.client_with_token(TOKEN)
}

/// Deploys the model in folder `dir` (its source and schemas) under `name`.
fn deploy(e: &Engine, name: &str, dir: &Path) {
    let mut assets = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        assets.push(if file == "model.py" {
            json!({"name": file, "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
                   "primaryModelSource": true, "sourceCode": text})
        } else {
            json!({"name": file, "assetType": "FILE", "fileContentString": text})
        });
    }
    let doc = json!({"name": name, "model": {"storedModel": {"modelAssets": assets}}});
    let a = client(e)
        .put(
            "/api/deployment",
            "application/json",
            doc.to_string().as_bytes(),
        )
        .unwrap();
    assert!(a.status < 300, "{}", String::from_utf8_lossy(&a.body));
}

/// Posts `data` as the INT64 input `x` of model `name`'s V2 infer route, one row per
/// element; the answer, once its status is 200.
fn infer_ints(url: &str, name: &str, data: &[i64]) -> Value {
    let body = json!({"inputs": [{"name": "x", "shape": [data.len()], "datatype": "INT64",
                                  "data": data}]});
    let a = common::token_client(url, TOKEN)
        .post(
            &format!("/v2/models/{name}/infer"),
            "application/json",
            body.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    serde_json::from_slice(&a.body).unwrap()
}

/// The virtualenv scripts/setup makes for the clients (kserve pins pandas below the
/// models' own): `MODEL_RUNTIME_CACHE`, else `XDG_CACHE_HOME`, else `~/.cache`.
fn v2_clients_python() -> PathBuf {
    let cache = std::env::var_os("MODEL_RUNTIME_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("model-runtime"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/model-runtime")
        });
    let python = cache.join("v2-clients/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/setup makes the V2 clients' virtualenv",
        python.display()
    );
    python
}

#[test]
fn tritonclient_and_kserve_speak_to_the_deployed_model() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(
        dir.path(),
        &["--grpc-port", "0"],
        &[("ENGINE_TOKEN", TOKEN)],
    );
    deploy(&e, "iris", &repo().join("tests/models/v2-iris"));
    // Where the gRPC service listens: the engine's endpoints name it.
    let details: Value =
        serde_json::from_slice(&client(&e).get("/api/engine").unwrap().body).unwrap();
    let grpc = details["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .find_map(|v| v.strip_suffix(" (V2 gRPC)"))
        .unwrap_or_else(|| panic!("no gRPC endpoint in {details}"))
        .trim_start_matches("http://")
        .to_owned();
    let python = v2_clients_python();
    let run = |parts: &[&str]| {
        let out = Command::new(&python)
            .arg(repo().join("tests/v2/clients.py"))
            .args(parts)
            .env("ENGINE_URL", &e.url)
            .env("ENGINE_TOKEN", TOKEN)
            .env("MODEL", "iris")
            .env("GRPC_ADDRESS", &grpc)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        stdout
    };
    // kserve's client in a process of its own (its protobuf messages clash with
    // tritonclient's gRPC ones).
    let stdout = run(&["errors", "triton-http", "triton-grpc"]) + &run(&["kserve"]);
    for line in [
        "tritonclient http",
        "tritonclient grpc",
        "kserve InferenceRESTClient",
        "errors as",
    ] {
        assert!(stdout.contains(line), "{stdout}");
    }
}

#[test]
fn a_record_set_model_scores_concurrent_requests_together_and_answers_each_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_TOKEN", TOKEN)]);
    deploy(&e, "column", &repo().join("tests/models/v2-column"));
    let url = e.url.clone();
    // 24 requests at once, one row each: batched by the deployment, each answered its own
    // element of the numpy column the model returns.
    let answers: Vec<(i64, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..24i64)
            .map(|i| {
                let url = url.clone();
                s.spawn(move || (i, infer_ints(&url, "column", &[i])))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, a) in &answers {
        assert_eq!(a["outputs"][0]["data"], json!([i * 10]), "{a}");
        assert_eq!(a["outputs"][0]["name"], "output-0", "{a}");
    }
    // One request of 100 rows: 100 answers, in order.
    let v = infer_ints(&e.url, "column", &(0..100).collect::<Vec<i64>>());
    assert_eq!(
        v["outputs"][0]["data"],
        json!((0..100).map(|x| x * 10).collect::<Vec<i64>>()),
        "{v}"
    );
    assert_eq!(v["outputs"][0]["shape"], json!([100]));
    // The batches were bigger than one record: the model was called fewer times than
    // there were records.
    let m = String::from_utf8(client(&e).get("/metrics").unwrap().body).unwrap();
    let count = |name: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let batches = count("engine_model_batch_records_count{source=\"deployment\"}");
    let records = count("engine_model_batch_records_sum{source=\"deployment\"}");
    assert_eq!(records, 124.0, "{m}");
    assert!(batches < records, "{batches} batches for {records} records");
}

/// A request of more rows than the deployment's queue holds is answered whole: its rows
/// wait for room instead of being refused.
#[test]
fn a_request_larger_than_the_queue_is_answered_whole() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(
        dir.path(),
        &[],
        &[("ENGINE_TOKEN", TOKEN), ("ENGINE_SCORE_QUEUE_BOUND", "4")],
    );
    deploy(&e, "column", &repo().join("tests/models/v2-column"));
    let v = infer_ints(&e.url, "column", &(0..40).collect::<Vec<i64>>());
    assert_eq!(
        v["outputs"][0]["data"],
        json!((0..40).map(|x| x * 10).collect::<Vec<i64>>()),
        "{v}"
    );
}

/// A request's rows go to the model together, in one batch, even past the deployment's
/// `scoreBatchMax` (its own, set by the document or by `engine deploy --batch-max`);
/// concurrent requests share batches without splitting any of them.
#[test]
fn a_request_is_scored_in_one_batch_and_the_model_sets_its_own_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_TOKEN", TOKEN)]);
    let model = repo().join("tests/models/batch-size-reporter");
    // The CLI's flag reaches the deployment, and a bad value is refused by name.
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(args)
            .args(["--engine", &e.url])
            .env("ENGINE_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let source = model.join("model.py");
    let source = source.to_str().unwrap();
    let deployed = cli(&["deploy", source, "--name", "sizes", "--batch-max", "4"]);
    assert!(
        deployed.status.success(),
        "{}",
        common::text(&deployed.stderr)
    );
    let view: Value =
        serde_json::from_slice(&client(&e).get("/api/deployment").unwrap().body).unwrap();
    assert_eq!(view["scoreBatchMax"], 4, "{view}");
    assert_eq!(view["scoreBatchWaitMs"], 0, "{view}");
    let refused = cli(&["deploy", source, "--batch-max", "0"]);
    assert!(!refused.status.success());
    assert!(
        common::text(&refused.stderr).contains("'scoreBatchMax' must be a whole number from 1"),
        "{}",
        common::text(&refused.stderr)
    );
    let infer = |rows: i64| -> Vec<i64> {
        let v = infer_ints(&e.url, "sizes", &(0..rows).collect::<Vec<i64>>());
        let sizes = v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == "batch")
            .unwrap_or_else(|| panic!("no output 'batch' in {v}"));
        serde_json::from_value(sizes["data"].clone()).unwrap()
    };
    // Ten rows against a batch of at most four: scored together, not cut in three.
    assert_eq!(infer(10), vec![10; 10]);
    // Twelve requests of three rows at once: each request's rows share one batch, and
    // batches held more than one request (the queue gathers past no request's end).
    let answers: Vec<Vec<i64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12).map(|_| s.spawn(|| infer(3))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for a in &answers {
        assert_eq!(a.len(), 3);
        assert!(
            a.iter().all(|n| *n == a[0]),
            "{a:?}: one request, one batch"
        );
        assert!(
            a[0] == 3 || a[0] == 6,
            "{a:?}: a batch of at most 4 takes one or two requests"
        );
    }
    assert!(
        answers.iter().any(|a| a[0] == 6),
        "{answers:?}: concurrent requests were never batched together"
    );
}
