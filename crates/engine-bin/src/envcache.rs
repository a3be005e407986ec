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
    let python = option_env!("ENGINE_PYTHON").unwrap_or("python3");
    let mut config = environments::CacheConfig::new(root, python);
    config.max_bytes = size_mib.saturating_mul(1 << 20);
    config.installs_enabled = installs;
    config.tool = tool;
    config.extra_env = std::env::vars()
        .filter(|(k, _)| k.starts_with("PIP_") || k.starts_with("UV_") || k == "SSL_CERT_FILE")
        .collect();
    environments::EnvironmentCache::new(config)
}
