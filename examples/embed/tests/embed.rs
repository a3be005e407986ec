//! The example host run for real: the `embed` binary started on the credit-score model,
//! records scored over its HTTP routes by the real Python model (its workers are the binary
//! itself), files streamed through the model into the example's own sink, and a clean stop
//! on SIGINT.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine_client::Client;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The running host; killed if a check fails before it is stopped.
struct Host {
    child: Child,
    base: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path, inputs: &Path) -> Host {
    let mut child = Command::new(env!("CARGO_BIN_EXE_embed"))
        .arg(repo_root().join("examples/credit-score/model"))
        .args(["--port", "0", "--data"])
        .arg(data)
        .arg("--inputs")
        .arg(inputs)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the embed binary starts");
    // Its one line on standard output says where it listens, once the model is deployed.
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("reading the host's standard output");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the host did not start (its log is above): {line:?}"))
        .to_owned();
    Host { child, base }
}

/// JSON lines.
fn lines(body: &[u8]) -> Vec<Value> {
    std::str::from_utf8(body)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn the_example_host_scores_records_and_streams_files_into_its_own_sink() {
    let data = tempfile::tempdir().unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let applications =
        std::fs::read_to_string(repo_root().join("examples/credit-score/applications.jsonl"))
            .unwrap();
    std::fs::write(inputs.path().join("applications.jsonl"), &applications).unwrap();
    // The fourth record is not JSON: the job's result is FAILURE.
    let mut broken: Vec<&str> = applications.lines().take(6).collect();
    broken.insert(3, "{not json");
    std::fs::write(inputs.path().join("broken.jsonl"), broken.join("\n")).unwrap();
    let ids: Vec<Value> = lines(applications.as_bytes())
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(ids.len(), 20);

    let mut host = start(data.path(), inputs.path());
    let c = Client::new(&host.base);

    // Records scored through the library: one answer per line, in order; a record the
    // slot's schema refuses answers an error in its place.
    let mut body = applications.clone();
    body.push_str("{\"id\": 99}\n");
    let a = c
        .post("/score", "application/x-ndjson", body.as_bytes())
        .unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let scored = lines(&a.body);
    assert_eq!(scored.len(), 21, "{scored:?}");
    for (answer, id) in scored.iter().zip(&ids) {
        assert_eq!(&answer["id"], id, "{answer}");
        let decision = answer["decision"].as_str().unwrap_or_default();
        assert!(["approve", "decline"].contains(&decision), "{answer}");
    }
    assert!(
        scored[20]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("schema"),
        "{}",
        scored[20]
    );

    // More records than the host keeps in the deployment's queue at once: each answered.
    let many = applications.repeat(15);
    let a = c
        .post("/score", "application/x-ndjson", many.as_bytes())
        .unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let answers = lines(&a.body);
    assert_eq!(answers.len(), 300);
    for (answer, id) in answers.iter().zip(ids.iter().cycle()) {
        assert_eq!(&answer["id"], id, "{answer}");
    }

    // A file streamed through the model: every record the example's sink was given is in
    // the response, in the input's order, scored as the deployment scores it.
    let a = c
        .post("/stream/applications.jsonl", "text/plain", b"")
        .unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let streamed = lines(&a.body);
    assert_eq!(streamed.len(), 20, "{streamed:?}");
    assert_eq!(&streamed[..], &scored[..20]);

    // A job that fails (a record that is not JSON) does not end its response cleanly.
    if let Ok(a) = c.post("/stream/broken.jsonl", "text/plain", b"") {
        panic!(
            "a failed job's response ended cleanly: {} {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
    // A file outside the inputs folder is not streamed.
    let a = c.post("/stream/..", "text/plain", b"").unwrap();
    assert_eq!(a.status, 400);
    let a = c.post("/stream/absent.jsonl", "text/plain", b"").unwrap();
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));

    // The engine's control API, mounted under /engine, shows the deployment.
    let a = c.get("/engine/api/deployment").unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let deployment: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(deployment["source"], "model.py", "{deployment}");

    // SIGINT stops the host cleanly: the engine shut down, the workers reaped.
    let pid = i32::try_from(host.child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = host.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the host did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
