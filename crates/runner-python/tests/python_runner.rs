//! The Python runner end to end: each test spawns the `python-worker` binary (real CPython)
//! on a model from `tests/models/`, copied into a fresh working directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use runner_python::PythonRunner;
use runtime_core::{
    AllRecordsFunction, EntryPoints, Error, InitContext, Language, LogSource, MemoryLog, ModelSpec,
    Runner, ScoreItem, Session, SessionConfig, Slot, Value,
};
use serde_json::json;
use worker::{WorkerCommand, WorkerSession};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_tree(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

struct Model {
    dir: tempfile::TempDir,
    main: String,
    entry: EntryPoints,
    log: Arc<MemoryLog>,
    init: InitContext,
    recordsets: std::collections::BTreeMap<Slot, bool>,
}

impl Model {
    /// `main` is a file (or folder/file) under tests/models; the whole folder holding it is
    /// copied.
    fn new(main: &str) -> Model {
        let dir = tempfile::tempdir().unwrap();
        let (folder, file) = match main.rsplit_once('/') {
            Some((f, m)) => (models().join(f), m.to_owned()),
            None => (models(), main.to_owned()),
        };
        copy_tree(&folder, dir.path());
        Model {
            dir,
            main: file,
            entry: EntryPoints::default(),
            log: Arc::new(MemoryLog::default()),
            init: InitContext::Job {
                raw_json: r#"{"name": "job-1", "model": {"x": 1}}"#.into(),
            },
            recordsets: Default::default(),
        }
    }

    /// Input slot 0 takes record sets.
    fn record_sets(mut self) -> Model {
        self.recordsets.insert(Slot(0), true);
        self
    }

    fn score(mut self, name: &str) -> Model {
        self.entry.score = Some(name.into());
        self
    }

    fn init(mut self, name: &str) -> Model {
        self.entry.init = Some(name.into());
        self
    }

    fn spec(&self) -> ModelSpec {
        ModelSpec {
            language: Language::Python,
            work_dir: self.dir.path().to_owned(),
            main_source: self.main.clone().into(),
            entry_points: self.entry.clone(),
            recordsets: self.recordsets.clone(),
            import_paths: Vec::new(),
        }
    }

    fn runner() -> PythonRunner {
        PythonRunner::new(WorkerCommand::new(env!("CARGO_BIN_EXE_python-worker")))
    }

    async fn start(&self) -> runtime_core::Result<WorkerSession> {
        Self::runner()
            .start_worker(
                &self.spec(),
                SessionConfig {
                    init: self.init.clone(),
                    log: self.log.clone(),
                    env: Vec::new(),
                },
            )
            .await
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

/// Maps with their entries sorted, so outputs compare with `json!` values (which sort keys).
fn norm(value: Value) -> Value {
    match value {
        Value::Map(m) => {
            let mut entries: Vec<(Value, Value)> = m
                .into_entries()
                .into_iter()
                .map(|(k, v)| (k, norm(v)))
                .collect();
            entries.sort_by_key(|(k, _)| k.to_string());
            Value::Map(entries.into())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(norm).collect()),
        other => other,
    }
}

fn norm_outs(outs: Vec<(Slot, Value)>) -> Vec<(Slot, Value)> {
    outs.into_iter().map(|(s, v)| (s, norm(v))).collect()
}

fn items(values: Vec<Value>) -> Vec<ScoreItem> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| ScoreItem {
            slot: Slot(0),
            seqno: i as u64 + 1,
            value,
        })
        .collect()
}

/// The outputs of each record, panicking on a failed record.
fn ok(outcomes: Vec<runtime_core::ScoreOutcome>) -> Vec<Vec<(Slot, Value)>> {
    outcomes
        .into_iter()
        .map(|o| norm_outs(o.unwrap_or_else(|f| panic!("record failed: {f:?}"))))
        .collect()
}

fn out1(values: Vec<Value>) -> Vec<(Slot, Value)> {
    values.into_iter().map(|v| (Slot(1), v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arity_one_generator_through_the_runner_trait() {
    let m = Model::new("shapes.py").score("double");
    let runner = Model::runner();
    let mut s: Box<dyn Session> = runner
        .start(
            &m.spec(),
            SessionConfig {
                init: m.init.clone(),
                log: m.log.clone(),
                env: Vec::new(),
            },
        )
        .await
        .unwrap();
    let got = s
        .score(items(vec![
            v(json!({"id": 1, "x": 1.5})),
            v(json!({"id": 2, "x": -2})),
        ]))
        .await
        .unwrap();
    assert_eq!(
        ok(got),
        vec![
            out1(vec![v(json!({"id": 1, "y": 3.0}))]),
            out1(vec![v(json!({"id": 2, "y": -4}))]),
        ]
    );
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arity_two_and_three_get_slot_and_seqno() {
    let m = Model::new("shapes.py").score("two");
    let mut s = m.start().await.unwrap();
    let batch = vec![ScoreItem {
        slot: Slot(2),
        seqno: 41,
        value: v(json!("a")),
    }];
    let got = ok(s.score(batch.clone()).await.unwrap());
    assert_eq!(got, vec![out1(vec![v(json!({"slot": 2, "datum": "a"}))])]);
    s.shutdown().await.unwrap();

    let m = Model::new("shapes.py").score("three");
    let mut s = m.start().await.unwrap();
    let got = ok(s.score(batch).await.unwrap());
    assert_eq!(got, vec![out1(vec![v(json!(["a", 2, 41]))])]);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_arities_are_refused_at_load() {
    for (name, shown) in [("four", "four(a, b, c, d)"), ("none", "none()")] {
        let m = Model::new("shapes.py").score(name);
        match m.start().await {
            Err(Error::ModelLoad(msg)) => {
                assert!(msg.contains(shown), "{msg}");
                assert!(msg.contains("1 (datum), 2 (datum, slot) or 3"), "{msg}");
            }
            other => panic!("expected a load error, got {other:?}"),
        }
    }
    let m = Model::new("shapes.py").score("missing");
    match m.start().await {
        Err(Error::ModelLoad(msg)) => assert!(msg.contains("'missing'"), "{msg}"),
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generators_returns_and_none() {
    let m = Model::new("shapes.py").score("many");
    let mut s = m.start().await.unwrap();
    let got = ok(s
        .score(items(vec![v(json!(0)), v(json!(3))]))
        .await
        .unwrap());
    assert_eq!(
        got,
        vec![vec![], out1(vec![v(json!(0)), v(json!(1)), v(json!(2))])]
    );
    s.shutdown().await.unwrap();

    let m = Model::new("shapes.py").score("returns");
    let mut s = m.start().await.unwrap();
    let got = ok(s
        .score(items(vec![v(json!(0)), v(json!(1)), v(json!(2))]))
        .await
        .unwrap());
    assert_eq!(
        got,
        vec![
            vec![],
            out1(vec![v(json!([1, 2]))]),
            out1(vec![v(json!({"d": 2}))]),
        ]
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuples_route_outputs_to_slots() {
    let m = Model::new("shapes.py").score("routed");
    let mut s = m.start().await.unwrap();
    let got = ok(s.score(items(vec![v(json!("r"))])).await.unwrap());
    assert_eq!(
        got,
        vec![vec![
            (Slot(3), v(json!("r"))),
            (Slot(1), v(json!("r"))),
            (Slot(1), v(json!(["a", 1]))),
            (Slot(5), v(json!({"deep": [1, 2]}))),
        ]]
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_and_with_an_argument() {
    let m = Model::new("init_model.py")
        .init("begin_none")
        .score("action");
    let mut s = m.start().await.unwrap();
    let got = ok(s.score(items(vec![v(json!(1))])).await.unwrap());
    assert_eq!(got, vec![out1(vec![v(json!({"called": true}))])]);
    s.shutdown().await.unwrap();

    let m = Model::new("init_model.py")
        .init("begin_arg")
        .score("action");
    let mut s = m.start().await.unwrap();
    let got = ok(s.score(items(vec![v(json!(1))])).await.unwrap());
    assert_eq!(
        got,
        vec![out1(vec![v(json!({
            "raw": r#"{"name": "job-1", "model": {"x": 1}}"#,
            "keys": ["job", "rawJson"],
            "name": "job-1",
        }))])]
    );
    s.shutdown().await.unwrap();

    let mut m = Model::new("init_model.py")
        .init("begin_arg")
        .score("action");
    m.init = InitContext::Deployment {
        raw_json: r#"{"name": "dep-1"}"#.into(),
    };
    let mut s = m.start().await.unwrap();
    let got = ok(s.score(items(vec![v(json!(1))])).await.unwrap());
    assert_eq!(
        got[0][0].1.get("keys"),
        Some(&v(json!(["deployedModel", "rawJson"])))
    );
    assert_eq!(got[0][0].1.get("name"), Some(&v(json!("dep-1"))));
    s.shutdown().await.unwrap();

    let m = Model::new("init_model.py")
        .init("begin_two")
        .score("action");
    match m.start().await {
        Err(Error::ModelLoad(msg)) => assert!(msg.contains("begin_two(a, b)"), "{msg}"),
        other => panic!("expected a load error, got {other:?}"),
    }
}

/// After init (or loading, for a model without one) what the model keeps is frozen out
/// of the cyclic collector's walks (docs/python-models.md, "Init").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heap_is_frozen_after_init_with_or_without_one() {
    for m in [
        Model::new("init_model.py")
            .init("begin_none")
            .score("frozen"),
        Model::new("init_model.py").score("frozen"),
    ] {
        let mut s = m.start().await.unwrap();
        let got = ok(s.score(items(vec![v(json!(1))])).await.unwrap());
        assert_eq!(got, vec![out1(vec![Value::Bool(true)])]);
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_raising_fails_with_its_traceback() {
    let m = Model::new("init_model.py")
        .init("begin_raises")
        .score("action");
    match m.start().await {
        Err(Error::ModelFailed {
            function,
            message,
            traceback,
        }) => {
            assert_eq!(function, "begin_raises");
            assert_eq!(message, "RuntimeError: cannot open weights.pkl");
            assert!(traceback.contains("in helper"), "{traceback}");
            assert!(traceback.contains("init_model.py"), "{traceback}");
            assert!(!traceback.contains("<model-runtime runner>"), "{traceback}");
        }
        other => panic!("expected ModelFailed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_record_does_not_stop_the_batch() {
    let m = Model::new("shapes.py").score("fails");
    let mut s = m.start().await.unwrap();
    let got = s
        .score(items(vec![
            v(json!(1)),
            v(json!(2)),
            v(json!(3)),
            v(json!(4)),
            v(json!(5)),
        ]))
        .await
        .unwrap();
    assert_eq!(got[0], Ok(out1(vec![v(json!(1))])));
    let f = got[1].clone().unwrap_err();
    assert_eq!(f.message, "ValueError: bad 2");
    assert!(f.traceback.contains("raise ValueError"), "{}", f.traceback);
    assert!(f.traceback.contains("shapes.py"), "{}", f.traceback);
    let w = got[2].clone().unwrap_err();
    assert_eq!(w.message, "UserWarning: careful with 3");
    let k = got[3].clone().unwrap_err();
    assert_eq!(k.message, "KeyError: 'half way'");
    assert_eq!(got[4], Ok(out1(vec![v(json!(5))])));
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_exit_names_the_last_record() {
    let m = Model::new("dies.py").score("exits");
    let mut s = m.start().await.unwrap();
    let batch = items((1..=5).map(|n| v(json!({"n": n}))).collect());
    match s.score(batch).await {
        Err(Error::WorkerDied {
            reason,
            last_record,
        }) => {
            assert_eq!(reason, "exited with status 3");
            let last = last_record.unwrap();
            assert!(last.contains("seqno 3"), "{last}");
            assert!(last.contains(r#"{"n": 3}"#), "{last}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    // The session stays dead, with the same answer.
    assert!(matches!(
        s.score(items(vec![v(json!({"n": 1}))])).await,
        Err(Error::WorkerDied { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segfault_is_reported_as_sigsegv() {
    let m = Model::new("dies.py").score("segfaults");
    let mut s = m.start().await.unwrap();
    let batch = items((1..=3).map(|n| v(json!({"n": n}))).collect());
    match s.score(batch).await {
        Err(Error::WorkerDied {
            reason,
            last_record,
        }) => {
            assert!(
                reason.starts_with("killed by signal 11 (SIGSEGV"),
                "{reason}"
            );
            assert!(last_record.unwrap().contains("seqno 2"));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    // The fault handler's report came through stderr into the log before the error.
    let console = m.console().join("\n");
    assert!(
        console.contains("Fatal Python error: Segmentation fault"),
        "{console}"
    );
    assert!(console.contains("in segfaults"), "{console}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_reach_the_log_as_model_console() {
    let m = Model::new("printing.py");
    let mut m = m.score("action");
    m.entry.end = Some("end".into());
    let mut s = m.start().await.unwrap();
    ok(s.score(items(vec![v(json!(7))])).await.unwrap());
    s.shutdown().await.unwrap();
    let console = m.console();
    for line in [
        "loading the printing model",
        "scoring 7",
        "to stderr 7",
        "raw write from fd 1",
        "end was called",
    ] {
        assert!(
            console.iter().any(|l| l == line),
            "{line:?} not in {console:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_named_inspect_does_not_shadow_the_stdlib() {
    let m = Model::new("inspect.py").score("action");
    let mut s = m.start().await.unwrap();
    let got = ok(s.score(items(vec![v(json!(1))])).await.unwrap());
    assert_eq!(
        got,
        vec![out1(vec![v(json!({
            "stdlib_inspect": true,
            "dataclasses": true,
            "me": "__model",
        }))])]
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sibling_packages_are_importable() {
    let m = Model::new("pkg/main.py").score("action");
    let mut s = m.start().await.unwrap();
    let got = ok(s.score(items(vec![v(json!(5))])).await.unwrap());
    assert_eq!(got, vec![out1(vec![v(json!(15))])]);
    s.shutdown().await.unwrap();
}

/// A record-set model's column of answers (numpy or pandas, to the default slot or routed)
/// gives each record its own element; a column of another length belongs to the batch's
/// first record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_set_columns_give_each_record_its_element() {
    let xs = || {
        items(vec![
            v(json!({"x": 1})),
            v(json!({"x": 2})),
            v(json!({"x": 3})),
        ])
    };
    let run = |f: &'static str| async move {
        let m = Model::new("frames.py").score(f).record_sets();
        let mut s = m.start().await.unwrap();
        let got = ok(s.score(xs()).await.unwrap());
        s.shutdown().await.unwrap();
        got
    };
    assert_eq!(
        run("column").await,
        vec![
            out1(vec![v(json!(10))]),
            out1(vec![v(json!(20))]),
            out1(vec![v(json!(30))])
        ]
    );
    assert_eq!(
        run("routed_column").await,
        [10, 20, 30].map(|y| vec![(Slot(3), v(json!(y)))]).to_vec()
    );
    assert_eq!(
        run("two_columns").await,
        [(10, 2), (20, 3), (30, 4)]
            .map(|(a, b)| vec![(Slot(1), v(json!(a))), (Slot(2), v(json!(b)))])
            .to_vec()
    );
    assert_eq!(
        run("column_of_wrong_length").await,
        vec![out1(vec![v(json!([1]))]), vec![], vec![]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_frame_answer_gives_each_row_its_typed_values() {
    let m = Model::new("frames.py").score("typed_frame").record_sets();
    let mut s = m.start().await.unwrap();
    let records = vec![v(json!({"x": 1})), v(json!({"x": 2})), v(json!({"x": 3}))];
    let got = ok(s.score(items(records)).await.unwrap());
    s.shutdown().await.unwrap();
    // The frame comes back reversed: each row still reaches the record of its index label.
    // A missing string is NaN as pandas holds it, a missing nullable integer or time null.
    let nan = |r: &Value| match r {
        Value::Map(m) => m
            .iter()
            .any(|(_, x)| matches!(x, Value::Float(f) if f.is_nan())),
        _ => false,
    };
    assert!(nan(&got[1][0].1), "{:?}", got[1]);
    assert_eq!(
        got[0],
        out1(vec![v(json!({
            "x": 1, "i": 2, "f": 0.5, "b": false, "s": "a", "n": 1,
            "t": "2024-01-02T00:00:00", "c": "u"
        }))])
    );
    let Value::Map(middle) = &got[1][0].1 else {
        panic!("{:?}", got[1])
    };
    let mut rest = runtime_core::Map::with_capacity(middle.len());
    for (k, x) in middle.iter().filter(|(k, _)| **k != v(json!("s"))) {
        rest.push(k.clone(), x.clone());
    }
    assert_eq!(
        Value::Map(rest),
        v(json!({"x": 2, "i": 4, "f": 1.0, "b": true, "n": null, "t": null, "c": "v"}))
    );
    assert_eq!(
        got[2],
        out1(vec![v(json!({
            "x": 3, "i": 6, "f": 1.5, "b": true, "s": "c", "n": 3,
            "t": "2024-01-04T00:00:00", "c": "u"
        }))])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_answers_is_read_by_column_routed_and_failed_per_record() {
    let records = || {
        items(vec![
            v(json!({"x": 1, "y": 1.5, "s": "a"})),
            v(json!({"x": 2, "y": 2.5, "s": "b"})),
            v(json!({"x": 3, "y": -0.0, "s": "c"})),
        ])
    };
    let model = |f: &'static str| Model::new("frames.py").score(f).record_sets();
    let mut s = model("dtypes").start().await.unwrap();
    let got = ok(s.score(records()).await.unwrap());
    assert_eq!(got[0], out1(vec![v(json!({"x": "int64", "y": "float64"}))]));
    s.shutdown().await.unwrap();

    let mut s = model("routed_frame").start().await.unwrap();
    let got = ok(s.score(records()).await.unwrap());
    assert_eq!(
        got[2],
        vec![(Slot(3), v(json!({"x": 3, "y": 6, "s": "c"})))]
    );
    s.shutdown().await.unwrap();

    let mut s = model("bad_cell").start().await.unwrap();
    let got = s.score(records()).await.unwrap();
    let failure = got[0].as_ref().unwrap_err();
    assert!(
        failure
            .message
            .contains("TypeError: cannot convert an object of type 'builtins.object'"),
        "{failure:?}"
    );
    let outs = got[1].as_ref().unwrap();
    assert_eq!(outs.len(), 1);
    assert_eq!(
        serde_json::to_value(&outs[0].1).unwrap(),
        json!({"x": 2, "y": 2.5, "s": "b", "o": 1})
    );
    s.shutdown().await.unwrap();

    // A frame that cannot be read fails every record of the batch, and the session goes on.
    for (f, why) in [
        (
            "unreadable_label",
            "TypeError: cannot convert an object of type 'builtins.object'",
        ),
        (
            "negative_slot",
            "ValueError: output slot -3 is not a slot number",
        ),
    ] {
        let mut s = model(f).start().await.unwrap();
        for _ in 0..2 {
            let got = s.score(records()).await.unwrap();
            assert_eq!(got.len(), 3);
            for outcome in &got {
                let failure = outcome.as_ref().unwrap_err();
                assert!(failure.message.contains(why), "{f}: {failure:?}");
            }
        }
        s.shutdown().await.unwrap();
    }

    // Two columns of one label: a row is a dict, the last one kept.
    let mut s = model("same_label_twice").start().await.unwrap();
    let got = ok(s.score(records()).await.unwrap());
    assert_eq!(got[1], out1(vec![v(json!({"a": 2}))]));
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_gets_one_data_frame_per_input() {
    let mut m = Model::new("frames.py");
    m.entry.metrics = Some("metrics".into());
    let mut s = m.start().await.unwrap();
    s.collect(Slot(0), vec![v(json!({"x": 1})), v(json!({"x": 2.5}))])
        .await
        .unwrap();
    s.collect(Slot(0), vec![v(json!({"x": 3}))]).await.unwrap();
    s.collect(Slot(2), vec![v(json!({"a": 1, "b": 2}))])
        .await
        .unwrap();
    let got = norm_outs(s.run_all(AllRecordsFunction::Metrics).await.unwrap());
    assert_eq!(
        got,
        vec![(
            Slot(1),
            v(json!({
                "baseline_rows": 3,
                "sample_rows": 1,
                "baseline_x_sum": 6.5,
                "sample_columns": ["a", "b"],
                "type": "DataFrame",
            }))
        )]
    );
    s.shutdown().await.unwrap();

    let mut m = Model::new("frames.py");
    m.entry.metrics = Some("metrics_none".into());
    let mut s = m.start().await.unwrap();
    let got = norm_outs(s.run_all(AllRecordsFunction::Metrics).await.unwrap());
    assert_eq!(got, vec![(Slot(1), v(json!({"called": true})))]);
    s.shutdown().await.unwrap();

    let mut m = Model::new("frames.py");
    m.entry.metrics = Some("metrics_raises".into());
    let mut s = m.start().await.unwrap();
    s.collect(Slot(0), vec![v(json!({"x": 1}))]).await.unwrap();
    match s.run_all(AllRecordsFunction::Metrics).await {
        Err(Error::ModelFailed {
            function, message, ..
        }) => {
            assert_eq!(function, "metrics_raises");
            assert_eq!(message, "ZeroDivisionError: division by zero");
        }
        other => panic!("expected ModelFailed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_gets_a_data_frame_and_writes_under_output_dir() {
    let mut m = Model::new("frames.py");
    m.entry.train = Some("train".into());
    let mut s = m.start().await.unwrap();
    s.collect(
        Slot(0),
        vec![v(json!({"x": 1, "y": "a"})), v(json!({"x": 2, "y": "b"}))],
    )
    .await
    .unwrap();
    let got = norm_outs(s.run_all(AllRecordsFunction::Train).await.unwrap());
    let cwd = std::fs::canonicalize(m.dir.path()).unwrap();
    assert_eq!(
        got,
        vec![(Slot(1), v(json!({"rows": 2, "cwd": cwd.to_str().unwrap()})))]
    );
    s.shutdown().await.unwrap();
    let csv = std::fs::read_to_string(m.dir.path().join("outputDir/data.csv")).unwrap();
    assert_eq!(csv, "x,y\n1,a\n2,b\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numpy_datetime_and_friends_convert() {
    let m = Model::new("convert.py").score("outputs");
    let mut s = m.start().await.unwrap();
    let got = ok(s.score(items(vec![v(json!(1))])).await.unwrap());
    let out = &got[0][0].1;
    let field = |k: &str| {
        out.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    assert_eq!(field("np_int"), Value::Int(7));
    assert_eq!(field("np_float"), Value::Float(1.5));
    assert_eq!(field("np_bool"), Value::Bool(true));
    assert_eq!(field("np_array"), v(json!([0, 1, 2])));
    assert_eq!(field("np_matrix"), v(json!([[1.0, 1.0], [1.0, 1.0]])));
    assert_eq!(field("datetime"), v(json!("2024-01-02T03:04:05")));
    assert_eq!(field("date"), v(json!("2024-01-02")));
    assert_eq!(field("time"), v(json!("01:02:03")));
    assert_eq!(field("dec_int"), Value::Int(2));
    assert_eq!(field("dec_frac"), Value::Float(1.25));
    assert!(matches!(field("nan"), Value::Float(x) if x.is_nan()));
    assert_eq!(field("set"), v(json!([1])));
    assert_eq!(field("bytes"), Value::Bytes(vec![0, 255]));
    assert_eq!(field("big"), Value::Int(i128::from(u64::MAX)));
    assert_eq!(field("tuple"), v(json!([1, 2])));
    assert_eq!(field("frame"), v(json!([{"a": 1}, {"a": 2}])));
    assert_eq!(field("timestamp"), v(json!("2024-01-02T03:04:05")));
    s.shutdown().await.unwrap();

    let m = Model::new("convert.py").score("bad_output");
    let mut s = m.start().await.unwrap();
    let got = s
        .score(items(vec![v(json!(1)), v(json!(2)), v(json!(3))]))
        .await
        .unwrap();
    let f = got[0].clone().unwrap_err();
    assert_eq!(
        f.message,
        "TypeError: cannot convert an object of type 'builtins.object' to a record value"
    );
    assert_eq!(got[1], Ok(out1(vec![v(json!(2))])));
    let wide = got[2].clone().unwrap_err();
    assert_eq!(
        wide.message,
        "ValueError: the integer -9223372036854775809 does not fit in 64 bits"
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_values_become_python_types() {
    let m = Model::new("convert.py").score("inputs");
    let mut s = m.start().await.unwrap();
    let mut map = runtime_core::Map::new();
    map.push("s", "x");
    map.push("i", Value::Int(i128::from(u64::MAX)));
    map.push("f", 0.5);
    map.push("b", Value::Bytes(vec![1]));
    map.push("n", Value::Null);
    map.push("t", true);
    map.push("a", Value::Array(vec![]));
    map.push(Value::Int(3), "int key");
    let got = ok(s.score(items(vec![Value::Map(map)])).await.unwrap());
    assert_eq!(
        got,
        vec![out1(vec![v(json!({
            "s": "str", "i": "int", "f": "float", "b": "bytes", "n": "NoneType",
            "t": "bool", "a": "list", "3": "str",
        }))])]
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_come_back_in_order() {
    let m = Model::new("shapes.py").score("double");
    let mut s = m.start().await.unwrap();
    for b in 0..3 {
        let batch = (0..100)
            .map(|i| ScoreItem {
                slot: Slot(0),
                seqno: b * 100 + i + 1,
                value: v(json!({"id": b * 100 + i, "x": 1})),
            })
            .collect();
        s.submit_score(batch).await.unwrap();
    }
    assert_eq!(s.in_flight(), 3);
    for b in 0..3 {
        let got = ok(s.next_score_result().await.unwrap());
        assert_eq!(got.len(), 100);
        assert_eq!(got[0], out1(vec![v(json!({"id": b * 100, "y": 2}))]));
    }
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dying_while_loading_is_worker_died() {
    let m = Model::new("exit_at_import.py").score("action");
    match m.start().await {
        Err(Error::WorkerDied {
            reason,
            last_record,
        }) => {
            assert_eq!(reason, "exited with status 7");
            assert_eq!(last_record, None);
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert!(m.console().iter().any(|l| l == "about to exit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interpreter_is_the_one_linked_and_knows_its_executable() {
    let m = Model::new("interp.py").score("action");
    let mut s = m.start().await.unwrap();
    let facts = s.info().facts.clone();
    let got = ok(s.score(items(vec![v(json!(1))])).await.unwrap());
    let out = &got[0][0].1;
    assert_eq!(out.get("same_prefix"), Some(&Value::Bool(true)), "{out}");
    assert_eq!(out.get("argv_ok"), Some(&Value::Bool(true)), "{out}");
    let exe = out
        .get("executable")
        .and_then(Value::as_str)
        .unwrap()
        .to_owned();
    assert!(facts.contains(&("executable".to_owned(), exe)), "{facts:?}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_raising_fails_the_close() {
    let m = Model::new("init_model.py").score("action");
    let mut m = m;
    m.entry.end = Some("begin_raises".into());
    let s = m.start().await.unwrap();
    match s.shutdown().await {
        Err(Error::ModelFailed { function, .. }) => assert_eq!(function, "begin_raises"),
        other => panic!("expected ModelFailed, got {other:?}"),
    }
}
