//! `engine run`: a batch job from the command line.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use codecs::{CodecConfig, Encoding, Framing};
use endpoints::{FileSink, FileSource};
use jobs::{Job, JobControl, JobInput, JobKind, JobOptions, JobOutcome, JobOutput, LocatedModel};
use runtime_core::{ExplicitNames, InitContext, JobLog, Language, LogSource, ModelSpec, Slot};
use serde_json::json;

use crate::cli::{EnvToolArg, InputModeArg, JobKindArg, RunArgs};
use crate::exit;
use crate::joblog::WriterLog;

/// A problem with the command line, reported before anything runs.
struct Usage(String);

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
    kind: JobKind,
    model: LocatedModel,
    explicit: ExplicitNames,
    inputs: Vec<(Slot, PathBuf, CodecConfig)>,
    outputs: Vec<(Slot, Option<PathBuf>, CodecConfig)>,
    params: serde_json::Map<String, serde_json::Value>,
    /// Decisions about the inputs worth a line in the job's log.
    notes: Vec<String>,
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

    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    for (k, path) in args.inputs.iter().enumerate() {
        check_input(path).map_err(|why| Usage(format!("--input {}: {why}", path.display())))?;
        let encoding = match input_encoding {
            Some(e) => e,
            None => known_encoding(path)?,
        };
        let mut codec = CodecConfig::new(encoding);
        if let Some(mode) = args.input_mode {
            if encoding != Encoding::Json {
                return Err(Usage(format!(
                    "--input-mode applies to JSON inputs; {} is {encoding}",
                    path.display()
                )));
            }
            if mode == InputModeArg::File {
                codec.framing = Some(Framing::Message);
            }
        } else if encoding == Encoding::Json && is_document(path) {
            codec.framing = Some(Framing::Message);
            notes.push(format!(
                "input {}: one JSON document over several lines, read whole as one record (--input-mode lines reads it line by line)",
                path.display()
            ));
        }
        inputs.push((Slot::for_input(k), path.clone(), codec));
    }

    let mut outputs = Vec::new();
    let main_output = match (kind, &args.output) {
        // Training's --output is the folder for its products; what it yields goes to stdout.
        (JobKind::Train, _) | (_, None) => None,
        (_, Some(p)) => Some(p.clone()),
    };
    let enc = output_encoding
        .unwrap_or_else(|| main_output.as_deref().map_or(Encoding::Json, encoding_of));
    outputs.push((Slot::DEFAULT_OUTPUT, main_output, CodecConfig::new(enc)));
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
        let path = PathBuf::from(path);
        let enc = output_encoding.unwrap_or_else(|| encoding_of(&path));
        let entry = (Slot(slot), Some(path), CodecConfig::new(enc));
        match outputs.iter_mut().find(|(s, _, _)| s.0 == slot) {
            Some(existing) => *existing = entry,
            None => outputs.push(entry),
        }
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
        kind,
        model,
        explicit,
        inputs,
        outputs,
        params,
        notes,
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

/// A `.json` file holding one JSON document over several lines.
fn is_document(path: &Path) -> bool {
    let is_json_ext = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    is_json_ext
        && std::fs::File::open(path).is_ok_and(|f| {
            codecs::is_json_document(std::io::BufReader::new(f), codecs::DEFAULT_MAX_RECORD_BYTES)
                .unwrap_or(false)
        })
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
    let (comments, entry_points) = p.model.conventions(&p.explicit);
    for (line, problem) in &comments.problems {
        log.warn(
            LogSource::Engine,
            format!("{} line {line}: {problem}", p.model.source_name),
        );
    }
    for note in &p.notes {
        log.info(LogSource::Engine, note.clone());
    }
    let materialized = jobs::materialize(&p.model, job_dir).map_err(|e| e.to_string())?;
    log.info(
        LogSource::Engine,
        format!(
            "assets written: {} file(s) in {}",
            materialized.files.len(),
            materialized.work_dir.display()
        ),
    );

    let (schemas, warnings) = schema::resolve_checked_schemas(
        &materialized.work_dir,
        &comments,
        !args.no_input_schema_check,
        !args.no_output_schema_check,
    )
    .map_err(|e| format!("the model's schemas: {e}"))?;
    for w in warnings {
        log.warn(LogSource::Engine, w);
    }
    for (slot, checker) in schemas.inputs.iter().chain(schemas.outputs.iter()) {
        log.info(
            LogSource::Engine,
            format!(
                "slot {slot}: records checked against schema {}",
                checker.record_name().unwrap_or("(unnamed)")
            ),
        );
    }
    let mut p = p;
    // The schema of a slot also types CSV cells on the way in and drives Avro on the way out.
    for (slot, _, codec) in &mut p.inputs {
        if codec.encoding == Encoding::Csv && codec.schema.is_none() {
            codec.schema = schemas.inputs.get(slot).map(|c| c.avro().clone());
        }
    }
    for (slot, _, codec) in &mut p.outputs {
        if codec.encoding == Encoding::AvroBinary && codec.schema.is_none() {
            codec.schema = schemas.outputs.get(slot).map(|c| c.avro().clone());
        }
    }

    let document = job_document(&p, &entry_points, args);
    let model = ModelSpec {
        language: p.model.language,
        work_dir: materialized.work_dir.clone(),
        main_source: materialized.main_source.clone(),
        entry_points,
        recordsets: comments.recordsets.clone(),
        import_paths: Vec::new(),
    };

    // Files are opened here, before the async runtime: no file I/O on its worker threads.
    let mut inputs = Vec::new();
    for (slot, path, codec) in &p.inputs {
        let source = FileSource::open(path, codec).map_err(|e| e.to_string())?;
        inputs.push(JobInput {
            slot: *slot,
            source: Box::new(source),
        });
    }
    let mut outputs = Vec::new();
    for (slot, path, codec) in &p.outputs {
        let sink = match path {
            Some(path) => FileSink::create(path, codec),
            None => FileSink::stdout(codec),
        }
        .map_err(|e| e.to_string())?;
        outputs.push(JobOutput {
            slot: *slot,
            sink: Box::new(sink),
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let control = Arc::new(JobControl::default());
        let job = Job {
            kind: p.kind,
            model,
            init: InitContext::Job {
                raw_json: document.to_string(),
            },
            inputs,
            outputs,
            train_output: match p.kind {
                JobKind::Train => Some(args.output.clone().unwrap_or_else(|| PathBuf::from("."))),
                _ => None,
            },
            env: vec![("HOME".to_owned(), materialized.home.display().to_string())],
            options: JobOptions {
                stop_on_bad_records: args.stop_on_bad_records,
                batching: jobs::Batching::new(args.batch_size as usize),
                workers: args.workers.map_or_else(default_workers, |w| w as usize),
                workers_explicit: args.workers.is_some(),
                max_worker_restarts: args.max_worker_restarts,
                worker_limits: args.record_timeout.is_some() || args.memory_limit.is_some(),
                environments: Some(Arc::new(environment_cache(args))),
                schemas,
                show_rejected_records: args.show_rejected_records,
                relax_requirements: args.ignore_pins,
                console_limit_bytes: args.console_limit.saturating_mul(1 << 20),
                ..JobOptions::default()
            },
            control: control.clone(),
        };
        let limits = worker::WorkerLimits {
            record_timeout: args.record_timeout.map(Duration::from_millis),
            memory_bytes: args.memory_limit.map(|m| m.saturating_mul(1 << 20)),
            // With no record timeout a hung record would go unnoticed: say so every minute.
            slow_record_warning: args
                .record_timeout
                .is_none()
                .then(|| Duration::from_millis(args.slow_record_warning)),
        };
        let runner: Box<dyn runtime_core::Runner> = match p.model.language {
            Language::Python => Box::new(
                python_runner(limits)
                    .map_err(|e| format!("cannot find the engine's own executable: {e}"))?,
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
    let file_asset = |path: &Path| {
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
        .map(|(_, path, _)| match path {
            Some(path) => file_asset(path),
            None => json!({"assetType": "EXTERNAL_FILE", "name": "stdout", "fileUrl": "stdout:"}),
        })
        .collect();
    let model_name = args
        .model
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_owned());
    let mut slots = BTreeMap::new();
    for (slot, path, _) in &p.inputs {
        slots.insert(slot.0, path.display().to_string());
    }
    json!({
        "id": job_id(),
        "jobType": job_type,
        "jobStatus": "RUNNING",
        "jobParameters": p.params,
        "inputData": p.inputs.iter().map(|(_, path, _)| file_asset(path)).collect::<Vec<_>>(),
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
