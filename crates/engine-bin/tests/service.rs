//! `engine serve` end to end: the real binary on a free loopback port, real Python
//! workers, the HTTP API and the CLI client.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ureq_free, Engine, ENGINE};
use serde_json::{json, Value};

const MODEL: &str = r#"import json, os, time
# modelop.init
def begin(arg):
    global params
    doc = json.loads(arg["rawJson"])
    params = doc.get("jobParameters") or {}
    print("init with", "deployableModel" in doc and "deployment" or "job")

# modelop.score
def action(x):
    if x == "boom":
        raise ValueError("boom")
    if x == "die":
        os._exit(3)
    if isinstance(x, dict) and "sleep" in x:
        time.sleep(x["sleep"])
    if isinstance(x, dict) and x.get("twice"):
        yield x
    yield x
"#;

fn job_document(inputs: &str) -> Value {
    json!({
        "jobType": "MODEL_BATCH_JOB",
        "jobStatus": "CREATED",
        "jobParameters": {"limit": 3},
        "model": {"storedModel": {"modelMetaData": {"name": "echo"}, "modelAssets": [{
            "name": "echo.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
            "primaryModelSource": true, "sourceCode": MODEL,
        }]}},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": inputs}],
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

#[test]
fn health_state_details_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(
        dir.path(),
        &[],
        &[
            ("MODELOP_ENGINE_NAME", "engine-under-test"),
            ("MODELOP_RUNTIME_INITIAL_TAGS", "dev, cc-fraud"),
            ("MODELOP_RUNTIME_GROUP", "fraud"),
        ],
    );
    let (s, h) = e.get("/1/health");
    assert_eq!(s, 200);
    assert!(h["id"].is_string() && h["release"].is_string() && h["built_on"].is_string());
    let (_, st) = e.get("/2/engine/state");
    assert_eq!(st["state"], "INIT");
    let (s, d) = e.get("/api/engine");
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["name"], "engine-under-test");
    assert_eq!(d["group"], "fraud");
    assert_eq!(d["stageTags"], json!(["DEV"]));
    assert_eq!(d["serviceTags"], json!(["cc-fraud"]));
    assert_eq!(d["platforms"][0]["language"], "python");
    let r = d["platforms"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["language"] == "R"))
        .unwrap_or_else(|| panic!("an R platform is listed: {d}"));
    assert!(r["version"].as_str().unwrap_or("").starts_with('4'), "{r}");
    assert!(r["libraries"].to_string().contains("jsonlite=="), "{r}");
    let (s, t) = e.send(
        "PUT",
        "/api/engine/tags",
        &json!({"tags": ["prod", "churn"]}),
    );
    assert_eq!(s, 200);
    assert_eq!(t["tags"], json!(["PROD", "churn"]));
    let (s, api) = e.get("/openapi.json");
    assert_eq!(s, 200);
    assert!(api["paths"]["/api/roundtrip/{input}/{output}"].is_object());
    assert!(api["paths"]["/api/jobs"].is_object());
}

#[test]
fn a_job_document_runs_with_its_log_and_result() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let (s, job) = e.send(
        "POST",
        "/api/jobs",
        &job_document("1\n\"boom\"\n{\"a\": 2}\n"),
    );
    assert_eq!(s, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let done = e.wait_job(&id, &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "FAILURE");
    assert_eq!(done["recordsIn"], 3);
    assert_eq!(done["recordsOut"], 2);
    let messages: Vec<String> = done["jobMessages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    let all = messages.join("\n");
    for want in [
        "CREATED",
        "WAITING",
        "RUNNING",
        "MODEL-CONSOLE init with job",
        "ValueError: boom",
        "Records in/out: 3/2",
    ] {
        assert!(all.contains(want), "{want} missing from\n{all}");
    }
    let (s, r) = e.get(&format!("/api/jobs/{id}/result"));
    assert_eq!(s, 200);
    assert_eq!(r["outputs"][0]["content"], "1\n{\"a\":2}\n");
    let (s, list) = e.get("/api/jobs?status=COMPLETE");
    assert_eq!(s, 200);
    assert_eq!(list["jobs"][0]["id"], id.as_str());

    let (s, bad) = e.send("POST", "/api/jobs", &json!({"jobType": "MODEL_BATCH_JOB"}));
    assert_eq!(s, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("model"), "{bad}");
    let (s, _) = e.get("/api/jobs/no-such-job");
    assert_eq!(s, 404);
}

#[test]
fn jobs_survive_sigkill_and_a_running_one_is_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Engine::start(dir.path(), &[], &[]);
    let (_, slow) = e.send("POST", "/api/jobs", &job_document("{\"sleep\": 30}\n"));
    let slow = slow["id"].as_str().unwrap().to_owned();
    let (_, next) = e.send("POST", "/api/jobs", &job_document("1\n2\n"));
    let next = next["id"].as_str().unwrap().to_owned();
    e.wait_job(&slow, &["RUNNING"]);
    let (_, waiting) = e.get(&format!("/api/jobs/{next}"));
    assert_eq!(waiting["jobStatus"], "WAITING");
    e.signal("-KILL");

    let e = Engine::start(&e.data, &[], &[]);
    let (_, interrupted) = e.get(&format!("/api/jobs/{slow}"));
    assert_eq!(interrupted["jobStatus"], "ERROR", "{interrupted}");
    assert_eq!(interrupted["interrupted"], true);
    assert!(interrupted["reason"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    let done = e.wait_job(&next, &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
    let (s, again) = e.send("POST", &format!("/api/jobs/{slow}/rerun"), &json!({}));
    assert_eq!(s, 200, "{again}");
    // Queued again: the idle queue may already have taken it by the time the answer is made.
    assert!(
        ["WAITING", "RUNNING"].contains(&again["jobStatus"].as_str().unwrap_or_default()),
        "{again}"
    );
    let (s, cancelled) = e.send("POST", &format!("/api/jobs/{slow}/cancel"), &json!({}));
    assert_eq!(s, 200);
    assert!(
        ["CANCELLED", "RUNNING"].contains(&cancelled["jobStatus"].as_str().unwrap()),
        "{cancelled}"
    );
    let c = e.wait_job(&slow, &["CANCELLED", "ERROR", "COMPLETE"]);
    assert_eq!(c["jobStatus"], "CANCELLED", "{c}");
}

#[test]
fn cancelling_a_running_job_stops_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let (_, job) = e.send("POST", "/api/jobs", &job_document("{\"sleep\": 60}\n"));
    let id = job["id"].as_str().unwrap().to_owned();
    e.wait_job(&id, &["RUNNING"]);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let (s, _) = e.send("POST", &format!("/api/jobs/{id}/cancel"), &json!({}));
    assert_eq!(s, 200);
    let done = e.wait_job(&id, &["CANCELLED", "ERROR", "COMPLETE"]);
    assert_eq!(done["jobStatus"], "CANCELLED", "{done}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_deployed_model_scores_on_both_roundtrip_paths() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &["--roundtrip-timeout-ms", "3000"], &[]);
    let (s, _, _) = e.score("/api/roundtrip/0/1", "1");
    assert_eq!(s, 404);
    let (s, d) = e.send("PUT", "/api/deployment", &deployment_document());
    assert_eq!(s, 201, "{d}");
    assert_eq!(d["functions"]["score"], "action");
    assert_eq!(d["functions"]["init"], "begin");
    assert_eq!(e.score("/api/roundtrip/0/1", "{\"x\": 1}").1, "{\"x\":1}");
    assert_eq!(
        e.score("/2/active/model/roundtrip/0/1", "[1, 2]").1,
        "[1,2]"
    );
    assert_eq!(
        e.score("/api/roundtrip/0/1", "{\"twice\": true}").1,
        "[{\"twice\":true},{\"twice\":true}]"
    );
    let (s, body, _) = e.score("/api/roundtrip/0/1", "not json");
    assert_eq!(
        (s, body.as_str()),
        (
            400,
            "An error has occurred: input record rejected by encoding"
        )
    );
    let (s, body, _) = e.score("/api/roundtrip/0/1", "\"boom\"");
    assert_eq!(s, 422);
    assert!(
        body.starts_with("An error has occurred: An output error occurred during model execution")
    );
    let (s, body, _) = e.score("/api/roundtrip/0/1?timeout=200", "{\"sleep\": 1}");
    assert_eq!(s, 504, "{body}");

    // A worker that dies fails its request clearly and is replaced.
    let (s, body, _) = e.score("/api/roundtrip/0/1", "\"die\"");
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("worker"), "{body}");
    assert_eq!(e.score("/api/roundtrip/0/1", "7").1, "7");
    let (_, d) = e.get("/api/deployment");
    assert_eq!(d["workerState"], "READY");
    assert!(d["workerRestarts"].as_u64().unwrap() >= 1);
    assert!(d["recordsScored"].as_u64().unwrap() >= 4);
    let (_, state) = e.get("/2/engine/state");
    assert_eq!(state["state"], "RUNNING");
    let (_, log) = e.get("/api/deployment/log");
    let log = log.to_string();
    assert!(log.contains("init with deployment"), "{log}");

    let a = e.client().delete("/2/active/model").unwrap();
    assert_eq!(a.status, 204);
    let (s, _) = e.get("/api/deployment");
    assert_eq!(s, 404);
}

#[test]
fn a_full_scoring_queue_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &["--score-queue-bound", "2"], &[]);
    let (s, d) = e.send("PUT", "/api/deployment", &deployment_document());
    assert_eq!(s, 201, "{d}");
    let url = e.url.clone();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent: ureq_free::Agent = ureq_free::agent();
                agent.post(&format!("{url}/api/roundtrip/0/1"), "{\"sleep\": 0.5}")
            })
        })
        .collect();
    let results: Vec<(u16, Option<String>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    assert!(!refused.is_empty(), "{results:?}");
    assert!(refused
        .iter()
        .all(|(_, retry)| retry.as_deref() == Some("1")));
    assert!(results.iter().any(|(s, _)| *s == 200), "{results:?}");
}

#[test]
fn invalid_configuration_refuses_to_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ENGINE)
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env("MODELOP_ROUNDTRIP_DEFAULT_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("roundtripTimeoutMs"), "{err}");

    let cfg = dir.path().join("application.json");
    std::fs::write(&cfg, r#"{"port": 0, "credentials": [{"host": "s3.local", "secretAccessKey": "hunter2"}], "colour": 1}"#).unwrap();
    let out = Command::new(ENGINE)
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("colour"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn sigterm_stops_the_engine_with_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Engine::start(dir.path(), &[], &[]);
    let (s, _) = e.send("PUT", "/api/deployment", &deployment_document());
    assert_eq!(s, 201);
    assert_eq!(e.signal("-TERM"), Some(0));
}

#[test]
fn the_cli_client_creates_and_follows_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let model = dir.path().join("echo.py");
    std::fs::write(&model, MODEL).unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "1\n2\n3\n").unwrap();
    let output = dir.path().join("scored.jsonl");
    let cli = |args: &[&str]| {
        Command::new(ENGINE)
            .args(args)
            .env("ENGINE_URL", &e.url)
            .output()
            .unwrap()
    };
    let out = cli(&[
        "job",
        "create",
        "batchjob",
        model.to_str().unwrap(),
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--wait",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["jobStatus"], "COMPLETE");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "1\n2\n3\n");
    let id = job["id"].as_str().unwrap();
    let out = cli(&["job", "status", id]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("ID") && table.contains("COMPLETE"),
        "{table}"
    );
    let out = cli(&["job", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(id));

    let out = cli(&["deploy", model.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new(ENGINE)
        .args(["score"])
        .env("ENGINE_URL", &e.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"{\"a\": 1}\n[1, 2]\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"a\":1}\n[1,2]\n");
    let out = cli(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["deployedModel"]["name"], "echo");
    assert_eq!(status["jobs"]["complete"], 1);
}

const SCHEMA_MODEL: &str = r#"# modelop.schema.0: in.avsc
# modelop.schema.1: out.avsc
# modelop.score
def action(d):
    yield {"id": d["id"], "score": "bad" if d["x"] < 0 else d["x"] * 2.0}
"#;

const IN_SCHEMA: &str = r#"{"type": "record", "name": "input_schema", "fields": [
  {"name": "id", "type": "int"}, {"name": "x", "type": "double", "role": "predictor"}]}"#;

const OUT_SCHEMA: &str = r#"{"type": "record", "name": "output_schema", "fields": [
  {"name": "id", "type": "int"}, {"name": "score", "type": "double"}]}"#;

fn schema_assets() -> Value {
    json!([
        {"name": "model.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
         "primaryModelSource": true, "sourceCode": SCHEMA_MODEL},
        {"name": "in.avsc", "assetType": "FILE", "fileContentString": IN_SCHEMA},
        {"name": "out.avsc", "assetType": "FILE", "fileContentString": OUT_SCHEMA},
    ])
}

#[test]
fn schemas_are_checked_per_job_as_the_document_says_and_on_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let inputs = "{\"id\": 1, \"x\": 1}\n{\"id\": 2}\n{\"id\": 3, \"x\": -1}\n";
    let mut doc = json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": {"storedModel": {"modelAssets": schema_assets()}},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": inputs}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
        "enableInputSchemaChecking": true,
        "enableOutputSchemaChecking": true,
    });
    let (s, job) = e.send("POST", "/api/jobs", &doc);
    assert_eq!(s, 201, "{job}");
    let done = e.wait_job(job["id"].as_str().unwrap(), &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "FAILURE", "{done}");
    let messages = done["jobMessages"].to_string();
    assert!(
        messages.contains("Field 'x' missing for record 'input_schema'"),
        "{messages}"
    );
    assert!(
        messages.contains("Output record rejected by schema"),
        "{messages}"
    );

    // Switched off by the document: the model sees every record.
    doc["enableInputSchemaChecking"] = json!(false);
    doc["enableOutputSchemaChecking"] = json!(false);
    let (_, job) = e.send("POST", "/api/jobs", &doc);
    let done = e.wait_job(job["id"].as_str().unwrap(), &["COMPLETE", "ERROR"]);
    let messages = done["jobMessages"].to_string();
    assert!(!messages.contains("rejected by schema"), "{messages}");
    assert!(messages.contains("KeyError"), "{messages}");

    let deployment = json!({"name": "checked", "deployableModel": {"storedModel": {"modelAssets": schema_assets()}}});
    let (s, d) = e.send("PUT", "/api/deployment", &deployment);
    assert_eq!(s, 201, "{d}");
    assert_eq!(
        d["schemas"],
        json!({"0": "input_schema", "1": "output_schema"})
    );
    assert_eq!(d["workers"], 1);
    assert_eq!(
        e.score("/api/roundtrip/0/1", "{\"id\": 1, \"x\": 2}").1,
        "{\"id\":1,\"score\":4.0}"
    );
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"id\": 1}");
    assert_eq!(
        (s, body.as_str()),
        (
            400,
            "An error has occurred: input record rejected by schema"
        )
    );
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"id\": 1, \"x\": -1}");
    assert_eq!(
        (s, body.as_str()),
        (
            500,
            "An error has occurred: output record rejected by schema"
        )
    );
}

#[test]
fn an_r_model_deploys_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let source =
        "action <- function(datum) {\n  emit(list(id = datum$id, twice = datum$x * 2))\n}\n";
    let deployment = json!({"name": "r", "deployableModel": {"storedModel": {"modelAssets": [
        {"name": "model.R", "assetType": "SOURCE_CODE", "sourceCode": source}]}}});
    let (s, d) = e.send("PUT", "/api/deployment", &deployment);
    assert_eq!(s, 201, "{d}");
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"id\": 7, \"x\": 1.5}");
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["id"].as_i64(), v["twice"].as_f64()),
        (Some(7), Some(3.0))
    );
}

#[test]
fn a_deployment_with_two_workers_spreads_requests_over_both() {
    // Each record's worker leaves its pid in a rendezvous folder and holds the record until
    // two workers have: the second request is sent only once the first is being scored, so
    // it can only go to the other, free worker (one that holds a record takes nothing new).
    // No timing decides the outcome; the waits (and the roundtrip timeout raised to match,
    // for a loaded machine) only bound a failure.
    let dir = tempfile::tempdir().unwrap();
    let rendezvous = tempfile::tempdir().unwrap();
    let e = Engine::start(
        dir.path(),
        &["--score-workers", "2"],
        &[("ENGINE_ROUNDTRIP_TIMEOUT_MS", "60000")],
    );
    let source = format!(
        "import os, time\n\
         RENDEZVOUS = {:?}\n\
         # modelop.score\n\
         def action(x):\n\
         \x20   open(os.path.join(RENDEZVOUS, str(os.getpid())), 'w').close()\n\
         \x20   deadline = time.time() + 60\n\
         \x20   while len(os.listdir(RENDEZVOUS)) < 2 and time.time() < deadline:\n\
         \x20       time.sleep(0.01)\n\
         \x20   yield os.getpid()\n",
        rendezvous.path().display().to_string()
    );
    let deployment = json!({"name": "pids", "deployableModel": {"storedModel": {"modelAssets": [
        {"name": "pids.py", "assetType": "SOURCE_CODE", "sourceCode": source}]}}});
    let (s, d) = e.send("PUT", "/api/deployment", &deployment);
    assert_eq!(s, 201, "{d}");
    let url = e.url.clone();
    let arrived = || std::fs::read_dir(rendezvous.path()).unwrap().count();
    let pids: std::collections::BTreeSet<String> = std::thread::scope(|scope| {
        let score = || {
            let url = url.clone();
            scope.spawn(move || {
                let a = engine_client::Client::new(&url)
                    .post("/api/roundtrip/0/1", "application/json", b"1")
                    .unwrap();
                assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
                String::from_utf8_lossy(&a.body).trim().to_owned()
            })
        };
        let first = score();
        let deadline = Instant::now() + Duration::from_secs(60);
        while arrived() == 0 {
            assert!(
                Instant::now() < deadline,
                "the first request never reached a worker"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let second = score();
        [first, second]
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(pids.len(), 2, "two workers answered: {pids:?}");
    // The pids the model answered with are the two that met.
    let met: std::collections::BTreeSet<String> = std::fs::read_dir(rendezvous.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(pids, met);
}

#[test]
fn schemas_compile_and_check_records_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let c = e.client();
    let a = c
        .post(
            "/2/active/schema/verify",
            "application/json",
            IN_SCHEMA.as_bytes(),
        )
        .unwrap();
    assert_eq!(a.status, 200);
    let id: Value = serde_json::from_slice(&a.body).unwrap();
    let id = id["id"].as_u64().unwrap();
    let check = |body: &str| {
        let a = c
            .post(
                &format!("/2/active/schema/verify/{id}"),
                "application/json",
                body.as_bytes(),
            )
            .unwrap();
        (
            a.status,
            serde_json::from_slice::<Value>(&a.body).unwrap_or(Value::Null),
        )
    };
    assert_eq!(
        check("{\"id\": 1, \"x\": 2}"),
        (200, json!({"conforms": true}))
    );
    let (s, v) = check("{\"id\": 1}");
    assert_eq!(s, 200);
    assert_eq!(v["conforms"], false);
    assert_eq!(v["reason"], "Field 'x' missing for record 'input_schema'");
    let a = c
        .post(
            "/2/active/schema/verify",
            "application/json",
            b"{\"type\": \"recrod\"}",
        )
        .unwrap();
    assert_eq!(a.status, 400);
    let a = c
        .post("/2/active/schema/verify/999999", "application/json", b"{}")
        .unwrap();
    assert_eq!(a.status, 404);
}
