//! Scores a file of JSON lines through an R model with the R runner and writes the outputs
//! as JSON lines: `throughput <model.R> <input.jsonl> <output.jsonl>`. Prints one line,
//! `records=N seconds=S records_per_s=R`, timed from the worker's start to the last output
//! written. Run by `scripts/bench-r`, which compares it with a plain Rscript.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Instant;

use runner_r::RRunner;
use runtime_core::{
    EntryPoints, InitContext, Language, MemoryLog, ModelSpec, ScoreItem, Session, SessionConfig,
    Slot, Value,
};

const BATCH: usize = 1000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [model, input, output] = &args[..] else {
        return Err("usage: throughput <model.R> <input.jsonl> <output.jsonl>".into());
    };
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work)?;
    std::fs::copy(model, work.join("__model.R"))?;
    let spec = ModelSpec {
        language: Language::R,
        work_dir: work,
        main_source: "__model.R".into(),
        entry_points: EntryPoints {
            score: Some("action".into()),
            ..EntryPoints::default()
        },
        recordsets: Default::default(),
        import_paths: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let n = runtime.block_on(async {
        let log = Arc::new(MemoryLog::default());
        let config = SessionConfig {
            init: InitContext::Job {
                raw_json: "{}".into(),
            },
            log,
            env: Vec::new(),
        };
        let mut session = RRunner::new().start_session(&spec, config).await?;
        let reader = std::io::BufReader::new(std::fs::File::open(input)?);
        let mut out = std::io::BufWriter::new(std::fs::File::create(output)?);
        let mut batch = Vec::with_capacity(BATCH);
        let mut seqno = 0u64;
        let mut lines = reader.lines();
        loop {
            let line = lines.next().transpose()?;
            if let Some(line) = &line {
                seqno += 1;
                let value: Value = serde_json::from_str(line)?;
                batch.push(ScoreItem {
                    slot: Slot(0),
                    seqno,
                    value,
                });
            }
            if batch.len() == BATCH || (line.is_none() && !batch.is_empty()) {
                for outcome in session.score(std::mem::take(&mut batch)).await? {
                    for (_, v) in outcome.map_err(|f| f.message)? {
                        serde_json::to_writer(&mut out, &v)?;
                        out.write_all(b"\n")?;
                    }
                }
            }
            if line.is_none() {
                break;
            }
        }
        out.flush()?;
        Box::new(session).close().await?;
        Ok::<u64, Box<dyn std::error::Error>>(seqno)
    })?;
    let secs = start.elapsed().as_secs_f64();
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "records={n} seconds={secs:.3} records_per_s={:.0}",
        n as f64 / secs
    )?;
    Ok(())
}
