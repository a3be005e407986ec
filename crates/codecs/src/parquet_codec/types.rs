//! Types on both sides of a Parquet file: an Avro schema's Arrow form (what a written file's
//! columns are when the slot has a schema), and the text forms of dates and times (how
//! they reach the model, and what is taken back for them).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::avro::schema::{Compiled, Logical, Node};

/// The zone of a written UTC-adjusted timestamp (Avro's `timestamp-*`).
pub(crate) const UTC: &str = "UTC";

/// The Arrow schema of a record schema's fields, one column each. Refused, with the field's
/// path, where Parquet has no column type for it: a schema that is not a record, a union
/// other than a type with `null`, a record that contains itself.
pub(crate) fn arrow_schema_of(avro: &Compiled) -> Result<Schema, String> {
    let Node::Record(name, fields) = &avro.nodes[avro.root] else {
        return Err(format!(
            "a Parquet file's rows are records, and the slot's schema is {}: give the slot a record schema",
            avro.type_name(avro.root)
        ));
    };
    let mut open = vec![avro.root];
    let columns = fields
        .iter()
        .map(|f| field_of(avro, &f.name, f.node, &format!(".{}", f.name), &mut open))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the schema of {} as Parquet columns: {e}", name.full))?;
    Ok(Schema::new(columns))
}

/// The Arrow field of a node; a union of `null` and one type is that type, nullable.
fn field_of(
    avro: &Compiled,
    name: &str,
    idx: usize,
    path: &str,
    open: &mut Vec<usize>,
) -> Result<Field, String> {
    if let Node::Union(branches) = &avro.nodes[idx] {
        let others: Vec<usize> = branches
            .iter()
            .copied()
            .filter(|&b| !matches!(avro.nodes[b], Node::Null))
            .collect();
        let nullable = others.len() < branches.len();
        return match others.as_slice() {
            [only] => Ok(Field::new(
                name,
                type_of(avro, *only, path, open)?,
                nullable,
            )),
            [] => Ok(Field::new(name, DataType::Null, true)),
            _ => Err(format!(
                "at {path}: a union of {} has no Parquet column type (Parquet has no unions; a union of null and one type is a nullable column)",
                branches
                    .iter()
                    .map(|&b| avro.type_name(b))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
    }
    let nullable = matches!(avro.nodes[idx], Node::Null);
    Ok(Field::new(name, type_of(avro, idx, path, open)?, nullable))
}

fn type_of(
    avro: &Compiled,
    idx: usize,
    path: &str,
    open: &mut Vec<usize>,
) -> Result<DataType, String> {
    Ok(match &avro.nodes[idx] {
        Node::Null => DataType::Null,
        Node::Boolean => DataType::Boolean,
        Node::Int => DataType::Int32,
        Node::Long => DataType::Int64,
        Node::Float => DataType::Float32,
        Node::Double => DataType::Float64,
        Node::Bytes => DataType::Binary,
        Node::String | Node::Enum(..) => DataType::Utf8,
        Node::Fixed(_, size) => DataType::FixedSizeBinary(
            i32::try_from(*size).map_err(|_| format!("at {path}: fixed of {size} bytes"))?,
        ),
        Node::Array(items) => DataType::List(Arc::new(field_of(
            avro,
            "item",
            *items,
            &format!("{path}[]"),
            open,
        )?)),
        Node::Map(values) => map_type(
            Field::new("key", DataType::Utf8, false),
            field_of(avro, "value", *values, &format!("{path}{{}}"), open)?,
        ),
        Node::Record(name, fields) => {
            if open.contains(&idx) {
                return Err(format!(
                    "at {path}: record {} contains itself, which no Parquet column can hold",
                    name.full
                ));
            }
            open.push(idx);
            let children = fields
                .iter()
                .map(|f| field_of(avro, &f.name, f.node, &format!("{path}.{}", f.name), open))
                .collect::<Result<Vec<_>, _>>();
            open.pop();
            DataType::Struct(Fields::from(children?))
        }
        Node::Union(_) => {
            // A union nested right in a union is not valid Avro; kept total all the same.
            return field_of(avro, "", idx, path, open).map(|f| f.data_type().clone());
        }
        Node::Logical(logical, inner) => match logical {
            Logical::Date => DataType::Date32,
            Logical::TimeMillis => DataType::Time32(TimeUnit::Millisecond),
            Logical::TimeMicros => DataType::Time64(TimeUnit::Microsecond),
            Logical::TimestampMillis => {
                DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()))
            }
            Logical::TimestampMicros => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
            }
            Logical::TimestampNanos => DataType::Timestamp(TimeUnit::Nanosecond, Some(UTC.into())),
            Logical::LocalTimestampMillis => DataType::Timestamp(TimeUnit::Millisecond, None),
            Logical::LocalTimestampMicros => DataType::Timestamp(TimeUnit::Microsecond, None),
            Logical::LocalTimestampNanos => DataType::Timestamp(TimeUnit::Nanosecond, None),
            Logical::Decimal { precision, scale } => {
                let (p, s) = (u8::try_from(*precision), i8::try_from(*scale));
                match (p, s) {
                    (Ok(p), Ok(s)) if p <= 38 => DataType::Decimal128(p, s),
                    _ => {
                        return Err(format!(
                            "at {path}: decimal({precision}, {scale}) is wider than the 38 digits written"
                        ))
                    }
                }
            }
            Logical::Uuid | Logical::Duration => type_of(avro, *inner, path, open)?,
        },
    })
}

/// A map column of `key` to `value`, as Arrow spells one.
pub(crate) fn map_type(key: Field, value: Field) -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![key, value])),
            false,
        )),
        false,
    )
}

// ---------------------------------------------------------------------------------------
// Dates and times as text

/// Days since 1970-01-01 as `YYYY-MM-DD`; `None` out of chrono's range.
pub(crate) fn date_text(days: i64) -> Option<String> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let date = epoch.checked_add_signed(chrono::Duration::try_days(days)?)?;
    Some(date.format("%Y-%m-%d").to_string())
}

/// Units of `unit` since the epoch as ISO 8601 (`2024-01-02T03:04:05`, a fraction only where
/// there is one, of 3, 6 or 9 digits), with `Z` when the instant is UTC-adjusted.
pub(crate) fn timestamp_text(value: i64, unit: TimeUnit, utc: bool) -> Option<String> {
    let dt = match unit {
        TimeUnit::Second => DateTime::from_timestamp(value, 0),
        TimeUnit::Millisecond => DateTime::from_timestamp_millis(value),
        TimeUnit::Microsecond => DateTime::from_timestamp_micros(value),
        TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(value)),
    }?
    .naive_utc();
    let mut text = dt.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
    if utc {
        text.push('Z');
    }
    Some(text)
}

/// Units of `unit` since midnight as `HH:MM:SS`, with a fraction where there is one.
pub(crate) fn time_text(value: i64, unit: TimeUnit) -> Option<String> {
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let secs = u32::try_from(value.div_euclid(per_second)).ok()?;
    let nanos = value.rem_euclid(per_second) * (1_000_000_000 / per_second);
    let t = NaiveTime::from_num_seconds_from_midnight_opt(secs, u32::try_from(nanos).ok()?)?;
    Some(t.format("%H:%M:%S%.f").to_string())
}

/// `YYYY-MM-DD` as days since 1970-01-01.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from(date.signed_duration_since(epoch).num_days()).ok()
}

/// ISO 8601 date and time (`T` or a space between them; an offset or `Z`, else taken as UTC)
/// as units of `unit` since the epoch.
pub(crate) fn parse_timestamp(text: &str, unit: TimeUnit) -> Option<i64> {
    let text = text.trim();
    let naive = match DateTime::parse_from_rfc3339(text) {
        Ok(dt) => dt.naive_utc(),
        Err(_) => [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?,
    };
    let utc = naive.and_utc();
    match unit {
        TimeUnit::Second => Some(utc.timestamp()),
        TimeUnit::Millisecond => Some(utc.timestamp_millis()),
        TimeUnit::Microsecond => Some(utc.timestamp_micros()),
        TimeUnit::Nanosecond => utc.timestamp_nanos_opt(),
    }
}

/// `HH:MM:SS[.fraction]` as units of `unit` since midnight.
pub(crate) fn parse_time(text: &str, unit: TimeUnit) -> Option<i64> {
    let t = NaiveTime::parse_from_str(text.trim(), "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(text.trim(), "%H:%M"))
        .ok()?;
    let nanos =
        i64::from(t.num_seconds_from_midnight()) * 1_000_000_000 + i64::from(t.nanosecond());
    Some(match unit {
        TimeUnit::Second => nanos / 1_000_000_000,
        TimeUnit::Millisecond => nanos / 1_000_000,
        TimeUnit::Microsecond => nanos / 1_000,
        TimeUnit::Nanosecond => nanos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_round_trip_through_text() {
        assert_eq!(date_text(19_723).as_deref(), Some("2024-01-01"));
        assert_eq!(parse_date("2024-01-01"), Some(19_723));
        assert_eq!(date_text(-1).as_deref(), Some("1969-12-31"));
        let ms = 1_704_164_645_123;
        assert_eq!(
            timestamp_text(ms, TimeUnit::Millisecond, true).as_deref(),
            Some("2024-01-02T03:04:05.123Z")
        );
        assert_eq!(
            timestamp_text(1_704_164_645, TimeUnit::Second, false).as_deref(),
            Some("2024-01-02T03:04:05")
        );
        assert_eq!(
            parse_timestamp("2024-01-02T03:04:05.123Z", TimeUnit::Millisecond),
            Some(ms)
        );
        assert_eq!(
            parse_timestamp("2024-01-02T05:04:05.123+02:00", TimeUnit::Millisecond),
            Some(ms)
        );
        assert_eq!(
            parse_timestamp("2024-01-02 03:04:05.123", TimeUnit::Microsecond),
            Some(ms * 1000)
        );
        assert_eq!(parse_timestamp("yesterday", TimeUnit::Millisecond), None);
        assert_eq!(
            time_text(3_723_000_001, TimeUnit::Microsecond).as_deref(),
            Some("01:02:03.000001")
        );
        assert_eq!(
            parse_time("01:02:03.5", TimeUnit::Millisecond),
            Some(3_723_500)
        );
    }
}
