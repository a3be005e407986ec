//! The R runner end to end: each test starts a real `Rscript` worker on a model from the
//! repository's `tests/models/r/`, copied into a fresh working directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use runner_r::RRunner;
use runtime_core::{
    AllRecordsFunction, Error, ExplicitNames, InitContext, Language, LogSource, Map, MemoryLog,
    ModelSpec, Runner, ScoreItem, Session, SessionConfig, Slot, SmartComments, Value,
};
use serde_json::json;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/models/r")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

struct Model {
    /// The job's folder; the working directory is `work/` inside it.
    dir: tempfile::TempDir,
    explicit: ExplicitNames,
    log: Arc<MemoryLog>,
}

impl Model {
    /// `main` is a file under tests/models/r, or `folder/file` to copy a whole folder. The
    /// main source is written as `__model.R`, as the jobs crate does.
    fn new(main: &str) -> Model {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let source = match main.rsplit_once('/') {
            Some((folder, file)) => {
                copy_tree(&models().join(folder), &work);
                let s = std::fs::read_to_string(work.join(file)).unwrap();
                std::fs::remove_file(work.join(file)).unwrap();
                s
            }
            None => {
                std::fs::create_dir_all(&work).unwrap();
                std::fs::read_to_string(models().join(main)).unwrap()
            }
        };
        std::fs::write(work.join("__model.R"), source).unwrap();
        std::fs::create_dir_all(work.join("outputDir")).unwrap();
        Model {
            dir,
            explicit: ExplicitNames::default(),
            log: Arc::new(MemoryLog::default()),
        }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Entry points resolved as the engine does: explicit names, markers, defaults.
    fn spec(&self) -> ModelSpec {
        let source = std::fs::read_to_string(self.work().join("__model.R")).unwrap();
        let comments = SmartComments::parse(&source, Language::R);
        let defined = runtime_core::model::top_level_definitions(&source, Language::R);
        let entry_points =
            comments.entry_points(&self.explicit, |n| defined.iter().any(|d| d == n));
        ModelSpec {
            language: Language::R,
            work_dir: self.work(),
            main_source: "__model.R".into(),
            entry_points,
            recordsets: Default::default(),
            import_paths: Vec::new(),
        }
    }

    async fn start(&self) -> runtime_core::Result<Box<dyn Session>> {
        let config = SessionConfig {
            init: InitContext::Job {
                raw_json: r#"{"name": "job-1", "jobParameters": {"k": 2}}"#.into(),
            },
            log: self.log.clone(),
            env: vec![("HOME".into(), self.dir.path().display().to_string())],
        };
        RRunner::new().start(&self.spec(), config).await
    }

    fn console(&self) -> Vec<String> {
        self.log
            .lines()
            .into_iter()
            .filter(|l| l.source == LogSource::ModelConsole)
            .map(|l| l.message)
            .collect()
    }
}

fn v(j: serde_json::Value) -> Value {
    Value::from(j)
}

fn items(records: &[serde_json::Value]) -> Vec<ScoreItem> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| ScoreItem {
            slot: Slot(0),
            seqno: i as u64 + 1,
            value: v(r.clone()),
        })
        .collect()
}

/// A record value as JSON (key order aside), for comparisons.
fn j(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

/// The single output on slot 1 of each record, as JSON.
fn single(outcomes: Vec<runtime_core::ScoreOutcome>) -> Vec<serde_json::Value> {
    outcomes
        .into_iter()
        .map(|o| {
            let mut outs = o.expect("record scored");
            assert_eq!(outs.len(), 1, "{outs:?}");
            let (slot, value) = outs.remove(0);
            assert_eq!(slot, Slot(1));
            j(&value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn defaults_begin_action_end() {
    let m = Model::new("defaults.R");
    let mut s = m.start().await.unwrap();
    let out = s
        .score(items(&[
            json!({"id": 1, "x": 0.5, "name": "a"}),
            json!({"id": 2, "x": 2, "name": "é ü"}),
        ]))
        .await
        .unwrap();
    assert_eq!(
        single(out),
        vec![
            json!({"id": 1, "y": 10.5, "name": "a"}),
            json!({"id": 2, "y": 12, "name": "é ü"}),
        ]
    );
    s.close().await.unwrap();
    assert!(
        m.console().contains(&"end called".to_owned()),
        "{:?}",
        m.console()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn markers_emit_to_and_arity_two() {
    let m = Model::new("markers.R");
    let spec = m.spec();
    assert_eq!(spec.entry_points.init.as_deref(), Some("setup"));
    assert_eq!(spec.entry_points.score.as_deref(), Some("predict_one"));
    assert_eq!(spec.entry_points.metrics.as_deref(), Some("evaluate"));
    assert_eq!(spec.entry_points.train.as_deref(), Some("fit"));
    let mut s = m.start().await.unwrap();
    let mut batch = items(&[json!({"id": 7}), json!({"id": 8})]);
    batch[1].slot = Slot(2);
    let out = s.score(batch).await.unwrap();
    let first = out[0].clone().unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].0, Slot(3));
    assert_eq!(j(&first[0].1), json!({"seen": 7}));
    assert_eq!(first[1].0, Slot(1));
    assert_eq!(j(&first[1].1), json!({"id": 7, "job": "job-1", "slot": 0}));
    let second = out[1].clone().unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(j(&second[0].1), json!({"id": 8, "job": "job-1", "slot": 2}));
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_gets_a_data_frame_per_input() {
    let m = Model::new("markers.R");
    let mut s = m.start().await.unwrap();
    s.collect(
        Slot(0),
        vec![v(json!({"x": 1.0, "y": "a"})), v(json!({"x": 3, "y": "b"}))],
    )
    .await
    .unwrap();
    s.collect(Slot(0), vec![v(json!({"x": 5, "y": null}))])
        .await
        .unwrap();
    s.collect(
        Slot(2),
        vec![v(json!({"a": 1, "b": true})), v(json!({"a": 2, "c": "z"}))],
    )
    .await
    .unwrap();
    let outs = s.run_all(AllRecordsFunction::Metrics).await.unwrap();
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].0, Slot(1));
    assert_eq!(
        j(&outs[0].1),
        json!({
            "rows": [3, 2],
            "mean_x": 3,
            "columns": ["a", "b", "c"],
            "classes": {"a": "integer", "b": "logical", "c": "character"}
        })
    );
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_batches_bind_as_if_sent_at_once() {
    let m = Model::new("markers.R");
    let mut s = m.start().await.unwrap();
    s.collect(Slot(0), vec![v(json!({"x": 1}))]).await.unwrap();
    s.collect(Slot(0), vec![v(json!({"x": 2.5}))])
        .await
        .unwrap();
    // Each record a batch of its own: a column one batch lacks or has only null in, a
    // column of different kinds in different batches.
    for record in [
        json!({"a": 1, "b": true, "d": 1}),
        json!({"a": 2, "c": "z", "d": "one"}),
        json!({"a": null, "b": null, "d": [1, 2]}),
    ] {
        s.collect(Slot(2), vec![v(record)]).await.unwrap();
    }
    let outs = s.run_all(AllRecordsFunction::Metrics).await.unwrap();
    assert_eq!(
        j(&outs[0].1),
        json!({
            "rows": [2, 3],
            "mean_x": 1.75,
            "columns": ["a", "b", "d", "c"],
            "classes": {"a": "integer", "b": "logical", "d": "list", "c": "character"}
        })
    );
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn train_writes_under_output_dir() {
    let m = Model::new("markers.R");
    let mut s = m.start().await.unwrap();
    let rows: Vec<Value> = (0..10)
        .map(|i| v(json!({"x": i, "y": 2 * i + 1})))
        .collect();
    s.collect(Slot(0), rows).await.unwrap();
    let outs = s.run_all(AllRecordsFunction::Train).await.unwrap();
    assert_eq!(j(&outs[0].1), json!({"trained_on": 10}));
    s.close().await.unwrap();
    let out = m.work().join("outputDir");
    assert_eq!(
        std::fs::read_to_string(out.join("rows.txt")).unwrap(),
        "10\n"
    );
    assert!(out.join("coefficients.rds").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn explicit_names_failures_console_and_invisible_results() {
    let mut m = Model::new("explicit.R");
    m.explicit.init = Some("start_here".into());
    m.explicit.score = Some("score_it".into());
    let mut s = m.start().await.unwrap();
    let out = s
        .score(items(&[
            json!({"id": 1}),
            json!({"id": 2}),
            json!({"id": 3}),
            json!({"id": 4}),
        ]))
        .await
        .unwrap();
    assert_eq!(
        j(&out[0].clone().unwrap()[0].1),
        json!({"id": 1, "ok": true})
    );
    let failure = out[1].clone().unwrap_err();
    assert_eq!(failure.message, "Error in score_it(d): bad record 2");
    assert!(
        failure.traceback.contains("stop(\"bad record \", x$id)"),
        "{}",
        failure.traceback
    );
    assert!(
        failure.traceback.contains("score_it(d)"),
        "{}",
        failure.traceback
    );
    assert!(
        !failure.traceback.contains("modelop_call"),
        "{}",
        failure.traceback
    );
    assert_eq!(
        j(&out[2].clone().unwrap()[0].1),
        json!({"id": 3, "ok": true})
    );
    // A warning is logged, not a failure.
    assert_eq!(
        j(&out[3].clone().unwrap()[0].1),
        json!({"id": 4, "ok": true})
    );
    s.close().await.unwrap();
    let console = m.console();
    for want in ["starting", "a b ", "1 2 ", "scoring 1 ", "scoring 3 "] {
        assert!(
            console.iter().any(|l| l == want),
            "{want:?} not in {console:?}"
        );
    }
    assert!(
        console.iter().any(|l| l.contains("odd record")),
        "{console:?}"
    );

    // A function whose last expression is an assignment returns invisibly: no output.
    let mut m = Model::new("explicit.R");
    m.explicit.score = Some("nothing".into());
    let mut s = m.start().await.unwrap();
    let out = s.score(items(&[json!({"id": 1})])).await.unwrap();
    assert_eq!(out[0].clone().unwrap(), vec![]);
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn begin_failing_fails_the_start() {
    let m = Model::new("begin_fails.R");
    match m.start().await.map(|_| ()) {
        Err(Error::ModelFailed {
            function, message, ..
        }) => {
            assert_eq!(function, "begin");
            assert_eq!(message, "Error in begin(): cannot find the weights");
        }
        other => panic!("expected ModelFailed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dying_worker_names_the_record() {
    for (id, reason) in [
        (3, "exited with status 3"),
        (5, "killed by signal 15 (SIGTERM)"),
    ] {
        let m = Model::new("dies.R");
        let mut s = m.start().await.unwrap();
        let batch = items(&[json!({"id": 1}), json!({"id": 2}), json!({"id": id})]);
        match s.score(batch).await {
            Err(Error::WorkerDied {
                reason: r,
                last_record,
            }) => {
                assert_eq!(r, reason);
                let last = last_record.unwrap();
                assert!(last.starts_with("seqno 3 on slot 0: "), "{last}");
                assert!(
                    last.contains(&format!("\"id\": {id}"))
                        || last.contains(&format!("\"id\":{id}")),
                    "{last}"
                );
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        assert_eq!(s.failed_seqno(), Some(3));
        // The session stays failed.
        assert!(matches!(
            s.score(items(&[json!({"id": 1})])).await,
            Err(Error::WorkerDied { .. })
        ));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn assets_load_by_relative_path() {
    let m = Model::new("asset/model.R");
    let mut s = m.start().await.unwrap();
    let out = s.score(items(&[json!({"x": [1, 1, 2]})])).await.unwrap();
    assert_eq!(single(out), vec![json!({"score": 9, "rows": 2})]);
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_packages_are_named() {
    let m = Model::new("needs/model.R");
    match m.start().await.map(|_| ()) {
        Err(Error::ModelLoad(message)) => {
            assert!(message.contains("notapkg.one, ranger"), "{message}");
            assert!(
                message.contains("apt-get install r-cran-notapkgone r-cran-ranger"),
                "{message}"
            );
            assert!(!message.contains("jsonlite"), "{message}");
        }
        other => panic!("expected ModelLoad, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arity_and_missing_functions_are_load_errors() {
    let m = Model::new("arity4.R");
    match m.start().await.map(|_| ()) {
        Err(Error::ModelLoad(message)) => {
            assert!(message.contains("takes 4 arguments"), "{message}")
        }
        other => panic!("expected ModelLoad, got {other:?}"),
    }
    let mut m = Model::new("identity.R");
    m.explicit.score = Some("nowhere".into());
    match m.start().await.map(|_| ()) {
        Err(Error::ModelLoad(message)) => {
            assert!(message.contains("'nowhere' is not defined"), "{message}")
        }
        other => panic!("expected ModelLoad, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn record_values_reach_r_as_documented() {
    let m = Model::new("values.R");
    let mut s = m.start().await.unwrap();
    let mut record = Map::new();
    record.push("i", 3);
    record.push("f", 1.5);
    record.push("s", "x");
    record.push("b", true);
    record.push("n", Value::Null);
    record.push("ints", Value::Array(vec![1.into(), Value::Null, 3.into()]));
    record.push("nums", Value::Array(vec![1.into(), 2.5.into()]));
    record.push("mixed", Value::Array(vec![1.into(), "a".into()]));
    record.push("obj", v(json!({"k": "v"})));
    record.push("bytes", Value::Bytes(vec![0, 255]));
    record.push("big", Value::Int(1 << 40));
    let out = s
        .score(vec![ScoreItem {
            slot: Slot(0),
            seqno: 1,
            value: Value::Map(record),
        }])
        .await
        .unwrap();
    let got = single(out).remove(0);
    assert_eq!(got["class"], json!("list"));
    assert_eq!(
        got["types"],
        json!({"i": "integer", "f": "numeric", "s": "character", "b": "logical", "n": "NULL",
               "ints": "integer", "nums": "numeric", "mixed": "list", "obj": "list",
               "bytes": "raw", "big": "numeric"})
    );
    assert_eq!(got["lengths"]["ints"], json!(3));
    assert_eq!(got["echo"]["ints"], json!([1, null, 3]));
    assert_eq!(got["echo"]["mixed"], json!([1, "a"]));
    assert_eq!(got["echo"]["big"], json!(1u64 << 40));
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn r_values_become_records_as_documented() {
    let m = Model::new("outputs.R");
    let mut s = m.start().await.unwrap();
    let kinds = [
        "na",
        "nonfinite",
        "vectors",
        "whole",
        "factor",
        "frame",
        "matrix",
        "raw",
        "unnamed",
        "closure",
        "env",
    ];
    let batch: Vec<serde_json::Value> = kinds.iter().map(|k| json!({"kind": k})).collect();
    let out = s.score(items(&batch)).await.unwrap();
    let one = |i: usize| out[i].clone().unwrap().remove(0).1;
    assert_eq!(
        j(&one(0)),
        json!({"a": null, "b": null, "c": null, "d": null, "e": null})
    );
    let Value::Map(nf) = one(1) else { panic!() };
    assert!(matches!(nf.get("nan"), Some(Value::Float(f)) if f.is_nan()));
    assert_eq!(nf.get("inf"), Some(&Value::Float(f64::INFINITY)));
    assert_eq!(
        j(&one(2)),
        json!({"one": 1.5, "ints": [1, 2, 3], "empty": [], "named": {"a": 1, "b": 2}})
    );
    assert_eq!(one(3).get("two"), Some(&Value::Int(2)));
    assert_eq!(one(3).get("big"), Some(&Value::Float(2f64.powi(60))));
    assert_eq!(j(&one(4)), json!(["lo", "hi", "lo"]));
    assert_eq!(j(&one(5)), json!([{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]));
    assert_eq!(j(&one(6)), json!([[1, 3, 5], [2, 4, 6]]));
    assert_eq!(one(7), Value::Bytes(vec![1, 2, 255]));
    assert_eq!(j(&one(8)), json!([1, "a", true]));
    for i in [9, 10] {
        let f = out[i].clone().unwrap_err();
        assert!(
            f.message.contains("cannot become a record value"),
            "{}",
            f.message
        );
    }
    s.close().await.unwrap();
}
