//! Scoring a record with the deployed model (`/api/roundtrip`, `/2/active/model/roundtrip`):
//! the handlers hand the body to `Deployment::score_message`, the one chain.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use runtime_core::Slot;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{Error, Result};
use crate::Engine;

use super::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RoundtripQuery {
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
pub(super) async fn roundtrip(
    State(e): State<AppState>,
    path: std::result::Result<Path<(u32, u32)>, PathRejection>,
    q: std::result::Result<Query<RoundtripQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Response> {
    let (input, output, timeout) = roundtrip_params(path, q)?;
    score_body(&e, input, output, timeout, &body).await
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
pub(super) async fn roundtrip_v2(
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
