//! The pages the engine serves itself: the dashboard at `/` and the API's Swagger UI at
//! `/docs/`. Every byte is compiled into the binary (no CDN, no network); the pages use
//! relative URLs only, so they work with the engine mounted under a path prefix. The pages
//! and their assets hold no data and are open; the data they show comes from the `api/`
//! routes, which ask for the token.

use std::sync::Arc;

use axum::extract::{OriginalUri, Path};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::Error;

/// The dashboard's files, by the name they are asked for under `ui/`.
const DASHBOARD: [(&str, &str, &str); 2] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard/app.css"),
    ),
];

const INDEX: &str = include_str!("../../assets/dashboard/index.html");

/// What the pages may load and talk to: the engine itself, nothing else. Swagger UI
/// styles its elements inline, and its initializer is an inline script's sibling file.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'none'";

/// Paths (under the router, before any prefix) served without a token.
pub(crate) fn is_open_path(path: &str) -> bool {
    path == "/"
        || path == "/docs"
        || path == "/openapi.json"
        || path.starts_with("/ui/")
        || path.starts_with("/docs/")
}

fn page(content_type: &'static str, body: impl IntoResponse, cache: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// The path the client asked for with a trailing slash added, when it lacks one: the
/// pages' relative URLs resolve under it (`/engine` -> `/engine/`).
fn with_slash(uri: &OriginalUri) -> Option<Redirect> {
    let path = uri.path();
    if path.ends_with('/') {
        return None;
    }
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Some(Redirect::permanent(&format!("{path}/{query}")))
}

/// The dashboard. Its URLs are relative: asked as `/prefix/` (the engine behind a
/// proxy), they resolve under it as they are; asked as `/prefix` (the engine nested in a
/// host's router, which answers the prefix without its slash), the page names its base,
/// `prefix/`, so they still do.
pub(super) async fn index(uri: OriginalUri) -> Response {
    let path = uri.path();
    if path.ends_with('/') {
        return page("text/html; charset=utf-8", INDEX, "no-cache");
    }
    let last = path.rsplit('/').next().unwrap_or("");
    let base: String = percent_encoding::utf8_percent_encode(last, SEGMENT).to_string();
    let html = INDEX.replacen("<head>", &format!("<head><base href=\"{base}/\">"), 1);
    page("text/html; charset=utf-8", html, "no-cache")
}

/// What a path segment keeps as it is in the page's base.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The dashboard's script and style sheet.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    match DASHBOARD.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => page(content_type, *body, "no-cache"),
        None => Error::NotFound(format!("ui/{name}")).into_response(),
    }
}

/// Swagger UI's configuration: the API document next to `docs/`, by a relative URL.
pub(super) fn swagger_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    Arc::new(
        utoipa_swagger_ui::Config::new(["../openapi.json"])
            .try_it_out_enabled(false)
            .persist_authorization(false),
    )
}

/// `/docs` without its slash: to `/docs/`.
pub(super) async fn docs_root(uri: OriginalUri) -> Response {
    match with_slash(&uri) {
        Some(r) => r.into_response(),
        None => docs_file("", swagger_config()),
    }
}

/// Swagger UI's files (vendored in the binary).
pub(super) async fn docs(Path(rest): Path<String>) -> Response {
    docs_file(&rest, swagger_config())
}

fn docs_file(rest: &str, config: Arc<utoipa_swagger_ui::Config<'static>>) -> Response {
    match utoipa_swagger_ui::serve(rest, config) {
        Ok(Some(file)) => {
            let mut r = page(
                "text/html; charset=utf-8",
                file.bytes.into_owned(),
                "no-cache",
            );
            if let Ok(v) = HeaderValue::from_str(&file.content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        Ok(None) => Error::NotFound(format!("docs/{rest}")).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the API documentation page cannot be served: {e}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_paths_are_the_pages_only() {
        for p in [
            "/",
            "/ui/app.js",
            "/docs",
            "/docs/",
            "/docs/index.html",
            "/openapi.json",
        ] {
            assert!(is_open_path(p), "{p}");
        }
        for p in [
            "/api/engine",
            "/api/live",
            "/metrics",
            "/uix",
            "/docsx",
            "/api/jobs",
        ] {
            assert!(!is_open_path(p), "{p}");
        }
    }

    #[test]
    fn swagger_ui_is_compiled_in_and_points_at_the_relative_document() {
        let index = utoipa_swagger_ui::serve("", swagger_config())
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&index.bytes).contains("swagger"));
        let init = utoipa_swagger_ui::serve("swagger-initializer.js", swagger_config())
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&init.bytes).contains("../openapi.json"));
    }
}
