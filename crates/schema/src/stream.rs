//! Checking a whole stream against a schema: the library side of
//! `engine schema check SCHEMA DATA`.

use std::fmt;
use std::io::BufRead;

use codecs::CodecConfig;
use runtime_core::{Position, ReadItem};

use crate::{Checker, SchemaError};

/// How many problems a report keeps (all are counted).
const PROBLEMS_KEPT: usize = 100;

/// What checking a stream found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Records read, rejected ones included.
    pub records: u64,
    pub conforming: u64,
    pub rejected_by_schema: u64,
    /// Records the codec could not decode (or over the size limit).
    pub rejected_by_encoding: u64,
    /// The first problems, in order.
    pub problems: Vec<StreamProblem>,
    /// Why reading stopped before the end, if it did.
    pub stream_error: Option<String>,
}

/// One record that did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamProblem {
    pub position: Position,
    /// `schema`, `encoding` or `size limit`.
    pub kind: &'static str,
    /// The violation with the offending value (the user is checking their own data).
    pub reason: String,
}

impl CheckReport {
    /// Every record read conforms and the stream was read to its end.
    pub fn is_clean(&self) -> bool {
        self.conforming == self.records && self.stream_error.is_none()
    }
}

/// `record 2, line 2: rejected by schema: ...` lines, then the counts.
impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{}: rejected by {}: {}", p.position, p.kind, p.reason)?;
        }
        let not_shown = (self.records - self.conforming) as usize - self.problems.len();
        if not_shown > 0 {
            writeln!(f, "... and {not_shown} more")?;
        }
        if let Some(e) = &self.stream_error {
            writeln!(f, "reading stopped: {e}")?;
        }
        write!(
            f,
            "{} records: {} conform, {} rejected by schema, {} rejected by encoding",
            self.records, self.conforming, self.rejected_by_schema, self.rejected_by_encoding
        )
    }
}

/// Decodes `reader` as `codec` says and checks every record against the schema in
/// `schema_text`. The schema also types the decoding (CSV cells, Avro datums) unless `codec`
/// has a schema of its own. `Err` only when the schema or the codec config is unusable;
/// everything about the data is in the report.
pub fn check_stream<R: BufRead + Send + 'static>(
    schema_text: &str,
    reader: R,
    codec: &CodecConfig,
) -> Result<CheckReport, SchemaError> {
    let checker = Checker::parse(schema_text)?;
    let mut cfg = codec.clone();
    if cfg.schema.is_none() {
        cfg.schema = Some(checker.avro().clone());
    }
    let mut decoder =
        codecs::decoder(&cfg, reader, "data").map_err(|e| SchemaError::Codec(e.to_string()))?;
    let mut report = CheckReport::default();
    while let Some(item) = decoder.next_item() {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                report.stream_error = Some(e.to_string());
                break;
            }
        };
        report.records += 1;
        let problem = match item {
            ReadItem::Record(r) => match checker.check(&r.value) {
                Ok(()) => {
                    report.conforming += 1;
                    None
                }
                Err(v) => {
                    report.rejected_by_schema += 1;
                    Some(StreamProblem {
                        position: r.position,
                        kind: "schema",
                        reason: v.detailed().to_string(),
                    })
                }
            },
            ReadItem::Rejected(r) => {
                match r.kind {
                    runtime_core::RejectionKind::Schema => report.rejected_by_schema += 1,
                    _ => report.rejected_by_encoding += 1,
                }
                Some(StreamProblem {
                    position: r.position,
                    kind: r.kind.as_str(),
                    reason: r.reason,
                })
            }
        };
        if let Some(p) = problem {
            if report.problems.len() < PROBLEMS_KEPT {
                report.problems.push(p);
            }
        }
    }
    Ok(report)
}
