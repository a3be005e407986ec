//! Faults of `engine serve` through the real binary: deployments that fail, workers whose
//! engine is killed, hung and growing models, and shutdown with a model that does not
//! answer.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Engine;
use serde_json::{json, Value};

const ECHO: &str = include_str!("../../../tests/models/faults/echo.py");
const INIT_FAILS: &str = include_str!("../../../tests/models/faults/init_fails.py");

fn deployment(name: &str, source: &str) -> Value {
    json!({
        "name": name,
        "deployableModel": {"storedModel": {"modelAssets": [{
            "name": format!("{name}.py"), "assetType": "SOURCE_CODE", "sourceCode": source,
        }]}},
    })
}

#[test]
fn a_failed_redeploy_keeps_the_old_model_answering() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let (s, d) = e.send("PUT", "/api/deployment", &deployment("echo", ECHO));
    assert_eq!(s, 201, "{d}");
    assert_eq!(e.score("/api/roundtrip/0/1", "{\"a\": 1}").0, 200);

    let (s, answer) = e.send("PUT", "/api/deployment", &deployment("broken", INIT_FAILS));
    assert_eq!(s, 400, "{answer}");
    let error = answer["error"].as_str().unwrap_or("");
    assert!(error.contains("cannot load weights"), "{answer}");
    let traceback = answer["traceback"].as_str().unwrap_or("");
    assert!(
        traceback.contains("load_weights") && traceback.contains("RuntimeError"),
        "{answer}"
    );

    // The old model still answers, and says so.
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"a\": 2}");
    assert_eq!((s, body.as_str()), (200, "{\"a\":2}"));
    let (_, shown) = e.get("/api/deployment");
    assert_eq!(shown["name"], "echo");
    let (_, state) = e.get("/2/engine/state");
    assert_eq!(state["state"], "RUNNING");
    let (_, details) = e.get("/api/engine");
    assert_eq!(details["deploymentFailure"]["name"], "broken", "{details}");

    // The failed deployment's log, traceback included, is on the deployment log route.
    let log = e.deployment_log_text();
    assert!(log.contains("could not be deployed"), "{log}");
    assert!(log.contains("load_weights"), "{log}");
    assert!(log.contains("goes on answering"), "{log}");
}

#[test]
fn a_first_deploy_whose_init_fails_leaves_state_error_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let (s, answer) = e.send("PUT", "/api/deployment", &deployment("broken", INIT_FAILS));
    assert_eq!(s, 400, "{answer}");
    let (_, state) = e.get("/2/engine/state");
    assert_eq!(state["state"], "ERROR");
    let (_, details) = e.get("/api/engine");
    assert_eq!(details["state"], "ERROR");
    let reason = details["deploymentFailure"]["reason"]
        .as_str()
        .unwrap_or("");
    assert!(reason.contains("cannot load weights"), "{details}");
    assert!(e.deployment_log_text().contains("RuntimeError"));

    // A working model clears it.
    let (s, _) = e.send("PUT", "/api/deployment", &deployment("echo", ECHO));
    assert_eq!(s, 201);
    let (_, state) = e.get("/2/engine/state");
    assert_eq!(state["state"], "RUNNING");
    let (_, details) = e.get("/api/engine");
    assert!(details["deploymentFailure"].is_null(), "{details}");
}

/// Whether a process is gone (or a zombie nobody reaps: it runs no more).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

fn wait_gone(pids: &[u32], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if pids.iter().all(|p| gone(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The pids the spinning model wrote to `file`: its worker's and its child's.
fn spinning_pids(file: &Path) -> (u32, u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            let pids: Vec<u32> = text
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            if pids.len() == 2 {
                return (pids[0], pids[1]);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the model never started spinning"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_busy_worker_and_its_child_die_with_a_killed_engine() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Engine::start(dir.path(), &[], &[]);
    let (s, d) = e.send("PUT", "/api/deployment", &deployment("echo", ECHO));
    assert_eq!(s, 201, "{d}");
    let file = dir.path().join("spinning");
    let url = format!("{}/api/roundtrip/0/1?timeout=600000", e.url);
    let body = json!({"spin": file}).to_string();
    std::thread::spawn(move || common::ureq_free::agent().post(&url, &body));
    let (worker, child) = spinning_pids(&file);
    assert!(!gone(worker) && !gone(child));
    let _ = e.signal("-KILL");
    assert!(
        wait_gone(&[worker, child], Duration::from_secs(5)),
        "worker {worker} or its child {child} outlived the engine"
    );
}

#[test]
fn undeploy_kills_what_the_model_started() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let (s, d) = e.send("PUT", "/api/deployment", &deployment("echo", ECHO));
    assert_eq!(s, 201, "{d}");
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"fork\": true}");
    assert_eq!(s, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let child = answer["child"].as_u64().unwrap() as u32;
    assert!(!gone(child));
    let a = e
        .client()
        .delete("/api/deployment")
        .expect("engine answers");
    assert_eq!(a.status, 204);
    assert!(
        wait_gone(&[child], Duration::from_secs(5)),
        "the model's child {child} outlived the undeploy"
    );
}

#[test]
fn a_hung_request_fails_with_the_time_limit_and_the_next_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &["--record-timeout-ms", "1000"], &[]);
    let (s, d) = e.send("PUT", "/api/deployment", &deployment("echo", ECHO));
    assert_eq!(s, 201, "{d}");
    assert_eq!(d["recordTimeoutMs"], 1000, "{d}");
    let (s, body, _) = e.score("/api/roundtrip/0/1?timeout=20000", "{\"hang\": true}");
    assert_eq!(s, 504, "{body}");
    assert!(
        body.contains("time limit") && body.contains("1000 ms"),
        "{body}"
    );
    let (s, body, _) = e.score("/api/roundtrip/0/1", "{\"a\": 1}");
    assert_eq!((s, body.as_str()), (200, "{\"a\":1}"));
    let (_, details) = e.get("/api/engine");
    let m = &details["deployedModel"];
    assert_eq!(m["recordTimeouts"], 1, "{details}");
    assert!(
        m["lastProblem"].as_str().unwrap_or("").contains("timeout"),
        "{details}"
    );
    assert_eq!(details["state"], "RUNNING");
    assert!(e
        .deployment_log_text()
        .contains("per-record timeout of 1000 ms"));
}

#[test]
fn a_deployed_model_over_its_memory_limit_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &["--memory-limit-mib", "300"], &[]);
    let (s, d) = e.send("PUT", "/api/deployment", &deployment("echo", ECHO));
    assert_eq!(s, 201, "{d}");
    let (s, body, _) = e.score("/api/roundtrip/0/1?timeout=60000", "{\"grow\": true}");
    assert_eq!(s, 500, "{body}");
    assert!(body.contains("memory limit"), "{body}");
    let (s, body, _) = e.score("/api/roundtrip/0/1", "[1, 2]");
    assert_eq!((s, body.as_str()), (200, "[1,2]"));
    let (_, shown) = e.get("/api/deployment");
    assert_eq!(shown["memoryLimitKills"], 1, "{shown}");
}

fn job(records: &str, own: Value) -> Value {
    let mut doc = json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": {"storedModel": {"modelMetaData": {"name": "echo"}, "modelAssets": [{
            "name": "echo.py", "assetType": "SOURCE_CODE", "primaryModelSource": true,
            "sourceCode": ECHO,
        }]}},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": records}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
    });
    if let (Some(d), Some(o)) = (doc.as_object_mut(), own.as_object()) {
        d.extend(o.clone());
    }
    doc
}

#[test]
fn a_hung_job_record_fails_and_the_queue_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let (s, hung) = e.send(
        "POST",
        "/api/jobs",
        &job("1\n{\"hang\": true}\n3\n", json!({"recordTimeoutMs": 1000})),
    );
    assert_eq!(s, 201, "{hung}");
    let (s, next) = e.send("POST", "/api/jobs", &job("4\n5\n", json!({})));
    assert_eq!(s, 201, "{next}");
    let done = e.wait_job(hung["id"].as_str().unwrap(), &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobStatus"], "COMPLETE", "{done}");
    assert_eq!(done["jobResult"], "FAILURE");
    assert_eq!(done["recordsOut"], 2, "{done}");
    let messages = done["jobMessages"].to_string();
    assert!(
        messages.contains("per-record timeout of 1000 ms"),
        "{messages}"
    );
    let next = e.wait_job(next["id"].as_str().unwrap(), &["COMPLETE", "ERROR"]);
    assert_eq!(next["jobResult"], "SUCCESS", "{next}");
}

#[test]
fn sigterm_with_a_hung_model_ends_within_the_grace_and_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Engine::start(
        dir.path(),
        &["--shutdown-grace-ms", "3000", "--record-timeout-ms", "0"],
        &[],
    );
    let (s, d) = e.send("PUT", "/api/deployment", &deployment("echo", ECHO));
    assert_eq!(s, 201, "{d}");
    let url = format!("{}/api/roundtrip/0/1?timeout=600000", e.url);
    let in_flight =
        std::thread::spawn(move || common::ureq_free::agent().post(&url, "{\"hang\": true}"));
    // The request reaches the model.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, shown) = e.get("/api/deployment");
        if shown["queued"] == 0 && e.deployment_log_text().contains("RUNNING") {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    let code = e.signal("-TERM");
    let took = asked.elapsed();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_millis(3500), "stopping took {took:?}");
    // It did wait for the hung model until the grace (less its margin) ran out.
    assert!(took > Duration::from_millis(2000), "stopping took {took:?}");
    let (status, retry) = in_flight.join().unwrap();
    assert_eq!(status, 503);
    assert_eq!(retry.as_deref(), Some("1"));
}

#[test]
fn engine_run_names_a_record_still_running_every_interval() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(common::ENGINE)
        .args([
            "run",
            "tests/models/faults/slow.py",
            "--input",
            "tests/data/cli/x6.jsonl",
            "--workers",
            "1",
            "--slow-record-warning",
            "1000",
        ])
        .current_dir(root)
        .env_remove("ENGINE_LOG")
        .output()
        .expect("engine runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("record seqno 2 (record 2 of batch 1) has been running for 1 s"),
        "{err}"
    );
    assert!(err.contains("has been running for 2 s"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || gone(pid.parse().unwrap_or(0)) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{pid}: {cmd}"));
            }
        }
    }
    found
}

#[test]
fn sigterm_during_an_environment_build_stops_it_and_keeps_the_log() {
    // A package index that accepts connections and never answers: the install hangs.
    let index = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/simple", index.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in index.incoming() {
            held.push(c);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut e = Engine::start(
        &data,
        &["--shutdown-grace-ms", "2000"],
        &[("PIP_INDEX_URL", &url), ("UV_INDEX_URL", &url)],
    );
    let mut doc = job("1\n", json!({}));
    doc["model"]["storedModel"]["modelAssets"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "requirements.txt", "assetType": "FILE",
            "fileContentString": "no-such-package-anywhere==1.0\n"}));
    let (s, created) = e.send("POST", "/api/jobs", &doc);
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let environments = data.join("environments");
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_mentioning(&environments.display().to_string()).is_empty() {
        assert!(Instant::now() < deadline, "the install never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    assert_eq!(e.signal("-TERM"), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let left = processes_mentioning(&environments.display().to_string());
    assert!(left.is_empty(), "still running: {left:?}");
    let tmp: Vec<_> = std::fs::read_dir(&environments)
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tmp-"))
        .collect();
    assert!(tmp.is_empty(), "temporary folders left: {tmp:?}");

    // The job's log up to the stop was kept, and the job can be run again.
    let e = Engine::start(&data, &[], &[]);
    let (_, job) = e.get(&format!("/api/jobs/{id}"));
    assert_eq!(job["jobStatus"], "ERROR", "{job}");
    let messages = job["jobMessages"].to_string();
    assert!(messages.contains("building an environment"), "{messages}");
}

#[test]
fn a_busy_r_worker_dies_with_a_killed_engine() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Engine::start(dir.path(), &[], &[]);
    let source = include_str!("../../../tests/models/faults/spin.R");
    let doc = json!({"name": "spin", "deployableModel": {"storedModel": {"modelAssets": [
        {"name": "spin.R", "assetType": "SOURCE_CODE", "sourceCode": source}]}}});
    let (s, d) = e.send("PUT", "/api/deployment", &doc);
    assert_eq!(s, 201, "{d}");
    let file = dir.path().join("spinning");
    let url = format!("{}/api/roundtrip/0/1?timeout=600000", e.url);
    let body = json!({"spin": file}).to_string();
    std::thread::spawn(move || common::ureq_free::agent().post(&url, &body));
    let deadline = Instant::now() + Duration::from_secs(30);
    let worker = loop {
        if let Some(pid) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the R model never started spinning"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = e.signal("-KILL");
    assert!(
        wait_gone(&[worker], Duration::from_secs(5)),
        "the R worker {worker} outlived the engine"
    );
}
