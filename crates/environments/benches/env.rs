//! Time to an environment ready for a model: built fresh versus found in the cache, with uv
//! and with venv + pip, against the configured package index (real network).
//!
//! `cargo bench -p environments --bench env` prints one table. "first import" adds what a
//! cached start costs after `prepare`: a Python process that places the environment the
//! way the worker does, imports the pinned package and answers one line (a stand-in for
//! the worker's start up to its first record).
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use environments::{CacheConfig, EnvironmentCache, PreparedEnv, RequirementsFile, Tool};
use runtime_core::MemoryLog;

const ROUNDS: usize = 3;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PYO3_PYTHON") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn cache(root: &Path, tool: Tool, extra_env: &[(String, String)]) -> EnvironmentCache {
    let mut config = CacheConfig::new(root, python());
    config.tool = tool;
    config.extra_env = extra_env.to_vec();
    EnvironmentCache::new(config)
}

fn prepare(cache: &EnvironmentCache, content: &str) -> (Duration, PreparedEnv) {
    let requirements = [RequirementsFile {
        name: "requirements.txt".to_owned(),
        content: content.to_owned(),
    }];
    let started = Instant::now();
    let env = cache
        .prepare(&requirements, &MemoryLog::default())
        .expect("prepared")
        .expect("requirements given");
    (started.elapsed(), env)
}

/// From a cached `prepare` to one line from a Python process importing from the environment.
fn first_import(cache: &EnvironmentCache, content: &str) -> Duration {
    let started = Instant::now();
    let (_, env) = prepare(cache, content);
    let script = format!(
        "import sys, site\n\
         before = list(sys.path)\n\
         site.addsitedir({:?})\n\
         added = [p for p in sys.path if p not in before]\n\
         sys.path[:] = added + before\n\
         import six\n\
         print(six.__version__, flush=True)\n",
        env.site_packages.display().to_string()
    );
    let mut child = Command::new(python())
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python starts");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line).expect("a line");
    }
    let took = started.elapsed();
    let _ = child.wait();
    assert_eq!(line.trim(), "1.16.0");
    took
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 1 } else { ROUNDS };
    let content = "six==1.16.0\n";
    println!(
        "{:<34} {:>12} {:>12}",
        "median of rounds", "uv", "venv + pip"
    );
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, cells: Vec<String>| rows.push((name.to_owned(), cells));

    let mut fresh = Vec::new();
    let mut cold = Vec::new();
    let mut new_engine = Vec::new();
    let mut hit = Vec::new();
    let mut import = Vec::new();
    for tool in [Tool::Uv, Tool::Pip] {
        let (mut f, mut c, mut n, mut h, mut i) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            let root = tempfile::tempdir().expect("tempdir");
            let engine = cache(root.path(), tool, &[]);
            f.push(prepare(&engine, content).0);
            // A new engine over the same folder: its first prepare asks Python its version.
            let engine = cache(root.path(), tool, &[]);
            n.push(prepare(&engine, content).0);
            h.push(prepare(&engine, content).0);
            i.push(first_import(&engine, content));

            // Nothing in the tool's own download cache either.
            let downloads = tempfile::tempdir().expect("tempdir");
            let env = [
                (
                    "UV_CACHE_DIR".to_owned(),
                    downloads.path().display().to_string(),
                ),
                ("PIP_NO_CACHE_DIR".to_owned(), "1".to_owned()),
            ];
            let root = tempfile::tempdir().expect("tempdir");
            c.push(prepare(&cache(root.path(), tool, &env), content).0);
        }
        fresh.push(ms(median(f)));
        cold.push(ms(median(c)));
        new_engine.push(ms(median(n)));
        hit.push(ms(median(h)));
        import.push(ms(median(i)));
    }
    row("fresh (tool's download cache warm)", fresh);
    row("fresh (tool's download cache cold)", cold);
    row("cached, engine's first prepare", new_engine);
    row("cached", hit);
    row("cached + first import", import);
    for (name, cells) in rows {
        println!("{name:<34} {:>12} {:>12}", cells[0], cells[1]);
    }
}
