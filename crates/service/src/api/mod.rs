//! The HTTP routes and the OpenAPI document generated from them: the routers, their
//! fallbacks and body limits here, the handlers by surface in the submodules.

mod deployment;
mod engine;
mod jobs;
mod live;
mod schemas;
mod scoring;
mod streams;
mod ui;
mod uploads;
mod v2;

pub(crate) use ui::is_open_path;

use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, ErrorBody, Result};
use crate::store::StoredLine;
use crate::time::rfc3339;
use crate::Engine;

type AppState = Arc<Engine>;

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
        .routes(routes!(scoring::roundtrip))
        .routes(routes!(scoring::roundtrip_v2))
        .routes(routes!(v2::live))
        .routes(routes!(v2::ready))
        .routes(routes!(v2::server_metadata))
        .routes(routes!(v2::model_metadata))
        .routes(routes!(v2::model_version_metadata))
        .routes(routes!(v2::model_ready))
        .routes(routes!(v2::model_version_ready))
        .routes(routes!(v2::infer))
        .routes(routes!(v2::infer_version))
        .routes(routes!(streams::job_input))
        .routes(routes!(streams::job_output))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
}

fn control_routes() -> OpenApiRouter<AppState> {
    // Multipart uploads are bounded by maxUploadBytes as they are written to disk, not by
    // the body limit every other route has (maxRequestBytes).
    let uploads = OpenApiRouter::new()
        .routes(routes!(uploads::upload_job))
        .routes(routes!(uploads::upload_deployment))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(engine::health))
        .routes(routes!(engine::ready))
        .routes(routes!(engine::engine_state))
        .routes(routes!(engine::engine_details))
        .routes(routes!(engine::get_tags, engine::put_tags))
        .routes(routes!(jobs::list_jobs, jobs::create_job))
        .routes(routes!(jobs::get_job, jobs::delete_job))
        .routes(routes!(jobs::job_log))
        .routes(routes!(jobs::job_result))
        .routes(routes!(jobs::job_products))
        .routes(routes!(jobs::job_product))
        .route(
            "/api/jobs/{id}/products/{name}/{*rest}",
            axum::routing::get(jobs::job_product_nested),
        )
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::rerun_job))
        .routes(routes!(
            deployment::get_deployment,
            deployment::deploy,
            deployment::undeploy
        ))
        .routes(routes!(deployment::deployment_log))
        .routes(routes!(
            deployment::active_model,
            deployment::active_model_delete
        ))
        .routes(routes!(streams::list_streams))
        .routes(routes!(streams::attach_stream, streams::detach_stream))
        .routes(routes!(live::metrics))
        .routes(routes!(live::live))
        .routes(routes!(schemas::verify_schema))
        .routes(routes!(schemas::verify_record))
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
        .route("/", axum::routing::get(ui::index))
        .route("/ui/{name}", axum::routing::get(ui::asset))
        .route("/docs", axum::routing::get(ui::docs_root))
        .route("/docs/", axum::routing::get(ui::docs_root))
        .route("/docs/{*rest}", axum::routing::get(ui::docs))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(move |r: Response| {
            too_large_in_json(limit, r)
        }))
        .layer(DefaultBodyLimit::max(request_limit_bytes(&engine)))
        .layer(axum::Extension(RequestLimit(limit)))
        .layer(axum::middleware::from_fn_with_state(
            engine.clone(),
            live::observe,
        ))
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
        .layer(axum::middleware::from_fn_with_state(
            engine.clone(),
            live::observe,
        ))
        .with_state(engine)
        .layer(axum::middleware::from_fn_with_state(
            policy,
            crate::auth::require,
        ))
}

/// An unknown path of the control API: 404 in the API's JSON, naming what was asked.
async fn no_route(method: axum::http::Method, uri: axum::extract::OriginalUri) -> Error {
    // The path as the client asked it, a host's prefix included when the API is nested.
    Error::NotFound(format!("route {method} {}", uri.path()))
}

/// A known path asked with a method it does not answer: 405 in the API's JSON (the
/// `Allow` header names the methods it answers).
async fn method_not_allowed(method: axum::http::Method, uri: axum::extract::OriginalUri) -> Error {
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

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))
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
