//! What watching the engine asks: Prometheus metrics (`/metrics`) and the dashboard's live
//! stream (`/api/live`). The figures are `crate::metrics`'.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ErrorBody, Result};
use crate::metrics::{Resources, Sample};
use crate::time::rfc3339;
use crate::Engine;

use super::deployment::{deployment_view, DeploymentView};
use super::engine::{job_counts, JobCounts};
use super::jobs::{job_view_live, JobView};
use super::streams::{stream_view, StreamView};
use super::AppState;

/// The metrics in Prometheus' text exposition (OpenMetrics 1.0): records per slot and
/// stream, request and batch histograms, jobs, workers, CPU and memory
/// (docs/observability.md names each).
#[utoipa::path(get, path = "/metrics", tag = "engine",
    responses((status = 200, content_type = "application/openmetrics-text", body = String),
        (status = 401, body = ErrorBody)))]
pub(super) async fn metrics(State(e): State<AppState>) -> Response {
    let body = e.metrics.render(&e).await;
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// Times every request a router answers, by its route's pattern (the `route` label stays
/// bounded: `unmatched` for paths no route has).
pub(super) async fn observe(State(e): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let route = route.as_deref().unwrap_or("unmatched");
    let scoring = route.contains("/roundtrip/") || route.ends_with("/infer");
    e.metrics.request(
        route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
        scoring,
    );
    response
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveEngine {
    /// INIT, RUNNING, FINISHING, FINISHED or ERROR.
    pub state: String,
    pub uptime_seconds: i64,
    pub tags: Vec<String>,
    /// The latest deployment that could not start (as in `/api/engine`).
    pub deployment_failure: Option<super::engine::DeploymentFailureView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveJobs {
    pub counts: JobCounts,
    /// RUNNING then WAITING jobs, with their progress.
    pub active: Vec<JobView>,
}

/// One `live` event of `/api/live`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveView {
    pub at: String,
    pub engine: LiveEngine,
    /// The newest sample (none in the engine's first second).
    pub sample: Option<Sample>,
    pub resources: Resources,
    pub deployment: Option<DeploymentView>,
    pub streams: Vec<StreamView>,
    pub jobs: LiveJobs,
}

/// The `history` event of `/api/live`.
#[derive(Serialize, ToSchema)]
pub struct HistoryView {
    /// Oldest first: one a second, the last 15 minutes.
    pub samples: Vec<Sample>,
}

/// How many waiting jobs a live event lists.
const WAITING_LISTED: i64 = 20;

async fn live_view(e: &Engine) -> Result<LiveView> {
    let (sample, resources) = e.metrics.latest();
    let mut active = Vec::new();
    for (state, limit) in [
        (crate::store::JobState::Running, 5),
        (crate::store::JobState::Waiting, WAITING_LISTED),
    ] {
        for row in e.store().list(Some(state), limit).await? {
            active.push(job_view_live(e, &row));
        }
    }
    let deployment = e.deployment();
    Ok(LiveView {
        at: rfc3339(crate::time::now_ms()),
        engine: LiveEngine {
            state: e.state().as_str().to_owned(),
            uptime_seconds: (crate::time::now_ms() - e.started_ms) / 1000,
            tags: e.tags(),
            deployment_failure: e.deploy_failure().map(|f| super::engine::failure_view(&f)),
        },
        sample,
        resources,
        streams: deployment
            .as_ref()
            .map(|d| d.streams.list().into_iter().map(stream_view).collect())
            .unwrap_or_default(),
        deployment: deployment.as_deref().map(deployment_view),
        jobs: LiveJobs {
            counts: job_counts(e).await?,
            active,
        },
    })
}

fn event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
}

/// Server-sent events for the dashboard: first `history` (the last 15 minutes of samples),
/// then `live` every second (the newest sample; CPU and memory of the engine and its
/// workers; the deployed model, its streams and their counts; job counts and the active
/// jobs' progress). The stream ends when the engine shuts down.
#[utoipa::path(get, path = "/api/live", tag = "engine",
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "events `history` (HistoryView) then `live` (LiveView) every second"),
        (status = 401, body = ErrorBody)))]
pub(super) async fn live(
    State(e): State<AppState>,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let first = event(
        "history",
        &HistoryView {
            samples: e.metrics.history(),
        },
    );
    let mut tick = tokio::time::interval(crate::metrics::SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream =
        futures_util::stream::unfold((e, tick, Some(first)), |(e, mut tick, first)| async move {
            if let Some(first) = first {
                return Some((Ok(first), (e, tick, None)));
            }
            tick.tick().await;
            if e.shutting_down() {
                return None;
            }
            let ev = match live_view(&e).await {
                Ok(v) => event("live", &v),
                Err(err) => Event::default().event("error").data(err.to_string()),
            };
            Some((Ok(ev), (e, tick, None)))
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
