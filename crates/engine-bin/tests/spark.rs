//! Batch jobs on Spark (`"runtime": "spark"`): PySpark models in ModelOp's convention and
//! record models scored per partition, on `local[2]` and on a real standalone cluster; the
//! failures a user meets (the model's, an executor's, an unreachable master), cancel, and
//! S3 input and output through Hadoop's s3a (against moto) on the cluster.
//! Spark starts in some 15 s per job: the jobs share engines and one cluster.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Engine;
use serde_json::{json, Value};
use test_servers::{S3Server, SparkCluster};

/// A record model: init once, a failure on a negative value.
const RECORDS: &str = r#"
# modelop.init
def begin():
    global factor
    factor = 3

# modelop.score
def action(x):
    if x["v"] < 0:
        raise ValueError(f"negative v in record {x['id']}")
    yield {"id": x["id"], "s": x["v"] * factor}
"#;

/// A PySpark model whose rows fail in an executor.
/// A record-set model that tells how many records each of its frames held, and which
/// init (one token per call) scored it.
const FRAME_SIZES: &str = r#"
import uuid
# modelop.recordsets.0: true
# modelop.init
def begin():
    global token
    token = uuid.uuid4().hex

# modelop.score
def score(frame):
    yield {"rows": len(frame), "init": token}
"#;

/// A PySpark model whose UDF is one of its own top-level functions, calling a module of its
/// own folder: both must reach the executors' Python.
const UDF_OF_ITS_OWN: &str = r#"
from pyspark.sql import SparkSession, functions as F, types as T
import helper

def limit(income):
    return helper.limit_for(income)

# modelop.score
def score(external_inputs, external_outputs, external_model_assets):
    spark = SparkSession.builder.getOrCreate()
    frame = spark.read.option("header", "true").option("inferSchema", "true").csv(
        external_inputs[0]["fileUrl"])
    udf = F.udf(limit, T.IntegerType())
    frame.withColumn("limit", udf(F.col("income"))).write.mode("overwrite").json(
        external_outputs[0]["fileUrl"])
"#;

const HELPER: &str = r#"
def limit_for(income):
    return 10000 if income > 50000 else 2500
"#;

const FAILS_IN_EXECUTOR: &str = r#"
from pyspark.sql import SparkSession

# modelop.score
def score(external_inputs, external_outputs, external_model_assets):
    spark = SparkSession.builder.getOrCreate()
    def check(x):
        raise ValueError(f"bad row {x}")
    spark.sparkContext.parallelize([1, 2, 3], 1).map(check).collect()
"#;

/// A PySpark model that fails in its init.
const FAILS_IN_INIT: &str = r#"
# modelop.init
def begin():
    raise RuntimeError("no weights here")

# modelop.score
def score(external_inputs, external_outputs, external_model_assets):
    pass
"#;

/// An engine whose jobs run on `master` unless they say otherwise; local paths allowed
/// under `dir`.
fn engine(dir: &Path, master: &str) -> Engine {
    let file = dir.join("application.json");
    let config = json!({
        "allowedPaths": [dir],
        "jobBatchSize": 50,
        "spark": {"master": master, "conf": {"spark.ui.enabled": false}},
    });
    std::fs::write(&file, config.to_string()).unwrap();
    Engine::start(
        &dir.join("data"),
        &[],
        &[
            ("ENGINE_CONFIG", file.to_str().unwrap()),
            ("SPARK_LOCAL_IP", "127.0.0.1"),
        ],
    )
}

fn job(source: &str, inputs: Value, outputs: Value, params: Value) -> Value {
    json!({
        "jobType": "MODEL_BATCH_JOB",
        "runtime": "spark",
        "model": {"storedModel": {"modelAssets": [{
            "name": "model.py", "assetType": "SOURCE_CODE", "primaryModelSource": true,
            "sourceCode": source,
        }]}},
        "inputData": inputs,
        "outputData": outputs,
        "jobParameters": params,
    })
}

/// The example's applicants, copied into `dir` (where the engine may read them).
fn applicants(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("applicants.csv");
    std::fs::copy(
        common::repo_root().join("examples/spark/applicants.csv"),
        &path,
    )
    .unwrap();
    path
}

/// The UDF model and its helper module over `input`, its rows written under `out`.
fn udf_job(input: &Path, out: &Path, params: Value) -> Value {
    let mut doc = job(
        UDF_OF_ITS_OWN,
        json!([file_asset(input)]),
        json!([file_asset(out)]),
        params,
    );
    doc["model"]["storedModel"]["modelAssets"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "helper.py", "assetType": "SOURCE_CODE", "sourceCode": HELPER}));
    doc
}

fn file_asset(path: &Path) -> Value {
    json!({"assetType": "EXTERNAL_FILE", "name": path.file_name().unwrap().to_str(),
           "fileUrl": format!("file://{}", path.display())})
}

fn submit(e: &Engine, doc: &Value) -> String {
    let (s, created) = e.send("POST", "/api/jobs", doc);
    assert_eq!(s, 201, "{created}");
    created["id"].as_str().expect("an id").to_owned()
}

/// Waits (3 minutes at most: Spark starts slowly on a shared machine) for job `id` to end.
fn finished(e: &Engine, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, v) = e.get(&format!("/api/jobs/{id}"));
        if ["COMPLETE", "ERROR", "CANCELLED"].contains(&v["jobStatus"].as_str().unwrap_or("")) {
            return v;
        }
        assert!(Instant::now() < deadline, "job {id} stays {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn log_of(e: &Engine, id: &str) -> String {
    e.get(&format!("/api/jobs/{id}/log")).1.to_string()
}

/// The part files of a Spark output folder, in order, as one text.
fn parts(dir: &Path) -> String {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|d| d.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("part-")
        })
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// The part files of a Spark output folder as JSON documents, in order.
fn rows(dir: &Path) -> Vec<Value> {
    parts(dir)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Checks a finished job of the credit-limit models: each applicant with its limit.
fn check_limits(e: &Engine, id: &str, out: &Path) {
    let v = finished(e, id);
    assert_eq!(v["jobStatus"], "COMPLETE", "{v}\n{}", log_of(e, id));
    assert_eq!(v["jobResult"], "SUCCESS", "{v}");
    let rows = rows(out);
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.contains(&json!({"id": 2, "income": 88000, "limit": 10000})));
}

/// 1,000 records, two of them failing.
fn records(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("records.jsonl");
    let text: String = (0..1000)
        .map(|i| {
            let v = if i == 17 || i == 640 { -1 } else { i % 7 };
            format!("{{\"id\": {i}, \"v\": {v}}}\n")
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// The JSON lines at `jsonl` as a Parquet file of several row groups beside it (pyarrow).
fn parquet(jsonl: &Path) -> std::path::PathBuf {
    let path = jsonl.with_extension("parquet");
    let script = "import sys, pyarrow.json as j, pyarrow.parquet as q; \
                  q.write_table(j.read_json(sys.argv[1]), sys.argv[2], row_group_size=100)";
    let out = std::process::Command::new(test_servers::python())
        .args([
            "-c",
            script,
            jsonl.to_str().unwrap(),
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    path
}

/// The record model's outputs on one machine, by `engine run`.
fn on_one_machine(dir: &Path, input: &Path) -> String {
    let model = dir.join("records.py");
    std::fs::write(&model, RECORDS).unwrap();
    let out = dir.join("one-machine.jsonl");
    let run = common::run_engine(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", common::text(&run.stderr));
    std::fs::read_to_string(out).unwrap()
}

/// Submits the record model over `input` in partitions of 2 KiB (a small file is one
/// otherwise), its records written under `out`.
fn submit_records(e: &Engine, input: &Path, out: &Path) -> String {
    submit(
        e,
        &job(
            RECORDS,
            json!([file_asset(input)]),
            json!([file_asset(out)]),
            json!({"spark.sql.files.maxPartitionBytes": 2048}),
        ),
    )
}

/// Checks a finished record-model job: counts, the same records as one machine, the
/// failures named.
fn check_records_job(e: &Engine, id: &str, v: &Value, out: &Path, want: &str) {
    let log = log_of(e, id);
    assert_eq!(v["jobStatus"], "COMPLETE", "{v}\n{log}");
    assert_eq!(v["jobResult"], "FAILURE", "{v}");
    assert_eq!(v["recordsIn"], 1000, "{v}");
    assert_eq!(v["recordsOut"], 998, "{v}");
    assert_eq!(v["recordsFailed"], 2, "{v}");
    assert_eq!(parts(out), want, "Spark's records differ from engine run's");
    assert!(log.contains("negative v in record 17"), "{log}");
    assert!(log.contains("negative v in record 640"), "{log}");
    assert!(log.contains("Spark application"), "{log}");
}

#[test]
fn pyspark_and_record_models_run_on_local_spark_and_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), "local[2]");

    // A PySpark model in ModelOp's convention (the example): its own I/O through Spark.
    // Submitted as docs/spark.md shows, by `engine job create --runtime spark`.
    let limits = dir.path().join("limits");
    let created = common::run_engine(&[
        "job",
        "create",
        "batchjob",
        "examples/spark/pyspark_model.py",
        "examples/spark/applicants.csv",
        limits.to_str().unwrap(),
        "--runtime",
        "spark",
        "--json",
        "--engine",
        &e.url,
    ]);
    assert!(
        created.status.success(),
        "{}",
        common::text(&created.stderr)
    );
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let pyspark = created["id"].as_str().unwrap().to_owned();

    // A PySpark model whose UDF is its own function, calling its own module.
    let applicants = applicants(dir.path());
    let udf_out = dir.path().join("udf-limits");
    let udf = submit(&e, &udf_job(&applicants, &udf_out, json!({})));

    // A record model over eight partitions.
    let input = records(dir.path());
    let scores = dir.path().join("scores");
    let records = submit_records(&e, &input, &scores);
    // An input embedded in the document: written to a file the executors read.
    let embedded_out = dir.path().join("embedded");
    let embedded = submit(
        &e,
        &job(
            RECORDS,
            json!([{"name": "few", "encoding": "json",
                    "fileContentString": "{\"id\": 1, \"v\": 2}\n{\"id\": 2, \"v\": 5}\n"}]),
            json!([file_asset(&embedded_out)]),
            json!({}),
        ),
    );
    // A record-set model's frames: the engine's jobBatchSize records at most.
    let frames_out = dir.path().join("frames");
    let frames = submit(
        &e,
        &job(
            FRAME_SIZES,
            json!([file_asset(&input)]),
            json!([file_asset(&frames_out)]),
            json!({"spark.sql.files.maxPartitionBytes": 2048}),
        ),
    );
    let in_init = submit(
        &e,
        &job(
            FAILS_IN_INIT,
            json!([file_asset(&input)]),
            json!([]),
            json!({}),
        ),
    );
    let in_executor = submit(
        &e,
        &job(
            FAILS_IN_EXECUTOR,
            json!([file_asset(&input)]),
            json!([]),
            json!({}),
        ),
    );

    check_limits(&e, &pyspark, &limits);
    check_limits(&e, &udf, &udf_out);

    let want = on_one_machine(dir.path(), &input);
    let v = finished(&e, &records);
    check_records_job(&e, &records, &v, &scores, &want);

    let v = finished(&e, &embedded);
    assert_eq!(v["jobResult"], "SUCCESS", "{v}\n{}", log_of(&e, &embedded));
    assert_eq!(
        parts(&embedded_out),
        "{\"id\":1,\"s\":6}\n{\"id\":2,\"s\":15}\n"
    );

    let v = finished(&e, &frames);
    assert_eq!(v["jobStatus"], "COMPLETE", "{v}\n{}", log_of(&e, &frames));
    let frames = rows(&frames_out);
    let sizes: Vec<u64> = frames.iter().map(|f| f["rows"].as_u64().unwrap()).collect();
    assert_eq!(sizes.iter().sum::<u64>(), 1000, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 50), "{sizes:?}");
    assert!(sizes.contains(&50), "{sizes:?}");
    // Eight partitions read, scored in two (local[2]'s slots): two inits.
    let inits: std::collections::BTreeSet<&str> =
        frames.iter().map(|f| f["init"].as_str().unwrap()).collect();
    assert_eq!(inits.len(), 2, "{frames:?}");

    let v = finished(&e, &in_init);
    assert_eq!(v["jobStatus"], "ERROR", "{v}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert_eq!(
        reason,
        "the model's init failed: RuntimeError: no weights here"
    );
    let result = e.get(&format!("/api/jobs/{in_init}/result")).1.to_string();
    assert!(result.contains("line 4, in begin"), "{result}");

    let v = finished(&e, &in_executor);
    assert_eq!(v["jobStatus"], "ERROR", "{v}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("a Spark task failed: ValueError: bad row"),
        "{reason}"
    );
}

#[test]
fn a_job_on_an_unreachable_master_or_of_an_unknown_runtime_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), "local[2]");
    let input = records(dir.path());
    let nobody = format!("spark://127.0.0.1:{}", test_servers::free_port());
    let id = submit(
        &e,
        &job(
            RECORDS,
            json!([file_asset(&input)]),
            json!([file_asset(&dir.path().join("out"))]),
            json!({"spark.master": nobody}),
        ),
    );
    let v = finished(&e, &id);
    assert_eq!(v["jobStatus"], "ERROR", "{v}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(&format!("the Spark master {nobody} is unreachable: ")),
        "{reason}"
    );

    let mut doc = job(RECORDS, json!([file_asset(&input)]), json!([]), json!({}));
    doc["runtime"] = json!("mars");
    let (s, v) = e.send("POST", "/api/jobs", &doc);
    assert_eq!(s, 400, "{v}");
    assert!(
        v.to_string()
            .contains("runtime 'mars' is not one of local, spark"),
        "{v}"
    );
}

#[test]
fn cancelling_a_job_kills_its_spark_application() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), "local[2]");
    let sleeper = r#"
import time
# modelop.score
def score(external_inputs, external_outputs, external_model_assets):
    time.sleep(600)
"#;
    let input = records(dir.path());
    let id = submit(
        &e,
        &job(sleeper, json!([file_asset(&input)]), json!([]), json!({})),
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    while !log_of(&e, &id).contains("Spark application") {
        assert!(Instant::now() < deadline, "{}", log_of(&e, &id));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (s, v) = e.send("POST", &format!("/api/jobs/{id}/cancel"), &json!({}));
    assert!(s < 300, "{s} {v}");
    let v = finished(&e, &id);
    assert_eq!(v["jobStatus"], "CANCELLED", "{v}");
    // Nothing of the application is left running.
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("model-runtime job {id}")])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn both_kinds_of_model_run_on_a_standalone_cluster() {
    let cluster = SparkCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), cluster.master());

    let source =
        std::fs::read_to_string(common::repo_root().join("examples/spark/pyspark_model.py"))
            .unwrap();
    let applicants = applicants(dir.path());
    let limits = dir.path().join("limits");
    let pyspark = submit(
        &e,
        &job(
            &source,
            json!([file_asset(&applicants)]),
            json!([file_asset(&limits)]),
            json!({}),
        ),
    );
    // The model's own modules reach executors as a shipped archive (addPyFile), not only
    // through a path they happen to share with the engine: here the path is taken away.
    let udf_out = dir.path().join("udf-limits");
    let udf = submit(
        &e,
        &udf_job(
            &applicants,
            &udf_out,
            json!({"spark.executorEnv.PYTHONPATH": "/nowhere"}),
        ),
    );
    // Columns (Parquet) reach the engine on the executors as Parquet, not as records.
    let jsonl = records(dir.path());
    let input = parquet(&jsonl);
    let scores = dir.path().join("scores");
    let records = submit_records(&e, &input, &scores);
    check_limits(&e, &pyspark, &limits);
    check_limits(&e, &udf, &udf_out);
    // S3 in and out through Hadoop's s3a (the hadoop-aws jars shipped by --jars), the
    // settings in the job's parameters as docs/spark.md shows.
    let s3 = S3Server::start();
    s3.create_bucket("records");
    s3.put(
        "records",
        "in/records.jsonl",
        &std::fs::read(&jsonl).unwrap(),
    );
    let jars: Vec<String> = test_servers::hadoop_aws_jars()
        .iter()
        .map(|j| j.display().to_string())
        .collect();
    let mut params = json!({
        "spark.sql.files.maxPartitionBytes": 2048,
        "sparkSubmitArgs": ["--jars", jars.join(",")],
    });
    for (k, v) in test_servers::s3a_settings(&s3.endpoint(), "test", "test") {
        params[k] = json!(v);
    }
    let on_s3 = submit(
        &e,
        &job(
            RECORDS,
            json!([{"assetType": "EXTERNAL_FILE", "name": "records.jsonl",
                    "fileUrl": "s3://records/in/records.jsonl"}]),
            json!([{"assetType": "EXTERNAL_FILE", "name": "scores",
                    "fileUrl": "s3://records/scores"}]),
            params,
        ),
    );

    let want = on_one_machine(dir.path(), &jsonl);
    let v = finished(&e, &records);
    check_records_job(&e, &records, &v, &scores, &want);
    // The executors ran on the cluster's worker: the application is the master's.
    assert!(log_of(&e, &records).contains("Spark application app-"));

    let v = finished(&e, &on_s3);
    assert_eq!(v["jobStatus"], "COMPLETE", "{v}\n{}", log_of(&e, &on_s3));
    assert_eq!(v["recordsIn"], 1000, "{v}");
    assert_eq!(v["recordsFailed"], 2, "{v}");
    let written: String = s3
        .list("records", "scores/part-")
        .iter()
        .map(|k| String::from_utf8(s3.get("records", k).unwrap()).unwrap())
        .collect();
    assert_eq!(
        written, want,
        "the records written to S3 differ from engine run's"
    );
}
