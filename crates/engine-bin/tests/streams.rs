//! Streams attached to a deployed model, end to end: the real binary, a real Python model,
//! file and REST transports, the routes, a restart and the CLI.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Engine, ENGINE};
use serde_json::{json, Value};

const MODEL: &str = r#"import time
# modelop.score
def action(x):
    if x == "boom":
        raise ValueError("boom")
    if isinstance(x, dict) and "sleep" in x:
        time.sleep(x["sleep"])
        x = x["n"]
    if isinstance(x, dict) and "side" in x:
        yield (3, x)
        return
    yield {"n": x}
"#;

fn deploy(e: &Engine) {
    let doc = json!({
        "name": "streams",
        "deployableModel": {"storedModel": {"modelAssets": [{
            "name": "streams.py", "assetType": "SOURCE_CODE", "sourceCode": MODEL,
        }]}},
    });
    let (s, v) = e.send("PUT", "/api/deployment", &doc);
    assert_eq!(s, 201, "{v}");
}

fn attach(e: &Engine, slot: u32, descriptor: &str, query: &str) -> (u16, Value) {
    let a = e
        .client()
        .put(
            &format!("/2/active/stream/{slot}{query}"),
            "application/json",
            descriptor.as_bytes(),
        )
        .expect("engine answers");
    (
        a.status,
        serde_json::from_slice(&a.body).unwrap_or(Value::Null),
    )
}

fn streams(e: &Engine) -> Vec<Value> {
    let (s, v) = e.get("/2/active/stream");
    assert_eq!(s, 200, "{v}");
    v["streams"].as_array().cloned().unwrap_or_default()
}

fn stream(e: &Engine, slot: u32) -> Option<Value> {
    streams(e).into_iter().find(|s| s["slot"] == slot)
}

/// Waits until `done` holds of the stream on `slot`.
fn wait_stream(e: &Engine, slot: u32, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = stream(e, slot).unwrap_or(Value::Null);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "stream {slot} stays {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn file_descriptor(path: &Path, extra: Value) -> String {
    let mut d = json!({"Transport": {"Type": "file", "Path": path.display().to_string()}});
    if let (Some(d), Some(extra)) = (d.as_object_mut(), extra.as_object()) {
        d.extend(extra.clone());
    }
    d.to_string()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn a_file_input_is_scored_into_a_file_output_bad_records_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let e = Engine::start(&data, &[], &[]);
    deploy(&e);
    let input = data.join("in.jsonl");
    let output = data.join("scored/out.jsonl");
    let mut text = String::new();
    for i in 1..=200 {
        match i {
            50 => text.push_str("not json\n"),
            60 => text.push_str("\"boom\"\n"),
            _ => text.push_str(&format!("{i}\n")),
        }
    }
    std::fs::write(&input, text).unwrap();

    let (s, out) = attach(
        &e,
        1,
        &file_descriptor(&output, json!({"LingerTime": 200})),
        "",
    );
    assert_eq!(s, 201, "{out}");
    assert_eq!(out["state"], "running");
    let (s, inp) = attach(
        &e,
        0,
        &file_descriptor(&input, json!({"Batching": {"Watermark": 16}})),
        "",
    );
    assert_eq!(s, 201, "{inp}");
    assert_eq!(inp["descriptor"]["Batching"]["Watermark"], 16);

    let inp = wait_stream(&e, 0, |s| s["state"] == "finished");
    assert_eq!(inp["recordsIn"], 200, "{inp}");
    assert_eq!(inp["recordsOut"], 198, "{inp}");
    assert_eq!(inp["recordsRejected"], 1, "{inp}");
    assert_eq!(inp["recordsFailed"], 1, "{inp}");
    let out = wait_stream(&e, 1, |s| s["state"] == "finished");
    assert_eq!(out["recordsOut"], 198, "{out}");

    let want: Vec<Value> = (1..=200)
        .filter(|i| *i != 50 && *i != 60)
        .map(|i| json!({"n": i}))
        .collect();
    assert_eq!(lines(&output), want);
    let log = e.deployment_log_text();
    assert!(
        log.contains("Record rejected by encoding") && log.contains("record 50, line 50"),
        "{log}"
    );
    assert!(
        log.contains("Record failed: ValueError: boom") && log.contains("record 60, line 60"),
        "{log}"
    );
    // The deployment's slot counts take the stream's records too.
    let (_, d) = e.get("/api/deployment");
    assert_eq!(d["inputCounts"]["0"]["records"], 199, "{d}");
    assert_eq!(d["outputCounts"]["1"]["records"], 198, "{d}");
}

#[test]
fn a_broken_source_fails_its_stream_and_the_engine_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let e = Engine::start(&data, &[], &[]);
    deploy(&e);
    // Two MessagePack values, then a byte no MessagePack value starts with: the stream
    // cannot go on past it.
    let input = data.join("broken.msgpack");
    std::fs::write(&input, [0x01, 0x02, 0xc1, 0x03]).unwrap();
    let (s, v) = attach(&e, 0, &format!("file:{}", input.display()), "");
    assert_eq!(s, 201, "{v}");
    let failed = wait_stream(&e, 0, |s| s["state"] == "failed");
    assert_eq!(failed["recordsOut"], 2, "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "{failed}");
    assert!(
        e.deployment_log_text().contains("failed: "),
        "{}",
        e.deployment_log_text()
    );
    // The model goes on answering.
    let (s, body, _) = e.score("/api/roundtrip/0/1", "5");
    assert_eq!((s, body.as_str()), (200, r#"{"n":5}"#));
}

#[test]
fn dry_run_answers_the_defaults_and_invalid_descriptors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let e = Engine::start(&data, &[], &[]);
    let csv = data.join("in.csv");

    // A dry run attaches nothing, so it needs no model.
    let (s, v) = attach(&e, 0, &format!("file:{}", csv.display()), "?dry-run=true");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Encoding"]["Type"], "csv", "{v}");
    assert_eq!(v["Envelope"], "delimited-csv", "{v}");
    assert_eq!(
        v["Batching"],
        json!({"Watermark": 1000, "NagleTime": 500}),
        "{v}"
    );
    // Without a model, attaching is refused as the other deployment routes refuse.
    let (s, v) = attach(&e, 0, &format!("file:{}", csv.display()), "");
    let (s2, v2) = e.get("/api/deployment");
    assert_eq!((s, s2), (404, 404), "{v} {v2}");
    assert_eq!(v["error"], v2["error"]);
    let (s, _) = e.get("/2/active/stream");
    assert_eq!(s, 404);
    let (_, api) = e.get("/openapi.json");
    for path in [
        "/2/active/stream",
        "/2/active/stream/{slot}",
        "/1/job/input/{slot}",
        "/1/job/output/{slot}",
    ] {
        assert!(
            api["paths"][path].is_object(),
            "{path} is not in the OpenAPI document"
        );
    }

    deploy(&e);
    let (s, v) = attach(&e, 1, "discard:", "?dry-run=true");
    assert_eq!(s, 200, "{v}");
    assert!(streams(&e).is_empty(), "a dry run attached a stream");

    for (slot, body, field) in [
        (0, r#"{"Transport": {"Type": "file"}}"#, "Transport.Path"),
        (
            0,
            r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topik": "x"}}"#,
            "Transport.Topik",
        ),
        (0, "discard:", "Transport.Type"),
        (1, r#"{"Transport": "REST", "Loop": true}"#, "Loop"),
        (0, "file:relative/in.jsonl", "Transport.Path"),
    ] {
        let (s, v) = attach(&e, slot, body, "");
        assert_eq!(s, 400, "{body}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(&format!("'{field}'")), "{body}: {msg}");
    }
    // Files only under allowedPaths (the data dir by default), never the engine's own.
    let (s, v) = attach(&e, 0, "file:/etc/hostname", "?dry-run=true");
    assert_eq!(s, 403, "{v}");
    let db = data.join("engine.db");
    let (s, v) = attach(&e, 1, &format!("file:{}", db.display()), "");
    assert_eq!(s, 403, "{v}");
    assert!(streams(&e).is_empty());
}

#[test]
fn rest_streams_take_and_give_records() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    deploy(&e);
    let c = e.client();
    // No REST stream yet.
    let a = c.post("/1/job/input/0", "application/json", b"1").unwrap();
    assert_eq!(a.status, 404, "{}", common::text(&a.body));

    let (s, v) = attach(&e, 0, "rest:", "");
    assert_eq!(s, 201, "{v}");
    let (s, v) = attach(&e, 1, r#"{"Transport": "REST", "LingerTime": 100}"#, "");
    assert_eq!(s, 201, "{v}");
    assert_eq!(c.get("/1/job/output/1").unwrap().status, 202);
    for x in ["5", "6"] {
        let a = c
            .post("/1/job/input/0", "application/json", x.as_bytes())
            .unwrap();
        assert_eq!(a.status, 204, "{}", common::text(&a.body));
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 2 {
        let a = c.get("/1/job/output/1").unwrap();
        match a.status {
            200 => got.push(common::text(&a.body)),
            202 => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("GET /1/job/output/1: {other}"),
        }
        assert!(Instant::now() < deadline, "only {got:?}");
    }
    assert_eq!(got, [r#"{"n":5}"#, r#"{"n":6}"#]);
    assert_eq!(c.get("/1/job/output/1").unwrap().status, 202);
    assert_eq!(c.get("/1/job/output/3").unwrap().status, 404);
    assert_eq!(
        c.post("/1/job/input/1", "application/json", b"1")
            .unwrap()
            .status,
        400
    );

    // Detached, the input still scores what was posted; the output closes LingerTime
    // later: the end of its stream, once its records are read.
    let a = c.post("/1/job/input/0", "application/json", b"7").unwrap();
    assert_eq!(a.status, 204);
    let a = c.delete("/2/active/stream/0").unwrap();
    assert_eq!(a.status, 204);
    assert_eq!(
        c.post("/1/job/input/0", "application/json", b"8")
            .unwrap()
            .status,
        404
    );
    wait_stream(&e, 1, |s| s["state"] == "finished");
    let a = c.get("/1/job/output/1").unwrap();
    assert_eq!(
        (a.status, common::text(&a.body)),
        (200, r#"{"n":7}"#.to_owned())
    );
    assert_eq!(c.get("/1/job/output/1").unwrap().status, 204);
    assert_eq!(c.delete("/2/active/stream/0").unwrap().status, 404);
}

#[test]
fn a_file_output_shows_its_records_on_disk_while_the_stream_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let e = Engine::start(&data, &[], &[]);
    deploy(&e);
    let output = data.join("live.jsonl");
    // A REST input stays open: the output is not closed, so only its flushes every
    // LingerTime put the records on disk.
    let (s, v) = attach(
        &e,
        1,
        &file_descriptor(&output, json!({"LingerTime": 200})),
        "",
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = attach(&e, 0, "rest:", "");
    assert_eq!(s, 201, "{v}");
    let c = e.client();
    for x in ["1", "2", "3"] {
        let a = c
            .post("/1/job/input/0", "application/json", x.as_bytes())
            .unwrap();
        assert_eq!(a.status, 204, "{}", common::text(&a.body));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(&output).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the file holds {:?} while its stream runs",
            std::fs::read_to_string(&output).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        lines(&output),
        [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
    );
    let out = stream(&e, 1).expect("the output is attached");
    assert_eq!(out["state"], "running", "{out}");
    assert_eq!(
        stream(&e, 0).expect("the input is attached")["state"],
        "running"
    );
}

#[test]
fn a_slow_output_holds_the_input_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let e = Engine::start(&data, &[], &[]);
    deploy(&e);
    let input = data.join("many.jsonl");
    let total = 20_000u64;
    let text: String = (1..=total).map(|i| format!("{i}\n")).collect();
    std::fs::write(&input, text).unwrap();
    // Nobody reads the REST output yet: its queue fills, and the input must stop reading.
    let (s, v) = attach(&e, 1, "rest:", "");
    assert_eq!(s, 201, "{v}");
    let (s, v) = attach(
        &e,
        0,
        &file_descriptor(&input, json!({"Batching": {"Watermark": 100}})),
        "",
    );
    assert_eq!(s, 201, "{v}");
    let mut last = 0;
    let mut same = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while same < 5 {
        std::thread::sleep(Duration::from_millis(200));
        let read = stream(&e, 0).unwrap()["recordsIn"].as_u64().unwrap_or(0);
        same = if read == last && read > 0 {
            same + 1
        } else {
            0
        };
        last = read;
        assert!(Instant::now() < deadline, "the input keeps reading: {read}");
    }
    let held = stream(&e, 0).unwrap();
    assert_eq!(held["state"], "running", "{held}");
    assert!(last < total / 2, "read {last} of {total} with no reader");
    // A reader takes some: the input reads on.
    let c = e.client();
    let mut taken = 0;
    while taken < 2000 {
        let a = c.get("/1/job/output/1").unwrap();
        assert_eq!(a.status, 200);
        taken += 1;
    }
    wait_stream(&e, 0, |s| s["recordsIn"].as_u64().unwrap_or(0) > last);
    // Detached, the output does not wait for readers: what none took is dropped, counted.
    let a = c.delete("/2/active/stream/1").unwrap();
    assert_eq!(a.status, 204);
    let log = e.deployment_log_text();
    assert!(log.contains("record(s) no reader took"), "{log}");
    assert!(!log.contains("not through its records in time"), "{log}");
}

#[test]
fn detach_drains_what_was_read_and_yields_without_a_stream_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let e = Engine::start(&data, &[], &[]);
    deploy(&e);
    let input = data.join("slow.jsonl");
    let output = data.join("slow-out.jsonl");
    let mut text = String::new();
    for i in 1..=400 {
        text.push_str(&format!("{{\"sleep\": 0.01, \"n\": {i}}}\n"));
    }
    std::fs::write(&input, text).unwrap();
    let (s, v) = attach(
        &e,
        1,
        &file_descriptor(&output, json!({"LingerTime": 600000})),
        "",
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = attach(
        &e,
        0,
        &file_descriptor(&input, json!({"Batching": {"Watermark": 10}})),
        "",
    );
    assert_eq!(s, 201, "{v}");
    let seen = wait_stream(&e, 0, |s| s["recordsOut"].as_u64().unwrap_or(0) >= 10);
    let scored_before = seen["recordsOut"].as_u64().unwrap_or(0);
    let a = e.client().delete("/2/active/stream/0").unwrap();
    assert_eq!(a.status, 204);
    assert!(stream(&e, 0).is_none());
    // Everything read before the detach was scored and reached the output's writer.
    let out = stream(&e, 1).expect("the output stays");
    let written = out["recordsIn"].as_u64().unwrap_or(0);
    assert!(written >= scored_before, "{out} after {seen}");
    let a = e.client().delete("/2/active/stream/1").unwrap();
    assert_eq!(a.status, 204);
    let got = lines(&output);
    let want: Vec<Value> = (1..=got.len()).map(|i| json!({"n": i})).collect();
    assert_eq!(got, want);
    assert_eq!(got.len() as u64, written);

    // A yield to a slot no stream reads is counted and logged, and the stream goes on.
    let side = data.join("side.jsonl");
    std::fs::write(&side, "{\"side\": 1}\n7\n").unwrap();
    let (s, v) = attach(&e, 0, &format!("file:{}", side.display()), "");
    assert_eq!(s, 201, "{v}");
    let inp = wait_stream(&e, 0, |s| s["state"] == "finished");
    assert_eq!(inp["recordsOut"], 2, "{inp}");
    let (_, d) = e.get("/api/deployment");
    assert_eq!(d["yieldsNotAnswered"]["3"], 1, "{d}");
    assert_eq!(d["yieldsNotAnswered"]["1"], 1, "{d}");
}

#[test]
fn attached_streams_survive_a_restart_and_go_with_their_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = data.join("in.jsonl");
    let output = data.join("out.jsonl");
    let mut e = Engine::start(&data, &[], &[]);
    deploy(&e);
    std::fs::write(&input, "1\n2\n3\n").unwrap();
    let (s, v) = attach(
        &e,
        1,
        &file_descriptor(&output, json!({"LingerTime": 100})),
        "",
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = attach(&e, 0, &format!("file:{}", input.display()), "");
    assert_eq!(s, 201, "{v}");
    wait_stream(&e, 1, |s| s["state"] == "finished");
    assert_eq!(lines(&output).len(), 3);
    let before: Vec<Value> = streams(&e)
        .iter()
        .map(|s| s["descriptor"].clone())
        .collect();
    assert_eq!(e.signal("-TERM"), Some(0));

    std::fs::remove_file(&output).unwrap();
    let e = Engine::start(&data, &[], &[]);
    let after: Vec<Value> = streams(&e)
        .iter()
        .map(|s| s["descriptor"].clone())
        .collect();
    assert_eq!(after, before);
    // The input is read again from its start.
    wait_stream(&e, 1, |s| s["state"] == "finished");
    assert_eq!(
        lines(&output),
        [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
    );

    // A model deployed in its place detaches them; so does undeploying.
    deploy(&e);
    assert!(
        streams(&e).is_empty(),
        "a new deployment starts without streams"
    );
    let (s, v) = attach(&e, 1, "discard:", "");
    assert_eq!(s, 201, "{v}");
    let a = e.client().delete("/api/deployment").unwrap();
    assert_eq!(a.status, 204);
    assert_eq!(e.get("/2/active/stream").0, 404);
    deploy(&e);
    assert!(streams(&e).is_empty());
}

#[test]
fn the_cli_attaches_lists_and_detaches() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    deploy(&e);
    let cli = |args: &[&str]| {
        let out = Command::new(ENGINE)
            .args(["stream"])
            .args(args)
            .args(["--engine", &e.url])
            .env_remove("ENGINE_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code(),
            common::text(&out.stdout),
            common::text(&out.stderr),
        )
    };
    let (code, out, err) = cli(&["attach", "1", "discard:"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("discard") && out.contains("running"), "{out}");
    let (code, out, _) = cli(&["attach", "0", "rest:", "--dry-run"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("\"NagleTime\": 0"), "{out}");
    let (code, out, _) = cli(&["list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("SLOT") && out.contains("discard"), "{out}");
    assert!(!out.contains("POST /1/job/input/0"), "{out}");
    // Inline records, written to the discard output.
    let (code, out, err) = cli(&["attach", "0", "inline:1,2,3"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let inline = wait_stream(&e, 0, |s| s["state"] == "finished");
    assert_eq!(inline["recordsOut"], 3, "{inline}");
    wait_stream(&e, 1, |s| s["recordsOut"] == 3);
    let (code, out, _) = cli(&["detach", "1"]);
    assert_eq!(code, Some(0));
    assert_eq!(out, "stream on slot 1 detached\n");
    let (code, _, err) = cli(&["detach", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("slot 1"), "{err}");
    let (code, _, err) = cli(&["attach", "0", "{\"Transport\": {\"Type\": \"file\"}}"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("Transport.Path"), "{err}");
}
