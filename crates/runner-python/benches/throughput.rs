//! Throughput of the whole worker path, engine side included (JSON lines decoded into
//! values, batches of 1,000 sent to the worker, outputs encoded back to JSON):
//!
//! `cargo bench -p runner-python --bench throughput`

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use runner_python::PythonRunner;
use runtime_core::{
    EntryPoints, InitContext, Language, MemoryLog, ModelSpec, ScoreItem, Session, SessionConfig,
    Slot, Value,
};
use worker::WorkerCommand;

const RECORDS: usize = 1_000_000;
const BATCH: usize = 1_000;

fn input() -> Vec<u8> {
    let mut buf = Vec::with_capacity(RECORDS * 32);
    for i in 0..RECORDS {
        writeln!(buf, "{{\"id\": {i}, \"x\": {}}}", i as f64 * 0.5).unwrap();
    }
    buf
}

async fn session() -> worker::WorkerSession {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models");
    let spec = ModelSpec {
        language: Language::Python,
        work_dir: dir,
        main_source: "bench.py".into(),
        entry_points: EntryPoints {
            score: Some("action".into()),
            ..EntryPoints::default()
        },
        recordsets: Default::default(),
        import_paths: Vec::new(),
    };
    PythonRunner::new(WorkerCommand::new(env!("CARGO_BIN_EXE_python-worker")))
        .start_worker(
            &spec,
            SessionConfig {
                init: InitContext::Job {
                    raw_json: "{}".into(),
                },
                log: Arc::new(MemoryLog::default()),
                env: Vec::new(),
            },
        )
        .await
        .unwrap()
}

fn batches(data: &[u8]) -> impl Iterator<Item = Vec<ScoreItem>> + '_ {
    let mut lines = data.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let mut seqno = 0u64;
    std::iter::from_fn(move || {
        let mut batch = Vec::with_capacity(BATCH);
        for line in lines.by_ref().take(BATCH) {
            seqno += 1;
            let value: Value = serde_json::from_slice(line).unwrap();
            batch.push(ScoreItem {
                slot: Slot(0),
                seqno,
                value,
            });
        }
        (!batch.is_empty()).then_some(batch)
    })
}

fn encode(out: &mut Vec<u8>, outcomes: Vec<runtime_core::ScoreOutcome>) -> usize {
    let mut n = 0;
    for o in outcomes {
        for (_, v) in o.unwrap() {
            serde_json::to_writer(&mut *out, &v).unwrap();
            out.push(b'\n');
            n += 1;
        }
    }
    n
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(throughput());
}

async fn throughput() {
    let data = input();

    // The worker alone: batches prepared beforehand, one in flight at a time.
    let prepared: Vec<Vec<ScoreItem>> = batches(&data).collect();
    let mut s = session().await;
    let t = Instant::now();
    for b in prepared {
        s.score(b).await.unwrap();
    }
    let worker_only = t.elapsed();
    s.shutdown().await.unwrap();

    // Call and wait, decoding and encoding JSON in the engine.
    let mut s = session().await;
    let mut out = Vec::with_capacity(RECORDS * 24);
    let t = Instant::now();
    let mut n = 0;
    for b in batches(&data) {
        n += encode(&mut out, s.score(b).await.unwrap());
    }
    let serial = t.elapsed();
    assert_eq!(n, RECORDS);
    s.shutdown().await.unwrap();

    // Pipelined: the next batch is decoded and sent before the last one's outcomes are read.
    let mut s = session().await;
    out.clear();
    let t = Instant::now();
    let mut n = 0;
    for b in batches(&data) {
        s.submit_score(b).await.unwrap();
        if s.in_flight() > 1 {
            n += encode(&mut out, s.next_score_result().await.unwrap());
        }
    }
    while s.in_flight() > 0 {
        n += encode(&mut out, s.next_score_result().await.unwrap());
    }
    let pipelined = t.elapsed();
    assert_eq!(n, RECORDS);
    s.shutdown().await.unwrap();

    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / RECORDS as f64;
    let rate = |d: std::time::Duration| RECORDS as f64 / d.as_secs_f64();
    eprintln!(
        "worker only:  {:.3} us/record, {:.0} records/s",
        per(worker_only),
        rate(worker_only)
    );
    eprintln!(
        "call-wait:    {:.3} us/record, {:.0} records/s",
        per(serial),
        rate(serial)
    );
    eprintln!(
        "pipelined:    {:.3} us/record, {:.0} records/s",
        per(pipelined),
        rate(pipelined)
    );
}
