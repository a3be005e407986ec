//! The drivers' errors as the runtime's: a server that cannot be reached for now is
//! [`Error::unavailable`] (retried by a batch job's reads), everything else is fatal and
//! says what failed (authentication, a database or table that does not exist, the
//! statement the server refused) with the database's own message. A row the table's
//! constraints or types refuse is told apart ([`is_row_error`]): the sink rejects that row
//! and goes on.

use std::error::Error as _;

use runtime_core::Error;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::mysql::MySqlDatabaseError;
use sqlx::postgres::PgDatabaseError;

use crate::connect::Target;

/// What was being done when the error came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    Connect,
    /// Reading the statement's columns or the table's, when the endpoint opens.
    Describe,
    Read,
    Write,
    Commit,
}

/// The database's own message, with its code (and PostgreSQL's detail and hint), the
/// password scrubbed.
pub(crate) fn database_message(target: &Target, e: &dyn DatabaseError) -> String {
    let text = if let Some(pg) = e.try_downcast_ref::<PgDatabaseError>() {
        let mut text = format!("{} (SQLSTATE {})", pg.message(), pg.code());
        if let Some(detail) = pg.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = pg.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        text
    } else if let Some(my) = e.try_downcast_ref::<MySqlDatabaseError>() {
        match my.code() {
            Some(state) => format!("{} (error {}, SQLSTATE {state})", my.message(), my.number()),
            None => format!("{} (error {})", my.message(), my.number()),
        }
    } else {
        match e.code() {
            Some(code) => format!("{} (SQLite code {code})", e.message()),
            None => e.message().to_owned(),
        }
    };
    target.scrub(&text)
}

/// Codes: PostgreSQL's SQLSTATE, MySQL's error number, SQLite's extended result code.
enum Code<'a> {
    Pg(&'a str),
    MySql(u16, Option<&'a str>),
    Sqlite(i64),
    Other,
}

fn code_of(e: &dyn DatabaseError) -> Code<'_> {
    if let Some(pg) = e.try_downcast_ref::<PgDatabaseError>() {
        return Code::Pg(pg.code());
    }
    if let Some(my) = e.try_downcast_ref::<MySqlDatabaseError>() {
        return Code::MySql(my.number(), my.code());
    }
    match e.code().and_then(|c| c.parse::<i64>().ok()) {
        Some(c) => Code::Sqlite(c),
        None => Code::Other,
    }
}

/// Whether a write failed because of a row's values (a constraint, a type, a value out of
/// range or too long), so that the rows around it can still go in.
pub(crate) fn is_row_error(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if matches!(
        db.kind(),
        ErrorKind::UniqueViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation
            | ErrorKind::ExclusionViolation
    ) {
        return true;
    }
    match code_of(db.as_ref()) {
        // 22: data exception, 23: integrity constraint violation, 54000: a value too large
        // for an index.
        Code::Pg(state) => state.starts_with("22") || state.starts_with("23") || state == "54000",
        Code::MySql(number, state) => {
            state.is_some_and(|s| s.starts_with("22") || s.starts_with("23"))
                || matches!(
                    number,
                    1048 | 1062
                        | 1263
                        | 1264
                        | 1265
                        | 1292
                        | 1300
                        | 1364
                        | 1366
                        | 1367
                        | 1406
                        | 1411
                        | 1451
                        | 1452
                        | 1690
                        | 3140
                        | 3819
                        | 4025
                )
        }
        // SQLITE_TOOBIG, SQLITE_CONSTRAINT (every extended code), SQLITE_MISMATCH.
        Code::Sqlite(code) => matches!(code & 0xff, 18..=20),
        Code::Other => false,
    }
}

/// Whether a database error means the server cannot serve for now.
fn is_transient(e: &dyn DatabaseError) -> bool {
    match code_of(e) {
        Code::Pg(state) => {
            state.starts_with("08")
                || state.starts_with("53")
                || matches!(state, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
        }
        Code::MySql(number, _) => matches!(number, 1040 | 1053 | 1205 | 1213 | 1203),
        // SQLITE_BUSY, SQLITE_LOCKED.
        Code::Sqlite(code) => matches!(code & 0xff, 5 | 6),
        Code::Other => false,
    }
}

fn is_auth(e: &dyn DatabaseError) -> bool {
    match code_of(e) {
        Code::Pg(state) => matches!(state, "28P01" | "28000"),
        Code::MySql(number, _) => matches!(number, 1044 | 1045 | 1698),
        _ => false,
    }
}

fn is_unknown_database(e: &dyn DatabaseError) -> bool {
    match code_of(e) {
        Code::Pg(state) => state == "3D000",
        Code::MySql(number, _) => number == 1049,
        // SQLITE_CANTOPEN.
        Code::Sqlite(code) => code & 0xff == 14,
        Code::Other => false,
    }
}

fn is_missing_table(e: &dyn DatabaseError) -> bool {
    match code_of(e) {
        Code::Pg(state) => state == "42P01",
        Code::MySql(number, _) => number == 1146,
        Code::Sqlite(_) => e.message().starts_with("no such table"),
        Code::Other => false,
    }
}

/// `e` as the runtime's error for `endpoint` (which names the store and the table or
/// statement).
pub(crate) fn convert(endpoint: &str, target: &Target, what: Failure, e: sqlx::Error) -> Error {
    let user = target.spec.user.as_deref().unwrap_or("(none)");
    match &e {
        sqlx::Error::Io(io) => {
            let reason = match what {
                Failure::Connect => format!("cannot reach the database server: {io}"),
                _ => format!("the connection to the database server failed: {io}"),
            };
            Error::unavailable(endpoint, target.scrub(&reason), Some(Box::new(e)))
        }
        sqlx::Error::PoolTimedOut => Error::unavailable(
            endpoint,
            "no connection to the database server could be had in time",
            Some(Box::new(e)),
        ),
        sqlx::Error::Tls(source) => Error::endpoint_caused(
            endpoint,
            target.scrub(&format!(
                "the TLS connection to the database server failed: {source}"
            )),
            e,
        ),
        sqlx::Error::Database(db) => {
            let message = database_message(target, db.as_ref());
            let reason = if is_auth(db.as_ref()) {
                format!("authentication failed for user '{user}': {message}")
            } else if is_unknown_database(db.as_ref()) {
                match target.spec.driver {
                    endpoints::sql::SqlDriver::Sqlite => {
                        format!("the SQLite file cannot be opened: {message}")
                    }
                    _ => format!(
                        "the database '{}' does not exist: {message}",
                        target.spec.database
                    ),
                }
            } else if is_missing_table(db.as_ref()) {
                format!("the table does not exist: {message}")
            } else if is_transient(db.as_ref()) {
                return Error::unavailable(
                    endpoint,
                    format!("the database server cannot serve for now: {message}"),
                    Some(Box::new(e)),
                );
            } else {
                match what {
                    Failure::Describe => format!("the database refused the statement: {message}"),
                    Failure::Commit => format!("the commit failed: {message}"),
                    _ => format!("the database refused it: {message}"),
                }
            };
            Error::endpoint_caused(endpoint, reason, e)
        }
        _ => {
            // Anything else (a protocol error, a value the driver could not decode): its
            // whole chain, said once.
            let mut reason = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                let text = s.to_string();
                if !reason.contains(&text) {
                    reason.push_str(&format!(": {text}"));
                }
                source = s.source();
            }
            Error::endpoint_caused(endpoint, target.scrub(&reason), e)
        }
    }
}
