//! SQL connection strings: the `ConnectionString` of an `ODBC` transport, in the forms
//! ModelOp and people write them, read into one [`SqlTarget`]; and
//! [`crate::redact`], which hides the password of any of them.
//!
//! Forms read (any case for schemes and keys):
//! - JDBC URLs as ModelOp sends them: `jdbc:postgresql://host:5432/db?user=u&password=p`,
//!   `jdbc:postgresql:db` (localhost), `jdbc:mysql://...`, `jdbc:mariadb://...`,
//!   `jdbc:sqlite:/path/to.db`;
//! - URLs: `postgres://` or `postgresql://`, `mysql://` or `mariadb://`
//!   (`scheme://user:password@host:port/database?options`, percent-encoded), `sqlite:path`,
//!   `sqlite:///abs/path`, `sqlite::memory:`;
//! - ODBC-style `Key=Value;...` strings: `Driver` (a name containing PostgreSQL, MySQL,
//!   MariaDB or SQLite; braces allowed), `Server` (or `Host`), `Port`, `Database` (or `DB`,
//!   `Dbname`; SQLite: the file), `Uid` (or `User`, `Username`, `User ID`), `Pwd` (or
//!   `Password`); values in braces may hold `;` (`}}` is a `}`).
//!
//! Anything else is refused naming the field `Transport.ConnectionString`, without echoing
//! the string (it may hold a password). What the options mean is the SQL endpoint's to
//! decide (`endpoint-sql`); this module only reads the shape, so that the registry can match
//! credentials by host and database ([`SqlTarget::location`]) and anything showing a
//! connection string can mask it without a database driver.

use std::fmt;

use runtime_core::{Error, Result};

/// The field every refusal names.
const FIELD: &str = "Transport.ConnectionString";

/// What a masked password is shown as.
pub const MASK: &str = crate::redact::REDACTED;

/// The database engines a connection string can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SqlDriver {
    Postgres,
    /// MySQL and MariaDB (one protocol).
    MySql,
    Sqlite,
}

impl SqlDriver {
    /// The scheme of the store's name (`postgresql://host:5432/db`).
    pub fn scheme(self) -> &'static str {
        match self {
            SqlDriver::Postgres => "postgresql",
            SqlDriver::MySql => "mysql",
            SqlDriver::Sqlite => "sqlite",
        }
    }

    /// The server's port when the string names none.
    pub fn default_port(self) -> Option<u16> {
        match self {
            SqlDriver::Postgres => Some(5432),
            SqlDriver::MySql => Some(3306),
            SqlDriver::Sqlite => None,
        }
    }
}

/// How a connection string was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlForm {
    Jdbc,
    Url,
    Odbc,
}

/// A database to connect to, as a connection string describes it. Its `Debug` shows the
/// password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SqlTarget {
    pub driver: SqlDriver,
    pub form: SqlForm,
    /// The server's host name or address (without brackets for IPv6); empty for SQLite.
    pub host: String,
    /// `None`: the driver's default port.
    pub port: Option<u16>,
    /// The database; for SQLite the file's path, or `:memory:`.
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Every other option, in order, names as written: URL query parameters, other ODBC keys.
    pub options: Vec<(String, String)>,
}

impl fmt::Debug for SqlTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlTarget")
            .field("driver", &self.driver)
            .field("form", &self.form)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| MASK))
            .field("options", &self.options)
            .finish()
    }
}

impl SqlTarget {
    /// Reads a connection string in any of the forms above.
    pub fn parse(text: &str) -> Result<SqlTarget> {
        let text = text.trim();
        if text.is_empty() {
            return Err(refused("is empty"));
        }
        if text.starts_with(crate::descriptor::SECRET_PREFIX) {
            return Err(refused(
                "is a secret reference that was not resolved: the engine must be given the \
                 secret first",
            ));
        }
        let lower = text.to_ascii_lowercase();
        if let Some(rest) = strip_prefix_ci(text, "jdbc:") {
            return parse_jdbc(rest);
        }
        if lower.starts_with("sqlite:") {
            return parse_sqlite(&text["sqlite:".len()..], SqlForm::Url);
        }
        if let Some((scheme, _)) = text.split_once("://") {
            if let Some(driver) = url_driver(scheme) {
                return parse_url(driver, &text[scheme.len() + 3..], SqlForm::Url);
            }
            if scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            {
                return Err(refused(format!(
                    "names the scheme '{scheme}', which this engine does not read (it reads \
                     postgresql://, postgres://, mysql://, mariadb://, sqlite:, jdbc:postgresql:, \
                     jdbc:mysql:, jdbc:mariadb:, jdbc:sqlite: and ODBC-style Key=Value; strings)"
                )));
            }
        }
        if text.contains('=') {
            return parse_odbc(text);
        }
        Err(refused(
            "is neither a JDBC URL (jdbc:postgresql://host/db), a URL (postgresql://, mysql://, \
             sqlite:) nor an ODBC-style string (Driver=PostgreSQL;Server=host;Database=db)",
        ))
    }

    /// The store's name for logs and errors: the driver, host, port and database, never the
    /// user or password (`postgresql://db.example:5432/scores`, `sqlite:/data/x.db`).
    pub fn store(&self) -> String {
        match self.driver {
            SqlDriver::Sqlite => format!("sqlite:{}", self.database),
            driver => {
                let port = self.port.or(driver.default_port()).unwrap_or_default();
                let host = if self.host.contains(':') {
                    format!("[{}]", self.host)
                } else {
                    self.host.clone()
                };
                format!("{}://{host}:{port}/{}", driver.scheme(), self.database)
            }
        }
    }

    /// The host and path credentials are matched by: the server's host and `/database`.
    /// `None` for SQLite, a file with no credentials.
    pub fn location(&self) -> Option<(String, String)> {
        match self.driver {
            SqlDriver::Sqlite => None,
            _ => Some((self.host.clone(), format!("/{}", self.database))),
        }
    }

    /// The value of option `name` (any case), the last one given.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn refused(reason: impl fmt::Display) -> Error {
    Error::descriptor(FIELD, format!("the connection string {reason}"))
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn url_driver(scheme: &str) -> Option<SqlDriver> {
    match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => Some(SqlDriver::Postgres),
        "mysql" | "mariadb" => Some(SqlDriver::MySql),
        _ => None,
    }
}

/// `jdbc:` taken off.
fn parse_jdbc(rest: &str) -> Result<SqlTarget> {
    let (sub, after) = rest.split_once(':').unwrap_or((rest, ""));
    let driver = match sub.to_ascii_lowercase().as_str() {
        "postgresql" | "postgres" => SqlDriver::Postgres,
        "mysql" | "mariadb" => SqlDriver::MySql,
        "sqlite" => return parse_sqlite(after, SqlForm::Jdbc),
        other => {
            return Err(refused(format!(
                "is a JDBC URL for '{other}', which this engine does not read (it reads \
                 jdbc:postgresql:, jdbc:mysql:, jdbc:mariadb: and jdbc:sqlite:)"
            )))
        }
    };
    if let Some(url) = after.strip_prefix("//") {
        return parse_url(driver, url, SqlForm::Jdbc);
    }
    // `jdbc:postgresql:database` (localhost), or Connector/J's `jdbc:mysql:loadbalance://`.
    if after.contains("//") || after.is_empty() {
        return Err(refused(format!(
            "is a jdbc:{sub}: URL of a kind this engine does not read (write \
             jdbc:{sub}://host:port/database)"
        )));
    }
    parse_url(driver, &format!("localhost/{after}"), SqlForm::Jdbc)
}

/// `scheme://` taken off: `[user[:password]@]host[:port][/database][?k=v&...]`.
fn parse_url(driver: SqlDriver, rest: &str, form: SqlForm) -> Result<SqlTarget> {
    let rest = rest.split('#').next().unwrap_or(rest);
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (mut user, mut password) = (None, None);
    if let Some(userinfo) = userinfo {
        let (u, p) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if !u.is_empty() {
            user = Some(decode(u, "user")?);
        }
        if let Some(p) = p {
            password = Some(decode(p, "password")?);
        }
    }
    if hostport.contains(',') {
        return Err(refused(
            "names several hosts: this engine connects to one server",
        ));
    }
    let (host, port) = split_host_port(hostport)?;
    let database = decode(path.trim_end_matches('/'), "database")?;
    let mut options = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k, "option name")?;
        let v = decode(v, &k)?;
        match k.to_ascii_lowercase().as_str() {
            "user" => user = Some(v),
            "password" => password = Some(v),
            _ => options.push((k, v)),
        }
    }
    // PostgreSQL's URLs may leave the host to a `host` option (a socket directory).
    let host_option = driver == SqlDriver::Postgres
        && options.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
    if host.is_empty() && !host_option {
        return Err(refused("names no host"));
    }
    if database.is_empty() {
        return Err(refused("names no database"));
    }
    Ok(SqlTarget {
        driver,
        form,
        host,
        port,
        database,
        user,
        password,
        options,
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(text: &str) -> Result<(String, Option<u16>)> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| refused("has an IPv6 address without its closing ']'"))?;
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((decode(host, "host")?, port))
}

fn parse_port(p: &str) -> Result<u16> {
    match p.trim().parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(refused(format!(
            "has the port '{p}', not a number from 1 to 65535"
        ))),
    }
}

/// `sqlite:` (or `jdbc:sqlite:`) taken off: a path, `//path`, `:memory:`, options after `?`.
fn parse_sqlite(rest: &str, form: SqlForm) -> Result<SqlTarget> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = path.strip_prefix("//").unwrap_or(path);
    let path = decode(path, "path")?;
    if path.is_empty() {
        return Err(refused("names no SQLite file"));
    }
    let mut options = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k, "option name")?;
        let v = decode(v, &k)?;
        options.push((k, v));
    }
    Ok(SqlTarget {
        driver: SqlDriver::Sqlite,
        form,
        host: String::new(),
        port: None,
        database: path,
        user: None,
        password: None,
        options,
    })
}

/// The `Key=Value` pairs of an ODBC-style string, keys trimmed, braces taken off values.
fn odbc_pairs(text: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        // The key, up to '='.
        let mut key = String::new();
        let mut has_value = false;
        for (_, c) in chars.by_ref() {
            if c == '=' {
                has_value = true;
                break;
            }
            if c == ';' && key.trim().is_empty() {
                key.clear();
                continue;
            }
            if c == ';' {
                break;
            }
            key.push(c);
        }
        let key = key.trim().to_owned();
        match (key.is_empty(), has_value) {
            (true, false) => return Ok(pairs),
            (true, true) => return Err(refused("has a value without a key")),
            (false, false) => return Err(refused(format!("has the key '{key}' without a value"))),
            (false, true) => {}
        }
        // The value, up to ';' (braced: up to the closing '}', `}}` standing for '}').
        let mut value = String::new();
        while chars.peek().is_some_and(|(_, c)| *c == ' ') {
            chars.next();
        }
        if chars.peek().is_some_and(|(_, c)| *c == '{') {
            chars.next();
            loop {
                match chars.next() {
                    Some((_, '}')) if chars.peek().is_some_and(|(_, c)| *c == '}') => {
                        chars.next();
                        value.push('}');
                    }
                    Some((_, '}')) => break,
                    Some((_, c)) => value.push(c),
                    None => {
                        return Err(refused(format!(
                            "has the value of '{key}' in braces without its closing '}}'"
                        )))
                    }
                }
            }
            // Only spaces may follow the closing brace before the ';'.
            for (_, c) in chars.by_ref() {
                if c == ';' {
                    break;
                }
                if !c.is_whitespace() {
                    return Err(refused(format!(
                        "has text after the braced value of '{key}'"
                    )));
                }
            }
        } else {
            for (_, c) in chars.by_ref() {
                if c == ';' {
                    break;
                }
                value.push(c);
            }
            value = value.trim().to_owned();
        }
        pairs.push((key, value));
    }
}

fn parse_odbc(text: &str) -> Result<SqlTarget> {
    let mut driver = None;
    let (mut host, mut port, mut database) = (String::new(), None, String::new());
    let (mut user, mut password) = (None, None);
    let mut options = Vec::new();
    for (key, value) in odbc_pairs(text)? {
        match key.to_ascii_lowercase().as_str() {
            "driver" => {
                let lower = value.to_ascii_lowercase();
                driver = Some(if lower.contains("postgres") {
                    SqlDriver::Postgres
                } else if lower.contains("mysql") || lower.contains("mariadb") {
                    SqlDriver::MySql
                } else if lower.contains("sqlite") {
                    SqlDriver::Sqlite
                } else {
                    return Err(refused(format!(
                        "names the driver '{value}': this engine reads PostgreSQL, MySQL, \
                         MariaDB and SQLite"
                    )));
                });
            }
            "dsn" | "filedsn" => {
                return Err(refused(
                    "names an ODBC data source (DSN), which this engine cannot look up: give \
                     Driver, Server, Port, Database instead (or a JDBC URL)",
                ))
            }
            "server" | "host" | "hostname" | "address" => {
                // `Server=host,port` is SQL Server's; `host:port` is common enough.
                let (h, p) = split_host_port(&value)?;
                host = h;
                if p.is_some() {
                    port = p;
                }
            }
            "port" => port = Some(parse_port(&value)?),
            "database" | "db" | "dbname" => database = value,
            "uid" | "user" | "username" | "user id" => user = Some(value),
            "pwd" | "password" => password = Some(value),
            _ => options.push((key, value)),
        }
    }
    let driver = driver.ok_or_else(|| {
        refused(
            "(ODBC-style) names no Driver: give Driver=PostgreSQL, Driver=MySQL, \
             Driver=MariaDB or Driver=SQLite",
        )
    })?;
    if driver == SqlDriver::Sqlite {
        if database.is_empty() {
            return Err(refused("(ODBC-style) names no Database, the SQLite file"));
        }
        return Ok(SqlTarget {
            driver,
            form: SqlForm::Odbc,
            host: String::new(),
            port: None,
            database,
            user: None,
            password: None,
            options,
        });
    }
    if host.is_empty() {
        return Err(refused("(ODBC-style) names no Server"));
    }
    if database.is_empty() {
        return Err(refused("(ODBC-style) names no Database"));
    }
    Ok(SqlTarget {
        driver,
        form: SqlForm::Odbc,
        host,
        port,
        database,
        user,
        password,
        options,
    })
}

/// Percent-decoding of a URL part.
fn decode(text: &str, what: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => {
                    return Err(refused(format!(
                        "has a '%' in its {what} that is not a percent-encoded byte"
                    )))
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| {
        refused(format!(
            "has a {what} that is not UTF-8 once percent-decoded"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> SqlTarget {
        match SqlTarget::parse(text) {
            Ok(t) => t,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn jdbc_urls_as_modelop_sends_them() {
        let t = parsed(
            "jdbc:postgresql://db.example:5433/scores?user=u&password=p%40ss&sslmode=require",
        );
        assert_eq!(
            (
                t.driver,
                t.form,
                t.host.as_str(),
                t.port,
                t.database.as_str()
            ),
            (
                SqlDriver::Postgres,
                SqlForm::Jdbc,
                "db.example",
                Some(5433),
                "scores"
            )
        );
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref()),
            (Some("u"), Some("p@ss"))
        );
        assert_eq!(t.options, [("sslmode".to_owned(), "require".to_owned())]);
        assert_eq!(t.store(), "postgresql://db.example:5433/scores");
        assert_eq!(t.location(), Some(("db.example".into(), "/scores".into())));

        let t = parsed("jdbc:postgresql:scores");
        assert_eq!(
            (t.host.as_str(), t.database.as_str()),
            ("localhost", "scores")
        );
        let t = parsed("JDBC:MySQL://[::1]/shop?useSSL=false");
        assert_eq!(
            (t.driver, t.host.as_str(), t.port),
            (SqlDriver::MySql, "::1", None)
        );
        assert_eq!(t.store(), "mysql://[::1]:3306/shop");
        let t = parsed("jdbc:mariadb://maria:3307/shop?user=app");
        assert_eq!(
            (t.driver, t.port, t.user.as_deref()),
            (SqlDriver::MySql, Some(3307), Some("app"))
        );
        let t = parsed("jdbc:sqlite:/var/data/x.db");
        assert_eq!(
            (t.driver, t.database.as_str()),
            (SqlDriver::Sqlite, "/var/data/x.db")
        );
        assert_eq!(t.store(), "sqlite:/var/data/x.db");
        assert_eq!(t.location(), None);
    }

    #[test]
    fn urls_and_odbc_strings() {
        let t = parsed("postgres://app:s%3Bcret@10.0.0.5/scores");
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref()),
            (Some("app"), Some("s;cret"))
        );
        assert_eq!(t.store(), "postgresql://10.0.0.5:5432/scores");
        let t = parsed("mariadb://root@localhost:3306/shop");
        assert_eq!((t.driver, t.password), (SqlDriver::MySql, None));
        for (text, path) in [
            ("sqlite:///abs/x.db", "/abs/x.db"),
            ("sqlite://rel.db", "rel.db"),
            ("sqlite:rel.db?mode=ro", "rel.db"),
            ("sqlite::memory:", ":memory:"),
        ] {
            assert_eq!(parsed(text).database, path, "{text}");
        }
        let t = parsed(
            "Driver={PostgreSQL Unicode};Server=pg.local;Port=5433;Database=scores;Uid=app;\
             Pwd={a;b}}c};SSLMode=require",
        );
        assert_eq!(
            (
                t.driver,
                t.form,
                t.host.as_str(),
                t.port,
                t.database.as_str()
            ),
            (
                SqlDriver::Postgres,
                SqlForm::Odbc,
                "pg.local",
                Some(5433),
                "scores"
            )
        );
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref()),
            (Some("app"), Some("a;b}c"))
        );
        assert_eq!(t.option("sslmode"), Some("require"));
        let t =
            parsed("DRIVER={MariaDB ODBC 3.1 Driver};SERVER=m;DATABASE=shop;USER=u;PASSWORD=p;");
        assert_eq!(
            (t.driver, t.port, t.user.as_deref()),
            (SqlDriver::MySql, None, Some("u"))
        );
        let t = parsed("Driver=SQLite3;Database=/tmp/x.db");
        assert_eq!(
            (t.driver, t.database.as_str()),
            (SqlDriver::Sqlite, "/tmp/x.db")
        );
    }

    #[test]
    fn other_strings_are_refused_without_echoing_them() {
        for (text, why) in [
            ("", "is empty"),
            ("DSN=scores;UID=u;PWD=hunter2", "data source (DSN)"),
            ("jdbc:oracle:thin:@h:1521:x", "'oracle'"),
            ("jdbc:sqlserver://h;user=u;password=hunter2", "'sqlserver'"),
            ("mongodb://u:hunter2@h/db", "'mongodb'"),
            ("Driver={SQL Server};Server=h;Pwd=hunter2", "SQL Server"),
            ("Server=h;Database=d;Pwd=hunter2", "no Driver"),
            ("postgresql://u:hunter2@h", "no database"),
            ("postgresql://u:hunter2@h1,h2/db", "several hosts"),
            ("mysql://h:99999/db", "port '99999'"),
            ("just words", "neither"),
            ("secret://pg", "not resolved"),
            (
                "Driver=PostgreSQL;Server=h;Database=d;Pwd={hunter2",
                "closing",
            ),
        ] {
            let e = SqlTarget::parse(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(why) && e.contains(FIELD), "{text}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn masking_hides_every_password() {
        for (text, want) in [
            ("postgresql://app:hunter2@h/db", "postgresql://app:***@h/db"),
            (
                "jdbc:postgresql://h/db?user=u&password=hunter2&ssl=true",
                "jdbc:postgresql://h/db?user=u&password=***&ssl=true",
            ),
            (
                "jdbc:mysql://u:hunter2@h/db?PASSWORD=hunter2",
                "jdbc:mysql://u:***@h/db?PASSWORD=***",
            ),
            (
                "Driver=MySQL;Server=h;Pwd={hun;ter}}2};Database=d",
                "Driver=MySQL;Server=h;Pwd=***;Database=d",
            ),
            (
                "Driver=MySQL;Server=h;Password= hunter2 ",
                "Driver=MySQL;Server=h;Password=*** ",
            ),
            ("DSN=x;UID=u;PWD=hunter2", "DSN=x;UID=u;PWD=***"),
            ("sslpassword=hunter2&x=1", "sslpassword=***&x=1"),
            ("postgresql://h/db?user=u", "postgresql://h/db?user=u"),
            ("Driver=MySQL;Pwd=;Server=h", "Driver=MySQL;Pwd=;Server=h"),
        ] {
            assert_eq!(crate::redact(text), want, "{text}");
        }
        let t = parsed("postgresql://app:hunter2@h/db");
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn an_odbc_descriptor_locates_its_server_and_hides_its_password() {
        let d = crate::StreamDescriptor::parse(
            r#"{"Transport": {"Type": "ODBC", "SelectQuery": "select 1",
                "ConnectionString": "jdbc:postgresql://db.example:5432/scores?password=hunter2"}}"#,
        )
        .unwrap();
        assert_eq!(
            d.transport.location(),
            Some(("db.example".to_owned(), "/scores".to_owned()))
        );
        let shown = format!("{d:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("password=***"),
            "{shown}"
        );
        // The defaulted form keeps the string as given, to be read back.
        assert!(d.to_json().to_string().contains("hunter2"));
    }
}
