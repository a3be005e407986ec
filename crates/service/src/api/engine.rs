//! The engine's own routes: health, readiness, state, details, tags.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::{normalize_tags, STAGE_TAGS};
use crate::error::{Error, ErrorBody, Result};
use crate::store::JobState;
use crate::time::rfc3339;

use super::deployment::{deployment_view, DeploymentView};
use super::json_body;
use super::AppState;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub id: String,
    pub release: String,
    pub built_on: String,
}

/// The engine is up.
#[utoipa::path(get, path = "/1/health", tag = "engine",
    responses((status = 200, body = Health)))]
pub(super) async fn health(State(e): State<AppState>) -> Json<Health> {
    Json(Health {
        id: e.id.clone(),
        release: e.deps.release.clone(),
        built_on: e.deps.built_on.clone(),
    })
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// Whether the deployed model takes requests now.
    pub ready: bool,
    /// The deployed model's name, when one is deployed.
    pub model: Option<String>,
    /// Its warm workers, when ready.
    pub workers: Option<usize>,
    /// Why it is not ready (never the model's own messages: this route is open).
    pub reason: Option<String>,
}

/// Ready to score: 200 only while a deployed model is loaded and its workers are warm; 503
/// with the reason otherwise (no model, a deployment that failed, workers restarting or
/// not replaced, shutting down). For readiness probes; `/1/health` is liveness.
#[utoipa::path(get, path = "/ready", tag = "engine",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub(super) async fn ready(State(e): State<AppState>) -> (axum::http::StatusCode, Json<Readiness>) {
    match e.ready_deployment() {
        Ok(d) => (
            axum::http::StatusCode::OK,
            Json(Readiness {
                ready: true,
                model: Some(d.name.clone()),
                workers: Some(d.workers),
                reason: None,
            }),
        ),
        Err(not) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                ready: false,
                model: not.model,
                workers: None,
                reason: Some(not.reason.to_owned()),
            }),
        ),
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct StateView {
    /// INIT, RUNNING, FINISHING, FINISHED or ERROR.
    pub state: String,
}

/// The engine's state.
#[utoipa::path(get, path = "/2/engine/state", tag = "engine",
    responses((status = 200, body = StateView)))]
pub(super) async fn engine_state(State(e): State<AppState>) -> Json<StateView> {
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

/// The jobs in the history, by status.
pub(super) async fn job_counts(e: &crate::Engine) -> Result<JobCounts> {
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
    Ok(jobs)
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
    /// The streams attached to the deployed model: state (retrying, with why), counts, lag.
    pub streams: Vec<super::streams::StreamView>,
    pub jobs: JobCounts,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeploymentFailureView {
    pub name: String,
    pub at: String,
    pub reason: String,
    pub traceback: Option<String>,
}

pub(super) fn failure_view(f: &crate::deploy::DeployFailure) -> DeploymentFailureView {
    DeploymentFailureView {
        name: f.name.clone(),
        at: rfc3339(f.at_ms),
        reason: f.reason.clone(),
        traceback: f.traceback.clone(),
    }
}

/// The runtime's details: identity, tags, platforms, deployed model, endpoints, jobs.
#[utoipa::path(get, path = "/api/engine", tag = "engine",
    responses((status = 200, body = RuntimeDetails), (status = 500, body = ErrorBody)))]
pub(super) async fn engine_details(State(e): State<AppState>) -> Result<Json<RuntimeDetails>> {
    let jobs = job_counts(&e).await?;
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
        deployment_failure: e.deploy_failure().map(|f| failure_view(&f)),
        endpoints: e.endpoints.read().map(|v| v.clone()).unwrap_or_default(),
        streams: e
            .deployment()
            .map(|d| {
                d.streams
                    .list()
                    .into_iter()
                    .map(super::streams::stream_view)
                    .collect()
            })
            .unwrap_or_default(),
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
pub(super) async fn get_tags(State(e): State<AppState>) -> Json<Tags> {
    Json(Tags { tags: e.tags() })
}

/// Replaces the engine's tags (stage tags DEV, SIT, UAT, PROD are written in capitals).
#[utoipa::path(put, path = "/api/engine/tags", tag = "engine", request_body = Tags,
    responses((status = 200, body = Tags), (status = 400, body = ErrorBody)))]
pub(super) async fn put_tags(State(e): State<AppState>, body: Bytes) -> Result<Json<Tags>> {
    let t: Tags = json_body(&body)?;
    let tags = normalize_tags(t.tags.iter().map(String::as_str))
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    e.set_tags(tags.clone());
    Ok(Json(Tags { tags }))
}
