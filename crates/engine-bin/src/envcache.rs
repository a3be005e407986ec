//! The model environment cache, as the binary configures it for `engine run` and
//! `engine serve`.

use std::path::PathBuf;

/// A cache in `root` for the CPython this binary embeds; pip's and uv's index settings
/// (`PIP_*`, `UV_*`, `SSL_CERT_FILE`) pass through from the environment to the installs.
pub fn build(
    root: PathBuf,
    size_mib: u64,
    installs: bool,
    tool: environments::Tool,
) -> environments::EnvironmentCache {
    let mut config = environments::CacheConfig::new(root, python());
    config.max_bytes = size_mib.saturating_mul(1 << 20);
    config.installs_enabled = installs;
    config.tool = tool;
    config.extra_env = std::env::vars()
        .filter(|(k, _)| k.starts_with("PIP_") || k.starts_with("UV_") || k == "SSL_CERT_FILE")
        .collect();
    environments::EnvironmentCache::new(config)
}

/// The CPython model environments are built for, and whose libraries `/api/engine` lists:
/// `ENGINE_PYTHON` when set (an engine moved to another machine, such as the container
/// image, names the interpreter there), else the one the build embedded (its path compiled
/// in by build.rs), else `python3` on PATH.
pub fn python() -> std::ffi::OsString {
    match std::env::var_os("ENGINE_PYTHON").filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => option_env!("ENGINE_PYTHON").unwrap_or("python3").into(),
    }
}
