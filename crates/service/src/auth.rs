//! Who may call the engine: bearer tokens on the control and scoring ports, and, on a
//! loopback engine without a token, a check that requests come from a loopback name (so a
//! web page cannot drive the engine through DNS rebinding).
//!
//! The policy is decided once from the configuration ([`Policy::control`],
//! [`Policy::scoring`]) and applied by [`require`] as a layer over each router. Refusals
//! are [`Error::Unauthorized`] (401) and [`Error::Forbidden`] (403), JSON like every
//! control API error.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::error::{Error, Result};

/// Shortest token accepted: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

/// Routes open without a token, for load balancers' and orchestrators' probes: liveness
/// and readiness, which tell no more than whether the engine is up and its model ready.
/// The control port also serves its pages open (the dashboard, its assets, the API's
/// document and Swagger UI: no data; `crate::api::is_open_path`).
const OPEN_PATHS: [&str; 2] = ["/1/health", "/ready"];

/// The Open Inference Protocol's probes, open on both ports (the scoring port is where a
/// V2 client looks for them).
const OPEN_V2_PATHS: [&str; 2] = ["/v2/health/live", "/v2/health/ready"];

/// A secret token. Its text never appears in Debug output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from configuration text: surrounding whitespace (a file's newline) is
    /// trimmed; it must be at least [`MIN_TOKEN_LEN`] visible ASCII characters.
    pub fn new(key: &str, text: &str) -> Result<Token> {
        let t = text.trim();
        if t.len() < MIN_TOKEN_LEN {
            return Err(Error::config(
                key,
                format!(
                    "a token must have at least {MIN_TOKEN_LEN} characters (`engine token` prints a fresh one)"
                ),
            ));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::config(
                key,
                "a token must be visible ASCII characters, without spaces",
            ));
        }
        Ok(Token(t.to_owned()))
    }

    /// The token's text, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What one port asks of a request.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Required as `Authorization: Bearer ...` on every route but the open ones.
    token: Option<Token>,
    /// No token and a loopback bind: `Host` and `Origin` must be loopback names.
    loopback_only: bool,
    /// Whether `/1/health` and `/ready` are served here without a token.
    open_health: bool,
}

impl Policy {
    /// The control port: the control token when there is one; health and readiness
    /// always open.
    pub fn control(config: &Config) -> Policy {
        Policy {
            token: config.auth_token.clone(),
            loopback_only: config.auth_token.is_none() && config.bind.is_loopback(),
            open_health: true,
        }
    }

    /// The separate scoring port: its own token, else none when `scoringOpen`, else the
    /// control token.
    pub fn scoring(config: &Config) -> Policy {
        let token = if config.scoring_open {
            None
        } else {
            config
                .scoring_auth_token
                .clone()
                .or_else(|| config.auth_token.clone())
        };
        Policy {
            loopback_only: token.is_none() && config.bind.is_loopback(),
            token,
            open_health: false,
        }
    }

    /// Whether a request for `path` with `headers` may go on.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<()> {
        if OPEN_V2_PATHS.contains(&path)
            || (self.open_health && (OPEN_PATHS.contains(&path) || crate::api::is_open_path(path)))
        {
            return Ok(());
        }
        if let Some(token) = &self.token {
            let presented = headers
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                .and_then(|v| strip_bearer(v));
            return match presented {
                None => Err(Error::Unauthorized(
                    "authentication required: send the engine's token as 'Authorization: Bearer <token>'"
                        .into(),
                )),
                Some(p) if token.matches(p) => Ok(()),
                Some(_) => Err(Error::Unauthorized("the bearer token is not valid".into())),
            };
        }
        if self.loopback_only {
            if let Some(host) = headers.get(header::HOST) {
                let host = host.to_str().unwrap_or("");
                if !is_loopback_host(host) {
                    return Err(Error::Forbidden(format!(
                        "this engine serves loopback names only without a token; Host '{}' is not one",
                        host.escape_default()
                    )));
                }
            }
            if let Some(origin) = headers.get(header::ORIGIN) {
                let origin = origin.to_str().unwrap_or("");
                let (scheme, origin_host) = origin.split_once("://").unwrap_or(("", ""));
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                // A page of another local server (a dev server on localhost:3000) is
                // another origin too: only pages the engine serves itself may call it.
                let default_port = if scheme.eq_ignore_ascii_case("https") {
                    443
                } else {
                    80
                };
                let same_port = port_of(origin_host, default_port) == port_of(host, default_port);
                if !is_loopback_host(origin_host) || !same_port {
                    return Err(Error::Forbidden(format!(
                        "this engine serves requests from its own loopback origin only without a token; Origin '{}' is not it",
                        origin.escape_default()
                    )));
                }
            }
        }
        Ok(())
    }
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// The port of `host[:port]` (`[ip]:port` too), `default` when it names none.
fn port_of(host: &str, default: u16) -> Option<u16> {
    let after = match host.rsplit_once(']') {
        Some((_, rest)) => rest,
        None => host,
    };
    match after.rsplit_once(':') {
        Some((_, port)) => port.parse().ok(),
        None => Some(default),
    }
}

/// `localhost`, `*.localhost`, `127.x.x.x` or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The layer applying a port's policy.
pub async fn require(State(policy): State<Arc<Policy>>, request: Request, next: Next) -> Response {
    match policy.check(request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn ports_of_hosts() {
        assert_eq!(port_of("localhost:8003", 80), Some(8003));
        assert_eq!(port_of("localhost", 80), Some(80));
        assert_eq!(port_of("[::1]:8003", 80), Some(8003));
        assert_eq!(port_of("[::1]", 443), Some(443));
        assert_eq!(port_of("localhost:x", 80), None);
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8003",
            "LOCALHOST.",
            "app.localhost:1",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8003",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8003",
            "localhost.evil.example",
            "10.0.0.1:8003",
            "[::2]:1",
            "127.0.0.1:80:80",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        let t = Token::new("authToken", " 0123456789abcdef\n").unwrap();
        assert!(t.matches(b"0123456789abcdef"));
        assert!(!t.matches(b"0123456789abcdeF"));
        assert!(!t.matches(b"0123456789abcde"));
        assert!(!format!("{t:?}").contains("0123"));
        assert!(Token::new("authToken", "short").is_err());
        let p = Policy {
            token: Some(t),
            loopback_only: false,
            open_health: true,
        };
        let mut h = HeaderMap::new();
        assert!(p.check("/1/health", &h).is_ok());
        assert!(p.check("/ready", &h).is_ok());
        assert!(matches!(
            p.check("/api/jobs", &h),
            Err(Error::Unauthorized(_))
        ));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer 0123456789abcdef"),
        );
        assert!(p.check("/api/jobs", &h).is_ok());
    }
}
