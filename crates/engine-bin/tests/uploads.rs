//! Paths, uploads, storage and retention of `engine serve`, through the real binary:
//! local paths only under `allowedPaths`, asset names kept in the model's folder, body
//! limits, streamed uploads stored once, retention and deletion of jobs.

mod common;

use std::path::Path;

use base64::Engine as _;
use common::Engine;
use serde_json::{json, Value};

const ECHO: &str = "# modelop.score\ndef action(x):\n    yield x\n";

fn job_with(inputs: Value, outputs: Value, extra_assets: Value) -> Value {
    let mut assets = vec![json!({
        "name": "echo.py", "assetType": "SOURCE_CODE", "primaryModelSource": true,
        "sourceCode": ECHO,
    })];
    assets.extend(extra_assets.as_array().cloned().unwrap_or_default());
    json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": {"storedModel": {"modelAssets": assets}},
        "inputData": inputs,
        "outputData": outputs,
    })
}

fn file_input(path: &Path) -> Value {
    json!([{"assetType": "EXTERNAL_FILE", "name": "in.jsonl",
        "fileUrl": format!("file://{}", path.display())}])
}

fn error_of(v: &Value) -> String {
    v["error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn local_paths_outside_the_data_dir_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("in.jsonl"), "1\n").unwrap();
    let e = Engine::start(dir.path(), &[], &[]);

    let (s, v) = e.send(
        "POST",
        "/api/jobs",
        &job_with(file_input(Path::new("/etc/hostname")), json!([]), json!([])),
    );
    assert_eq!(s, 403, "{v}");
    let msg = error_of(&v);
    assert!(
        msg.contains("/etc/hostname") && msg.contains("allowedPaths"),
        "{msg}"
    );

    // `..` out of the data dir.
    let up = dir
        .path()
        .join("..")
        .join(outside.path().file_name().unwrap())
        .join("in.jsonl");
    let (s, v) = e.send(
        "POST",
        "/api/jobs",
        &job_with(file_input(&up), json!([]), json!([])),
    );
    assert_eq!(s, 403, "{v}");

    // A symbolic link inside the data dir that leads out.
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    let (s, v) = e.send(
        "POST",
        "/api/jobs",
        &job_with(
            file_input(&dir.path().join("link/in.jsonl")),
            json!([]),
            json!([]),
        ),
    );
    assert_eq!(s, 403, "{v}");

    // An output (not existing yet) outside, and a model asset outside.
    let inline = json!([{"name": "in.jsonl", "fileContentString": "1\n"}]);
    let out = json!([{"name": "o.jsonl",
        "fileUrl": format!("file://{}/new/o.jsonl", outside.path().display())}]);
    let (s, v) = e.send(
        "POST",
        "/api/jobs",
        &job_with(inline.clone(), out, json!([])),
    );
    assert_eq!(s, 403, "{v}");
    assert!(error_of(&v).contains("outputData[0]"), "{v}");
    let asset = json!([{"name": "w.bin", "fileUrl": "file:///etc/passwd"}]);
    let (s, v) = e.send("POST", "/api/jobs", &job_with(inline, json!([]), asset));
    assert_eq!(s, 403, "{v}");
    assert!(error_of(&v).contains("modelAssets[1]"), "{v}");

    // The upload's output path too, checked as the job will write it: outside the roots,
    // the engine's own database, and a name that percent-decoding must not turn into `..`.
    let data = dir.path().display().to_string();
    for (output, refused) in [
        ("/tmp/not-allowed/out.jsonl".to_owned(), true),
        (format!("{data}/engine.db"), true),
        (format!("{data}/%2e%2e/out.jsonl"), false),
    ] {
        let parts = vec![
            engine_client::Part::File {
                name: "source".into(),
                file_name: "echo.py".into(),
                bytes: ECHO.as_bytes().to_vec(),
            },
            engine_client::Part::File {
                name: "input".into(),
                file_name: "in.jsonl".into(),
                bytes: b"1\n".to_vec(),
            },
            engine_client::Part::text("output", output.clone()),
        ];
        let a = e
            .client()
            .upload("POST", "/api/jobs/upload", &parts)
            .unwrap();
        let body = String::from_utf8_lossy(&a.body);
        if refused {
            assert_eq!(a.status, 403, "{output}: {body}");
        } else {
            assert_eq!(a.status, 201, "{output}: {body}");
            let v: Value = serde_json::from_slice(&a.body).unwrap();
            let done = e.wait_job(v["id"].as_str().unwrap(), &["COMPLETE", "ERROR"]);
            assert_eq!(done["jobResult"], "SUCCESS", "{done}");
            // Written under the literal name, inside the data folder.
            assert!(dir.path().join("%2e%2e/out.jsonl").is_file());
        }
    }
}

#[test]
fn a_path_under_a_configured_root_works() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = tempfile::tempdir().unwrap();
    std::fs::write(allowed.path().join("in.jsonl"), "1\n2\n").unwrap();
    let roots = format!("{}:{}", allowed.path().display(), dir.path().display());
    let e = Engine::start(dir.path(), &["--allowed-paths", &roots], &[]);
    let out = json!([{"name": "o.jsonl",
        "fileUrl": format!("file://{}/sub/o.jsonl", allowed.path().display())}]);
    let (s, v) = e.send(
        "POST",
        "/api/jobs",
        &job_with(file_input(&allowed.path().join("in.jsonl")), out, json!([])),
    );
    assert_eq!(s, 201, "{v}");
    let done = e.wait_job(v["id"].as_str().unwrap(), &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
    assert_eq!(
        std::fs::read_to_string(allowed.path().join("sub/o.jsonl")).unwrap(),
        "1\n2\n"
    );
    // The data dir is no longer allowed by default once roots are given... unless listed.
    let (s, v) = e.send(
        "POST",
        "/api/jobs",
        &job_with(file_input(Path::new("/etc/hostname")), json!([]), json!([])),
    );
    assert_eq!(s, 403, "{v}");
}

fn tar_with_symlink(name: &str, target: &Path) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    t.append_link(&mut h, name, target).unwrap();
    t.into_inner().unwrap()
}

#[test]
fn asset_names_and_archives_stay_in_the_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let inline = json!([{"name": "in.jsonl", "fileContentString": "1\n"}]);
    let long = "x".repeat(300);
    for bad in ["../x.txt", "/abs.txt", "a\u{0}b", long.as_str()] {
        let asset = json!([{"name": bad, "fileContentString": "x"}]);
        let (s, v) = e.send(
            "POST",
            "/api/jobs",
            &job_with(inline.clone(), json!([]), asset),
        );
        assert_eq!(s, 400, "{bad:?}: {v}");
        assert!(error_of(&v).contains("modelAssets[1]"), "{v}");
    }
    // Nothing of the refused documents is left behind.
    let jobs = dir.path().join("jobs");
    assert!(
        !jobs.exists() || std::fs::read_dir(&jobs).unwrap().count() == 0,
        "{:?}",
        std::fs::read_dir(&jobs).map(|d| d.count())
    );
    // The same through an upload: the part's file name is the asset's name.
    let parts = vec![
        engine_client::Part::File {
            name: "source".into(),
            file_name: "echo.py".into(),
            bytes: ECHO.as_bytes().to_vec(),
        },
        engine_client::Part::File {
            name: "asset".into(),
            file_name: "../../escape.txt".into(),
            bytes: b"x".to_vec(),
        },
    ];
    let a = e
        .client()
        .upload("PUT", "/api/deployment/upload", &parts)
        .unwrap();
    let body = String::from_utf8_lossy(&a.body);
    assert_eq!(a.status, 400, "{body}");
    assert!(body.contains("escape.txt"), "{body}");

    // A tar planting `out -> outside`, then an asset written through `out/`.
    let tar = tar_with_symlink("out", outside.path());
    let doc = json!({"name": "evil", "deployableModel": {"storedModel": {"modelAssets": [
        {"name": "echo.py", "assetType": "SOURCE_CODE", "sourceCode": ECHO},
        {"name": "evil.tar", "fileContent": base64::engine::general_purpose::STANDARD.encode(&tar)},
        {"name": "out/x.txt", "fileContentString": "planted"},
    ]}}});
    let (s, v) = e.send("PUT", "/api/deployment", &doc);
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("symbolic link"), "{v}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

fn engine_cli(e: &Engine, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::ENGINE)
        .args(args)
        .args(["--engine", &e.url])
        .output()
        .expect("engine runs")
}

/// POSTs `body` as a client sending `Expect: 100-continue` does: the body goes only if
/// the engine asks for it (`chunked`: with no announced length).
fn expect_continue(e: &Engine, path: &str, body: &[u8], chunked: bool) -> (u16, Value) {
    use std::io::{Read, Write};
    let host = e.url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let length = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", body.len())
    };
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = s.read(&mut buf).unwrap();
        answer.extend_from_slice(&buf[..n]);
        if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    if answer.starts_with(b"HTTP/1.1 100") {
        answer.clear();
        // The engine stops reading past its limit: later writes may fail.
        let _ = if chunked {
            body.chunks(8192)
                .try_for_each(|c| {
                    write!(s, "{:x}\r\n", c.len())?;
                    s.write_all(c)?;
                    s.write_all(b"\r\n")
                })
                .and_then(|()| s.write_all(b"0\r\n\r\n"))
        } else {
            s.write_all(body)
        };
    }
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[test]
fn oversize_bodies_are_413_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(
        dir.path(),
        &[
            "--max-request-bytes",
            "100000",
            "--max-upload-bytes",
            "1000000",
        ],
        &[],
    );
    let big = "x".repeat(200_000);
    let inline = json!([{"name": "in.jsonl", "fileContentString": big}]);
    let doc = job_with(inline, json!([]), json!([])).to_string();
    // Refused from its announced length, and while streaming when none is announced.
    for chunked in [false, true] {
        let (s, v) = expect_continue(&e, "/api/jobs", doc.as_bytes(), chunked);
        assert_eq!(s, 413, "{v}");
        let msg = error_of(&v);
        assert!(
            msg.contains("100000") && msg.contains("maxRequestBytes"),
            "{msg}"
        );
    }
    // The scoring routes too (read whole by the router).
    let (s, v) = expect_continue(&e, "/api/roundtrip/0/1", big.as_bytes(), false);
    assert_eq!(s, 413, "{v}");
    assert!(error_of(&v).contains("maxRequestBytes"), "{v}");

    // An upload over maxUploadBytes, through the CLI: it prints the limit.
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("echo.py"), ECHO).unwrap();
    std::fs::write(files.path().join("big.jsonl"), "1\n".repeat(1_000_000)).unwrap();
    let model = files.path().join("echo.py").display().to_string();
    let input = files.path().join("big.jsonl").display().to_string();
    let out = engine_cli(&e, &["job", "create", "batchjob", &model, &input, "-"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("413") && stderr.contains("1000000") && stderr.contains("maxUploadBytes"),
        "{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("broken pipe"), "{stderr}");
    // The main source is kept as text: it may not be bigger than a document.
    let parts = vec![engine_client::Part::File {
        name: "source".into(),
        file_name: "huge.py".into(),
        bytes: format!("# {}\n{ECHO}", "x".repeat(200_000)).into_bytes(),
    }];
    let a = e
        .client()
        .upload("POST", "/api/jobs/upload", &parts)
        .unwrap();
    let body = String::from_utf8_lossy(&a.body);
    assert_eq!(a.status, 413, "{body}");
    assert!(
        body.contains("huge.py") && body.contains("maxRequestBytes"),
        "{body}"
    );
    // Nothing of the refused uploads is left behind.
    let (_, list) = e.get("/api/jobs");
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0, "{list}");
}

#[test]
fn uploads_past_max_concurrent_uploads_get_503() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &["--max-concurrent-uploads", "1"], &[]);
    let host = e.url.strip_prefix("http://").unwrap().to_owned();
    // One upload that arrives slowly holds the only place.
    let mut slow = std::net::TcpStream::connect(&host).unwrap();
    write!(
        slow,
        "POST /api/jobs/upload HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"input\"; filename=\"in.jsonl\"\r\n\r\n1\n"
    )
    .unwrap();
    slow.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let parts = vec![engine_client::Part::text("jobType", "batchjob")];
    let a = e
        .client()
        .upload("POST", "/api/jobs/upload", &parts)
        .unwrap();
    let body = String::from_utf8_lossy(&a.body);
    assert_eq!(a.status, 503, "{body}");
    assert!(body.contains("maxConcurrentUploads"), "{body}");
    // With Retry-After.
    let mut second = std::net::TcpStream::connect(&host).unwrap();
    write!(
        second,
        "POST /api/jobs/upload HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 8\r\nConnection: close\r\n\r\n--b--\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut second, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    drop(slow);
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn db_bytes(data: &Path) -> u64 {
    ["engine.db", "engine.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_large_upload_is_streamed_to_disk_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let pid = e.child.as_ref().unwrap().id();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("echo.py"), ECHO).unwrap();
    let input = files.path().join("big.jsonl");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        let line = format!("{{\"v\": \"{}\"}}\n", "y".repeat(1000));
        for _ in 0..200_000 {
            w.write_all(line.as_bytes()).unwrap();
        }
    }
    let size = std::fs::metadata(&input).unwrap().len();
    assert!(size > 200_000_000);
    let mut cli = std::process::Command::new(common::ENGINE)
        .args(["job", "create", "batchjob"])
        .arg(files.path().join("echo.py"))
        .arg(&input)
        .args(["-", "--json", "--engine", &e.url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The client's peak too, read while it runs.
    let cli_pid = cli.id();
    let mut cli_peak_kib = 0;
    while cli.try_wait().unwrap().is_none() {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{cli_pid}/status")) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                cli_peak_kib = cli_peak_kib.max(kib);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = cli.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        cli_peak_kib / 1024 < 100,
        "the CLI peaked at {} MiB for a {size}-byte upload",
        cli_peak_kib / 1024
    );
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = job["id"].as_str().unwrap();
    let peak_mib = vm_hwm_kib(pid) / 1024;
    assert!(
        peak_mib < 150,
        "the engine peaked at {peak_mib} MiB for a {size}-byte upload"
    );
    let (s, _) = e.send("POST", &format!("/api/jobs/{id}/cancel"), &json!({}));
    assert_eq!(s, 200);
    // Stored once: in the job's folder, not in the database.
    assert!(
        db_bytes(dir.path()) < 2_000_000,
        "engine.db holds {} bytes",
        db_bytes(dir.path())
    );
    let content = dir.path().join("jobs").join(id).join("content");
    let stored = tree_bytes(&content);
    assert!(
        stored >= size && stored < size + 10_000,
        "{stored} bytes in {}",
        content.display()
    );
}

fn tree_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|f| {
            let f = f.unwrap();
            if f.file_type().unwrap().is_dir() {
                tree_bytes(&f.path())
            } else {
                f.metadata().unwrap().len()
            }
        })
        .sum()
}

#[test]
fn embedded_contents_are_kept_once_and_the_model_sees_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let model = "import json\n# modelop.init\ndef begin(arg):\n    global doc\n    doc = json.loads(arg['rawJson'])\n# modelop.score\ndef action(x):\n    yield doc['inputData'][0]['fileContentString']\n";
    let marker = "h2-marker-0123456789";
    let doc = json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": {"storedModel": {"modelAssets": [
            {"name": "m.py", "assetType": "SOURCE_CODE", "sourceCode": model},
        ]}},
        "inputData": [{"name": "in.jsonl", "fileContentString": format!("\"{marker}\"\n")}],
    });
    let (s, v) = e.send("POST", "/api/jobs", &doc);
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let done = e.wait_job(id, &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
    let (_, r) = e.get(&format!("/api/jobs/{id}/result"));
    let content = r["outputs"][0]["content"].as_str().unwrap_or_default();
    assert!(content.contains(marker), "{r}");
    for f in ["engine.db", "engine.db-wal"] {
        let bytes = std::fs::read(dir.path().join(f)).unwrap_or_default();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{f} holds the input's content"
        );
    }
}

fn inline_job() -> Value {
    job_with(
        json!([{"name": "in.jsonl", "fileContentString": "1\n"}]),
        json!([]),
        json!([]),
    )
}

#[test]
fn retention_deletes_the_oldest_finished_jobs_with_their_folders() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("application.json");
    std::fs::write(&config, r#"{"jobRetention": {"maxJobs": 2}}"#).unwrap();
    let data = dir.path().join("data");
    let config_arg = config.display().to_string();
    let mut ids = Vec::new();
    {
        let e = Engine::start(&data, &["--config", &config_arg], &[]);
        for _ in 0..3 {
            let (s, v) = e.send("POST", "/api/jobs", &inline_job());
            assert_eq!(s, 201, "{v}");
            let id = v["id"].as_str().unwrap().to_owned();
            e.wait_job(&id, &["COMPLETE", "ERROR"]);
            ids.push(id);
        }
        // After the third job, the first is gone with its folder.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while e.get(&format!("/api/jobs/{}", ids[0])).0 != 404 {
            assert!(
                std::time::Instant::now() < deadline,
                "job {} is kept",
                ids[0]
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(!data.join("jobs").join(&ids[0]).exists());
        assert!(data.join("jobs").join(&ids[2]).exists());
        let (_, list) = e.get("/api/jobs");
        assert_eq!(list["jobs"].as_array().unwrap().len(), 2, "{list}");
    }
    // At start, with a smaller bound.
    std::fs::write(&config, r#"{"jobRetention": {"maxJobs": 1}}"#).unwrap();
    let e = Engine::start(&data, &["--config", &config_arg], &[]);
    let (_, list) = e.get("/api/jobs");
    let kept: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(kept, vec![ids[2].as_str()]);
    assert!(!data.join("jobs").join(&ids[1]).exists());
}

#[test]
fn engine_job_delete_removes_a_finished_job_and_refuses_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path(), &[], &[]);
    let (_, v) = e.send("POST", "/api/jobs", &inline_job());
    let id = v["id"].as_str().unwrap().to_owned();
    e.wait_job(&id, &["COMPLETE", "ERROR"]);
    assert!(dir.path().join("jobs").join(&id).exists());
    let out = engine_cli(&e, &["job", "delete", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(e.get(&format!("/api/jobs/{id}")).0, 404);
    assert!(!dir.path().join("jobs").join(&id).exists());
    let out = engine_cli(&e, &["job", "delete", &id]);
    assert!(!out.status.success());

    // A running job: 409, cancel first.
    let slow = "import time\n# modelop.score\ndef action(x):\n    time.sleep(30)\n    yield x\n";
    let doc = json!({
        "jobType": "MODEL_BATCH_JOB",
        "model": {"storedModel": {"modelAssets": [
            {"name": "slow.py", "assetType": "SOURCE_CODE", "sourceCode": slow}]}},
        "inputData": [{"name": "in.jsonl", "fileContentString": "1\n"}],
    });
    let (_, v) = e.send("POST", "/api/jobs", &doc);
    let id = v["id"].as_str().unwrap().to_owned();
    e.wait_job(&id, &["RUNNING"]);
    let a = e.client().delete(&format!("/api/jobs/{id}")).unwrap();
    let body = String::from_utf8_lossy(&a.body);
    assert_eq!(a.status, 409, "{body}");
    assert!(body.contains("cancel it first"), "{body}");
    e.send("POST", &format!("/api/jobs/{id}/cancel"), &json!({}));
    e.wait_job(&id, &["CANCELLED", "ERROR"]);
    assert_eq!(
        e.client()
            .delete(&format!("/api/jobs/{id}"))
            .unwrap()
            .status,
        204
    );
}

#[test]
fn a_deployment_upload_is_stored_once_and_removed_when_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let model = files.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(
        model.join("m.py"),
        "# modelop.init\ndef begin():\n    global w\n    w = open('weights.bin', 'rb').read()\n# modelop.score\ndef action(x):\n    yield len(w)\n",
    )
    .unwrap();
    std::fs::write(model.join("weights.bin"), vec![7u8; 3_000_000]).unwrap();
    let model_arg = model.display().to_string();
    {
        let e = Engine::start(dir.path(), &[], &[]);
        let out = engine_cli(&e, &["deploy", &model_arg]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(e.score("/api/roundtrip/0/1", "1").1.trim(), "3000000");
        assert!(
            db_bytes(dir.path()) < 1_000_000,
            "engine.db holds the upload"
        );
        let uploads = dir.path().join("uploads/deployments");
        assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 1);
        let first = std::fs::read_dir(&uploads)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        // Deployed again: the old upload goes.
        let out = engine_cli(&e, &["deploy", &model_arg]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!first.exists());
        assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 1);
    }
    // A restart deploys the stored upload again.
    let e = Engine::start(dir.path(), &[], &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (s, body, _) = e.score("/api/roundtrip/0/1", "1");
        if s == 200 {
            assert_eq!(body.trim(), "3000000");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s} {body}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Undeployed: nothing of it stays.
    let out = engine_cli(&e, &["undeploy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uploads = dir.path().join("uploads").join("deployments");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
}
