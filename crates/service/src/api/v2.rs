//! The Open Inference Protocol (V2) over REST, for the deployed model: health, server and
//! model metadata, readiness, and `infer` with JSON or binary tensors. The tensors become
//! records on input slot 0 and the model's yields on slot 1 become tensors
//! (`inference_protocol`; docs/inference-protocol.md); each record takes the chain a REST
//! request takes (`Deployment::score_value`), so concurrent requests are batched together.
//! Errors are JSON `{"error": ...}` as the protocol says.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use inference_protocol::{InferRequest, InferResponse, TensorMetadata};
use runtime_core::Slot;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::deploy::Deployment;
use crate::error::Error;
use crate::Engine;

use super::AppState;

pub(crate) const INPUT: Slot = Slot(0);
pub(crate) const OUTPUT: Slot = Slot(1);
/// The header of the binary data extension: the JSON part's length.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// A V2 error body.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct V2Error {
    pub error: String,
}

fn v2_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(V2Error {
            error: message.into(),
        }),
    )
        .into_response()
}

/// An engine error as the protocol answers it: its status, its text (and detail).
fn error_text(e: &Error, row: Option<usize>) -> (StatusCode, String) {
    let mut text = e.to_string();
    if let Some(d) = e.detail() {
        text = format!("{text}: {d}");
    }
    if let Some(i) = row {
        text = format!("record {i} of the request: {text}");
    }
    (e.status(), text)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct LiveV2 {
    pub live: bool,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReadyV2 {
    pub ready: bool,
}

/// The server is up (open, for probes).
#[utoipa::path(get, path = "/v2/health/live", tag = "inference", operation_id = "v2_live",
    responses((status = 200, body = LiveV2)))]
pub(super) async fn live() -> Json<LiveV2> {
    Json(LiveV2 { live: true })
}

pub(crate) fn is_ready(e: &Engine) -> Option<Arc<Deployment>> {
    e.ready_deployment().ok()
}

/// The deployed model can take requests (open, for probes): 200, else 503.
#[utoipa::path(get, path = "/v2/health/ready", tag = "inference", operation_id = "v2_ready",
    responses((status = 200, body = ReadyV2), (status = 503, body = ReadyV2)))]
pub(super) async fn ready(State(e): State<AppState>) -> (StatusCode, Json<ReadyV2>) {
    let ready = is_ready(&e).is_some();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(ReadyV2 { ready }))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

/// The server: its name, release and protocol extensions.
#[utoipa::path(get, path = "/v2", tag = "inference", operation_id = "v2_server_metadata",
    responses((status = 200, body = ServerMetadata)))]
pub(super) async fn server_metadata(State(e): State<AppState>) -> Json<ServerMetadata> {
    Json(server_metadata_of(&e))
}

pub(super) fn server_metadata_of(e: &Engine) -> ServerMetadata {
    ServerMetadata {
        name: "model-runtime".to_owned(),
        version: e.deps.release.clone(),
        extensions: vec!["binary_tensor_data".to_owned()],
    }
}

/// The deployed model when `name` is its name; otherwise why not (a 404).
pub(crate) fn model(e: &Engine, name: &str) -> std::result::Result<Arc<Deployment>, String> {
    match e.deployment() {
        Some(d) if d.name == name => Ok(d),
        Some(d) => Err(format!(
            "model '{name}' is not served here; the deployed model is '{}'",
            d.name
        )),
        None => Err(format!(
            "model '{name}' is not served here: no model is deployed"
        )),
    }
}

fn not_served(why: String) -> Response {
    v2_error(StatusCode::NOT_FOUND, why)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TensorMetadataView {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    /// The model's language (`python`, `r`).
    pub platform: String,
    /// From the Avro schema of input slot 0 (a record's fields); empty without one.
    pub inputs: Vec<TensorMetadataView>,
    /// From the Avro schema of output slot 1.
    pub outputs: Vec<TensorMetadataView>,
}

pub(crate) fn tensors(d: &Deployment, slot: Slot, single: &str) -> Vec<TensorMetadataView> {
    let Some(json) = d.schema_json(slot) else {
        return Vec::new();
    };
    let schema: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    inference_protocol::tensors_of_avro(&schema, single)
        .into_iter()
        .map(
            |TensorMetadata {
                 name,
                 datatype,
                 shape,
             }| TensorMetadataView {
                name,
                datatype,
                shape,
            },
        )
        .collect()
}

fn metadata(e: &Engine, name: &str) -> Response {
    match model(e, name) {
        Ok(d) => Json(ModelMetadata {
            name: d.name.clone(),
            versions: Vec::new(),
            platform: d.model.language.as_str().to_owned(),
            inputs: tensors(&d, INPUT, "input-0"),
            outputs: tensors(&d, OUTPUT, "output-0"),
        })
        .into_response(),
        Err(why) => not_served(why),
    }
}

/// The deployed model's metadata: its inputs and outputs from its slots' Avro schemas.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "inference", operation_id = "v2_model_metadata",
    params(("name" = String, Path)),
    responses((status = 200, body = ModelMetadata), (status = 404, body = V2Error)))]
pub(super) async fn model_metadata(
    State(e): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    metadata(&e, &name)
}

/// The same, for any version (the deployed model answers to every version).
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "inference", operation_id = "v2_model_version_metadata",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ModelMetadata), (status = 404, body = V2Error)))]
pub(super) async fn model_version_metadata(
    State(e): State<AppState>,
    Path((name, _version)): Path<(String, String)>,
) -> Response {
    metadata(&e, &name)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ModelReady {
    pub name: String,
    pub ready: bool,
}

fn model_ready_answer(e: &Engine, name: &str) -> Response {
    match model(e, name) {
        Ok(d) => {
            let ready = is_ready(e).is_some();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (
                status,
                Json(ModelReady {
                    name: d.name.clone(),
                    ready,
                }),
            )
                .into_response()
        }
        Err(why) => not_served(why),
    }
}

/// Whether the deployed model takes requests: 200, else 503.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "inference", operation_id = "v2_model_ready",
    params(("name" = String, Path)),
    responses((status = 200, body = ModelReady), (status = 503, body = ModelReady),
        (status = 404, body = V2Error)))]
pub(super) async fn model_ready(State(e): State<AppState>, Path(name): Path<String>) -> Response {
    model_ready_answer(&e, &name)
}

/// The same, for any version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "inference", operation_id = "v2_model_version_ready",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ModelReady), (status = 503, body = ModelReady),
        (status = 404, body = V2Error)))]
pub(super) async fn model_version_ready(
    State(e): State<AppState>,
    Path((name, _version)): Path<(String, String)>,
) -> Response {
    model_ready_answer(&e, &name)
}

/// Scores the request's records (one per row of the inputs' first dimension) and answers
/// the model's yields as output tensors; outputs asked for in binary (or all, with
/// `binary_data_output`) follow the JSON header (`Inference-Header-Content-Length`).
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "inference", operation_id = "v2_infer",
    params(("name" = String, Path)),
    request_body(content = Object, content_type = "application/json",
        description = "an inference request; with Inference-Header-Content-Length, a JSON header then binary tensors"),
    responses((status = 200, description = "the inference response", content_type = "application/json", body = Object),
        (status = 400, body = V2Error), (status = 404, body = V2Error),
        (status = 422, body = V2Error), (status = 500, body = V2Error),
        (status = 503, body = V2Error), (status = 504, body = V2Error)))]
pub(super) async fn infer(
    State(e): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    infer_answer(&e, &name, None, &headers, &body).await
}

/// The same, for any version (echoed in the response).
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "inference", operation_id = "v2_infer_version",
    params(("name" = String, Path), ("version" = String, Path)),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "the inference response", content_type = "application/json", body = Object),
        (status = 400, body = V2Error), (status = 404, body = V2Error),
        (status = 422, body = V2Error), (status = 500, body = V2Error),
        (status = 503, body = V2Error), (status = 504, body = V2Error)))]
pub(super) async fn infer_version(
    State(e): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    infer_answer(&e, &name, Some(version), &headers, &body).await
}

async fn infer_answer(
    e: &Engine,
    name: &str,
    version: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()) {
            Some(n) => Some(n),
            None => {
                return v2_error(
                    StatusCode::BAD_REQUEST,
                    "Inference-Header-Content-Length is not a byte count",
                )
            }
        },
    };
    if let Err(why) = model(e, name) {
        return not_served(why);
    }
    let request = match InferRequest::parse(body, header_length) {
        Ok(r) => r,
        Err(why) => return v2_error(StatusCode::BAD_REQUEST, why.to_string()),
    };
    let binary: Vec<(String, bool)> = request
        .outputs
        .iter()
        .map(|o| (o.name.clone(), request.binary_output(&o.name)))
        .collect();
    let all_binary = request.binary_output("");
    let response = match infer_request(e, name, version, request).await {
        Ok(r) => r,
        Err((status, why)) => return v2_error(status, why),
    };
    let (bytes, header) = response.encode(|n| {
        binary
            .iter()
            .find(|(o, _)| o == n)
            .map_or(all_binary, |(_, b)| *b)
    });
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    match header {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = HeaderValue::from_str(&n.to_string()) {
                h.insert(HEADER_LENGTH, v);
            }
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    r
}

/// A request scored by model `name`, whatever carried it (REST here, gRPC in
/// `crate::grpc`): its records through the deployment's chain, the answers as tensors.
pub(crate) async fn infer_request(
    e: &Engine,
    name: &str,
    version: Option<String>,
    request: InferRequest,
) -> std::result::Result<InferResponse, (StatusCode, String)> {
    let d = model(e, name).map_err(|why| (StatusCode::NOT_FOUND, why))?;
    let records = request
        .records()
        .map_err(|why| (StatusCode::BAD_REQUEST, why.to_string()))?;
    let rows = records.len();
    let timeout = Duration::from_millis(e.config.roundtrip_timeout_ms);
    // The request's records are queued as one entry: a worker scores them in one batch,
    // never split, with whatever other requests wait beside them (a record-set model in
    // one call). A request of one row is refused when the queue is full, as a REST request
    // is; a larger one waits for room (a request is answered whole or not at all).
    let wait = rows > 1;
    let results = d
        .score_values(INPUT, OUTPUT, records, timeout, wait)
        .await
        .map_err(|err| error_text(&err, None))?;
    let mut answers = Vec::with_capacity(rows);
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(values) => answers.extend(values),
            Err(err) => return Err(error_text(&err, (rows > 1).then_some(i))),
        }
    }
    if answers.len() != rows {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the model yielded {} answers to slot {OUTPUT} for the request's {rows} records: tensors need one answer per record",
                answers.len()
            ),
        ));
    }
    let single = match request.outputs.as_slice() {
        [only] => only.name.clone(),
        _ => "output-0".to_owned(),
    };
    let mut outputs = inference_protocol::outputs_of(&answers, &single)
        .map_err(|why| (StatusCode::INTERNAL_SERVER_ERROR, why.to_string()))?;
    if !request.outputs.is_empty() {
        let mut chosen = Vec::with_capacity(request.outputs.len());
        for wanted in &request.outputs {
            match outputs.iter().position(|t| t.name == wanted.name) {
                Some(i) => chosen.push(outputs.swap_remove(i)),
                None => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        format!(
                            "output '{}' is not one the model gives (it gives {})",
                            wanted.name,
                            outputs
                                .iter()
                                .map(|t| format!("'{}'", t.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ))
                }
            }
        }
        outputs = chosen;
    }
    d.outputs_delivered(OUTPUT, rows as u64);
    Ok(InferResponse {
        model_name: d.name.clone(),
        model_version: version,
        id: request.id.clone(),
        outputs,
    })
}
