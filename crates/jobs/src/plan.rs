//! A batch job as both `engine run` and the service's queue describe it ([`JobPlan`]: the
//! model, inputs and outputs as stream descriptors, options), and the one function that
//! turns it into a runnable [`Job`] ([`build`]): the model materialized, its schemas
//! resolved and attached to the codecs, whole JSON documents detected, every endpoint
//! opened through the [`endpoints::Registry`].
//!
//! Blocking (it writes the model's files and opens the endpoints): call [`build`] before an
//! async runtime starts or on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use codecs::{Encoding, Framing};
use endpoints::{Registry, StreamDescriptor};
use runtime_core::{
    EntryPoints, ExplicitNames, InitContext, JobLog, LogSource, ModelSpec, Slot, SmartComments,
};

use crate::error::{Error, Result};
use crate::job::{Job, JobControl, JobInput, JobKind, JobOptions, JobOutput};
use crate::model_files::{self, LocatedModel, Materialized};

/// Everything a batch job is, before anything of it exists on disk or is open.
pub struct JobPlan {
    /// Scoring, metrics or training.
    pub kind: JobKind,
    /// The model to run.
    pub model: PlanModel,
    /// Where each input slot's records come from.
    pub inputs: Vec<PlanInput>,
    /// Where each output slot's records go.
    pub outputs: Vec<PlanOutput>,
    /// The error output: each refused or failed record becomes an error record there.
    pub errors: Option<StreamDescriptor>,
    /// For training: the folder (a local one, or a store's prefix) where the files the
    /// model wrote under `outputDir/` are copied, each to its own path under it.
    pub train_output: Option<StreamDescriptor>,
    /// What the model's init receives.
    pub init: InitContext,
    /// Schema checking and the job's options.
    pub options: PlanOptions,
}

/// The model of a plan: its main source (read once, its smart comments parsed once) and the
/// files that go with it.
pub struct PlanModel {
    /// The main source and the files beside it.
    pub located: LocatedModel,
    /// The source's smart comments, parsed once.
    pub comments: SmartComments,
    /// The functions the runtime calls (explicit names first, then markers).
    pub entry_points: EntryPoints,
    /// Files written into the model's folder besides the located model's own assets.
    pub assets: Vec<(PathBuf, Asset)>,
}

/// A file of the model given by its content or by where it is on disk.
pub enum Asset {
    /// The file's content.
    Bytes(Vec<u8>),
    /// A file on disk, copied in.
    File(PathBuf),
    /// An object in a store (`EXTERNAL_FILE` by `s3://`, `hdfs://`, `http(s)://`), fetched
    /// through the registry's opener for it before the model starts.
    Remote(Box<StreamDescriptor>),
}

impl PlanModel {
    /// Parses the model's smart comments and resolves its entry points (functions named
    /// in `explicit` first).
    pub fn new(located: LocatedModel, explicit: &ExplicitNames) -> PlanModel {
        let (comments, entry_points) = located.conventions(explicit);
        PlanModel {
            located,
            comments,
            entry_points,
            assets: Vec::new(),
        }
    }

    /// Schemas (Avro JSON text) for slots the source names none for, such as a job
    /// document's `modelMetaData` gives.
    pub fn with_slot_schemas(mut self, schemas: &[(u32, String)]) -> PlanModel {
        for (slot, text) in schemas {
            self.comments
                .schemas
                .entry(Slot(*slot))
                .or_insert_with(|| text.clone());
        }
        self
    }

    /// Writes the model into `work_root` (`model/`, its working directory, and `home/`):
    /// its main source under the reserved name, its assets; logs what its smart comments
    /// got wrong and what was written. Remote assets are fetched through `registry`. The
    /// same for batch jobs and deployments. Blocking.
    pub fn write(
        &self,
        work_root: &Path,
        log: &dyn JobLog,
        registry: &Registry,
    ) -> Result<(Materialized, ModelSpec)> {
        let source_name = &self.located.source_name;
        for (line, problem) in &self.comments.problems {
            log.warn(
                LogSource::Engine,
                format!("{source_name} line {line}: {problem}"),
            );
        }
        let materialized = model_files::materialize(&self.located, work_root)?;
        for (rel, content) in &self.assets {
            match content {
                Asset::Bytes(b) => model_files::write_asset(&materialized, rel, b)?,
                Asset::File(p) => model_files::copy_asset(&materialized, rel, p)?,
                Asset::Remote(d) => {
                    let from = d.shown();
                    let bytes = model_files::fetch_asset(&materialized, rel, |dest| {
                        registry.fetch_file(d, dest)
                    })
                    .map_err(|e| {
                        Error::Model(format!("asset '{}' from {from}: {e}", rel.display()))
                    })?;
                    log.info(
                        LogSource::Engine,
                        format!(
                            "asset {} fetched from {from} ({bytes} bytes)",
                            rel.display()
                        ),
                    );
                }
            }
        }
        log.info(
            LogSource::Engine,
            format!(
                "assets written: {} file(s) in {}",
                materialized.files.len() + self.assets.len(),
                materialized.work_dir.display()
            ),
        );
        let spec = ModelSpec {
            language: self.located.language,
            work_dir: materialized.work_dir.clone(),
            main_source: materialized.main_source.clone(),
            entry_points: self.entry_points.clone(),
            recordsets: self.comments.recordsets.clone(),
            import_paths: Vec::new(),
        };
        Ok((materialized, spec))
    }

    /// Why the model keeps state between records (so its records must reach one worker),
    /// read off its source.
    pub fn state_between_records(&self) -> Option<String> {
        runtime_core::model::state_kept_between_records(
            &self.located.source_text,
            self.located.language,
            self.entry_points.init.as_deref(),
        )
    }
}

/// One input: a slot, the name messages give it, and where its records come from.
pub struct PlanInput {
    /// The input slot (even).
    pub slot: Slot,
    /// The input's name in the job's log (a file name).
    pub name: String,
    /// The endpoint the records are read from.
    pub descriptor: StreamDescriptor,
    /// A JSON input read whole as one record (`Some(true)`), line by line (`Some(false)`),
    /// or, `None`, whole when it is a `.json` file holding one document over several lines.
    pub whole_document: Option<bool>,
}

/// One output: a slot and where its records go.
pub struct PlanOutput {
    /// The output slot (odd).
    pub slot: Slot,
    /// The endpoint the records are written to.
    pub descriptor: StreamDescriptor,
}

/// How the plan becomes a job.
pub struct PlanOptions {
    /// Inputs are checked against the model's input schemas.
    pub input_schema_checking: bool,
    /// Outputs are checked against the model's output schemas.
    pub output_schema_checking: bool,
    /// How the user asks for a detected JSON document to be read line by line, for the log
    /// line saying it was read whole (`--input-mode lines`, `inputMode "lines"`).
    pub lines_hint: String,
    /// The job's options; `schemas` is filled in by [`build`].
    pub job: JobOptions,
}

/// Turns `plan` into a job: writes the model into `work_root` (`model/` and `home/`),
/// resolves the schemas the model names, attaches each slot's schema to its codec (CSV
/// inputs are typed by it, Avro outputs written by it, Parquet outputs' columns made of it), reads a detected JSON document
/// whole, and opens every input and output through `registry`. What it decides goes to
/// `log`. Blocking.
pub fn build(
    plan: JobPlan,
    work_root: &Path,
    registry: &Registry,
    log: &dyn JobLog,
    control: Arc<JobControl>,
) -> Result<Job> {
    let JobPlan {
        kind,
        model,
        inputs,
        outputs,
        errors,
        train_output,
        init,
        options,
    } = plan;
    no_output_over_an_input(&inputs, &outputs, errors.as_ref())?;
    // Known before the model trains, not after: its products go to a folder.
    if let Some(folder) = train_output
        .as_ref()
        .filter(|f| f.transport.child("x").is_none())
    {
        return Err(Error::Core(runtime_core::Error::descriptor(
            "Transport",
            format!(
                "a training job's products go to a folder (a local one, an S3 prefix, an HDFS folder), not {}",
                folder.shown()
            ),
        )));
    }
    let (materialized, spec) = model.write(work_root, log, registry)?;

    let (schemas, warnings) = schema::resolve_checked_schemas(
        &materialized.work_dir,
        &model.comments,
        options.input_schema_checking,
        options.output_schema_checking,
    )
    .map_err(|e| Error::Schemas(e.to_string()))?;
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

    let mut job_inputs = Vec::with_capacity(inputs.len());
    for input in inputs {
        let mut descriptor = input.descriptor;
        let whole = input
            .whole_document
            .unwrap_or_else(|| is_json_document(&input.name, &descriptor));
        if input.whole_document.is_none() && whole {
            log.info(
                LogSource::Engine,
                format!(
                    "input {}: one JSON document over several lines, read whole as one record ({} reads it line by line)",
                    input.name, options.lines_hint
                ),
            );
        }
        if whole {
            descriptor.envelope = None;
        }
        let mut codec = descriptor.codec_config();
        if whole {
            codec.framing = Some(Framing::Message);
        }
        // The schema of a slot also types CSV cells on the way in.
        if codec.encoding == Encoding::Csv && codec.schema.is_none() {
            codec.schema = schemas.inputs.get(&input.slot).map(|c| c.avro().clone());
        }
        job_inputs.push(JobInput {
            slot: input.slot,
            source: registry.open_source(&descriptor, &codec)?,
        });
    }
    let mut job_outputs = Vec::with_capacity(outputs.len());
    for output in outputs {
        let mut codec = output.descriptor.codec_config();
        // ... and drives Avro (and a Parquet file's columns) on the way out.
        if matches!(codec.encoding, Encoding::AvroBinary | Encoding::Parquet)
            && codec.schema.is_none()
        {
            codec.schema = schemas.outputs.get(&output.slot).map(|c| c.avro().clone());
        }
        job_outputs.push(JobOutput {
            slot: output.slot,
            sink: registry.open_sink(&output.descriptor, &codec)?,
        });
    }

    let errors = match errors {
        Some(d) => Some(registry.open_error_sink(&d, &d.codec_config())?),
        None => None,
    };

    let state_between_records = model.state_between_records();
    Ok(Job {
        kind,
        model: spec,
        source_name: model.located.source_name.clone(),
        state_between_records,
        init,
        inputs: job_inputs,
        outputs: job_outputs,
        errors,
        train_output: train_output.map(|folder| crate::job::TrainOutput {
            folder,
            registry: registry.clone(),
        }),
        env: vec![("HOME".to_owned(), materialized.home.display().to_string())],
        options: JobOptions {
            schemas,
            ..options.job
        },
        control,
    })
}

/// Refuses an output (the error output too) that is one of the job's input files: opening it
/// would empty the input before a record of it is read.
fn no_output_over_an_input(
    inputs: &[PlanInput],
    outputs: &[PlanOutput],
    errors: Option<&StreamDescriptor>,
) -> Result<()> {
    use endpoints::descriptor::Transport;
    let file = |d: &StreamDescriptor| match &d.transport {
        Transport::File { path } if path != "-" => std::fs::canonicalize(path).ok(),
        _ => None,
    };
    let read: Vec<(PathBuf, &str)> = inputs
        .iter()
        .filter_map(|i| Some((file(&i.descriptor)?, i.name.as_str())))
        .collect();
    let written = outputs
        .iter()
        .map(|o| (&o.descriptor, format!("the output of slot {}", o.slot)))
        .chain(errors.map(|d| (d, "the error output".to_owned())));
    for (descriptor, what) in written {
        let Some(path) = file(descriptor) else {
            continue;
        };
        if let Some((_, input)) = read.iter().find(|(p, _)| *p == path) {
            return Err(Error::Core(runtime_core::Error::descriptor(
                "Transport.Path",
                format!(
                    "{what} is the input {input} ({}): writing it would empty the input before it is read; name another file",
                    path.display()
                ),
            )));
        }
    }
    Ok(())
}

/// A JSON file input named `.json` whose content is one document over several lines.
fn is_json_document(name: &str, descriptor: &StreamDescriptor) -> bool {
    let endpoints::descriptor::Transport::File { path } = &descriptor.transport else {
        return false;
    };
    descriptor.encoding == Encoding::Json
        && name.to_ascii_lowercase().ends_with(".json")
        && std::fs::File::open(path).is_ok_and(|f| {
            codecs::is_json_document(
                std::io::BufReader::new(f),
                descriptor.codec_config().max_record_bytes,
            )
            .unwrap_or(false)
        })
}
