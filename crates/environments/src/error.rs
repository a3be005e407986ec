use std::path::PathBuf;
use std::time::Duration;

/// The one error of the `environments` crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model has requirements but this engine was told not to install any, and no
    /// environment for them is cached.
    #[error(
        "this engine does not install model requirements (installs are turned off); \
         {files} {verb} for: {wanted}"
    )]
    InstallsOff {
        files: String,
        verb: &'static str,
        wanted: String,
    },

    /// pip or uv ran and failed; `lines` are its own last error lines.
    #[error("{step} failed ({status}):\n{lines}")]
    Install {
        step: String,
        status: String,
        lines: String,
    },

    /// pip or uv ran longer than the configured limit and was stopped.
    #[error("{step} did not finish within {}s and was stopped", timeout.as_secs())]
    Timeout { step: String, timeout: Duration },

    /// The engine is stopping: the build was stopped (its folder removed).
    #[error("{step} was stopped: the engine is shutting down")]
    Stopped { step: String },

    /// The configuration asks for a tool that is not installed.
    #[error("{0}")]
    ToolMissing(String),

    /// The base interpreter could not tell its version and platform.
    #[error("cannot ask {} about itself: {message}", python.display())]
    Interpreter { python: PathBuf, message: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
