//! The deployed model's routes: deploy, view, undeploy, its log. What deploying does is
//! `crate::deploy`'s.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use runtime_core::Slot;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::deploy::Deployment;
use crate::document::DeploymentDocument;
use crate::error::{Error, ErrorBody, Result};
use crate::time::rfc3339;

use super::AppState;
use super::{log_view, LogView};

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
    /// The most records a worker takes in one batch (the deployment's own
    /// `scoreBatchMax`, else the engine's); a request's records are never split.
    pub score_batch_max: usize,
    /// How long a batch short of `scoreBatchMax` waits for more, in ms.
    pub score_batch_wait_ms: u64,
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
    /// The libraries of the model's own environment, built from its `requirements.txt`
    /// (`name==version`); empty when it runs on the platform's libraries (`platforms` of
    /// `/api/engine`).
    pub libraries: Vec<String>,
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

pub(super) fn deployment_view(d: &Deployment) -> DeploymentView {
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
        score_batch_max: d.batching.size,
        score_batch_wait_ms: d.batching.max_wait.map_or(0, |w| w.as_millis() as u64),
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
        libraries: d.libraries.clone(),
    }
}

/// The deployed model.
#[utoipa::path(get, path = "/api/deployment", tag = "deployment",
    responses((status = 200, body = DeploymentView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_deployment(State(e): State<AppState>) -> Result<Json<DeploymentView>> {
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
pub(super) async fn deploy(
    State(e): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<DeploymentView>)> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| Error::BadRequest("the deployment document is not UTF-8".into()))?
        .to_owned();
    let d = e.deploy(text).await?;
    Ok((StatusCode::CREATED, Json(deployment_view(&d))))
}

/// Undeploys the model: queued requests are answered, then its workers stop.
#[utoipa::path(delete, path = "/api/deployment", tag = "deployment",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn undeploy(State(e): State<AppState>) -> Result<StatusCode> {
    crate::deploy::undeploy(&e).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The deployed model (FastScore 1.10 path).
#[utoipa::path(get, path = "/2/active/model", tag = "deployment",
    responses((status = 200, body = DeploymentView), (status = 404, body = ErrorBody)))]
pub(super) async fn active_model(State(e): State<AppState>) -> Result<Json<DeploymentView>> {
    get_deployment(State(e)).await
}

/// Undeploys the model (FastScore 1.10 path).
#[utoipa::path(delete, path = "/2/active/model", tag = "deployment",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn active_model_delete(State(e): State<AppState>) -> Result<StatusCode> {
    crate::deploy::undeploy(&e).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The deployed model's latest log lines (its console, failed records, restarts).
#[utoipa::path(get, path = "/api/deployment/log", tag = "deployment",
    responses((status = 200, body = LogView), (status = 404, body = ErrorBody)))]
pub(super) async fn deployment_log(State(e): State<AppState>) -> Result<Json<LogView>> {
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
