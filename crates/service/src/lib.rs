//! The engine service: `engine serve`'s library.
//!
//! - [`config`]: `application.json`, environment and flags, later winning.
//! - [`datadir`]: the data folder, made absolute and locked for the engine's life.
//! - [`store`]: the job queue and history in SQLite under the data folder.
//! - [`queue`]: jobs run one at a time through `jobs::run_job`.
//! - [`deploy`]: a deployed model's warm workers behind a bounded request queue.
//! - [`api`]: the HTTP routes, their OpenAPI document, and [`error`]'s one mapping of
//!   errors to statuses.
//! - [`auth`]: bearer tokens and the loopback check, one policy per port.
//! - [`tls`]: HTTPS on both ports, the certificate reloadable without closing them.
//!
//! It reads no environment and installs no logger: the binary hands it the configuration,
//! the language runners and the platform facts.
//!
//! A host program embeds the engine through [`Engine`] (docs/embedding.md; the
//! `examples/embed` crate is a complete host):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use service::{Config, Deps, Engine, EngineState, RunnerSet};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let folder = tempfile::tempdir()?;
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     // One engine per data folder: the lock is held while the engine lives.
//!     let data_dir = service::datadir::DataDir::acquire(folder.path())?;
//!     let config = Config { data_dir: data_dir.path().to_owned(), ..Config::default() };
//!     let deps = Deps {
//!         // A host running Python models adds runner_python::PythonRunner here.
//!         runners: RunnerSet::new(),
//!         environments: None,
//!         platforms: Arc::new(Vec::new),
//!         release: "1.0.0".to_owned(),
//!         built_on: "unknown".to_owned(),
//!         registry: endpoints::Registry::default(),
//!         spark: None,
//!     };
//!     let engine = Engine::open(config, deps).await?;
//!     // The control API under a prefix of the host's router; the host serves it.
//!     let _app: axum::Router = axum::Router::new().nest("/engine", engine.control_router());
//!     let queue = tokio::spawn(engine.run_queue());
//!
//!     engine.shutdown(Duration::from_secs(5)).await;
//!     assert_eq!(engine.state(), EngineState::Finished);
//!     queue.await?;
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })
//! # }
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod auth;
pub mod config;
pub mod datadir;
pub mod deploy;
pub mod document;
pub mod error;
mod joblog;
pub mod metrics;
pub mod paths;
mod prepare;
pub mod queue;
pub mod retention;
pub mod store;
mod time;
pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use runtime_core::{Language, Runner};
use serde::{Deserialize, Serialize};

pub use config::Config;
pub use error::{Error, Result};

/// Builds a language's runner whose workers are held to the given limits.
pub type LimitedRunner = Arc<dyn Fn(worker::WorkerLimits) -> Arc<dyn Runner> + Send + Sync>;

/// The language runners the engine has, given by the binary.
#[derive(Clone, Default)]
pub struct RunnerSet {
    runners: Vec<(Language, Arc<dyn Runner>)>,
    /// Languages whose runners can hold workers to limits.
    limited: Vec<(Language, LimitedRunner)>,
}

impl RunnerSet {
    /// A set with no runner: every model is refused until one is added.
    pub fn new() -> Self {
        RunnerSet::default()
    }

    /// Runs `language`'s models with `runner`, replacing the one it had.
    pub fn with(mut self, language: Language, runner: Arc<dyn Runner>) -> Self {
        self.runners.retain(|(l, _)| *l != language);
        self.runners.push((language, runner));
        self
    }

    /// The runner of `language`'s models; an error naming the language when there is none.
    pub fn get(&self, language: Language) -> Result<Arc<dyn Runner>> {
        self.runners
            .iter()
            .find(|(l, _)| *l == language)
            .map(|(_, r)| r.clone())
            .ok_or_else(|| Error::BadRequest(format!("this engine cannot run {language} models")))
    }

    /// Says how to build `language`'s runner with worker limits.
    pub fn with_limits(mut self, language: Language, make: LimitedRunner) -> Self {
        self.limited.retain(|(l, _)| *l != language);
        self.limited.push((language, make));
        self
    }

    /// The runner for `language` with its workers held to `limits`, and whether they are
    /// (a language whose runner cannot enforce limits runs without them).
    pub fn limited(
        &self,
        language: Language,
        limits: worker::WorkerLimits,
    ) -> Result<(Arc<dyn Runner>, bool)> {
        if limits.is_none() {
            return Ok((self.get(language)?, false));
        }
        match self.limited.iter().find(|(l, _)| *l == language) {
            Some((_, make)) => Ok((make(limits), true)),
            None => Ok((self.get(language)?, false)),
        }
    }

    /// The languages this set runs, in the order they were added.
    pub fn languages(&self) -> Vec<Language> {
        self.runners.iter().map(|(l, _)| *l).collect()
    }
}

/// A language platform the engine runs models on, and its installed libraries.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Platform {
    /// The language's name (`python`, `r`).
    pub language: String,
    /// The interpreter's version.
    pub version: String,
    /// The interpreter's path, when known.
    pub executable: Option<String>,
    /// Installed libraries as `name==version`.
    pub libraries: Vec<String>,
}

/// Finds the platforms' facts; called once, off the async threads.
pub type PlatformProbe = Arc<dyn Fn() -> Vec<Platform> + Send + Sync>;

/// What the binary gives the service besides its configuration.
#[derive(Clone)]
pub struct Deps {
    /// A runner per language the engine runs models of.
    pub runners: RunnerSet,
    /// Where Python models' requirements are installed; `None`: models with requirements
    /// fail.
    pub environments: Option<Arc<environments::EnvironmentCache>>,
    /// Lists the language platforms for `/api/engine`.
    pub platforms: PlatformProbe,
    /// The engine's version.
    pub release: String,
    /// When the engine was built (RFC 3339, or what the build knows).
    pub built_on: String,
    /// The transports the engine opens: [`endpoints::Registry::default`] (files, inline,
    /// discard) and those the host registers (Kafka, its own plugins). The engine adds the
    /// configured credentials, and REST for deployed models.
    pub registry: endpoints::Registry,
    /// Runs batch jobs on Spark (`"runtime": "spark"`); `None`: such jobs are refused.
    pub spark: Option<engine_spark::Spark>,
}

/// Why the engine takes no scoring requests now ([`Engine::ready_deployment`]); never the
/// model's own messages (the probes answering it are open).
#[derive(Clone, Debug)]
pub struct NotReady {
    /// The deployed model's name, when one is deployed.
    pub model: Option<String>,
    pub reason: &'static str,
}

/// The engine's state, as the reference names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EngineState {
    /// Idle: no model deployed, no job running.
    Init = 0,
    /// A model is deployed or a job runs.
    Running = 1,
    /// Shutting down: no new work is taken.
    Finishing = 2,
    /// Shut down.
    Finished = 3,
    /// The deployed model failed, or the last one asked for could not start.
    Error = 4,
}

impl EngineState {
    /// The reference's name of the state (`RUNNING`).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineState::Init => "INIT",
            EngineState::Running => "RUNNING",
            EngineState::Finishing => "FINISHING",
            EngineState::Finished => "FINISHED",
            EngineState::Error => "ERROR",
        }
    }
}

/// The engine: its configuration, runners, job queue and deployed model, shared by its
/// routes and by a host embedding it (docs/embedding.md). Built by [`Engine::open`].
pub struct Engine {
    /// The configuration it was opened with.
    pub config: Config,
    /// The runners and facts the host gave it.
    pub deps: Deps,
    /// The job queue and history ([`Engine::run_queue`] runs it).
    pub queue: Arc<queue::JobQueue>,
    /// When it was opened (ms since the epoch).
    pub started_ms: i64,
    /// A fresh id per engine opened, for `/api/engine`.
    pub id: String,
    tags: RwLock<Vec<String>>,
    deployment: RwLock<Option<Arc<deploy::Deployment>>>,
    /// The latest deployment that failed to start, until one starts or the model is
    /// undeployed.
    deploy_failure: RwLock<Option<Arc<deploy::DeployFailure>>>,
    /// Serializes deploy/undeploy.
    deploying: tokio::sync::Mutex<()>,
    lifecycle: AtomicU8,
    /// Whether `run_queue` was called: the queue runs once.
    queue_started: AtomicBool,
    platforms: tokio::sync::OnceCell<Vec<Platform>>,
    /// The addresses `/api/engine` lists ([`Engine::set_endpoints`]).
    pub endpoints: RwLock<Vec<String>>,
    /// Schemas compiled by `POST /2/active/schema/verify`, by id (the latest
    /// `VERIFIED_SCHEMAS_KEPT` are kept).
    verified_schemas: Mutex<(u64, BTreeMap<u64, schema::Checker>)>,
    /// Uploads being received (`maxConcurrentUploads`).
    pub uploads: tokio::sync::Semaphore,
    /// Folders of deployment uploads under way (kept when old uploads are removed).
    deployment_uploads: Mutex<std::collections::HashSet<std::path::PathBuf>>,
    /// The roots local paths of documents must lie under (`allowedPaths`), built once.
    pub paths: Arc<paths::PathPolicy>,
    /// Opens the streams attached to the deployed model (the configured `credentials`
    /// handed to their endpoints); REST is added per stream, bound to its slot.
    streams_registry: endpoints::Registry,
    /// Its metrics (`/metrics`) and the dashboard's samples (`/api/live`).
    pub metrics: Arc<metrics::Metrics>,
}

/// How many verified schemas the engine keeps for `/2/active/schema/verify/{id}`.
pub const VERIFIED_SCHEMAS_KEPT: usize = 256;

impl Engine {
    /// Keeps a compiled schema and returns its id.
    pub fn keep_schema(&self, checker: schema::Checker) -> u64 {
        let Ok(mut g) = self.verified_schemas.lock() else {
            return 0;
        };
        let (next, map) = &mut *g;
        *next += 1;
        map.insert(*next, checker);
        while map.len() > VERIFIED_SCHEMAS_KEPT {
            map.pop_first();
        }
        *next
    }

    /// A schema kept by [`Engine::keep_schema`], while it is among the latest kept.
    pub fn verified_schema(&self, id: u64) -> Option<schema::Checker> {
        self.verified_schemas
            .lock()
            .ok()
            .and_then(|g| g.1.get(&id).cloned())
    }

    /// The job store (SQLite under the data folder).
    pub fn store(&self) -> &store::Store {
        self.queue.store()
    }

    /// The engine's tags (`/api/engine`).
    pub fn tags(&self) -> Vec<String> {
        self.tags.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Replaces the engine's tags.
    pub fn set_tags(&self, tags: Vec<String>) {
        if let Ok(mut t) = self.tags.write() {
            *t = tags;
        }
    }

    /// The deployed model answering requests, if any.
    pub fn deployment(&self) -> Option<Arc<deploy::Deployment>> {
        self.deployment.read().ok().and_then(|d| d.clone())
    }

    /// Why the latest deployment asked for could not start, until one starts or the model
    /// is undeployed.
    pub fn deploy_failure(&self) -> Option<Arc<deploy::DeployFailure>> {
        self.deploy_failure.read().ok().and_then(|f| f.clone())
    }

    fn set_deploy_failure(&self, failure: Option<Arc<deploy::DeployFailure>>) {
        if let Ok(mut f) = self.deploy_failure.write() {
            *f = failure;
        }
    }

    /// The deployed model when it takes requests now (loaded, its workers warm, the
    /// engine not stopping); otherwise why not. What `/ready` and the V2 probes answer.
    pub fn ready_deployment(&self) -> std::result::Result<Arc<deploy::Deployment>, NotReady> {
        use deploy::WorkerState;
        let not = |model: Option<String>, reason: &'static str| NotReady { model, reason };
        if self.shutting_down() {
            return Err(not(None, "the engine is shutting down"));
        }
        let Some(d) = self.deployment() else {
            return Err(not(
                None,
                if self.deploy_failure().is_some() {
                    "no model is deployed: the latest deployment could not start (see /api/engine)"
                } else {
                    "no model is deployed"
                },
            ));
        };
        let reason = match d.stats().state {
            WorkerState::Ready => return Ok(d),
            WorkerState::Restarting(_) => "the deployed model's worker is being restarted",
            WorkerState::Failed(_) => {
                "the deployed model's worker cannot be started or replaced (see /api/deployment/log)"
            }
            WorkerState::Stopped => "the deployed model is being undeployed",
        };
        Err(not(Some(d.name.clone()), reason))
    }

    /// Whether [`Engine::shutdown`] was called.
    pub fn shutting_down(&self) -> bool {
        self.lifecycle.load(Ordering::Relaxed) >= EngineState::Finishing as u8
    }

    /// The engine's state, as `/api/engine` reports it.
    pub fn state(&self) -> EngineState {
        match self.lifecycle.load(Ordering::Relaxed) {
            2 => return EngineState::Finishing,
            3 => return EngineState::Finished,
            _ => {}
        }
        match self.deployment() {
            Some(d) => match d.stats().state {
                deploy::WorkerState::Failed(_) => EngineState::Error,
                _ => EngineState::Running,
            },
            None if self.queue.running_id().is_some() => EngineState::Running,
            // A model was asked for and could not start: not idle, broken.
            None if self.deploy_failure().is_some() => EngineState::Error,
            None => EngineState::Init,
        }
    }

    /// Opens the engine on `config.data_dir` (absolute, and held by one engine: see
    /// [`datadir::DataDir`]): the job store is opened on the blocking pool, jobs that were
    /// running when the last engine stopped are marked interrupted, the retention policy is
    /// applied, the job queue is built, and the model that was deployed is deployed again.
    /// Nothing listens and no job runs yet: the host mounts [`Engine::control_router`] (and
    /// [`Engine::scoring_router`]) on its own listener and spawns [`Engine::run_queue`].
    pub async fn open(config: Config, deps: Deps) -> Result<Arc<Engine>> {
        let store = {
            let dir = config.data_dir.clone();
            tokio::task::spawn_blocking(move || store::Store::open(&dir))
                .await
                .map_err(|e| Error::Store(format!("opening the job store failed: {e}")))??
        };
        let interrupted = store.recover(time::now_ms()).await?;
        for id in &interrupted {
            tracing::warn!("job {id} was running when the engine stopped; marked interrupted");
        }
        retention::apply_logged(
            &store,
            &config.data_dir,
            config.job_retention,
            time::now_ms(),
        )
        .await;
        let metrics = Arc::new(metrics::Metrics::default());
        let queue = Arc::new(
            queue::JobQueue::new(
                store,
                deps.runners.clone(),
                deps.environments.clone(),
                config.data_dir.clone(),
                config.job_batching(),
            )
            .with_retention(config.job_retention)
            .with_limits(config.limits)
            .with_spark(deps.spark.clone())
            .with_metrics(metrics.clone())
            .with_registry(
                deps.registry
                    .clone()
                    .with_credentials(config.credentials.clone()),
            ),
        );
        let uploads = tokio::sync::Semaphore::new(config.max_concurrent_uploads);
        let engine = Arc::new(Engine {
            id: uuid::Uuid::new_v4().to_string(),
            tags: RwLock::new(config.tags.clone()),
            paths: Arc::new(config.path_policy()),
            streams_registry: deps
                .registry
                .clone()
                .with_credentials(config.credentials.clone())
                .following(),
            config,
            deps,
            queue,
            started_ms: time::now_ms(),
            deployment: RwLock::new(None),
            deploy_failure: RwLock::new(None),
            deploying: tokio::sync::Mutex::new(()),
            lifecycle: AtomicU8::new(EngineState::Init as u8),
            queue_started: AtomicBool::new(false),
            platforms: tokio::sync::OnceCell::new(),
            endpoints: RwLock::new(Vec::new()),
            verified_schemas: Mutex::new((0, BTreeMap::new())),
            uploads,
            deployment_uploads: Mutex::new(std::collections::HashSet::new()),
            metrics,
        });
        deploy::restore_deployment(&engine).await;
        Ok(engine)
    }

    /// The control API (jobs, deployment, scoring, engine state, `/openapi.json`), with
    /// the control port's policy: `authToken`, or loopback Host and Origin only without
    /// one (`bind` says whether the listener is loopback). It can be nested under a prefix
    /// (`Router::nest("/engine", ...)`); paths are then the API's paths under it.
    pub fn control_router(self: &Arc<Self>) -> axum::Router {
        api::control_router(self.clone())
    }

    /// The scoring routes alone, with the scoring port's policy (`scoringAuthToken`,
    /// `scoringOpen`), for a listener of their own.
    pub fn scoring_router(self: &Arc<Self>) -> axum::Router {
        api::scoring_router(self.clone())
    }

    /// The Open Inference Protocol's gRPC service for the deployed model, with the
    /// scoring port's policy, for a listener of its own (served over HTTP/2).
    pub fn grpc_router(self: &Arc<Self>) -> axum::Router {
        api::grpc_router(self.clone())
    }

    /// The engine's background work: the job queue, which runs submitted jobs one at a
    /// time until [`Engine::shutdown`], and the sampler taking the dashboard's figures once
    /// a second (`/api/live`). The host spawns it once (a second call, or one after the
    /// shutdown began, returns at once); until it runs, jobs wait.
    pub fn run_queue(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let first = !self.queue_started.swap(true, Ordering::SeqCst) && !self.shutting_down();
        let queue = self.queue.clone();
        // The sampler holds the engine weakly: it ends once the engine is dropped, or when
        // the queue returns.
        let engine = Arc::downgrade(self);
        async move {
            if !first {
                tracing::warn!("the job queue runs already, or the engine is stopping");
                return;
            }
            let sampler = async move {
                let mut tick = tokio::time::interval(metrics::SAMPLE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(e) = engine.upgrade() else { break };
                    // /proc is read: on the blocking pool.
                    let sampled = e.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || sampled.metrics.sample(&sampled)).await;
                }
            };
            tokio::select! {
                _ = queue.run() => {}
                _ = sampler => {}
            }
        }
    }

    /// Deploys the model a deployment document describes (the body `PUT /api/deployment`
    /// takes: `docs/service.md`), as that route does: the `file:` paths it names are checked
    /// against `allowedPaths`, the new model starts beside the one answering and replaces
    /// it once initialized, and the document is stored so the model is deployed again when
    /// the engine reopens. The deployment answers through [`deploy::Deployment::score_message`],
    /// in-process, as well as on the routers.
    pub async fn deploy(&self, document: String) -> Result<Arc<deploy::Deployment>> {
        let doc: document::DeploymentDocument = serde_json::from_str(&document)
            .map_err(|e| Error::BadRequest(format!("invalid deployment document: {e}")))?;
        // Paths are resolved against the file system: on the blocking pool.
        let doc = {
            let policy = self.paths.clone();
            tokio::task::spawn_blocking(move || {
                paths::check_deployment(&policy, &doc).map(|()| doc)
            })
            .await
            .map_err(|e| Error::Store(format!("checking the deployment's paths failed: {e}")))??
        };
        let d = deploy::deploy_document(self, document, doc, true).await?;
        deploy::prune_deployment_uploads(self).await;
        Ok(d)
    }

    /// The addresses `/api/engine` lists (`https://host:port`), which only the host knows.
    pub fn set_endpoints(&self, endpoints: Vec<String>) {
        if let Ok(mut e) = self.endpoints.write() {
            *e = endpoints;
        }
    }

    /// Stops the engine within `grace`. From the call on it takes no new work (state
    /// FINISHING: no job starts, scoring and deploy requests are refused); the running job
    /// and the deployed model get the grace less a margin, kept for the host to answer what
    /// is left; then the job is stopped (marked interrupted, it can be re-run) and the
    /// workers reaped. [`Engine::run_queue`] returns.
    pub fn shutdown(
        self: &Arc<Self>,
        grace: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.lifecycle
            .store(EngineState::Finishing as u8, Ordering::Relaxed);
        let engine = self.clone();
        async move {
            let margin = (grace / 5).min(SHUTDOWN_MARGIN);
            let queue_stop = async {
                // A queue never run has no job to wait for.
                if engine.queue_started.load(Ordering::SeqCst) {
                    engine.queue.shutdown(grace - margin).await;
                }
            };
            let deployment_stop = async {
                if let Some(d) = engine.deployment() {
                    d.stop(grace - margin).await;
                }
            };
            tokio::join!(queue_stop, deployment_stop);
            let _ = deploy::take_deployment(&engine);
            engine
                .lifecycle
                .store(EngineState::Finished as u8, Ordering::Relaxed);
        }
    }

    /// The language platforms ([`Deps::platforms`], probed once, on the blocking pool).
    pub async fn platforms(&self) -> Vec<Platform> {
        self.platforms
            .get_or_init(|| async {
                let probe = self.deps.platforms.clone();
                tokio::task::spawn_blocking(move || probe())
                    .await
                    .unwrap_or_default()
            })
            .await
            .clone()
    }
}

/// The part of the shutdown grace kept for answering what is left and reaping workers.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);

/// Where the service listens, once bound.
#[derive(Clone, Debug)]
pub struct Bound {
    /// The control port's address.
    pub control: SocketAddr,
    /// The scoring port's address, when it has one of its own.
    pub scoring: Option<SocketAddr>,
    /// The gRPC port's address, when `grpcPort` is set.
    pub grpc: Option<SocketAddr>,
    /// Set when the ports speak HTTPS: reloads the certificate and key from their files.
    pub tls: Option<tls::TlsReloader>,
}

impl Bound {
    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true.
fn spawn_server<L>(
    listener: L,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    })
}

/// `engine serve`: the engine on its own ports until `shutdown` resolves, then a graceful
/// stop (no new work; the running job and in-flight requests get the configured grace;
/// workers are stopped). Built on what a host program embedding the engine uses
/// ([`Engine::open`], the routers, [`Engine::run_queue`], [`Engine::shutdown`]), adding only
/// the listeners, TLS and the listening log line. `on_bound` is told where the service
/// listens once it does.
pub async fn serve(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(Bound) + Send,
) -> Result<()> {
    // The certificate and the key are files: read on the blocking pool.
    let tls = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || config.tls())
            .await
            .map_err(|e| Error::Store(format!("reading the TLS files failed: {e}")))??
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (control, control_addr) =
        listen(config.bind, config.port, "port, --port or MODELOP_API_PORT").await?;
    let (scoring, scoring_addr) = match config.scoring_port {
        Some(port) => {
            let (l, a) = listen(config.bind, port, "scoringPort, --scoring-port").await?;
            (Some(l), Some(a))
        }
        None => (None, None),
    };
    let (grpc, grpc_addr) = match config.grpc_port {
        Some(port) => {
            let (l, a) = listen(config.bind, port, "grpcPort, --grpc-port").await?;
            (Some(l), Some(a))
        }
        None => (None, None),
    };
    let engine = Engine::open(config, deps).await?;
    let mut endpoints = vec![format!("{scheme}://{control_addr}")];
    if let Some(a) = scoring_addr {
        endpoints.push(format!("{scheme}://{a} (scoring)"));
    }
    if let Some(a) = grpc_addr {
        endpoints.push(format!("{scheme}://{a} (V2 gRPC)"));
    }
    engine.set_endpoints(endpoints);

    let queue_task = tokio::spawn(engine.run_queue());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    let mut listeners = vec![(control, engine.control_router())];
    if let Some(listener) = scoring {
        listeners.push((listener, engine.scoring_router()));
    }
    if let Some(listener) = grpc {
        listeners.push((listener, engine.grpc_router()));
    }
    for (listener, app) in listeners {
        servers.push(match &tls {
            Some(t) => spawn_server(
                tls::TlsListener::new(listener, t.clone()),
                app,
                stop_rx.clone(),
            ),
            None => spawn_server(listener, app, stop_rx.clone()),
        });
    }
    on_bound(Bound {
        control: control_addr,
        scoring: scoring_addr,
        grpc: grpc_addr,
        tls,
    });
    tracing::info!("engine listening on {scheme}://{control_addr}");

    shutdown.await;
    tracing::info!("shutting down: taking no new work");
    let grace = Duration::from_millis(engine.config.shutdown_grace_ms);
    let deadline = tokio::time::Instant::now() + grace;
    let engine_stop = engine.shutdown(grace);
    let _ = stop_tx.send(true);
    // In-flight requests finish while the queue and the deployed model wind down.
    let servers_done = async {
        for mut s in servers {
            if tokio::time::timeout_at(deadline, &mut s).await.is_err() {
                s.abort();
            }
        }
    };
    tokio::join!(engine_stop, servers_done);
    queue_task.abort();
    tracing::info!("engine stopped");
    Ok(())
}

/// A listener on `bind:port` and the address it got (`port` 0 picks one); `setting` names
/// what chooses another port when this one is taken.
async fn listen(
    bind: std::net::IpAddr,
    port: u16,
    setting: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind((bind, port))
        .await
        .map_err(|e| listen_error(bind, port, setting, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the listening address", e))?;
    Ok((listener, addr))
}

/// A port that cannot be listened on; one already taken says which setting chooses another.
fn listen_error(bind: std::net::IpAddr, port: u16, setting: &str, e: std::io::Error) -> Error {
    let context = if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "cannot listen on {bind}:{port} (another process, perhaps another engine, holds it; {setting} chooses another)"
        )
    } else {
        format!("cannot listen on {bind}:{port}")
    };
    Error::io(context, e)
}
