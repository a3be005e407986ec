//! A store's errors as the runtime's: passing ones (a refused or reset connection, a timeout,
//! a 5xx, throttling) are [`Error::unavailable`], retried by whoever reads; the others are
//! fatal and say what is wrong with which store, bucket and key. Every message is scrubbed
//! of the store's secrets.

use object_store::client::{HttpError, HttpErrorKind};
use runtime_core::Error;

use crate::target::{object_name, Store};

/// What kind of failure a store's error is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Worth trying again later.
    Passing,
    NoBucket,
    NoObject,
    Denied,
    /// The object changed between two reads of it (its ETag).
    Changed,
    Other,
}

/// The error with its sources, as one line.
pub(crate) fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        next = s.source();
    }
    text
}

/// The HTTP status a store's error carries, as its message says it.
fn status(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

pub(crate) fn kind(e: &object_store::Error) -> Kind {
    let text = chain_text(e);
    match e {
        object_store::Error::NotFound { .. } if text.contains("NoSuchBucket") => Kind::NoBucket,
        object_store::Error::NotFound { .. } => Kind::NoObject,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Kind::Denied,
        object_store::Error::Precondition { .. } => Kind::Changed,
        _ => {
            // WebHDFS's own rule decides for its errors; the S3 codes below are not its.
            if let Some(w) = in_chain::<object_store_webhdfs::Error>(e) {
                return if w.is_retriable() {
                    Kind::Passing
                } else {
                    Kind::Other
                };
            }
            if text.contains("NoSuchBucket") {
                return Kind::NoBucket;
            }
            if text.contains("NoSuchKey") {
                return Kind::NoObject;
            }
            if [
                "AccessDenied",
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
            ]
            .iter()
            .any(|c| text.contains(c))
            {
                return Kind::Denied;
            }
            if transport_failure(e) {
                return Kind::Passing;
            }
            match status(&text) {
                Some(s) if s >= 500 || s == 429 || s == 408 => Kind::Passing,
                Some(403) | Some(401) => Kind::Denied,
                Some(404) => Kind::NoObject,
                Some(412) => Kind::Changed,
                _ if [
                    "SlowDown",
                    "InternalError",
                    "RequestTimeout",
                    "ServiceUnavailable",
                ]
                .iter()
                .any(|c| text.contains(c)) =>
                {
                    Kind::Passing
                }
                _ => Kind::Other,
            }
        }
    }
}

/// The first error of type `T` in the chain from `e`.
fn in_chain<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        next = err.source();
    }
    None
}

/// Whether the chain holds a connection-level failure (refused, reset, timed out).
fn transport_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return matches!(
                h.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // The runtime's passing kinds, and a body that ended before its length: the
            // connection dropped mid-transfer.
            let kind = io.kind();
            if kind == std::io::ErrorKind::UnexpectedEof
                || Error::io(String::new(), kind.into()).is_retriable()
            {
                return true;
            }
        }
        next = err.source();
    }
    false
}

/// The S3 error code and message in an error answer's body, if the text holds one.
fn s3_says(text: &str) -> Option<String> {
    let tag = |name: &str| -> Option<&str> {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find("</")? + start;
        Some(&text[start..end])
    };
    let code = tag("Code")?;
    Some(match tag("Message") {
        Some(m) => format!("{code}: {m}"),
        None => code.to_owned(),
    })
}

/// `e`, met `doing` something (`reading`, `writing`, `listing`) with the object `key` of
/// `store`, as the runtime's error.
pub(crate) fn store_error(store: &Store, key: &str, doing: &str, e: object_store::Error) -> Error {
    let name = object_name(store, key);
    let text = store.scrub(&chain_text(&e));
    let detail = s3_says(&text).unwrap_or_else(|| text.clone());
    let bucket = store.root.strip_prefix("s3://");
    let reason = match (kind(&e), bucket) {
        (Kind::Passing, _) => {
            return Error::unavailable(
                name,
                format!(
                    "{} cannot be reached for now, {doing}: {detail}",
                    store.place
                ),
                None,
            )
        }
        (Kind::NoBucket, Some(b)) => format!("the bucket '{b}' does not exist ({})", store.place),
        (Kind::NoObject, Some(b)) => {
            let hint = if key.ends_with('/') {
                ""
            } else {
                " (a key ending in / reads every object under it)"
            };
            format!(
                "there is no object '{key}' in the bucket '{b}' ({}){hint}",
                store.place
            )
        }
        (Kind::NoObject | Kind::NoBucket, None) => {
            format!(
                "the {} answered that there is no such document: {detail}",
                store.place
            )
        }
        (Kind::Denied, _) => format!(
            "access denied {doing} ({}; credentials from {}): {detail}",
            store.place, store.identity
        ),
        (Kind::Changed, _) => format!(
            "the object changed while it was being read ({}): read it again",
            store.place
        ),
        (Kind::Other, _) => format!("{doing} failed ({}): {detail}", store.place),
    };
    Error::endpoint(name, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_codes_are_read_from_messages() {
        assert_eq!(
            status("Server returned non-2xx status code: 503 Service Unavailable: x"),
            Some(503)
        );
        assert_eq!(status("nothing"), None);
        assert_eq!(
            s3_says("... <Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>")
                .as_deref(),
            Some("NoSuchKey: The specified key does not exist.")
        );
    }

    #[test]
    fn a_dropped_connection_is_passing_and_a_missing_file_is_not() {
        use std::io::{Error as Io, ErrorKind as K};
        for kind in [K::ConnectionReset, K::TimedOut, K::UnexpectedEof] {
            assert!(transport_failure(&Io::from(kind)), "{kind:?}");
        }
        assert!(!transport_failure(&Io::from(K::NotFound)));
    }

    #[test]
    fn webhdfs_errors_are_judged_by_its_own_rule_not_by_s3_codes() {
        let hdfs = |status: u16, body: &str| object_store::Error::Generic {
            store: "WebHDFS",
            source: Box::new(object_store_webhdfs::Error::Status {
                role: "namenode",
                address: "127.0.0.1:9870".into(),
                status,
                body: body.into(),
            }),
        };
        assert_eq!(kind(&hdfs(503, "busy")), Kind::Passing);
        assert_eq!(kind(&hdfs(429, "")), Kind::Passing);
        // S3's words in a body mean nothing from a namenode.
        assert_eq!(kind(&hdfs(400, "AccessDenied; InternalError")), Kind::Other);
    }
}
