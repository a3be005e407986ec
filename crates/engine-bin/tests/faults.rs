//! Faults of `engine serve` through the real binary: deployments that fail, workers whose
//! engine is killed, hung and growing models, and shutdown with a model that does not
//! answer.

mod common;

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

fn log_text(e: &Engine) -> String {
    let (_, log) = e.get("/api/deployment/log");
    log["lines"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|l| l["message"].as_str().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn h3_a_failed_redeploy_keeps_the_old_model_answering() {
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
    let log = log_text(&e);
    assert!(log.contains("could not be deployed"), "{log}");
    assert!(log.contains("load_weights"), "{log}");
    assert!(log.contains("goes on answering"), "{log}");
}

#[test]
fn h3_a_first_deploy_whose_init_fails_leaves_state_error_with_the_reason() {
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
    assert!(log_text(&e).contains("RuntimeError"));

    // A working model clears it.
    let (s, _) = e.send("PUT", "/api/deployment", &deployment("echo", ECHO));
    assert_eq!(s, 201);
    let (_, state) = e.get("/2/engine/state");
    assert_eq!(state["state"], "RUNNING");
    let (_, details) = e.get("/api/engine");
    assert!(details["deploymentFailure"].is_null(), "{details}");
}
