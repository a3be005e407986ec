//! The environment model code runs with. Worker processes do not inherit the engine's
//! environment wholesale: its token, its `ENGINE_*` and `MODELOP_*` settings and whatever
//! credentials the engine's own environment holds stay out of reach of the models it runs.
//! A worker gets the variables of an allow-list (what a Python or R process and common
//! libraries need), the ones an operator names explicitly, and what the engine sets for
//! the job on top (`HOME`, ...).
//!
//! Nothing here reads the environment: the binary hands its variables in.

use std::ffi::{OsStr, OsString};

/// Variables passed to workers by name.
pub const INHERITED: [&str; 33] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "HOSTNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TERM",
    "TMPDIR",
    "TEMP",
    "TMP",
    "LD_LIBRARY_PATH",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
];

/// Variables passed to workers by prefix: locale categories, the interpreters' own
/// settings (`PYTHONPATH`, `PYTHONHASHSEED`, `R_LIBS`, `R_HOME`...).
pub const INHERITED_PREFIXES: [&str; 3] = ["LC_", "PYTHON", "R_"];

/// Whether `name` matches one of `patterns`: a name, or a prefix ending in `*`.
fn named(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == p,
    })
}

/// Whether a worker inherits the variable `name`, given the operator's extra `allowed`
/// names (exact, or a prefix ending in `*`).
pub fn inherited(name: &OsStr, allowed: &[String]) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    INHERITED.contains(&name)
        || INHERITED_PREFIXES.iter().any(|p| name.starts_with(p))
        || named(name, allowed)
}

/// The variables of `vars` (the engine's environment) a worker starts with.
pub fn worker_environment(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    allowed: &[String],
) -> Vec<(OsString, OsString)> {
    vars.into_iter()
        .filter(|(k, _)| inherited(k, allowed))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_and_what_models_need_goes_through() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
            ("PYTHONPATH", "/x"),
            ("R_LIBS_USER", "/r"),
            ("https_proxy", "http://proxy:3128"),
            ("ENGINE_TOKEN", "t"),
            ("ENGINE_SCORING_TOKEN", "t"),
            ("MODELOP_APPLICATION_JSON", "/etc/app.json"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("PIP_INDEX_URL", "https://user:pw@index"),
            ("DB_URL", "postgres://"),
            ("FEATURE_A", "1"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let allowed = ["DB_URL".to_owned(), "FEATURE_*".to_owned()];
        let got: Vec<String> = worker_environment(vars, &allowed)
            .into_iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "PATH",
                "LANG",
                "LC_ALL",
                "PYTHONPATH",
                "R_LIBS_USER",
                "https_proxy",
                "DB_URL",
                "FEATURE_A"
            ]
        );
    }
}
