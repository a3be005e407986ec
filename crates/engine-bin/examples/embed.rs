//! A host program embedding the engine (docs/embedding.md): its own axum app with a route of
//! its own and the engine's control API under `/engine`, on its own listener; the job queue
//! run as a task of its own; Ctrl-C stops the engine within its grace.
//!
//! ```text
//! cargo build -p engine-bin && cargo run -p engine-bin --example embed -- [PORT] [DATA_DIR]
//! curl -s -X PUT localhost:8080/engine/api/deployment/upload \
//!     -F source=@examples/credit-score/model/model.py \
//!     -F asset=@examples/credit-score/model/weights.json \
//!     -F asset=@examples/credit-score/model/application_schema.avsc
//! curl -s localhost:8080/engine/api/roundtrip/0/1 -H 'content-type: application/json' \
//!     -d "$(head -1 examples/credit-score/applications.jsonl)"
//! ```
//!
//! Python models run in `engine worker python` processes: the `engine` binary built beside
//! this example (`target/debug/engine`), or the one `ENGINE_BINARY` names.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use runtime_core::Language;
use service::{Config, Deps, Engine, RunnerSet};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The host owns logging.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(8080);
    let data = PathBuf::from(args.next().unwrap_or_else(|| "embed-data".to_owned()));

    // One engine per data folder: the lock is held while the engine lives.
    let data_dir = service::datadir::DataDir::acquire(&data)?;
    let config = Config {
        data_dir: data_dir.path().to_owned(),
        shutdown_grace_ms: 10_000,
        ..Config::default()
    };
    let engine = Engine::open(config, deps()?).await?;

    let app = axum::Router::new()
        .route("/status", axum::routing::get(|| async { "host ok" }))
        .nest("/engine", engine.control_router());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    engine.set_endpoints(vec![format!("http://{addr}/engine")]);
    tracing::info!("host listening on http://{addr}, the engine under /engine");

    let queue = tokio::spawn(engine.run_queue());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });

    tokio::signal::ctrl_c().await?;
    let grace = Duration::from_millis(engine.config.shutdown_grace_ms);
    let stopping = engine.shutdown(grace);
    let _ = stop_tx.send(true);
    stopping.await;
    let _ = tokio::time::timeout(grace, server).await;
    let _ = queue.await;
    drop(data_dir);
    Ok(())
}

/// The engine's Python runner: workers are `engine worker python`, started from the
/// allow-listed part of this process's environment, held to the configured limits.
fn deps() -> std::io::Result<Deps> {
    let engine_binary = match std::env::var_os("ENGINE_BINARY") {
        Some(p) => PathBuf::from(p),
        // target/debug/examples/embed -> target/debug/engine
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .map(|dir| dir.join("engine"))
            .unwrap_or_else(|| PathBuf::from("engine")),
    };
    let base_env = worker::env::worker_environment(std::env::vars_os(), &[]);
    let command = worker::WorkerCommand::new(engine_binary)
        .arg("worker")
        .arg("python")
        .with_base_env(base_env);
    // Workers held to the configured time and memory limits are built per limits.
    let limited: service::LimitedRunner = {
        let command = command.clone();
        Arc::new(move |limits| {
            Arc::new(runner_python::PythonRunner::new(
                command.clone().with_limits(limits),
            ))
        })
    };
    Ok(Deps {
        runners: RunnerSet::new()
            .with(
                Language::Python,
                Arc::new(runner_python::PythonRunner::new(command)),
            )
            .with_limits(Language::Python, limited),
        environments: None,
        platforms: Arc::new(Vec::new),
        release: env!("CARGO_PKG_VERSION").to_owned(),
        built_on: "unknown".to_owned(),
    })
}
