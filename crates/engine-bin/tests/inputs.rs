//! Inputs as real ModelOp models meet them, through the real `engine run`: broken streams,
//! data that must not change silently, whole-file records, encodings by extension and input
//! paths.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{json_lines as lines, repo_root as root, run_engine as engine, text};

const ECHO: &str = "tests/models/echo-inputs/model.py";

/// Runs the echo model over `input` with extra arguments.
fn echo(input: &Path, extra: &[&str]) -> Output {
    let input = input.to_str().unwrap();
    let mut args = vec!["run", ECHO, "--workers", "1", "--input", input];
    args.extend_from_slice(extra);
    engine(&args)
}

/// `n` MessagePack maps `{"x": i}`, then the start of one more cut short.
fn truncated_msgpack(n: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend_from_slice(&[0x81, 0xa1, b'x', 0xcd]);
        bytes.extend_from_slice(&i.to_be_bytes());
    }
    bytes.extend_from_slice(&[0x81, 0xa1, b'x', 0xcd, 0x01]);
    bytes
}

#[test]
fn a_broken_stream_keeps_every_record_decoded_before_the_break() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cut.msgpack");
    std::fs::write(&input, truncated_msgpack(460)).unwrap();
    for batch in ["1000", "10"] {
        let out = echo(&input, &["--batch-size", batch]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let records = lines(&out);
        assert_eq!(records.len(), 460, "batch {batch}: {err}");
        assert_eq!(records[459]["value"]["x"], 459);
        assert!(err.contains("cannot be read past"), "{err}");
        assert!(err.contains("Records in/out: 460/460"), "{err}");
    }
}

#[test]
fn silent_data_changes_are_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    std::fs::write(
        &input,
        "{\"id\": 18446744073709551615}\n{\"id\": 18446744073709551616}\n",
    )
    .unwrap();
    let out = echo(&input, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let records = lines(&out);
    assert_eq!(records.len(), 1, "{err}");
    assert_eq!(records[0]["value"]["id"], 18446744073709551615u64);
    assert!(
        err.contains("integer 18446744073709551616 does not fit in 64 bits"),
        "{err}"
    );

    let input = dir.path().join("dup.csv");
    std::fs::write(&input, "\u{feff}a,a\n1,2\n3,\"open\n").unwrap();
    let out = echo(&input, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let records = lines(&out);
    assert_eq!(records.len(), 1, "{err}");
    assert_eq!(records[0]["value"], serde_json::json!({"a": 1, "a.1": 2}));
    assert!(err.contains("never closed"), "{err}");
}

#[test]
fn a_json_document_over_several_lines_is_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("doc.json");
    std::fs::write(&input, "[\n  {\"a\": 1},\n  {\"a\": 2}\n]\n").unwrap();
    let out = echo(&input, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let records = lines(&out);
    assert_eq!(records.len(), 1, "{err}");
    assert_eq!(records[0]["type"], "list");
    assert_eq!(records[0]["value"], serde_json::json!([{"a": 1}, {"a": 2}]));
    assert!(err.contains("read whole as one record"), "{err}");

    // Forced line by line, the same file is three broken lines and one record.
    let out = echo(&input, &["--input-mode", "lines"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(lines(&out).len(), 1);

    // JSON lines stay lines; --input-mode file makes even them one record (a JSON error here).
    let input = dir.path().join("rows.json");
    std::fs::write(&input, "{\"a\": 1}\n{\"a\": 2}\n").unwrap();
    let out = echo(&input, &[]);
    assert_eq!(lines(&out).len(), 2, "{}", text(&out.stderr));
    let input = dir.path().join("one.jsonl");
    std::fs::write(&input, "{\n\"k\": [1, 2]\n}\n").unwrap();
    let out = echo(&input, &["--input-mode", "file"]);
    let records = lines(&out);
    assert_eq!(records.len(), 1, "{}", text(&out.stderr));
    assert_eq!(records[0]["value"], serde_json::json!({"k": [1, 2]}));
}

#[test]
fn encodings_come_from_known_extensions_only() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["rows.ndjson", "rows.jsons"] {
        let input = dir.path().join(name);
        std::fs::write(&input, "{\"a\": 1}\n{\"a\": 2}\n").unwrap();
        let out = echo(&input, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(lines(&out)[1]["type"], "dict");
    }
    for name in ["data.xml", "model.pkl", "t.feather", "noext"] {
        let input = dir.path().join(name);
        std::fs::write(&input, "<a/>\n").unwrap();
        let out = echo(&input, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(
            err.contains("--input-encoding raw") && err.contains(".ndjson"),
            "{err}"
        );
        let out = echo(&input, &["--input-encoding", "raw"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(lines(&out)[0]["type"], "bytes");
    }
}

#[test]
fn input_paths_are_reported_as_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let usage = |path: &Path, what: &str| {
        let out = echo(path, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(err.contains(what), "{what}: {err}");
    };
    let folder = dir.path().join("in.json");
    std::fs::create_dir(&folder).unwrap();
    usage(&folder, "is a directory");
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    usage(&a, "symbolic link loop");
    let fifo = dir.path().join("pipe.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    usage(&fifo, "is a FIFO");
    usage(&dir.path().join("missing.json"), "no such file");

    // An unreadable file. Root reads everything through its capabilities to override file
    // permissions, so as root the engine runs without them (setpriv, util-linux).
    let locked = dir.path().join("locked.json");
    std::fs::write(&locked, "{}\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0");
    let args = [
        "run",
        ECHO,
        "--workers",
        "1",
        "--input",
        locked.to_str().unwrap(),
    ];
    let out = if root_user {
        let drop = "-dac_override,-dac_read_search";
        Command::new("setpriv")
            .args(["--inh-caps", drop, "--bounding-set", drop])
            .arg(env!("CARGO_BIN_EXE_engine"))
            .args(args)
            .current_dir(root())
            .env_remove("ENGINE_LOG")
            .output()
            .expect("setpriv runs")
    } else {
        engine(&args)
    };
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("cannot be read"), "{err}");

    // Empty inputs, Avro included, are inputs without records.
    for name in ["empty.avro", "empty.json", "empty.csv"] {
        let input = dir.path().join(name);
        std::fs::write(&input, "").unwrap();
        let out = echo(&input, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}: {err}");
        assert!(err.contains("Records in/out: 0/0"), "{err}");
    }

    // A byte-order mark before JSON is skipped.
    let input = dir.path().join("bom.jsonl");
    std::fs::write(&input, "\u{feff}{\"a\": 1}\n").unwrap();
    let out = echo(&input, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(lines(&out)[0]["value"]["a"], 1);
}

#[test]
fn a_job_document_reads_a_json_document_whole() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::Engine::start(dir.path(), &[], &[]);
    let model = std::fs::read_to_string(root().join(ECHO)).unwrap();
    let doc = |name: &str, mode: Option<&str>| {
        let mut input = serde_json::json!({
            "assetType": "FILE", "name": name,
            "fileContentString": "{\n  \"rows\": [1, 2]\n}\n",
        });
        if let Some(mode) = mode {
            input["inputMode"] = mode.into();
        }
        serde_json::json!({
            "jobType": "MODEL_BATCH_JOB",
            "model": {"storedModel": {"modelAssets": [{
                "name": "echo.py", "assetType": "SOURCE_CODE", "sourceCode": model,
            }]}},
            "inputData": [input],
            "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
        })
    };
    let run = |doc: serde_json::Value| {
        let (s, job) = e.send("POST", "/api/jobs", &doc);
        assert_eq!(s, 201, "{job}");
        let id = job["id"].as_str().unwrap().to_owned();
        let done = e.wait_job(&id, &["COMPLETE", "ERROR"]);
        let (_, r) = e.get(&format!("/api/jobs/{id}/result"));
        (
            done,
            r["outputs"][0]["content"].as_str().unwrap_or("").to_owned(),
        )
    };
    let (done, out) = run(doc("in.json", None));
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
    assert_eq!(out, "{\"type\":\"dict\",\"value\":{\"rows\":[1,2]}}\n");
    assert!(done["jobMessages"]
        .to_string()
        .contains("read whole as one record"));
    let (done, out) = run(doc("in.jsonl", Some("file")));
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
    assert!(out.contains("\"rows\":[1,2]"), "{out}");
    let (done, _) = run(doc("in.json", Some("lines")));
    assert_eq!(done["jobResult"], "FAILURE", "{done}");
    let (s, bad) = e.send("POST", "/api/jobs", &doc("in.json", Some("pages")));
    assert_eq!(s, 400, "{bad}");
    // An input whose extension names no encoding is refused, not read as raw bytes.
    let (s, bad) = e.send("POST", "/api/jobs", &doc("in.feather", None));
    assert_eq!(s, 400, "{bad}");
    assert!(bad.to_string().contains("raw"), "{bad}");
    let mut raw = doc("in.feather", None);
    raw["inputData"][0]["encoding"] = "raw".into();
    let (done, out) = run(raw);
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
    assert!(out.contains("\"type\":\"bytes\""), "{out}");
}

#[test]
fn a_flood_of_bad_records_is_logged_in_full_then_summarized() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    let mut data = String::new();
    for i in 0..25_000 {
        if i % 5_000 == 0 {
            data += &format!("{{\"i\": {i}}}\n");
        } else {
            data += "not json\n";
        }
    }
    std::fs::write(&input, data).unwrap();
    let summary = dir.path().join("summary.json");
    let out = echo(&input, &["--summary-json", summary.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(lines(&out).len(), 5);
    let each = err
        .lines()
        .filter(|l| l.contains("Record rejected by encoding"))
        .count();
    assert_eq!(each, 100, "{err}");
    let summaries: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("input slot 0: records rejected: ") && l.contains("so far"))
        .collect();
    assert!((2..=40).contains(&summaries.len()), "{summaries:?}\n{err}");
    assert!(
        err.contains(
            "input slot 0: records rejected: 24995 in all, 24895 of them not logged one by one"
        ),
        "{err}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    assert_eq!(summary["records_rejected"], 24_995, "{summary}");
}

#[test]
fn the_model_console_is_bounded_per_line_and_in_volume() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ids.jsonl");
    let data: String = (0..200).map(|i| format!("{i}\n")).collect();
    std::fs::write(&input, data).unwrap();
    let out = engine(&[
        "run",
        "tests/models/console-flood/model.py",
        "--workers",
        "1",
        "--console-limit",
        "1",
        "--input",
        input.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        &err[err.len().saturating_sub(2000)..]
    );
    assert_eq!(lines(&out).len(), 200);
    assert!(
        err.contains("[line truncated: 2934464 more bytes not shown]"),
        "{}",
        &err[..2000.min(err.len())]
    );
    assert!(err.len() < 2 * 1024 * 1024, "{} bytes of log", err.len());
    let shown = err
        .lines()
        .filter(|l| l.contains(&"y".repeat(20_000)))
        .count();
    // 1 MiB: the 64 KiB cut line, then 20,000-byte lines until the budget is spent.
    assert_eq!(shown, (1_048_576 - 65_536) / 20_000, "{shown}");
    assert!(
        err.contains("further output is dropped")
            && err.contains(&format!(
                "{} line(s), {} bytes, dropped",
                200 - shown,
                (200 - shown) * 20_000
            )),
        "{}",
        &err[err.len().saturating_sub(3000)..]
    );
}

#[test]
fn logs_are_plain_text_or_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.jsonl");
    std::fs::write(&input, "{\"x\": 1}\nbroken\n").unwrap();
    // Text on a pipe: no colour codes, the level once per line.
    let out = echo(&input, &[]);
    let err = text(&out.stderr);
    assert!(!err.contains('\u{1b}'), "{err}");
    let rejected = err.lines().find(|l| l.contains("Record rejected")).unwrap();
    assert_eq!(rejected.matches("ERROR").count(), 1, "{rejected}");

    let out = echo(&input, &["--log-format", "json"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let objects: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(objects.len() > 5, "{err}");
    for o in &objects {
        for key in ["timestamp", "level", "target", "job_id", "message"] {
            assert!(o[key].is_string(), "{key} in {o}");
        }
        assert!(o["job_id"].as_str().unwrap().starts_with("local-"), "{o}");
    }
    let bad = objects
        .iter()
        .find(|o| o["message"].as_str().unwrap().contains("Record rejected"))
        .unwrap();
    assert_eq!(bad["level"], "ERROR");
    assert_eq!(objects.last().unwrap()["summary"]["records_rejected"], 1);
}

#[test]
fn engine_serve_logs_json_objects_with_the_job_id() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("engine.log");
    let config = dir.path().join("application.json");
    std::fs::write(&config, r#"{"logFormat": "json", "logLevel": "debug"}"#).unwrap();
    let mut cmd = Command::new(common::ENGINE);
    cmd.args(["serve", "--port", "0", "--bind", "127.0.0.1", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap());
    for var in [
        "ENGINE_LOG",
        "MODELOP_API_PORT",
        "ENGINE_PORT",
        "ENGINE_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let e = common::Engine {
        child: Some(child),
        url: first
            .trim()
            .strip_prefix("engine listening on ")
            .unwrap()
            .to_owned(),
        data: dir.path().join("data"),
    };
    let model = std::fs::read_to_string(root().join(ECHO)).unwrap();
    let (s, job) = e.send(
        "POST",
        "/api/jobs",
        &serde_json::json!({
            "jobType": "MODEL_BATCH_JOB",
            "model": {"storedModel": {"modelAssets": [{
                "name": "echo.py", "assetType": "SOURCE_CODE", "sourceCode": model,
            }]}},
            "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": "1\n"}],
        }),
    );
    assert_eq!(s, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    e.wait_job(&id, &["COMPLETE", "ERROR"]);
    drop(e);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let objects: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let job_line = objects
        .iter()
        .find(|o| o["job_id"] == id.as_str() && o["message"].as_str().unwrap().contains("RUNNING"))
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(job_line["level"], "DEBUG");
    assert_eq!(job_line["target"], "job");
    assert!(job_line["timestamp"].is_string());
    assert!(
        !job_line["message"].as_str().unwrap().contains("INFO"),
        "{job_line}"
    );
}

/// `engine run` over one JSON record with `model`, with its own environment cache.
fn run_with_requirements(model: &str, cache: &Path, extra: &[&str]) -> Output {
    let input = cache.with_extension("jsonl");
    std::fs::write(&input, "{\"a\": 7}\n").unwrap();
    let mut args = vec![
        "run",
        model,
        "--input",
        input.to_str().unwrap(),
        "--env-cache",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    engine(&args)
}

#[test]
fn an_environment_that_cannot_build_says_why_and_pins_can_be_relaxed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("envs");
    let started = std::time::Instant::now();
    let out = run_with_requirements("tests/models/old-pins", &cache, &["--env-tool", "uv"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let summary = &err[err.find("engine run: scoring job").unwrap_or(0)..];
    // The reason quotes uv's verdict on the pin, not only an exit status.
    assert!(
        summary.contains("tabulate==0.0.1") && summary.contains("unsatisfiable"),
        "{summary}"
    );
    // An upper bound against hangs, far above the seconds it takes.
    assert!(started.elapsed().as_secs() < 300);

    let out = run_with_requirements(
        "tests/models/old-pins",
        &cache,
        &["--env-tool", "uv", "--ignore-pins"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("installing without version pins, as asked: tabulate"),
        "{err}"
    );
    assert_eq!(lines(&out)[0]["table"], "7");
}

#[test]
fn a_job_document_relaxes_requirements_when_its_parameters_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::Engine::start(dir.path(), &[], &[]);
    let model = std::fs::read_to_string(root().join("tests/models/old-pins/model.py")).unwrap();
    let doc = |relax: bool| {
        serde_json::json!({
            "jobType": "MODEL_BATCH_JOB",
            "jobParameters": {"relaxRequirements": relax},
            "model": {"storedModel": {"modelAssets": [
                {"name": "model.py", "assetType": "SOURCE_CODE", "primaryModelSource": true,
                 "sourceCode": model},
                {"name": "requirements.txt", "assetType": "FILE",
                 "fileContentString": "tabulate==0.0.1\n"},
            ]}},
            "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": "{\"a\": 3}\n"}],
        })
    };
    let run = |relax: bool| {
        let (s, job) = e.send("POST", "/api/jobs", &doc(relax));
        assert_eq!(s, 201, "{job}");
        e.wait_job(job["id"].as_str().unwrap(), &["COMPLETE", "ERROR"])
    };
    let done = run(false);
    assert_eq!(done["jobStatus"], "ERROR", "{done}");
    assert!(done.to_string().contains("tabulate==0.0.1"), "{done}");
    let done = run(true);
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
}

#[test]
fn a_pin_without_a_wheel_for_this_python_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(
        model.join("model.py"),
        "# modelop.score\ndef score(r):\n    yield r\n",
    )
    .unwrap();
    // numpy 1.16 has no wheel for the Pythons the engine embeds, and does not build on them.
    std::fs::write(model.join("requirements.txt"), "numpy==1.16.0\n").unwrap();
    let out = run_with_requirements(
        model.to_str().unwrap(),
        &dir.path().join("envs"),
        &["--env-tool", "uv"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let summary = &err[err.find("engine run: scoring job").unwrap_or(0)..];
    assert!(
        summary.contains("Failed to build `numpy==1.16.0`")
            && summary.contains("no wheel of this version matches this Python"),
        "{summary}"
    );
}
