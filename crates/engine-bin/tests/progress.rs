//! Following a job: live progress on `GET /api/jobs/{id}`, `engine job create --wait` and
//! `engine job status --watch` through the real binary, and errors the CLI prints.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Engine, ENGINE};
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
fn a_running_job_shows_growing_counts_then_its_final_figures() {
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
    // The embedded input is a file of known size: the share read grows to 1, and a job
    // part-way through has a time left.
    let fractions: Vec<f64> = seen.iter().filter_map(|p| p["fraction"].as_f64()).collect();
    assert!(!fractions.is_empty(), "{seen:#?}");
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    assert!(
        seen.iter().any(|p| p["etaMs"].is_u64()) || fractions.iter().all(|f| *f >= 1.0),
        "{seen:#?}"
    );
    let listed = {
        let (_, l) = e.get("/api/jobs");
        l["jobs"][0].clone()
    };
    assert_eq!(listed["progress"], done["progress"], "{listed}");

    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "FAILURE");
    assert!(done["jobMessages"].is_array(), "{done}");
    let (_, bare) = e.get(&format!("/api/jobs/{id}?messages=false"));
    assert!(bare["jobMessages"].is_null(), "{bare}");
    assert_eq!(bare["progress"], done["progress"]);
    let p = &done["progress"];
    assert_eq!(p["recordsRead"], 40, "{done}");
    assert_eq!(p["recordsScored"], 39, "{done}");
    assert_eq!(p["recordsFailed"], 1, "{done}");
    assert_eq!(p["recordsRejected"], 0, "{done}");
    assert!(p["elapsedMs"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(p["fraction"], 1.0, "{done}");
    assert!(p["etaMs"].is_null(), "{done}");
}

/// Runs the CLI against the engine at `url` (given as is: with or without `http://`).
fn cli(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(ENGINE)
        .args(args)
        .args(["--engine", url])
        .env_remove("ENGINE_URL")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The plain progress lines of job output: `job ID RUNNING: N read, M scored, ...`.
fn scored_counts(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter(|l| l.starts_with("job ") && l.contains(" RUNNING: "))
        .filter_map(|l| {
            let (_, rest) = l.split_once(" read, ")?;
            rest.split_once(" scored")?.0.parse().ok()
        })
        .collect()
}

#[test]
fn job_create_wait_prints_progress_lines_and_exits_with_the_job_status() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_JOB_BATCH_SIZE", "2")]);
    let model = slow_model();
    let model = model.to_str().unwrap();

    // SUCCESS: 0, progress lines on standard error while it runs, the final table on stdout.
    let input = dir.path().join("slow.jsonl");
    std::fs::write(&input, records(30, 0.1, &[])).unwrap();
    let out = cli(
        &e.url,
        &[
            "job",
            "create",
            "batchjob",
            model,
            input.to_str().unwrap(),
            "-",
            "--wait",
            "--interval",
            "1",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let counts = scored_counts(&stderr);
    assert!(
        counts.len() >= 2 && counts.windows(2).any(|w| w[0] < w[1]),
        "growing progress lines: {stderr}"
    );
    assert!(
        stderr
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .contains(" COMPLETE: 30 read, 30 scored"),
        "the final figures come last: {stderr}"
    );
    assert!(
        stdout.starts_with("ID") && stdout.contains("COMPLETE") && stdout.contains("SUCCESS"),
        "{stdout}"
    );

    // COMPLETE with FAILURE: 1, with the failed record's reason and traceback.
    std::fs::write(&input, records(3, 0.0, &[2])).unwrap();
    let out = cli(
        &e.url,
        &[
            "job",
            "create",
            "batchjob",
            model,
            input.to_str().unwrap(),
            "-",
            "--wait",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("problem: slot 0, record 2: ValueError: record 2 refused: 'fail' is set"),
        "{stdout}"
    );
    assert!(
        stdout.contains("first traceback:\nTraceback (most recent call last)")
            && stdout.contains("raise ValueError"),
        "{stdout}"
    );
    assert!(stderr.contains("ended COMPLETE FAILURE"), "{stderr}");

    // ERROR: 2, with the reason (init raised) and init's traceback.
    let broken = repo().join("tests/models/init_fails.py");
    let out = cli(
        &e.url,
        &[
            "job",
            "create",
            "batchjob",
            broken.to_str().unwrap(),
            input.to_str().unwrap(),
            "-",
            "--wait",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("reason: model initialization failed")
            && stdout.contains("cannot load weights"),
        "{stdout}"
    );
    assert!(
        stdout.contains("first traceback:\nTraceback (most recent call last)")
            && stdout.contains("RuntimeError: cannot load weights"),
        "{stdout}"
    );
}

#[test]
fn job_status_watch_follows_a_job_to_its_end_and_status_shows_why_it_failed() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_JOB_BATCH_SIZE", "2")]);
    let (s, job) = e.send(
        "POST",
        "/api/jobs",
        &slow_job_document(&records(30, 0.1, &[25])),
    );
    assert_eq!(s, 201, "{job}");
    let id = job["id"].as_str().unwrap();
    // Without a scheme: host:port.
    let address = e.url.strip_prefix("http://").unwrap();
    let out = cli(
        address,
        &["job", "status", id, "--watch", "--interval", "1"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!scored_counts(&stderr).is_empty(), "{stderr}");
    assert!(
        stderr.contains(&format!("job {id} COMPLETE: 30 read, 29 scored, 1 failed")),
        "{stderr}"
    );
    assert!(
        stdout.contains("COMPLETE") && stdout.contains("FAILURE"),
        "{stdout}"
    );

    // A plain status of the finished job: 0, with the reason and the first traceback.
    let out = cli(address, &["job", "status", id]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("problem: slot 0, record 25: ValueError: record 25 refused")
            && stdout.contains("first traceback:\nTraceback (most recent call last)"),
        "{stdout}"
    );
    // --json stays the engine's answer.
    let out = cli(address, &["job", "status", id, "--watch", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["progress"]["recordsFailed"], 1, "{v}");
}

#[test]
fn engine_score_names_the_line_and_the_engines_detail() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let address = e.url.strip_prefix("http://").unwrap();
    let out = cli(address, &["deploy", slow_model().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let mut child = Command::new(ENGINE)
        .args(["score", "--engine", address])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"{\"n\": 1}\n{bad\n\n{\"n\": 4, \"fail\": true}\n{\"n\": 5}\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(stdout, "{\"n\":1}\n{\"n\":5}\n");
    assert!(
        stderr.contains(
            "engine score: line 2: the engine answered 400: An error has occurred: input record rejected by encoding: invalid JSON"
        ),
        "the line and the decoder's detail: {stderr}"
    );
    assert!(
        stderr.contains("engine score: line 4: the engine answered 422"),
        "{stderr}"
    );
    assert!(stderr.contains("2 record(s) failed"), "{stderr}");
}
#[test]
fn a_refused_body_prints_the_engines_answer_not_a_broken_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let out = cli(&e.url, &["deploy", slow_model().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Far past the engine's limit on a scoring body, so the engine stops reading early.
    let mut line = vec![b'"'; 1];
    line.resize(96 << 20, b'a');
    line.extend_from_slice(b"\"\n");
    let mut child = Command::new(ENGINE)
        .args(["score", "--engine", &e.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let writer = {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&line);
        })
    };
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("engine score: line 1: the engine answered 413"),
        "{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("broken pipe"), "{stderr}");
}

#[test]
fn on_a_terminal_watch_draws_a_bar_of_scored_records() {
    // `script` (util-linux, essential on Debian) gives the command a terminal.
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_JOB_BATCH_SIZE", "2")]);
    let (s, job) = e.send(
        "POST",
        "/api/jobs",
        &slow_job_document(&records(20, 0.05, &[])),
    );
    assert_eq!(s, 201, "{job}");
    let id = job["id"].as_str().unwrap();
    let typescript = dir.path().join("typescript");
    let out = Command::new("script")
        .args(["-qec", &format!("{ENGINE} job status {id} --watch")])
        .arg(&typescript)
        .env("ENGINE_URL", &e.url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = text(&std::fs::read(&typescript).unwrap());
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(screen.contains("records scored"), "{screen}");
    assert!(
        !screen.contains(&format!("job {id} RUNNING:")),
        "a bar, not plain lines: {screen}"
    );
    assert!(
        screen.contains("COMPLETE") && screen.contains("SUCCESS"),
        "{screen}"
    );
}

#[test]
fn engine_runs_bar_counts_scored_records() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("slow.jsonl");
    std::fs::write(&input, records(20, 0.05, &[])).unwrap();
    let typescript = dir.path().join("typescript");
    let command = format!(
        "{ENGINE} run {} --input {} --output {} --batch-size 2 --workers 1",
        slow_model().display(),
        input.display(),
        dir.path().join("out.jsonl").display()
    );
    let out = Command::new("script")
        .args(["-qec", &command])
        .arg(&typescript)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = text(&std::fs::read(&typescript).unwrap());
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(screen.contains("records scored"), "{screen}");
    assert!(!screen.contains("records read"), "{screen}");
}
