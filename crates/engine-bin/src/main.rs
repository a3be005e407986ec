//! `engine`: the model runtime's command line. A thin layer: it parses arguments, reads the
//! environment, installs the logger, and calls the libraries.

mod cli;
mod client;
mod envcache;
mod exit;
mod joblog;
mod run;
mod schema_cmd;
mod serve;
#[cfg(feature = "stores")]
mod stores;
mod transports;

use clap::Parser;

/// The engine's allocator: a record is many small allocations (its map, its strings, its
/// arrays), made on one thread and freed on another. With glibc's allocator the serving
/// process spent a fifth of its time in malloc and free; mimalloc took a fifth or more off
/// its CPU per request (docs/benchmarks.md). The binary chooses it, not the libraries.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    match cli.command {
        cli::Command::Worker(w) => match w.language {
            cli::WorkerLanguage::Python => std::process::exit(runner_python::worker_main()),
        },
        cli::Command::Run(args) => {
            let filter = std::env::var("ENGINE_LOG")
                .or_else(|_| std::env::var("MODELOP_LOG_LEVEL"))
                .unwrap_or_else(|_| "warn".to_owned());
            install_tracing(&filter, "warn", args.log_format == cli::LogFormatArg::Json);
            std::process::exit(run::run(*args));
        }
        cli::Command::Serve(args) => std::process::exit(serve::serve(*args)),
        cli::Command::Job(args) => std::process::exit(client::job(args)),
        cli::Command::Deploy(args) => std::process::exit(client::deploy(args)),
        cli::Command::Undeploy(args) => std::process::exit(client::undeploy(args)),
        cli::Command::Stream(args) => std::process::exit(client::stream(args)),
        cli::Command::Score(args) => std::process::exit(client::score(args)),
        cli::Command::Status(args) => std::process::exit(client::status(args)),
        cli::Command::Health(args) => std::process::exit(client::health(args)),
        cli::Command::Token => std::process::exit(client::token()),
        cli::Command::Schema(cli::SchemaCommand::Check(args)) => {
            std::process::exit(schema_cmd::check(&args))
        }
    }
}

/// The engine's own diagnostics (not a job's log) go to stderr, filtered by `filter`
/// (tracing's filter syntax; `warning` is `warn`), else by `fallback`: as text, coloured only
/// when stderr is a terminal, or as one JSON object per line (timestamp, level, target, the
/// event's fields such as `job_id`, message) for log collectors. The only place a subscriber
/// is installed.
pub(crate) fn install_tracing(filter: &str, fallback: &str, json: bool) {
    use std::io::IsTerminal;
    let filter = match filter.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_owned(),
        other => other.to_owned(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(fallback));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init()
    };
}
