//! Deploying, restoring and undeploying: a deployment document turned into a running
//! [`Deployment`] beside the one answering, which it replaces once initialized; the stored
//! document and the uploaded files it names kept in step, and the streams attached to it
//! stored beside the document and attached again when it is deployed again at start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use codecs::Encoding;
use endpoints::StreamDescriptor;
use runtime_core::{InitContext, JobLog, LogSource, SessionConfig, Slot};

use crate::deploy::streams::{self, StreamInfo};
use crate::deploy::{DeployError, DeployFailure, DeploySpec, Deployment};
use crate::document::DeploymentDocument;
use crate::error::Error;
use crate::joblog::RingLog;
use crate::Engine;

type Result<T> = std::result::Result<T, DeployError>;

/// Lines of a deployed model's log kept in memory.
const DEPLOY_LOG_LINES: usize = 2000;
/// The settings key of the deployed model's document, redeployed at start.
const DEPLOYMENT_KEY: &str = "deployment";
/// The settings key of the streams attached to the deployed model (`{"slot": descriptor}`),
/// attached again with it at start.
const STREAMS_KEY: &str = "deployment.streams";

/// Where uploaded deployments' files are kept (absolute: documents name them).
pub(crate) fn deployment_uploads_root(e: &Engine) -> Result<PathBuf> {
    std::path::absolute(e.config.data_dir.join("uploads").join("deployments"))
        .map_err(|err| Error::io("cannot resolve the data dir", err).into())
}

/// Removes the files of uploaded deployments no longer deployed: every folder the stored
/// deployment document does not name, but those of uploads under way.
pub(crate) async fn prune_deployment_uploads(e: &Engine) {
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

/// Deploys the model of `doc` (its text `text`, stored when `persist`) beside the one
/// answering, which it replaces once initialized; a model that cannot start leaves the old
/// one answering and is kept as the engine's `DeployFailure`.
pub(crate) async fn deploy_document(
    e: &Engine,
    text: String,
    doc: DeploymentDocument,
    persist: bool,
) -> Result<Arc<Deployment>> {
    if e.shutting_down() {
        return Err(DeployError::ShuttingDown);
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
        let slot: u32 = key.parse().map_err(|_| {
            DeployError::Refused(format!("encodings: '{key}' is not a slot number"))
        })?;
        encodings.insert(slot, doc.encoding_of(slot)?);
    }
    let language = model.language.unwrap_or(runtime_core::Language::Python);
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let limits = e.config.limits.for_deployment(&raw)?;
    let batching = e.config.deployment_batching(&raw)?;
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
        batching,
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
        // The streams of the model replaced are detached with it.
        e.store().set_setting(STREAMS_KEY, None).await?;
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
    batching: jobs::Batching,
    log: Arc<RingLog>,
}

/// Prepares a model's folder and starts its workers (init runs now); on failure nothing of
/// it is left.
async fn start_deployment(
    e: &Engine,
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
        batching,
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
        let registry = e.streams_registry.clone();
        tokio::task::spawn_blocking(move || {
            let prepared = crate::prepare::prepare_model(&model, &dir, log.as_ref(), &registry)?;
            let (schemas, warnings) = schema::resolve_checked_schemas(
                &prepared.materialized.work_dir,
                &prepared.comments,
                need_inputs,
                need_outputs,
            )
            .map_err(|err| DeployError::Refused(format!("the model's schemas: {err}")))?;
            for w in warnings {
                log.warn(LogSource::Engine, w);
            }
            let codecs = crate::deploy::message_codecs(&encodings, &schemas)?;
            Ok::<_, DeployError>((
                prepared,
                schemas.clone().switched(check_inputs, check_outputs),
                schemas,
                codecs,
            ))
        })
        .await
        .map_err(|e| Error::Store(format!("deployment preparation failed: {e}")))?
    };
    let (prepared, schemas, codec_schemas, codecs) = match prepared {
        Ok(p) => p,
        Err(err) => {
            remove_dir(dir).await;
            return Err(err);
        }
    };
    // The same preparation as a batch job's, by the model's runner (a Python model's
    // requirements installed).
    let mut prepared = prepared;
    let job_log: Arc<dyn runtime_core::JobLog> = log.clone();
    let environment = match runner
        .prepare(
            &prepared.spec,
            &runtime_core::PrepareOptions::default(),
            &job_log,
        )
        .await
    {
        Ok(ready) => {
            prepared.spec = ready.model;
            ready.guard
        }
        Err(err) => {
            remove_dir(dir).await;
            return Err(DeployError::Refused(err.to_string()));
        }
    };
    // The libraries of its own environment (the site-packages its runner put first on its
    // import path), listed once, off the async threads.
    let libraries = if environment.is_some() {
        let paths = prepared.spec.import_paths.clone();
        tokio::task::spawn_blocking(move || {
            paths
                .first()
                .map(|p| environments::installed_libraries(p))
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default()
    } else {
        Vec::new()
    };
    let spec = DeploySpec {
        id,
        name: model.name.clone(),
        document: text.to_owned(),
        model: prepared.spec,
        source_name: model.source_name.clone(),
        codecs,
        schemas,
        codec_schemas,
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
        batching,
        workers: e.config.score_workers,
        environment,
        limits,
        limits_enforced,
        restart: e.config.limits.restart_policy(),
        observer: Some(e.metrics.batches("deployment")),
        libraries,
    };
    if spec.model.entry_points.score.is_none() {
        remove_dir(dir).await;
        return Err(DeployError::Refused(
            "the model has no score function: mark one with '# modelop.score' or name it with scoreFunction".into(),
        ));
    }
    match Deployment::start(spec, runner, log).await {
        Ok(d) => Ok(d),
        Err(err) => {
            remove_dir(dir).await;
            Err(match err {
                Error::Core(model) => DeployError::Model(model),
                other => other.into(),
            })
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
pub async fn restore_deployment(e: &Engine) {
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
        Ok(d) => {
            tracing::info!("model {} deployed again", d.name);
            restore_streams(e, &d).await;
        }
        Err(err) => tracing::error!("cannot deploy the last deployed model again: {err}"),
    }
}

/// Attaches again, at start, the streams that were attached to the model deployed again;
/// one that cannot be (its file gone, its path no longer allowed) is logged and left out.
async fn restore_streams(e: &Engine, d: &Arc<Deployment>) {
    let stored = match e.store().setting(STREAMS_KEY).await {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!("cannot read the last deployment's streams: {err}");
            return;
        }
    };
    let mut stored: Vec<(u32, serde_json::Value)> = match serde_json::from_str::<
        BTreeMap<u32, serde_json::Value>,
    >(&stored)
    {
        Ok(stored) => stored.into_iter().collect(),
        Err(err) => {
            // Kept as stored (not overwritten), for whoever looks into it.
            d.log.error(
                    LogSource::Engine,
                    format!(
                        "the deployment's stored streams cannot be read ({err}): none was attached again; attach them again"
                    ),
                );
            return;
        }
    };
    // Outputs first, so nothing an input yields finds its output missing.
    stored.sort_by_key(|(slot, _)| Slot(*slot).is_input());
    for (slot, descriptor) in stored {
        let slot = Slot(slot);
        let attached = async {
            let descriptor = StreamDescriptor::from_json(&descriptor)?;
            let descriptor = checked_stream(e, descriptor, slot).await?;
            streams::attach(d, slot, descriptor, &e.streams_registry).await
        };
        if let Err(err) = attached.await {
            d.log.error(
                LogSource::Engine,
                format!("the stream on slot {slot} could not be attached again: {err}"),
            );
        }
    }
    if let Err(err) = persist_streams(e, d).await {
        tracing::warn!("cannot store the deployment's streams: {err}");
    }
}

/// `descriptor` checked for `slot` as every stream is before it is attached (a dry run
/// included): fit for the slot's direction, and the local paths it names under
/// `allowedPaths` (on the blocking pool).
pub(crate) async fn checked_stream(
    e: &Engine,
    descriptor: StreamDescriptor,
    slot: Slot,
) -> std::result::Result<StreamDescriptor, Error> {
    streams::check_descriptor(&descriptor, slot)?;
    let policy = e.paths.clone();
    tokio::task::spawn_blocking(move || {
        crate::paths::check_stream(&policy, &descriptor, slot).map(|()| descriptor)
    })
    .await
    .map_err(|e| Error::Store(format!("checking the stream's paths failed: {e}")))?
}

/// Attaches `descriptor` to `slot` of the deployed model (a stream there already is
/// drained and replaced) and stores the deployment's streams.
pub(crate) async fn attach_stream(
    e: &Engine,
    slot: Slot,
    descriptor: StreamDescriptor,
) -> std::result::Result<StreamInfo, Error> {
    let descriptor = checked_stream(e, descriptor, slot).await?;
    let _serial = e.deploying.lock().await;
    let d = e.deployment().ok_or(Error::NoDeployment)?;
    let info = streams::attach(&d, slot, descriptor, &e.streams_registry).await?;
    persist_streams(e, &d).await?;
    Ok(info)
}

/// Detaches the stream on `slot` of the deployed model, draining it.
pub(crate) async fn detach_stream(e: &Engine, slot: Slot) -> std::result::Result<(), Error> {
    let _serial = e.deploying.lock().await;
    let d = e.deployment().ok_or(Error::NoDeployment)?;
    if !d.streams.detach(slot).await {
        return Err(Error::NotFound(format!("a stream on slot {slot}")));
    }
    persist_streams(e, &d).await
}

/// Stores the descriptors of `d`'s streams (defaulted, secrets as their references).
async fn persist_streams(e: &Engine, d: &Deployment) -> std::result::Result<(), Error> {
    let all: serde_json::Map<String, serde_json::Value> = d
        .streams
        .descriptors()
        .into_iter()
        .map(|(slot, descriptor)| (slot.to_string(), descriptor.to_json()))
        .collect();
    let value = (!all.is_empty()).then(|| serde_json::Value::Object(all).to_string());
    e.store().set_setting(STREAMS_KEY, value).await
}

/// Undeploys the model: queued requests are answered, then its workers stop; the stored
/// document and its uploaded files go. With none deployed, forgets a failed deployment.
pub(crate) async fn undeploy(e: &Engine) -> Result<()> {
    let _serial = e.deploying.lock().await;
    let failed = e.deploy_failure().is_some();
    e.set_deploy_failure(None);
    let Some(d) = take_deployment(e) else {
        if failed {
            // Nothing answers, but a model was asked for: forget it (and its document, so
            // a restart does not try it again).
            e.store().set_setting(DEPLOYMENT_KEY, None).await?;
            e.store().set_setting(STREAMS_KEY, None).await?;
            return Ok(());
        }
        return Err(DeployError::NoDeployment);
    };
    e.store().set_setting(DEPLOYMENT_KEY, None).await?;
    e.store().set_setting(STREAMS_KEY, None).await?;
    d.stop(crate::deploy::CLOSE_GRACE).await;
    remove_dir(d.dir.clone()).await;
    // The stored document names no upload now: its files go too.
    prune_deployment_uploads(e).await;
    Ok(())
}
