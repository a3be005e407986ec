//! Wall-clock times as the API shows them.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    ms_of(SystemTime::now())
}

pub fn ms_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the epoch as UTC RFC 3339 (`2026-11-22T04:20:34.123Z`).
pub fn rfc3339(ms: i64) -> String {
    runtime_core::utc_timestamp_ms(ms)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc() {
        assert_eq!(
            super::rfc3339(1_795_321_234_123),
            "2026-11-22T04:20:34.123Z"
        );
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}
