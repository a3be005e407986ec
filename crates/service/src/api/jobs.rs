//! Batch jobs: submitted as documents, listed, followed, their results and products.

use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::document::JobDocument;
use crate::error::{Error, ErrorBody, Result};
use crate::queue::{OutputPlace, StoredOutcome};
use crate::store::{JobRow, JobState, StoredLine};
use crate::time::rfc3339;
use crate::Engine;

use super::AppState;
use super::{json_body, log_view, LogView};

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: String,
    pub job_type: String,
    pub name: Option<String>,
    /// CREATED, WAITING, RUNNING, COMPLETE, ERROR or CANCELLED.
    pub job_status: String,
    /// SUCCESS, FAILURE, or UNKNOWN until the job ends.
    pub job_result: String,
    pub reason: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub records_in: i64,
    pub records_out: i64,
    pub records_rejected: i64,
    pub records_failed: i64,
    /// How many times the job was started.
    pub runs: i64,
    /// The engine stopped while the job ran; it can be re-run.
    pub interrupted: bool,
    /// How far the job has got: live while it is RUNNING, the final figures once it ran to
    /// its end; null before it starts.
    pub progress: Option<ProgressView>,
    /// The job's log lines (only when one job is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_messages: Option<Vec<String>>,
}

/// A job's progress: records so far, time since it started, and the rate.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressView {
    /// Records read from the inputs (including those then rejected).
    pub records_read: u64,
    /// Records the model has taken: scored without an error (scoring jobs), or handed to
    /// the metrics or training function.
    pub records_scored: u64,
    /// Records whose scoring failed.
    pub records_failed: u64,
    /// Input and output records rejected by encoding, schema or size.
    pub records_rejected: u64,
    /// Milliseconds since the job started (to its end, once finished).
    pub elapsed_ms: u64,
    /// Records scored or failed per second of `elapsedMs`.
    pub records_per_second: f64,
    /// How much of the job is done, from 0 to 1: the share of the inputs read (from the
    /// bytes of files and folders, or the count of embedded records) times the share of
    /// the records read that are scored, failed or rejected; null when an input cannot
    /// tell its size.
    pub fraction: Option<f64>,
    /// Milliseconds left at the pace so far, while running and `fraction` is known.
    pub eta_ms: Option<u64>,
}

fn progress_view(p: jobs::JobProgress, elapsed_ms: u64) -> ProgressView {
    let done = p.records_scored + p.records_failed;
    let records_per_second = if elapsed_ms == 0 {
        0.0
    } else {
        // Rounded to a tenth: a rate, not a measurement.
        (done as f64 * 10_000.0 / elapsed_ms as f64).round() / 10.0
    };
    // The inputs are read ahead of the model: the share done is the share read times the
    // part of what was read that is done (scored, failed or rejected).
    let fraction = p.fraction.map(|read_share| {
        let f = if p.records_read == 0 {
            read_share
        } else {
            let finished =
                (p.records_scored + p.records_failed + p.records_rejected).min(p.records_read);
            read_share * finished as f64 / p.records_read as f64
        };
        (f * 1000.0).round() / 1000.0
    });
    let eta_ms = fraction
        .filter(|f| *f > 0.0 && *f < 1.0)
        .map(|f| (elapsed_ms as f64 * (1.0 - f) / f).round() as u64);
    ProgressView {
        records_read: p.records_read,
        records_scored: p.records_scored,
        records_failed: p.records_failed,
        records_rejected: p.records_rejected,
        elapsed_ms,
        records_per_second,
        fraction,
        eta_ms,
    }
}

/// The job's view with its live progress when it is running.
pub(super) fn job_view_live(e: &Engine, r: &JobRow) -> JobView {
    let mut view = job_view(r);
    if r.status == JobState::Running {
        if let Some(p) = e.queue.progress(&r.id) {
            let elapsed = r
                .started_ms
                .map(|s| u64::try_from(crate::time::now_ms() - s).unwrap_or(0))
                .unwrap_or(0);
            view.progress = Some(progress_view(p, elapsed));
        }
    }
    view
}

pub(super) fn job_view(r: &JobRow) -> JobView {
    let progress = r
        .status
        .is_final()
        .then_some(r.outcome.as_deref())
        .flatten()
        .and_then(|o| serde_json::from_str::<StoredOutcome>(o).ok())
        .and_then(|o| Some(progress_view(o.progress?, o.elapsed_ms)));
    JobView {
        id: r.id.clone(),
        job_type: r.job_type.clone(),
        name: r.name.clone(),
        job_status: r.status.as_str().to_owned(),
        job_result: r.result.clone().unwrap_or_else(|| "UNKNOWN".into()),
        reason: r.reason.clone(),
        created_at: rfc3339(r.created_ms),
        started_at: r.started_ms.map(rfc3339),
        finished_at: r.finished_ms.map(rfc3339),
        records_in: r.records_in,
        records_out: r.records_out,
        records_rejected: r.records_rejected,
        records_failed: r.records_failed,
        runs: r.runs,
        interrupted: r.interrupted,
        progress,
        job_messages: None,
    }
}

fn line_text(l: &StoredLine) -> String {
    format!(
        "{} {} {} {}",
        rfc3339(l.at_ms),
        l.level,
        l.source,
        l.message
    )
}

/// Submits a batch job as a ModelOp Center job document; it is queued (WAITING).
#[utoipa::path(post, path = "/api/jobs", tag = "jobs", request_body = JobDocument,
    responses((status = 201, body = JobView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn create_job(
    State(e): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<JobView>)> {
    let mut raw: serde_json::Value = json_body(&body)?;
    let doc: JobDocument = serde_json::from_value(raw.clone())
        .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))?;
    // Paths are resolved against the file system: on the blocking pool.
    let doc = checked_job_paths(&e, doc).await?;
    // Whether the id is free is the queue's to say, when it stores the job.
    let id = crate::queue::job_id(doc.id.as_deref());
    // Embedded contents go to the job's folder; the stored document keeps their paths.
    let dir = job_content_dir(&e, &id)?;
    let stored = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            crate::document::move_contents(&mut raw, &dir).map(|moved| (moved, raw))
        })
        .await
        .map_err(|e| Error::Store(format!("storing the job's contents failed: {e}")))?
    };
    let submitted = match stored {
        Ok((moved, stored)) => match serde_json::from_value::<JobDocument>(stored.clone()) {
            Ok(mut parsed) => {
                parsed.id = Some(id.clone());
                // Nothing moved: the document is kept as it was sent, to the byte.
                let text = match moved {
                    0 => String::from_utf8_lossy(&body).into_owned(),
                    _ => stored.to_string(),
                };
                e.queue.submit(text, parsed).await
            }
            Err(err) => Err(Error::BadRequest(format!("invalid JSON body: {err}"))),
        },
        Err(err) => Err(err),
    };
    match submitted {
        Ok(row) => Ok((StatusCode::CREATED, Json(job_view(&row)))),
        Err(err) => {
            discard_contents(dir).await;
            Err(err)
        }
    }
}

/// Removes the contents of a refused submission, and the job's folder if nothing else is
/// in it.
async fn discard_contents(dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || remove_contents(&dir)).await;
}

/// [`discard_contents`], on the calling thread.
pub(super) fn remove_contents(dir: &std::path::Path) {
    let _ = std::fs::remove_dir_all(dir);
    let content = dir.parent();
    for d in [content, content.and_then(|c| c.parent())]
        .into_iter()
        .flatten()
    {
        // Only empty folders go.
        let _ = std::fs::remove_dir(d);
    }
}

/// Where a job's uploaded and embedded contents are kept (absolute: documents name it);
/// a folder of this submission's own, so a failed one removes nothing of another's.
pub(super) fn job_content_dir(e: &Engine, id: &str) -> Result<PathBuf> {
    let dir = e
        .config
        .data_dir
        .join("jobs")
        .join(id)
        .join("content")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::path::absolute(&dir)
        .map_err(|err| Error::io(format!("cannot resolve {}", dir.display()), err))
}

/// `doc` once every local path it names is allowed (`paths::check_job`, on the blocking
/// pool: it resolves links).
pub(super) async fn checked_job_paths(e: &Engine, doc: JobDocument) -> Result<JobDocument> {
    let policy = e.paths.clone();
    tokio::task::spawn_blocking(move || crate::paths::check_job(&policy, &doc).map(|()| doc))
        .await
        .map_err(|e| Error::Store(format!("checking the job's paths failed: {e}")))?
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only jobs of this status.
    status: Option<String>,
    /// At most this many (newest first); 100 by default.
    limit: Option<u32>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs", params(ListQuery),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody)))]
pub(super) async fn list_jobs(
    State(e): State<AppState>,
    q: std::result::Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobList>> {
    let Query(q) = q.map_err(|r| Error::BadRequest(r.body_text()))?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            JobState::parse(s)
                .ok_or_else(|| Error::BadRequest(format!("unknown job status '{s}'")))?,
        ),
    };
    let limit = i64::from(q.limit.unwrap_or(100).clamp(1, 10_000));
    let rows = e.store().list(status, limit).await?;
    Ok(Json(JobList {
        jobs: rows.iter().map(|r| job_view_live(&e, r)).collect(),
    }))
}

async fn job_row(e: &Engine, id: &str) -> Result<JobRow> {
    e.store()
        .get(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("job {id}")))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct JobQuery {
    /// Include the job's log lines (`jobMessages`); true by default. Whoever follows a job's
    /// progress asks without them.
    messages: Option<bool>,
}

/// One job, with its log lines (`jobMessages`) unless `messages=false`.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path), JobQuery),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn get_job(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: std::result::Result<Query<JobQuery>, QueryRejection>,
) -> Result<Json<JobView>> {
    let Query(q) = q.map_err(|r| Error::BadRequest(r.body_text()))?;
    let row = job_row(&e, &id).await?;
    let mut view = job_view_live(&e, &row);
    if q.messages.unwrap_or(true) {
        view.job_messages = Some(e.store().log(&id).await?.iter().map(line_text).collect());
    }
    Ok(Json(view))
}

/// Deletes a finished job with its log and its folder (a waiting or running job: 409,
/// cancel it first).
#[utoipa::path(delete, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_job(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    crate::retention::delete_job(e.store(), &e.config.data_dir, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A job's log lines: lifecycle, the model's console, failed records.
#[utoipa::path(get, path = "/api/jobs/{id}/log", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = LogView), (status = 404, body = ErrorBody)))]
pub(super) async fn job_log(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<LogView>> {
    job_row(&e, &id).await?;
    Ok(Json(log_view(&e.store().log(&id).await?)))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputResult {
    #[serde(flatten)]
    pub place: OutputPlace,
    /// The output itself when it is kept with the job and is text.
    pub content: Option<String>,
    /// The output itself when it is kept with the job and is not text.
    pub content_base64: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobResultView {
    pub id: String,
    pub job_status: String,
    pub job_result: String,
    pub reason: Option<String>,
    pub outputs: Vec<OutputResult>,
    pub trained_files: Vec<String>,
    pub trained_dir: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<serde_json::Value>,
    pub traceback: Option<String>,
}

/// Largest embedded output returned inline by the result.
const RESULT_INLINE_MAX: u64 = 64 * 1024 * 1024;

/// A finished job's result: its embedded output, or where its output was written.
#[utoipa::path(get, path = "/api/jobs/{id}/result", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobResultView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn job_result(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobResultView>> {
    let row = job_row(&e, &id).await?;
    if !row.status.is_final() {
        return Err(Error::Conflict(format!(
            "job {id} is {}: no result yet",
            row.status.as_str()
        )));
    }
    let stored: Option<StoredOutcome> = row
        .outcome
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok());
    let mut outputs = Vec::new();
    let (mut trained_files, mut trained_dir, mut problems, mut traceback) =
        (Vec::new(), None, Vec::new(), None);
    if let Some(s) = stored {
        for place in s.outputs {
            let (mut content, mut content_base64) = (None, None);
            if place.embedded {
                let path = std::path::PathBuf::from(&place.path);
                let bytes = tokio::task::spawn_blocking(move || {
                    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    (len <= RESULT_INLINE_MAX)
                        .then(|| std::fs::read(&path).ok())
                        .flatten()
                })
                .await
                .ok()
                .flatten();
                if let Some(b) = bytes {
                    match String::from_utf8(b) {
                        Ok(t) => content = Some(t),
                        Err(e) => {
                            content_base64 = Some(
                                base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                            )
                        }
                    }
                }
            }
            outputs.push(OutputResult {
                place,
                content,
                content_base64,
            });
        }
        trained_files = s.trained_files;
        trained_dir = s.trained_dir;
        problems = s.problems;
        traceback = s.traceback;
    }
    Ok(Json(JobResultView {
        id: row.id.clone(),
        job_status: row.status.as_str().to_owned(),
        job_result: row.result.clone().unwrap_or_else(|| "UNKNOWN".into()),
        reason: row.reason.clone(),
        outputs,
        trained_files,
        trained_dir,
        problems,
        traceback,
    }))
}

/// One file a training job wrote under `outputDir/`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProductView {
    /// The file's path under the products folder, `/`-separated (`model.json`,
    /// `weights/layer1.bin`).
    pub name: String,
    pub size: u64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProductList {
    pub products: Vec<ProductView>,
}

/// The products folder of a finished job (none for a job that trains nothing); 409 while
/// the job has not finished.
async fn products_dir(e: &Engine, id: &str) -> Result<Option<PathBuf>> {
    let row = job_row(e, id).await?;
    if !row.status.is_final() {
        return Err(Error::Conflict(format!(
            "job {id} is {}: no products yet",
            row.status.as_str()
        )));
    }
    Ok(row
        .outcome
        .as_deref()
        .and_then(|o| serde_json::from_str::<StoredOutcome>(o).ok())
        .and_then(|s| s.trained_dir)
        .map(PathBuf::from)
        // Products stored in a store (`s3://bucket/models/`) are the store's to serve.
        .filter(|d| d.is_absolute()))
}

/// The regular files under `root`, by their `/`-separated path, sorted. Links are not
/// followed: what they point at may lie outside the folder.
fn list_products(root: &std::path::Path) -> std::io::Result<Vec<ProductView>> {
    let mut found = Vec::new();
    let mut folders = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = folders.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if kind.is_dir() {
                folders.push((entry.path(), format!("{name}/")));
            } else if kind.is_file() {
                let size = entry.metadata()?.len();
                found.push(ProductView { name, size });
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// A finished job's products: the files a training job's model wrote under `outputDir/`
/// (an empty list for a job without any).
#[utoipa::path(get, path = "/api/jobs/{id}/products", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = ProductList), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn job_products(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ProductList>> {
    let products = match products_dir(&e, &id).await? {
        None => Vec::new(),
        Some(dir) => tokio::task::spawn_blocking(move || {
            list_products(&dir)
                .map_err(|err| Error::io(format!("cannot list {}", dir.display()), err))
        })
        .await
        .map_err(|err| Error::io("listing products", std::io::Error::other(err)))??,
    };
    Ok(Json(ProductList { products }))
}

/// The file of product `name` under `root`: a relative path of plain components that,
/// links resolved, stays inside the folder (else 400) and names a file (else 404).
async fn product_file(root: PathBuf, name: &str) -> Result<(PathBuf, u64)> {
    let rel = std::path::Path::new(name);
    let plain = !name.is_empty()
        && !name.contains('\\')
        && rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        return Err(Error::BadRequest(format!(
            "product '{name}': a product is named by its relative path in the job's products folder"
        )));
    }
    let not_found = || Error::NotFound(format!("product '{name}'"));
    let root = match tokio::fs::canonicalize(&root).await {
        Ok(r) => r,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(err) => return Err(Error::io(format!("cannot resolve {}", root.display()), err)),
    };
    let path = match tokio::fs::canonicalize(root.join(rel)).await {
        Ok(p) => p,
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(not_found())
        }
        Err(err) => return Err(Error::BadRequest(format!("product '{name}': {err}"))),
    };
    if !path.starts_with(&root) {
        return Err(Error::BadRequest(format!(
            "product '{name}' lies outside the job's products folder"
        )));
    }
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|err| Error::io(format!("cannot read {}", path.display()), err))?;
    if !meta.is_file() {
        return Err(not_found());
    }
    Ok((path, meta.len()))
}

/// Streams product `name` of a finished job.
async fn send_product(e: &Engine, id: &str, name: &str) -> Result<Response> {
    let root = products_dir(e, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("product '{name}' of job {id}")))?;
    let (path, len) = product_file(root, name).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|err| Error::io(format!("cannot read {}", path.display()), err))?;
    let base = name.rsplit('/').next().unwrap_or(name).replace('"', "");
    let mut response = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(file)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{base}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// One product of a finished job, streamed. `name` is its path under the products folder
/// (`weights/layer1.bin`; a `/` may be sent as is or as `%2F`).
#[utoipa::path(get, path = "/api/jobs/{id}/products/{name}", tag = "jobs",
    params(("id" = String, Path), ("name" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn job_product(
    State(e): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response> {
    send_product(&e, &id, &name).await
}

/// A product in a sub-folder: `/api/jobs/{id}/products/{name}/{rest...}`.
pub(super) async fn job_product_nested(
    State(e): State<AppState>,
    Path((id, name, rest)): Path<(String, String, String)>,
) -> Result<Response> {
    send_product(&e, &id, &format!("{name}/{rest}")).await
}

/// Cancels a job: a waiting one at once, a running one by stopping its worker.
#[utoipa::path(post, path = "/api/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn cancel_job(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>> {
    Ok(Json(job_view(&e.queue.cancel(&id).await?)))
}

/// Queues a finished (or interrupted) job again.
#[utoipa::path(post, path = "/api/jobs/{id}/rerun", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn rerun_job(
    State(e): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>> {
    Ok(Json(job_view(&e.queue.rerun(&id).await?)))
}
