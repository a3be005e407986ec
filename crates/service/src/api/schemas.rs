//! Avro schemas compiled and records checked against them (`/2/active/schema/verify`).

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use codecs::{CodecConfig, Encoding};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, ErrorBody, Result};

use super::AppState;

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
pub(super) async fn verify_schema(
    State(e): State<AppState>,
    body: Bytes,
) -> Result<Json<SchemaId>> {
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
pub(super) async fn verify_record(
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
