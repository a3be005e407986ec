//! The ModelOp Center job document (and the deployment document, its sibling), read
//! tolerantly: unknown fields are kept in `rawJson` for the model and otherwise ignored.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use codecs::Encoding;
use endpoints::StreamDescriptor;
use jobs::JobKind;
use runtime_core::{ExplicitNames, Language};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A batch job as ModelOp Center sends it (the fields the engine reads; any other field is
/// accepted and passed to the model in `rawJson`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDocument {
    #[serde(default)]
    pub id: Option<String>,
    /// `MODEL_BATCH_JOB` (scoring), `MODEL_BATCH_TEST_JOB` (metrics),
    /// `MODEL_BATCH_TRAINING_JOB` (training; any type containing `TRAINING`).
    pub job_type: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub model: Option<ModelRef>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub input_data: Vec<Asset>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub output_data: Vec<Asset>,
    /// Given to init in `rawJson`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub job_parameters: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub stop_on_bad_records: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub enable_input_schema_checking: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub enable_output_schema_checking: bool,
    /// Where the job runs: `local` (the engine's workers) or `spark` (docs/spark.md);
    /// absent: the engine's default (`spark.default` of application.json).
    #[serde(default)]
    pub runtime: Option<String>,
}

/// A model deployment: the model and, optionally, the encodings of its REST slots.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentDocument {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// The model, as ModelOp Center names it in a deployment.
    #[serde(default)]
    pub deployable_model: Option<ModelRef>,
    /// Accepted in place of `deployableModel`.
    #[serde(default)]
    pub model: Option<ModelRef>,
    /// Encoding of each slot's REST bodies by slot number (`{"0": "json"}`); JSON when
    /// not given.
    #[serde(default, deserialize_with = "null_as_default")]
    pub encodings: std::collections::BTreeMap<String, String>,
    /// Check requests against the model's input schemas (default: when it declares them).
    #[serde(default)]
    pub enable_input_schema_checking: Option<bool>,
    /// Check answers against the model's output schemas (default: when it declares them).
    #[serde(default)]
    pub enable_output_schema_checking: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelRef {
    #[serde(default)]
    pub stored_model: Option<StoredModel>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredModel {
    #[serde(default)]
    pub model_meta_data: Option<ModelMetaData>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub model_assets: Vec<Asset>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelMetaData {
    #[serde(default)]
    pub name: Option<String>,
    /// The input schema as ModelOp Center sends it: an Avro schema (object or JSON text),
    /// or a list of entries, each a schema or `{"schemaDefinition": schema, ...}`; the
    /// first is slot 0's.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<serde_json::Value>,
    /// The output schema, in the same forms; slot 1's.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<serde_json::Value>,
}

/// The Avro schema text in one of the forms `modelMetaData.inputSchema` takes; `None` for
/// null or an empty list.
fn metadata_schema(v: &serde_json::Value, what: &str) -> Result<Option<String>> {
    use serde_json::Value as J;
    match v {
        J::Null => Ok(None),
        J::Array(items) => match items.first() {
            Some(first) => metadata_schema(first, &format!("{what}[0]")),
            None => Ok(None),
        },
        J::Object(o) => match o.get("schemaDefinition") {
            Some(def) => metadata_schema(def, &format!("{what}.schemaDefinition")),
            None if o.contains_key("type") => Ok(Some(v.to_string())),
            None => Err(Error::BadRequest(format!(
                "{what}: neither an Avro schema (no 'type') nor an entry with 'schemaDefinition'"
            ))),
        },
        J::String(text) if text.trim().is_empty() => Ok(None),
        J::String(text) => match serde_json::from_str::<J>(text) {
            Ok(parsed @ (J::Object(_) | J::Array(_))) => metadata_schema(&parsed, what),
            _ => Ok(Some(
                serde_json::Value::String(text.trim().to_owned()).to_string(),
            )),
        },
        _ => Err(Error::BadRequest(format!("{what}: not an Avro schema"))),
    }
}

/// A model asset, an input or an output.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Asset {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
    /// `SOURCE_CODE`, `FILE`, `EXTERNAL_FILE`, `SQL`.
    #[serde(default)]
    pub asset_type: Option<String>,
    /// `MODEL_SOURCE`, `REQUIRED_LIBRARIES`, `MODEL_SCHEMA`, `TEST_DATA`, ...
    #[serde(default)]
    pub asset_role: Option<String>,
    #[serde(default)]
    pub primary_model_source: Option<bool>,
    #[serde(default)]
    pub source_code: Option<String>,
    /// Embedded content, base64.
    #[serde(default)]
    pub file_content: Option<String>,
    /// Embedded content, text.
    #[serde(default)]
    pub file_content_string: Option<String>,
    /// Where the asset's bytes are: `file:///abs/path`, `s3://bucket/key`,
    /// `hdfs://namenode:8020/path`, `webhdfs://host:port/path`, `http(s)://...`.
    #[serde(default)]
    pub file_url: Option<String>,
    /// A `SQL` asset's database (`connectionUri`: a JDBC URL as ModelOp Center sends it, or
    /// a `postgres://`, `mysql://`, `sqlite://` URL).
    #[serde(default)]
    pub repository_info: Option<RepositoryInfo>,
    /// A `SQL` asset's statement: the query an input's records are the rows of; for an
    /// output, the table its records are inserted into (`INSERT INTO t (a, b)` or `t`).
    #[serde(default)]
    pub sql_statement: Option<String>,
    /// Encoding of an input or output (`json`, `csv`, ...); guessed from the name otherwise.
    #[serde(default)]
    pub encoding: Option<String>,
    /// How a JSON input's records are cut: `lines` or `file` (the whole input is one record,
    /// as a stream descriptor's `"Envelope": null`). Absent: lines, except a `.json` input
    /// holding one JSON document over several lines.
    #[serde(default)]
    pub input_mode: Option<String>,
    #[serde(default)]
    pub init_function: Option<String>,
    #[serde(default)]
    pub score_function: Option<String>,
    #[serde(default)]
    pub metrics_function: Option<String>,
    #[serde(default)]
    pub training_function: Option<String>,
}

/// Where a `SQL` asset's database is.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryInfo {
    #[serde(default)]
    pub connection_uri: Option<String>,
}

/// Where a model file's, an input's or an output's bytes are.
#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Vec<u8>),
    File(PathBuf),
    /// In a store, reached through the endpoint registry: an object (`s3://`, `hdfs://`,
    /// `http(s)://`) or a SQL statement's rows or table. Its encoding is the asset's.
    Remote(Box<StreamDescriptor>),
}

impl Content {
    /// The stream a file or a store holds, read or written with `encoding`; `None` for
    /// embedded bytes (written to a file first).
    pub fn descriptor(&self, encoding: Encoding) -> Option<StreamDescriptor> {
        match self {
            Content::File(p) => Some(StreamDescriptor::file(p.display().to_string(), encoding)),
            Content::Remote(d) => Some(StreamDescriptor::new(d.transport.clone(), encoding)),
            Content::Bytes(_) => None,
        }
    }
}

/// A model ready to materialize.
#[derive(Clone, Debug)]
pub struct ModelSource {
    pub name: String,
    pub source_name: String,
    pub source_text: String,
    pub language: Option<Language>,
    pub explicit: ExplicitNames,
    pub assets: Vec<(PathBuf, Content)>,
    /// Schemas by slot from `modelMetaData` (Avro JSON text); a slot whose source names
    /// a schema keeps the source's.
    pub schemas: Vec<(u32, String)>,
}

/// An input or output of a job.
#[derive(Clone, Debug)]
pub struct DataSpec {
    pub name: String,
    pub encoding: Encoding,
    /// Input: where the bytes are. Output: `None` = embedded in the job's result.
    pub content: Option<Content>,
    /// A JSON input read whole as one record (`Some(true)`), line by line (`Some(false)`), or
    /// as its content says (`None`).
    pub whole_file: Option<bool>,
}

/// What a job document asks for.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub kind: JobKind,
    pub model: ModelSource,
    pub inputs: Vec<DataSpec>,
    pub outputs: Vec<DataSpec>,
    pub stop_on_bad_records: bool,
    /// `enableInputSchemaChecking`: inputs are checked against the model's schemas.
    pub input_schema_checking: bool,
    /// `enableOutputSchemaChecking`: outputs are checked against the model's schemas.
    pub output_schema_checking: bool,
    /// Job parameter `relaxRequirements` (`true` or `"true"`): the model's requirements are
    /// installed without their version pins.
    pub relax_requirements: bool,
    /// `runtime`: `Some(true)` on Spark, `Some(false)` on the engine's workers, `None` as
    /// the engine's default says.
    pub on_spark: Option<bool>,
}

pub fn job_kind(job_type: &str) -> Result<JobKind> {
    let t = job_type.trim().to_ascii_uppercase();
    match t.as_str() {
        "MODEL_BATCH_JOB" | "BATCHJOB" | "SCORE" => Ok(JobKind::Score),
        "MODEL_BATCH_TEST_JOB" | "TESTJOB" | "METRICS" => Ok(JobKind::Metrics),
        _ if t.contains("TRAINING") || t == "TRAIN" => Ok(JobKind::Train),
        _ => Err(Error::BadRequest(format!(
            "jobType '{job_type}' is not one of MODEL_BATCH_JOB, MODEL_BATCH_TEST_JOB, MODEL_BATCH_TRAINING_JOB"
        ))),
    }
}

impl JobDocument {
    pub fn spec(&self) -> Result<JobSpec> {
        let kind = job_kind(&self.job_type)?;
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| Error::BadRequest("the job document has no 'model'".into()))?;
        let model = model_source(model, "model")?;
        if self.input_data.is_empty() {
            return Err(Error::BadRequest(
                "the job document has no 'inputData'".into(),
            ));
        }
        let inputs = self
            .input_data
            .iter()
            .enumerate()
            .map(|(i, a)| data_spec(a, &format!("inputData[{i}]"), true))
            .collect::<Result<Vec<_>>>()?;
        let mut outputs = self
            .output_data
            .iter()
            .enumerate()
            .map(|(i, a)| data_spec(a, &format!("outputData[{i}]"), false))
            .collect::<Result<Vec<_>>>()?;
        if outputs.is_empty() {
            outputs.push(DataSpec {
                name: "output.json".into(),
                encoding: Encoding::Json,
                content: None,
                whole_file: None,
            });
        }
        let on_spark = match self.runtime.as_deref().map(str::to_ascii_lowercase) {
            None => None,
            Some(r) if r == "spark" => Some(true),
            Some(r) if r == "local" => Some(false),
            Some(_) => {
                return Err(Error::BadRequest(format!(
                    "runtime '{}' is not one of local, spark",
                    self.runtime.as_deref().unwrap_or_default()
                )))
            }
        };
        Ok(JobSpec {
            on_spark,
            kind,
            model,
            inputs,
            outputs,
            stop_on_bad_records: self.stop_on_bad_records,
            input_schema_checking: self.enable_input_schema_checking,
            output_schema_checking: self.enable_output_schema_checking,
            relax_requirements: self
                .job_parameters
                .as_ref()
                .and_then(|p| p.get("relaxRequirements"))
                .is_some_and(|v| {
                    v.as_bool() == Some(true)
                        || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
                }),
        })
    }
}

impl DeploymentDocument {
    pub fn model(&self) -> Result<ModelSource> {
        let m = self
            .deployable_model
            .as_ref()
            .or(self.model.as_ref())
            .ok_or_else(|| {
                Error::BadRequest("the deployment document has no 'deployableModel'".into())
            })?;
        let mut source = model_source(m, "deployableModel")?;
        if let Some(n) = &self.name {
            source.name = n.clone();
        }
        Ok(source)
    }

    /// The encoding of a slot's REST bodies.
    pub fn encoding_of(&self, slot: u32) -> Result<Encoding> {
        match self.encodings.get(&slot.to_string()) {
            Some(e) => e
                .parse()
                .map_err(|e| Error::BadRequest(format!("encodings.{slot}: {e}"))),
            None => Ok(Encoding::Json),
        }
    }
}

fn decode_content(a: &Asset, what: &str, input: bool) -> Result<Option<Content>> {
    if let Some(text) = &a.file_content_string {
        return Ok(Some(Content::Bytes(text.clone().into_bytes())));
    }
    if let Some(b64) = &a.file_content {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| Error::BadRequest(format!("{what}.fileContent: not base64: {e}")))?;
        return Ok(Some(Content::Bytes(bytes)));
    }
    if let Some(code) = &a.source_code {
        return Ok(Some(Content::Bytes(code.clone().into_bytes())));
    }
    if let Some(url) = &a.file_url {
        return url_content(url, what).map(Some);
    }
    if let Some(info) = &a.repository_info {
        return sql_content(a, info, what, input).map(Some);
    }
    Ok(None)
}

/// The local path a `fileUrl` names; `None` for an object in a store (which no path
/// policy applies to), an error for a scheme no endpoint reads.
pub fn local_path(url: &str, what: &str) -> Result<Option<PathBuf>> {
    if endpoints::descriptor::names_a_store(url) {
        return Ok(None);
    }
    if !url
        .trim_start()
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("file:"))
    {
        return Err(Error::BadRequest(format!(
            "{what}.fileUrl '{}': not a URL of file: or of a store ({}://)",
            endpoints::redact(url),
            endpoints::descriptor::STORE_SCHEMES.join("://, ")
        )));
    }
    file_url_path(url.trim_start(), what).map(Some)
}

/// A `fileUrl`: a local path, or an object in a store.
fn url_content(url: &str, what: &str) -> Result<Content> {
    if let Some(path) = local_path(url, what)? {
        return Ok(Content::File(path));
    }
    StreamDescriptor::parse(url.trim())
        .map(|d| Content::Remote(Box::new(d)))
        .map_err(|e| Error::BadRequest(format!("{what}.fileUrl '{}': {e}", endpoints::redact(url))))
}

/// A `SQL` asset: its statement's rows (an input) or its table (an output) in the database
/// `repositoryInfo.connectionUri` names.
fn sql_content(a: &Asset, info: &RepositoryInfo, what: &str, input: bool) -> Result<Content> {
    let uri = info
        .connection_uri
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            Error::BadRequest(format!("{what}.repositoryInfo.connectionUri is missing"))
        })?;
    let statement = a
        .sql_statement
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::BadRequest(format!("{what}.sqlStatement is missing")))?;
    let mut transport = serde_json::json!({"Type": "ODBC", "ConnectionString": uri.trim()});
    if input {
        transport["SelectQuery"] = statement.into();
    } else {
        let (table, fields) = insert_target(statement).ok_or_else(|| {
            Error::BadRequest(format!(
                "{what}.sqlStatement: an output names the table its records go to, as `INSERT INTO table (column, ...)` or `table`; not '{statement}'"
            ))
        })?;
        transport["InsertIntoTable"] = table.into();
        if let Some(fields) = fields {
            transport["OutputFields"] = fields.into();
        }
    }
    StreamDescriptor::from_json(&serde_json::json!({ "Transport": transport }))
        .map(|d| Content::Remote(Box::new(d)))
        .map_err(|e| {
            Error::BadRequest(format!(
                "{what} (SQL asset on {}): {e}",
                endpoints::redact(uri)
            ))
        })
}

/// The table (and columns, when listed) an output's `sqlStatement` names:
/// `INSERT INTO t (a, b)`, `INSERT INTO t`, or a bare `t` (`schema.t`, quoted names kept).
fn insert_target(statement: &str) -> Option<(String, Option<Vec<String>>)> {
    let s = statement.trim().trim_end_matches(';').trim();
    let words: Vec<&str> = s.splitn(3, char::is_whitespace).collect();
    let rest = match words.as_slice() {
        [i, into, rest]
            if i.eq_ignore_ascii_case("insert") && into.eq_ignore_ascii_case("into") =>
        {
            rest.trim()
        }
        [name] => name,
        _ => return None,
    };
    let (table, columns) = match rest.split_once('(') {
        Some((t, cols)) => {
            let cols = cols.trim_end().strip_suffix(')')?;
            let cols: Vec<String> = cols
                .split(',')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect();
            (t.trim(), (!cols.is_empty()).then_some(cols))
        }
        None => (rest, None),
    };
    let valid = !table.is_empty()
        && table
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '"' | '`' | '$'));
    valid.then(|| (table.to_owned(), columns))
}

/// The `file:` URL of an absolute path, `file_url_path`'s inverse: `%`, control
/// characters and bytes past ASCII percent-encoded, the rest as it is.
pub fn file_url(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');
    format!(
        "file://{}",
        percent_encoding::percent_encode(path.as_os_str().as_bytes(), ESCAPED)
    )
}

/// The path of a `file:` URL; other schemes are refused (this build reaches no external
/// store).
pub fn file_url_path(url: &str, what: &str) -> Result<PathBuf> {
    let path = url
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("file:"))
        .map(|_| &url[5..])
        .map(|rest| rest.strip_prefix("//").unwrap_or(rest))
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "{what}.fileUrl '{}': not a file: URL",
                endpoints::redact(url)
            ))
        })?;
    // A URL's path is percent-encoded (`my%20file.csv`), as ModelOp Center writes it.
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    if bytes.contains(&0) {
        return Err(Error::BadRequest(format!(
            "{what}.fileUrl '{url}': the path holds a NUL byte"
        )));
    }
    let path = PathBuf::from(std::ffi::OsString::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&bytes),
    ));
    if !path.is_absolute() {
        return Err(Error::BadRequest(format!(
            "{what}.fileUrl '{url}': the path must be absolute"
        )));
    }
    Ok(path)
}

fn asset_name(a: &Asset) -> Option<String> {
    a.filename
        .clone()
        .or_else(|| a.name.clone())
        .or_else(|| {
            a.file_url
                .as_deref()
                .and_then(|u| u.rsplit('/').next())
                .map(str::to_owned)
        })
        .filter(|n| !n.trim().is_empty())
}

fn model_source(m: &ModelRef, what: &str) -> Result<ModelSource> {
    let stored = m
        .stored_model
        .as_ref()
        .ok_or_else(|| Error::BadRequest(format!("{what}.storedModel is missing")))?;
    let assets = &stored.model_assets;
    let is_source = |a: &Asset| {
        a.asset_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("SOURCE_CODE"))
    };
    let main = assets
        .iter()
        .position(|a| is_source(a) && a.primary_model_source == Some(true))
        .or_else(|| {
            assets.iter().position(|a| {
                is_source(a)
                    && a.asset_role
                        .as_deref()
                        .is_some_and(|r| r.eq_ignore_ascii_case("MODEL_SOURCE"))
            })
        })
        .or_else(|| assets.iter().position(is_source))
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "{what}.storedModel.modelAssets has no SOURCE_CODE asset"
            ))
        })?;
    let main_asset = &assets[main];
    let where_main = format!("{what}.storedModel.modelAssets[{main}]");
    let text = match decode_content(main_asset, &where_main, true)? {
        Some(Content::Bytes(b)) => String::from_utf8(b)
            .map_err(|_| Error::BadRequest(format!("{where_main}: the source is not UTF-8")))?,
        Some(Content::File(p)) => std::fs::read_to_string(&p)
            .map_err(|e| Error::BadRequest(format!("{where_main}: {}: {e}", p.display())))?,
        Some(Content::Remote(d)) => {
            return Err(Error::BadRequest(format!(
                "{where_main}: the model's source is embedded (sourceCode) or a file: URL, not {}; other files of the model may be in a store",
                d.shown()
            )))
        }
        None => return Err(Error::BadRequest(format!("{where_main} has no sourceCode"))),
    };
    let source_name = asset_name(main_asset).unwrap_or_else(|| "model.py".to_owned());
    // The source is written under a reserved name, but its name is shown and stored: it
    // follows the rules of every asset name.
    safe_relative(&source_name, &where_main)?;
    let language = Language::from_path(&source_name).or(Some(Language::Python));
    let explicit = ExplicitNames {
        init: main_asset.init_function.clone().filter(|s| !s.is_empty()),
        score: main_asset.score_function.clone().filter(|s| !s.is_empty()),
        metrics: main_asset
            .metrics_function
            .clone()
            .filter(|s| !s.is_empty()),
        train: main_asset
            .training_function
            .clone()
            .filter(|s| !s.is_empty()),
    };
    let mut files = Vec::new();
    for (i, a) in assets.iter().enumerate() {
        if i == main {
            continue;
        }
        let where_ = format!("{what}.storedModel.modelAssets[{i}]");
        let Some(name) = asset_name(a) else {
            return Err(Error::BadRequest(format!("{where_} has no name")));
        };
        let rel = safe_relative(&name, &where_)?;
        match decode_content(a, &where_, true)? {
            Some(Content::Remote(d))
                if matches!(d.transport, endpoints::descriptor::Transport::Odbc(_)) =>
            {
                return Err(Error::BadRequest(format!(
                    "{where_} ({name}): a model file is embedded or named by a fileUrl; SQL assets are a job's inputs and outputs"
                )))
            }
            Some(c) => files.push((rel, c)),
            None => {
                return Err(Error::BadRequest(format!(
                    "{where_} ({name}) has no content: give sourceCode, fileContent, fileContentString or a fileUrl"
                )))
            }
        }
    }
    let name = stored
        .model_meta_data
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or_else(|| {
            Path::new(&source_name)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
    let mut schemas = Vec::new();
    if let Some(meta) = &stored.model_meta_data {
        let sides = [
            (0, &meta.input_schema, "inputSchema"),
            (1, &meta.output_schema, "outputSchema"),
        ];
        for (slot, value, field) in sides {
            let what = format!("{what}.storedModel.modelMetaData.{field}");
            if let Some(text) = value
                .as_ref()
                .map(|v| metadata_schema(v, &what))
                .transpose()?
            {
                schemas.extend(text.map(|t| (slot, t)));
            }
        }
    }
    Ok(ModelSource {
        schemas,
        name,
        source_name,
        source_text: text,
        language,
        explicit,
        assets: files,
    })
}

/// A relative path that stays inside the model's folder (the rules of
/// `jobs::model_files::check_asset_name`: no `..`, absolute name, NUL or over-long name).
pub fn safe_relative(name: &str, what: &str) -> Result<PathBuf> {
    jobs::model_files::check_asset_name(name).map_err(|e| Error::BadRequest(format!("{what}: {e}")))
}

fn data_spec(a: &Asset, what: &str, input: bool) -> Result<DataSpec> {
    let name = asset_name(a).unwrap_or_else(|| {
        if input {
            "input.json".into()
        } else {
            "output.json".into()
        }
    });
    let encoding = match &a.encoding {
        Some(e) => e
            .parse()
            .map_err(|e| Error::BadRequest(format!("{what}.encoding: {e}")))?,
        None => {
            let ext = Path::new(&name)
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("json");
            match Encoding::of_extension(ext) {
                Some(e) => e,
                // An input is never read as raw bytes by mistake; an output may be written so.
                None if input => {
                    return Err(Error::BadRequest(format!(
                        "{what} ({name}): the extension '.{ext}' names no encoding this engine reads (known: {}); \
                         give \"encoding\" (json, csv, avro-binary, msgpack, parquet, utf-8), or \"encoding\": \"raw\" to give the model its bytes as they are",
                        Encoding::known_extensions()
                    )))
                }
                None => Encoding::Raw,
            }
        }
    };
    let whole_file = match a
        .input_mode
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("file") => Some(true),
        Some("lines") => Some(false),
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "{what}.inputMode: '{other}' is not one of file, lines"
            )))
        }
    };
    if whole_file.is_some() && encoding != Encoding::Json {
        return Err(Error::BadRequest(format!(
            "{what}.inputMode applies to JSON inputs; {name} is {encoding}"
        )));
    }
    let content = decode_content(a, what, input)?;
    if input && content.is_none() {
        return Err(Error::BadRequest(format!(
            "{what} ({name}) has no data: give fileContent, fileContentString, a fileUrl or a SQL asset's repositoryInfo and sqlStatement"
        )));
    }
    if !input && matches!(content, Some(Content::Bytes(_))) {
        return Err(Error::BadRequest(format!(
            "{what}: an output cannot carry content"
        )));
    }
    Ok(DataSpec {
        name,
        encoding,
        content,
        whole_file,
    })
}

/// The field a stored document's asset carries when the engine moved its embedded
/// content to a file: the name of the field it came from (`fileContent` or
/// `fileContentString`).
pub const MOVED_CONTENT: &str = "engineMovedContent";

/// Stores each byte once: the embedded contents (`fileContent`, `fileContentString`) of a
/// job document's model assets and inputs are written to files under `dir`, and the
/// document keeps their paths (`fileUrl`) instead, with a note of where the content was so
/// that [`raw_json`] gives the model the document as it was submitted. Returns how many
/// were moved. Blocking.
pub fn move_contents(doc: &mut serde_json::Value, dir: &Path) -> Result<usize> {
    let mut n = 0usize;
    move_list(
        doc.pointer_mut("/model/storedModel/modelAssets"),
        dir,
        &mut n,
    )?;
    move_list(doc.get_mut("inputData"), dir, &mut n)?;
    Ok(n)
}

fn move_list(list: Option<&mut serde_json::Value>, dir: &Path, n: &mut usize) -> Result<()> {
    for asset in list.and_then(|l| l.as_array_mut()).into_iter().flatten() {
        let Some(a) = asset.as_object_mut() else {
            continue;
        };
        if a.contains_key("fileUrl") {
            continue;
        }
        for field in ["fileContentString", "fileContent"] {
            let Some(serde_json::Value::String(content)) = a.get(field) else {
                continue;
            };
            let bytes = if field == "fileContent" {
                match base64::engine::general_purpose::STANDARD.decode(content.trim()) {
                    Ok(b) => b,
                    // Left in place: reading the document reports it.
                    Err(_) => break,
                }
            } else {
                content.as_bytes().to_vec()
            };
            let path = dir.join(format!("content-{n}"));
            *n += 1;
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&path, &bytes))
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            a.remove(field);
            a.insert("fileUrl".into(), serde_json::Value::String(file_url(&path)));
            a.insert(
                MOVED_CONTENT.into(),
                serde_json::Value::String(field.into()),
            );
            break;
        }
    }
    Ok(())
}

/// The document a model's init receives as `rawJson`: the stored one with the contents
/// [`move_contents`] moved to files put back in place. Blocking.
pub fn raw_json(stored: &str) -> Result<String> {
    if !stored.contains(MOVED_CONTENT) {
        return Ok(stored.to_owned());
    }
    let mut doc: serde_json::Value = serde_json::from_str(stored)
        .map_err(|e| Error::BadRequest(format!("the stored job document is unreadable: {e}")))?;
    let restore = |list: Option<&mut serde_json::Value>| -> Result<()> {
        for asset in list.and_then(|l| l.as_array_mut()).into_iter().flatten() {
            let Some(a) = asset.as_object_mut() else {
                continue;
            };
            let Some(serde_json::Value::String(field)) = a.remove(MOVED_CONTENT) else {
                continue;
            };
            let Some(serde_json::Value::String(url)) = a.remove("fileUrl") else {
                continue;
            };
            let path = file_url_path(&url, "fileUrl")?;
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            let value = if field == "fileContent" {
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            };
            a.insert(field, serde_json::Value::String(value));
        }
        Ok(())
    };
    restore(doc.pointer_mut("/model/storedModel/modelAssets"))?;
    restore(doc.get_mut("inputData"))?;
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_are_percent_decoded() {
        let p = file_url_path("file:///srv/data/my%20file.csv", "inputData[0]").unwrap();
        assert_eq!(p, std::path::Path::new("/srv/data/my file.csv"));
        let p = file_url_path("file:/srv/caf%C3%A9.json", "x").unwrap();
        assert_eq!(p, std::path::Path::new("/srv/café.json"));
        assert!(file_url_path("file:///srv/a%00b", "x").is_err());
        assert!(file_url_path("file://relative/x", "x").is_err());
        for p in ["/srv/my file.csv", "/srv/100%/x", "/srv/café/a\tb"] {
            let url = file_url(std::path::Path::new(p));
            assert_eq!(
                file_url_path(&url, "x").unwrap(),
                std::path::Path::new(p),
                "{url}"
            );
        }
    }

    #[test]
    fn reads_a_modelop_job_document() {
        let doc: JobDocument = serde_json::from_value(serde_json::json!({
            "jobType": "MODEL_BATCH_JOB",
            "jobStatus": "CREATED",
            "model": {"storedModel": {"modelMetaData": {"name": "m"}, "modelAssets": [
                {"name": "helper.py", "assetType": "SOURCE_CODE", "sourceCode": "X = 1"},
                {"name": "model.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
                 "primaryModelSource": true, "sourceCode": "def action(x):\n    yield x\n",
                 "scoreFunction": "action"},
                {"name": "weights.bin", "assetType": "FILE", "fileContent": "AAEC"}
            ]}},
            "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": "1\n2\n"}],
            "outputData": null,
            "jobParameters": {"a": 1},
            "stopOnBadRecords": null
        }))
        .unwrap();
        let spec = doc.spec().unwrap();
        assert_eq!(spec.kind, JobKind::Score);
        assert_eq!(spec.model.source_name, "model.py");
        assert_eq!(spec.model.explicit.score.as_deref(), Some("action"));
        assert_eq!(spec.model.assets.len(), 2);
        assert_eq!(spec.inputs[0].encoding, Encoding::Json);
        assert!(spec.outputs[0].content.is_none());
    }

    #[test]
    fn refuses_what_cannot_run() {
        let e = job_kind("MODEL_SOMETHING").unwrap_err();
        assert!(e.to_string().contains("jobType"));
        let e = file_url_path("s3://bucket/key", "inputData[0]").unwrap_err();
        assert!(e.to_string().contains("not a file: URL"), "{e}");
        assert!(safe_relative("../x", "a").is_err());
    }

    fn remote(c: &Option<Content>) -> &StreamDescriptor {
        match c {
            Some(Content::Remote(d)) => d,
            other => panic!("not in a store: {other:?}"),
        }
    }

    #[test]
    fn data_in_stores_is_named_by_url_or_sql_asset() {
        let doc: JobDocument = serde_json::from_value(serde_json::json!({
            "jobType": "MODEL_BATCH_JOB",
            "model": {"storedModel": {"modelAssets": [
                {"name": "m.py", "assetType": "SOURCE_CODE", "sourceCode": "def action(x): yield x"},
                {"assetType": "EXTERNAL_FILE", "fileUrl": "s3://models/credit/weights.pkl"}
            ]}},
            "inputData": [
                {"assetType": "EXTERNAL_FILE", "fileUrl": "s3://data/day=1/in.csv"},
                {"assetType": "EXTERNAL_FILE", "fileUrl": "https://u:pw@files.example.com/x.jsonl"},
                {"assetType": "SQL", "name": "rows",
                 "repositoryInfo": {"connectionUri": "jdbc:postgresql://db:5432/credit?user=app&password=pw"},
                 "sqlStatement": "SELECT * FROM applicants"}
            ],
            "outputData": [
                {"assetType": "EXTERNAL_FILE", "fileUrl": "hdfs://nn:8020/scores/out.avro"},
                {"assetType": "SQL",
                 "repositoryInfo": {"connectionUri": "jdbc:postgresql://db:5432/credit"},
                 "sqlStatement": "INSERT INTO scores (id, score)"}
            ]
        }))
        .unwrap();
        let spec = doc.spec().unwrap();
        let (rel, asset) = &spec.model.assets[0];
        assert_eq!(rel, std::path::Path::new("weights.pkl"));
        let Content::Remote(d) = asset else {
            panic!("fetched from S3")
        };
        assert_eq!(d.shown(), "s3://models/credit/weights.pkl");
        assert_eq!(spec.inputs[0].encoding, Encoding::Csv);
        assert_eq!(
            remote(&spec.inputs[0].content).shown(),
            "s3://data/day=1/in.csv"
        );
        assert_eq!(
            remote(&spec.inputs[1].content).shown(),
            "https://u:***@files.example.com/x.jsonl"
        );
        let sql = remote(&spec.inputs[2].content);
        assert_eq!(
            sql.shown(),
            "jdbc:postgresql://db:5432/credit?user=app&password=***"
        );
        let endpoints::descriptor::Transport::Odbc(o) = &sql.transport else {
            panic!("an ODBC descriptor")
        };
        assert_eq!(o.select_query.as_deref(), Some("SELECT * FROM applicants"));
        assert_eq!(spec.outputs[0].encoding, Encoding::AvroBinary);
        assert_eq!(
            remote(&spec.outputs[0].content).shown(),
            "hdfs://nn:8020/scores/out.avro"
        );
        let endpoints::descriptor::Transport::Odbc(o) = &remote(&spec.outputs[1].content).transport
        else {
            panic!("an ODBC descriptor")
        };
        assert_eq!(o.insert_into_table.as_deref(), Some("scores"));
        assert_eq!(
            o.output_fields,
            Some(vec!["id".to_owned(), "score".to_owned()])
        );
    }

    #[test]
    fn unreadable_store_references_are_refused_naming_the_asset() {
        let job = |input: serde_json::Value, output: serde_json::Value| {
            let doc: JobDocument = serde_json::from_value(serde_json::json!({
                "jobType": "MODEL_BATCH_JOB",
                "model": {"storedModel": {"modelAssets": [
                    {"name": "m.py", "assetType": "SOURCE_CODE", "sourceCode": "def action(x): yield x"}
                ]}},
                "inputData": [input],
                "outputData": [output]
            }))
            .unwrap();
            doc.spec().unwrap_err().to_string()
        };
        let ok_in = serde_json::json!({"fileUrl": "s3://b/in.json"});
        let ok_out = serde_json::json!({"fileUrl": "s3://b/out.json"});
        let cases = [
            (
                serde_json::json!({"fileUrl": "ftp://user:secret@host/in.json"}),
                ok_out.clone(),
                "inputData[0].fileUrl 'ftp://user:***@host/in.json': not a URL of file: or of a store (s3://, hdfs://,",
            ),
            (
                serde_json::json!({"assetType": "SQL", "repositoryInfo": {}, "sqlStatement": "SELECT 1"}),
                ok_out.clone(),
                "inputData[0].repositoryInfo.connectionUri is missing",
            ),
            (
                serde_json::json!({"assetType": "SQL", "repositoryInfo": {"connectionUri": "postgres://db/x"}}),
                ok_out.clone(),
                "inputData[0].sqlStatement is missing",
            ),
            (
                ok_in.clone(),
                serde_json::json!({"assetType": "SQL", "repositoryInfo": {"connectionUri": "postgres://db/x"},
                                   "sqlStatement": "DELETE FROM t"}),
                "outputData[0].sqlStatement: an output names the table",
            ),
        ];
        for (input, output, want) in cases {
            let e = job(input, output);
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
        let doc: JobDocument = serde_json::from_value(serde_json::json!({
            "jobType": "MODEL_BATCH_JOB",
            "model": {"storedModel": {"modelAssets": [
                {"name": "m.py", "assetType": "SOURCE_CODE", "fileUrl": "s3://b/m.py"}
            ]}},
            "inputData": [ok_in]
        }))
        .unwrap();
        let e = doc.spec().unwrap_err().to_string();
        assert!(e.contains("the model's source is embedded"), "{e}");
    }

    #[test]
    fn an_output_table_is_named_by_an_insert_or_its_name() {
        let cols = |c: &[&str]| Some(c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            insert_target("INSERT INTO scores (id, score);"),
            Some(("scores".into(), cols(&["id", "score"])))
        );
        assert_eq!(
            insert_target("insert into analytics.scores"),
            Some(("analytics.scores".into(), None))
        );
        assert_eq!(insert_target("scores"), Some(("scores".into(), None)));
        assert_eq!(insert_target("SELECT * FROM t"), None);
        assert_eq!(insert_target("INSERT INTO x; DROP TABLE y"), None);
    }

    #[test]
    fn embedded_contents_are_stored_once_and_given_back_to_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let original = serde_json::json!({
            "jobType": "MODEL_BATCH_JOB",
            "model": {"storedModel": {"modelAssets": [
                {"name": "m.py", "assetType": "SOURCE_CODE", "sourceCode": "def action(x): yield x"},
                {"name": "w.bin", "fileContent": "AAEC"}
            ]}},
            "inputData": [{"name": "in.jsonl", "fileContentString": "1\n2\n"}]
        });
        let mut stored = original.clone();
        assert_eq!(move_contents(&mut stored, dir.path()).unwrap(), 2);
        let text = stored.to_string();
        assert!(!text.contains("AAEC") && !text.contains("1\\n2"), "{text}");
        let doc: JobDocument = serde_json::from_value(stored).unwrap();
        let spec = doc.spec().unwrap();
        let Some(Content::File(p)) = &spec.inputs[0].content else {
            panic!("the input is a file now")
        };
        assert_eq!(std::fs::read_to_string(p).unwrap(), "1\n2\n");
        let raw: serde_json::Value = serde_json::from_str(&raw_json(&text).unwrap()).unwrap();
        assert_eq!(raw, original);
    }
}
