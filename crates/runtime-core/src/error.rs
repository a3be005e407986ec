//! The one error of the runtime's traits ([`Error`]), which endpoints and runners return
//! and which keeps another crate's error as its source.

use std::path::PathBuf;

use crate::record::Position;

/// Another crate's error kept as the source of one of ours (a transport's, a codec's), so
/// its chain is not lost to a string.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the domain: the one error of `runtime-core`, also the
/// error type of the `RecordSource`, `RecordSink`, `Runner` and `Session` traits, so other
/// crates' endpoints and runners convert their own errors at their boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stream descriptor that cannot work, naming the field.
    #[error("invalid stream descriptor: field '{field}': {reason}")]
    Descriptor { field: String, reason: String },

    /// Reading or writing an endpoint failed as a whole (not one record). `reason` says
    /// it in words; `source` is the error it comes from, when there is one.
    #[error("{endpoint}: {reason}")]
    Endpoint {
        endpoint: String,
        reason: String,
        #[source]
        source: Option<BoxError>,
    },

    /// An endpoint cannot be reached for now (a broker down, a connection reset, a timeout,
    /// a server asking to slow down): the same call may succeed later. A stream that meets it
    /// backs off and tries again; [`Error::is_retriable`] tells it from the fatal ones.
    #[error("{endpoint}: {reason} (temporary: retrying may succeed)")]
    Unavailable {
        endpoint: String,
        reason: String,
        #[source]
        source: Option<BoxError>,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The input's framing is broken beyond recovery: reading stopped here.
    #[error("{endpoint}: input cannot be read past {position}: {reason}")]
    StreamBroken {
        endpoint: String,
        position: Position,
        reason: String,
    },

    /// The model cannot be loaded as given (missing function, wrong arity, bad marker).
    #[error("model cannot be loaded: {0}")]
    ModelLoad(String),

    /// Model code raised where the whole job depends on it (init, metrics, training).
    #[error("{function} failed: {message}")]
    ModelFailed {
        function: String,
        message: String,
        traceback: String,
    },

    /// The worker process running the model died.
    #[error("the model's worker process died: {reason}{}", last_record.as_ref().map(|r| format!(" (last input: {r})")).unwrap_or_default())]
    WorkerDied {
        reason: String,
        last_record: Option<String>,
    },

    /// A worker broke a limit set on it (a record ran too long, memory grew too large) and
    /// was stopped.
    #[error("the model's worker was stopped: {detail}{}", last_record.as_ref().map(|r| format!(" (input: {r})")).unwrap_or_default())]
    LimitExceeded {
        /// `time` or `memory`.
        limit: String,
        detail: String,
        last_record: Option<String>,
    },

    /// A worker did not answer in time and was stopped.
    #[error("{what} timed out after {millis} ms")]
    Timeout { what: String, millis: u64 },

    #[error("cancelled: {0}")]
    Cancelled(String),

    /// What a model needs before its workers start could not be made ready (a Python
    /// model's requirements did not install). `reason` is the whole message.
    #[error("{reason}")]
    Prepare {
        reason: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The worker and the engine disagree on the protocol.
    #[error("worker protocol error: {0}")]
    Protocol(String),

    #[error("cannot find file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn descriptor(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Descriptor {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn endpoint(endpoint: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Endpoint {
            endpoint: endpoint.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// An endpoint failed because of `source`: the reason is its message, and it stays
    /// reachable through [`std::error::Error::source`].
    pub fn endpoint_source(endpoint: impl Into<String>, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        Error::Endpoint {
            endpoint: endpoint.into(),
            reason: source.to_string(),
            source: Some(source),
        }
    }

    /// An endpoint is unreachable for now (see [`Error::Unavailable`]).
    pub fn unavailable(
        endpoint: impl Into<String>,
        reason: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        Error::Unavailable {
            endpoint: endpoint.into(),
            reason: reason.into(),
            source,
        }
    }

    /// Whether trying the same thing again later may succeed: an endpoint
    /// [unavailable](Error::Unavailable) for now, or an I/O error of a kind that passes
    /// (a connection refused, reset or aborted, a timeout, an interruption). Every other
    /// error is fatal for what it failed: retrying would fail the same way.
    pub fn is_retriable(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            Error::Unavailable { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::BrokenPipe
                    | K::TimedOut
                    | K::Interrupted
                    | K::WouldBlock
            ),
            _ => false,
        }
    }

    /// An endpoint failed because of `source`, said in words of our own.
    pub fn endpoint_caused(
        endpoint: impl Into<String>,
        reason: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Endpoint {
            endpoint: endpoint.into(),
            reason: reason.into(),
            source: Some(source.into()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn retriable_errors_are_told_apart_from_fatal_ones() {
        let down = Error::unavailable("kafka:scores", "broker down", None);
        assert!(down.is_retriable());
        assert!(down.to_string().contains("temporary"), "{down}");
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(Error::io("reading", reset).is_retriable());
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert!(!Error::io("reading", missing).is_retriable());
        assert!(!Error::endpoint("file:x", "corrupt").is_retriable());
        assert!(!Error::descriptor("Transport", "bad").is_retriable());
    }

    #[test]
    fn an_endpoint_error_keeps_its_source_and_its_message() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "broker went away");
        let e = Error::endpoint_source("kafka:scores", io);
        assert_eq!(e.to_string(), "kafka:scores: broker went away");
        let source = e.source().expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("the io error itself");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);

        let e =
            Error::endpoint_caused("s3:bucket/key", "upload failed", "503 Slow Down".to_owned());
        assert_eq!(e.to_string(), "s3:bucket/key: upload failed");
        assert_eq!(e.source().unwrap().to_string(), "503 Slow Down");

        assert!(Error::endpoint("x", "y").source().is_none());
    }
}
