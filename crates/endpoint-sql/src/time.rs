//! Dates and times as records carry them: ISO 8601 / RFC 3339 text. A timestamp with a time
//! zone is given in UTC with `Z` (`2024-05-01T12:30:00.25Z`), one without as it is stored
//! (`2024-05-01T12:30:00.25`); fractions of a second show as many digits as they need (3, 6
//! or 9), none when whole. PostgreSQL's infinities read as `infinity` and `-infinity`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeDelta, Utc};

const NAIVE: &str = "%Y-%m-%dT%H:%M:%S%.f";

/// PostgreSQL's epoch, 2000-01-01.
fn pg_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default()
}

/// A date as `YYYY-MM-DD`.
pub(crate) fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// A PostgreSQL `date`: days since 2000-01-01.
pub(crate) fn pg_date(days: i32) -> Result<String, String> {
    match days {
        i32::MAX => Ok("infinity".into()),
        i32::MIN => Ok("-infinity".into()),
        d => pg_epoch()
            .checked_add_signed(TimeDelta::days(d.into()))
            .map(date)
            .ok_or_else(|| format!("the date {d} days from 2000-01-01 is out of range")),
    }
}

/// A time of day from microseconds since midnight (PostgreSQL's `24:00:00` included).
pub(crate) fn time_of_day(us: i64) -> Result<String, String> {
    if us == 86_400_000_000 {
        return Ok("24:00:00".into());
    }
    let secs = u32::try_from(us.div_euclid(1_000_000)).map_err(|_| "a time out of range")?;
    let nanos = (us.rem_euclid(1_000_000) * 1000) as u32;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
        .map(|t| t.format("%H:%M:%S%.f").to_string())
        .ok_or_else(|| format!("the time {us} us past midnight is out of range"))
}

/// `+hh:mm` for seconds east of UTC.
pub(crate) fn offset(east: i32) -> String {
    let sign = if east < 0 { '-' } else { '+' };
    let east = east.unsigned_abs();
    let (h, m, s) = (east / 3600, east / 60 % 60, east % 60);
    if s == 0 {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}:{m:02}:{s:02}")
    }
}

/// A PostgreSQL `timestamp` or `timestamptz`: microseconds since 2000-01-01 00:00 (UTC for
/// `timestamptz`).
pub(crate) fn pg_timestamp(us: i64, utc: bool) -> Result<String, String> {
    match us {
        i64::MAX => return Ok("infinity".into()),
        i64::MIN => return Ok("-infinity".into()),
        _ => {}
    }
    let t = pg_epoch()
        .and_hms_opt(0, 0, 0)
        .and_then(|e| e.checked_add_signed(TimeDelta::microseconds(us)))
        .ok_or_else(|| format!("the timestamp {us} us from 2000-01-01 is out of range"))?;
    Ok(if utc { utc_text(t) } else { naive(t) })
}

/// A timestamp without a zone.
pub(crate) fn naive(t: NaiveDateTime) -> String {
    t.format(NAIVE).to_string()
}

/// A timestamp in UTC, with `Z`.
pub(crate) fn utc_text(t: NaiveDateTime) -> String {
    DateTime::<Utc>::from_naive_utc_and_offset(t, Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Reads a timestamp written as records carry them (RFC 3339 with a zone, which is turned
/// to UTC; or without one, `T` or a space between date and time; or a date alone), for a
/// database that needs a typed value. `None`: not a timestamp this reads.
pub(crate) fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_utc());
    }
    // A zone written `+hh` or `+hhmm`, or with a space before the time.
    for f in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.naive_utc());
        }
    }
    for f in [
        NAIVE,
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// An `f32` as the `f64` of its shortest decimal form (`0.1`, not `0.10000000149011612`).
pub(crate) fn widen(f: f32) -> f64 {
    if !f.is_finite() {
        return f64::from(f);
    }
    f.to_string().parse().unwrap_or(f64::from(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_and_write_as_iso_text() {
        assert_eq!(pg_timestamp(0, true).unwrap(), "2000-01-01T00:00:00Z");
        assert_eq!(
            pg_timestamp(86_400_000_000 + 1_500_000, false).unwrap(),
            "2000-01-02T00:00:01.500"
        );
        assert_eq!(
            pg_timestamp(123_456, true).unwrap(),
            "2000-01-01T00:00:00.123456Z"
        );
        assert_eq!(pg_timestamp(i64::MAX, true).unwrap(), "infinity");
        assert_eq!(pg_date(-1).unwrap(), "1999-12-31");
        assert_eq!(time_of_day(3_723_000_001).unwrap(), "01:02:03.000001");
        assert_eq!(offset(-(5 * 3600 + 30 * 60)), "-05:30");
        let t = parse_timestamp("2024-05-01T14:30:00+02:00").unwrap();
        assert_eq!(naive(t), "2024-05-01T12:30:00");
        assert_eq!(
            naive(parse_timestamp("2024-05-01 12:30:00.25").unwrap()),
            "2024-05-01T12:30:00.250"
        );
        assert_eq!(
            naive(parse_timestamp("2024-05-01").unwrap()),
            "2024-05-01T00:00:00"
        );
        assert!(parse_timestamp("yesterday").is_none());
        assert_eq!(widen(0.1), 0.1);
    }
}
