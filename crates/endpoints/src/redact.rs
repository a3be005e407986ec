//! Secrets out of text that names a store: connection strings and URLs as users write them
//! (`jdbc:postgresql://db/x?user=u&password=p`, `Server=db;Uid=u;Pwd=p`,
//! `https://user:pass@host/f.csv`, a presigned URL's signature) are shown, logged and
//! returned by the API only through [`redact`].

/// Keys whose value is a secret, matched ignoring case in `key=value` pairs.
const SECRET_KEYS: &[&str] = &[
    "password",
    "pwd",
    "pass",
    "passwd",
    "secret",
    "token",
    "access_token",
    "accesstoken",
    "secretaccesskey",
    "secret_access_key",
    "sessiontoken",
    "session_token",
    "apikey",
    "api_key",
    "delegation",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-security-token",
    "x-amz-credential",
];

/// What a secret is replaced with.
pub const REDACTED: &str = "***";

/// `text` with the password of any URL's user info and the value of any secret-named
/// `key=value` pair (query parameters, `;`-separated connection strings) replaced by
/// [`REDACTED`]. Text without secrets comes back unchanged.
pub fn redact(text: &str) -> String {
    redact_pairs(&redact_userinfo(text))
}

/// `scheme://user:password@host` -> `scheme://user:***@host`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or blank.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(REDACTED);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Whether `key` names a secret: one of [`SECRET_KEYS`], or any `...password` option
/// (`sslpassword`), ignoring case.
fn is_secret_key(key: &str) -> bool {
    let key = key.trim();
    SECRET_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
        || key.to_ascii_lowercase().ends_with("password")
}

/// `key=value` with a secret-named key -> `key=***`; a value is braced (ODBC's
/// `Pwd={a;b}}c}`, up to its closing brace) or ends at `&`, `;`, `,`, a blank or a quote.
fn redact_pairs(text: &str) -> String {
    let is_sep = |c: char| matches!(c, '&' | ';' | ',' | '"' | '\'') || c.is_whitespace();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (before, after) = rest.split_at(eq);
        // The key: the run of characters before '=' back to a separator or '?'.
        let key_start = before
            .rfind(|c: char| is_sep(c) || c == '?')
            .map_or(0, |i| {
                i + before[i..].chars().next().map_or(1, char::len_utf8)
            });
        let key = &before[key_start..];
        out.push_str(before);
        out.push('=');
        let value = &after[1..];
        if !is_secret_key(key) {
            rest = value;
            continue;
        }
        let lead = value.len() - value.trim_start_matches([' ', '\t']).len();
        let body = &value[lead..];
        let len = if body.starts_with('{') {
            let bytes = body.as_bytes();
            let mut i = 1;
            loop {
                match bytes.get(i) {
                    Some(b'}') if bytes.get(i + 1) == Some(&b'}') => i += 2,
                    Some(b'}') => break i + 1,
                    Some(_) => i += 1,
                    None => break body.len(),
                }
            }
        } else {
            body.find(is_sep).unwrap_or(body.len())
        };
        if len > 0 {
            out.push_str(REDACTED);
        } else {
            out.push_str(&value[..lead]);
        }
        rest = &body[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_and_connection_strings_are_hidden() {
        let cases = [
            (
                "jdbc:postgresql://db:5432/scores?user=app&password=s3cret&ssl=true",
                "jdbc:postgresql://db:5432/scores?user=app&password=***&ssl=true",
            ),
            (
                "postgres://app:s3cret@db:5432/scores",
                "postgres://app:***@db:5432/scores",
            ),
            (
                "Driver=PostgreSQL;Server=db;Uid=app;Pwd=s3cret;Database=x",
                "Driver=PostgreSQL;Server=db;Uid=app;Pwd=***;Database=x",
            ),
            (
                "https://b.s3.amazonaws.com/k.csv?X-Amz-Credential=AKIA/x&X-Amz-Signature=abc",
                "https://b.s3.amazonaws.com/k.csv?X-Amz-Credential=***&X-Amz-Signature=***",
            ),
            (
                "cannot connect to mysql://root:hunter2@10.0.0.1/db: refused",
                "cannot connect to mysql://root:***@10.0.0.1/db: refused",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(redact(text), want, "{text}");
        }
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        for text in [
            "s3://bucket/day=1/part-0.csv",
            "https://host/data.json?x=1&y=2",
            "user@host is not a URL",
            "a = b; c == d",
            "caf\u{e9}=\u{e9}t\u{e9}; na\u{ef}ve",
            "",
        ] {
            assert_eq!(redact(text), text);
        }
    }
}
