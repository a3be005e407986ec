//! `engine run` end to end: the real binary, a real CPython worker, real files.

mod common;

use std::process::Command;

use common::{json_lines as lines, repo_root as root, run_engine as engine, text};

#[test]
fn the_example_model_scores_its_data() {
    let out = engine(&[
        "run",
        "examples/credit-score/model",
        "--input",
        "examples/credit-score/applications.jsonl",
        "--param",
        "threshold=0.4",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let records = lines(&out);
    assert_eq!(records.len(), 20);
    assert_eq!(records[0]["id"], 1);
    assert!(records
        .iter()
        .all(|r| r["decision"] == "approve" || r["decision"] == "decline"));
    assert!(
        err.contains("MODEL-CONSOLE loaded 4 coefficients, threshold 0.4"),
        "{err}"
    );
    assert!(err.contains("Records in/out: 20/20"), "{err}");
}

#[test]
fn metrics_get_a_data_frame_of_every_record() {
    let out = engine(&[
        "run",
        "examples/credit-score/model",
        "--job",
        "metrics",
        "--input",
        "examples/credit-score/labeled.csv",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let records = lines(&out);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["records"], 200);
    assert!(records[0]["f1"].as_f64().is_some());
}

#[test]
fn failures_skip_their_record_and_end_with_failure() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let out = engine(&[
        "run",
        "tests/models/failing.py",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let xs: Vec<i64> = lines(&out)
        .iter()
        .map(|r| r["x"].as_i64().unwrap())
        .collect();
    assert_eq!(xs, vec![1, 2, 4, 6]);
    assert!(err.contains("ZeroDivisionError"), "{err}");
    assert!(err.contains("Traceback"), "{err}");
    assert!(err.contains("UserWarning"), "{err}");
    assert!(err.contains("MODEL-CONSOLE model says hello"), "{err}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["status"], "COMPLETE");
    assert_eq!(s["result"], "FAILURE");
    assert_eq!(s["records_failed"], 2);
    assert_eq!(s["records_in"], 6);
    assert_eq!(s["problems"][0]["position"], "record 3");
}

#[test]
fn bad_input_lines_are_rejected_with_their_line_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let evens = format!("3={}", dir.path().join("evens.jsonl").display());
    let out = engine(&[
        "run",
        "tests/models/routes.py",
        "--input",
        "tests/data/cli/x_bad.jsonl",
        "--output-slot",
        &evens,
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(lines(&out).len(), 2);
    let out = engine(&[
        "run",
        "tests/models/routes.py",
        "--input",
        "tests/data/cli/x_bad.jsonl",
        "--stop-on-bad-records",
        "--output-slot",
        &evens,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(lines(&out).len(), 1, "stops at the first bad record");
}

#[test]
fn an_errors_file_gets_one_error_record_per_failed_or_refused_record() {
    let dir = tempfile::tempdir().unwrap();
    let errors = dir.path().join("errors.jsonl");
    let out = engine(&[
        "run",
        "tests/models/failing.py",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--errors",
        errors.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error output: 2 error record(s)"), "{err}");
    let got: Vec<serde_json::Value> = std::fs::read_to_string(&errors)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["stage"], "model");
    assert_eq!(got[0]["record"], 3);
    assert_eq!(got[0]["line"], 3);
    assert_eq!(got[0]["value"], serde_json::json!({"x": 3}));
    assert!(
        got[0]["reason"]
            .as_str()
            .unwrap()
            .contains("ZeroDivisionError"),
        "{got:?}"
    );
    assert!(
        got[0]["traceback"].as_str().unwrap().contains("Traceback"),
        "{got:?}"
    );

    let out = engine(&[
        "run",
        "tests/models/routes.py",
        "--input",
        "tests/data/cli/x_bad.jsonl",
        "--output-slot",
        &format!("3={}", dir.path().join("evens.jsonl").display()),
        "--errors",
        errors.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let got: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&errors).unwrap().trim()).unwrap();
    assert_eq!(got["stage"], "input");
    assert_eq!(got["kind"], "encoding");
    assert_eq!(got["slot"], 0);
    assert_eq!(got["line"], 2);
}

#[test]
fn an_output_or_errors_file_that_is_the_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x6.jsonl");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::copy(root.join("tests/data/cli/x6.jsonl"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    for flag in ["--output", "--errors"] {
        let out = engine(&[
            "run",
            "tests/models/routes.py",
            "--input",
            input.to_str().unwrap(),
            flag,
            input.to_str().unwrap(),
        ]);
        let err = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{flag}: {err}");
        assert!(err.contains("would empty the input"), "{flag}: {err}");
        assert_eq!(
            std::fs::read(&input).unwrap(),
            before,
            "{flag}: the input is kept"
        );
    }
}

#[test]
fn outputs_route_by_slot_with_seqno_from_one() {
    let dir = tempfile::tempdir().unwrap();
    let evens = dir.path().join("evens.jsonl");
    let out = engine(&[
        "run",
        "tests/models/routes.py",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--output-slot",
        &format!("3={}", evens.display()),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let main = lines(&out);
    assert_eq!(main[0]["seq"], 1);
    assert_eq!(main[0]["slot"], 0);
    assert_eq!(main[5]["seq"], 6);
    let evens = std::fs::read_to_string(evens).unwrap();
    assert_eq!(evens, "{\"even\":2}\n{\"even\":4}\n{\"even\":6}\n");
}

#[test]
fn nan_output_is_rejected_by_encoding() {
    let out = engine(&[
        "run",
        "tests/models/nan.py",
        "--input",
        "tests/data/cli/x6.jsonl",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(lines(&out).len(), 5);
    assert!(err.contains("Output record rejected by encoding"), "{err}");
}

#[test]
fn an_init_that_raises_is_an_error_with_its_traceback() {
    let out = engine(&[
        "run",
        "tests/models/init_fails.py",
        "--input",
        "tests/data/cli/x6.jsonl",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot load weights"), "{err}");
    assert!(err.contains("Traceback"), "{err}");
}

#[test]
fn a_worker_that_exits_fails_the_job_naming_the_record() {
    let out = engine(&[
        "run",
        "tests/models/exits.py",
        "--input",
        "tests/data/cli/x6.jsonl",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("exited with status 3"), "{err}");
    assert!(
        err.contains("\"x\": 4") || err.contains("record 4"),
        "{err}"
    );
}

#[test]
fn training_copies_what_the_model_wrote_under_output_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("trained");
    let out = engine(&[
        "run",
        "tests/models/trains.py",
        "--job",
        "train",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--output",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("model.json")).unwrap())
            .unwrap();
    assert_eq!(model["rows"], 6);
    assert_eq!(model["mean_x"], 3.5);
    assert!(out_dir.join("nested/notes.txt").is_file());
}

#[test]
fn usage_errors_exit_64_and_say_what() {
    let out = engine(&["run", "tests/models/routes.py"]);
    assert_eq!(out.status.code(), Some(64));
    let out = engine(&["run", "tests/models/routes.py", "--input", "nope.jsonl"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("nope.jsonl: no such file"));
    let out = engine(&[
        "run",
        "tests/models/routes.py",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--output-slot",
        "2=x",
    ]);
    assert_eq!(out.status.code(), Some(64));
    let out = engine(&[
        "run",
        "tests/models/routes.py",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--input-encoding",
        "yaml",
    ]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn the_binary_runs_its_python_with_an_empty_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args([
            "run",
            "examples/credit-score/model",
            "--job",
            "metrics",
            "--input",
            "examples/credit-score/labeled.csv",
        ])
        .current_dir(root())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(lines(&out)[0]["records"], 200, "pandas imports and runs");
}

#[test]
fn a_hanging_record_times_out_alone_and_the_job_goes_on() {
    let out = engine(&[
        "run",
        "tests/models/hangs.py",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--record-timeout",
        "300",
        "--workers",
        "1",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let xs: Vec<i64> = lines(&out)
        .iter()
        .map(|r| r["x"].as_i64().unwrap())
        .collect();
    assert_eq!(xs, vec![1, 2, 4, 5, 6]);
    assert!(err.contains("per-record timeout of 300 ms"), "{err}");
    assert!(err.contains("Record 3 on slot 0 failed"), "{err}");
}

#[test]
fn a_worker_over_its_memory_limit_is_stopped_and_replaced() {
    let out = engine(&[
        "run",
        "tests/models/hog.py",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--memory-limit",
        "200",
        "--workers",
        "1",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let xs: Vec<i64> = lines(&out)
        .iter()
        .map(|r| r["x"].as_i64().unwrap())
        .collect();
    assert_eq!(xs, vec![1, 3, 4, 5, 6]);
    assert!(err.contains("over the limit of 200 MiB"), "{err}");
}

#[test]
fn crashes_under_several_workers_keep_order_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("s.json");
    let out = engine(&[
        "run",
        "tests/models/crash_every_100.py",
        "--input",
        "tests/data/cli/ids1000.jsonl",
        "--workers",
        "2",
        "--batch-size",
        "64",
        "--max-worker-restarts",
        "20",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let ids: Vec<i64> = lines(&out)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (1..=1000).filter(|i| i % 100 != 0).collect();
    assert_eq!(ids, expected);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["records_in"], 1000);
    assert_eq!(s["records_out"], 990);
    assert_eq!(s["records_failed"], 10);
}

#[test]
fn recordsets_deliver_a_batch_as_one_data_frame() {
    let out = engine(&[
        "run",
        "tests/models/recordsets.py",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--batch-size",
        "4",
        "--workers",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows = lines(&out);
    let ys: Vec<i64> = rows.iter().map(|r| r["y"].as_i64().unwrap()).collect();
    assert_eq!(ys, vec![10, 20, 30, 40, 50, 60]);
    let sizes: Vec<i64> = rows
        .iter()
        .map(|r| r["batch_size"].as_i64().unwrap())
        .collect();
    assert_eq!(sizes, vec![4, 4, 4, 4, 2, 2]);
}

#[test]
fn a_model_gets_its_own_requirements_and_a_cached_environment_the_second_time() {
    let cache = tempfile::tempdir().unwrap();
    let run = || {
        engine(&[
            "run",
            "tests/models/pinned",
            "--input",
            "tests/data/cli/x6.jsonl",
            "--workers",
            "1",
            "--env-cache",
            cache.path().to_str().unwrap(),
        ])
    };
    let first = run();
    let err = text(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{err}");
    assert_eq!(lines(&first)[0]["six"], "1.16.0");
    assert!(err.contains("building"), "{err}");
    let second = run();
    let err = text(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "{err}");
    assert!(err.contains("using the cached environment"), "{err}");
    assert_eq!(lines(&second)[0]["six"], "1.16.0");

    // Another model in the same engine does not see that pin.
    let other = engine(&[
        "run",
        "tests/models/pinned/model.py",
        "--input",
        "tests/data/cli/x6.jsonl",
        "--workers",
        "1",
    ]);
    assert_eq!(other.status.code(), Some(0), "{}", text(&other.stderr));
    assert_ne!(lines(&other)[0]["six"], "1.16.0");
}

#[test]
fn a_failing_install_fails_the_job_with_pips_words() {
    let model = tempfile::tempdir().unwrap();
    std::fs::write(
        model.path().join("model.py"),
        "def action(d):\n    yield d\n",
    )
    .unwrap();
    std::fs::write(
        model.path().join("requirements.txt"),
        "this-package-does-not-exist-xyz==1.0\n",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = engine(&[
        "run",
        model.path().to_str().unwrap(),
        "--input",
        "tests/data/cli/x6.jsonl",
        "--env-cache",
        cache.path().to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("this-package-does-not-exist-xyz"), "{err}");
    let out = engine(&[
        "run",
        model.path().to_str().unwrap(),
        "--input",
        "tests/data/cli/x6.jsonl",
        "--env-cache",
        cache.path().to_str().unwrap(),
        "--no-installs",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("installs are turned off"), "{err}");
}

#[test]
fn r_models_score_fail_per_record_and_compute_metrics() {
    let out = engine(&[
        "run",
        "tests/models/r_e2e/score.R",
        "--input",
        "tests/data/cli/x6.jsonl",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let ys: Vec<i64> = lines(&out)
        .iter()
        .map(|r| r["y"].as_i64().unwrap())
        .collect();
    assert_eq!(ys, vec![2, 4, 8, 10, 12]);
    assert!(err.contains("three is not allowed"), "{err}");
    assert!(err.contains("MODEL-CONSOLE R model ready"), "{err}");

    let out = engine(&[
        "run",
        "tests/models/r_e2e/score.R",
        "--job",
        "metrics",
        "--input",
        "tests/data/cli/x6.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let m = &lines(&out)[0];
    assert_eq!(m["rows"], 6);
    assert_eq!(m["mean_x"], 3.5);
}

#[test]
fn records_that_break_the_models_schemas_are_rejected_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("s.json");
    let out = engine(&[
        "run",
        "tests/models/schema_model",
        "--input",
        "tests/data/cli/schema_in.jsonl",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let ids: Vec<i64> = lines(&out)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 5]);
    assert!(
        err.contains("Record rejected by schema: Field 'x' missing for record 'input_schema'"),
        "{err}"
    );
    assert!(!err.contains("three"), "rejected records are masked: {err}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["inputs"]["0"]["rejected_by_schema"], 2);
    assert_eq!(s["outputs"]["1"]["rejected_by_schema"], 1);

    let out = engine(&[
        "run",
        "tests/models/schema_model",
        "--input",
        "tests/data/cli/schema_in.jsonl",
        "--no-input-schema-check",
        "--no-output-schema-check",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "x missing still fails the record in the model"
    );
    let ids: Vec<i64> = lines(&out)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 4, 5], "{}", text(&out.stderr));
}

#[test]
fn the_input_schema_types_csv_cells_and_the_cli_checks_files() {
    let out = engine(&[
        "run",
        "tests/models/schema_model",
        "--input",
        "tests/data/cli/schema_in.csv",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let scores: Vec<f64> = lines(&out)
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores, vec![2.25, 4.5]);
    let out = engine(&[
        "schema",
        "check",
        "tests/models/schema_model/input_schema.avsc",
        "tests/data/cli/schema_in.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("5 records"), "{err}");
    let out = engine(&[
        "schema",
        "check",
        "tests/models/schema_model/output_schema.avsc",
        "tests/data/cli/x6.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn crashes_inside_a_large_batch_fail_only_their_record() {
    // One worker, one batch of 1,000 records sent in chunks: each crash names its record,
    // a new worker scores the rest, and nothing is lost or duplicated.
    let out = engine(&[
        "run",
        "tests/models/crash_every_100.py",
        "--input",
        "tests/data/cli/ids1000.jsonl",
        "--workers",
        "1",
        "--batch-size",
        "1000",
        "--max-worker-restarts",
        "10",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let ids: Vec<i64> = lines(&out)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (1..=1000).filter(|i| i % 100 != 0).collect();
    assert_eq!(ids, expected);
    for n in [100, 500, 1000] {
        assert!(
            err.contains(&format!("Record {n} on slot 0 failed")),
            "{err}"
        );
    }
}

/// A record-set model gets the same frame whether the records share one shape (the frame
/// built column by column) or not (row by row): columns in the records' key order, dtypes
/// as pandas infers them, missing keys as NaN, rows indexed by their place in the batch.
#[test]
fn a_record_set_frame_is_the_same_built_by_columns_or_by_rows() {
    let m = "tests/models/recordset-shapes";
    let out = engine(&[
        "run",
        &format!("{m}/model.py"),
        "--input",
        &format!("{m}/data.jsonl"),
        "--batch-size",
        "3",
        "--workers",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows = lines(&out);
    assert_eq!(rows.len(), 6, "{rows:?}");
    // One shape: a, b, c in order; a integers.
    for (i, r) in rows[..3].iter().enumerate() {
        assert_eq!(r["columns"], serde_json::json!(["a", "b", "c"]), "{r}");
        assert_eq!(r["a_dtype"], "int64", "{r}");
        assert_eq!(r["row"], i, "{r}");
    }
    assert_eq!(
        rows[0]["values"],
        serde_json::json!({"a": 1, "b": "x", "c": [1, 2]})
    );
    assert_eq!(
        rows[2]["values"],
        serde_json::json!({"a": 3, "b": "z", "c": []})
    );
    // Keys that differ: the columns in the order pandas meets them, a hole as NaN.
    for (i, r) in rows[3..].iter().enumerate() {
        assert_eq!(r["columns"], serde_json::json!(["a", "b"]), "{r}");
        assert_eq!(r["a_dtype"], "float64", "{r}");
        assert_eq!(r["row"], i, "{r}");
    }
    assert_eq!(rows[4]["values"], serde_json::json!({"a": 2.0, "b": "y"}));
    assert_eq!(rows[5]["values"], serde_json::json!({"a": 3.0, "b": null}));
}

/// A batch larger than the worker's pipelining chunks still reaches a record-set model as
/// one data frame: one model call per batch.
#[test]
fn a_large_batch_reaches_a_record_set_model_as_one_frame() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x600.jsonl");
    let body: String = (1..=600).map(|x| format!("{{\"x\": {x}}}\n")).collect();
    std::fs::write(&input, body).unwrap();
    let out = engine(&[
        "run",
        "tests/models/recordsets.py",
        "--input",
        input.to_str().unwrap(),
        "--batch-size",
        "600",
        "--workers",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows = lines(&out);
    assert_eq!(rows.len(), 600);
    let sizes: std::collections::BTreeSet<i64> = rows
        .iter()
        .map(|r| r["batch_size"].as_i64().unwrap())
        .collect();
    assert_eq!(sizes, [600].into());
    let ys: Vec<i64> = rows.iter().map(|r| r["y"].as_i64().unwrap()).collect();
    assert_eq!(ys, (1..=600).map(|x| x * 10).collect::<Vec<_>>());
}
