//! `engine serve`'s REST scoring chain, the same as a batch job's: codecs with their slot's
//! schema, input and output screening, and every record counted, yields to other slots too.

mod common;

use common::Engine;
use serde_json::{json, Value};

const MODEL: &str = include_str!("../../../tests/models/rest-chain/model.py");
const IN_SCHEMA: &str = include_str!("../../../tests/models/rest-chain/in.avsc");
const OUT_SCHEMA: &str = include_str!("../../../tests/models/rest-chain/out.avsc");

fn deployment(encodings: Value) -> Value {
    json!({
        "name": "rest-chain",
        "encodings": encodings,
        "deployableModel": {"storedModel": {"modelAssets": [
            {"name": "model.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
             "primaryModelSource": true, "sourceCode": MODEL},
            {"name": "in.avsc", "assetType": "FILE", "fileContentString": IN_SCHEMA},
            {"name": "out.avsc", "assetType": "FILE", "fileContentString": OUT_SCHEMA},
        ]}},
    })
}

/// An Avro int: zigzag, then base-128 little-endian.
fn avro_int(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A record `{id: int, <double field>: double}` in Avro binary.
fn avro_record(id: i64, x: f64) -> Vec<u8> {
    let mut out = Vec::new();
    avro_int(id, &mut out);
    out.extend_from_slice(&x.to_le_bytes());
    out
}

#[test]
fn an_avro_slot_is_decoded_and_answered_in_avro_with_the_slot_schema() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let (s, d) = e.send(
        "PUT",
        "/api/deployment",
        &deployment(json!({"0": "avro-binary", "1": "avro-binary"})),
    );
    assert_eq!(s, 201, "{d}");
    assert_eq!(
        d["encodings"],
        json!({"0": "avro-binary", "1": "avro-binary"})
    );
    let a = e
        .client()
        .post(
            "/api/roundtrip/0/1",
            "application/octet-stream",
            &avro_record(7, 1.5),
        )
        .unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.body, avro_record(7, 3.0));
    // Bytes that are no record of the slot's schema are rejected by encoding, and counted.
    let a = e
        .client()
        .post("/api/roundtrip/0/1", "application/octet-stream", &[0x02])
        .unwrap();
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    let (_, d) = e.get("/api/deployment");
    assert_eq!(d["inputCounts"]["0"]["records"], 1, "{d}");
    assert_eq!(d["inputCounts"]["0"]["rejectedByEncoding"], 1, "{d}");
    assert_eq!(d["outputCounts"]["1"]["records"], 1, "{d}");
}

#[test]
fn an_avro_slot_without_a_schema_refuses_the_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    // Slot 5 has no schema: its Avro bodies could be neither read nor written.
    let (s, d) = e.send(
        "PUT",
        "/api/deployment",
        &deployment(json!({"0": "avro-binary", "5": "avro-binary"})),
    );
    assert_eq!(s, 400, "{d}");
    let why = d["error"].as_str().unwrap_or_default();
    assert!(why.contains("encodings.5"), "{d}");
    assert!(why.contains("schema"), "{d}");
    let (s, _) = e.get("/api/deployment");
    assert_eq!(s, 404);
}

#[test]
fn yields_to_other_slots_and_rejected_outputs_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let (s, d) = e.send("PUT", "/api/deployment", &deployment(json!({})));
    assert_eq!(s, 201, "{d}");
    // Two yields to slot 3 besides the answer on slot 1: answered, the others counted.
    let (s, body, _) = e.score("/api/roundtrip/0/1", r#"{"id": 100, "x": 1}"#);
    assert_eq!((s, body.as_str()), (200, r#"{"id":100,"score":2.0}"#));
    let (s, body, _) = e.score("/api/roundtrip/0/1", r#"{"id": 101, "x": 1}"#);
    assert_eq!(s, 200, "{body}");
    // An answer the output schema refuses.
    let (s, body, _) = e.score("/api/roundtrip/0/1", r#"{"id": -1, "x": 1}"#);
    assert_eq!(
        (s, body.as_str()),
        (
            500,
            "An error has occurred: output record rejected by schema"
        )
    );
    // A request the input schema refuses.
    let (s, _, _) = e.score("/api/roundtrip/0/1", r#"{"id": 1}"#);
    assert_eq!(s, 400);
    let (_, d) = e.get("/api/deployment");
    assert_eq!(d["yieldsNotAnswered"], json!({"3": 4}), "{d}");
    assert_eq!(d["outputCounts"]["1"]["records"], 2, "{d}");
    assert_eq!(d["outputCounts"]["1"]["rejectedBySchema"], 1, "{d}");
    assert_eq!(d["inputCounts"]["0"]["records"], 3, "{d}");
    assert_eq!(d["inputCounts"]["0"]["rejectedBySchema"], 1, "{d}");
    let (_, engine) = e.get("/api/engine");
    assert_eq!(
        engine["deployedModel"]["yieldsNotAnswered"],
        json!({"3": 4}),
        "{engine}"
    );
    let log = e.deployment_log_text();
    assert!(
        log.contains(
            "yielded 2 record(s) to slot 3, which the request (answered on slot 1) does not read"
        ),
        "{log}"
    );
    assert!(log.contains("Output record rejected by schema"), "{log}");
}

/// Every folder two levels under `root` (`jobs/<id>/content/<upload>` has three: given
/// `jobs`, the content folders are found by name).
fn upload_folders(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let in_content = dir.file_name().is_some_and(|n| n == "content");
            if in_content || (depth == 0 && root.ends_with("deployments")) {
                found.push(path);
            } else if depth < 3 {
                stack.push((path, depth + 1));
            }
        }
    }
    found
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !done() {
        assert!(std::time::Instant::now() < until, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn an_upload_cut_off_mid_body_leaves_no_folder_behind() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let host = e.url.strip_prefix("http://").unwrap().to_owned();
    for (method, path, root) in [
        ("POST", "/api/jobs/upload", dir.path().join("jobs")),
        (
            "PUT",
            "/api/deployment/upload",
            dir.path().join("uploads").join("deployments"),
        ),
    ] {
        let mut client = std::net::TcpStream::connect(&host).unwrap();
        write!(
            client,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"asset\"; filename=\"data.bin\"\r\n\r\n{}",
            "x".repeat(1000)
        )
        .unwrap();
        client.flush().unwrap();
        wait_for(&format!("{path}: the upload's folder appears"), || {
            !upload_folders(&root).is_empty()
        });
        // The client goes away with most of its body unsent.
        drop(client);
        wait_for(
            &format!("{path}: the half-written folder is removed"),
            || upload_folders(&root).is_empty(),
        );
    }
    // The engine goes on: a new upload is taken.
    let (s, _) = e.get("/api/jobs");
    assert_eq!(s, 200);
}

#[test]
fn a_job_id_already_taken_is_refused_once_with_nothing_left_of_the_refused_job() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let doc = json!({
        "id": "same-id",
        "jobType": "MODEL_BATCH_JOB",
        "model": {"storedModel": {"modelAssets": [
            {"name": "echo.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
             "primaryModelSource": true,
             "sourceCode": "# modelop.score\ndef action(x):\n    yield x\n"},
        ]}},
        "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": "1\n2\n"}],
        "outputData": [{"assetType": "FILE", "name": "out.jsonl"}],
    });
    let (s, job) = e.send("POST", "/api/jobs", &doc);
    assert_eq!(s, 201, "{job}");
    assert_eq!(job["id"], "same-id");
    e.wait_job("same-id", &["COMPLETE", "ERROR"]);
    let content = dir.path().join("jobs").join("same-id").join("content");
    let before = std::fs::read_dir(&content).map_or(0, |d| d.count());
    let (s, v) = e.send("POST", "/api/jobs", &doc);
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("a job with id same-id already exists"),
        "{v}"
    );
    // The refused job's embedded input went with it; the first job's is kept.
    assert_eq!(std::fs::read_dir(&content).map_or(0, |d| d.count()), before);
    let (_, list) = e.get("/api/jobs");
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn score_batch_wait_ms_gathers_concurrent_requests_into_one_batch_but_never_holds_a_lone_client() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[("ENGINE_SCORE_BATCH_WAIT_MS", "3000")]);
    let source = include_str!("../../../tests/models/batch-size-reporter/model.py");
    let (s, d) = e.send(
        "PUT",
        "/api/deployment",
        &json!({"name": "batches", "deployableModel": {"storedModel": {"modelAssets": [
            {"name": "model.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
             "primaryModelSource": true, "sourceCode": source},
        ]}}}),
    );
    assert_eq!(s, 201, "{d}");
    // One client alone never waits: a request sent while no other is outstanding (and none
    // was lately) goes at once, in a batch of its own, well within the 3 s wait.
    for i in 0..3 {
        let sent = std::time::Instant::now();
        let (s, body, _) = e.score("/api/roundtrip/0/1", &format!("{{\"x\": {i}}}"));
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["batch"], 1, "{body}");
        assert!(
            sent.elapsed() < std::time::Duration::from_millis(1500),
            "a lone client's request waited {:?} for a batch",
            sent.elapsed()
        );
    }
    // Clients at once: their requests are outstanding together, so concurrency is seen and
    // batches wait for more (for the next second at least).
    std::thread::scope(|scope| {
        for i in 0..8 {
            let e = &e;
            scope.spawn(move || e.score("/api/roundtrip/0/1", &format!("{{\"x\": {i}}}")));
        }
    });
    // Three requests 200 ms apart: the first waits for the others (up to 3 s), so all three
    // go to the model as one batch. Without the wait the first would go alone.
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let e = &e;
                scope.spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(200 * i));
                    let (s, body, _) = e.score("/api/roundtrip/0/1", &format!("{{\"x\": {i}}}"));
                    (s, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (s, body)) in answers.iter().enumerate() {
        assert_eq!(*s, 200, "{body}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["x"], i as u64, "{body}");
        assert_eq!(v["batch"], 3, "{body}");
    }
}

#[test]
fn every_route_is_served_and_in_the_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let (s, api) = e.get("/openapi.json");
    assert_eq!(s, 200);
    let routes = [
        ("get", "/1/health"),
        ("get", "/ready"),
        ("get", "/2/engine/state"),
        ("get", "/api/engine"),
        ("get", "/api/engine/tags"),
        ("put", "/api/engine/tags"),
        ("get", "/api/jobs"),
        ("post", "/api/jobs"),
        ("post", "/api/jobs/upload"),
        ("get", "/api/jobs/{id}"),
        ("delete", "/api/jobs/{id}"),
        ("get", "/api/jobs/{id}/log"),
        ("get", "/api/jobs/{id}/result"),
        ("get", "/api/jobs/{id}/products"),
        ("get", "/api/jobs/{id}/products/{name}"),
        ("post", "/api/jobs/{id}/cancel"),
        ("post", "/api/jobs/{id}/rerun"),
        ("get", "/api/deployment"),
        ("put", "/api/deployment"),
        ("delete", "/api/deployment"),
        ("put", "/api/deployment/upload"),
        ("get", "/api/deployment/log"),
        ("get", "/2/active/model"),
        ("delete", "/2/active/model"),
        ("post", "/2/active/schema/verify"),
        ("post", "/2/active/schema/verify/{id}"),
        ("post", "/api/roundtrip/{input}/{output}"),
        ("post", "/2/active/model/roundtrip/{input}/{output}"),
        ("get", "/2/active/stream"),
        ("put", "/2/active/stream/{slot}"),
        ("delete", "/2/active/stream/{slot}"),
        ("post", "/1/job/input/{slot}"),
        ("get", "/1/job/output/{slot}"),
        ("get", "/metrics"),
        ("get", "/api/live"),
        ("get", "/v2"),
        ("get", "/v2/health/live"),
        ("get", "/v2/health/ready"),
        ("get", "/v2/models/{name}"),
        ("get", "/v2/models/{name}/versions/{version}"),
        ("get", "/v2/models/{name}/ready"),
        ("get", "/v2/models/{name}/versions/{version}/ready"),
        ("post", "/v2/models/{name}/infer"),
        ("post", "/v2/models/{name}/versions/{version}/infer"),
    ];
    for (method, path) in routes {
        assert!(
            api["paths"][path][method].is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
    }
    // Every operation has an id of its own (generated clients name their methods by it).
    let mut ids: Vec<&str> = api["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    ids.sort_unstable();
    let all = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), all, "operation ids repeat: {ids:?}");
    let documented: usize = api["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(documented, routes.len(), "{}", api["paths"]);
    let view = &api["components"]["schemas"]["DeploymentView"]["properties"];
    for field in ["inputCounts", "outputCounts", "yieldsNotAnswered"] {
        assert!(view[field].is_object(), "{field}: {view}");
    }
    // Served where documented: a job route (JSON), an engine route, a schema route.
    assert_eq!(e.get("/api/jobs/none").0, 404);
    assert_eq!(e.get("/2/engine/state").0, 200);
    let (s, v) = e.send("POST", "/2/active/schema/verify", &json!("int"));
    assert_eq!(s, 200, "{v}");
}

#[test]
fn a_csv_slot_types_its_cells_by_the_slot_schema() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let mut doc = deployment(json!({"0": "csv"}));
    // Not checked, so nothing conforms the record after the codec: its cells are typed by
    // the codec alone.
    doc["enableInputSchemaChecking"] = json!(false);
    let (s, d) = e.send("PUT", "/api/deployment", &doc);
    assert_eq!(s, 201, "{d}");
    // x is a double by the schema, though "2" alone would read as an int.
    let (s, body, _) = e.score("/api/roundtrip/0/1", "id,x\n55,2\n");
    assert_eq!((s, body.as_str()), (200, r#"{"id":55,"score":1.0}"#));
    let (s, body, _) = e.score("/api/roundtrip/0/1", "id,x\n7,1.5\n");
    assert_eq!((s, body.as_str()), (200, r#"{"id":7,"score":3.0}"#));
}

/// A record-set model takes a CSV body of several rows as a set of records, scored in one
/// batch and answered a line each; a body with no row is refused, as before.
#[test]
fn a_csv_body_of_several_rows_is_one_set_for_a_record_set_model() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let source = include_str!("../../../tests/models/batch-size-reporter/model.py");
    let (s, d) = e.send(
        "PUT",
        "/api/deployment",
        &json!({"name": "batches", "encodings": {"0": "csv", "1": "json"},
                "deployableModel": {"storedModel": {"modelAssets": [
            {"name": "model.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
             "primaryModelSource": true, "sourceCode": source},
        ]}}}),
    );
    assert_eq!(s, 201, "{d}");
    let (s, body, _) = e.score("/api/roundtrip/0/1", "x\n1\n2\n3\n");
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!([{"x": 1, "batch": 3}, {"x": 2, "batch": 3}, {"x": 3, "batch": 3}])
    );
    // One row: one record, answered as itself.
    let (s, body, _) = e.score("/api/roundtrip/0/1", "x\n7\n");
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"x": 7, "batch": 1})
    );
    // No row at all: refused, not an empty answer.
    let (s, body, _) = e.score("/api/roundtrip/0/1", "x\n");
    assert_eq!(s, 400, "{body}");
}
