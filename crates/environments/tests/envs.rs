//! Real builds with real uv and pip against the configured package index. Each build costs
//! about a second with uv and a few with pip; the packages are small pure-Python ones.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use environments::{
    CacheConfig, EnvironmentCache, Error, PreparedEnv, RequirementsFile, Tool, ToolUsed,
};
use runtime_core::MemoryLog;

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

fn cache(root: &Path, tool: Tool) -> EnvironmentCache {
    let mut config = CacheConfig::new(root, python());
    config.tool = tool;
    EnvironmentCache::new(config)
}

fn reqs(content: &str) -> Vec<RequirementsFile> {
    vec![RequirementsFile {
        name: "requirements.txt".to_owned(),
        content: content.to_owned(),
    }]
}

/// What `import <module>` finds in the base interpreter with the environment placed the way
/// the Python worker places it: its site-packages (and .pth additions) before the base's.
fn version_seen(env: Option<&PreparedEnv>, module: &str) -> String {
    let site = env
        .map(|e| e.site_packages.display().to_string())
        .unwrap_or_default();
    let script = format!(
        "import sys, site\n\
         site_dir = {site:?}\n\
         if site_dir:\n\
         \x20   before = list(sys.path)\n\
         \x20   site.addsitedir(site_dir)\n\
         \x20   added = [p for p in sys.path if p not in before]\n\
         \x20   sys.path[:] = added + before\n\
         import {module}\n\
         print({module}.__version__)\n"
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .env_remove("PYTHONPATH")
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn tool_lines(log: &MemoryLog) -> Vec<String> {
    log.lines()
        .into_iter()
        .map(|l| l.message)
        .filter(|m| m.starts_with("uv: ") || m.starts_with("pip: ") || m.starts_with("venv: "))
        .collect()
}

fn dirs(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .expect("root exists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn isolation(tool: Tool, used: ToolUsed) {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = cache(root.path(), tool);
    let log_a = MemoryLog::default();
    let a = cache
        .prepare(&reqs("six==1.16.0\n"), &log_a)
        .expect("model A's environment")
        .expect("requirements given");
    let b = cache
        .prepare(&reqs("six==1.15.0\n"), &MemoryLog::default())
        .expect("model B's environment")
        .expect("requirements given");
    assert_eq!(a.built_with, Some(used));
    assert!(!a.cache_hit);
    assert_ne!(a.key, b.key);
    assert_eq!(version_seen(Some(&a), "six"), "1.16.0");
    assert_eq!(version_seen(Some(&b), "six"), "1.15.0");
    // The tool's output reached the job's log as it ran.
    assert!(
        !tool_lines(&log_a).is_empty(),
        "no tool lines in {:?}",
        log_a.lines()
    );
}

#[test]
fn conflicting_pins_are_isolated_with_uv() {
    isolation(Tool::Uv, ToolUsed::Uv);
}

#[test]
fn conflicting_pins_are_isolated_with_venv_and_pip() {
    isolation(Tool::Pip, ToolUsed::Pip);
}

#[test]
fn a_relative_root_gives_absolute_paths() {
    let root = tempfile::tempdir().expect("tempdir");
    let cwd = std::env::current_dir().expect("cwd");
    let relative: PathBuf = pathdiff(root.path(), &cwd);
    let env = cache(&relative.join("envs"), Tool::Uv)
        .prepare(&reqs("six==1.16.0\n"), &MemoryLog::default())
        .expect("built")
        .expect("requirements given");
    assert!(env.site_packages.is_absolute());
    let real = |p: &Path| p.canonicalize().expect("exists");
    assert!(real(&env.site_packages).starts_with(real(root.path())));
    assert_eq!(version_seen(Some(&env), "six"), "1.16.0");
}

/// `to` as seen from `from`, through `..` as needed.
fn pathdiff(to: &Path, from: &Path) -> PathBuf {
    let common = to
        .components()
        .zip(from.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = PathBuf::new();
    for _ in from.components().skip(common) {
        out.push("..");
    }
    for part in to.components().skip(common) {
        out.push(part);
    }
    out
}

#[test]
fn no_requirements_no_environment() {
    let root = tempfile::tempdir().expect("tempdir");
    let got = cache(root.path(), Tool::Auto)
        .prepare(&[], &MemoryLog::default())
        .expect("nothing to do");
    assert!(got.is_none());
}

#[test]
fn second_start_installs_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let requirements = reqs("idna==3.6\n");
    let first = cache(root.path(), Tool::Auto)
        .prepare(&requirements, &MemoryLog::default())
        .expect("built")
        .expect("requirements given");
    assert!(!first.cache_hit);
    drop(first);
    // Another engine (a new cache over the same folder) finds it too.
    for cache in [
        cache(root.path(), Tool::Auto),
        cache(root.path(), Tool::Pip),
    ] {
        let log = MemoryLog::default();
        let again = cache
            .prepare(&requirements, &log)
            .expect("cached")
            .expect("requirements given");
        assert!(again.cache_hit);
        assert_eq!(again.built_with, None);
        assert_eq!(again.timings.install, Duration::ZERO);
        assert!(tool_lines(&log).is_empty(), "{:?}", log.lines());
        assert!(log
            .lines()
            .iter()
            .any(|l| l.message.starts_with("using the cached environment")));
        assert_eq!(version_seen(Some(&again), "idna"), "3.6");
    }
}

fn failing_install(tool: Tool, expected: &str) {
    let root = tempfile::tempdir().expect("tempdir");
    let log = MemoryLog::default();
    let err = cache(root.path(), tool)
        .prepare(&reqs("this-package-does-not-exist-xyz==1.0\n"), &log)
        .expect_err("nothing to install");
    let message = err.to_string();
    assert!(matches!(err, Error::Install { .. }), "{message}");
    assert!(message.contains(expected), "{message}");
    assert!(
        message.contains("this-package-does-not-exist-xyz"),
        "{message}"
    );
    // The same lines went to the job's log as they came.
    assert!(log.lines().iter().any(|l| l.message.contains(expected)));
    // Nothing half-built is left behind.
    assert!(dirs(root.path()).is_empty(), "{:?}", dirs(root.path()));
}

#[test]
fn failed_install_carries_uv_errors() {
    failing_install(Tool::Uv, "not found in the package registry");
}

#[test]
fn failed_install_carries_pip_errors() {
    failing_install(Tool::Pip, "No matching distribution found");
}

#[test]
fn half_built_environments_are_never_used() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = cache(root.path(), Tool::Uv);
    let requirements = reqs("six==1.16.0\n");
    let built = cache
        .prepare(&requirements, &MemoryLog::default())
        .expect("built")
        .expect("requirements given");
    let key = built.key.clone();
    drop(built);
    // As if the engine died mid-build: no marker in the folder, and a dead temporary build.
    std::fs::remove_file(root.path().join(&key).join(".complete")).expect("marker");
    let dead = root.path().join(format!("tmp-{key}-999999-0"));
    std::fs::create_dir(&dead).expect("dead build");
    let again = cache
        .prepare(&requirements, &MemoryLog::default())
        .expect("rebuilt")
        .expect("requirements given");
    assert!(!again.cache_hit);
    assert!(!dead.exists());
    assert_eq!(dirs(root.path()), vec![key]);
    assert_eq!(version_seen(Some(&again), "six"), "1.16.0");
}

#[test]
fn least_recently_used_environments_are_evicted_but_not_one_in_use() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut config = CacheConfig::new(root.path(), python());
    config.max_bytes = 1; // Any second environment is one too many.
    let cache = EnvironmentCache::new(config);
    let log = MemoryLog::default();
    let a = cache
        .prepare(&reqs("six==1.16.0\n"), &log)
        .expect("a")
        .expect("requirements given");
    let b = cache
        .prepare(&reqs("six==1.15.0\n"), &log)
        .expect("b")
        .expect("requirements given");
    // `a` is held by a running job: it stays although over the bound.
    assert!(a.dir.join(".complete").exists());
    let (a_dir, b_dir) = (a.dir.clone(), b.dir.clone());
    drop(a);
    drop(b);
    let c = cache
        .prepare(&reqs("idna==3.6\n"), &log)
        .expect("c")
        .expect("requirements given");
    assert!(!a_dir.exists());
    assert!(!b_dir.exists());
    assert_eq!(dirs(root.path()), vec![c.key.clone()]);
}

#[test]
fn installs_off_fails_clearly_but_uses_what_is_cached() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut config = CacheConfig::new(root.path(), python());
    config.installs_enabled = false;
    let off = EnvironmentCache::new(config);
    let err = off
        .prepare(&reqs("six==1.16.0\n"), &MemoryLog::default())
        .expect_err("installs are off");
    assert!(matches!(err, Error::InstallsOff { .. }));
    assert_eq!(
        err.to_string(),
        "this engine does not install model requirements (installs are turned off); \
         requirements.txt asks for: six==1.16.0"
    );
    assert!(dirs(root.path()).is_empty());
    cache(root.path(), Tool::Auto)
        .prepare(&reqs("six==1.16.0\n"), &MemoryLog::default())
        .expect("built with installs on");
    let hit = off
        .prepare(&reqs("six==1.16.0\n"), &MemoryLog::default())
        .expect("a cached environment installs nothing")
        .expect("requirements given");
    assert!(hit.cache_hit);
}

#[test]
fn base_packages_satisfy_unpinned_requirements() {
    // msgpack is one of the base interpreter's packages (scripts/requirements-test.txt pins it
    // and scripts/setup installs it), so an unpinned requirement of it installs nothing.
    let base = Command::new(python())
        .args(["-c", "import msgpack; print(msgpack.__version__)"])
        .output()
        .expect("python runs");
    assert!(
        base.status.success(),
        "the base interpreter has no msgpack (run scripts/setup): {}",
        String::from_utf8_lossy(&base.stderr)
    );
    let base = String::from_utf8_lossy(&base.stdout).trim().to_owned();
    let root = tempfile::tempdir().expect("tempdir");
    for tool in [Tool::Uv, Tool::Pip] {
        let env = cache(&root.path().join(format!("{tool:?}")), tool)
            .prepare(&reqs("msgpack\n"), &MemoryLog::default())
            .expect("built")
            .expect("requirements given");
        assert!(
            !env.site_packages.join("msgpack").exists(),
            "{tool:?} installed a second msgpack"
        );
        assert_eq!(version_seen(Some(&env), "msgpack"), base);
    }
}

#[test]
fn concurrent_builders_of_one_key_build_it_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let requirements = Arc::new(reqs("six==1.16.0\nidna==3.6\n"));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            // Two engines: two caches over one folder.
            let cache = cache(root.path(), Tool::Auto);
            let requirements = requirements.clone();
            std::thread::spawn(move || {
                let env = cache
                    .prepare(&requirements, &MemoryLog::default())
                    .expect("prepared")
                    .expect("requirements given");
                (
                    env.cache_hit,
                    env.dir.clone(),
                    version_seen(Some(&env), "six"),
                )
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(results.iter().filter(|(hit, _, _)| !hit).count(), 1);
    assert_eq!(results[0].1, results[1].1);
    assert!(results.iter().all(|(_, _, v)| v == "1.16.0"));
    assert_eq!(dirs(root.path()).len(), 1);
}
