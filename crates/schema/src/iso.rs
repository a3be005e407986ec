//! Recognizers for the text forms date/time logical types also take: ISO 8601 as Python's
//! `isoformat()` writes it (the runner turns datetimes into that), and UUIDs.
//!
//! Recognizing only: values are not converted, so no calendar arithmetic beyond the days of
//! a month.

/// `YYYY-MM-DD`.
pub(crate) fn is_date(s: &str) -> bool {
    date_prefix(s.as_bytes()) == Some(10) && s.len() == 10
}

/// `HH:MM[:SS[.fraction]]`, optionally with a zone (`Z`, `+HH:MM`, `-HHMM`).
pub(crate) fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    match time_prefix(b) {
        Some(n) => zone(&b[n..]),
        None => false,
    }
}

/// `YYYY-MM-DD` followed by `T` or a space and a time, optionally with a zone; a date alone
/// is also taken (midnight).
pub(crate) fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(n) = date_prefix(b) else {
        return false;
    };
    let rest = &b[n..];
    match rest.first() {
        None => true,
        Some(b'T' | b't' | b' ') => is_time_bytes(&rest[1..]),
        Some(_) => false,
    }
}

fn is_time_bytes(b: &[u8]) -> bool {
    match time_prefix(b) {
        Some(n) => zone(&b[n..]),
        None => false,
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits of any case.
/// The codecs' test, so that a `uuid` default they take is one the checker takes.
pub(crate) use codecs::avro::schema::is_uuid;

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let part = b.get(at..at + n)?;
    part.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// The length of a valid `YYYY-MM-DD` at the start of `b`.
fn date_prefix(b: &[u8]) -> Option<usize> {
    let year = digits(b, 0, 4)?;
    let month = (b.get(4) == Some(&b'-')).then(|| digits(b, 5, 2))??;
    let day = (b.get(7) == Some(&b'-')).then(|| digits(b, 8, 2))??;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days).contains(&day).then_some(10)
}

/// The length of a valid `HH:MM[:SS[.fraction]]` at the start of `b` (a leap second 60 is
/// allowed).
fn time_prefix(b: &[u8]) -> Option<usize> {
    let hour = digits(b, 0, 2)?;
    let minute = (b.get(2) == Some(&b':')).then(|| digits(b, 3, 2))??;
    if hour > 23 || minute > 59 {
        return None;
    }
    if b.get(5) != Some(&b':') {
        return Some(5);
    }
    let second = digits(b, 6, 2)?;
    if second > 60 {
        return None;
    }
    let mut n = 8;
    if matches!(b.get(8), Some(b'.' | b',')) {
        let frac = b[9..].iter().take_while(|c| c.is_ascii_digit()).count();
        if frac == 0 {
            return None;
        }
        n = 9 + frac;
    }
    Some(n)
}

/// Nothing, `Z`, or `+HH:MM` / `-HH:MM` / `+HHMM` / `+HH`.
fn zone(b: &[u8]) -> bool {
    match b {
        [] | [b'Z' | b'z'] => true,
        [b'+' | b'-', rest @ ..] => {
            let ok_hm = |h: Option<u32>, m: Option<u32>| matches!((h, m), (Some(h), Some(m)) if h <= 23 && m <= 59);
            match rest.len() {
                2 => matches!(digits(rest, 0, 2), Some(h) if h <= 23),
                4 => ok_hm(digits(rest, 0, 2), digits(rest, 2, 2)),
                5 => rest[2] == b':' && ok_hm(digits(rest, 0, 2), digits(rest, 3, 2)),
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_times_and_timestamps() {
        assert!(is_date("2024-02-29"));
        assert!(!is_date("2023-02-29"));
        assert!(!is_date("2024-13-01"));
        assert!(!is_date("2024-1-01"));
        assert!(is_time("03:04:05"));
        assert!(is_time("03:04:05.123456"));
        assert!(is_time("03:04"));
        assert!(!is_time("24:00:00"));
        assert!(is_timestamp("2024-01-02T03:04:05"));
        assert!(is_timestamp("2024-01-02 03:04:05.5+01:00"));
        assert!(is_timestamp("2024-01-02T03:04:05Z"));
        assert!(is_timestamp("2024-01-02T03:04:05-0500"));
        assert!(is_timestamp("2024-01-02"));
        assert!(!is_timestamp("2024-01-02T03:04:05+1"));
        assert!(!is_timestamp("yesterday"));
        assert!(!is_timestamp("2024-01-02T"));
    }

    #[test]
    fn uuids() {
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400g"));
    }
}
