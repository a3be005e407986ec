//! A job's log as `engine run` shows it: one line per entry on standard error (or a file),
//! with the time and who said it, without tearing a progress bar.

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use runtime_core::{JobLog, LogLine};

pub struct WriterLog {
    out: Mutex<Box<dyn Write + Send>>,
    bar: Option<ProgressBar>,
}

impl WriterLog {
    pub fn new(out: Box<dyn Write + Send>, bar: Option<ProgressBar>) -> Self {
        WriterLog {
            out: Mutex::new(out),
            bar,
        }
    }

    pub fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }
}

impl JobLog for WriterLog {
    fn log(&self, line: LogLine) {
        let text = format!("{} {line}\n", timestamp(line.at));
        let write = || {
            if let Ok(mut out) = self.out.lock() {
                // A log that cannot be written must not stop the job.
                let _ = out.write_all(text.as_bytes());
            }
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

/// UTC time as `2026-11-22T04:20:34.123Z`.
fn timestamp(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_iso_8601() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_321_234_123);
        assert_eq!(timestamp(t), "2026-11-22T04:20:34.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
