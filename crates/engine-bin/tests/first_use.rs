//! `engine serve` as a new user meets it, through the real binary: the commands of the
//! README and docs/service.md, and the mistakes a first user makes.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Engine, ENGINE};
use serde_json::{json, Value};

const ECHO: &str = "# modelop.score\ndef action(x):\n    yield x\n";

/// `engine ARGS...` against `e`, from `cwd`, with no token in its environment.
fn cli(e: &Engine, cwd: &Path, args: &[&str]) -> Output {
    Command::new(ENGINE)
        .args(args)
        .current_dir(cwd)
        .env("ENGINE_URL", &e.url)
        .env_remove("ENGINE_TOKEN")
        .output()
        .expect("engine runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_job_output_cannot_name_the_engines_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("engine-data");
    let e = Engine::start(&data, &[], &[]);
    std::fs::write(dir.path().join("m.py"), ECHO).unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"a\": 1}\n").unwrap();
    let db = data.join("engine.db");
    let db_len = std::fs::metadata(&db).unwrap().len();

    for own in [
        "engine-data/engine.db",
        "engine-data",
        "engine-data/jobs/x.jsonl",
    ] {
        let o = cli(
            &e,
            dir.path(),
            &["job", "create", "batchjob", "m.py", "in.jsonl", own],
        );
        assert_eq!(o.status.code(), Some(2), "{own}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("answered 403") && err.contains("the engine's own"),
            "{own}: {err}"
        );
    }
    assert_eq!(std::fs::metadata(&db).unwrap().len(), db_len);

    // The same through a job document, for the training folder too.
    let doc = |url: String| {
        json!({
            "jobType": "MODEL_BATCH_JOB",
            "model": {"storedModel": {"modelAssets": [{
                "name": "m.py", "assetType": "SOURCE_CODE", "primaryModelSource": true,
                "sourceCode": ECHO}]}},
            "inputData": [{"assetType": "FILE", "name": "in.jsonl",
                "fileContentString": "{\"a\": 1}\n"}],
            "outputData": [{"assetType": "EXTERNAL_FILE", "name": "out", "fileUrl": url}],
        })
    };
    let (status, v) = e.send(
        "POST",
        "/api/jobs",
        &doc(format!("file://{}", data.join("engine.lock").display())),
    );
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|m| m.starts_with("outputData[0].fileUrl:") && m.contains("engine.lock")),
        "{v}"
    );

    // A file of one's own in the data folder is still a fine output.
    let o = cli(
        &e,
        dir.path(),
        &[
            "job",
            "create",
            "batchjob",
            "m.py",
            "in.jsonl",
            "engine-data/out.jsonl",
            "--wait",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(data.join("out.jsonl")).unwrap(),
        "{\"a\":1}\n"
    );
    let (status, v) = e.send(
        "POST",
        "/api/jobs",
        &doc(format!("file://{}", data.join("out2.jsonl").display())),
    );
    assert_eq!(status, 201, "{v}");
    let done: Value = e.wait_job(v["id"].as_str().unwrap(), &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
}

#[test]
fn the_cli_says_what_to_do_when_it_cannot_talk_to_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let token = "0123456789abcdef0123456789abcdef";
    let e = Engine::start(&dir.path().join("data"), &[], &[("ENGINE_TOKEN", token)]);

    // No token: the 401 says where the CLI takes one from.
    let o = cli(&e, dir.path(), &["status"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("answered 401")
            && err.contains("ENGINE_TOKEN")
            && err.contains("--token-file"),
        "{err}"
    );

    // A job id is one path segment, whatever it holds.
    let with_token = |args: &[&str]| {
        Command::new(ENGINE)
            .args(args)
            .env("ENGINE_URL", &e.url)
            .env("ENGINE_TOKEN", token)
            .output()
            .expect("engine runs")
    };
    let o = with_token(&["job", "status", "../../api/engine"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("answered 404: job ../../api/engine not found"),
        "{}",
        stderr(&o)
    );
    let o = with_token(&["job", "list", "--status", "COMPLETE&limit=1"]);
    assert!(
        stderr(&o).contains("unknown job status 'COMPLETE&limit=1'"),
        "{}",
        stderr(&o)
    );

    // An input that is a folder is a usage error, found before anything is sent.
    std::fs::create_dir(dir.path().join("inputs")).unwrap();
    std::fs::write(dir.path().join("m.py"), ECHO).unwrap();
    let o = Command::new(ENGINE)
        .args(["job", "create", "batchjob", "m.py", "inputs", "-"])
        .current_dir(dir.path())
        .env("ENGINE_URL", &e.url)
        .env("ENGINE_TOKEN", token)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("inputs is a folder; give the files in it"),
        "{}",
        stderr(&o)
    );

    // Undeploy says it did.
    let m = dir.path().join("m.py");
    let o = with_token(&["deploy", m.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = with_token(&["undeploy"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "model undeployed\n");

    // https:// to a plain HTTP engine.
    let plain = e.url.replace("http://", "https://");
    let o = Command::new(ENGINE)
        .args(["status", "--engine", &plain])
        .env("ENGINE_TOKEN", token)
        .output()
        .expect("engine runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("does the engine serve plain http://?"),
        "{}",
        stderr(&o)
    );

    // Nothing listening: the CLI asks whether the engine runs there.
    let url = e.url.clone();
    drop(e);
    let o = Command::new(ENGINE)
        .args(["status"])
        .env("ENGINE_URL", &url)
        .output()
        .expect("engine runs");
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("cannot reach the engine") && err.contains("is `engine serve` running there?"),
        "{err}"
    );
}

#[test]
fn control_api_errors_are_json_for_unknown_routes_methods_and_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(&dir.path().join("data"), &[], &[]);
    let c = e.client();

    let a = c.get("/api/nothing").unwrap();
    assert_eq!(a.status, 404);
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["error"], "route GET /api/nothing not found");

    let a = c.delete("/api/engine").unwrap();
    assert_eq!(a.status, 405);
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["error"], "/api/engine does not answer DELETE");

    for (method, path) in [
        ("POST", "/api/jobs/upload"),
        ("PUT", "/api/deployment/upload"),
    ] {
        let a = match method {
            "PUT" => c.put(path, "text/plain", b"not a form"),
            _ => c.post(path, "text/plain", b"not a form"),
        }
        .unwrap();
        assert_eq!(a.status, 400, "{path}");
        let v: Value = serde_json::from_slice(&a.body)
            .unwrap_or_else(|_| panic!("{path}: {}", String::from_utf8_lossy(&a.body)));
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|m| m.starts_with("not a multipart/form-data upload")),
            "{path}: {v}"
        );
    }
}

#[test]
fn the_cli_explains_a_certificate_it_cannot_trust() {
    let dir = tempfile::tempdir().unwrap();
    // What `openssl req -x509` makes by default: a self-signed certificate that is a CA.
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let e = Engine::start(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        &[],
    );
    let port = e.url.rsplit(':').next().unwrap().to_owned();
    let status = |engine: &str, ca: bool| {
        let mut cmd = Command::new(ENGINE);
        cmd.args(["status", "--engine", engine])
            .env_remove("ENGINE_TOKEN");
        if ca {
            cmd.arg("--ca-file").arg(&cert_path);
        }
        cmd.output().expect("engine runs")
    };

    let o = status(&format!("https://localhost:{port}"), true);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("is a CA certificate") && err.contains("CA:FALSE"),
        "{err}"
    );

    let o = status(&format!("https://localhost:{port}"), false);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--ca-file"), "{}", stderr(&o));

    let o = status(&format!("localhost:{port}"), false);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("does the engine serve https://?"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_model_that_raises_on_rest_points_to_its_log_and_the_cli_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(&dir.path().join("data"), &[], &[]);
    let o = cli(&e, dir.path(), &["status", "--log"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no model is deployed"));

    std::fs::write(
        dir.path().join("bad.py"),
        "def action(x):\n    raise ValueError('bad record')\n",
    )
    .unwrap();
    let o = cli(&e, dir.path(), &["deploy", "bad.py"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut score = Command::new(ENGINE)
        .arg("score")
        .env("ENGINE_URL", &e.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = score.stdin.take().unwrap();
        stdin.write_all(b"{\"a\": 1}\n{\"a\": 2}\n").unwrap();
    }
    let o = score.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("line 1: the engine answered 422"), "{err}");
    assert_eq!(
        err.matches("the model's traceback is in its log: engine status --log")
            .count(),
        1,
        "{err}"
    );

    let o = cli(&e, dir.path(), &["status", "--log"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Traceback (most recent call last)")
            && text.contains("ValueError: bad record"),
        "{text}"
    );
}

#[test]
fn a_deployment_whose_init_raises_answers_with_the_traceback() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(&dir.path().join("data"), &[], &[]);
    std::fs::write(
        dir.path().join("badinit.py"),
        "def begin():\n    raise RuntimeError('no init')\n\ndef action(x):\n    yield x\n",
    )
    .unwrap();
    let o = cli(&e, dir.path(), &["deploy", "badinit.py"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(
            "answered 400: begin failed: RuntimeError: no init\nTraceback (most recent call last)"
        ) && err.contains("line 2, in begin"),
        "{err}"
    );
}

#[test]
fn serve_binds_localhost_by_name() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(ENGINE)
        .args(["serve", "--bind", "localhost", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env_remove("ENGINE_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("engine listening on http://127.0.0.1:"),
        "{line}"
    );

    let o = Command::new(ENGINE)
        .args(["serve", "--bind", "127.0.0.1:8003", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("the port is 'port', --port"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_port_in_use_says_how_to_choose_another() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(ENGINE)
        .args(["serve", "--port", &port, "--data-dir"])
        .arg(dir.path())
        .env_remove("ENGINE_TOKEN")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && err.contains("--port or MODELOP_API_PORT chooses another"),
        "{err}"
    );
}

#[test]
fn an_uploaded_source_named_outside_the_model_is_refused_like_any_asset() {
    use engine_client::Part;
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(&dir.path().join("data"), &[], &[]);
    let c = e.client();
    for (method, path) in [
        ("PUT", "/api/deployment/upload"),
        ("POST", "/api/jobs/upload"),
    ] {
        for name in ["../../m.py", "/etc/m.py"] {
            let parts = vec![
                Part::File {
                    name: "source".into(),
                    file_name: name.into(),
                    bytes: ECHO.as_bytes().to_vec(),
                },
                Part::File {
                    name: "input".into(),
                    file_name: "in.jsonl".into(),
                    bytes: b"{\"a\": 1}\n".to_vec(),
                },
            ];
            let a = c.upload(method, path, &parts).unwrap();
            let body = String::from_utf8_lossy(&a.body);
            assert_eq!(a.status, 400, "{path} {name}: {body}");
            assert!(
                body.contains("modelAssets[0]") && body.contains(&format!("asset '{name}'")),
                "{path} {name}: {body}"
            );
        }
    }
}

#[test]
fn the_status_of_a_running_job_shows_its_live_progress() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(&dir.path().join("data"), &[], &[]);
    std::fs::write(
        dir.path().join("slow.py"),
        "import time\n\ndef action(x):\n    time.sleep(0.3)\n    yield x\n",
    )
    .unwrap();
    let records: String = (0..20).map(|i| format!("{{\"a\": {i}}}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), records).unwrap();
    let o = cli(
        &e,
        dir.path(),
        &[
            "job", "create", "batchjob", "slow.py", "in.jsonl", "-", "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = serde_json::from_slice::<Value>(&o.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let o = cli(&e, dir.path(), &["job", "status", &id]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        if text.contains("RUNNING") && text.contains("\nprogress: 20 read, ") {
            break;
        }
        assert!(
            !text.contains("COMPLETE") && std::time::Instant::now() < deadline,
            "no progress line while running: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Deleting it now says how to stop it first.
    let o = cli(&e, dir.path(), &["job", "delete", &id]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("answered 409")
            && stderr(&o).contains(&format!("(engine job cancel {id})")),
        "{}",
        stderr(&o)
    );
    let o = cli(&e, dir.path(), &["job", "cancel", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn an_empty_token_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token.txt");
    std::fs::write(&file, "\n").unwrap();
    let o = Command::new(ENGINE)
        .args(["serve", "--port", "0", "--auth-token-file"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("ENGINE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains(&format!("the token file {} is empty", file.display()))
            && stderr(&o).contains("engine token >"),
        "{}",
        stderr(&o)
    );
}
