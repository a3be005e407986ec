//! Following a job: live progress on `GET /api/jobs/{id}`, `engine job create --wait` and
//! `engine job status --watch` through the real binary, and errors the CLI prints.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Engine;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn slow_model() -> PathBuf {
    repo().join("tests/models/slow-progress/model.py")
}

/// `n` records taking `sleep` seconds each; `fail` lists the ones that raise.
fn records(n: u64, sleep: f64, fail: &[u64]) -> String {
    (1..=n)
        .map(|i| json!({"n": i, "sleep": sleep, "fail": fail.contains(&i)}).to_string() + "\n")
        .collect()
}

fn slow_job_document(inputs: &str) -> Value {
    let source = std::fs::read_to_string(slow_model()).unwrap();
    json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": {"storedModel": {"modelAssets": [{
            "name": "model.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
            "primaryModelSource": true, "sourceCode": source,
        }]}},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": inputs}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
    })
}

#[test]
fn h6_a_running_job_shows_growing_counts_then_its_final_figures() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_JOB_BATCH_SIZE", "2")]);
    let (s, job) = e.send(
        "POST",
        "/api/jobs",
        &slow_job_document(&records(40, 0.05, &[3])),
    );
    assert_eq!(s, 201, "{job}");
    assert!(
        job["progress"].is_null(),
        "no progress before it runs: {job}"
    );
    let id = job["id"].as_str().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen: Vec<Value> = Vec::new();
    let done = loop {
        let (_, v) = e.get(&format!("/api/jobs/{id}"));
        match v["jobStatus"].as_str() {
            Some("RUNNING") if v["progress"].is_object() => seen.push(v["progress"].clone()),
            Some("COMPLETE" | "ERROR" | "CANCELLED") => break v,
            _ => {}
        }
        assert!(Instant::now() < deadline, "job {id} stays {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let scored: Vec<u64> = seen
        .iter()
        .map(|p| p["recordsScored"].as_u64().unwrap())
        .collect();
    let partial: Vec<u64> = scored
        .iter()
        .copied()
        .filter(|&n| n > 0 && n < 39)
        .collect();
    assert!(
        partial.windows(2).any(|w| w[0] < w[1]),
        "counts grow while RUNNING: {seen:#?}"
    );
    assert!(scored.windows(2).all(|w| w[0] <= w[1]), "{scored:?}");
    let later = seen
        .iter()
        .rev()
        .find(|p| p["recordsScored"].as_u64() > Some(0))
        .unwrap();
    assert!(later["recordsPerSecond"].as_f64().unwrap() > 0.0, "{later}");
    assert!(later["elapsedMs"].as_u64().unwrap() > 0, "{later}");
    assert!(later["recordsRead"].as_u64() >= later["recordsScored"].as_u64());
    let listed = {
        let (_, l) = e.get("/api/jobs");
        l["jobs"][0].clone()
    };
    assert_eq!(listed["progress"], done["progress"], "{listed}");

    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "FAILURE");
    let p = &done["progress"];
    assert_eq!(p["recordsRead"], 40, "{done}");
    assert_eq!(p["recordsScored"], 39, "{done}");
    assert_eq!(p["recordsFailed"], 1, "{done}");
    assert_eq!(p["recordsRejected"], 0, "{done}");
    assert!(p["elapsedMs"].as_u64().unwrap() > 0, "{done}");
}
