//! `jobs::plan::build`: a plan becomes a job with its model written, its inputs read as
//! their content says, and its endpoints opened through the registry.

use std::sync::Arc;

use codecs::Encoding;
use endpoints::{Registry, StreamDescriptor};
use jobs::{
    JobControl, JobKind, JobOptions, JobPlan, LocatedModel, PlanInput, PlanModel, PlanOptions,
    PlanOutput,
};
use runtime_core::{ExplicitNames, InitContext, MemoryLog, Slot};

const SOURCE: &str = "\
# modelop.score
def action(x):
    global seen
    seen = x
    yield x
";

fn plan(inputs: Vec<PlanInput>, output: StreamDescriptor) -> JobPlan {
    let located = LocatedModel::from_parts("scorer.py", SOURCE.to_owned(), None).unwrap();
    JobPlan {
        kind: JobKind::Score,
        model: PlanModel::new(located, &ExplicitNames::default()),
        inputs,
        outputs: vec![PlanOutput {
            slot: Slot::DEFAULT_OUTPUT,
            descriptor: output,
        }],
        errors: None,
        train_output: None,
        init: InitContext::Job {
            raw_json: "{}".into(),
        },
        options: PlanOptions {
            input_schema_checking: true,
            output_schema_checking: true,
            lines_hint: "the lines mode".into(),
            job: JobOptions::default(),
        },
    }
}

/// Why building `p` in `work` fails (empty when it does not).
fn build_error(p: JobPlan, work: &std::path::Path) -> String {
    jobs::plan::build(
        p,
        work,
        &Registry::default(),
        &MemoryLog::default(),
        Arc::new(JobControl::default()),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default()
}

fn messages(log: &MemoryLog) -> Vec<String> {
    log.lines().into_iter().map(|l| l.message).collect()
}

#[test]
fn a_plan_builds_a_job_named_by_the_users_source_with_its_state_found_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("doc.json");
    std::fs::write(&input, "{\n  \"a\": 1,\n  \"b\": [1, 2]\n}\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let p = plan(
        vec![PlanInput {
            slot: Slot::for_input(0),
            name: "doc.json".into(),
            descriptor: StreamDescriptor::file(input.display().to_string(), Encoding::Json),
            whole_document: None,
        }],
        StreamDescriptor::file(out.display().to_string(), Encoding::Json),
    );
    let log = MemoryLog::default();
    let work = dir.path().join("work");
    let job = jobs::plan::build(
        p,
        &work,
        &Registry::default(),
        &log,
        Arc::new(JobControl::default()),
    )
    .unwrap();
    assert_eq!(job.source_name, "scorer.py");
    assert!(
        job.state_between_records
            .as_deref()
            .is_some_and(|why| why.contains("global seen")),
        "{:?}",
        job.state_between_records
    );
    assert!(work.join("model").join(&job.model.main_source).is_file());
    let lines = messages(&log);
    assert!(
        lines.iter().any(|l| l
            == "input doc.json: one JSON document over several lines, read whole as one record (the lines mode reads it line by line)"),
        "{lines:#?}"
    );
    assert!(out.exists(), "the output is opened when the job is built");
}

#[test]
fn a_transport_without_an_opener_fails_the_build_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(
        vec![PlanInput {
            slot: Slot::for_input(0),
            name: "scores".into(),
            descriptor: StreamDescriptor::parse("kafka:broker:9092/scores.json").unwrap(),
            whole_document: None,
        }],
        StreamDescriptor::parse("discard:").unwrap(),
    );
    let err = build_error(p, dir.path());
    assert!(
        err.contains("Kafka endpoints are not supported yet"),
        "{err}"
    );
}

#[test]
fn a_training_products_folder_that_is_no_folder_fails_the_build_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "1\n").unwrap();
    let mut p = plan(
        vec![PlanInput {
            slot: Slot::for_input(0),
            name: "in.jsonl".into(),
            descriptor: StreamDescriptor::file(input.display().to_string(), Encoding::Json),
            whole_document: None,
        }],
        StreamDescriptor::parse("discard:").unwrap(),
    );
    p.kind = JobKind::Train;
    p.train_output = Some(StreamDescriptor::parse("kafka:broker:9092/models.json").unwrap());
    let err = build_error(p, dir.path());
    assert!(
        err.contains("a training job's products go to a folder")
            && err.contains("kafka:broker:9092/models"),
        "{err}"
    );
}
