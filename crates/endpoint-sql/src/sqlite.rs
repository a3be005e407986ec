//! SQLite: values read by their storage class (SQLite types values, not columns), columns
//! declared `BOOLEAN` read as booleans; values bound as parameters of multi-row `INSERT`s.

use runtime_core::Value;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Arguments, Decode, TypeInfo, ValueRef};

use crate::types::{json_text, Param};

/// How a SQLite column is read: by each value's storage class, or as booleans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LiteKind {
    /// Declared `BOOLEAN`: integers read as booleans.
    Bool,
    /// Any other declared type (or none).
    Stored,
}

impl LiteKind {
    pub(crate) fn of(declared: &SqliteTypeInfo) -> LiteKind {
        if declared.name() == "BOOLEAN" {
            LiteKind::Bool
        } else {
            LiteKind::Stored
        }
    }
}

fn err(e: sqlx::error::BoxDynError) -> String {
    e.to_string()
}

/// A value of a column of `kind`, by its storage class.
pub(crate) fn decode(kind: LiteKind, v: SqliteValueRef<'_>) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let class = v.type_info().name().to_owned();
    Ok(match class.as_str() {
        "INTEGER" => {
            let i = <i64 as Decode<Sqlite>>::decode(v).map_err(err)?;
            match kind {
                LiteKind::Bool => Value::Bool(i != 0),
                LiteKind::Stored => Value::Int(i.into()),
            }
        }
        "REAL" => Value::Float(<f64 as Decode<Sqlite>>::decode(v).map_err(err)?),
        "TEXT" => Value::from(
            <String as Decode<Sqlite>>::decode(v)
                .map_err(|e| format!("the text is not UTF-8 ({e})"))?,
        ),
        "BLOB" => Value::Bytes(<Vec<u8> as Decode<Sqlite>>::decode(v).map_err(err)?),
        other => {
            return Err(format!(
                "a value stored as {other}, which this engine does not read"
            ))
        }
    })
}

/// A value as a parameter; SQLite takes any in any column (a `STRICT` table checks them).
pub(crate) fn param(v: &Value) -> Result<Param, String> {
    Ok(match v {
        Value::Null => Param::Null,
        Value::Bool(b) => Param::I64((*b).into()),
        Value::Int(i) => Param::I64(
            i64::try_from(*i).map_err(|_| format!("{i} does not fit SQLite's 64-bit integers"))?,
        ),
        // SQLite would store NaN as NULL without a word.
        Value::Float(f) if f.is_nan() => return Err("SQLite cannot store NaN".into()),
        Value::Float(f) => Param::F64(*f),
        Value::String(s) => Param::Text(s.to_string()),
        Value::Bytes(b) => Param::Bytes(b.clone()),
        Value::Array(_) | Value::Map(_) => Param::Text(json_text(v)?),
    })
}

/// Binds `p` as the next parameter.
pub(crate) fn bind(args: &mut SqliteArguments, p: &Param) -> Result<(), sqlx::error::BoxDynError> {
    match p {
        Param::Null => args.add(Option::<i64>::None),
        Param::Bool(b) => args.add(*b),
        Param::I64(i) => args.add(*i),
        Param::U64(u) => args.add(i64::try_from(*u)?),
        Param::F64(f) => args.add(*f),
        Param::Text(s) => args.add(s.clone()),
        Param::Bytes(b) => args.add(b.clone()),
        Param::DateTime(t) => args.add(crate::time::naive(*t)),
    }
}
