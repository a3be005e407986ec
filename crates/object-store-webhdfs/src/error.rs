//! The crate's one error type, and how it becomes an `object_store::Error` at the boundary.

/// What went wrong talking to a WebHDFS server. The `ObjectStore` methods hand it back as
/// the `source` of an `object_store::Error` (`NotFound`, `AlreadyExists`, `PermissionDenied`,
/// `Unauthenticated`, `NotSupported` or `Generic`); [`Error::is_retriable`] tells failures
/// worth trying again from the others.
///
/// Messages name the server by its address (`http://host:port`) and the file by its HDFS
/// path; never a request URL, whose query may hold a delegation token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL given to the builder cannot name a WebHDFS server.
    #[error("invalid WebHDFS URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// An `hdfs://` URL names a namenode by its RPC address, and no HTTP address is
    /// configured for it (and the default mapping, port 8020 to 9870, does not apply).
    #[error(
        "no WebHDFS (HTTP) address is configured for the namenode {namenode}: an hdfs:// URL \
         names the namenode's RPC address; configure its HTTP address (e.g. \
         \"{namenode}\": \"http://host:9870\")"
    )]
    NoNamenodeAddress { namenode: String },

    /// The HTTP client could not be set up (TLS).
    #[error("cannot set up the HTTP client for WebHDFS: {0}")]
    Client(#[source] reqwest::Error),

    /// The server could not be reached, or the connection broke before it answered.
    #[error("cannot reach the {role} at {address}: {source}")]
    Unreachable {
        role: &'static str,
        address: String,
        #[source]
        source: reqwest::Error,
    },

    /// The data stream from a datanode broke.
    #[error("reading {path} from the datanode at {address}: {source}")]
    Read {
        path: String,
        address: String,
        #[source]
        source: reqwest::Error,
    },

    /// The server answered with Hadoop's `RemoteException` (the exception its namenode or
    /// datanode raised).
    #[error("the {role} at {address} answered {status}, {exception}: {message}")]
    Remote {
        role: &'static str,
        address: String,
        status: u16,
        /// The exception's simple name (`FileNotFoundException`, `AccessControlException`...).
        exception: String,
        message: String,
    },

    /// The server asks for Kerberos (SPNEGO), which this client does not support yet.
    #[error(
        "the {role} at {address} asks for Kerberos authentication (401 with WWW-Authenticate: \
         Negotiate), which is not supported yet by this WebHDFS client: use a delegation token \
         (delegation=) or a cluster with simple authentication (user.name=)"
    )]
    KerberosNotSupported { role: &'static str, address: String },

    /// The server answered with an error status and no `RemoteException` (a proxy, a gateway,
    /// an authentication filter).
    #[error("the {role} at {address} answered {status}{}", body_suffix(.body))]
    Status {
        role: &'static str,
        address: String,
        status: u16,
        body: String,
    },

    /// The server answered something the protocol does not allow (no redirect where one is
    /// needed, JSON that does not parse).
    #[error("the {role} at {address}: {what}")]
    Protocol {
        role: &'static str,
        address: String,
        what: String,
    },

    /// A rename the server refused without saying why (the old rename's `false`).
    #[error("the WebHDFS server at {address} refused to rename {from} to {to}")]
    RenameRefused {
        address: String,
        from: String,
        to: String,
    },

    /// A multipart upload cannot go on: a part failed to be appended, or it was aborted.
    #[error("the multipart upload to {path} cannot go on: {why}")]
    PartFailed { path: String, why: String },
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// Exceptions a namenode raises for conditions that pass (failover, safe mode, a busy
/// server): trying again later may succeed.
const RETRIABLE_EXCEPTIONS: &[&str] = &[
    "RetriableException",
    "StandbyException",
    "SafeModeException",
    "ObserverRetryOnActiveException",
];

/// Statuses that say "later": a server error, a request timeout, throttling.
fn passing_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

impl Error {
    /// Whether trying the same operation again may succeed: the server could not be reached,
    /// a stream broke, it answered 5xx, 408 or 429, or the namenode is in safe mode or on
    /// standby.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Read { .. } => true,
            Error::Status { status, .. } => passing_status(*status),
            Error::Remote {
                status, exception, ..
            } => passing_status(*status) || RETRIABLE_EXCEPTIONS.contains(&exception.as_str()),
            _ => false,
        }
    }

    /// The `object_store::Error` for this failure on `path` (the object's path as the
    /// caller named it).
    pub(crate) fn into_object_store(self, path: &str) -> object_store::Error {
        let path = path.to_owned();
        match &self {
            Error::Remote {
                exception, status, ..
            } => match exception.as_str() {
                // The server could not tell who is asking (no user.name, an authentication
                // filter), whatever exception it names.
                _ if *status == 401 => object_store::Error::Unauthenticated {
                    path,
                    source: Box::new(self),
                },
                "FileNotFoundException" => object_store::Error::NotFound {
                    path,
                    source: Box::new(self),
                },
                "FileAlreadyExistsException" => object_store::Error::AlreadyExists {
                    path,
                    source: Box::new(self),
                },
                "AccessControlException" | "AuthorizationException" | "SecurityException" => {
                    object_store::Error::PermissionDenied {
                        path,
                        source: Box::new(self),
                    }
                }
                "InvalidToken" => object_store::Error::Unauthenticated {
                    path,
                    source: Box::new(self),
                },
                _ if *status == 404 => object_store::Error::NotFound {
                    path,
                    source: Box::new(self),
                },
                _ => generic(self),
            },
            Error::KerberosNotSupported { .. } => object_store::Error::NotSupported {
                source: Box::new(self),
            },
            Error::Status { status: 401, .. } => object_store::Error::Unauthenticated {
                path,
                source: Box::new(self),
            },
            Error::Status { status: 403, .. } => object_store::Error::PermissionDenied {
                path,
                source: Box::new(self),
            },
            Error::Status { status: 404, .. } => object_store::Error::NotFound {
                path,
                source: Box::new(self),
            },
            _ => generic(self),
        }
    }

    /// Whether the server said the path does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Error::Remote { exception, .. } if exception == "FileNotFoundException")
            || matches!(
                self,
                Error::Remote { status: 404, .. } | Error::Status { status: 404, .. }
            )
    }
}

pub(crate) const STORE: &str = "WebHDFS";

pub(crate) fn generic(e: Error) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(status: u16, exception: &str) -> Error {
        Error::Remote {
            role: "namenode",
            address: "http://nn:9870".into(),
            status,
            exception: exception.into(),
            message: String::new(),
        }
    }

    fn status(status: u16) -> Error {
        Error::Status {
            role: "namenode",
            address: "http://nn:9870".into(),
            status,
            body: String::new(),
        }
    }

    #[test]
    fn a_status_is_retriable_the_same_with_or_without_a_remote_exception() {
        for (code, retriable) in [(500, true), (503, true), (408, true), (429, true)]
            .into_iter()
            .chain([(400, false), (403, false), (404, false)])
        {
            assert_eq!(status(code).is_retriable(), retriable, "{code}");
            assert_eq!(
                remote(code, "IOException").is_retriable(),
                retriable,
                "{code}"
            );
        }
        assert!(remote(403, "StandbyException").is_retriable());
        assert!(!remote(403, "AccessControlException").is_retriable());
    }
}
