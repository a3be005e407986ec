//! Multipart uploads of a job or a deployment: model files, inputs, written to disk as they
//! arrive, bounded by `maxUploadBytes` and `maxConcurrentUploads`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;

use crate::deploy::Deployment;
use crate::document::{DeploymentDocument, JobDocument};
use crate::error::{Error, ErrorBody, Result};
use crate::Engine;

use super::deployment::{deployment_view, DeploymentView};
use super::jobs::{checked_job_paths, job_content_dir, job_view, remove_contents, JobView};
use super::AppState;
use super::{content_length, not_multipart};
use crate::deploy::{deploy_document, deployment_uploads_root, prune_deployment_uploads};

/// The multipart form of a job upload (for people without a job document).
#[derive(ToSchema)]
#[allow(dead_code)]
struct JobUpload {
    /// `batchjob`, `testjob`, `trainingjob` or a ModelOp jobType.
    #[schema(rename = "jobType")]
    job_type: String,
    /// The model's main source (a file part; its file name tells the language).
    #[schema(value_type = String, format = Binary)]
    source: Vec<u8>,
    /// Other model files; each part's file name is its path in the model's folder.
    #[schema(value_type = Option<Vec<String>>, format = Binary)]
    asset: Option<Vec<Vec<u8>>>,
    /// Input files in slot order (slot 0, 2, ...).
    #[schema(value_type = Vec<String>, format = Binary)]
    input: Vec<Vec<u8>>,
    /// Where slot 1 is written on the engine's machine (absolute path); kept with the job
    /// when absent.
    output: Option<String>,
    /// Job parameters as a JSON object.
    params: Option<String>,
    name: Option<String>,
    /// `local` or `spark` (docs/spark.md); the engine's default when absent.
    runtime: Option<String>,
}

/// Submits a batch job as a multipart upload: model source, model files, input files.
#[utoipa::path(post, path = "/api/jobs/upload", tag = "jobs",
    request_body(content = JobUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = JobView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn upload_job(
    State(e): State<AppState>,
    headers: HeaderMap,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<JobView>)> {
    let multipart = multipart.map_err(not_multipart)?;
    let id = uuid::Uuid::new_v4().to_string();
    let dir = job_content_dir(&e, &id)?;
    let folder = PartialUpload::new(dir.clone(), remove_contents);
    let r = upload_job_into(&e, &headers, multipart, &id, &dir).await;
    if r.is_ok() {
        folder.keep();
    }
    r
}

/// The folder an upload is being written to, removed (by `remove`, on the blocking pool)
/// unless the upload is kept: on every error, and when the client goes away mid-body, as
/// the handler is then dropped and only a `Drop` runs.
struct PartialUpload {
    dir: Option<PathBuf>,
    remove: fn(&std::path::Path),
}

impl PartialUpload {
    fn new(dir: PathBuf, remove: fn(&std::path::Path)) -> PartialUpload {
        PartialUpload {
            dir: Some(dir),
            remove,
        }
    }

    /// The upload is stored: its folder stays.
    fn keep(mut self) {
        self.dir = None;
    }
}

impl Drop for PartialUpload {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else {
            return;
        };
        let remove = self.remove;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || remove(&dir));
            }
            Err(_) => remove(&dir),
        }
    }
}

/// A deployment upload under way: its folder is in the engine's set of those the pruning
/// of old uploads leaves alone, until this is dropped.
struct BusyUpload<'a> {
    engine: &'a Engine,
    dir: PathBuf,
}

impl<'a> BusyUpload<'a> {
    fn new(engine: &'a Engine, dir: PathBuf) -> BusyUpload<'a> {
        if let Ok(mut busy) = engine.deployment_uploads.lock() {
            busy.insert(dir.clone());
        }
        BusyUpload { engine, dir }
    }
}

impl Drop for BusyUpload<'_> {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.engine.deployment_uploads.lock() {
            busy.remove(&self.dir);
        }
    }
}

fn remove_folder(dir: &std::path::Path) {
    let _ = std::fs::remove_dir_all(dir);
}

async fn upload_job_into(
    e: &AppState,
    headers: &HeaderMap,
    multipart: Multipart,
    id: &str,
    dir: &std::path::Path,
) -> Result<(StatusCode, Json<JobView>)> {
    let form = read_form(e, headers, multipart, dir).await?;
    let output = form.text("output").filter(|s| !s.trim().is_empty());
    let job_type = match form.text("jobType").as_deref().map(str::trim) {
        Some("batchjob") | None => "MODEL_BATCH_JOB".to_owned(),
        Some("testjob") => "MODEL_BATCH_TEST_JOB".to_owned(),
        Some("trainingjob") => "MODEL_BATCH_TRAINING_JOB".to_owned(),
        Some(other) => other.to_owned(),
    };
    let mut doc = serde_json::json!({
        "jobType": job_type,
        "jobStatus": "CREATED",
        "model": {"storedModel": form.stored_model(e.config.max_request_bytes).await?},
        "inputData": form.files("input").iter().map(|(name, path)| serde_json::json!({
            "assetType": "FILE",
            "assetRole": "TEST_DATA",
            "name": name,
            "fileUrl": crate::document::file_url(path),
        })).collect::<Vec<_>>(),
        "outputData": match output {
            Some(path) => vec![serde_json::json!({
                "assetType": "EXTERNAL_FILE",
                "name": std::path::Path::new(path.trim()).file_name().map(|n| n.to_string_lossy().into_owned()),
                "fileUrl": crate::document::file_url(std::path::Path::new(path.trim())),
            })],
            None => vec![serde_json::json!({"assetType": "FILE", "name": "output.json"})],
        },
        "stopOnBadRecords": form.text("stopOnBadRecords").is_some_and(|s| s.trim() == "true"),
    });
    if let Some(name) = form.text("name") {
        doc["name"] = serde_json::Value::String(name);
    }
    if let Some(runtime) = form.text("runtime").filter(|r| !r.trim().is_empty()) {
        doc["runtime"] = serde_json::Value::String(runtime.trim().to_owned());
    }
    if let Some(p) = form.text("params") {
        let params: serde_json::Value = serde_json::from_str(&p)
            .map_err(|e| Error::BadRequest(format!("params: not JSON: {e}")))?;
        if !params.is_object() {
            return Err(Error::BadRequest("params: must be a JSON object".into()));
        }
        doc["jobParameters"] = params;
    }
    let parsed: JobDocument = serde_json::from_value(doc.clone())
        .map_err(|e| Error::BadRequest(format!("cannot build a job document: {e}")))?;
    // The paths as the job will read them (its `file:` URLs decoded), like any document's.
    let mut parsed = checked_job_paths(e, parsed).await?;
    parsed.id = Some(id.to_owned());
    let row = e.queue.submit(doc.to_string(), parsed).await?;
    Ok((StatusCode::CREATED, Json(job_view(&row))))
}

/// Parts of an upload that are files (kept on disk as they arrive); the others are text.
const FILE_PARTS: [&str; 3] = ["source", "asset", "input"];

/// Fields of a multipart form: text fields in memory, file parts on disk.
struct Form {
    texts: Vec<(String, String)>,
    /// (field, file name, where it was written)
    files: Vec<(String, Option<String>, PathBuf)>,
}

/// Reads a multipart upload, writing its file parts under `dir` as they arrive: at most
/// `maxUploadBytes` (refused from the Content-Length before reading, or as soon as it
/// passes the limit), and at most `maxConcurrentUploads` uploads at once (503).
async fn read_form(
    e: &Engine,
    headers: &HeaderMap,
    mut multipart: Multipart,
    dir: &std::path::Path,
) -> Result<Form> {
    let limit = e.config.max_upload_bytes;
    let too_large = || Error::TooLarge {
        what: "the upload".into(),
        limit,
        setting: "maxUploadBytes",
    };
    if content_length(headers).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let _permit = e.uploads.try_acquire().map_err(|_| {
        Error::Busy(format!(
            "{} uploads are being received (maxConcurrentUploads)",
            e.config.max_concurrent_uploads
        ))
    })?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|err| Error::io(format!("cannot create {}", dir.display()), err))?;
    let unreadable = |err: axum::extract::multipart::MultipartError| {
        Error::BadRequest(format!("unreadable multipart body: {err}"))
    };
    let (mut texts, mut files) = (Vec::new(), Vec::new());
    let mut total = 0u64;
    // Text fields are held in memory: together at most maxRequestBytes.
    let text_limit = e.config.max_request_bytes;
    let mut text_total = 0u64;
    while let Some(mut field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or("").to_owned();
        let file_name = field.file_name().map(str::to_owned);
        if FILE_PARTS.contains(&name.as_str()) {
            let path = dir.join(format!("{name}-{}", files.len()));
            let mut out = tokio::fs::File::create(&path)
                .await
                .map_err(|err| Error::io(format!("cannot write {}", path.display()), err))?;
            while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
                total += chunk.len() as u64;
                if total > limit {
                    return Err(too_large());
                }
                out.write_all(&chunk)
                    .await
                    .map_err(|err| Error::io(format!("cannot write {}", path.display()), err))?;
            }
            out.flush()
                .await
                .map_err(|err| Error::io(format!("cannot write {}", path.display()), err))?;
            files.push((name, file_name, path));
        } else {
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
                total += chunk.len() as u64;
                text_total += chunk.len() as u64;
                if total > limit {
                    return Err(too_large());
                }
                if text_total > text_limit {
                    return Err(Error::TooLarge {
                        what: format!("the upload's text fields ('{name}')"),
                        limit: text_limit,
                        setting: "maxRequestBytes",
                    });
                }
                text.extend_from_slice(&chunk);
            }
            texts.push((name, String::from_utf8_lossy(&text).into_owned()));
        }
    }
    Ok(Form { texts, files })
}

impl Form {
    fn text(&self, name: &str) -> Option<String> {
        self.texts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }

    fn files(&self, name: &str) -> Vec<(String, &std::path::Path)> {
        self.files
            .iter()
            .filter(|(n, _, _)| n == name)
            .enumerate()
            .map(|(i, (_, f, p))| {
                (
                    f.clone().unwrap_or_else(|| format!("{name}-{i}.json")),
                    p.as_path(),
                )
            })
            .collect()
    }

    /// The `storedModel` of a job or deployment document built from the form: the main
    /// source as text, the other files by their path.
    async fn stored_model(&self, source_limit: u64) -> Result<serde_json::Value> {
        let sources = self.files("source");
        let [(source_name, source)] = sources.as_slice() else {
            return Err(Error::BadRequest(
                "the upload needs exactly one 'source' part (the model's main source)".into(),
            ));
        };
        // The source is kept as text in the document: no bigger than a document may be.
        let size = tokio::fs::metadata(source)
            .await
            .map_err(|err| Error::io(format!("cannot read {}", source.display()), err))?
            .len();
        if size > source_limit {
            return Err(Error::TooLarge {
                what: format!("the model's source '{source_name}'"),
                limit: source_limit,
                setting: "maxRequestBytes",
            });
        }
        let text = tokio::fs::read(source)
            .await
            .map_err(|err| Error::io(format!("cannot read {}", source.display()), err))?;
        let text = String::from_utf8(text)
            .map_err(|_| Error::BadRequest("the model's source is not UTF-8".into()))?;
        let mut main = serde_json::json!({
            "name": source_name,
            "assetType": "SOURCE_CODE",
            "assetRole": "MODEL_SOURCE",
            "primaryModelSource": true,
            "sourceCode": text,
        });
        for (field, key) in [
            ("initFunction", "initFunction"),
            ("scoreFunction", "scoreFunction"),
            ("metricsFunction", "metricsFunction"),
            ("trainingFunction", "trainingFunction"),
        ] {
            if let Some(v) = self.text(field).filter(|v| !v.trim().is_empty()) {
                main[key] = serde_json::Value::String(v);
            }
        }
        let mut assets = vec![main];
        for (name, path) in self.files("asset") {
            assets.push(serde_json::json!({
                "name": name,
                "assetType": "FILE",
                "fileUrl": crate::document::file_url(path),
            }));
        }
        let model_name = std::path::Path::new(source_name.as_str())
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
        Ok(serde_json::json!({
            "modelMetaData": {"name": self.text("name").or(model_name)},
            "modelAssets": assets,
        }))
    }
}

/// The multipart form of a deployment upload.
#[derive(ToSchema)]
#[allow(dead_code)]
struct DeploymentUpload {
    /// The model's main source.
    #[schema(value_type = String, format = Binary)]
    source: Vec<u8>,
    /// Other model files; each part's file name is its path in the model's folder.
    #[schema(value_type = Option<Vec<String>>, format = Binary)]
    asset: Option<Vec<Vec<u8>>>,
    name: Option<String>,
    /// The deployment's own `scoreBatchMax` (the engine's otherwise).
    #[schema(rename = "scoreBatchMax")]
    score_batch_max: Option<u64>,
    /// The deployment's own `scoreBatchWaitMs` (the engine's otherwise).
    #[schema(rename = "scoreBatchWaitMs")]
    score_batch_wait_ms: Option<u64>,
}

/// Deploys a model uploaded as multipart: main source and model files.
#[utoipa::path(put, path = "/api/deployment/upload", tag = "deployment",
    request_body(content = DeploymentUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = DeploymentView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn upload_deployment(
    State(e): State<AppState>,
    headers: HeaderMap,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<DeploymentView>)> {
    let multipart = multipart.map_err(not_multipart)?;
    // The files are written where they stay while the model is deployed: the stored
    // deployment document (deployed again at start) names them.
    let root = deployment_uploads_root(&e)?;
    let dir = root.join(uuid::Uuid::new_v4().simple().to_string());
    let folder = PartialUpload::new(dir.clone(), remove_folder);
    let busy = BusyUpload::new(&e, dir.clone());
    let d = upload_deployment_from(&e, &headers, multipart, &dir).await?;
    folder.keep();
    drop(busy);
    prune_deployment_uploads(&e).await;
    Ok((StatusCode::CREATED, Json(deployment_view(&d))))
}

async fn upload_deployment_from(
    e: &AppState,
    headers: &HeaderMap,
    multipart: Multipart,
    dir: &std::path::Path,
) -> Result<Arc<Deployment>> {
    let form = read_form(e, headers, multipart, dir).await?;
    let mut doc = serde_json::json!({
        "deployableModel": {"storedModel": form.stored_model(e.config.max_request_bytes).await?},
    });
    if let Some(n) = form.text("name") {
        doc["name"] = serde_json::Value::String(n);
    }
    // The deployment's own batching, checked with the document's other fields.
    for key in ["scoreBatchMax", "scoreBatchWaitMs"] {
        if let Some(t) = form.text(key) {
            doc[key] = match t.trim().parse::<u64>() {
                Ok(n) => serde_json::Value::from(n),
                Err(_) => {
                    return Err(Error::BadRequest(format!(
                        "'{key}' must be a whole number, not '{t}'"
                    )))
                }
            };
        }
    }
    let parsed: DeploymentDocument = serde_json::from_value(doc.clone())
        .map_err(|e| Error::BadRequest(format!("cannot build a deployment document: {e}")))?;
    Ok(deploy_document(e, doc.to_string(), parsed, true).await?)
}
