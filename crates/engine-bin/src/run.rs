//! `engine run`: a batch job from the command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use codecs::Encoding;
use endpoints::StreamDescriptor;
use jobs::{
    JobControl, JobKind, JobOptions, JobOutcome, JobPlan, LocatedModel, PlanInput, PlanModel,
    PlanOptions, PlanOutput,
};
use runtime_core::{ExplicitNames, InitContext, JobLog, Language, Slot};
use serde_json::json;

use crate::cli::{EnvToolArg, InputModeArg, JobKindArg, RunArgs};
use crate::exit;
use crate::joblog::WriterLog;

/// A problem with the command line, reported before anything runs.
struct Usage(String);

/// An input or output given as a stream descriptor rather than a file: a Kafka, S3 or
/// HTTP(S) short form (`kafka:host:9092/topic.json`, `s3://bucket/key.jsonl`,
/// `https://host/in.csv`) or a JSON descriptor (`{"Transport": ...}`); `None` for a file
/// path.
fn descriptor_arg(arg: &Path, flag: &str) -> Result<Option<StreamDescriptor>, Usage> {
    let text = arg.to_string_lossy();
    let t = text.trim_start();
    let kafka = t.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("kafka:"));
    if !(kafka || endpoints::descriptor::names_a_store(t) || t.starts_with('{')) {
        return Ok(None);
    }
    StreamDescriptor::parse(t)
        .map(Some)
        .map_err(|e| Usage(format!("{flag} {text}: {e}")))
}

pub fn run(args: RunArgs) -> i32 {
    match prepare(&args) {
        Ok(prepared) => execute(args, prepared),
        Err(Usage(msg)) => {
            eprintln!("engine run: {msg}");
            exit::USAGE
        }
    }
}

struct Prepared {
    /// Inputs and outputs given as stream descriptors (`kafka:host:9092/topic.json`, or a
    /// JSON descriptor) rather than files, by slot.
    descriptors: std::collections::BTreeMap<Slot, StreamDescriptor>,
    kind: JobKind,
    model: LocatedModel,
    explicit: ExplicitNames,
    inputs: Vec<Input>,
    /// Outputs by slot: a path, or `None` for standard output.
    outputs: Vec<(Slot, Option<PathBuf>, Encoding)>,
    params: serde_json::Map<String, serde_json::Value>,
}

struct Input {
    slot: Slot,
    path: PathBuf,
    encoding: Encoding,
    /// `--input-mode`: read whole (`Some(true)`), line by line, or as the content says.
    whole: Option<bool>,
}

fn prepare(args: &RunArgs) -> Result<Prepared, Usage> {
    let kind = match args.job {
        JobKindArg::Score => JobKind::Score,
        JobKindArg::Metrics => JobKind::Metrics,
        JobKindArg::Train => JobKind::Train,
    };
    let model = LocatedModel::from_path(&args.model, args.source.as_deref())
        .map_err(|e| Usage(e.to_string()))?;
    let explicit = ExplicitNames {
        init: args.init_fn.clone(),
        score: args.score_fn.clone(),
        metrics: args.metrics_fn.clone(),
        train: args.train_fn.clone(),
    };
    let input_encoding = parse_encoding(args.input_encoding.as_deref(), "--input-encoding")?;
    let output_encoding = parse_encoding(args.output_encoding.as_deref(), "--output-encoding")?;

    let mut descriptors = std::collections::BTreeMap::new();
    let mut inputs = Vec::new();
    for (k, path) in args.inputs.iter().enumerate() {
        if let Some(d) = descriptor_arg(path, "--input")? {
            descriptors.insert(Slot::for_input(k), d);
            inputs.push(Input {
                slot: Slot::for_input(k),
                path: path.clone(),
                encoding: Encoding::Json,
                whole: None,
            });
            continue;
        }
        check_input(path).map_err(|why| Usage(format!("--input {}: {why}", path.display())))?;
        let encoding = match input_encoding {
            Some(e) => e,
            None => known_encoding(path)?,
        };
        if args.input_mode.is_some() && encoding != Encoding::Json {
            return Err(Usage(format!(
                "--input-mode applies to JSON inputs; {} is {encoding}",
                path.display()
            )));
        }
        inputs.push(Input {
            slot: Slot::for_input(k),
            path: path.clone(),
            encoding,
            whole: args.input_mode.map(|mode| mode == InputModeArg::File),
        });
    }

    let mut outputs = Vec::new();
    let main_output = match (kind, &args.output) {
        // Training's --output is the folder for its products; what it yields goes to stdout.
        (JobKind::Train, _) | (_, None) => None,
        (_, Some(p)) => stdout_or_path(p),
    };
    if let Some(p) = &main_output {
        if let Some(d) = descriptor_arg(p, "--output")? {
            descriptors.insert(Slot::DEFAULT_OUTPUT, d);
        }
    }
    let enc = output_encoding
        .unwrap_or_else(|| main_output.as_deref().map_or(Encoding::Json, encoding_of));
    outputs.push((Slot::DEFAULT_OUTPUT, main_output, enc));
    for spec in &args.output_slots {
        let (slot, path) = spec
            .split_once('=')
            .ok_or_else(|| Usage(format!("--output-slot {spec}: expected SLOT=PATH")))?;
        let slot: u32 = slot.trim().parse().map_err(|_| {
            Usage(format!(
                "--output-slot {spec}: '{slot}' is not a slot number"
            ))
        })?;
        if slot % 2 == 0 {
            return Err(Usage(format!(
                "--output-slot {spec}: output slots are odd (1, 3, 5...)"
            )));
        }
        if outputs.iter().any(|(s, _, _)| s.0 == slot) && slot != 1 {
            return Err(Usage(format!(
                "--output-slot {spec}: slot {slot} is given twice"
            )));
        }
        let path = stdout_or_path(Path::new(path));
        match path.as_deref().map(|p| descriptor_arg(p, "--output-slot")) {
            Some(Ok(Some(d))) => {
                descriptors.insert(Slot(slot), d);
            }
            Some(Err(e)) => return Err(e),
            _ => {}
        }
        let enc =
            output_encoding.unwrap_or_else(|| path.as_deref().map_or(Encoding::Json, encoding_of));
        let entry = (Slot(slot), path, enc);
        match outputs.iter_mut().find(|(s, _, _)| s.0 == slot) {
            Some(existing) => *existing = entry,
            None => outputs.push(entry),
        }
    }
    // Two slots on standard output would interleave their records.
    let on_stdout: Vec<String> = outputs
        .iter()
        .filter(|(_, path, _)| path.is_none())
        .map(|(slot, _, _)| slot.to_string())
        .collect();
    if on_stdout.len() > 1 {
        return Err(Usage(format!(
            "output slots {} would all write to standard output; give all but one a file",
            on_stdout.join(" and ")
        )));
    }

    let mut params = serde_json::Map::new();
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Usage(format!("--param {p}: expected KEY=VALUE")))?;
        let value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
        params.insert(k.to_owned(), value);
    }
    Ok(Prepared {
        descriptors,
        kind,
        model,
        explicit,
        inputs,
        outputs,
        params,
    })
}

fn parse_encoding(given: Option<&str>, flag: &str) -> Result<Option<Encoding>, Usage> {
    given
        .map(|s| {
            s.parse::<Encoding>()
                .map_err(|e| Usage(format!("{flag} {s}: {e}")))
        })
        .transpose()
}

/// What an input path is, when it is not a readable regular file.
fn check_input(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        // ELOOP: too many levels of symbolic links.
        Err(e) if e.raw_os_error() == Some(40) => {
            return Err("is a symbolic link loop (it never reaches a file)".to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(if path.symlink_metadata().is_ok() {
                "is a symbolic link to nothing (its target does not exist)".to_owned()
            } else {
                "no such file".to_owned()
            })
        }
        Err(e) => return Err(format!("cannot be read: {e}")),
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err("is a directory; give one file per --input".to_owned());
    }
    if kind.is_fifo() {
        return Err("is a FIFO (named pipe); give a regular file".to_owned());
    }
    if kind.is_socket() || kind.is_block_device() || kind.is_char_device() {
        return Err("is not a regular file (a socket or a device)".to_owned());
    }
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| format!("cannot be read: {e}"))
}

/// The encoding an input's extension names; an extension naming none is refused rather
/// than read as raw bytes.
fn known_encoding(path: &Path) -> Result<Encoding, Usage> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    Encoding::of_extension(ext).ok_or_else(|| {
        let what = if ext.is_empty() {
            "has no extension".to_owned()
        } else {
            format!("has the extension '.{ext}', which names no encoding this engine reads")
        };
        Usage(format!(
            "--input {}: {what}. Known: {}. Give --input-encoding json|csv|avro-binary|msgpack|utf-8, \
             or --input-encoding raw to give the model its bytes as they are",
            path.display(),
            Encoding::known_extensions()
        ))
    })
}

/// An output path, or `None` for `-`: standard output.
fn stdout_or_path(path: &Path) -> Option<PathBuf> {
    (path != Path::new("-")).then(|| path.to_path_buf())
}

fn encoding_of(path: &Path) -> Encoding {
    Encoding::from_extension(path.extension().and_then(|e| e.to_str()).unwrap_or(""))
}

fn execute(args: RunArgs, p: Prepared) -> i32 {
    let show_bar = !args.no_progress && args.log.is_none() && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {elapsed} {human_pos} records scored ({per_sec}){msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let log_out: Box<dyn std::io::Write + Send> = match &args.log {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("engine run: --log {}: {e}", path.display());
                return exit::USAGE;
            }
        },
        None => Box::new(std::io::stderr()),
    };
    let mut log = WriterLog::new(log_out, bar.clone());
    if args.log_format == crate::cli::LogFormatArg::Json {
        log = log.json(job_id());
    }
    let log = Arc::new(log);

    let job_dir = match tempfile::Builder::new().prefix("engine-job-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("engine run: cannot create a working folder: {e}");
            return exit::ERROR;
        }
    };
    let outcome = run_prepared(&args, p, job_dir.path(), log.clone(), bar.as_ref());
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    log.flush();
    if args.keep_work_dir {
        let kept = job_dir.keep();
        eprintln!(
            "engine run: the job's working folder is kept at {}",
            kept.display()
        );
    }
    let outcome = match outcome {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("engine run: {msg}");
            return exit::ERROR;
        }
    };
    if args.log_format == crate::cli::LogFormatArg::Json {
        print_summary_json(&outcome);
    } else {
        print_summary(&outcome);
    }
    if let Some(path) = &args.summary_json {
        let text = serde_json::to_string_pretty(&outcome).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("engine run: --summary-json {}: {e}", path.display());
            return exit::ERROR;
        }
    }
    exit::of_outcome(&outcome)
}

fn run_prepared(
    args: &RunArgs,
    p: Prepared,
    job_dir: &Path,
    log: Arc<WriterLog>,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<JobOutcome, String> {
    let model = PlanModel::new(p.model.clone(), &p.explicit);
    let document = job_document(&p, &model.entry_points, args);
    let plan = JobPlan {
        kind: p.kind,
        model,
        inputs: p
            .inputs
            .iter()
            .map(|i| PlanInput {
                slot: i.slot,
                name: i.path.display().to_string(),
                descriptor: p.descriptors.get(&i.slot).cloned().unwrap_or_else(|| {
                    StreamDescriptor::file(i.path.display().to_string(), i.encoding)
                }),
                whole_document: i.whole,
            })
            .collect(),
        outputs: p
            .outputs
            .iter()
            .map(|(slot, path, encoding)| PlanOutput {
                slot: *slot,
                descriptor: p.descriptors.get(slot).cloned().unwrap_or_else(|| {
                    StreamDescriptor::file(
                        path.as_deref()
                            .map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
                        *encoding,
                    )
                }),
            })
            .collect(),
        errors: match &args.errors {
            Some(path) => Some(match descriptor_arg(path, "--errors").map_err(|u| u.0)? {
                Some(d) => d,
                None => StreamDescriptor::file(path.display().to_string(), Encoding::Json),
            }),
            None => None,
        },
        // Training's products go to a folder: a local one, or a store's prefix.
        train_output: match p.kind {
            JobKind::Train => {
                let folder = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
                Some(
                    match descriptor_arg(&folder, "--output").map_err(|u| u.0)? {
                        Some(d) => d,
                        None => StreamDescriptor::file(folder.display().to_string(), Encoding::Raw),
                    },
                )
            }
            _ => None,
        },
        init: InitContext::Job {
            raw_json: document.to_string(),
        },
        options: PlanOptions {
            input_schema_checking: !args.no_input_schema_check,
            output_schema_checking: !args.no_output_schema_check,
            lines_hint: "--input-mode lines".to_owned(),
            job: JobOptions {
                stop_on_bad_records: args.stop_on_bad_records,
                batching: jobs::Batching::new(args.batch_size as usize),
                workers: args.workers.map_or_else(default_workers, |w| w as usize),
                workers_explicit: args.workers.is_some(),
                max_worker_restarts: args.max_worker_restarts,
                worker_limits: args.record_timeout.is_some() || args.memory_limit.is_some(),
                show_rejected_records: args.show_rejected_records,
                relax_requirements: args.ignore_pins,
                console_limit_bytes: args.console_limit.saturating_mul(1 << 20),
                ..JobOptions::default()
            },
        },
    };
    // Files are opened here, before the async runtime: no file I/O on its worker threads.
    let control = Arc::new(JobControl::default());
    let registry =
        crate::transports::registry(&Default::default(), &Default::default()).allowing_stdout();
    let job = jobs::plan::build(plan, job_dir, &registry, log.as_ref(), control.clone())
        .map_err(|e| e.to_string())?;
    let language = p.model.language;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let limits = worker::WorkerLimits {
            record_timeout: args.record_timeout.map(Duration::from_millis),
            memory_bytes: args.memory_limit.map(|m| m.saturating_mul(1 << 20)),
            // With no record timeout a hung record would go unnoticed: say so every minute.
            slow_record_warning: args
                .record_timeout
                .is_none()
                .then(|| Duration::from_millis(args.slow_record_warning)),
        };
        let runner: Box<dyn runtime_core::Runner> = match language {
            Language::Python => Box::new(
                python_runner(limits)
                    .map_err(|e| format!("cannot find the engine's own executable: {e}"))?
                    .with_environments(Arc::new(environment_cache(args))),
            ),
            Language::R => Box::new(runner_r::RRunner::new().with_limits(limits)),
        };
        let ticker = bar.cloned().map(|bar| {
            let control = control.clone();
            tokio::spawn(async move {
                loop {
                    let p = control.progress();
                    bar.set_position(p.records_scored);
                    bar.set_message(crate::client::failed_and_rejected(
                        p.records_failed,
                        p.records_rejected,
                    ));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        let log: Arc<dyn JobLog> = log;
        let outcome = jobs::run_job(job, &*runner, log).await;
        if let Some(t) = ticker {
            t.abort();
        }
        Ok(outcome)
    })
}

fn python_runner(limits: worker::WorkerLimits) -> std::io::Result<runner_python::PythonRunner> {
    let exe = std::env::current_exe()?;
    let cmd = worker::WorkerCommand::new(exe)
        .arg("worker")
        .arg("python")
        .with_limits(limits);
    Ok(runner_python::PythonRunner::new(cmd))
}

/// The model environment cache, from the flags and the environment (pip's and uv's index
/// settings pass through to the installs).
fn environment_cache(args: &RunArgs) -> environments::EnvironmentCache {
    let root = args
        .env_cache
        .clone()
        .or_else(|| std::env::var_os("ENGINE_ENV_CACHE").map(PathBuf::from))
        .unwrap_or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir);
            base.join("model-runtime").join("environments")
        });
    let tool = match args.env_tool {
        EnvToolArg::Auto => environments::Tool::Auto,
        EnvToolArg::Uv => environments::Tool::Uv,
        EnvToolArg::Pip => environments::Tool::Pip,
    };
    crate::envcache::build(root, args.env_cache_size, !args.no_installs, tool)
}

/// The cores this process may use.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The id of `engine run`'s job, in its document and its log.
fn job_id() -> String {
    format!("local-{}", std::process::id())
}

/// The job document init receives (`rawJson`), shaped like a ModelOp Center batch job so
/// models that read `jobParameters`, `model` or `inputData` from it run unchanged.
fn job_document(
    p: &Prepared,
    entry: &runtime_core::EntryPoints,
    args: &RunArgs,
) -> serde_json::Value {
    let job_type = match p.kind {
        JobKind::Score => "MODEL_BATCH_JOB",
        JobKind::Metrics => "MODEL_BATCH_TEST_JOB",
        JobKind::Train => "MODEL_BATCH_TRAINING_JOB",
    };
    let file_asset = |slot: Slot, path: &Path| {
        if p.descriptors.contains_key(&slot) {
            // A stream, an object or a database (Kafka, S3, HDFS, HTTP, SQL): named as
            // given, any password in it hidden.
            let name = endpoints::redact(&path.to_string_lossy());
            return json!({
                "assetType": "EXTERNAL_FILE",
                "name": name,
                "fileUrl": name,
            });
        }
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        json!({
            "assetType": "EXTERNAL_FILE",
            "name": path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "fileUrl": format!("file://{}", abs.display()),
        })
    };
    let outputs: Vec<serde_json::Value> = p
        .outputs
        .iter()
        .map(|(slot, path, _)| match path {
            Some(path) => file_asset(*slot, path),
            None => json!({"assetType": "EXTERNAL_FILE", "name": "stdout", "fileUrl": "stdout:"}),
        })
        .collect();
    let model_name = args
        .model
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_owned());
    json!({
        "id": job_id(),
        "jobType": job_type,
        "jobStatus": "RUNNING",
        "jobParameters": p.params,
        "inputData": p.inputs.iter().map(|i| file_asset(i.slot, &i.path)).collect::<Vec<_>>(),
        "outputData": outputs,
        "stopOnBadRecords": args.stop_on_bad_records,
        "model": {
            "storedModel": {
                "modelMetaData": {"name": model_name},
                "modelAssets": [{
                    "name": p.model.source_name,
                    "assetType": "SOURCE_CODE",
                    "assetRole": "MODEL_SOURCE",
                    "primaryModelSource": true,
                    "sourceCode": p.model.source_text,
                    "initFunction": entry.init,
                    "scoreFunction": entry.score,
                    "metricsFunction": entry.metrics,
                    "trainingFunction": entry.train,
                }],
            }
        },
    })
}

/// The summary as one JSON object on stderr, like the log lines before it.
fn print_summary_json(o: &JobOutcome) {
    let line = json!({
        "timestamp": runtime_core::utc_timestamp(std::time::SystemTime::now()),
        "level": if exit::of_outcome(o) == exit::OK { "INFO" } else { "ERROR" },
        "target": "summary",
        "job_id": job_id(),
        "message": format!(
            "engine run: {} job {} with result {}",
            o.kind.as_str(),
            o.status.as_str(),
            o.result.as_str()
        ),
        "summary": o,
    });
    eprintln!("{line}");
}

fn print_summary(o: &JobOutcome) {
    let mut s = format!(
        "engine run: {} job {} with result {} in {:.2} s\n  records in: {}, out: {}, rejected: {}, failed: {}\n",
        o.kind.as_str(),
        o.status.as_str(),
        o.result.as_str(),
        o.elapsed_ms as f64 / 1000.0,
        o.records_in,
        o.records_out,
        o.records_rejected,
        o.records_failed
    );
    for (slot, c) in &o.inputs {
        if c.rejected() > 0 {
            s += &format!("  input slot {slot}: {} rejected\n", c.rejected());
        }
    }
    for (slot, c) in &o.outputs {
        if c.rejected() > 0 {
            s += &format!("  output slot {slot}: {} rejected\n", c.rejected());
        }
    }
    if let Some(err) = &o.error {
        s += &format!("  error: {err}\n");
    }
    if !o.problems.is_empty() {
        s += "  first problems:\n";
        for p in &o.problems {
            s += &format!("    slot {}, {}: {}\n", p.slot, p.position, p.reason);
        }
    }
    for f in &o.trained_files {
        s += &format!("  trained: {}\n", f.display());
    }
    eprint!("{s}");
}
