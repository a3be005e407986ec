//! A batch job with `"runtime": "spark"`: the model written to the job's folder and its
//! environment built as for a job on the engine's workers, then handed to Spark
//! (`engine_spark::Spark::run`) with the document's assets; the driver's report becomes the job's
//! status, counts and reason.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use jobs::{JobControl, JobKind};
use runtime_core::{JobLog, Language, Level, LogSource, PrepareOptions};
use serde_json::Value;
use tokio::sync::Notify;

use super::{JobQueue, OutputPlace, StoredOutcome};
use crate::document::{Content, JobSpec};
use crate::error::{Error, Result};
use crate::joblog::BufferedLog;
use crate::store::{Finish, JobRow, JobState};

impl JobQueue {
    pub(super) async fn execute_spark(
        &self,
        row: &JobRow,
        spec: JobSpec,
        control: Arc<JobControl>,
        kill: Arc<Notify>,
        log: Arc<BufferedLog>,
    ) -> Result<Finish> {
        let Some(spark) = self.spark.clone() else {
            return Err(Error::BadRequest(
                "this engine cannot run jobs on Spark (its start-up log says why); submit the job \
                 without \"runtime\": \"spark\""
                    .into(),
            ));
        };
        let language = spec.model.language.unwrap_or(Language::Python);
        if language != Language::Python {
            return Err(Error::BadRequest(format!(
                "only Python models run on Spark; this one is {language}"
            )));
        }
        let started = Instant::now();
        let raw: Value = serde_json::from_str(&row.document).unwrap_or_default();
        let dir = self.job_dir(&row.id);
        let run_dir = dir.join("run");

        // The model in the job's folder, and the document's assets as the driver gets them
        // (embedded inputs written to files first).
        let (model, inputs) = {
            let (spec, raw, run_dir, log, registry) = (
                spec.clone(),
                raw.clone(),
                run_dir.clone(),
                log.clone(),
                self.registry.clone(),
            );
            tokio::task::spawn_blocking(move || -> Result<_> {
                if run_dir.exists() {
                    std::fs::remove_dir_all(&run_dir)
                        .map_err(|e| Error::io(format!("cannot empty {}", run_dir.display()), e))?;
                }
                let model = crate::prepare::plan_model(&spec.model)?;
                let (_, model) = model.write(&run_dir, log.as_ref(), &registry)?;
                let inputs = input_assets(&spec, &raw, &run_dir.join("data"))?;
                Ok((model, inputs))
            })
            .await
            .map_err(|e| Error::Store(format!("job preparation failed: {e}")))??
        };
        // Its environment, built as for the engine's workers; the driver and the executors
        // put its packages on their path.
        let runner = self.runners.get(language)?;
        let log_dyn: Arc<dyn JobLog> = log.clone();
        let prepared = runner
            .prepare(
                &model,
                &PrepareOptions {
                    requirements_assets: Vec::new(),
                    relax_requirements: spec.relax_requirements,
                },
                &log_dyn,
            )
            .await?;

        let job = engine_spark::SparkJob {
            id: row.id.clone(),
            function: match spec.kind {
                JobKind::Score => engine_spark::Function::Score,
                JobKind::Metrics => engine_spark::Function::Metrics,
                JobKind::Train => engine_spark::Function::Train,
            },
            model: prepared.model.clone(),
            inputs,
            outputs: list(&raw["outputData"]),
            model_assets: external_model_assets(&raw),
            raw_json: row.document.clone(),
            dir: dir.join("spark"),
            batch_size: self.batching.size,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = {
            let stop = stop.clone();
            tokio::spawn(async move {
                kill.notified().await;
                stop.store(true, Ordering::Relaxed);
            })
        };
        let ran = {
            let (stop, log) = (stop.clone(), log.clone());
            let params = raw.get("jobParameters").cloned();
            tokio::task::spawn_blocking(move || {
                let ran = spark.run(&job, params.as_ref(), log.as_ref(), &stop);
                drop(prepared);
                ran
            })
            .await
            .map_err(|e| Error::Store(format!("the Spark job's thread failed: {e}")))?
        };
        stopper.abort();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(match ran {
            Ok(run) => finished(&spec, &raw, run, elapsed_ms, &log),
            Err(engine_spark::Error::Stopped) => {
                let cancelled = control.is_cancelled();
                let reason = if cancelled {
                    "cancelled: the Spark application was killed"
                } else {
                    "interrupted: the engine shut down while the job was running on Spark"
                };
                log.engine(Level::Warn, reason);
                Finish::stopped(cancelled, reason)
            }
            Err(e) => {
                let traceback = e.traceback().map(str::to_owned);
                log.engine(Level::Error, format!("job ERROR: {e}"));
                if let Some(tb) = &traceback {
                    log.log(runtime_core::LogLine::new(
                        Level::Error,
                        LogSource::Runner,
                        tb.clone(),
                    ));
                }
                let stored = StoredOutcome {
                    outputs: Vec::new(),
                    trained_files: Vec::new(),
                    trained_dir: None,
                    problems: Vec::new(),
                    traceback,
                    elapsed_ms,
                    progress: None,
                };
                Finish {
                    outcome: serde_json::to_string(&stored).ok(),
                    ..Finish::failed(JobState::Error, e.to_string())
                }
            }
        })
    }
}

/// The job's end as the driver reported it.
fn finished(
    spec: &JobSpec,
    raw: &Value,
    run: engine_spark::SparkRun,
    elapsed_ms: u64,
    log: &BufferedLog,
) -> Finish {
    for f in &run.failures {
        log.engine(Level::Warn, format!("record failed on Spark: {f}"));
    }
    let records = run.convention == "records";
    let result = if run.records_failed > 0 {
        "FAILURE"
    } else {
        "SUCCESS"
    };
    log.engine(
        Level::Info,
        if records {
            format!(
                "batch job complete on Spark: result {result}. Records in/out/failed: {}/{}/{}",
                run.records_in, run.records_out, run.records_failed
            )
        } else {
            format!(
                "batch job complete on Spark: result {result} (the model read and wrote its own data)"
            )
        },
    );
    let outputs = list(&raw["outputData"]);
    let places = spec
        .outputs
        .iter()
        .enumerate()
        .map(|(k, d)| OutputPlace {
            slot: k as u32,
            name: d.name.clone(),
            encoding: d.encoding.name().to_owned(),
            embedded: false,
            path: match &d.content {
                Some(c) => c
                    .descriptor(d.encoding)
                    .map(|d| d.shown())
                    .unwrap_or_default(),
                None => outputs
                    .get(k)
                    .and_then(|a| a["fileUrl"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            },
            records: if k == 0 && records {
                run.records_out
            } else {
                0
            },
        })
        .collect();
    let stored = StoredOutcome {
        outputs: places,
        trained_files: Vec::new(),
        trained_dir: None,
        problems: run.failures.clone(),
        traceback: None,
        elapsed_ms,
        progress: None,
    };
    Finish {
        status: JobState::Complete,
        result: Some(result.into()),
        reason: (run.records_failed > 0)
            .then(|| format!("{} record(s) failed on Spark", run.records_failed)),
        records_in: run.records_in as i64,
        records_out: run.records_out as i64,
        records_rejected: 0,
        records_failed: run.records_failed as i64,
        outcome: serde_json::to_string(&stored).ok(),
        interrupted: false,
    }
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// The document's `inputData` with each input's format (`fileFormat`) as the engine tells
/// it, and an embedded input written under `data` and named by its `fileUrl` there, as the
/// executors read files.
fn input_assets(spec: &JobSpec, raw: &Value, data: &Path) -> Result<Vec<Value>> {
    let mut assets = list(&raw["inputData"]);
    for (k, (asset, d)) in assets.iter_mut().zip(&spec.inputs).enumerate() {
        let Some(a) = asset.as_object_mut() else {
            continue;
        };
        // The format the engine tells from the asset (its encoding, its name, its content).
        a.entry("fileFormat")
            .or_insert_with(|| d.encoding.name().into());
        if let Some(Content::Bytes(_)) = &d.content {
            // Written where a job on the engine's workers writes it.
            std::fs::create_dir_all(data)
                .map_err(|e| Error::io(format!("cannot create {}", data.display()), e))?;
            let written = super::input_descriptor(d, k, data)?;
            let url = crate::document::file_url(Path::new(&written.shown()));
            a.insert("fileUrl".into(), url.into());
        }
    }
    Ok(assets)
}

/// The model's `EXTERNAL_FILE` assets: `external_model_assets` of a PySpark model.
fn external_model_assets(raw: &Value) -> Vec<Value> {
    let model = &raw["model"];
    let assets = model["storedModel"]["modelAssets"]
        .as_array()
        .or_else(|| model["modelAssets"].as_array());
    assets
        .into_iter()
        .flatten()
        .filter(|a| a["assetType"] == "EXTERNAL_FILE")
        .cloned()
        .collect()
}
