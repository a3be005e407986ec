//! PostgreSQL: column types, values read from the binary wire format, and rows written with
//! `COPY ... FROM STDIN` (text format), each batch under a savepoint so that a row the table
//! refuses can be found and the others kept.

use std::io::Write as _;

use runtime_core::Value;
use sqlx::postgres::{PgConnection, PgTypeInfo, PgTypeKind};
use sqlx::{Executor, TypeInfo};

use crate::time;

/// How a PostgreSQL column's values are read and written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PgKind {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    /// text, varchar, bpchar, name, citext, enums.
    Text,
    /// The one-byte `"char"`.
    Char,
    Bytea,
    Uuid,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Json,
    Jsonb,
    /// An array of a type above (of any number of dimensions).
    Array(Box<PgKind>),
    /// Any other type: written as text for the server to parse, refused when read.
    Other,
}

impl PgKind {
    /// The kind of values of `ty`: domains as their base type, enums as text.
    pub(crate) fn of(ty: &PgTypeInfo) -> PgKind {
        match ty.kind() {
            PgTypeKind::Array(elem) => match PgKind::of(elem) {
                PgKind::Other | PgKind::Array(_) => PgKind::Other,
                k => PgKind::Array(Box::new(k)),
            },
            PgTypeKind::Domain(base) => PgKind::of(base),
            PgTypeKind::Enum(_) => PgKind::Text,
            PgTypeKind::Simple => match ty.oid().map(|o| o.0) {
                Some(16) => PgKind::Bool,
                Some(17) => PgKind::Bytea,
                Some(18) => PgKind::Char,
                Some(19 | 25 | 705 | 1042 | 1043) => PgKind::Text,
                Some(20) => PgKind::Int8,
                Some(21) => PgKind::Int2,
                Some(23) => PgKind::Int4,
                Some(26) => PgKind::Oid,
                Some(114) => PgKind::Json,
                Some(700) => PgKind::Float4,
                Some(701) => PgKind::Float8,
                Some(1082) => PgKind::Date,
                Some(1083) => PgKind::Time,
                Some(1114) => PgKind::Timestamp,
                Some(1184) => PgKind::TimestampTz,
                Some(1266) => PgKind::TimeTz,
                Some(1700) => PgKind::Numeric,
                Some(2950) => PgKind::Uuid,
                Some(3802) => PgKind::Jsonb,
                _ if ty.name().eq_ignore_ascii_case("citext") => PgKind::Text,
                _ => PgKind::Other,
            },
            _ => PgKind::Other,
        }
    }

    fn is_integer(&self) -> bool {
        matches!(
            self,
            PgKind::Int2 | PgKind::Int4 | PgKind::Int8 | PgKind::Oid
        )
    }
}

fn array<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("{} bytes where {N} were expected", b.len()))
}

fn text(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|e| format!("the text is not UTF-8 ({e})"))
}

/// A value in PostgreSQL's binary format.
pub(crate) fn decode(kind: &PgKind, b: &[u8]) -> Result<Value, String> {
    Ok(match kind {
        PgKind::Bool => Value::Bool(b.first().ok_or("an empty boolean")? != &0),
        PgKind::Int2 => Value::Int(i16::from_be_bytes(array(b)?).into()),
        PgKind::Int4 => Value::Int(i32::from_be_bytes(array(b)?).into()),
        PgKind::Int8 => Value::Int(i64::from_be_bytes(array(b)?).into()),
        PgKind::Oid => Value::Int(u32::from_be_bytes(array(b)?).into()),
        // The float4's shortest decimal form, not its binary expansion (0.1, not 0.100000001).
        PgKind::Float4 => Value::Float(time::widen(f32::from_be_bytes(array(b)?))),
        PgKind::Float8 => Value::Float(f64::from_be_bytes(array(b)?)),
        PgKind::Numeric => numeric(b)?,
        PgKind::Text | PgKind::Char => Value::from(text(b)?.to_owned()),
        PgKind::Bytea => Value::Bytes(b.to_vec()),
        PgKind::Uuid => Value::from(uuid::Uuid::from_bytes(array(b)?).hyphenated().to_string()),
        PgKind::Date => Value::from(time::pg_date(i32::from_be_bytes(array(b)?))?),
        PgKind::Time => Value::from(time::time_of_day(i64::from_be_bytes(array(b)?))?),
        PgKind::TimeTz => {
            let (us, zone) = b.split_at_checked(8).ok_or("a short timetz")?;
            let us = i64::from_be_bytes(array(us)?);
            // The zone is in seconds west of UTC.
            let east = -i32::from_be_bytes(array(zone)?);
            Value::from(format!("{}{}", time::time_of_day(us)?, time::offset(east)))
        }
        PgKind::Timestamp => Value::from(time::pg_timestamp(i64::from_be_bytes(array(b)?), false)?),
        PgKind::TimestampTz => {
            Value::from(time::pg_timestamp(i64::from_be_bytes(array(b)?), true)?)
        }
        PgKind::Json => json(b)?,
        PgKind::Jsonb => match b.split_first() {
            Some((1, rest)) => json(rest)?,
            _ => return Err("a jsonb value of an unknown version".into()),
        },
        PgKind::Array(elem) => pg_array(elem, b)?,
        PgKind::Other => return Err("its type is not one this engine reads".into()),
    })
}

fn json(b: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Value>(b).map_err(|e| format!("the JSON does not parse ({e})"))
}

/// A `numeric`: an integer when the value has no fractional digits (its scale is 0, as in
/// a `numeric(p, 0)` column), else a float; NaN and infinities as floats.
fn numeric(b: &[u8]) -> Result<Value, String> {
    let head = b.get(..8).ok_or("a short numeric")?;
    let ndigits = i16::from_be_bytes([head[0], head[1]]).max(0) as usize;
    let weight = i16::from_be_bytes([head[2], head[3]]) as i64;
    let sign = u16::from_be_bytes([head[4], head[5]]);
    let scale = u16::from_be_bytes([head[6], head[7]]) as usize;
    match sign {
        0xC000 => return Ok(Value::Float(f64::NAN)),
        0xD000 => return Ok(Value::Float(f64::INFINITY)),
        0xF000 => return Ok(Value::Float(f64::NEG_INFINITY)),
        0x0000 | 0x4000 => {}
        _ => return Err(format!("a numeric with the sign 0x{sign:04x}")),
    }
    let digits: Vec<u16> = b[8..]
        .chunks_exact(2)
        .take(ndigits)
        .map(|d| u16::from_be_bytes([d[0], d[1]]))
        .collect();
    if digits.len() != ndigits {
        return Err("a short numeric".into());
    }
    // Digit group i (base 10,000) stands at weight - i.
    let group = |position: i64| -> u16 {
        let i = weight - position;
        if (0..ndigits as i64).contains(&i) {
            digits[i as usize]
        } else {
            0
        }
    };
    let mut s = String::with_capacity(8 + 4 * ndigits + scale);
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        s.push_str(&group(weight).to_string());
        for p in (0..weight).rev() {
            s.push_str(&format!("{:04}", group(p)));
        }
    }
    if scale == 0 {
        return Ok(match s.parse::<i128>() {
            Ok(i) => Value::Int(i),
            // Beyond 38 digits: as near a float as there is.
            Err(_) => Value::Float(s.parse::<f64>().map_err(|e| e.to_string())?),
        });
    }
    s.push('.');
    let mut fraction = String::with_capacity(scale + 4);
    let mut p = -1;
    while fraction.len() < scale {
        fraction.push_str(&format!("{:04}", group(p)));
        p -= 1;
    }
    fraction.truncate(scale);
    s.push_str(&fraction);
    s.parse::<f64>()
        .map(Value::Float)
        .map_err(|e| format!("the numeric {s} does not read as a float ({e})"))
}

/// An array in the binary format: nested arrays for several dimensions.
fn pg_array(elem: &PgKind, b: &[u8]) -> Result<Value, String> {
    let short = || "a short array".to_string();
    let int = |at: usize| -> Result<i32, String> {
        Ok(i32::from_be_bytes(array(
            b.get(at..at + 4).ok_or_else(short)?,
        )?))
    };
    let ndim = int(0)?;
    if ndim <= 0 {
        return Ok(Value::Array(Vec::new()));
    }
    let ndim = ndim as usize;
    let mut dims = Vec::with_capacity(ndim);
    for d in 0..ndim {
        dims.push(int(12 + 8 * d)?.max(0) as usize);
    }
    let mut at = 12 + 8 * ndim;
    let total: usize = dims.iter().product();
    let mut items = Vec::with_capacity(total);
    for _ in 0..total {
        let len = int(at)?;
        at += 4;
        if len < 0 {
            items.push(Value::Null);
            continue;
        }
        let end = at + len as usize;
        items.push(decode(elem, b.get(at..end).ok_or_else(short)?)?);
        at = end;
    }
    // Folds the flat items into nested arrays, innermost dimension first.
    let mut level = items;
    for &n in dims[1..].iter().rev() {
        let mut outer = Vec::with_capacity(level.len() / n.max(1));
        let mut it = level.into_iter();
        loop {
            let chunk: Vec<Value> = it.by_ref().take(n).collect();
            if chunk.is_empty() {
                break;
            }
            outer.push(Value::Array(chunk));
        }
        level = outer;
    }
    Ok(Value::Array(level))
}

// ---------------------------------------------------------------------------------------
// Writing: COPY's text format.

/// Appends `s` escaped for COPY's text format.
fn escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t'))
    {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

/// A float as PostgreSQL reads it back exactly.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{f:?}")
    }
}

/// A value as the text of one field of a column of `kind` (not yet escaped), or why it
/// cannot be one.
fn field_text(kind: &PgKind, v: &Value) -> Result<String, String> {
    Ok(match (kind, v) {
        (PgKind::Json | PgKind::Jsonb, v) => crate::types::json_text(v)?,
        (k, Value::Bool(b)) if k.is_integer() => if *b { "1" } else { "0" }.into(),
        (_, Value::Bool(b)) => if *b { "t" } else { "f" }.into(),
        (_, Value::Int(i)) => i.to_string(),
        (k, Value::Float(f)) if k.is_integer() => match crate::types::integral(*f) {
            Some(i) => i.to_string(),
            None => return Err(format!("{} is not an integer", float_text(*f))),
        },
        (_, Value::Float(f)) => float_text(*f),
        (_, Value::String(s)) => s.to_string(),
        (PgKind::Bytea, Value::Bytes(b)) => {
            let mut s = String::with_capacity(2 + 2 * b.len());
            s.push_str("\\x");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s
        }
        (_, Value::Bytes(b)) => String::from_utf8(b.clone())
            .map_err(|_| "bytes that are not UTF-8 text go only into a bytea column".to_string())?,
        (PgKind::Array(elem), Value::Array(items)) => array_literal(elem, items)?,
        (_, Value::Array(_) | Value::Map(_)) => crate::types::json_text(v)?,
        (_, Value::Null) => return Err("null".into()),
    })
}

/// `{a,"b c",NULL,{1,2}}`: PostgreSQL's array literal.
fn array_literal(elem: &PgKind, items: &[Value]) -> Result<String, String> {
    let mut s = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match item {
            Value::Null => s.push_str("NULL"),
            Value::Array(inner) if !matches!(elem, PgKind::Json | PgKind::Jsonb) => {
                s.push_str(&array_literal(elem, inner)?)
            }
            other => {
                let t = field_text(elem, other)?;
                s.push('"');
                for c in t.chars() {
                    if c == '"' || c == '\\' {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
            }
        }
    }
    s.push('}');
    Ok(s)
}

/// Appends one row of COPY's text format (fields separated by tabs, `\N` for null, a line
/// feed at the end), or says which value cannot be written; `out` is unchanged then.
pub(crate) fn copy_row(
    out: &mut Vec<u8>,
    columns: &[(&str, &PgKind)],
    values: &[&Value],
) -> Result<(), String> {
    let start = out.len();
    for (i, ((name, kind), v)) in columns.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        // The common values written in place; the others through their text.
        let json = matches!(kind, PgKind::Json | PgKind::Jsonb);
        match v {
            Value::Null => out.extend_from_slice(b"\\N"),
            Value::String(s) if !json => escaped(out, s),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Float(f) if f.is_finite() && !json && !kind.is_integer() => {
                let _ = write!(out, "{f:?}");
            }
            v => match field_text(kind, v) {
                Ok(t) => escaped(out, &t),
                Err(e) => {
                    out.truncate(start);
                    return Err(format!("column '{name}': {e}"));
                }
            },
        }
    }
    out.push(b'\n');
    Ok(())
}

/// Where the rows of a transaction stand.
#[derive(Debug, Default)]
pub(crate) struct Tx {
    pub(crate) open: bool,
    savepoint: bool,
}

async fn simple(conn: &mut PgConnection, sql: &'static str) -> Result<(), sqlx::Error> {
    conn.execute(sqlx::raw_sql(sql)).await.map(|_| ())
}

async fn copy(conn: &mut PgConnection, statement: &str, data: &[u8]) -> Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    match copy.send(data).await {
        Ok(_) => copy.finish().await,
        Err(e) => {
            let _ = copy.abort("the engine could not send the rows").await;
            Err(e)
        }
    }
}

/// Copies `rows` (one COPY text line each, back to back in `data`, ending at `ends`) inside
/// the transaction, under a savepoint. When the server refuses the batch for a row's sake,
/// the batch is rolled back to the savepoint and copied again row by row, each under a
/// savepoint of its own: the rows refused come back (their index and the server's error),
/// the others stay. Any other error is returned (the transaction is then lost).
pub(crate) async fn write(
    conn: &mut PgConnection,
    tx: &mut Tx,
    statement: &str,
    data: &[u8],
    ends: &[usize],
) -> Result<Vec<(usize, sqlx::Error)>, sqlx::Error> {
    let prelude = match (tx.open, tx.savepoint) {
        (false, _) => "BEGIN; SAVEPOINT batch",
        // One round trip: the last batch's savepoint goes (merging it), the next one starts.
        (true, true) => "RELEASE SAVEPOINT batch; SAVEPOINT batch",
        (true, false) => "SAVEPOINT batch",
    };
    simple(conn, prelude).await?;
    tx.open = true;
    tx.savepoint = true;
    let e = match copy(conn, statement, data).await {
        Ok(_) => return Ok(Vec::new()),
        Err(e) if crate::error::is_row_error(&e) => e,
        Err(e) => return Err(e),
    };
    tracing::debug!(rows = ends.len(), error = %e, "a batch was refused; copying it row by row");
    simple(conn, "ROLLBACK TO SAVEPOINT batch").await?;
    let mut refused = Vec::new();
    let mut start = 0;
    for (i, &end) in ends.iter().enumerate() {
        simple(conn, "SAVEPOINT row").await?;
        match copy(conn, statement, &data[start..end]).await {
            Ok(_) => simple(conn, "RELEASE SAVEPOINT row").await?,
            Err(e) if crate::error::is_row_error(&e) => {
                simple(conn, "ROLLBACK TO SAVEPOINT row; RELEASE SAVEPOINT row").await?;
                refused.push((i, e));
            }
            Err(e) => return Err(e),
        }
        start = end;
    }
    Ok(refused)
}

/// Commits the transaction, if one is open.
pub(crate) async fn commit(conn: &mut PgConnection, tx: &mut Tx) -> Result<(), sqlx::Error> {
    if tx.open {
        simple(conn, "COMMIT").await?;
        *tx = Tx::default();
    }
    Ok(())
}

/// `COPY table (a, "B") FROM STDIN`.
pub(crate) fn copy_statement(table: &str, columns: &[&str]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    format!("COPY {table} ({}) FROM STDIN", cols.join(", "))
}

/// A double-quoted identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's binary numeric: sign, scale, base-10,000 digit groups from `weight`.
    fn numeric_bytes(weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        b.extend_from_slice(&weight.to_be_bytes());
        b.extend_from_slice(&sign.to_be_bytes());
        b.extend_from_slice(&scale.to_be_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_are_integers_when_their_scale_is_zero() {
        for (bytes, want) in [
            (numeric_bytes(-1, 0, 5, &[1, 2000]), Value::Float(0.00012)),
            (numeric_bytes(1, 0, 1, &[1, 0, 5000]), Value::Float(10000.5)),
            (numeric_bytes(0, 0x4000, 2, &[3, 2500]), Value::Float(-3.25)),
            (
                numeric_bytes(2, 0, 0, &[12, 3456, 7890]),
                Value::Int(1234567890),
            ),
            (numeric_bytes(2, 0, 0, &[7]), Value::Int(700_000_000)),
            (numeric_bytes(0, 0, 0, &[]), Value::Int(0)),
            (numeric_bytes(0, 0, 3, &[]), Value::Float(0.0)),
        ] {
            assert_eq!(decode(&PgKind::Numeric, &bytes).unwrap(), want, "{bytes:?}");
        }
        let nan = decode(&PgKind::Numeric, &numeric_bytes(0, 0xC000, 0, &[])).unwrap();
        assert!(matches!(nan, Value::Float(f) if f.is_nan()));
    }

    #[test]
    fn copy_rows_escape_what_copy_reads_specially() {
        let text = Value::from("a\tb\nc\\d\re");
        let cols = [
            ("t", &PgKind::Text),
            ("b", &PgKind::Bytea),
            ("j", &PgKind::Jsonb),
        ];
        let bytes = Value::Bytes(vec![0, 255]);
        let map = Value::Map([("k", Value::from("v\\"))].into_iter().collect());
        let mut out = Vec::new();
        copy_row(&mut out, &cols, &[&text, &bytes, &map]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\tb\\nc\\\\d\\re\t\\\\x00ff\t{\"k\":\"v\\\\\\\\\"}\n"
        );
        let mut out = Vec::new();
        let arr = Value::Array(vec![Value::from("x,\"y"), Value::Null]);
        copy_row(
            &mut out,
            &[("a", &PgKind::Array(Box::new(PgKind::Text)))],
            &[&arr],
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"x,\\\\\"y\",NULL}\n");
        let mut out = b"kept".to_vec();
        let e = copy_row(&mut out, &[("n", &PgKind::Int4)], &[&Value::Float(1.5)]);
        assert!(e.unwrap_err().contains("column 'n': 1.5 is not an integer"));
        assert_eq!(out, b"kept");
    }
}
