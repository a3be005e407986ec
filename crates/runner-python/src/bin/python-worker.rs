//! A worker process running a Python model: what the engine's `worker python` subcommand
//! does, as a binary of its own for tests.

fn main() {
    std::process::exit(runner_python::worker_main());
}
