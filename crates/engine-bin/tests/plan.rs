//! One job plan for `engine run` and the service, through the real binary: what the plan
//! checks is refused when a job is submitted, and the log names the user's own source.

mod common;

use common::{json_lines, run_engine, text, Engine};
use serde_json::{json, Value};

const MODEL: &str = "# modelop.score\ndef action(x):\n    yield x\n";

fn job_document(extra: Value) -> Value {
    let mut doc = json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": {"storedModel": {"modelMetaData": {"name": "echo"}, "modelAssets": [{
            "name": "echo.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
            "primaryModelSource": true, "sourceCode": MODEL,
        }]}},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": "1\n2\n"}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
    });
    if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
        doc.extend(extra.clone());
    }
    doc
}

#[test]
fn a_bad_record_timeout_is_refused_at_submission_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    for bad in [json!("soon"), json!(-5), json!(1.5)] {
        let (status, body) = e.send(
            "POST",
            "/api/jobs",
            &job_document(json!({"recordTimeoutMs": bad})),
        );
        assert_eq!(status, 400, "{bad}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("'recordTimeoutMs'"), "{bad}: {body}");
    }
    let (status, body) = e.send(
        "POST",
        "/api/jobs",
        &job_document(json!({"memoryLimitMib": "lots"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("'memoryLimitMib'"),
        "{body}"
    );
    // Nothing refused was stored; a good value is taken and the job runs.
    let (status, list) = e.get("/api/jobs");
    assert_eq!(status, 200, "{list}");
    let listed = list
        .as_array()
        .or_else(|| list["jobs"].as_array())
        .map_or(0, Vec::len);
    assert_eq!(listed, 0, "{list}");
    let (status, job) = e.send(
        "POST",
        "/api/jobs",
        &job_document(json!({"recordTimeoutMs": 5000})),
    );
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap_or_default().to_owned();
    let done = e.wait_job(&id, &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
}

#[test]
fn engine_run_names_the_users_source_in_its_log() {
    let out = run_engine(&[
        "run",
        "examples/credit-score/model",
        "--input",
        "examples/credit-score/applications.jsonl",
        "--workers",
        "1",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("loading python model model.py:"), "{err}");
    assert!(!err.contains("model __model.py"), "{err}");
}

#[test]
fn engine_run_writes_to_standard_output_for_an_output_of_dash() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "1\n2\n3\n").unwrap();
    let model = dir.path().join("echo.py");
    std::fs::write(&model, MODEL).unwrap();
    let out = std::process::Command::new(common::ENGINE)
        .args(["run"])
        .arg(&model)
        .arg("--input")
        .arg(&input)
        .args(["--output", "-"])
        .current_dir(dir.path())
        .env_remove("ENGINE_LOG")
        .output()
        .expect("engine runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out), [json!(1), json!(2), json!(3)]);
    assert!(!dir.path().join("-").exists());
}

#[test]
fn engine_run_refuses_two_slots_on_standard_output() {
    let out = run_engine(&[
        "run",
        "examples/credit-score/model",
        "--input",
        "examples/credit-score/applications.jsonl",
        "--output-slot",
        "3=-",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("output slots 1 and 3 would all write to standard output"),
        "{err}"
    );
}
