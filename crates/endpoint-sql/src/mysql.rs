//! MySQL and MariaDB: column types, values read through the driver's binary protocol, and
//! values bound as parameters of multi-row `INSERT`s.

use runtime_core::Value;
use sqlx::mysql::types::MySqlTime;
use sqlx::mysql::{MySql, MySqlArguments, MySqlTypeInfo, MySqlValueRef};
use sqlx::{Arguments, Decode, Type, TypeInfo};

use crate::time;
use crate::types::{integral, json_text, Param};

/// How a MySQL column's values are read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MyKind {
    /// `TINYINT(1)`, `BOOLEAN`.
    Bool,
    Int,
    UInt,
    Float,
    Double,
    Decimal,
    Text,
    Bytes,
    Json,
    Date,
    Time,
    DateTime,
    /// `TIMESTAMP`: stored in UTC, read and written in UTC (the session's time zone).
    Timestamp,
    Year,
    Bit,
    /// The type of a `NULL` literal.
    Null,
    Other,
}

impl MyKind {
    pub(crate) fn of(ty: &MySqlTypeInfo) -> MyKind {
        let name = ty.name();
        match name {
            "BOOLEAN" => MyKind::Bool,
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => MyKind::Int,
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
            | "BIGINT UNSIGNED" => MyKind::UInt,
            "FLOAT" => MyKind::Float,
            "DOUBLE" => MyKind::Double,
            "DECIMAL" => MyKind::Decimal,
            "JSON" => MyKind::Json,
            "DATE" => MyKind::Date,
            "TIME" => MyKind::Time,
            "DATETIME" => MyKind::DateTime,
            "TIMESTAMP" => MyKind::Timestamp,
            "YEAR" => MyKind::Year,
            "BIT" => MyKind::Bit,
            "NULL" => MyKind::Null,
            "SET" => MyKind::Text,
            "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
                // The binary flag also marks text in a `_bin` collation: only the `binary`
                // character set makes bytes.
                if <str as Type<MySql>>::compatible(ty) {
                    MyKind::Text
                } else {
                    MyKind::Bytes
                }
            }
            _ => MyKind::Other,
        }
    }
}

fn err(e: sqlx::error::BoxDynError) -> String {
    e.to_string()
}

/// A value of a column of `kind`.
pub(crate) fn decode(kind: MyKind, v: MySqlValueRef<'_>) -> Result<Value, String> {
    Ok(match kind {
        MyKind::Bool => Value::Bool(<i64 as Decode<MySql>>::decode(v).map_err(err)? != 0),
        MyKind::Int | MyKind::Year => {
            Value::Int(<i64 as Decode<MySql>>::decode(v).map_err(err)?.into())
        }
        MyKind::UInt => Value::Int(<u64 as Decode<MySql>>::decode(v).map_err(err)?.into()),
        MyKind::Float => Value::Float(time::widen(<f32 as Decode<MySql>>::decode(v).map_err(err)?)),
        MyKind::Double => Value::Float(<f64 as Decode<MySql>>::decode(v).map_err(err)?),
        MyKind::Decimal => {
            let s = <&str as Decode<MySql>>::decode(v).map_err(err)?;
            decimal(s)?
        }
        MyKind::Text => Value::from(
            <&str as Decode<MySql>>::decode(v)
                .map_err(|e| format!("the text is not UTF-8 ({e})"))?
                .to_owned(),
        ),
        MyKind::Bytes | MyKind::Bit => {
            Value::Bytes(<&[u8] as Decode<MySql>>::decode(v).map_err(err)?.to_vec())
        }
        MyKind::Json => {
            let s = <&str as Decode<MySql>>::decode(v).map_err(err)?;
            serde_json::from_str::<Value>(s)
                .map_err(|e| format!("the JSON does not parse ({e})"))?
        }
        MyKind::Date => Value::from(time::date(
            <chrono::NaiveDate as Decode<MySql>>::decode(v).map_err(err)?,
        )),
        MyKind::Time => Value::from(mysql_time(
            <MySqlTime as Decode<MySql>>::decode(v).map_err(err)?,
        )),
        MyKind::DateTime => Value::from(time::naive(
            <chrono::NaiveDateTime as Decode<MySql>>::decode(v).map_err(err)?,
        )),
        MyKind::Timestamp => Value::from(time::utc_text(
            <chrono::NaiveDateTime as Decode<MySql>>::decode(v).map_err(err)?,
        )),
        MyKind::Null => Value::Null,
        MyKind::Other => return Err("its type is not one this engine reads".into()),
    })
}

/// A `DECIMAL`'s text: an integer when it has no fractional digits, else a float.
fn decimal(s: &str) -> Result<Value, String> {
    if !s.contains(['.', 'e', 'E']) {
        if let Ok(i) = s.parse::<i128>() {
            return Ok(Value::Int(i));
        }
    }
    s.parse::<f64>()
        .map(Value::Float)
        .map_err(|e| format!("the decimal {s} does not read ({e})"))
}

/// A `TIME` (an interval from -838:59:59 to 838:59:59) as `[-]HH:MM:SS[.ffffff]`.
fn mysql_time(t: MySqlTime) -> String {
    let sign = if t.is_negative() { "-" } else { "" };
    let mut s = format!(
        "{sign}{:02}:{:02}:{:02}",
        t.hours(),
        t.minutes(),
        t.seconds()
    );
    let us = t.microseconds();
    if us != 0 {
        let frac = format!("{us:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s
}

/// A value as the parameter for a column of `kind`, or why it cannot be one.
pub(crate) fn param(kind: MyKind, v: &Value) -> Result<Param, String> {
    Ok(match (kind, v) {
        (_, Value::Null) => Param::Null,
        (MyKind::Json, v) => Param::Text(json_text(v)?),
        (_, Value::Bool(b)) => Param::Bool(*b),
        (_, Value::Int(i)) => match (i64::try_from(*i), u64::try_from(*i)) {
            (Ok(i), _) => Param::I64(i),
            (_, Ok(u)) => Param::U64(u),
            _ => Param::Text(i.to_string()),
        },
        (MyKind::Int | MyKind::UInt | MyKind::Bool | MyKind::Year, Value::Float(f)) => {
            // MySQL would round 2.5 into an integer column without a word.
            match integral(*f).map(i64::try_from) {
                Some(Ok(i)) => Param::I64(i),
                _ => return Err(format!("{f} is not an integer")),
            }
        }
        (_, Value::Float(f)) if !f.is_finite() => return Err(format!("MySQL cannot store {f}")),
        (_, Value::Float(f)) => Param::F64(*f),
        (MyKind::DateTime | MyKind::Timestamp, Value::String(s)) => {
            match time::parse_timestamp(s) {
                Some(t) => Param::DateTime(t),
                // Left to the server, which reads forms of its own.
                None => Param::Text(s.to_string()),
            }
        }
        (_, Value::String(s)) => Param::Text(s.to_string()),
        (_, Value::Bytes(b)) => Param::Bytes(b.clone()),
        (_, Value::Array(_) | Value::Map(_)) => Param::Text(json_text(v)?),
    })
}

/// Binds `p` as the next parameter.
pub(crate) fn bind(args: &mut MySqlArguments, p: &Param) -> Result<(), sqlx::error::BoxDynError> {
    match p {
        Param::Null => args.add(Option::<String>::None),
        Param::Bool(b) => args.add(*b),
        Param::I64(i) => args.add(*i),
        Param::U64(u) => args.add(*u),
        Param::F64(f) => args.add(*f),
        Param::Text(s) => args.add(s.as_str()),
        Param::Bytes(b) => args.add(b.as_slice()),
        Param::DateTime(t) => args.add(*t),
    }
}

/// A backquoted identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_integers_when_whole() {
        assert_eq!(
            decimal("12345678901234567890").unwrap(),
            Value::Int(12345678901234567890)
        );
        assert_eq!(decimal("-2.50").unwrap(), Value::Float(-2.5));
    }

    #[test]
    fn floats_into_integer_columns_must_be_whole() {
        assert_eq!(
            param(MyKind::Int, &Value::Float(3.0)).unwrap(),
            Param::I64(3)
        );
        assert!(param(MyKind::Int, &Value::Float(2.5)).is_err());
        assert_eq!(
            param(MyKind::Double, &Value::Float(2.5)).unwrap(),
            Param::F64(2.5)
        );
        assert_eq!(
            param(MyKind::Timestamp, &Value::from("2024-05-01T14:30:00+02:00")).unwrap(),
            Param::DateTime(time::parse_timestamp("2024-05-01T12:30:00").unwrap())
        );
    }
}
