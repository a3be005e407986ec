//! Real ModelOp/FastScore models run unchanged: each test reproduces a compatibility bug
//! found on public models with a model under `tests/models/`, through the real binary
//! (`engine run`, and `engine serve` where the convention concerns it too).

mod common;

use std::process::{Command, Output};

use common::{json_lines as lines, repo_root as root, run_engine as engine, text};

/// The `n` fields of a counter model's outputs, sorted.
fn counts(out: &Output) -> Vec<i64> {
    let mut n: Vec<i64> = lines(out).iter().filter_map(|r| r["n"].as_i64()).collect();
    n.sort_unstable();
    n
}

#[test]
fn a_join_over_three_input_slots_runs_in_one_worker() {
    let m = "tests/models/join-three-slots";
    let out = engine(&[
        "run",
        &format!("{m}/join.py"),
        "--input",
        &format!("{m}/a.jsonl"),
        "--input",
        &format!("{m}/b.jsonl"),
        "--input",
        &format!("{m}/c.jsonl"),
        "--batch-size",
        "3",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let records = lines(&out);
    assert_eq!(records.len(), 20, "{err}");
    for r in &records {
        let id = r["id"].as_i64().unwrap();
        assert_eq!(r["c"].as_i64(), Some(id * 100), "{r}");
    }
    assert!(
        err.contains("one worker: the model reads 3 input slots (0, 2, 4)"),
        "{err}"
    );
}

#[test]
fn models_keeping_state_run_in_one_worker_unless_asked() {
    for model in [
        "tests/models/counter-python/counter.py",
        "tests/models/counter-r/counter.R",
    ] {
        let input = "tests/models/counter-python/ids.jsonl";
        let out = engine(&["run", model, "--input", input, "--batch-size", "2"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{model}: {err}");
        assert_eq!(counts(&out), (1..=20).collect::<Vec<_>>(), "{model}: {err}");
        if std::thread::available_parallelism().map_or(1, usize::from) > 1 {
            assert!(
                err.contains("one worker: the model's line"),
                "{model}: {err}"
            );
        }
        // An explicit worker count wins, with a warning.
        let out = engine(&[
            "run",
            model,
            "--input",
            input,
            "--batch-size",
            "2",
            "--workers",
            "2",
        ]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{model}: {err}");
        assert!(
            err.contains("2 workers as asked, although"),
            "{model}: {err}"
        );
        // Two workers start; which of them scores which batch is the machine's timing (on a
        // busy one the first may take them all), so the counts are not compared here.
        assert!(
            err.contains("starting the model's runner (2 workers)"),
            "{model}: {err}"
        );
    }
}

#[test]
fn action_and_score_slot_comments_name_the_score_function() {
    for (model, factor) in [
        ("action0.py", 1),
        ("score0.py", 3),
        ("action0.R", 1),
        ("score0.R", 3),
    ] {
        let m = format!("tests/models/action-markers/{model}");
        let out = engine(&["run", &m, "--input", "tests/models/action-markers/x.jsonl"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{model}: {err}");
        let records = lines(&out);
        assert_eq!(records.len(), 2, "{model}: {err}");
        assert_eq!(records[1]["by"], "predict", "{model}");
        assert_eq!(records[1]["x"], 2 * factor, "{model}");
    }
}

#[test]
fn metrics_output_is_not_checked_against_the_score_output_schema() {
    let m = "tests/models/metrics-with-schemas";
    let out = engine(&[
        "run",
        m,
        "--job",
        "metrics",
        "--input",
        &format!("{m}/data.jsonl"),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let records = lines(&out);
    assert_eq!(records.len(), 1, "{err}");
    assert_eq!(records[0]["records"], 3);
    assert_eq!(records[0]["mean_x"], 2.0);
    assert!(err.contains("metrics output is not checked"), "{err}");
    // Scoring still checks: the same schemas apply to the score function's output.
    let out = engine(&["run", m, "--input", &format!("{m}/data.jsonl")]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("records checked against schema output_schema"),
        "{err}"
    );

    // A metrics job document with output checking on, likewise.
    let data = tempfile::tempdir().unwrap();
    let e = common::Engine::start(data.path(), &[], &[]);
    let doc = serde_json::json!({
        "jobType": "MODEL_BATCH_TEST_JOB",
        "enableInputSchemaChecking": true,
        "enableOutputSchemaChecking": true,
        "model": {"storedModel": stored_model("metrics-with-schemas", "model.py")},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl",
            "fileContentString": std::fs::read_to_string(root().join(m).join("data.jsonl")).unwrap()}],
        "outputData": [{"assetType": "FILE", "name": "test_result.json"}],
    });
    let (status, job) = e.send("POST", "/api/jobs", &doc);
    assert!(status == 200 || status == 201, "{status} {job}");
    let done = e.wait_job(job["id"].as_str().unwrap(), &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
}

/// A deployment or job document carrying the model of `tests/models/<dir>` (every file at
/// its top, the main one first) as ModelOp Center sends it.
fn stored_model(dir: &str, main: &str) -> serde_json::Value {
    let folder = root().join("tests/models").join(dir);
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut assets = Vec::new();
    for name in names {
        let content = std::fs::read_to_string(folder.join(&name)).unwrap();
        assets.push(if name == main {
            serde_json::json!({"name": name, "assetType": "SOURCE_CODE",
                "assetRole": "MODEL_SOURCE", "primaryModelSource": true, "sourceCode": content})
        } else {
            serde_json::json!({"name": name, "assetType": "FILE", "fileContentString": content})
        });
    }
    serde_json::json!({"modelMetaData": {"name": dir}, "modelAssets": assets})
}

#[test]
fn a_deployment_installs_the_models_requirements_like_a_job() {
    let data = tempfile::tempdir().unwrap();
    let e = common::Engine::start(data.path(), &[], &[]);
    let doc = serde_json::json!({
        "name": "pinned",
        "deployableModel": {"storedModel": stored_model("pinned", "model.py")},
    });
    let (status, body) = e.send("PUT", "/api/deployment", &doc);
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body, _) = e.score("/api/roundtrip/0/1", r#"{"x": 1}"#);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["six"], "1.16.0", "{body}");
    // Its own environment's libraries, as the deployment shows them.
    let (_, d) = e.get("/api/deployment");
    let libraries = d["libraries"].as_array().unwrap();
    assert!(
        libraries.iter().any(|l| l == "six==1.16.0"),
        "{libraries:?}"
    );

    // `engine deploy` of the model's folder, as `engine job create` sends it.
    let out = Command::new(common::ENGINE)
        .args(["deploy", "tests/models/pinned"])
        .current_dir(root())
        .env("ENGINE_URL", &e.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (status, body, _) = e.score("/api/roundtrip/0/1", r#"{"x": 2}"#);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["six"], "1.16.0", "{body}");
}

#[test]
fn a_missing_schema_file_is_a_warning_when_checking_is_off() {
    let m = "tests/models/missing-schema";
    let input = format!("{m}/x.jsonl");
    let off = engine(&[
        "run",
        m,
        "--input",
        &input,
        "--no-input-schema-check",
        "--no-output-schema-check",
    ]);
    let err = text(&off.stderr);
    assert_eq!(off.status.code(), Some(0), "{err}");
    assert_eq!(lines(&off).len(), 2);
    assert!(
        err.contains("WARN ENGINE slot 0: schema 'input_schema.avsc' not found"),
        "{err}"
    );
    assert!(
        err.contains("input schema checking is off, so the model runs without it"),
        "{err}"
    );
    // Checking on: the schema is needed.
    let on = engine(&["run", m, "--input", &input, "--no-input-schema-check"]);
    let err = text(&on.stderr);
    assert_ne!(on.status.code(), Some(0), "{err}");
    assert!(err.contains("'output_schema.avsc' not found"), "{err}");

    // A job document with checking off (the default) runs too.
    let data = tempfile::tempdir().unwrap();
    let e = common::Engine::start(data.path(), &[], &[]);
    let doc = serde_json::json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": {"storedModel": stored_model("missing-schema", "model.py")},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": "{\"x\": 3}\n"}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
    });
    let (status, job) = e.send("POST", "/api/jobs", &doc);
    assert!(status == 200 || status == 201, "{status} {job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let done = e.wait_job(&id, &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
}

#[test]
fn model_errors_answer_422_in_the_references_words_and_metadata_schemas_are_checked() {
    let data = tempfile::tempdir().unwrap();
    let e = common::Engine::start(data.path(), &[], &[]);
    let mut stored = stored_model("raises-on-request", "model.py");
    stored["modelMetaData"]["inputSchema"] = serde_json::json!([{
        "name": "in", "role": "input",
        "schemaDefinition": {"type": "record", "name": "in", "fields": [
            {"name": "x", "type": "double"},
            {"name": "boom", "type": ["null", "boolean"], "default": null}]},
    }]);
    stored["modelMetaData"]["outputSchema"] = serde_json::Value::String(
        r#"{"type": "record", "name": "out", "fields": [{"name": "y", "type": "double"}]}"#
            .to_owned(),
    );
    let doc = serde_json::json!({"name": "raises", "deployableModel": {"storedModel": stored}});
    let (status, body) = e.send("PUT", "/api/deployment", &doc);
    assert!(status == 200 || status == 201, "{status} {body}");

    let (status, body, _) = e.score("/api/roundtrip/0/1", r#"{"x": 1.5}"#);
    assert_eq!((status, body.trim()), (200, r#"{"y":3.0}"#));
    let (status, body, _) = e.score("/api/roundtrip/0/1", r#"{"x": "one"}"#);
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        "An error has occurred: input record rejected by schema"
    );
    let (status, body, _) = e.score("/api/roundtrip/0/1", r#"{"x": 1, "boom": true}"#);
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body,
        "An error has occurred: An output error occurred during model execution, please check the engine logs for details"
    );
    let (status, body, _) = e.score("/2/active/model/roundtrip/0/1", r#"{"x": 1, "boom": true}"#);
    assert_eq!(status, 422, "{body}");
    assert!(body.starts_with("An error has occurred: "), "{body}");
}

#[test]
fn a_training_job_that_writes_nothing_ends_with_failure() {
    let m = "tests/models/train-writes-nothing";
    let dest = tempfile::tempdir().unwrap();
    let out = engine(&[
        "run",
        &format!("{m}/model.py"),
        "--job",
        "train",
        "--input",
        &format!("{m}/data.jsonl"),
        "--output",
        dest.path().to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the training function wrote no file under outputDir/"),
        "{err}"
    );
    assert!(err.contains("status COMPLETE, result FAILURE"), "{err}");

    // The same through a job document.
    let data = tempfile::tempdir().unwrap();
    let e = common::Engine::start(data.path(), &[], &[]);
    let doc = serde_json::json!({
        "jobType": "MODEL_BATCH_TRAINING_JOB",
        "model": {"storedModel": stored_model("train-writes-nothing", "model.py")},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": "{\"x\": 3}\n"}],
    });
    let (status, job) = e.send("POST", "/api/jobs", &doc);
    assert!(status == 200 || status == 201, "{status} {job}");
    let done = e.wait_job(job["id"].as_str().unwrap(), &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "FAILURE", "{done}");
}

#[test]
fn record_set_models_on_rest_answer_each_request_with_its_own_rows() {
    let data = tempfile::tempdir().unwrap();
    let e = std::sync::Arc::new(common::Engine::start(data.path(), &[], &[]));
    let doc = serde_json::json!({
        "name": "recordsets",
        "deployableModel": {"storedModel": stored_model("recordsets-rest", "model.py")},
    });
    let (status, body) = e.send("PUT", "/api/deployment", &doc);
    assert!(status == 200 || status == 201, "{status} {body}");

    let threads: Vec<_> = (0..30)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|k| {
                        let x = t * 5 + k + 1;
                        let (status, body, _) =
                            e.score("/api/roundtrip/0/1", &format!(r#"{{"x": {x}}}"#));
                        (x, status, body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut answers = 0;
    for t in threads {
        for (x, status, body) in t.join().unwrap() {
            answers += 1;
            if x % 7 == 0 {
                assert_eq!(status, 204, "x={x}: {body}");
                continue;
            }
            assert_eq!(status, 200, "x={x}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v, serde_json::json!({"x": x, "y": x * 10}), "x={x}");
        }
    }
    assert_eq!(answers, 150);

    // A request may carry a set of records, a JSON array: scored in one call and answered
    // with an array of their rows, in order (a dropped row has none).
    let (status, body, _) = e.score(
        "/api/roundtrip/0/1",
        r#"[{"x": 1}, {"x": 2}, {"x": 7}, {"x": 3}]"#,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"x": 1, "y": 10}, {"x": 2, "y": 20}, {"x": 3, "y": 30}])
    );
    // An array is answered with an array, of one answer or of none.
    let (status, body, _) = e.score("/api/roundtrip/0/1", r#"[{"x": 4}]"#);
    assert_eq!((status, body.as_str()), (200, r#"[{"x":4,"y":40}]"#));
    let (status, body, _) = e.score("/api/roundtrip/0/1", r#"[{"x": 14}]"#);
    assert_eq!((status, body.as_str()), (200, "[]"));
    let (status, body, _) = e.score("/api/roundtrip/0/1", "[]");
    assert_eq!((status, body.as_str()), (200, "[]"));
    let (status, body, _) = e.score("/api/roundtrip/0/1", "\u{feff} [{\"x\": 5}]");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"[{"x":5,"y":50}]"#),
        "a byte order mark first"
    );
    // A record of the set the model fails on fails the request, naming the record.
    let (status, body, _) = e.score("/api/roundtrip/0/1", r#"[{"x": 1}, {"x": "one"}]"#);
    assert_eq!(status, 422, "{body}");

    // Rows that cannot be traced to their records fail those requests, with the reason in
    // the deployment's log.
    let (status, body, _) = e.score("/api/roundtrip/0/1", r#"{"x": 1, "agg": true}"#);
    assert_eq!(status, 422, "{body}");
    let (_, log) = e.get("/api/deployment/log");
    assert!(
        log.to_string()
            .contains("its index does not say which record each row comes from"),
        "{log}"
    );
}

#[test]
fn metrics_without_pandas_say_so_at_once() {
    let m = "tests/models/metrics-no-pandas";
    let out = engine(&[
        "run",
        m,
        "--job",
        "metrics",
        "--input",
        &format!("{m}/data.jsonl"),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "metrics functions receive pandas DataFrames; pandas is not installed in this \
             model's environment (add it to requirements.txt)"
        ),
        "{err}"
    );
    assert!(!err.contains("TypeError"), "{err}");
}

#[test]
fn r_models_take_record_sets_as_data_frames() {
    let m = "tests/models/recordsets-r";
    let out = engine(&[
        "run",
        &format!("{m}/model.R"),
        "--input",
        &format!("{m}/x10.jsonl"),
        "--batch-size",
        "4",
        "--workers",
        "1",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let rows = lines(&out);
    let xs: Vec<i64> = rows.iter().map(|r| r["x"].as_i64().unwrap()).collect();
    assert_eq!(xs, vec![1, 2, 3, 4, 5, 6, 8, 9, 10], "{err}");
    assert!(rows
        .iter()
        .all(|r| r["y"].as_i64() == r["x"].as_i64().map(|x| x * 10)));
    let sizes: Vec<i64> = rows
        .iter()
        .map(|r| r["batch_size"].as_i64().unwrap())
        .collect();
    assert_eq!(sizes, vec![4, 4, 4, 4, 4, 4, 4, 2, 2]);

    // Deployed, each request gets its own row, whatever the batch.
    let data = tempfile::tempdir().unwrap();
    let e = std::sync::Arc::new(common::Engine::start(data.path(), &[], &[]));
    let doc = serde_json::json!({
        "name": "recordsets-r",
        "deployableModel": {"storedModel": stored_model("recordsets-r", "model.R")},
    });
    let (status, body) = e.send("PUT", "/api/deployment", &doc);
    assert!(status == 200 || status == 201, "{status} {body}");
    let threads: Vec<_> = (1..=20)
        .map(|x| {
            let e = e.clone();
            std::thread::spawn(move || {
                let (status, body, _) = e.score("/api/roundtrip/0/1", &format!(r#"{{"x": {x}}}"#));
                (x, status, body)
            })
        })
        .collect();
    for t in threads {
        let (x, status, body) = t.join().unwrap();
        if x % 7 == 0 {
            assert_eq!(status, 204, "x={x}: {body}");
        } else {
            assert_eq!(status, 200, "x={x}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                (v["x"].as_i64(), v["y"].as_i64()),
                (Some(x), Some(x * 10)),
                "{body}"
            );
        }
    }
}

#[test]
fn a_job_document_checks_records_against_its_model_metadata_schemas() {
    let data = tempfile::tempdir().unwrap();
    let e = common::Engine::start(data.path(), &[], &[]);
    let mut stored = stored_model("raises-on-request", "model.py");
    stored["modelMetaData"]["inputSchema"] = serde_json::Value::String(
        r#"[{"schemaDefinition": {"type": "record", "name": "in", "fields": [{"name": "x", "type": "double"}]}}]"#
            .to_owned(),
    );
    let doc = serde_json::json!({
        "jobType": "MODEL_BATCH_JOB",
        "enableInputSchemaChecking": true,
        "model": {"storedModel": stored},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl",
            "fileContentString": "{\"x\": 1}\n{\"x\": \"two\"}\n{\"x\": 3}\n"}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
    });
    let (status, job) = e.send("POST", "/api/jobs", &doc);
    assert!(status == 200 || status == 201, "{status} {job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let done = e.wait_job(&id, &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "FAILURE", "{done}");
    let text = done.to_string();
    assert!(text.contains("rejected by schema"), "{done}");
}

#[test]
fn per_slot_action_comments_score_each_slot_with_its_own_function() {
    let m = "tests/models/action-per-slot";
    for model in ["model.py", "model.R"] {
        let out = engine(&[
            "run",
            &format!("{m}/{model}"),
            "--input",
            &format!("{m}/left.jsonl"),
            "--input",
            &format!("{m}/right.jsonl"),
            "--batch-size",
            "2",
        ]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{model}: {err}");
        let mut got: Vec<(String, i64, Option<i64>)> = lines(&out)
            .iter()
            .map(|r| {
                (
                    r["side"].as_str().unwrap().to_owned(),
                    r["x"].as_i64().unwrap(),
                    r["slot"].as_i64(),
                )
            })
            .collect();
        got.sort();
        let want = vec![
            ("left".to_owned(), 1, None),
            ("left".to_owned(), 2, None),
            ("left".to_owned(), 3, None),
            ("right".to_owned(), 10, Some(2)),
            ("right".to_owned(), 20, Some(2)),
        ];
        assert_eq!(got, want, "{model}: {err}");
    }
}
