//! What every driver shares: values bound as parameters, JSON text of a value, the size of a
//! row, and which of a record's fields go into which columns.

use runtime_core::Value;

/// A value bound to a statement's parameter (MySQL, SQLite).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Param {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// MySQL `DATETIME`/`TIMESTAMP` (UTC).
    DateTime(chrono::NaiveDateTime),
}

impl Param {
    /// Bytes it takes in a statement, roughly: to keep statements within the server's
    /// packet size.
    pub(crate) fn size(&self) -> usize {
        match self {
            Param::Text(s) => s.len() + 9,
            Param::Bytes(b) => b.len() + 9,
            _ => 9,
        }
    }
}

/// A value as JSON text (for a JSON column, or a map or array going into a text column).
pub(crate) fn json_text(v: &Value) -> Result<String, String> {
    if let Value::Float(f) = v {
        if !f.is_finite() {
            return Err(format!("{f} has no JSON form"));
        }
    }
    serde_json::to_string(v).map_err(|e| format!("the value has no JSON form ({e})"))
}

/// A float that holds a whole number, as that integer.
pub(crate) fn integral(f: f64) -> Option<i128> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 1.7e38).then_some(f as i128)
}

/// Roughly how many bytes a value holds, for the record size limit.
pub(crate) fn size_of(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 8,
        Value::String(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Array(items) => items.iter().map(size_of).sum::<usize>() + 2,
        Value::Map(m) => {
            m.iter()
                .map(|(k, v)| size_of(k) + size_of(v))
                .sum::<usize>()
                + 2
        }
    }
}

/// Checks that `table` names a table (`name`, `schema.name`, `catalog.schema.name`, parts
/// plain identifiers or quoted with `"` or `` ` ``): it goes into statements as written.
pub(crate) fn check_table(table: &str) -> Result<(), String> {
    let mut rest = table.trim();
    let mut parts = 0;
    loop {
        parts += 1;
        rest = match rest.chars().next() {
            Some(q @ ('"' | '`')) => {
                // A quoted part: up to the closing quote (doubled inside).
                let body = &rest[1..];
                let mut end = None;
                let mut chars = body.char_indices().peekable();
                while let Some((i, c)) = chars.next() {
                    if c == q {
                        if chars.peek().is_some_and(|(_, n)| *n == q) {
                            chars.next();
                            continue;
                        }
                        end = Some(i);
                        break;
                    }
                }
                match end {
                    Some(0) | None => return Err("a quoted part is empty or not closed".into()),
                    Some(i) => &body[i + 1..],
                }
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                    .unwrap_or(rest.len());
                &rest[end..]
            }
            _ => return Err("each part must be a name or a quoted name".into()),
        };
        match rest.strip_prefix('.') {
            Some(r) if parts < 3 => rest = r,
            Some(_) => return Err("at most three parts (catalog.schema.table)".into()),
            None if rest.is_empty() => return Ok(()),
            None => return Err(format!("unexpected '{rest}'")),
        }
    }
}

/// Which record fields go into which of the table's columns.
#[derive(Clone, Debug)]
pub(crate) enum Fields {
    /// `OutputFields`: these columns (indexes into the table's), the record's field of the
    /// same name each (missing: null); other fields are not written.
    Chosen(Vec<usize>),
    /// The record's own fields: fixed by the first record written (its fields that are
    /// columns, in its order); a later record with a field outside them is refused.
    FirstRecord(Option<Vec<usize>>),
}

/// Finds `name` among `columns`: exactly, else ignoring ASCII case when only one matches.
/// A quoted name (`"Score"`, `` `score` ``, as an `INSERT INTO t ("Score")` lists it)
/// matches exactly what it quotes.
pub(crate) fn find_column(columns: &[String], name: &str) -> Option<usize> {
    if let Some(i) = columns.iter().position(|c| c == name) {
        return Some(i);
    }
    for q in ['"', '`'] {
        if let Some(inner) = name
            .strip_prefix(q)
            .and_then(|n| n.strip_suffix(q))
            .filter(|n| !n.is_empty())
        {
            let unquoted = inner.replace(&format!("{q}{q}"), &q.to_string());
            return columns.iter().position(|c| *c == unquoted);
        }
    }
    let mut found = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.eq_ignore_ascii_case(name));
    match (found.next(), found.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

impl Fields {
    /// `OutputFields` checked against the table's columns, or the record's own fields.
    pub(crate) fn new(
        output_fields: Option<&[String]>,
        columns: &[String],
    ) -> Result<Fields, String> {
        let Some(fields) = output_fields else {
            return Ok(Fields::FirstRecord(None));
        };
        let mut chosen = Vec::with_capacity(fields.len());
        for f in fields {
            match find_column(columns, f) {
                Some(i) if !chosen.contains(&i) => chosen.push(i),
                Some(_) => return Err(format!("OutputFields names the column '{f}' twice")),
                None => {
                    return Err(format!(
                        "OutputFields names '{f}', which is not a column of the table (its \
                         columns: {})",
                        columns.join(", ")
                    ))
                }
            }
        }
        Ok(Fields::Chosen(chosen))
    }

    /// The columns of the values of `record`, in the order of `values`; the fixed columns
    /// once known. `Err`: why the record cannot be written.
    pub(crate) fn values<'a>(
        &mut self,
        record: &'a Value,
        columns: &[String],
    ) -> Result<Vec<&'a Value>, String> {
        let Value::Map(map) = record else {
            return Err(format!(
                "a record written to a table must be a map of column to value, not {}",
                record.kind()
            ));
        };
        static NULL: Value = Value::Null;
        if let Fields::FirstRecord(fixed) = self {
            match fixed {
                None => {
                    let mut chosen = Vec::new();
                    for (k, _) in map.iter() {
                        let Value::String(k) = k else { continue };
                        if let Some(i) = find_column(columns, k) {
                            if !chosen.contains(&i) {
                                chosen.push(i);
                            }
                        }
                    }
                    check_fields(map, columns, &chosen)?;
                    *fixed = Some(chosen);
                }
                Some(chosen) => check_fields(map, columns, chosen)?,
            }
        }
        let chosen = match self {
            Fields::Chosen(c) | Fields::FirstRecord(Some(c)) => c,
            Fields::FirstRecord(None) => return Err("no columns".into()),
        };
        Ok(chosen
            .iter()
            .map(|&i| field(map, &columns[i]).unwrap_or(&NULL))
            .collect())
    }

    /// The columns written (indexes), once known.
    pub(crate) fn chosen(&self) -> Option<&[usize]> {
        match self {
            Fields::Chosen(c) | Fields::FirstRecord(Some(c)) => Some(c),
            Fields::FirstRecord(None) => None,
        }
    }
}

/// The record's field for column `column`: its exact name, else the one field matching it
/// ignoring case.
fn field<'a>(map: &'a runtime_core::Map, column: &str) -> Option<&'a Value> {
    if let Some(v) = map.get(column) {
        return Some(v);
    }
    let mut found = map.iter().filter_map(|(k, v)| match k {
        Value::String(k) if k.eq_ignore_ascii_case(column) => Some(v),
        _ => None,
    });
    match (found.next(), found.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

/// Every field of the record must go into one of the columns written.
fn check_fields(
    map: &runtime_core::Map,
    columns: &[String],
    chosen: &[usize],
) -> Result<(), String> {
    if chosen.is_empty() {
        return Err(format!(
            "none of the record's fields is a column of the table (its columns: {})",
            columns.join(", ")
        ));
    }
    for (k, _) in map.iter() {
        let Value::String(k) = k else {
            return Err(format!(
                "a field name must be text, not {}: it names a column",
                k.kind()
            ));
        };
        let known = chosen
            .iter()
            .any(|&i| columns[i] == *k || columns[i].eq_ignore_ascii_case(k));
        if !known {
            let written: Vec<&str> = chosen.iter().map(|&i| columns[i].as_str()).collect();
            return Err(if find_column(columns, k).is_some() {
                format!(
                    "the field '{k}' is not among the columns written, which the first record \
                     fixed ({}): give OutputFields to choose them",
                    written.join(", ")
                )
            } else {
                format!(
                    "the field '{k}' is not a column of the table (its columns: {})",
                    columns.join(", ")
                )
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[(&str, Value)]) -> Value {
        Value::Map(fields.iter().map(|(k, v)| (*k, v.clone())).collect())
    }

    #[test]
    fn table_names_are_names() {
        for ok in [
            "scores",
            "public.scores",
            "\"Odd \"\" Name\"",
            "`db`.`t`",
            "a.b.c",
            "_x$1",
        ] {
            assert!(check_table(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "t; drop table x",
            "a.b.c.d",
            "\"open",
            "1x",
            "t t",
            "a..b",
        ] {
            assert!(check_table(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_record_fixes_the_columns_and_others_must_fit() {
        let columns: Vec<String> = ["id", "Score", "note"].map(String::from).into();
        let mut f = Fields::new(None, &columns).unwrap();
        let first = record(&[("score", Value::Float(0.5)), ("id", Value::Int(1))]);
        let got = f.values(&first, &columns).unwrap();
        assert_eq!(got, [&Value::Float(0.5), &Value::Int(1)]);
        assert_eq!(f.chosen(), Some(&[1usize, 0][..]));
        let missing = record(&[("id", Value::Int(2))]);
        assert_eq!(
            f.values(&missing, &columns).unwrap(),
            [&Value::Null, &Value::Int(2)]
        );
        let extra = record(&[("id", Value::Int(3)), ("note", Value::from("x"))]);
        assert!(f
            .values(&extra, &columns)
            .unwrap_err()
            .contains("fixed (Score, id)"));
        let unknown = record(&[("id", Value::Int(3)), ("nope", Value::Int(1))]);
        assert!(f
            .values(&unknown, &columns)
            .unwrap_err()
            .contains("not a column"));
        assert!(f
            .values(&Value::Int(1), &columns)
            .unwrap_err()
            .contains("must be a map"));

        let mut chosen = Fields::new(Some(&["note".into(), "ID".into()]), &columns).unwrap();
        assert_eq!(
            chosen.values(&extra, &columns).unwrap(),
            [&Value::from("x"), &Value::Int(3)]
        );
        assert!(Fields::new(Some(&["zz".into()]), &columns)
            .unwrap_err()
            .contains("not a column"));
        // Quoted, as an INSERT statement lists them: exactly what they quote.
        assert_eq!(find_column(&columns, "\"Score\""), Some(1));
        assert_eq!(find_column(&columns, "`note`"), Some(2));
        assert_eq!(find_column(&columns, "\"score\""), None);
    }
}
