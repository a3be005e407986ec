//! Job documents naming their data in stores, run by the real engine (`engine serve`)
//! against real servers the tests start (crates/test-servers): inputs, outputs, model files
//! and training products in S3 (moto), an input over HTTP, HDFS through WebHDFS, SQL
//! assets in PostgreSQL, a deployed model streaming S3 into PostgreSQL, and the clear errors
//! of a missing bucket, object or table, with the stores' secrets never in what the API
//! returns.

mod common;

use std::time::Duration;

use common::Engine;
use serde_json::{json, Value};
use test_servers::{PostgresServer, S3Server, WebHdfsServer};

const SECRET: &str = "s3cr3t-never-shown";

/// Scores with the weight its init reads from `weights.json`, a model file the job
/// fetches from S3; trains by writing two files under `outputDir/`.
const MODEL: &str = r#"
import json, os

# modelop.init
def begin():
    global weight
    with open("weights.json") as f:
        weight = json.load(f)["w"]

# modelop.score
def action(x):
    yield {"id": x["id"], "score": x["v"] * weight}

# modelop.train
def train(df):
    os.makedirs("outputDir/coef", exist_ok=True)
    with open("outputDir/model.json", "w") as f:
        json.dump({"rows": len(df), "w": weight}, f)
    with open("outputDir/coef/all.txt", "w") as f:
        f.write("1 2 3\n")
"#;

/// An engine with its data folder under `dir`, `config` as its application.json, and the
/// AWS settings naming moto.
fn engine(s3: &S3Server, dir: &std::path::Path, config: Value) -> Engine {
    let file = dir.join("application.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let endpoint = s3.endpoint();
    Engine::start(
        &dir.join("data"),
        &[],
        &[
            ("ENGINE_CONFIG", file.to_str().unwrap()),
            ("AWS_ACCESS_KEY_ID", "test-key"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ],
    )
}

fn model_assets() -> Value {
    json!([
        {"name": "model.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
         "primaryModelSource": true, "sourceCode": MODEL},
        {"assetType": "EXTERNAL_FILE", "assetRole": "WEIGHTS_FILE",
         "fileUrl": "s3://models/credit/weights.json"}
    ])
}

fn job(job_type: &str, inputs: Value, outputs: Value) -> Value {
    json!({
        "jobType": job_type,
        "model": {"storedModel": {"modelMetaData": {"name": "credit"}, "modelAssets": model_assets()}},
        "inputData": inputs,
        "outputData": outputs,
    })
}

/// Submits `doc` and waits for it to finish; the job's view.
fn run(e: &Engine, doc: &Value) -> Value {
    let (s, created) = e.send("POST", "/api/jobs", doc);
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().expect("an id").to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = e.get(&format!("/api/jobs/{id}"));
        if ["COMPLETE", "ERROR", "CANCELLED"].contains(&v["jobStatus"].as_str().unwrap_or("")) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "job {id} stays {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Everything the API says about job `id`: its view, result and log, as text.
fn said_about(e: &Engine, id: &str) -> String {
    let mut all = String::new();
    for path in [
        format!("/api/jobs/{id}"),
        format!("/api/jobs/{id}/result"),
        format!("/api/jobs/{id}/log"),
        "/api/jobs".to_owned(),
    ] {
        all.push_str(&e.get(&path).1.to_string());
        all.push('\n');
    }
    all
}

fn stores() -> S3Server {
    let s3 = S3Server::start();
    for b in ["models", "data", "scores"] {
        s3.create_bucket(b);
    }
    s3.put("models", "credit/weights.json", br#"{"w": 2}"#);
    s3.put(
        "data",
        "day=1/applicants.jsonl",
        b"{\"id\": 1, \"v\": 1.5}\n{\"id\": 2, \"v\": 4}\n{\"id\": 3, \"v\": -1}\n",
    );
    s3
}

#[test]
fn a_job_reads_writes_and_fetches_its_model_files_from_s3() {
    let s3 = stores();
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&s3, dir.path(), json!({}));

    let v = run(
        &e,
        &job(
            "MODEL_BATCH_JOB",
            json!([{"assetType": "EXTERNAL_FILE", "fileUrl": "s3://data/day=1/applicants.jsonl"}]),
            json!([{"assetType": "EXTERNAL_FILE", "fileUrl": "s3://scores/day=1/scores.jsonl"}]),
        ),
    );
    let id = v["id"].as_str().unwrap();
    assert_eq!(v["jobStatus"], "COMPLETE", "{}", said_about(&e, id));
    let out = s3
        .get("scores", "day=1/scores.jsonl")
        .expect("the output object");
    let scores: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        scores,
        [
            json!({"id": 1, "score": 3.0}),
            json!({"id": 2, "score": 8}),
            json!({"id": 3, "score": -2})
        ]
    );
    let (_, result) = e.get(&format!("/api/jobs/{id}/result"));
    assert_eq!(
        result["outputs"][0]["path"], "s3://scores/day=1/scores.jsonl",
        "{result}"
    );
    let log = said_about(&e, id);
    assert!(
        log.contains("fetched from s3://models/credit/weights.json"),
        "{log}"
    );
    assert!(!log.contains(SECRET), "{log}");

    // Training: the products go under a prefix, each at its own path.
    let v = run(
        &e,
        &job(
            "MODEL_BATCH_TRAINING_JOB",
            json!([{"assetType": "EXTERNAL_FILE", "fileUrl": "s3://data/day=1/applicants.jsonl"}]),
            json!([{"assetType": "EXTERNAL_FILE", "fileUrl": "s3://models/credit/trained/"}]),
        ),
    );
    let id = v["id"].as_str().unwrap();
    assert_eq!(v["jobStatus"], "COMPLETE", "{}", said_about(&e, id));
    let trained: Value =
        serde_json::from_slice(&s3.get("models", "credit/trained/model.json").unwrap()).unwrap();
    assert_eq!(trained, json!({"rows": 3, "w": 2}));
    assert_eq!(
        s3.get("models", "credit/trained/coef/all.txt").unwrap(),
        b"1 2 3\n"
    );
    let (_, result) = e.get(&format!("/api/jobs/{id}/result"));
    assert_eq!(
        result["trainedDir"], "s3://models/credit/trained/",
        "{result}"
    );
}

#[test]
fn an_input_is_read_over_http() {
    let s3 = stores();
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&s3, dir.path(), json!({}));
    let files = tempfile::tempdir().unwrap();
    std::fs::write(
        files.path().join("applicants.jsonl"),
        b"{\"id\": 1, \"v\": 1.5}\n{\"id\": 2, \"v\": 4}\n{\"id\": 3, \"v\": -1}\n",
    )
    .unwrap();
    let server = test_servers::HttpFiles::start(files.path());
    let url = format!("{}/applicants.jsonl", server.url());
    let v = run(
        &e,
        &job(
            "MODEL_BATCH_JOB",
            json!([{"assetType": "EXTERNAL_FILE", "fileUrl": url}]),
            json!([{"assetType": "FILE", "name": "out.jsonl"}]),
        ),
    );
    let id = v["id"].as_str().unwrap();
    assert_eq!(v["jobStatus"], "COMPLETE", "{}", said_about(&e, id));
    let (_, result) = e.get(&format!("/api/jobs/{id}/result"));
    let content = result["outputs"][0]["content"].as_str().unwrap_or_default();
    assert_eq!(content.lines().count(), 3, "{result}");
}

#[test]
fn a_missing_bucket_or_object_fails_the_job_naming_it() {
    let s3 = stores();
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&s3, dir.path(), json!({}));
    let cases = [
        (
            json!([{"fileUrl": "s3://no-such-bucket/in.jsonl"}]),
            json!([{"fileUrl": "s3://scores/never.jsonl"}]),
            "no-such-bucket",
        ),
        (
            json!([{"fileUrl": "s3://data/day=2/none.jsonl"}]),
            json!([{"fileUrl": "s3://scores/never.jsonl"}]),
            "day=2/none.jsonl",
        ),
        (
            json!([{"fileUrl": "s3://data/day=1/applicants.jsonl"}]),
            json!([{"fileUrl": "s3://no-such-bucket/out.jsonl"}]),
            "no-such-bucket",
        ),
    ];
    for (inputs, outputs, named) in cases {
        let v = run(&e, &job("MODEL_BATCH_JOB", inputs, outputs));
        let id = v["id"].as_str().unwrap();
        let said = said_about(&e, id);
        assert_eq!(v["jobStatus"], "ERROR", "{said}");
        let reason = v["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(named), "{reason}");
        assert!(!said.contains(SECRET), "{said}");
    }
}

#[test]
fn a_job_reads_and_writes_hdfs_through_webhdfs() {
    let s3 = stores();
    let hdfs = WebHdfsServer::start();
    std::fs::create_dir_all(hdfs.dir().join("data")).unwrap();
    std::fs::write(
        hdfs.dir().join("data/applicants.jsonl"),
        "{\"id\": 7, \"v\": 5}\n{\"id\": 8, \"v\": 0.5}\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // hdfs:// names the namenode's RPC address; application.json maps it to WebHDFS.
    let e = engine(
        &s3,
        dir.path(),
        json!({"hdfs": {"namenodes": {"namenode.example:8020": hdfs.url()}, "user": "analyst"}}),
    );
    let v = run(
        &e,
        &job(
            "MODEL_BATCH_JOB",
            json!([{"fileUrl": "hdfs://namenode.example:8020/data/applicants.jsonl"}]),
            json!([{"fileUrl": format!("{}/scores/day=1/out.jsonl", hdfs.webhdfs_url())}]),
        ),
    );
    let id = v["id"].as_str().unwrap();
    assert_eq!(v["jobStatus"], "COMPLETE", "{}", said_about(&e, id));
    let out = std::fs::read_to_string(hdfs.dir().join("scores/day=1/out.jsonl")).unwrap();
    let scores: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        scores,
        [
            json!({"id": 7, "score": 10}),
            json!({"id": 8, "score": 1.0})
        ]
    );
    // The engine spoke as the configured user.
    let users: std::collections::BTreeSet<String> = hdfs
        .requests()
        .iter()
        .filter_map(|r| r.param("user.name").map(str::to_owned))
        .collect();
    assert_eq!(users.into_iter().collect::<Vec<_>>(), ["analyst"]);
}

/// An application.json holding the database's user and password (matched by its host and
/// database).
fn db_credentials() -> Value {
    json!({"credentials": [{
        "host": "127.0.0.1", "path": format!("/{}", PostgresServer::DATABASE),
        "username": PostgresServer::USER, "password": PostgresServer::PASSWORD
    }]})
}

fn tables(pg: &PostgresServer) {
    pg.psql(
        "CREATE TABLE applicants (id int PRIMARY KEY, v float8);
         INSERT INTO applicants VALUES (1, 1.5), (2, 4), (3, -1);
         CREATE TABLE scores (id int PRIMARY KEY, score float8 NOT NULL);
         GRANT ALL ON applicants, scores TO tester;",
    );
}

#[test]
fn sql_assets_read_and_write_postgres() {
    let s3 = stores();
    let pg = PostgresServer::start();
    tables(&pg);
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&s3, dir.path(), db_credentials());
    // The input's URI carries its password as ModelOp Center sends it; the output's
    // has none: the engine's credentials entry for the database gives it.
    let bare = format!(
        "jdbc:postgresql://127.0.0.1:{}/{}",
        pg.port(),
        PostgresServer::DATABASE
    );
    let v = run(
        &e,
        &job(
            "MODEL_BATCH_JOB",
            json!([{"assetType": "SQL", "name": "applicants",
                    "repositoryInfo": {"connectionUri": pg.jdbc_url()},
                    "sqlStatement": "SELECT id, v FROM applicants ORDER BY id"}]),
            json!([{"assetType": "SQL", "name": "scores",
                    "repositoryInfo": {"connectionUri": bare},
                    "sqlStatement": "INSERT INTO scores (id, score)"}]),
        ),
    );
    let id = v["id"].as_str().unwrap();
    let said = said_about(&e, id);
    assert_eq!(v["jobStatus"], "COMPLETE", "{said}");
    assert_eq!(
        pg.psql("SELECT id, score FROM scores ORDER BY id").trim(),
        "1|3\n2|8\n3|-2"
    );
    assert!(!said.contains(PostgresServer::PASSWORD), "{said}");

    // A table that is not there fails the job naming it, the password still hidden.
    let v = run(
        &e,
        &job(
            "MODEL_BATCH_JOB",
            json!([{"assetType": "SQL", "repositoryInfo": {"connectionUri": pg.jdbc_url()},
                    "sqlStatement": "SELECT id, v FROM applicants"}]),
            json!([{"assetType": "SQL", "repositoryInfo": {"connectionUri": pg.jdbc_url()},
                    "sqlStatement": "INSERT INTO no_such_table (id, score)"}]),
        ),
    );
    let id = v["id"].as_str().unwrap();
    let said = said_about(&e, id);
    assert_eq!(v["jobStatus"], "ERROR", "{said}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no_such_table"),
        "{v}"
    );
    assert!(!said.contains(PostgresServer::PASSWORD), "{said}");
}

#[test]
fn a_deployed_model_streams_s3_into_postgres() {
    let s3 = stores();
    let pg = PostgresServer::start();
    tables(&pg);
    let lines: String = (0..500)
        .map(|i| format!("{{\"id\": {}, \"v\": {i}}}\n", i + 100))
        .collect();
    s3.put("data", "stream/part-0.jsonl", lines.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&s3, dir.path(), db_credentials());
    let doc = json!({
        "name": "credit",
        "deployableModel": {"storedModel": {"modelAssets": model_assets()}},
    });
    let (s, v) = e.send("PUT", "/api/deployment", &doc);
    assert_eq!(s, 201, "{v}");
    let output = json!({"Transport": {"Type": "ODBC",
        "ConnectionString": format!("jdbc:postgresql://127.0.0.1:{}/{}", pg.port(), PostgresServer::DATABASE),
        "InsertIntoTable": "scores", "OutputFields": ["id", "score"]}});
    let (s, v) = e.send("PUT", "/2/active/stream/1", &output);
    assert_eq!(s, 201, "{v}");
    let input = json!({"Transport": {"Type": "S3", "Bucket": "data", "ObjectKey": "stream/"},
                       "Encoding": "json"});
    let (s, v) = e.send("PUT", "/2/active/stream/0", &input);
    assert_eq!(s, 201, "{v}");
    let mut count = String::new();
    for _ in 0..300 {
        count = pg.psql("SELECT count(*), sum(score) FROM scores");
        if count.trim() == format!("500|{}", 2 * (0..500).sum::<i64>()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        count.trim(),
        format!("500|{}", 2 * (0..500).sum::<i64>()),
        "{}",
        e.deployment_log_text()
    );
    let log = e.deployment_log_text();
    assert!(
        !log.contains(SECRET) && !log.contains(PostgresServer::PASSWORD),
        "{log}"
    );
}
