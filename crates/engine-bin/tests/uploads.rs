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
fn h2_local_paths_outside_the_data_dir_are_refused() {
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

    // The upload's output path too.
    let parts = vec![
        service::client::Part::File {
            name: "source".into(),
            file_name: "echo.py".into(),
            bytes: ECHO.as_bytes().to_vec(),
        },
        service::client::Part::File {
            name: "input".into(),
            file_name: "in.jsonl".into(),
            bytes: b"1\n".to_vec(),
        },
        service::client::Part::text("output", "/tmp/h2-not-allowed/out.jsonl"),
    ];
    let a = e
        .client()
        .multipart("POST", "/api/jobs/upload", &parts)
        .unwrap();
    assert_eq!(a.status, 403, "{}", String::from_utf8_lossy(&a.body));
}

#[test]
fn h2_a_path_under_a_configured_root_works() {
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
fn h2_asset_names_and_archives_stay_in_the_model_folder() {
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
    // The same through an upload: the part's file name is the asset's name.
    let parts = vec![
        service::client::Part::File {
            name: "source".into(),
            file_name: "echo.py".into(),
            bytes: ECHO.as_bytes().to_vec(),
        },
        service::client::Part::File {
            name: "asset".into(),
            file_name: "../../escape.txt".into(),
            bytes: b"x".to_vec(),
        },
    ];
    let a = e
        .client()
        .multipart("PUT", "/api/deployment/upload", &parts)
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
