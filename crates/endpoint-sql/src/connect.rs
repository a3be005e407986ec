//! A database to connect to: the descriptor's connection string read, the registry's
//! credential filled in, the driver's options checked, and connecting with a deadline.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use endpoints::sql::{SqlDriver, SqlTarget};
use endpoints::Credential;
use runtime_core::{Error, Result};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use crate::error::{self, Failure};
use crate::SqlSettings;

const FIELD: &str = "Transport.ConnectionString";

/// Connector/J and pgJDBC options that tune the Java driver only: accepted and ignored.
const JDBC_ONLY: &[&str] = &[
    // pgJDBC
    "prepareThreshold",
    "preparedStatementCacheQueries",
    "reWriteBatchedInserts",
    "tcpKeepAlive",
    "socketTimeout",
    "loginTimeout",
    "stringtype",
    "binaryTransfer",
    "defaultRowFetchSize",
    "readOnly",
    "assumeMinServerVersion",
    "logUnclosedConnections",
    // Connector/J, MariaDB Connector/J
    "useUnicode",
    "characterEncoding",
    "serverTimezone",
    "allowPublicKeyRetrieval",
    "autoReconnect",
    "zeroDateTimeBehavior",
    "rewriteBatchedStatements",
    "useLegacyDatetimeCode",
    "useServerPrepStmts",
    "cachePrepStmts",
    "prepStmtCacheSize",
    "prepStmtCacheSqlLimit",
    "useCursorFetch",
    "permitMysqlScheme",
    "allowMultiQueries",
    "useCompression",
    "tinyInt1isBit",
    "useAffectedRows",
];

/// The driver's options, built once when the endpoint opens.
#[derive(Clone)]
enum Options {
    Pg(PgConnectOptions),
    MySql(MySqlConnectOptions),
    Sqlite(SqliteConnectOptions),
}

/// A connection of one of the drivers.
pub(crate) enum Conn {
    Pg(PgConnection),
    MySql(MySqlConnection),
    Sqlite(SqliteConnection),
}

impl Conn {
    /// Closes the connection cleanly (a transaction still open is rolled back by the
    /// server). Errors are of no interest once the work is done.
    pub(crate) async fn close(self) {
        let _ = match self {
            Conn::Pg(c) => c.close().await,
            Conn::MySql(c) => c.close().await,
            Conn::Sqlite(c) => c.close().await,
        };
    }
}

/// A database the endpoint reaches. Its `Debug` names the store, never a secret.
pub(crate) struct Target {
    pub(crate) spec: SqlTarget,
    /// `postgresql://host:5432/db`: what logs and errors call it.
    pub(crate) store: String,
    options: Options,
    connect_timeout: Duration,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("store", &self.store)
            .field("user", &self.spec.user)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Reads `connection_string`, takes the user and password it lacks from `credential`
    /// (the registry's entry for its host and database), and checks its options.
    pub(crate) fn resolve(
        connection_string: &str,
        credential: Option<&Credential>,
        settings: &SqlSettings,
    ) -> Result<Arc<Target>> {
        let mut spec = SqlTarget::parse(connection_string)?;
        if let Some(c) = credential {
            if spec.user.is_none() {
                spec.user.clone_from(&c.username);
            }
            // The credential's password goes with its user (or with any user, when it names
            // none).
            let same_user = c.username.is_none() || c.username == spec.user;
            if spec.password.is_none() && same_user {
                spec.password.clone_from(&c.password);
            }
        }
        for (what, value) in [("user", &spec.user), ("password", &spec.password)] {
            if let Some(name) = value
                .as_deref()
                .and_then(|v| v.strip_prefix(endpoints::descriptor::SECRET_PREFIX))
            {
                return Err(Error::descriptor(
                    FIELD,
                    format!(
                        "the {what} is the secret reference 'secret://{name}', which is not \
                         resolved inside a connection string: make the whole ConnectionString \
                         a secret, or give the {what} in the engine's credentials for host '{}'",
                        spec.host
                    ),
                ));
            }
        }
        let connect_timeout = option_seconds(&spec)?.unwrap_or(settings.connect_timeout);
        let options = match spec.driver {
            SqlDriver::Postgres => Options::Pg(pg_options(&spec, settings)?),
            SqlDriver::MySql => Options::MySql(mysql_options(&spec)?),
            SqlDriver::Sqlite => Options::Sqlite(sqlite_options(&spec)?),
        };
        Ok(Arc::new(Target {
            store: spec.store(),
            spec,
            options,
            connect_timeout,
        }))
    }

    /// How long connecting may take.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Connects, within the connect timeout. `endpoint` names the endpoint in errors.
    pub(crate) async fn connect(&self, endpoint: &str) -> Result<Conn> {
        let connecting = async {
            Ok::<_, sqlx::Error>(match &self.options {
                Options::Pg(o) => Conn::Pg(PgConnection::connect_with(o).await?),
                Options::MySql(o) => Conn::MySql(MySqlConnection::connect_with(o).await?),
                Options::Sqlite(o) => Conn::Sqlite(SqliteConnection::connect_with(o).await?),
            })
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(error::convert(endpoint, self, Failure::Connect, e)),
            Err(_) => Err(Error::unavailable(
                endpoint,
                format!(
                    "the database server did not answer within {} s",
                    self.connect_timeout.as_secs_f64()
                ),
                None,
            )),
        }
    }

    /// Hides the password in a message from elsewhere (a driver's error).
    pub(crate) fn scrub(&self, text: &str) -> String {
        match self.spec.password.as_deref() {
            Some(p) if p.len() >= 3 => text.replace(p, endpoints::sql::MASK),
            _ => text.to_owned(),
        }
    }
}

/// An option's value by any of its names.
fn option<'a>(spec: &'a SqlTarget, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| spec.option(n))
}

/// `connect_timeout` (seconds; libpq's) or `connectTimeout` (milliseconds; Connector/J's).
fn option_seconds(spec: &SqlTarget) -> Result<Option<Duration>> {
    let bad = |name: &str, v: &str| {
        Error::descriptor(
            FIELD,
            format!("the option {name}={v} is not a whole number"),
        )
    };
    if let Some(v) = spec.option("connect_timeout") {
        let secs: u64 = v.trim().parse().map_err(|_| bad("connect_timeout", v))?;
        return Ok((secs > 0).then(|| Duration::from_secs(secs)));
    }
    if let Some(v) = spec.option("connectTimeout") {
        let ms: u64 = v.trim().parse().map_err(|_| bad("connectTimeout", v))?;
        return Ok((ms > 0).then(|| Duration::from_millis(ms)));
    }
    Ok(None)
}

/// Refuses an option nobody here reads, so a setting is never ignored silently.
fn check_known(spec: &SqlTarget, known: &[&str]) -> Result<()> {
    for (name, _) in &spec.options {
        let ok = known.iter().any(|k| k.eq_ignore_ascii_case(name))
            || JDBC_ONLY.iter().any(|k| k.eq_ignore_ascii_case(name))
            || name.eq_ignore_ascii_case("connect_timeout")
            || name.eq_ignore_ascii_case("connectTimeout");
        if !ok {
            let mut all: Vec<&str> = known.to_vec();
            all.extend(["connect_timeout", "connectTimeout"]);
            return Err(Error::descriptor(
                FIELD,
                format!(
                    "the option '{name}' is not one this engine reads for {} (it reads: {}; and \
                     ignores the Java drivers' own tuning options)",
                    driver_label(spec.driver),
                    all.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn driver_label(driver: SqlDriver) -> &'static str {
    match driver {
        SqlDriver::Postgres => "PostgreSQL",
        SqlDriver::MySql => "MySQL/MariaDB",
        SqlDriver::Sqlite => "SQLite",
    }
}

fn bad_value(name: &str, value: &str, expected: &str) -> Error {
    Error::descriptor(
        FIELD,
        format!("the option {name}={value} is not understood (expected {expected})"),
    )
}

fn pg_options(spec: &SqlTarget, settings: &SqlSettings) -> Result<PgConnectOptions> {
    check_known(
        spec,
        &[
            "sslmode",
            "ssl",
            "sslrootcert",
            "sslcert",
            "sslkey",
            "application_name",
            "ApplicationName",
            "host",
            "currentSchema",
            "search_path",
        ],
    )?;
    // sqlx takes libpq's PG* environment variables as defaults; everything the string can say
    // is set here, so they fill in only what it does not (client certificates).
    let socket_dir = spec.option("host").filter(|h| h.starts_with('/'));
    let host = match socket_dir {
        Some(dir) => dir.to_owned(),
        None => spec.host.clone(),
    };
    let mut o = PgConnectOptions::new_without_pgpass()
        .host(&host)
        .port(spec.port.unwrap_or(5432))
        .database(&spec.database)
        .username(spec.user.as_deref().unwrap_or("postgres"))
        .password(spec.password.as_deref().unwrap_or(""))
        .application_name(
            option(spec, &["application_name", "ApplicationName"])
                .unwrap_or(&settings.application_name),
        )
        // Rows are read once: no statement is worth caching.
        .statement_cache_capacity(0);
    let ssl = match (spec.option("sslmode"), spec.option("ssl")) {
        (Some(m), _) => match m.to_ascii_lowercase().as_str() {
            "disable" => PgSslMode::Disable,
            "allow" => PgSslMode::Allow,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            _ => {
                return Err(bad_value(
                    "sslmode",
                    m,
                    "disable, allow, prefer, require, verify-ca or verify-full",
                ))
            }
        },
        (None, Some(v)) if v.eq_ignore_ascii_case("true") => PgSslMode::Require,
        (None, Some(v)) if v.eq_ignore_ascii_case("false") => PgSslMode::Disable,
        (None, Some(v)) => return Err(bad_value("ssl", v, "true or false")),
        (None, None) => PgSslMode::Prefer,
    };
    o = o.ssl_mode(ssl);
    if let Some(p) = spec.option("sslrootcert") {
        o = o.ssl_root_cert(PathBuf::from(p));
    }
    if let Some(p) = spec.option("sslcert") {
        o = o.ssl_client_cert(PathBuf::from(p));
    }
    if let Some(p) = spec.option("sslkey") {
        o = o.ssl_client_key(PathBuf::from(p));
    }
    if let Some(schema) = option(spec, &["currentSchema", "search_path"]) {
        o = o.options([("search_path", schema)]);
    }
    Ok(o.disable_statement_logging())
}

fn mysql_options(spec: &SqlTarget) -> Result<MySqlConnectOptions> {
    check_known(
        spec,
        &[
            "sslMode",
            "ssl-mode",
            "useSSL",
            "requireSSL",
            "sslca",
            "ssl-ca",
            "serverSslCert",
            "sslcert",
            "ssl-cert",
            "sslkey",
            "ssl-key",
        ],
    )?;
    let mut o = MySqlConnectOptions::new()
        .host(&spec.host)
        .port(spec.port.unwrap_or(3306))
        .database(&spec.database)
        .username(spec.user.as_deref().unwrap_or("root"))
        // `||` keeps the meaning the server gives it in the user's queries.
        .pipes_as_concat(false)
        // Timestamps travel in UTC both ways.
        .timezone(Some("+00:00".to_owned()))
        .charset("utf8mb4");
    if let Some(p) = spec.password.as_deref() {
        o = o.password(p);
    }
    let mode = option(spec, &["sslMode", "ssl-mode"]);
    let use_ssl = option(spec, &["useSSL", "requireSSL"]);
    let ssl = match (mode, use_ssl) {
        (Some(m), _) => match m.to_ascii_uppercase().replace('-', "_").as_str() {
            "DISABLED" | "DISABLE" => MySqlSslMode::Disabled,
            "PREFERRED" | "PREFER" => MySqlSslMode::Preferred,
            "REQUIRED" | "REQUIRE" | "TRUST" => MySqlSslMode::Required,
            "VERIFY_CA" => MySqlSslMode::VerifyCa,
            "VERIFY_IDENTITY" | "VERIFY_FULL" => MySqlSslMode::VerifyIdentity,
            _ => {
                return Err(bad_value(
                    "sslMode",
                    m,
                    "DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY",
                ))
            }
        },
        (None, Some(v)) if v.eq_ignore_ascii_case("true") => MySqlSslMode::Required,
        (None, Some(v)) if v.eq_ignore_ascii_case("false") => MySqlSslMode::Disabled,
        (None, Some(v)) => return Err(bad_value("useSSL", v, "true or false")),
        (None, None) => MySqlSslMode::Preferred,
    };
    o = o.ssl_mode(ssl);
    if let Some(p) = option(spec, &["sslca", "ssl-ca", "serverSslCert"]) {
        o = o.ssl_ca(PathBuf::from(p));
    }
    if let Some(p) = option(spec, &["sslcert", "ssl-cert"]) {
        o = o.ssl_client_cert(PathBuf::from(p));
    }
    if let Some(p) = option(spec, &["sslkey", "ssl-key"]) {
        o = o.ssl_client_key(PathBuf::from(p));
    }
    Ok(o.disable_statement_logging())
}

fn sqlite_options(spec: &SqlTarget) -> Result<SqliteConnectOptions> {
    check_known(spec, &["mode"])?;
    let mut o = if spec.database == ":memory:" {
        SqliteConnectOptions::new().in_memory(true)
    } else {
        SqliteConnectOptions::new().filename(&spec.database)
    };
    match spec.option("mode").map(str::to_ascii_lowercase).as_deref() {
        None | Some("rw") => {}
        Some("ro") => o = o.read_only(true),
        Some("rwc") => o = o.create_if_missing(true),
        Some("memory") => o = o.in_memory(true),
        Some(_) => {
            return Err(bad_value(
                "mode",
                spec.option("mode").unwrap_or_default(),
                "ro, rw, rwc or memory",
            ))
        }
    }
    Ok(o.disable_statement_logging())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str, credential: Option<&Credential>) -> Result<Arc<Target>> {
        Target::resolve(text, credential, &SqlSettings::default())
    }

    #[test]
    fn credentials_fill_in_what_the_string_lacks() {
        let mut c = Credential::for_host("db.example");
        c.username = Some("app".into());
        c.password = Some("from-credentials".into());
        let t = resolve("jdbc:postgresql://db.example/scores", Some(&c)).unwrap();
        assert_eq!(
            (t.spec.user.as_deref(), t.spec.password.as_deref()),
            (Some("app"), Some("from-credentials"))
        );
        // The string's own user and password win; another user's password is not taken.
        let t = resolve("postgresql://me:mine@db.example/scores", Some(&c)).unwrap();
        assert_eq!(t.spec.password.as_deref(), Some("mine"));
        let t = resolve("postgresql://other@db.example/scores", Some(&c)).unwrap();
        assert_eq!(
            (t.spec.user.as_deref(), t.spec.password.as_deref()),
            (Some("other"), None)
        );
        assert_eq!(t.store, "postgresql://db.example:5432/scores");
        assert!(!format!("{t:?}").contains("from-credentials"));
    }

    #[test]
    fn options_are_read_or_refused_by_name() {
        let t = resolve(
            "jdbc:mysql://h/db?user=u&password=p&useSSL=false&characterEncoding=UTF-8&connectTimeout=2500",
            None,
        )
        .unwrap();
        assert_eq!(t.connect_timeout, Duration::from_millis(2500));
        let t = resolve("postgresql://h/db?sslmode=require&connect_timeout=7", None).unwrap();
        assert_eq!(t.connect_timeout, Duration::from_secs(7));
        for (text, says) in [
            ("postgresql://h/db?sslmode=sometimes", "sslmode=sometimes"),
            ("postgresql://h/db?frobnicate=1", "'frobnicate'"),
            ("jdbc:mysql://h/db?sslMode=maybe", "sslMode=maybe"),
            ("Driver=SQLite;Database=/x.db;Timeout=5", "'Timeout'"),
            ("sqlite:/x.db?mode=sideways", "mode=sideways"),
            (
                "Driver=PostgreSQL;Server=h;Database=d;Uid=u;Pwd=secret://pw",
                "secret reference",
            ),
            (
                "postgresql://h/db?connect_timeout=soon",
                "connect_timeout=soon",
            ),
        ] {
            let e = resolve(text, None)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(says) && e.contains(FIELD), "{text}: {e}");
        }
    }

    #[test]
    fn passwords_are_scrubbed_from_messages() {
        let t = resolve("postgresql://u:s3cret-pw@h/db", None).unwrap();
        assert_eq!(t.scrub("failed for s3cret-pw here"), "failed for *** here");
    }
}
