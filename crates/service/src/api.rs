//! The HTTP routes and the OpenAPI document generated from them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use codecs::{CodecConfig, Encoding};
use futures_util::StreamExt;
use runtime_core::{InitContext, JobLog, LogSource, SessionConfig, Slot};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{normalize_tags, STAGE_TAGS};
use crate::deploy::{DeployFailure, DeploySpec, Deployment};
use crate::document::{DeploymentDocument, JobDocument};
use crate::error::{Error, ErrorBody, Result};
use crate::joblog::RingLog;
use crate::queue::{OutputPlace, StoredOutcome};
use crate::store::{JobRow, JobState, StoredLine};
use crate::time::rfc3339;
use crate::Engine;

type AppState = Arc<Engine>;

/// Lines of a deployed model's log kept in memory.
const DEPLOY_LOG_LINES: usize = 2000;
/// The settings key of the deployed model's document, redeployed at start.
const DEPLOYMENT_KEY: &str = "deployment";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "model-runtime engine",
        description = "Batch jobs and deployed models of a ModelOp-compatible model runtime."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

fn scoring_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(roundtrip))
        .routes(routes!(roundtrip_v2))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
}

fn control_routes() -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(create_job))
        .routes(routes!(upload_job))
        .routes(routes!(get_deployment, deploy, undeploy))
        .routes(routes!(upload_deployment))
        // These handlers enforce maxRequestBytes / maxUploadBytes while reading.
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(engine_state))
        .routes(routes!(engine_details))
        .routes(routes!(get_tags, put_tags))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job, delete_job))
        .routes(routes!(job_log))
        .routes(routes!(job_result))
        .routes(routes!(job_products))
        .routes(routes!(job_product))
        .route(
            "/api/jobs/{id}/products/{name}/{*rest}",
            axum::routing::get(job_product_nested),
        )
        .routes(routes!(cancel_job))
        .routes(routes!(rerun_job))
        .routes(routes!(deployment_log))
        .routes(routes!(active_model, active_model_delete))
        .routes(routes!(verify_schema))
        .routes(routes!(verify_record))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .merge(uploads)
        .merge(scoring_routes())
}

/// The OpenAPI document of the control port.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = control_routes().split_for_parts();
    api
}

pub fn control_router(engine: AppState) -> axum::Router {
    let limit = engine.config.max_request_bytes;
    let policy = Arc::new(crate::auth::Policy::control(&engine.config));
    let (router, api) = control_routes().split_for_parts();
    let api = Arc::new(api);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let api = api.clone();
                async move { Json(api.as_ref().clone()) }
            }),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(move |r: Response| {
            too_large_in_json(limit, r)
        }))
        .layer(DefaultBodyLimit::max(request_limit_bytes(&engine)))
        .layer(axum::Extension(RequestLimit(limit)))
        .with_state(engine)
        .layer(axum::middleware::from_fn_with_state(
            policy,
            crate::auth::require,
        ))
}

pub fn scoring_router(engine: AppState) -> axum::Router {
    let limit = engine.config.max_request_bytes;
    let policy = Arc::new(crate::auth::Policy::scoring(&engine.config));
    let (router, _) = scoring_routes().split_for_parts();
    router
        .layer(axum::middleware::map_response(move |r: Response| {
            too_large_in_json(limit, r)
        }))
        .layer(DefaultBodyLimit::max(request_limit_bytes(&engine)))
        .layer(axum::Extension(RequestLimit(limit)))
        .with_state(engine)
        .layer(axum::middleware::from_fn_with_state(
            policy,
            crate::auth::require,
        ))
}

/// An unknown path of the control API: 404 in the API's JSON, naming what was asked.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> Error {
    Error::NotFound(format!("route {method} {}", uri.path()))
}

/// A known path asked with a method it does not answer: 405 in the API's JSON (the
/// `Allow` header names the methods it answers).
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Error {
    Error::MethodNotAllowed(format!("{} does not answer {method}", uri.path()))
}

/// An upload route's body that is not `multipart/form-data`: 400 in the API's JSON.
fn not_multipart(r: MultipartRejection) -> Error {
    Error::BadRequest(format!(
        "not a multipart/form-data upload: {}",
        r.body_text()
    ))
}

/// `maxRequestBytes`, as the routers hand it to `refuse_declared_oversize`.
#[derive(Clone, Copy)]
struct RequestLimit(u64);

/// A body whose declared length is over `maxRequestBytes` is refused before any of it is
/// read: the answer goes out before a client waiting on `Expect: 100-continue` sends it.
/// (Reading the body, as the body limit does, would first tell the client to go on.)
async fn refuse_declared_oversize(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(RequestLimit(limit)) = request.extensions().get::<RequestLimit>().copied() {
        if content_length(request.headers()).is_some_and(|n| n > limit) {
            return Error::TooLarge {
                what: "the request body".into(),
                limit,
                setting: "maxRequestBytes",
            }
            .into_response();
        }
    }
    next.run(request).await
}

fn request_limit_bytes(e: &Engine) -> usize {
    usize::try_from(e.config.max_request_bytes).unwrap_or(usize::MAX)
}

/// A body refused by the body limit of the routes that read it whole (413) is answered
/// in JSON naming the limit and the setting that raises it.
async fn too_large_in_json(limit: u64, r: Response) -> Response {
    let json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
        return Error::TooLarge {
            what: "the request body".into(),
            limit,
            setting: "maxRequestBytes",
        }
        .into_response();
    }
    r
}

/// A JSON document's body, bounded by `maxRequestBytes` (for the routes outside the body
/// limit layer, beside the uploads they share a path with).
async fn read_request_body(e: &Engine, headers: &HeaderMap, body: Body) -> Result<Vec<u8>> {
    read_limited(headers, body, e.config.max_request_bytes, "maxRequestBytes").await
}

/// Reads a whole body of at most `limit` bytes: refused from its Content-Length before
/// reading, or as soon as it passes the limit while streaming.
async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    setting: &'static str,
) -> Result<Vec<u8>> {
    let too_large = || Error::TooLarge {
        what: "the request body".into(),
        limit,
        setting,
    };
    if content_length(headers).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("unreadable body: {e}")))?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

// ---------------------------------------------------------------- engine

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub id: String,
    pub release: String,
    pub built_on: String,
}

/// The engine is up.
#[utoipa::path(get, path = "/1/health", tag = "engine",
    responses((status = 200, body = Health)))]
async fn health(State(e): State<AppState>) -> Json<Health> {
    Json(Health {
        id: e.id.clone(),
        release: e.deps.release.clone(),
        built_on: e.deps.built_on.clone(),
    })
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct StateView {
    /// INIT, RUNNING, FINISHING, FINISHED or ERROR.
    pub state: String,
}

/// The engine's state.
#[utoipa::path(get, path = "/2/engine/state", tag = "engine",
    responses((status = 200, body = StateView)))]
async fn engine_state(State(e): State<AppState>) -> Json<StateView> {
    Json(StateView {
        state: e.state().as_str().to_owned(),
    })
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobCounts {
    pub running: i64,
    pub waiting: i64,
    pub complete: i64,
    pub failed: i64,
    pub cancelled: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDetails {
    pub id: String,
    pub name: String,
    pub group: Option<String>,
    pub tags: Vec<String>,
    /// The tags that are stages (DEV, SIT, UAT, PROD).
    pub stage_tags: Vec<String>,
    /// The other tags: model services.
    pub service_tags: Vec<String>,
    pub release: String,
    pub built_on: String,
    pub state: String,
    pub started: String,
    pub languages: Vec<String>,
    pub platforms: Vec<crate::Platform>,
    pub deployed_model: Option<DeploymentView>,
    /// The latest deployment that could not start (until one starts or `DELETE
    /// /api/deployment`); with no model deployed the state is ERROR.
    pub deployment_failure: Option<DeploymentFailureView>,
    pub endpoints: Vec<String>,
    pub jobs: JobCounts,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeploymentFailureView {
    pub name: String,
    pub at: String,
    pub reason: String,
    pub traceback: Option<String>,
}

/// The runtime's details: identity, tags, platforms, deployed model, endpoints, jobs.
#[utoipa::path(get, path = "/api/engine", tag = "engine",
    responses((status = 200, body = RuntimeDetails), (status = 500, body = ErrorBody)))]
async fn engine_details(State(e): State<AppState>) -> Result<Json<RuntimeDetails>> {
    let mut jobs = JobCounts {
        running: 0,
        waiting: 0,
        complete: 0,
        failed: 0,
        cancelled: 0,
    };
    for (status, n) in e.store().counts().await? {
        match JobState::parse(&status) {
            Some(JobState::Running) => jobs.running += n,
            Some(JobState::Waiting | JobState::Created) => jobs.waiting += n,
            Some(JobState::Complete) => jobs.complete += n,
            Some(JobState::Error) => jobs.failed += n,
            Some(JobState::Cancelled) => jobs.cancelled += n,
            None => {}
        }
    }
    let tags = e.tags();
    let (stage_tags, service_tags) = tags
        .iter()
        .cloned()
        .partition(|t| STAGE_TAGS.contains(&t.as_str()));
    Ok(Json(RuntimeDetails {
        id: e.id.clone(),
        name: e.config.name.clone(),
        group: e.config.group.clone(),
        tags,
        stage_tags,
        service_tags,
        release: e.deps.release.clone(),
        built_on: e.deps.built_on.clone(),
        state: e.state().as_str().to_owned(),
        started: rfc3339(e.started_ms),
        languages: e
            .deps
            .runners
            .languages()
            .iter()
            .map(|l| l.as_str().to_owned())
            .collect(),
        platforms: e.platforms().await,
        deployed_model: e.deployment().map(|d| deployment_view(&d)),
        deployment_failure: e.deploy_failure().map(|f| DeploymentFailureView {
            name: f.name.clone(),
            at: rfc3339(f.at_ms),
            reason: f.reason.clone(),
            traceback: f.traceback.clone(),
        }),
        endpoints: e.endpoints.read().map(|v| v.clone()).unwrap_or_default(),
        jobs,
    }))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Tags {
    pub tags: Vec<String>,
}

/// The engine's tags.
#[utoipa::path(get, path = "/api/engine/tags", tag = "engine",
    responses((status = 200, body = Tags)))]
async fn get_tags(State(e): State<AppState>) -> Json<Tags> {
    Json(Tags { tags: e.tags() })
}

/// Replaces the engine's tags (stage tags DEV, SIT, UAT, PROD are written in capitals).
#[utoipa::path(put, path = "/api/engine/tags", tag = "engine", request_body = Tags,
    responses((status = 200, body = Tags), (status = 400, body = ErrorBody)))]
async fn put_tags(State(e): State<AppState>, body: Bytes) -> Result<Json<Tags>> {
    let t: Tags = json_body(&body)?;
    let tags = normalize_tags(t.tags.iter().map(String::as_str))
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    e.set_tags(tags.clone());
    Ok(Json(Tags { tags }))
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))
}

// ---------------------------------------------------------------- jobs

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
}

fn progress_view(p: jobs::JobProgress, elapsed_ms: u64) -> ProgressView {
    let done = p.records_scored + p.records_failed;
    let records_per_second = if elapsed_ms == 0 {
        0.0
    } else {
        // Rounded to a tenth: a rate, not a measurement.
        (done as f64 * 10_000.0 / elapsed_ms as f64).round() / 10.0
    };
    ProgressView {
        records_read: p.records_read,
        records_scored: p.records_scored,
        records_failed: p.records_failed,
        records_rejected: p.records_rejected,
        elapsed_ms,
        records_per_second,
    }
}

/// The job's view with its live progress when it is running.
fn job_view_live(e: &Engine, r: &JobRow) -> JobView {
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

fn job_view(r: &JobRow) -> JobView {
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
async fn create_job(
    State(e): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<JobView>)> {
    let body = read_request_body(&e, &headers, body).await?;
    let mut raw: serde_json::Value = json_body(&body)?;
    let doc: JobDocument = serde_json::from_value(raw.clone())
        .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))?;
    // Paths are resolved against the file system: on the blocking pool.
    let doc = checked_job_paths(&e, doc).await?;
    let id = new_job_id(&e, doc.id.as_deref()).await?;
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

/// The id of a new job: the document's own when usable and free, else a new one.
async fn new_job_id(e: &Engine, asked: Option<&str>) -> Result<String> {
    match asked.filter(|s| crate::queue::is_usable_id(s)) {
        Some(id) => {
            if e.store().get(id).await?.is_some() {
                return Err(Error::Conflict(format!(
                    "a job with id {id} already exists"
                )));
            }
            Ok(id.to_owned())
        }
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

/// Removes the contents of a refused submission, and the job's folder if nothing else is
/// in it.
async fn discard_contents(dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&dir);
        let content = dir.parent();
        for d in [content, content.and_then(|c| c.parent())]
            .into_iter()
            .flatten()
        {
            // Only empty folders go.
            let _ = std::fs::remove_dir(d);
        }
    })
    .await;
}

/// Where a job's uploaded and embedded contents are kept (absolute: documents name it);
/// a folder of this submission's own, so a failed one removes nothing of another's.
fn job_content_dir(e: &Engine, id: &str) -> Result<PathBuf> {
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
}

/// Submits a batch job as a multipart upload: model source, model files, input files.
#[utoipa::path(post, path = "/api/jobs/upload", tag = "jobs",
    request_body(content = JobUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = JobView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn upload_job(
    State(e): State<AppState>,
    headers: HeaderMap,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<JobView>)> {
    let multipart = multipart.map_err(not_multipart)?;
    let id = uuid::Uuid::new_v4().to_string();
    let dir = job_content_dir(&e, &id)?;
    let r = upload_job_into(&e, &headers, multipart, &id, &dir).await;
    if r.is_err() {
        discard_contents(dir).await;
    }
    r
}

/// `doc` once every local path it names is allowed (`paths::check_job`, on the blocking
/// pool: it resolves links).
async fn checked_job_paths(e: &Engine, doc: JobDocument) -> Result<JobDocument> {
    let policy = e.config.path_policy();
    tokio::task::spawn_blocking(move || crate::paths::check_job(&policy, &doc).map(|()| doc))
        .await
        .map_err(|e| Error::Store(format!("checking the job's paths failed: {e}")))?
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
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
async fn list_jobs(
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
struct JobQuery {
    /// Include the job's log lines (`jobMessages`); true by default. Whoever follows a job's
    /// progress asks without them.
    messages: Option<bool>,
}

/// One job, with its log lines (`jobMessages`) unless `messages=false`.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path), JobQuery),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_job(
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
async fn delete_job(State(e): State<AppState>, Path(id): Path<String>) -> Result<StatusCode> {
    crate::retention::delete_job(e.store(), &e.config.data_dir, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct LogLineView {
    pub at: String,
    pub level: String,
    /// ENGINE, MODEL-CONSOLE or RUNNER.
    pub source: String,
    pub message: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct LogView {
    pub lines: Vec<LogLineView>,
}

fn log_view(lines: &[StoredLine]) -> LogView {
    LogView {
        lines: lines
            .iter()
            .map(|l| LogLineView {
                at: rfc3339(l.at_ms),
                level: l.level.clone(),
                source: l.source.clone(),
                message: l.message.clone(),
            })
            .collect(),
    }
}

/// A job's log lines: lifecycle, the model's console, failed records.
#[utoipa::path(get, path = "/api/jobs/{id}/log", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = LogView), (status = 404, body = ErrorBody)))]
async fn job_log(State(e): State<AppState>, Path(id): Path<String>) -> Result<Json<LogView>> {
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
async fn job_result(
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
        .map(PathBuf::from))
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
async fn job_products(
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
async fn job_product(
    State(e): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response> {
    send_product(&e, &id, &name).await
}

/// A product in a sub-folder: `/api/jobs/{id}/products/{name}/{rest...}`.
async fn job_product_nested(
    State(e): State<AppState>,
    Path((id, name, rest)): Path<(String, String, String)>,
) -> Result<Response> {
    send_product(&e, &id, &format!("{name}/{rest}")).await
}

/// Cancels a job: a waiting one at once, a running one by stopping its worker.
#[utoipa::path(post, path = "/api/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn cancel_job(State(e): State<AppState>, Path(id): Path<String>) -> Result<Json<JobView>> {
    Ok(Json(job_view(&e.queue.cancel(&id).await?)))
}

/// Queues a finished (or interrupted) job again.
#[utoipa::path(post, path = "/api/jobs/{id}/rerun", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn rerun_job(State(e): State<AppState>, Path(id): Path<String>) -> Result<Json<JobView>> {
    Ok(Json(job_view(&e.queue.rerun(&id).await?)))
}

// ---------------------------------------------------------------- deployments

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Functions {
    pub init: Option<String>,
    pub score: Option<String>,
    pub metrics: Option<String>,
    pub train: Option<String>,
    pub end: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentView {
    pub id: String,
    pub name: String,
    pub language: String,
    pub source: String,
    pub functions: Functions,
    /// Input slots served by the roundtrip routes and output slots answered.
    pub input_slots: Vec<u32>,
    pub output_slots: Vec<u32>,
    /// Encoding of each slot's REST bodies (JSON unless the deployment says otherwise).
    pub encodings: BTreeMap<String, String>,
    /// The schema checked on each slot, by its record name.
    pub schemas: BTreeMap<String, String>,
    /// Warm workers sharing the request queue.
    pub workers: usize,
    pub since: String,
    pub records_scored: u64,
    pub records_failed: u64,
    pub worker_restarts: u64,
    /// READY, RESTARTING, FAILED or STOPPED.
    pub worker_state: String,
    pub worker_problem: Option<String>,
    pub queued: usize,
    pub queue_bound: usize,
    /// Per-record time limit of its workers in ms (none: no limit).
    pub record_timeout_ms: Option<u64>,
    /// Memory limit of each worker in MiB (none: no limit).
    pub memory_limit_mib: Option<u64>,
    /// Whether the limits are enforced (the runner of the model's language holds its
    /// workers to them).
    pub limits_enforced: bool,
    /// Workers killed and replaced for a record past the time limit.
    pub record_timeouts: u64,
    /// Workers killed and replaced for memory past the limit.
    pub memory_limit_kills: u64,
    /// Why a worker was last replaced (died, time or memory limit), and when.
    pub last_problem: Option<String>,
    pub last_problem_at: Option<String>,
    /// Per input slot: requests taken (decoded and checked) and rejected.
    pub input_counts: BTreeMap<String, SlotCountsView>,
    /// Per output slot: records answered and rejected.
    pub output_counts: BTreeMap<String, SlotCountsView>,
    /// Per output slot: records the model yielded to a slot other than the one its
    /// request asked for, which no answer carries.
    pub yields_not_answered: BTreeMap<String, u64>,
}

/// What went through one slot.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotCountsView {
    /// Records taken (input slot) or answered (output slot).
    pub records: u64,
    pub rejected_by_encoding: u64,
    pub rejected_by_schema: u64,
    pub rejected_by_size: u64,
}

fn slot_counts_view(counts: &BTreeMap<u32, jobs::SlotCounts>) -> BTreeMap<String, SlotCountsView> {
    counts
        .iter()
        .map(|(slot, c)| {
            (
                slot.to_string(),
                SlotCountsView {
                    records: c.records,
                    rejected_by_encoding: c.rejected_by_encoding,
                    rejected_by_schema: c.rejected_by_schema,
                    rejected_by_size: c.rejected_by_size,
                },
            )
        })
        .collect()
}

/// The default slot and every slot a schema names, in order.
fn slots<'a>(default: u32, with_schema: impl Iterator<Item = &'a Slot>) -> Vec<u32> {
    let mut all: Vec<u32> = std::iter::once(default)
        .chain(with_schema.map(|s| s.0))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn deployment_view(d: &Deployment) -> DeploymentView {
    let s = d.stats();
    let ep = &d.model.entry_points;
    let problem = match &s.state {
        crate::deploy::WorkerState::Restarting(w) | crate::deploy::WorkerState::Failed(w) => {
            Some(w.clone())
        }
        _ => None,
    };
    DeploymentView {
        id: d.id.clone(),
        name: d.name.clone(),
        language: d.model.language.as_str().to_owned(),
        source: d.source_name.clone(),
        functions: Functions {
            init: ep.init.clone(),
            score: ep.score.clone(),
            metrics: ep.metrics.clone(),
            train: ep.train.clone(),
            end: ep.end.clone(),
        },
        input_slots: slots(0, d.schemas.inputs.keys()),
        output_slots: slots(1, d.schemas.outputs.keys()),
        encodings: d
            .encodings()
            .map(|(k, v)| (k.to_string(), v.name().to_owned()))
            .collect(),
        schemas: d
            .schemas
            .inputs
            .iter()
            .chain(d.schemas.outputs.iter())
            .map(|(slot, c)| {
                (
                    slot.to_string(),
                    c.record_name().unwrap_or("(unnamed)").to_owned(),
                )
            })
            .collect(),
        workers: d.workers,
        since: rfc3339(d.since_ms),
        records_scored: s.records_scored,
        records_failed: s.records_failed,
        worker_restarts: s.restarts,
        worker_state: s.state.as_str().to_owned(),
        worker_problem: problem,
        queued: s.queued,
        queue_bound: d.queue_bound,
        record_timeout_ms: d.limits.record_timeout.map(|t| t.as_millis() as u64),
        memory_limit_mib: d.limits.memory_bytes.map(|m| m >> 20),
        limits_enforced: d.limits_enforced,
        record_timeouts: s.timeouts,
        memory_limit_kills: s.memory_kills,
        last_problem_at: s.last_problem.as_ref().map(|(at, _)| rfc3339(*at)),
        last_problem: s.last_problem.map(|(_, why)| why),
        input_counts: slot_counts_view(&s.slots.inputs),
        output_counts: slot_counts_view(&s.slots.outputs),
        yields_not_answered: s
            .slots
            .unanswered
            .iter()
            .map(|(slot, n)| (slot.to_string(), *n))
            .collect(),
    }
}

/// The deployed model.
#[utoipa::path(get, path = "/api/deployment", tag = "deployment",
    responses((status = 200, body = DeploymentView), (status = 404, body = ErrorBody)))]
async fn get_deployment(State(e): State<AppState>) -> Result<Json<DeploymentView>> {
    e.deployment()
        .map(|d| Json(deployment_view(&d)))
        .ok_or(Error::NoDeployment)
}

/// Deploys a model from a deployment document (the model as `deployableModel`, ModelOp's
/// shape); replaces the deployed one. Init runs now; its failure is the answer.
#[utoipa::path(put, path = "/api/deployment", tag = "deployment", request_body = DeploymentDocument,
    responses((status = 201, body = DeploymentView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn deploy(
    State(e): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<DeploymentView>)> {
    let body = read_request_body(&e, &headers, body).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| Error::BadRequest("the deployment document is not UTF-8".into()))?
        .to_owned();
    let doc: DeploymentDocument = json_body(&body)?;
    // Paths are resolved against the file system: on the blocking pool.
    let doc = {
        let policy_of = e.clone();
        tokio::task::spawn_blocking(move || {
            crate::paths::check_deployment(&policy_of.config.path_policy(), &doc).map(|()| doc)
        })
        .await
        .map_err(|e| Error::Store(format!("checking the deployment's paths failed: {e}")))??
    };
    let d = deploy_document(&e, text, doc, true).await?;
    prune_deployment_uploads(&e).await;
    Ok((StatusCode::CREATED, Json(deployment_view(&d))))
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
}

/// Deploys a model uploaded as multipart: main source and model files.
#[utoipa::path(put, path = "/api/deployment/upload", tag = "deployment",
    request_body(content = DeploymentUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = DeploymentView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn upload_deployment(
    State(e): State<AppState>,
    headers: HeaderMap,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<DeploymentView>)> {
    let multipart = multipart.map_err(not_multipart)?;
    // The files are written where they stay while the model is deployed: the stored
    // deployment document (deployed again at start) names them.
    let root = deployment_uploads_root(&e)?;
    let dir = root.join(uuid::Uuid::new_v4().simple().to_string());
    if let Ok(mut busy) = e.deployment_uploads.lock() {
        busy.insert(dir.clone());
    }
    let r = upload_deployment_from(&e, &headers, multipart, &dir).await;
    if let Ok(mut busy) = e.deployment_uploads.lock() {
        busy.remove(&dir);
    }
    match r {
        Ok(d) => {
            prune_deployment_uploads(&e).await;
            Ok((StatusCode::CREATED, Json(deployment_view(&d))))
        }
        Err(err) => {
            remove_dir(dir).await;
            Err(err)
        }
    }
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
    let parsed: DeploymentDocument = serde_json::from_value(doc.clone())
        .map_err(|e| Error::BadRequest(format!("cannot build a deployment document: {e}")))?;
    deploy_document(e, doc.to_string(), parsed, true).await
}

/// Where uploaded deployments' files are kept (absolute: documents name them).
fn deployment_uploads_root(e: &Engine) -> Result<PathBuf> {
    std::path::absolute(e.config.data_dir.join("uploads").join("deployments"))
        .map_err(|err| Error::io("cannot resolve the data dir", err))
}

/// Removes the files of uploaded deployments no longer deployed: every folder the stored
/// deployment document does not name, but those of uploads under way.
async fn prune_deployment_uploads(e: &Engine) {
    let Ok(root) = deployment_uploads_root(e) else {
        return;
    };
    // Uploads under way first: one that finishes meanwhile is in the stored document read
    // after (it is stored before it leaves the set).
    let busy: Vec<PathBuf> = e
        .deployment_uploads
        .lock()
        .map(|b| b.iter().cloned().collect())
        .unwrap_or_default();
    let stored = e
        .store()
        .setting(DEPLOYMENT_KEY)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let _ = tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let named = stored.contains(&format!("{}/", crate::document::file_url(&path)));
            if !named && !busy.contains(&path) {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    })
    .await;
}

async fn deploy_document(
    e: &AppState,
    text: String,
    doc: DeploymentDocument,
    persist: bool,
) -> Result<Arc<Deployment>> {
    if e.shutting_down() {
        return Err(Error::ShuttingDown);
    }
    // A `file:` main source is read here: on the blocking pool.
    let model = {
        let doc = doc.clone();
        tokio::task::spawn_blocking(move || doc.model())
            .await
            .map_err(|e| Error::Store(format!("reading the deployment's model failed: {e}")))??
    };
    let mut encodings = BTreeMap::new();
    for slot in [0u32, 1] {
        encodings.insert(slot, doc.encoding_of(slot)?);
    }
    for key in doc.encodings.keys() {
        let slot: u32 = key
            .parse()
            .map_err(|_| Error::BadRequest(format!("encodings: '{key}' is not a slot number")))?;
        encodings.insert(slot, doc.encoding_of(slot)?);
    }
    let language = model.language.unwrap_or(runtime_core::Language::Python);
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let limits = e.config.limits.for_deployment(&raw)?;
    let (runner, enforced) = e.deps.runners.limited(language, limits)?;
    let _serial = e.deploying.lock().await;
    let name = model.name.clone();
    let log = Arc::new(RingLog::new(DEPLOY_LOG_LINES));
    // The new model is built and initialized beside the old one, which answers until the
    // new one is ready; a new model that cannot start leaves the old one in place.
    if !limits.is_none() {
        log.info(
            LogSource::Engine,
            crate::queue::describe_limits(&limits, enforced, language),
        );
    }
    let plan = DeployPlan {
        model,
        encodings,
        runner,
        limits,
        limits_enforced: enforced,
        log: log.clone(),
    };
    let started = start_deployment(e, &text, &doc, plan).await;
    let d = match started {
        Ok(d) => d,
        Err(err) => {
            let failure = DeployFailure::new(&name, &err, log);
            if let Some(current) = e.deployment() {
                current.log.warn(
                    LogSource::Engine,
                    format!(
                        "deploying {name} failed, so {} goes on answering: {}",
                        current.name, failure.reason
                    ),
                );
            }
            e.set_deploy_failure(Some(Arc::new(failure)));
            return Err(err);
        }
    };
    let old = e
        .deployment
        .write()
        .ok()
        .and_then(|mut slot| slot.replace(d.clone()));
    e.set_deploy_failure(None);
    if persist {
        e.store().set_setting(DEPLOYMENT_KEY, Some(text)).await?;
    }
    if let Some(old) = old {
        old.stop(crate::deploy::CLOSE_GRACE).await;
        remove_dir(old.dir.clone()).await;
    }
    Ok(d)
}

/// What a deployment is started from, once its document is read.
struct DeployPlan {
    model: crate::document::ModelSource,
    encodings: BTreeMap<u32, Encoding>,
    runner: Arc<dyn runtime_core::Runner>,
    limits: worker::WorkerLimits,
    limits_enforced: bool,
    log: Arc<RingLog>,
}

/// Prepares a model's folder and starts its workers (init runs now); on failure nothing of
/// it is left.
async fn start_deployment(
    e: &AppState,
    text: &str,
    doc: &DeploymentDocument,
    plan: DeployPlan,
) -> Result<Arc<Deployment>> {
    let DeployPlan {
        model,
        encodings,
        runner,
        limits,
        limits_enforced,
        log,
    } = plan;
    let id = doc
        .id
        .clone()
        .filter(|s| !s.is_empty() && s.len() <= 100)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let dir = e
        .config
        .data_dir
        .join("deployments")
        .join(uuid::Uuid::new_v4().to_string());
    // Writing the model's folder and walking it for schemas are file work: on the blocking
    // pool, both.
    let prepared = {
        let model = model.clone();
        let dir = dir.clone();
        let log = log.clone();
        let check_inputs = doc.enable_input_schema_checking.unwrap_or(true);
        let check_outputs = doc.enable_output_schema_checking.unwrap_or(true);
        // A side's schemas are needed, checked or not, where a slot's codec uses them.
        let coded = |input: bool| {
            encodings.iter().any(|(slot, enc)| {
                Slot(*slot).is_input() == input
                    && matches!(enc, Encoding::AvroBinary | Encoding::Csv)
            })
        };
        let (need_inputs, need_outputs) =
            (check_inputs || coded(true), check_outputs || coded(false));
        tokio::task::spawn_blocking(move || {
            let prepared = crate::prepare::prepare_model(&model, &dir, log.as_ref())?;
            let (schemas, warnings) = schema::resolve_checked_schemas(
                &prepared.materialized.work_dir,
                &prepared.comments,
                need_inputs,
                need_outputs,
            )
            .map_err(|err| Error::BadRequest(format!("the model's schemas: {err}")))?;
            for w in warnings {
                log.warn(LogSource::Engine, w);
            }
            let codecs = crate::deploy::message_codecs(&encodings, &schemas)?;
            Ok::<_, Error>((
                prepared,
                schemas.switched(check_inputs, check_outputs),
                codecs,
            ))
        })
        .await
        .map_err(|e| Error::Store(format!("deployment preparation failed: {e}")))?
    };
    let (prepared, schemas, codecs) = match prepared {
        Ok(p) => p,
        Err(err) => {
            remove_dir(dir).await;
            return Err(err);
        }
    };
    // The same environment logic as a batch job's: the model's requirements installed.
    let mut prepared = prepared;
    let job_log: Arc<dyn runtime_core::JobLog> = log.clone();
    let environment = match jobs::prepare_environment(
        &prepared.spec,
        e.deps.environments.clone(),
        &[],
        false,
        &job_log,
    )
    .await
    {
        Ok(env) => env,
        Err(reason) => {
            remove_dir(dir).await;
            return Err(Error::BadRequest(reason));
        }
    };
    if let Some(env) = &environment {
        prepared
            .spec
            .import_paths
            .insert(0, env.site_packages.clone());
    }
    let spec = DeploySpec {
        id,
        name: model.name.clone(),
        document: text.to_owned(),
        model: prepared.spec,
        source_name: model.source_name.clone(),
        codecs,
        schemas,
        dir: dir.clone(),
        session: SessionConfig {
            init: InitContext::Deployment {
                raw_json: text.to_owned(),
            },
            log: log.clone(),
            env: vec![(
                "HOME".to_owned(),
                prepared.materialized.home.display().to_string(),
            )],
        },
        queue_bound: e.config.score_queue_bound,
        batching: e.config.score_batching(),
        workers: e.config.score_workers,
        environment,
        limits,
        limits_enforced,
    };
    if spec.model.entry_points.score.is_none() {
        remove_dir(dir).await;
        return Err(Error::BadRequest(
            "the model has no score function: mark one with '# modelop.score' or name it with scoreFunction".into(),
        ));
    }
    match Deployment::start(spec, runner, log).await {
        Ok(d) => Ok(d),
        Err(err) => {
            remove_dir(dir).await;
            Err(err)
        }
    }
}

async fn remove_dir(dir: std::path::PathBuf) {
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}

/// Takes the deployed model out of service (the caller stops it).
pub fn take_deployment(e: &Engine) -> Option<Arc<Deployment>> {
    e.deployment.write().ok().and_then(|mut d| d.take())
}

/// Deploys again, at start, the model that was deployed when the engine stopped.
pub async fn restore_deployment(e: &AppState) {
    let text = match e.store().setting(DEPLOYMENT_KEY).await {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!("cannot read the last deployment: {err}");
            return;
        }
    };
    let doc: DeploymentDocument = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(err) => {
            tracing::warn!("the last deployment's document is unreadable: {err}");
            return;
        }
    };
    match deploy_document(e, text, doc, false).await {
        Ok(d) => tracing::info!("model {} deployed again", d.name),
        Err(err) => tracing::error!("cannot deploy the last deployed model again: {err}"),
    }
}

async fn undeploy_inner(e: &AppState) -> Result<StatusCode> {
    let _serial = e.deploying.lock().await;
    let failed = e.deploy_failure().is_some();
    e.set_deploy_failure(None);
    let Some(d) = take_deployment(e) else {
        if failed {
            // Nothing answers, but a model was asked for: forget it (and its document, so
            // a restart does not try it again).
            e.store().set_setting(DEPLOYMENT_KEY, None).await?;
            return Ok(StatusCode::NO_CONTENT);
        }
        return Err(Error::NoDeployment);
    };
    e.store().set_setting(DEPLOYMENT_KEY, None).await?;
    d.stop(crate::deploy::CLOSE_GRACE).await;
    remove_dir(d.dir.clone()).await;
    // The stored document names no upload now: its files go too.
    prune_deployment_uploads(e).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Undeploys the model: queued requests are answered, then its worker stops.
#[utoipa::path(delete, path = "/api/deployment", tag = "deployment",
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn undeploy(State(e): State<AppState>) -> Result<StatusCode> {
    undeploy_inner(&e).await
}

/// The deployed model (FastScore 1.10 path).
#[utoipa::path(get, path = "/2/active/model", tag = "deployment",
    responses((status = 200, body = DeploymentView), (status = 404, body = ErrorBody)))]
async fn active_model(State(e): State<AppState>) -> Result<Json<DeploymentView>> {
    get_deployment(State(e)).await
}

/// Undeploys the model (FastScore 1.10 path).
#[utoipa::path(delete, path = "/2/active/model", tag = "deployment",
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn active_model_delete(State(e): State<AppState>) -> Result<StatusCode> {
    undeploy_inner(&e).await
}

/// The deployed model's latest log lines (its console, failed records, restarts).
#[utoipa::path(get, path = "/api/deployment/log", tag = "deployment",
    responses((status = 200, body = LogView), (status = 404, body = ErrorBody)))]
async fn deployment_log(State(e): State<AppState>) -> Result<Json<LogView>> {
    // The deployed model's lines and, after them in time, those of a deployment that
    // failed since (its console, reason and traceback).
    let mut lines = e.deployment().map(|d| d.log.lines());
    if let Some(f) = e.deploy_failure() {
        let all = lines.get_or_insert_with(Vec::new);
        all.extend(f.log.lines());
        all.sort_by_key(|l| l.at_ms);
    }
    let lines = lines.ok_or(Error::NoDeployment)?;
    Ok(Json(log_view(&lines)))
}

// ---------------------------------------------------------------- scoring

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RoundtripQuery {
    /// Milliseconds to wait for the model (default: the engine's roundtrip timeout).
    timeout: Option<u64>,
}

/// Scores the body with the deployed model and answers what it yielded on the output
/// slot: one yield as itself, several as a JSON array (JSON encoding; other encodings:
/// one message per line), none as 204. The body is decoded by the slot's encoding
/// whatever its Content-Type says; a JSON array is one record.
#[utoipa::path(post, path = "/api/roundtrip/{input}/{output}", tag = "scoring",
    params(("input" = u32, Path, description = "input slot (even)"),
        ("output" = u32, Path, description = "output slot (odd)"), RoundtripQuery),
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, description = "what the model yielded"),
        (status = 204, description = "the model yielded nothing"),
        (status = 400, description = "An error has occurred: input record rejected by encoding", body = String),
        (status = 404, description = "no model is deployed", body = String),
        (status = 422, description = "the model raised on the record", body = String),
        (status = 503, description = "queue full or worker restarting (Retry-After)", body = String),
        (status = 504, description = "the model did not answer in time", body = String)))]
async fn roundtrip(
    State(e): State<AppState>,
    path: std::result::Result<Path<(u32, u32)>, PathRejection>,
    q: std::result::Result<Query<RoundtripQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Response> {
    let (input, output, timeout) = roundtrip_params(path, q)?;
    score_body(&e, input, output, timeout, &body).await
}

// ---------------------------------------------------------------- schemas

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SchemaId {
    /// Check records against this schema with `POST /2/active/schema/verify/{id}`.
    pub id: u64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RecordVerdict {
    pub conforms: bool,
    /// Why not (`Field 'x' missing for record 'input_schema'`); the record itself is not
    /// repeated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Compiles an Avro schema (the body, JSON) and keeps it for checking records.
#[utoipa::path(post, path = "/2/active/schema/verify", tag = "schemas",
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, body = SchemaId), (status = 400, body = ErrorBody)))]
async fn verify_schema(State(e): State<AppState>, body: Bytes) -> Result<Json<SchemaId>> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| Error::BadRequest("the schema is not UTF-8 text".into()))?;
    let checker = schema::Checker::parse(text).map_err(|err| Error::BadRequest(err.to_string()))?;
    Ok(Json(SchemaId {
        id: e.keep_schema(checker),
    }))
}

/// Checks one record (the body, JSON) against a schema compiled by `/2/active/schema/verify`.
#[utoipa::path(post, path = "/2/active/schema/verify/{id}", tag = "schemas",
    params(("id" = u64, Path, description = "what /2/active/schema/verify answered")),
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, body = RecordVerdict), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn verify_record(
    State(e): State<AppState>,
    path: std::result::Result<Path<u64>, PathRejection>,
    body: Bytes,
) -> Result<Json<RecordVerdict>> {
    let Path(id) = path.map_err(|r| Error::BadRequest(r.body_text()))?;
    let checker = e
        .verified_schema(id)
        .ok_or_else(|| Error::NotFound(format!("schema {id}")))?;
    let value = codecs::decode_message(&CodecConfig::new(Encoding::Json), &body)
        .map_err(|why| Error::BadRequest(format!("the record is not JSON: {why}")))?;
    Ok(Json(match checker.check(&value) {
        Ok(()) => RecordVerdict {
            conforms: true,
            reason: None,
        },
        Err(v) => RecordVerdict {
            conforms: false,
            reason: Some(v.to_string()),
        },
    }))
}

/// The same as `/api/roundtrip/{input}/{output}`, on the FastScore 1.10 path.
#[utoipa::path(post, path = "/2/active/model/roundtrip/{input}/{output}", tag = "scoring",
    params(("input" = u32, Path, description = "input slot (even)"),
        ("output" = u32, Path, description = "output slot (odd)"), RoundtripQuery),
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, description = "what the model yielded"),
        (status = 204, description = "the model yielded nothing"),
        (status = 400, body = String), (status = 404, body = String),
        (status = 422, body = String), (status = 503, body = String),
        (status = 504, body = String)))]
async fn roundtrip_v2(
    State(e): State<AppState>,
    path: std::result::Result<Path<(u32, u32)>, PathRejection>,
    q: std::result::Result<Query<RoundtripQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Response> {
    let (input, output, timeout) = roundtrip_params(path, q)?;
    score_body(&e, input, output, timeout, &body).await
}

fn roundtrip_params(
    path: std::result::Result<Path<(u32, u32)>, PathRejection>,
    q: std::result::Result<Query<RoundtripQuery>, QueryRejection>,
) -> Result<(u32, u32, Option<u64>)> {
    let Path((input, output)) = path.map_err(|r| Error::BadRoundtrip(r.body_text()))?;
    let Query(q) = q.map_err(|r| Error::BadRoundtrip(r.body_text()))?;
    Ok((input, output, q.timeout))
}

async fn score_body(
    e: &Engine,
    input: u32,
    output: u32,
    timeout: Option<u64>,
    body: &[u8],
) -> Result<Response> {
    if input % 2 != 0 || output % 2 != 1 {
        return Err(Error::BadRoundtrip(format!(
            "roundtrip/{input}/{output}: the input slot must be even and the output slot odd"
        )));
    }
    if e.shutting_down() {
        return Err(Error::ShuttingDown);
    }
    let d = e.deployment().ok_or(Error::NoModel)?;
    let timeout_ms = timeout
        .unwrap_or(e.config.roundtrip_timeout_ms)
        .clamp(1, 3_600_000);
    let answer = d
        .score_message(
            Slot(input),
            Slot(output),
            body,
            Duration::from_millis(timeout_ms),
        )
        .await?;
    Ok(match answer {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(a) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            )],
            a.body,
        )
            .into_response(),
    })
}
