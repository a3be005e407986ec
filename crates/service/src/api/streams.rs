//! Streams on the deployed model: attach (`PUT /2/active/stream/{slot}`, `?dry-run=true`
//! answering the defaulted descriptor), list, detach; and the REST transport's routes
//! (`POST /1/job/input/{slot}`, `GET /1/job/output/{slot}`). What a stream does is
//! `crate::deploy::streams`'s.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use endpoints::StreamDescriptor;
use runtime_core::Slot;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::deploy::streams::{StreamInfo, StreamState};
use crate::deploy::{attach_stream as attach, checked_stream, detach_stream as detach};
use crate::deploy::{Posted, Taken};
use crate::error::{Error, ErrorBody, Result};

use super::AppState;

/// A stream attached to a slot of the deployed model.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamView {
    /// The slot: a number, or `errors` for the error stream.
    pub slot: SlotName,
    /// Its descriptor, every default filled in, secrets written into it hidden.
    #[schema(value_type = Object)]
    pub descriptor: serde_json::Value,
    /// Its endpoint (`file:/srv/data/in.jsonl`, `POST /1/job/input/0`).
    pub endpoint: String,
    /// running, retrying (its source is unreachable for now), draining, finished or failed.
    pub state: String,
    /// Why it failed, or why it is retrying.
    pub reason: Option<String>,
    /// Input: records read. Output: records the model yielded to it.
    pub records_in: u64,
    /// Input: records scored. Output: records written.
    pub records_out: u64,
    /// Rejected by encoding or schema.
    pub records_rejected: u64,
    /// Input: the model failed on them. Output: lost with a sink that failed.
    pub records_failed: u64,
    /// Input: the records its stream holds not acknowledged yet (a Kafka consumer group's
    /// lag, refreshed every few seconds), when its source knows.
    pub lag: Option<u64>,
}

/// A slot as the API names it: its number, or `errors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SlotName {
    Number(u32),
    /// `errors`: the error stream.
    Errors(String),
}

impl From<Slot> for SlotName {
    fn from(slot: Slot) -> SlotName {
        if slot == Slot::ERRORS {
            SlotName::Errors("errors".to_owned())
        } else {
            SlotName::Number(slot.0)
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct StreamsView {
    pub streams: Vec<StreamView>,
}

pub(super) fn stream_view(s: StreamInfo) -> StreamView {
    let reason = match &s.state {
        StreamState::Failed(why) | StreamState::Retrying(why) => Some(why.clone()),
        _ => None,
    };
    StreamView {
        slot: Slot(s.slot).into(),
        descriptor: s.descriptor.to_shown_json(),
        endpoint: s.endpoint,
        state: s.state.as_str().to_owned(),
        reason,
        records_in: s.records_in,
        records_out: s.records_out,
        records_rejected: s.records_rejected,
        records_failed: s.records_failed,
        lag: s.lag,
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AttachQuery {
    /// Answer the descriptor with every default filled in, and attach nothing.
    #[serde(rename = "dry-run")]
    dry_run: Option<bool>,
}

/// A slot of a stream route: a number, or `errors` (the error stream).
fn slot_param(path: std::result::Result<Path<String>, PathRejection>) -> Result<Slot> {
    let Path(slot) = path.map_err(|r| Error::BadRequest(r.body_text()))?;
    Slot::parse(&slot).ok_or_else(|| {
        Error::BadRequest(format!(
            "'{slot}' is not a slot: a number (even: an input, odd: an output) or 'errors'"
        ))
    })
}

/// Attaches a stream descriptor to a slot of the deployed model (even: an input read
/// through the model, odd: an output receiving what the model yields there), replacing the
/// stream on that slot. The body is the descriptor: its JSON form, or a short form
/// (`file:/srv/data/in.jsonl`, `rest:`, `inline:1,2,3`, `discard:`) as text or as a JSON
/// string. With `?dry-run=true` the descriptor is answered with every default filled in
/// and nothing is attached.
#[utoipa::path(put, path = "/2/active/stream/{slot}", tag = "streams",
    params(("slot" = String, Path, description = "even: an input, odd: an output; errors: the error stream"), AttachQuery),
    request_body(content = Object, content_type = "application/json",
        description = "a stream descriptor (JSON form), or a short form as a JSON string"),
    responses(
        (status = 200, description = "dry run: the descriptor with every default filled in", body = Object),
        (status = 201, body = StreamView),
        (status = 400, description = "an invalid descriptor, naming the field", body = ErrorBody),
        (status = 403, description = "a path outside allowedPaths", body = ErrorBody),
        (status = 404, description = "no model is deployed", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn attach_stream(
    State(e): State<AppState>,
    path: std::result::Result<Path<String>, PathRejection>,
    q: std::result::Result<Query<AttachQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Response> {
    let slot = slot_param(path)?;
    let Query(q) = q.map_err(|r| Error::BadRequest(r.body_text()))?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| Error::BadRequest("the stream descriptor is not UTF-8".into()))?;
    let descriptor = StreamDescriptor::parse(text)?;
    if q.dry_run.unwrap_or(false) {
        let descriptor = checked_stream(&e, descriptor, slot).await?;
        return Ok(Json(descriptor.to_shown_json()).into_response());
    }
    if e.shutting_down() {
        return Err(Error::ShuttingDown);
    }
    let info = attach(&e, slot, descriptor).await?;
    Ok((StatusCode::CREATED, Json(stream_view(info))).into_response())
}

/// The streams attached to the deployed model, by slot, with their state and counts.
#[utoipa::path(get, path = "/2/active/stream", tag = "streams",
    responses((status = 200, body = StreamsView), (status = 404, body = ErrorBody)))]
pub(super) async fn list_streams(State(e): State<AppState>) -> Result<Json<StreamsView>> {
    let d = e.deployment().ok_or(Error::NoDeployment)?;
    Ok(Json(StreamsView {
        streams: d.streams.list().into_iter().map(stream_view).collect(),
    }))
}

/// Detaches the stream on a slot: an input stops reading and its records in flight are
/// scored and written, an output writes what it holds and is closed.
#[utoipa::path(delete, path = "/2/active/stream/{slot}", tag = "streams",
    params(("slot" = String, Path, description = "the stream's slot (a number, or errors)")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn detach_stream(
    State(e): State<AppState>,
    path: std::result::Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    let slot = slot_param(path)?;
    detach(&e, slot).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Writes one record (the body, decoded by the stream's encoding) to the REST input
/// stream attached to the slot.
#[utoipa::path(post, path = "/1/job/input/{slot}", tag = "scoring",
    params(("slot" = u32, Path, description = "an input slot (even) with a REST stream")),
    request_body(content = String, content_type = "application/json"),
    responses((status = 204, description = "queued for the model"),
        (status = 400, description = "not an input slot", body = String),
        (status = 404, description = "no REST stream is attached to the slot", body = String),
        (status = 503, description = "the stream's queue is full (Retry-After)", body = String)))]
pub(super) async fn job_input(
    State(e): State<AppState>,
    path: std::result::Result<Path<u32>, PathRejection>,
    body: Bytes,
) -> Result<StatusCode> {
    let Path(slot) = path.map_err(|r| Error::BadRoundtrip(r.body_text()))?;
    if !Slot(slot).is_input() {
        return Err(Error::BadRoundtrip(format!(
            "input/{slot}: an input slot is even"
        )));
    }
    let d = e.deployment().ok_or(Error::NoModel)?;
    match d.streams.rest.post(slot, body.to_vec()) {
        Posted::Queued => Ok(StatusCode::NO_CONTENT),
        Posted::NoStream => Err(Error::NoStream(format!(
            "no REST stream is attached to input slot {slot}"
        ))),
        Posted::Full => Err(Error::StreamFull {
            slot,
            bound: crate::deploy::REST_QUEUE_BOUND,
        }),
    }
}

/// Reads one record of the REST output stream attached to the slot: 200 with the record,
/// 202 when none is there yet, 204 once the stream ended and every record was read.
#[utoipa::path(get, path = "/1/job/output/{slot}", tag = "scoring",
    params(("slot" = u32, Path, description = "an output slot (odd) with a REST stream")),
    responses((status = 200, description = "one record, encoded by the stream's encoding"),
        (status = 202, description = "no record yet"),
        (status = 204, description = "the stream ended"),
        (status = 400, description = "not an output slot", body = String),
        (status = 404, description = "no REST stream is attached to the slot", body = String)))]
pub(super) async fn job_output(
    State(e): State<AppState>,
    path: std::result::Result<Path<u32>, PathRejection>,
) -> Result<Response> {
    let Path(slot) = path.map_err(|r| Error::BadRoundtrip(r.body_text()))?;
    if !Slot(slot).is_output() {
        return Err(Error::BadRoundtrip(format!(
            "output/{slot}: an output slot is odd"
        )));
    }
    let d = e.deployment().ok_or(Error::NoModel)?;
    match d.streams.rest.take(slot) {
        None => Err(Error::NoStream(format!(
            "no REST stream is attached to output slot {slot}"
        ))),
        Some(Taken::Record(bytes, content_type)) => Ok((
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            bytes,
        )
            .into_response()),
        Some(Taken::NothingYet) => Ok(StatusCode::ACCEPTED.into_response()),
        Some(Taken::Ended) => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}
