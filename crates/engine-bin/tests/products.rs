//! A finished job's products (the files a training job's model wrote under `outputDir/`),
//! listed and fetched over HTTP and with `engine job result ID --products DIR`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `engine job ...` against the engine, with its exit code, stdout and stderr.
fn job_cli(e: &common::Engine, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(common::ENGINE)
        .arg("job")
        .args(args)
        .args(["--engine", &e.url])
        .env_remove("ENGINE_URL")
        .env_remove("ENGINE_TOKEN")
        .output()
        .expect("engine runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Submits a job with its output kept with the job; returns its id.
fn submit(e: &common::Engine, kind: &str, model: &str, input: &str) -> String {
    let (code, stdout, stderr) = job_cli(e, &["create", kind, model, input, "-", "--json"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("JSON job");
    v["id"].as_str().expect("id").to_owned()
}

fn raw(e: &common::Engine, path: &str) -> (u16, Vec<u8>) {
    let a = e.client().get(path).expect("engine answers");
    (a.status, a.body)
}

#[test]
fn training_products_are_listed_and_fetched_byte_for_byte() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.jsonl");
    std::fs::write(&input, "{\"x\": 1}\n{\"x\": 2}\n").unwrap();
    let e = common::Engine::start(data.path(), &[], &[]);
    let model = root().join("tests/models/products-nested/model.py");
    let id = submit(
        &e,
        "trainingjob",
        model.to_str().unwrap(),
        input.to_str().unwrap(),
    );
    let done = e.wait_job(&id, &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");

    let weights: Vec<u8> = (0..=255u8).collect::<Vec<_>>().repeat(300);
    let (status, list) = e.get(&format!("/api/jobs/{id}/products"));
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list,
        serde_json::json!({"products": [
            {"name": "model.json", "size": 12},
            {"name": "weights/layer 1.bin", "size": weights.len()},
        ]})
    );

    // Over HTTP: a top-level file, and one in a sub-folder by `/` and by `%2F`.
    let (status, body) = raw(&e, &format!("/api/jobs/{id}/products/model.json"));
    assert_eq!(status, 200);
    assert_eq!(body, b"{\"rows\": 2}\n");
    for path in ["weights/layer%201.bin", "weights%2Flayer%201.bin"] {
        let (status, body) = raw(&e, &format!("/api/jobs/{id}/products/{path}"));
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, weights, "{path}");
    }

    // With the CLI: without --products the result names the flag; with it, every file.
    let (code, _, stderr) = job_cli(&e, &["result", &id]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("--products DIR"), "{stderr}");
    let dest = work.path().join("fetched/here");
    let (code, stdout, stderr) =
        job_cli(&e, &["result", &id, "--products", dest.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        std::fs::read(dest.join("model.json")).unwrap(),
        b"{\"rows\": 2}\n"
    );
    assert_eq!(
        std::fs::read(dest.join("weights/layer 1.bin")).unwrap(),
        weights
    );
    assert!(stdout.contains("model.json (12 bytes)"), "{stdout}");
    assert!(stdout.contains("layer 1.bin (76800 bytes)"), "{stdout}");
    assert!(stderr.contains("2 product(s) written"), "{stderr}");
}

#[test]
fn names_outside_the_products_folder_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.jsonl");
    std::fs::write(&input, "{\"x\": 1}\n").unwrap();
    let e = common::Engine::start(data.path(), &[], &[]);
    let model = root().join("tests/models/products-nested/model.py");
    let id = submit(
        &e,
        "trainingjob",
        model.to_str().unwrap(),
        input.to_str().unwrap(),
    );
    let done = e.wait_job(&id, &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
    // A secret beside the products folder, and a link in it pointing out.
    let job_dir = data.path().join("jobs").join(&id);
    std::fs::write(job_dir.join("secret.txt"), "secret").unwrap();
    let products = job_dir.join("trained");
    assert!(
        products.join("model.json").is_file(),
        "products kept with the job"
    );
    std::os::unix::fs::symlink(job_dir.join("secret.txt"), products.join("escape")).unwrap();

    for name in [
        "..%2Fsecret.txt",
        "%2E%2E%2Fsecret.txt",
        "weights%2F..%2F..%2Fsecret.txt",
        "%2Fetc%2Fpasswd",
        "weights/../../secret.txt",
        "weights/%2E%2E/%2E%2E/secret.txt",
        "escape",
    ] {
        let (status, body) = e.get(&format!("/api/jobs/{id}/products/{name}"));
        assert_eq!(status, 400, "{name}: {body}");
        assert!(body["error"].is_string(), "{name}: JSON error {body}");
        assert!(!body.to_string().contains("secret\""), "{name}: {body}");
    }
    // The link is not listed either.
    let (_, list) = e.get(&format!("/api/jobs/{id}/products"));
    assert_eq!(list["products"].as_array().unwrap().len(), 2, "{list}");

    let (status, body) = e.get(&format!("/api/jobs/{id}/products/missing.json"));
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("missing.json"),
        "{body}"
    );
    let (status, body) = e.get("/api/jobs/no-such-job/products");
    assert_eq!(status, 404, "{body}");
    let (status, body) = e.get("/api/jobs/no-such-job/products/model.json");
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[test]
fn a_running_job_has_no_products_yet_and_a_batch_job_has_none() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let e = common::Engine::start(data.path(), &[], &[]);
    let model = root().join("tests/models/slow-progress/model.py");

    let slow = work.path().join("slow.jsonl");
    std::fs::write(&slow, "{\"n\": 1, \"sleep\": 30}\n").unwrap();
    let id = submit(
        &e,
        "batchjob",
        model.to_str().unwrap(),
        slow.to_str().unwrap(),
    );
    e.wait_job(&id, &["RUNNING"]);
    let (status, body) = e.get(&format!("/api/jobs/{id}/products"));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("RUNNING"),
        "{body}"
    );
    let (status, body) = e.get(&format!("/api/jobs/{id}/products/model.json"));
    assert_eq!(status, 409, "{body}");
    let (code, _, stderr) = job_cli(&e, &["cancel", &id]);
    assert_eq!(code, Some(0), "{stderr}");

    let quick = work.path().join("quick.jsonl");
    std::fs::write(&quick, "{\"n\": 1}\n").unwrap();
    let id = submit(
        &e,
        "batchjob",
        model.to_str().unwrap(),
        quick.to_str().unwrap(),
    );
    let done = e.wait_job(&id, &["COMPLETE", "ERROR"]);
    assert_eq!(done["jobResult"], "SUCCESS", "{done}");
    let (status, list) = e.get(&format!("/api/jobs/{id}/products"));
    assert_eq!(status, 200, "{list}");
    assert_eq!(list, serde_json::json!({"products": []}));
    let dest = work.path().join("none");
    let (code, stdout, stderr) =
        job_cli(&e, &["result", &id, "--products", dest.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("0 product(s)"), "{stderr}");
}
