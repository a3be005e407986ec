//! Per-model Python environments.
//!
//! A model's requirements files are installed, before it runs, into an environment of its
//! own (a venv whose site-packages the worker adds to `sys.path`), so one model's packages
//! are never importable by another. Environments are cached by a hash of the requirements,
//! the Python version and the platform; a cached one starts a job without installing
//! anything.
//!
//! Invariants:
//! - An environment folder is used only when its `.complete` marker exists, written last,
//!   and the folder is renamed into place in one step: a failed or killed build is never
//!   used, and is deleted by the next build of the same key or the next eviction.
//! - An environment a job holds (`PreparedEnv` alive) is never evicted, by this engine or
//!   another sharing the folder: the job holds a shared `flock` on the key's lock file.
//! - The base interpreter's packages stay visible: venvs see the system site-packages, and
//!   only what the base lacks or pins differently is installed into them.
//!
//! Deliberately not here: reading environment variables (the engine passes the index
//! settings in `CacheConfig::extra_env`), async (callers run `prepare` on a blocking
//! thread), R packages.
//!
//! ```
//! use environments::{CacheConfig, EnvironmentCache};
//!
//! let folder = tempfile::tempdir()?;
//! // Environments for models run by this interpreter, at most 5 GiB of them by default.
//! let cache = EnvironmentCache::new(CacheConfig::new(folder.path(), "python3"));
//! # let _ = cache;
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod cache;
mod error;
mod installed;
mod lock;
mod relax;
mod tool;

pub use cache::{
    CacheConfig, CacheCounts, EnvironmentCache, PreparedEnv, RequirementsFile, Timings,
};
pub use error::{Error, Result};
pub use installed::installed_libraries;
pub use relax::relax_requirements;
pub use tool::{Tool, ToolUsed};
