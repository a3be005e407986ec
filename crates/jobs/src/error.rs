//! The crate's error: what can keep a job from being built.

/// The one error of the `jobs` crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model cannot be found, read or materialized as given.
    #[error("{0}")]
    Model(String),

    /// The model's schemas cannot be resolved or compiled.
    #[error("the model's schemas: {0}")]
    Schemas(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Core(#[from] runtime_core::Error),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
