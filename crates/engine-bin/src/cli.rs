use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "engine",
    version,
    about = "A runtime for ModelOp-style Python and R models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a model over files as a batch job (scoring, metrics or training).
    Run(Box<RunArgs>),
    /// The model worker process (started by the engine itself).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Run the engine service: control API, job queue, deployed model on REST.
    Serve(Box<crate::serve::ServeArgs>),
    /// Batch jobs of a running engine: create, status, result, log, list, cancel, rerun.
    Job(crate::client::JobArgs),
    /// Deploy a model (source file or folder) to a running engine.
    Deploy(crate::client::DeployArgs),
    /// Undeploy a running engine's model.
    Undeploy(crate::client::UndeployArgs),
    /// Streams on a running engine's deployed model: attach, list, detach.
    Stream(crate::client::StreamArgs),
    /// Score standard input's lines, one record each, with the deployed model.
    Score(crate::client::ScoreArgs),
    /// A running engine's state, tags, jobs and deployed model.
    Status(crate::client::StatusArgs),
    /// Probe a running engine: exit 0 when healthy (`--ready`: its model ready), else 1.
    Health(crate::client::HealthArgs),
    /// Print a fresh random token for `engine serve --auth-token-file` / ENGINE_TOKEN.
    Token,
    /// Avro schemas: check a file of records against a schema.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Check every record of DATA against the Avro schema SCHEMA (a .avsc file); exit 0 when
    /// all conform, 1 when any is rejected.
    Check(SchemaCheckArgs),
}

#[derive(Debug, Args)]
pub struct SchemaCheckArgs {
    /// The Avro schema (JSON text in a file).
    pub schema: PathBuf,
    /// The records: JSON lines, CSV, Avro, MessagePack... by extension.
    pub data: PathBuf,
    /// Encoding of DATA instead of guessing from its extension.
    #[arg(long, value_name = "ENCODING")]
    pub encoding: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    pub language: WorkerLanguage,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WorkerLanguage {
    Python,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EnvToolArg {
    Auto,
    Uv,
    Pip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InputModeArg {
    Lines,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum JobKindArg {
    Score,
    Metrics,
    Train,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The model: a source file (.py) or a folder (its main source and every other file,
    /// the model's assets).
    pub model: PathBuf,

    /// An input file; the k-th --input (from 0) feeds slot 2k.
    #[arg(long = "input", short = 'i', value_name = "PATH", required = true)]
    pub inputs: Vec<PathBuf>,

    /// Where slot 1 goes (default, or `-`: standard output as JSON lines). For a training job, the
    /// folder that receives the files written under outputDir/.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Where another output slot goes, as SLOT=PATH (odd slots).
    #[arg(long = "output-slot", value_name = "N=PATH")]
    pub output_slots: Vec<String>,

    /// Where each record that was refused or that the model failed on goes, as one error
    /// record (JSON lines: stage, kind, slot, record, line, reason, value...; see
    /// docs/endpoints.md). Without it they are counted and logged.
    #[arg(long, value_name = "PATH")]
    pub errors: Option<PathBuf>,

    /// What to run.
    #[arg(long, value_enum, default_value = "score")]
    pub job: JobKindArg,

    /// A job parameter as KEY=VALUE, given to init in the job document's jobParameters
    /// (VALUE is read as JSON when it parses, else as a string).
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,

    #[arg(long, value_name = "NAME")]
    pub init_fn: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub score_fn: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub metrics_fn: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub train_fn: Option<String>,

    /// The main source inside a folder model, when it cannot be told otherwise.
    #[arg(long, value_name = "FILE")]
    pub source: Option<String>,

    /// Encoding of every input (json, csv, avro-binary, msgpack, parquet, utf-8, raw), instead of
    /// guessing from each file's extension.
    #[arg(long, value_name = "ENCODING")]
    pub input_encoding: Option<String>,

    /// How a JSON input's records are cut: `lines` (one record per line), `file` (the whole
    /// file is one record). Default: lines, except a .json file holding one JSON document
    /// over several lines, which is one record.
    #[arg(long, value_enum, value_name = "MODE")]
    pub input_mode: Option<InputModeArg>,

    /// Encoding of every output, instead of guessing from the extension (stdout: json).
    #[arg(long, value_name = "ENCODING")]
    pub output_encoding: Option<String>,

    /// End the job at the first record rejected by encoding or schema.
    #[arg(long)]
    pub stop_on_bad_records: bool,

    /// Write the job's summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,

    /// Write the job's log lines to this file instead of standard error.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,

    /// `text`, or `json`: the job's log and the engine's diagnostics as one JSON object per
    /// line (timestamp, level, target, job_id, source, message), for log collectors.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormatArg,

    /// Records per batch sent to the model's worker.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,

    /// Keep the job's working folder (the model's materialized files) and print where.
    #[arg(long)]
    pub keep_work_dir: bool,

    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,

    /// Workers scoring in parallel (scoring jobs; metrics and training use one).
    /// Default: the cores available.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: Option<u32>,

    /// Longest time one record may take, in milliseconds; past it the worker is killed, the
    /// record fails and a new worker takes over.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub record_timeout: Option<u64>,

    /// Without --record-timeout: how often a record still running is named in a warning, in
    /// milliseconds.
    #[arg(long, hide = true, value_name = "MS", default_value_t = 60_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub slow_record_warning: u64,

    /// Largest resident memory of a worker, in MiB; past it the worker is killed, the record
    /// it was scoring fails and a new worker takes over.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub memory_limit: Option<u64>,

    /// The most output of the model's console (print, stderr) the job's log takes, in MiB;
    /// past it, lines are dropped and counted. Lines are cut at 64 KiB.
    #[arg(long, value_name = "MIB", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub console_limit: u64,

    /// How many workers that die while scoring may be replaced (their record failing) before
    /// the job ends in ERROR. Default 0: the first death ends the job.
    #[arg(long, default_value_t = 0)]
    pub max_worker_restarts: u32,

    /// Where model environments (from a model's requirements.txt) are cached. Default:
    /// $ENGINE_ENV_CACHE, else ~/.cache/model-runtime/environments.
    #[arg(long, value_name = "DIR")]
    pub env_cache: Option<PathBuf>,

    /// Largest size of the environment cache, in MiB; least recently used ones go first.
    #[arg(long, value_name = "MIB", default_value_t = 5120)]
    pub env_cache_size: u64,

    /// Install the model's requirements without their version pins (the same packages, at
    /// versions that resolve), for old models whose exact versions no longer build.
    #[arg(long)]
    pub ignore_pins: bool,

    /// Install nothing: a model whose requirements have no cached environment fails.
    #[arg(long)]
    pub no_installs: bool,

    /// The tool that builds environments: the fastest present (auto), uv, or venv + pip.
    #[arg(long, value_enum, default_value = "auto")]
    pub env_tool: EnvToolArg,

    /// Do not check input records against the schemas the model declares.
    #[arg(long)]
    pub no_input_schema_check: bool,

    /// Do not check output records against the schemas the model declares.
    #[arg(long)]
    pub no_output_schema_check: bool,

    /// Show records rejected by schema in full in the log; they are masked otherwise.
    #[arg(long)]
    pub show_rejected_records: bool,
}
