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
