//! The one error of the service, and the one place it becomes an HTTP response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::deploy::DeployError;

/// Seconds a client is told to wait before retrying a refused scoring request.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work; names the key.
    #[error("invalid configuration: '{key}': {reason}")]
    Config { key: String, reason: String },

    /// A request that cannot be carried out as given.
    #[error("{0}")]
    BadRequest(String),

    #[error("{0} not found")]
    NotFound(String),

    /// The request is valid but clashes with the state of the thing it names.
    #[error("{0}")]
    Conflict(String),

    /// Scoring with no model deployed (plain-text answer).
    #[error("no model is deployed")]
    NoModel,

    /// Asking the control API about a deployment when there is none.
    #[error("no model is deployed")]
    NoDeployment,

    /// No REST stream is attached to the slot a `/1/job/input` or `/1/job/output` request
    /// names (plain-text answer).
    #[error("An error has occurred: {0}")]
    NoStream(String),

    /// A REST input stream's queue is at its bound (plain-text answer).
    #[error("An error has occurred: the REST stream of slot {slot} is full ({bound} records waiting); retry later")]
    StreamFull { slot: u32, bound: usize },

    /// The deployed model's request queue is at its bound.
    #[error("the deployed model's request queue is full ({bound} records waiting); retry later")]
    QueueFull { bound: usize },

    /// The deployed model's worker died or is being restarted.
    #[error("the deployed model is not available: {0}")]
    ModelUnavailable(String),

    /// The engine is stopping and takes no new work.
    #[error("the engine is shutting down")]
    ShuttingDown,

    /// A scoring request (roundtrip, REST stream) that names unusable slots or parameters
    /// (plain-text answer).
    #[error("An error has occurred: {0}")]
    BadRoundtrip(String),

    #[error("An error has occurred: input record rejected by encoding")]
    InputRejectedByEncoding(String),

    #[error("An error has occurred: output record rejected by encoding")]
    OutputRejectedByEncoding(String),

    /// A roundtrip body the input slot's schema does not accept.
    #[error("An error has occurred: input record rejected by schema")]
    InputRejectedBySchema(String),

    /// What the model answered does not conform to the output slot's schema.
    #[error("An error has occurred: output record rejected by schema")]
    OutputRejectedBySchema(String),

    /// The model raised on the request's record (the reference runtime's words, prefix
    /// included).
    #[error(
        "An error has occurred: An output error occurred during model execution, please check the engine logs for details"
    )]
    ModelRaised(String),

    #[error("An error has occurred: the model did not answer within {millis} ms")]
    RoundtripTimeout { millis: u64 },

    /// A request body over a configured limit; names the limit and the setting raising it.
    #[error("{what} is over the limit of {limit} bytes; the setting '{setting}' raises it")]
    TooLarge {
        what: String,
        limit: u64,
        setting: &'static str,
    },

    /// Too many uploads at once (`maxConcurrentUploads`).
    #[error("{0}; retry later")]
    Busy(String),

    /// The request's record broke a worker limit (`time` or `memory`); the worker was
    /// replaced.
    #[error("An error has occurred: the record broke the model's {limit} limit: {detail}")]
    ModelLimit { limit: String, detail: String },

    /// The embedded database failed.
    #[error("job store: {0}")]
    Store(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A route of the control API asked with a method it does not answer (405).
    #[error("{0}")]
    MethodNotAllowed(String),

    /// No token, or not the engine's (401).
    #[error("{0}")]
    Unauthorized(String),

    /// Refused whatever the credentials (403): a local path outside the configured roots
    /// (`allowedPaths`), a non-loopback Host or Origin on a loopback engine without a token.
    #[error("{0}")]
    Forbidden(String),

    /// Another engine holds the data folder's lock.
    #[error("the data folder {dir} is in use by another engine (pid {holder}); stop that engine or give this one its own --data-dir")]
    DataDirInUse { dir: String, holder: String },

    #[error(transparent)]
    Jobs(#[from] jobs::Error),

    #[error(transparent)]
    Core(#[from] runtime_core::Error),

    /// A deployment that could not be made or undone.
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The HTTP status of this error: the one mapping of the service.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Config { .. }
            | Error::BadRequest(_)
            | Error::BadRoundtrip(_)
            | Error::InputRejectedByEncoding(_)
            | Error::InputRejectedBySchema(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) | Error::NoModel | Error::NoDeployment | Error::NoStream(_) => {
                StatusCode::NOT_FOUND
            }
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::QueueFull { .. }
            | Error::StreamFull { .. }
            | Error::ModelUnavailable(_)
            | Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Error::ModelRaised(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::RoundtripTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::ModelLimit { limit, .. } if limit == "time" => StatusCode::GATEWAY_TIMEOUT,
            Error::ModelLimit { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Jobs(jobs::Error::Model(_))
            | Error::Jobs(jobs::Error::Core(runtime_core::Error::Descriptor { .. })) => {
                StatusCode::BAD_REQUEST
            }
            Error::Core(runtime_core::Error::ModelLoad(_))
            | Error::Core(runtime_core::Error::ModelFailed { .. })
            | Error::Core(runtime_core::Error::Descriptor { .. }) => StatusCode::BAD_REQUEST,
            Error::Deploy(d) => match d {
                DeployError::Refused(_) => StatusCode::BAD_REQUEST,
                DeployError::Model(
                    runtime_core::Error::ModelLoad(_)
                    | runtime_core::Error::ModelFailed { .. }
                    | runtime_core::Error::Descriptor { .. },
                ) => StatusCode::BAD_REQUEST,
                DeployError::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
                DeployError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                DeployError::NoDeployment => StatusCode::NOT_FOUND,
                DeployError::Engine(e) => e.status(),
            },
            Error::OutputRejectedByEncoding(_)
            | Error::OutputRejectedBySchema(_)
            | Error::Store(_)
            | Error::Io { .. }
            | Error::DataDirInUse { .. }
            | Error::Jobs(_)
            | Error::Core(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The model's traceback, when its code raised where the whole deployment or job
    /// depends on it (init).
    pub fn traceback(&self) -> Option<&str> {
        match self {
            Error::Core(runtime_core::Error::ModelFailed { traceback, .. })
                if !traceback.trim().is_empty() =>
            {
                Some(traceback)
            }
            Error::Deploy(d) => d.traceback(),
            _ => None,
        }
    }

    /// Scoring errors are plain text in the reference's words; the control API's are JSON.
    fn is_scoring(&self) -> bool {
        matches!(
            self,
            Error::InputRejectedByEncoding(_)
                | Error::InputRejectedBySchema(_)
                | Error::BadRoundtrip(_)
                | Error::OutputRejectedByEncoding(_)
                | Error::OutputRejectedBySchema(_)
                | Error::ModelRaised(_)
                | Error::RoundtripTimeout { .. }
                | Error::ModelLimit { .. }
                | Error::QueueFull { .. }
                | Error::ModelUnavailable(_)
                | Error::NoModel
                | Error::NoStream(_)
                | Error::StreamFull { .. }
        )
    }

    /// The error of record `i` of a request carrying several: its detail names the record.
    pub(crate) fn of_record(self, i: usize) -> Error {
        let name = |d: String| format!("record {i} of the request: {d}");
        match self {
            Error::InputRejectedByEncoding(d) => Error::InputRejectedByEncoding(name(d)),
            Error::OutputRejectedByEncoding(d) => Error::OutputRejectedByEncoding(name(d)),
            Error::InputRejectedBySchema(d) => Error::InputRejectedBySchema(name(d)),
            Error::OutputRejectedBySchema(d) => Error::OutputRejectedBySchema(name(d)),
            Error::ModelRaised(d) => Error::ModelRaised(name(d)),
            Error::ModelLimit { limit, detail } => Error::ModelLimit {
                limit,
                detail: name(detail),
            },
            other => other,
        }
    }

    /// More than the reference's sentence, for the log and the `X-Engine-Detail` header.
    pub(crate) fn detail(&self) -> Option<&str> {
        match self {
            Error::InputRejectedByEncoding(d)
            | Error::OutputRejectedByEncoding(d)
            | Error::InputRejectedBySchema(d)
            | Error::OutputRejectedBySchema(d)
            | Error::ModelRaised(d) => Some(d),
            _ => None,
        }
    }
}

/// The JSON body of a control API error.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in one sentence.
    pub error: String,
    /// The model's traceback, when model code raised (a failed deployment's init).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = if self.is_scoring() {
            let mut text = self.to_string();
            if matches!(
                self,
                Error::QueueFull { .. } | Error::ModelUnavailable(_) | Error::NoModel
            ) {
                text = format!("An error has occurred: {text}");
            }
            (status, text).into_response()
        } else {
            (
                status,
                axum::Json(ErrorBody {
                    error: self.to_string(),
                    traceback: self.traceback().map(str::to_owned),
                }),
            )
                .into_response()
        };
        if let Some(detail) = self.detail() {
            // Header values cannot hold control characters: keep the first line, bounded.
            let line: String = detail
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect();
            if let Ok(v) = HeaderValue::from_str(&line) {
                response.headers_mut().insert("x-engine-detail", v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
