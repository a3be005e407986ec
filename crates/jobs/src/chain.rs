//! The per-record checks every path shares (a batch job's pipeline, a deployment's REST
//! requests): the one batching bound, the input screening of a record by its slot's schema,
//! and the rate-limited log of bad records. Output screening is
//! [`schema::SlotSchemas::screen_outputs`], called by both as is.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use runtime_core::Batching;
use runtime_core::{
    JobLog, Level, LogLine, LogSource, Position, ReadItem, Record, Rejection, Slot, Value,
};

/// Checks one record arriving alone on input `slot` (a REST request) as a batch's records
/// are: [`schema::SlotSchemas::screen_inputs`] on a batch of one. Returns the conformed
/// value, or the rejection at `position`.
pub fn screen_record(
    schemas: &schema::SlotSchemas,
    slot: Slot,
    value: Value,
    position: Position,
    debug: bool,
) -> Result<Value, Rejection> {
    let mut items = [ReadItem::Record(Record::new(value, position))];
    schemas.screen_inputs(slot, &mut items, debug);
    let [item] = items;
    match item {
        ReadItem::Record(r) => Ok(r.value),
        ReadItem::Rejected(r) => Err(r),
    }
}

/// Bad records of one slot logged one by one before only summaries are.
pub const BAD_LOGGED_EACH: u64 = 100;
/// After those, a summary line per this many more bad records...
const BAD_SUMMARY_EVERY: u64 = 10_000;
/// ...or per this long, whichever comes first.
const BAD_SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// What went wrong with a bad record, for the flood counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BadKind {
    /// An input record refused by its encoding or schema.
    InputRejected,
    /// An output record refused by its schema or encoding.
    OutputRejected,
    /// A record the model raised on.
    Failed,
    /// A yield to an output slot nothing reads (a REST request answers one slot).
    Unanswered,
}

impl BadKind {
    /// A yield no request reads is a warning; a record lost to a rejection or a failure is
    /// an error.
    fn level(self) -> Level {
        match self {
            BadKind::Unanswered => Level::Warn,
            _ => Level::Error,
        }
    }

    fn describe(self, slot: Slot) -> String {
        match self {
            BadKind::InputRejected => format!("input slot {slot}: records rejected"),
            BadKind::OutputRejected => format!("output slot {slot}: records rejected"),
            BadKind::Failed => format!("slot {slot}: records failed"),
            BadKind::Unanswered => format!("output slot {slot}: yields not answered"),
        }
    }
}

/// How many bad records of one kind on one slot were seen and logged.
struct Flood {
    seen: u64,
    summarized: u64,
    summarized_at: Instant,
}

/// The log of bad records: the first [`BAD_LOGGED_EACH`] of a kind on a slot in full, then
/// a summary line per 10 000 more or every 10 s, so a
/// flood of them neither fills the log nor goes unseen.
#[derive(Default)]
pub struct BadRecordLog {
    floods: BTreeMap<(BadKind, u32), Flood>,
}

impl BadRecordLog {
    /// Counts one bad record and logs it as its flood allows; `message` is only built when
    /// it is logged.
    pub fn record(
        &mut self,
        log: &dyn JobLog,
        kind: BadKind,
        slot: Slot,
        message: impl FnOnce() -> String,
    ) {
        let flood = self.floods.entry((kind, slot.0)).or_insert_with(|| Flood {
            seen: 0,
            summarized: 0,
            summarized_at: Instant::now(),
        });
        flood.seen += 1;
        let seen = flood.seen;
        if seen <= BAD_LOGGED_EACH {
            // A model's failure is the runner's to report, as it always was.
            let source = match kind {
                BadKind::Failed => LogSource::Runner,
                _ => LogSource::Engine,
            };
            log.log(LogLine::new(kind.level(), source, message()));
            if seen == BAD_LOGGED_EACH {
                flood.summarized = seen;
                flood.summarized_at = Instant::now();
                log.warn(
                    LogSource::Engine,
                    format!(
                        "{}: {seen} logged one by one; more are counted, with a summary every {BAD_SUMMARY_EVERY} or {} s",
                        kind.describe(slot),
                        BAD_SUMMARY_INTERVAL.as_secs()
                    ),
                );
            }
            return;
        }
        if seen - flood.summarized >= BAD_SUMMARY_EVERY
            || flood.summarized_at.elapsed() >= BAD_SUMMARY_INTERVAL
        {
            let since = seen - flood.summarized;
            flood.summarized = seen;
            flood.summarized_at = Instant::now();
            let summary = format!(
                "{}: {seen} so far ({since} since the last summary; the first {BAD_LOGGED_EACH} are logged in full)",
                kind.describe(slot)
            );
            log.log(LogLine::new(kind.level(), LogSource::Engine, summary));
        }
    }

    /// Logs the exact count of every slot whose bad records were not all logged one by one.
    pub fn log_totals(&self, log: &dyn JobLog) {
        for ((kind, slot), flood) in &self.floods {
            if flood.seen > BAD_LOGGED_EACH {
                let total = format!(
                    "{}: {} in all, {} of them not logged one by one",
                    kind.describe(Slot(*slot)),
                    flood.seen,
                    flood.seen - BAD_LOGGED_EACH
                );
                log.log(LogLine::new(kind.level(), LogSource::Engine, total));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_core::{MemoryLog, RejectionKind};

    fn schemas() -> schema::SlotSchemas {
        let mut s = schema::SlotSchemas::default();
        s.insert(
            Slot(0),
            schema::Checker::parse(
                r#"{"type":"record","name":"r","fields":[{"name":"x","type":"int"}]}"#,
            )
            .unwrap(),
        );
        s
    }

    #[test]
    fn a_record_is_screened_as_a_batch_of_one() {
        let ok = Value::Map([("x", Value::Int(1))].into_iter().collect());
        assert_eq!(
            screen_record(&schemas(), Slot(0), ok.clone(), Position::record(1), false),
            Ok(ok)
        );
        let bad = Value::Map([("y", Value::Int(1))].into_iter().collect());
        let r = screen_record(&schemas(), Slot(0), bad, Position::record(7), false).unwrap_err();
        assert_eq!(r.kind, RejectionKind::Schema);
        assert_eq!(r.position.record, 7);
        // Another slot has no schema: nothing checked.
        assert!(
            screen_record(&schemas(), Slot(2), Value::Null, Position::default(), false).is_ok()
        );
    }

    #[test]
    fn a_flood_of_bad_records_logs_the_first_in_full_then_counts() {
        let log = MemoryLog::default();
        let mut bad = BadRecordLog::default();
        for i in 0..(BAD_LOGGED_EACH + 50) {
            bad.record(&log, BadKind::Unanswered, Slot(3), || format!("yield {i}"));
        }
        bad.log_totals(&log);
        let lines = log.lines();
        let one_by_one = lines
            .iter()
            .filter(|l| l.message.starts_with("yield "))
            .count();
        assert_eq!(one_by_one as u64, BAD_LOGGED_EACH);
        assert!(lines
            .iter()
            .any(|l| l.message.contains("yields not answered: 150 in all")));
    }

    #[test]
    fn batching_is_at_least_one_record_and_zero_wait_is_none() {
        assert_eq!(Batching::new(0).size, 1);
        assert_eq!(Batching::new(5).waiting(Duration::ZERO).max_wait, None);
        assert_eq!(
            Batching::new(5).waiting(Duration::from_millis(2)).max_wait,
            Some(Duration::from_millis(2))
        );
    }
}
