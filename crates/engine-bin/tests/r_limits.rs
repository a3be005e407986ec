//! Per-record time and memory limits of R workers through the real binary and a real
//! `Rscript`: `engine run` fails only the record over its limit and scores the others on a
//! new worker; a deployed R model that hangs answers 504 and the next request is served.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Engine;
use serde_json::{json, Value};

const HANGS: &str = include_str!("../../../tests/models/r-limits/hangs.R");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `engine` with `args`, killed after two minutes (an upper bound, so a limit that is
/// not enforced fails the test instead of hanging it).
fn engine(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .current_dir(root())
        .env_remove("ENGINE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("engine runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child
        .try_wait()
        .expect("engine can be waited for")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("engine output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn xs(out: &Output) -> Vec<i64> {
    text(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            v["x"].as_i64().unwrap_or_else(|| panic!("{l}"))
        })
        .collect()
}

#[test]
fn engine_run_times_out_the_looping_r_record_alone() {
    let out = engine(&[
        "run",
        "tests/models/r-limits/hangs.R",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--record-timeout",
        "1000",
        "--workers",
        "1",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(xs(&out), vec![1, 2, 4, 5, 6], "{err}");
    assert!(err.contains("per-record timeout of 1000 ms"), "{err}");
    assert!(err.contains("Record 3 on slot 0 failed"), "{err}");
    assert!(!err.contains("Python workers only"), "{err}");
}

#[test]
fn engine_run_stops_an_r_worker_over_its_memory_limit() {
    let out = engine(&[
        "run",
        "tests/models/r-limits/grows.R",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--memory-limit",
        "200",
        "--workers",
        "1",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(xs(&out), vec![1, 3, 4, 5, 6], "{err}");
    assert!(err.contains("over the limit of 200 MiB"), "{err}");
}

#[test]
fn a_hung_r_request_answers_504_and_the_next_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_RECORD_TIMEOUT_MS", "1000")]);
    let doc = json!({"name": "hangs", "deployableModel": {"storedModel": {"modelAssets": [
        {"name": "hangs.R", "assetType": "SOURCE_CODE", "sourceCode": HANGS}]}}});
    let (s, d) = e.send("PUT", "/api/deployment", &doc);
    assert_eq!(s, 201, "{d}");
    assert_eq!(d["recordTimeoutMs"], 1000, "{d}");
    let (s, body, _) = e.score("/api/roundtrip/0/1?timeout=20000", "{\"hang\": true}");
    assert_eq!(s, 504, "{body}");
    assert!(
        body.contains("time limit") && body.contains("1000 ms"),
        "{body}"
    );
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"a\": 1}");
    assert_eq!(s, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert_eq!(answer, json!({"a": 1}));
    let (_, details) = e.get("/api/engine");
    let m = &details["deployedModel"];
    assert_eq!(m["recordTimeouts"], 1, "{details}");
    assert_eq!(details["state"], "RUNNING");
    let log = e.deployment_log_text();
    assert!(log.contains("per-record timeout of 1000 ms"), "{log}");
    assert!(log.contains("worker limits: 1000 ms per record"), "{log}");
    assert!(!log.contains("not enforced"), "{log}");
    let (_, shown) = e.get("/api/deployment");
    assert_eq!(shown["limitsEnforced"], true, "{shown}");
}

#[test]
fn a_hung_r_job_record_fails_and_the_others_are_scored() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let doc = json!({
        "jobType": "MODEL_BATCH_JOB",
        "recordTimeoutMs": 1000,
        "model": {"storedModel": {"modelMetaData": {"name": "hangs"}, "modelAssets": [{
            "name": "hangs.R", "assetType": "SOURCE_CODE", "primaryModelSource": true,
            "sourceCode": HANGS,
        }]}},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl",
            "fileContentString": "{\"x\": 1}\n{\"x\": 3}\n{\"x\": 4}\n"}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
    });
    let (s, job) = e.send("POST", "/api/jobs", &doc);
    assert_eq!(s, 201, "{job}");
    let done = e.wait_job(job["id"].as_str().unwrap(), &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "FAILURE", "{done}");
    assert_eq!(done["recordsOut"], 2, "{done}");
    let messages = done["jobMessages"].to_string();
    assert!(
        messages.contains("per-record timeout of 1000 ms"),
        "{messages}"
    );
    assert!(!messages.contains("not enforced"), "{messages}");
}
