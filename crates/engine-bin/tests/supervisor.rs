//! Every worker runs under the supervisor's watchdog, in `engine serve` too: a model that
//! loops forever in `action` fails the record it is on with the time limit (a service
//! job goes on to its end; a deployed model's request fails and the next one is answered
//! by a fresh worker), for Python and R alike; the service's default record timeout is in
//! force without any configuration; and a deployed model's restart budget, once spent,
//! stops the restarts.

mod common;

use common::Engine;
use serde_json::{json, Value};

const LOOPS_PY: &str = include_str!("../../../tests/models/loops-in-action/loops.py");
const LOOPS_R: &str = include_str!("../../../tests/models/loops-in-action/loops.R");
const EXITS_PY: &str = include_str!("../../../tests/models/exits.py");

fn model(name: &str, source: &str) -> Value {
    json!({"storedModel": {"modelMetaData": {"name": "loops"}, "modelAssets": [{
        "name": name, "assetType": "SOURCE_CODE", "primaryModelSource": true,
        "sourceCode": source,
    }]}})
}

/// Runs a job of `name`'s model over three records, the second looping; returns it ended.
fn looping_job(e: &Engine, name: &str, source: &str) -> Value {
    let doc = json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": model(name, source),
        "inputData": [{"assetType": "FILE", "name": "in.jsonl",
            "fileContentString": "{\"x\": 1}\n{\"x\": 2, \"loop\": true}\n{\"x\": 3}\n"}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
    });
    let (s, job) = e.send("POST", "/api/jobs", &doc);
    assert_eq!(s, 201, "{job}");
    e.wait_job(job["id"].as_str().unwrap(), &["COMPLETE", "ERROR"])
}

fn job_fails_the_looping_record_alone(name: &str, source: &str) {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_JOB_RECORD_TIMEOUT_MS", "1000")]);
    let done = looping_job(&e, name, source);
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "FAILURE", "{done}");
    assert_eq!(done["recordsOut"], 2, "{done}");
    let messages = done["jobMessages"].to_string();
    assert!(
        messages.contains("per-record timeout of 1000 ms"),
        "{messages}"
    );
    // The queue goes on: the next job runs too.
    let next = looping_job(&e, name, source);
    assert_eq!(next["jobStatus"], "COMPLETE", "{next}");
    assert_eq!(next["recordsOut"], 2, "{next}");
}

fn deployed_request_fails_and_a_fresh_worker_answers(name: &str, source: &str) {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &["--record-timeout-ms", "1000"], &[]);
    let doc = json!({"name": "loops", "deployableModel": model(name, source)});
    let (s, d) = e.send("PUT", "/api/deployment", &doc);
    assert_eq!(s, 201, "{d}");
    assert_eq!(d["recordTimeoutMs"], 1000, "{d}");
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"x\": 1}");
    assert_eq!(s, 200, "{body}");
    let first: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
    let (s, body, _) = e.score("/api/roundtrip/0/1?timeout=30000", "{\"loop\": true}");
    assert_eq!(s, 504, "{body}");
    assert!(
        body.contains("time limit") && body.contains("1000 ms"),
        "{body}"
    );
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"x\": 2}");
    assert_eq!(s, 200, "{body}");
    let next: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert_eq!(next["x"], 2, "{next}");
    assert_ne!(
        first["pid"], next["pid"],
        "a fresh worker answers: {first} {next}"
    );
    let (_, details) = e.get("/api/engine");
    let m = &details["deployedModel"];
    assert_eq!(m["recordTimeouts"], 1, "{details}");
    assert_eq!(details["state"], "RUNNING", "{details}");
}

#[test]
fn a_python_service_job_fails_the_looping_record_and_goes_on() {
    job_fails_the_looping_record_alone("loops.py", LOOPS_PY);
}

#[test]
fn an_r_service_job_fails_the_looping_record_and_goes_on() {
    job_fails_the_looping_record_alone("loops.R", LOOPS_R);
}

#[test]
fn a_deployed_python_model_looping_fails_that_request_and_a_fresh_worker_answers_the_next() {
    deployed_request_fails_and_a_fresh_worker_answers("loops.py", LOOPS_PY);
}

#[test]
fn a_deployed_r_model_looping_fails_that_request_and_a_fresh_worker_answers_the_next() {
    deployed_request_fails_and_a_fresh_worker_answers("loops.R", LOOPS_R);
}

#[test]
fn the_default_record_timeouts_are_in_force_without_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    for (name, source) in [("loops.py", LOOPS_PY), ("loops.R", LOOPS_R)] {
        let doc = json!({"name": "loops", "deployableModel": model(name, source)});
        let (s, d) = e.send("PUT", "/api/deployment", &doc);
        assert_eq!(s, 201, "{d}");
        assert_eq!(d["recordTimeoutMs"], 60000, "{name}: {d}");
        assert_eq!(d["limitsEnforced"], true, "{name}: {d}");
        let log = e.deployment_log_text();
        assert!(log.contains("worker limits: 60000 ms per record"), "{log}");
        // The next PUT replaces this deployment.
    }
    let doc = json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": model("loops.py", LOOPS_PY),
        "inputData": [{"assetType": "FILE", "name": "in.jsonl",
            "fileContentString": "{\"x\": 1}\n"}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
    });
    let (s, job) = e.send("POST", "/api/jobs", &doc);
    assert_eq!(s, 201, "{job}");
    let done = e.wait_job(job["id"].as_str().unwrap(), &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
    let messages = done["jobMessages"].to_string();
    assert!(
        messages.contains("worker limits: 600000 ms per record"),
        "{messages}"
    );
}

#[test]
fn a_spent_restart_budget_stops_the_deployed_model_s_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &["--worker-restart-budget", "1"], &[]);
    let doc = json!({"name": "exits", "deployableModel": model("exits.py", EXITS_PY)});
    let (s, d) = e.send("PUT", "/api/deployment", &doc);
    assert_eq!(s, 201, "{d}");
    // The first death is within the budget: the worker is replaced.
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"x\": 4}");
    assert_eq!(s, 503, "{body}");
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"x\": 1}");
    assert_eq!(s, 200, "{body}");
    // The second spends it: no more restarts, the engine says ERROR.
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"x\": 4}");
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("restart(s)"), "{body}");
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"x\": 1}");
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("not replaced"), "{body}");
    let (_, state) = e.get("/2/engine/state");
    assert_eq!(state["state"], "ERROR", "{state}");
}
