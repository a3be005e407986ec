//! A host program embedding the model runtime as a library (docs/embedding.md): an axum
//! service of its own, which needs no `engine` binary.
//!
//! - At start it opens an engine on its data folder, deploys the Python model of a folder
//!   through the library ([`Engine::deploy`]) and mounts the engine's control API under
//!   `/engine` beside its own routes.
//! - `POST /score`: JSON records, one per line, each scored in-process through
//!   [`service::deploy::Deployment::score_message`] (all of them at once, so the deployment
//!   batches them); the answer has one JSON line per record, what the model yielded for it
//!   or `{"error": ...}`.
//! - `POST /stream/{name}`: the file `name` of the `--inputs` folder streamed through the
//!   model as a batch job (`jobs::plan::build`, `jobs::run_job`) whose output is a sink of
//!   this program, [`ResponseSink`], opened through the endpoints registry: it hands each
//!   record to the HTTP response as it is scored. A job that fails ends the response with an
//!   error instead of a clean end.
//! - It is its own Python worker: `embed worker` runs `runner_python::worker_main`.
//!
//! ```text
//! cargo run -p embed-example -- examples/credit-score/model --inputs examples/credit-score
//! curl -s localhost:8080/score --data-binary @examples/credit-score/applications.jsonl
//! curl -s -X POST localhost:8080/stream/applications.jsonl
//! ```

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Parser;
use codecs::{CodecConfig, Encoding};
use endpoints::descriptor::TransportType;
use endpoints::{OpenRequest, Opener, Registry, StreamDescriptor};
use jobs::{
    JobControl, JobKind, JobOptions, JobOutcome, JobPlan, JobResult, LocatedModel, PlanInput,
    PlanModel, PlanOptions, PlanOutput,
};
use runtime_core::{
    ExplicitNames, InitContext, JobLog, Level, LogLine, OutRecord, RecordSink, Rejection, Runner,
    SinkReport, Slot,
};
use service::{Config, Deps, Engine, RunnerSet};
use tokio::sync::mpsc;

/// Records a streamed job may have scored before the client reads them; past it the job
/// waits for the client.
const RESPONSE_BUFFER: usize = 256;
/// How long `POST /score` waits for one record's answer.
const SCORE_TIMEOUT: Duration = Duration::from_secs(30);
/// Records of one `POST /score` request in the deployment's queue at once, well under its
/// bound (`scoreQueueBound`), so a large request waits instead of being refused.
const SCORE_IN_FLIGHT: usize = 256;

#[derive(Parser)]
#[command(about = "An axum service embedding the model runtime")]
struct Args {
    /// The folder of the Python model to deploy.
    model: PathBuf,
    /// The port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Where the engine keeps its state, locked while this program runs.
    #[arg(long, default_value = "embed-data")]
    data: PathBuf,
    /// The folder whose files `POST /stream/{name}` streams through the model.
    #[arg(long)]
    inputs: Option<PathBuf>,
}

fn main() -> ExitCode {
    // The worker mode comes first, before any thread exists: Python runs on the process's
    // main thread.
    if std::env::args_os().nth(1).is_some_and(|a| a == "worker") {
        std::process::exit(runner_python::worker_main());
    }
    let args = Args::parse();
    // The host owns logging.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// What the routes share.
struct Host {
    engine: Arc<Engine>,
    /// The model of the folder, read once at start; streamed jobs run copies of it.
    model: LocatedModel,
    inputs: Option<PathBuf>,
    /// Where streamed jobs write their model's folder (each its own, removed after).
    work_root: PathBuf,
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let model_dir = std::path::absolute(&args.model)?;
    let inputs = args
        .inputs
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;

    // One engine per data folder: the lock is held while the engine lives.
    let data_dir = service::datadir::DataDir::acquire(&args.data)?;
    let work_root = data_dir.path().join("streams");
    std::fs::create_dir_all(&work_root)?;
    let config = Config {
        data_dir: data_dir.path().to_owned(),
        // The deployment document names the model's files by path: they must be allowed.
        allowed_paths: vec![model_dir.clone()],
        shutdown_grace_ms: 10_000,
        ..Config::default()
    };
    let engine = Engine::open(config, deps()?).await?;

    // The model of the folder, deployed through the library.
    let model = {
        let dir = model_dir.clone();
        tokio::task::spawn_blocking(move || LocatedModel::from_path(&dir, None)).await??
    };
    let name = model_dir
        .file_name()
        .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
    let deployment = engine.deploy(deployment_document(&name, &model)).await?;
    tracing::info!(
        "model {} ({}) deployed from {}",
        deployment.name,
        deployment.source_name,
        model_dir.display()
    );

    let host = Arc::new(Host {
        engine: engine.clone(),
        model,
        inputs,
        work_root,
    });
    let app = axum::Router::new()
        .route("/score", post(score))
        .route("/stream/{name}", post(stream))
        .with_state(host)
        .nest("/engine", engine.control_router());
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    let addr = listener.local_addr()?;
    engine.set_endpoints(vec![format!("http://{addr}/engine")]);
    // The one line on standard output: where the service listens (the test reads it).
    writeln!(std::io::stdout().lock(), "listening on http://{addr}")?;

    let queue = tokio::spawn(engine.run_queue());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .await
    });

    stop_signal().await?;
    tracing::info!("stopping");
    let grace = Duration::from_millis(engine.config.shutdown_grace_ms);
    let stopping = engine.shutdown(grace);
    let _ = stop_tx.send(true);
    stopping.await;
    let _ = tokio::time::timeout(grace, server).await;
    let _ = queue.await;
    drop(data_dir);
    Ok(())
}

/// SIGINT or SIGTERM.
async fn stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

/// The engine's Python runner, whose workers are this very program (`embed worker`),
/// started from the allow-listed part of its environment.
fn deps() -> std::io::Result<Deps> {
    let base_env = worker::env::worker_environment(std::env::vars_os(), &[]);
    let command = worker::WorkerCommand::new(std::env::current_exe()?)
        .arg("worker")
        .with_base_env(base_env);
    Ok(Deps {
        runners: RunnerSet::new().with(
            runtime_core::Language::Python,
            Arc::new(runner_python::PythonRunner::new(command)),
        ),
        environments: None,
        platforms: Arc::new(Vec::new),
        release: env!("CARGO_PKG_VERSION").to_owned(),
        built_on: "unknown".to_owned(),
        registry: endpoints::Registry::default(),
        spark: None,
    })
}

/// The deployment document of a model found in a folder: its main source given inline, the
/// other files by path.
fn deployment_document(name: &str, model: &LocatedModel) -> String {
    let mut assets = vec![serde_json::json!({
        "assetType": "SOURCE_CODE",
        "primaryModelSource": true,
        "filename": model.source_name,
        "sourceCode": model.source_text,
    })];
    for (relative, path) in &model.assets {
        assets.push(serde_json::json!({
            "assetType": "FILE",
            "filename": relative.to_string_lossy(),
            "fileUrl": service::document::file_url(path),
        }));
    }
    serde_json::json!({
        "name": name,
        "deployableModel": {"storedModel": {"modelAssets": assets}},
    })
    .to_string()
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({"error": message.to_string()}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `POST /score`: one JSON record per line in, one JSON line per record out.
async fn score(State(host): State<Arc<Host>>, body: Bytes) -> Response {
    let Some(deployment) = host.engine.deployment() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no model is deployed");
    };
    let records: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .collect();
    // Sent together, the records wait in the deployment's queue together and reach the
    // model's worker as batches.
    let mut answers = Vec::with_capacity(records.len());
    for chunk in records.chunks(SCORE_IN_FLIGHT) {
        answers.extend(
            futures_util::future::join_all(
                chunk.iter().map(|record| {
                    deployment.score_message(Slot(0), Slot(1), record, SCORE_TIMEOUT)
                }),
            )
            .await,
        );
    }
    let mut out = Vec::new();
    for answer in answers {
        match answer {
            Ok(Some(answer)) => out.extend_from_slice(&answer.body),
            // The model yielded nothing for this record.
            Ok(None) => out.extend_from_slice(b"null"),
            Err(e) => out.extend_from_slice(
                serde_json::json!({"error": e.to_string()})
                    .to_string()
                    .as_bytes(),
            ),
        }
        out.push(b'\n');
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response()
}

/// `POST /stream/{name}`: the input file streamed through the model, its scores streamed
/// back as JSON lines.
async fn stream(
    State(host): State<Arc<Host>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    let Some(inputs) = &host.inputs else {
        return error(StatusCode::NOT_FOUND, "no inputs folder (--inputs)");
    };
    if name.starts_with('.') || name.contains(['/', '\\']) {
        return error(
            StatusCode::BAD_REQUEST,
            "a file name of the inputs folder, please",
        );
    }
    let input = inputs.join(&name);
    let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
    // The built-in transports, and REST outputs answered by this program in the response.
    let registry =
        Registry::default().register(TransportType::Rest, Arc::new(ResponseOpener { tx }));
    let log: Arc<dyn JobLog> = Arc::new(TracingLog { job: name.clone() });
    let work = match tempfile::tempdir_in(&host.work_root) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    // Reading the model's folder, writing its working copy and opening the input are file
    // work: on the blocking pool. The registry (and its sender) goes with it.
    let built = {
        let model = host.model.clone();
        let work_dir = work.path().to_owned();
        let log = log.clone();
        tokio::task::spawn_blocking(move || {
            let plan = stream_plan(model, &input, &name)?;
            jobs::plan::build(
                plan,
                &work_dir,
                &registry,
                log.as_ref(),
                Arc::new(JobControl::default()),
            )
            .map_err(|e| e.to_string())
        })
        .await
    };
    let job = match built {
        Ok(Ok(job)) => job,
        Ok(Err(why)) => return error(StatusCode::BAD_REQUEST, why),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let runner = match host.engine.deps.runners.get(job.model.language) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let done = tokio::spawn(async move {
        let outcome = jobs::run_job(job, runner.as_ref() as &dyn Runner, log).await;
        let _ = tokio::task::spawn_blocking(move || drop(work)).await;
        outcome
    });
    let body = Body::from_stream(response_lines(rx, done));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// A scoring job over one input file, its slot 1 answered in the response (`rest:`).
fn stream_plan(located: LocatedModel, input: &Path, name: &str) -> Result<JobPlan, String> {
    let input_descriptor = StreamDescriptor::from_short_form(&input.display().to_string())
        .map_err(|e| e.to_string())?;
    let output_descriptor =
        StreamDescriptor::from_short_form("rest:").map_err(|e| e.to_string())?;
    Ok(JobPlan {
        kind: JobKind::Score,
        model: PlanModel::new(located, &ExplicitNames::default()),
        inputs: vec![PlanInput {
            slot: Slot(0),
            name: name.to_owned(),
            descriptor: input_descriptor,
            whole_document: Some(false),
        }],
        outputs: vec![PlanOutput {
            slot: Slot(1),
            descriptor: output_descriptor,
        }],
        errors: None,
        train_output: None,
        init: InitContext::Job {
            raw_json: serde_json::json!({"name": name}).to_string(),
        },
        options: PlanOptions {
            input_schema_checking: true,
            output_schema_checking: true,
            lines_hint: "JSON lines".to_owned(),
            job: JobOptions::default(),
        },
    })
}

/// The response body of a streamed job: each record the sink was given, as a JSON line,
/// then a clean end if the job succeeded, or an error (the client sees a broken response).
fn response_lines(
    rx: mpsc::Receiver<OutRecord>,
    job: tokio::task::JoinHandle<JobOutcome>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    let json = CodecConfig::new(Encoding::Json);
    futures_util::stream::unfold(Some((rx, job)), move |state| {
        let json = json.clone();
        async move {
            let (mut rx, job) = state?;
            match rx.recv().await {
                Some(record) => {
                    let mut line =
                        codecs::encode_message(&json, &record.value).unwrap_or_else(|e| {
                            serde_json::json!({"error": format!("{}: {e}", record.position)})
                                .to_string()
                                .into_bytes()
                        });
                    line.push(b'\n');
                    Some((Ok(Bytes::from(line)), Some((rx, job))))
                }
                // Every sink of the job is gone: the job is over.
                None => {
                    let outcome = match job.await {
                        Ok(outcome) => outcome,
                        Err(e) => return Some((Err(std::io::Error::other(e)), None)),
                    };
                    tracing::info!(
                        "stream: {} {}, {} record(s) in, {} out, {} rejected, {} failed",
                        outcome.status.as_str(),
                        outcome.result.as_str(),
                        outcome.records_in,
                        outcome.records_out,
                        outcome.records_rejected,
                        outcome.records_failed
                    );
                    if outcome.result == JobResult::Success {
                        None
                    } else {
                        let why = outcome.error.unwrap_or_else(|| "bad records".to_owned());
                        Some((Err(std::io::Error::other(why)), None))
                    }
                }
            }
        }
    })
}

/// Opens [`ResponseSink`]s for REST outputs: this program's own endpoint, added to the
/// registry beside the built-in ones.
struct ResponseOpener {
    tx: mpsc::Sender<OutRecord>,
}

impl Opener for ResponseOpener {
    fn open_sink(&self, _req: &OpenRequest<'_>) -> runtime_core::Result<Box<dyn RecordSink>> {
        Ok(Box::new(ResponseSink {
            tx: self.tx.clone(),
            records: 0,
        }))
    }
}

/// A job's output sink that hands each record to the HTTP response being written. It
/// waits while the response's buffer is full, so a slow client slows the job down; a
/// client gone away fails the job.
struct ResponseSink {
    tx: mpsc::Sender<OutRecord>,
    records: u64,
}

#[async_trait]
impl RecordSink for ResponseSink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> runtime_core::Result<Vec<Rejection>> {
        for record in batch {
            self.tx.send(record).await.map_err(|_| {
                runtime_core::Error::endpoint(self.describe(), "the client went away")
            })?;
            self.records += 1;
        }
        // Every value goes to the response as it is: nothing is rejected here.
        Ok(Vec::new())
    }

    async fn finish(&mut self) -> runtime_core::Result<SinkReport> {
        Ok(SinkReport {
            records: self.records,
            location: Some(self.describe()),
            ..SinkReport::default()
        })
    }

    fn describe(&self) -> String {
        "the HTTP response".to_owned()
    }
}

/// A job's log, into the host's own logging.
struct TracingLog {
    job: String,
}

impl JobLog for TracingLog {
    fn log(&self, line: LogLine) {
        let (job, source, message) = (&self.job, line.source.as_str(), &line.message);
        match line.level {
            Level::Error => tracing::error!("stream {job} [{source}] {message}"),
            Level::Warn => tracing::warn!("stream {job} [{source}] {message}"),
            Level::Info => tracing::info!("stream {job} [{source}] {message}"),
            Level::Debug => tracing::debug!("stream {job} [{source}] {message}"),
        }
    }
}
