//! Watching the engine: `/metrics` parsed by Prometheus' own Python parser
//! (`prometheus_client.parser`, scripts/requirements-test.txt) and its counters moving
//! under a load and a job; `/api/live`'s events; every metric documented in
//! docs/observability.md.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Engine;
use engine_client::Client;
use serde_json::{json, Value};

const TOKEN: &str = "observe-token-0123456789abcdef";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn client(e: &Engine) -> Client {
    e.client_with_token(TOKEN)
}

/// One sample of the exposition: its labels and value.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// The exposition as Prometheus' Python parser reads it, by sample name. The parser fails
/// the test on text it cannot read.
fn parse(text: &str) -> Samples {
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.setdefault(s.name, []).append([s.labels, s.value])
json.dump(out, sys.stdout)
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client cannot parse the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn scrape(e: &Engine) -> (String, Samples) {
    let a = client(e).get("/metrics").unwrap();
    assert_eq!(a.status, 200);
    let text = String::from_utf8(a.body).unwrap();
    let parsed = parse(&text);
    (text, parsed)
}

/// The value of sample `name` whose labels include `labels` (0 when there is none).
fn value(s: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.get(name)
        .into_iter()
        .flatten()
        .filter(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

fn deploy(e: &Engine, source: &str) {
    let doc = json!({"name": "observed", "model": {"storedModel": {"modelAssets": [{
        "name": "model.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
        "primaryModelSource": true, "sourceCode": source}]}}});
    let a = client(e)
        .put(
            "/api/deployment",
            "application/json",
            doc.to_string().as_bytes(),
        )
        .unwrap();
    assert!(a.status < 300, "{}", String::from_utf8_lossy(&a.body));
}

const MODEL: &str = "# modelop.score\ndef action(x):\n    if x.get('fail'):\n        raise ValueError('refused')\n    yield x\n";

#[test]
fn metrics_parse_and_move_under_a_load_and_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_TOKEN", TOKEN)]);
    let anonymous = Client::new(&e.url);
    assert_eq!(anonymous.get("/metrics").unwrap().status, 401);
    deploy(&e, MODEL);
    let (_, before) = scrape(&e);

    let c = client(&e);
    for i in 0..40 {
        let a = c
            .post(
                "/api/roundtrip/0/1",
                "application/json",
                json!({"i": i}).to_string().as_bytes(),
            )
            .unwrap();
        assert_eq!(a.status, 200);
    }
    let failed = c
        .post(
            "/api/roundtrip/0/1",
            "application/json",
            br#"{"fail": true}"#,
        )
        .unwrap();
    assert_eq!(
        failed.status,
        422,
        "{}",
        String::from_utf8_lossy(&failed.body)
    );
    let rejected = c
        .post("/api/roundtrip/0/1", "application/json", b"{not json")
        .unwrap();
    assert_eq!(
        rejected.status,
        400,
        "{}",
        String::from_utf8_lossy(&rejected.body)
    );

    let records: String = (0..100).map(|i| format!("{{\"i\": {i}}}\n")).collect();
    let job = json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": {"storedModel": {"modelAssets": [{
            "name": "model.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
            "primaryModelSource": true, "sourceCode": MODEL}]}},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": records}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
    });
    let a = c
        .post("/api/jobs", "application/json", job.to_string().as_bytes())
        .unwrap();
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let id = serde_json::from_slice::<Value>(&a.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    loop {
        let v: Value =
            serde_json::from_slice(&c.get(&format!("/api/jobs/{id}")).unwrap().body).unwrap();
        if v["jobStatus"] == "COMPLETE" {
            break;
        }
        assert!(
            matches!(v["jobStatus"].as_str(), Some("WAITING" | "RUNNING")),
            "{v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (text, after) = scrape(&e);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };

    // The deployed model's REST traffic, per slot.
    let rest_in = [("source", "rest"), ("slot", "0")];
    assert_eq!(moved("engine_records_in_total", &rest_in), 41.0, "{text}");
    assert_eq!(
        moved(
            "engine_records_out_total",
            &[("source", "rest"), ("slot", "1")]
        ),
        40.0
    );
    assert_eq!(
        moved(
            "engine_records_rejected_total",
            &[("source", "rest"), ("slot", "0"), ("reason", "encoding")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(moved("engine_model_records_scored_total", &[]), 40.0);
    assert_eq!(moved("engine_model_records_failed_total", &[]), 1.0);
    // Requests by route pattern and status; batches of the deployment.
    let route = [
        ("route", "/api/roundtrip/{input}/{output}"),
        ("method", "POST"),
    ];
    assert_eq!(
        moved(
            "engine_http_request_duration_seconds_count",
            &[route[0], route[1], ("status", "200")]
        ),
        40.0
    );
    assert_eq!(
        moved(
            "engine_http_request_duration_seconds_count",
            &[route[0], route[1], ("status", "422")]
        ),
        1.0
    );
    assert!(
        moved(
            "engine_model_batch_records_count",
            &[("source", "deployment")]
        ) >= 1.0
    );
    assert_eq!(
        moved(
            "engine_model_batch_records_sum",
            &[("source", "deployment")]
        ),
        41.0
    );
    // The job: its records, its batches, its duration, the counts by status.
    assert_eq!(moved("engine_job_records_read_total", &[]), 100.0);
    assert_eq!(moved("engine_job_records_scored_total", &[]), 100.0);
    assert_eq!(
        moved("engine_model_batch_records_sum", &[("source", "job")]),
        100.0
    );
    assert_eq!(value(&after, "engine_jobs", &[("status", "complete")]), 1.0);
    assert_eq!(
        value(
            &after,
            "engine_job_duration_seconds_count",
            &[("job_type", "model_batch_job"), ("status", "complete")]
        ),
        1.0,
        "{text}"
    );
    // The processes: the engine's and its deployed model's worker.
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&after, "process_cpu_seconds_total", &[]) > 0.0);
    assert!(
        value(
            &after,
            "engine_worker_resident_memory_bytes",
            &[("command", "python worker")]
        ) > 1e6,
        "{text}"
    );
    assert_eq!(
        value(&after, "engine_deployment_ready", &[("model", "observed")]),
        1.0
    );

    // Every family the engine exposes is described in docs/observability.md.
    let doc = std::fs::read_to_string(repo().join("docs/observability.md")).unwrap();
    let undocumented: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !doc.contains(&format!("`{name}")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "metrics not described in docs/observability.md: {undocumented:?}"
    );

    // The Grafana dashboard charts metrics the engine has: those it exposed here, or (a
    // family with no sample yet, as a stream's) that the documentation describes.
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let documented = |word: &str| {
        let base = word
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        doc.contains(&format!("| `{base}` |"))
    };
    let grafana = std::fs::read_to_string(repo().join("deploy/grafana/engine.json")).unwrap();
    let grafana: Value = serde_json::from_str(&grafana).unwrap();
    let mut charted = 0;
    for panel in grafana["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("engine_") || word.starts_with("process_") {
                    charted += 1;
                    assert!(
                        families.iter().any(|f| word.starts_with(f)) || documented(word),
                        "deploy/grafana/engine.json charts {word}, which the engine does not expose"
                    );
                }
            }
        }
    }
    assert!(charted > 20, "{charted}");
}

/// The SSE events of `/api/live`: `history` first, then `live` a second apart, with the
/// deployed model, the processes and the jobs.
#[test]
fn the_live_stream_sends_history_then_live_events() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_TOKEN", TOKEN)]);
    deploy(&e, MODEL);
    let addr = e.url.trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /api/live HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(s).lines();
    let mut events: Vec<(String, Value)> = Vec::new();
    let mut name = String::new();
    let mut content_type = String::new();
    while events.len() < 3 {
        let line = lines.next().expect("the stream goes on").unwrap();
        if let Some(t) = line.strip_prefix("content-type: ") {
            content_type = t.to_owned();
        } else if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_owned();
        } else if let Some(d) = line.strip_prefix("data: ") {
            events.push((name.clone(), serde_json::from_str(d).unwrap()));
        }
    }
    assert_eq!(content_type, "text/event-stream");
    assert_eq!(events[0].0, "history");
    assert!(events[0].1["samples"].is_array(), "{:?}", events[0]);
    let (kind, live) = &events[2];
    assert_eq!(kind, "live");
    assert_eq!(live["engine"]["state"], "RUNNING", "{live}");
    assert_eq!(live["deployment"]["name"], "observed", "{live}");
    assert!(live["resources"]["engine"]["residentBytes"].as_u64() > Some(0));
    assert!(
        live["resources"]["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["command"] == "python worker"),
        "{live}"
    );
    assert!(live["jobs"]["counts"]["complete"].is_i64(), "{live}");
    assert!(live["sample"]["recordsPerSecond"].is_f64(), "{live}");
}

/// The pages are compiled in and open: the dashboard and Swagger UI, whose initializer
/// points at the API document by a relative URL (the engine may sit under a prefix:
/// tests/embed.rs).
#[test]
fn the_pages_are_served_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_TOKEN", TOKEN)]);
    let c = Client::new(&e.url);
    let index = c.get("/").unwrap();
    assert_eq!(index.status, 200);
    let html = String::from_utf8(index.body).unwrap();
    assert!(
        html.contains("ui/app.js") && !html.contains("\"/ui/"),
        "{html}"
    );
    assert_eq!(c.get("/ui/app.js").unwrap().status, 200);
    assert_eq!(c.get("/ui/nothing.js").unwrap().status, 404);
    let init = c.get("/docs/swagger-initializer.js").unwrap();
    assert_eq!(init.status, 200);
    assert!(String::from_utf8_lossy(&init.body).contains("\"../openapi.json\""));
    let api: Value = serde_json::from_slice(&c.get("/openapi.json").unwrap().body).unwrap();
    assert!(api["paths"]["/metrics"].is_object());
    assert!(api["paths"]["/api/live"].is_object());
}
