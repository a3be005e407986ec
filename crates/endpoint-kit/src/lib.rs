//! The conformance kit of the model runtime's endpoints: the behaviour every source and sink
//! must have, written once as checks that every endpoint runs, the built-in ones and those
//! written outside the engine alike.
//!
//! An endpoint author implements a fixture ([`SourceFixture`], [`SinkFixture`]): fresh
//! streams or destinations for the endpoint, opened as the endpoint opens them, what a sink
//! wrote read back, and the [traits](SourceTraits) that say which checks apply (a file cannot
//! resume where it acknowledged, discard keeps nothing to read back). Then one call runs
//! every check:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn my_source_conforms() {
//!     let report = endpoint_kit::check_source(&MySourceFixture::new()).await.unwrap();
//!     println!("{report}");
//! }
//! ```
//!
//! The checks drive the endpoint through the engine's real pipeline (`jobs::run_job`), with
//! a model that echoes each record and the kit's own source or sink on the other side, so
//! what is checked is what a deployment will do: records in order, acknowledgements only
//! once the sink flushed, none for a failed write, an empty stream, a 64 MiB record, bytes
//! that do not decode, a cancel mid-stream, a restart resuming where acknowledged, two
//! streams at once ([`Check`]). A failure names its check and says what was expected.
//!
//! This crate reads no environment and holds no global state: the fixture owns whatever the
//! endpoint needs (a folder, a server's address).
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod data;
mod fixture;
mod pipeline;
mod sink;
mod source;

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub use fixture::{OpenOptions, SinkFixture, SinkTraits, SourceFixture, SourceTraits};

/// How long one check may take before it fails as hung.
const CHECK_TIMEOUT: Duration = Duration::from_secs(180);

/// One behaviour every endpoint must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Check {
    /// Every record comes out once, in stream order, numbered from 1.
    RecordsInOrder,
    /// A record is acknowledged only once the sink made its output durable: for a sink,
    /// what it wrote reads back as soon as `flush` returned `Ok`; for a source, reopened after
    /// a sink's flush failed, it reads from the first record that was not flushed.
    AcksOnlyAfterFlush,
    /// A failed write acknowledges nothing: a broken destination gives `Err` (from writing,
    /// flushing or finishing), never `Ok`, and every record written there ends failed.
    NoAckForFailedWrite,
    /// A stream with no record reads and writes as one.
    EmptyStream,
    /// A record of 64 MiB goes through whole within the size limit, and past it is rejected
    /// by size where it stands while the stream goes on.
    LargeRecord,
    /// Bytes that do not decode are a rejection naming their position, and the stream goes
    /// on.
    UndecodableBytes,
    /// A job cancelled mid-stream delivers a prefix of the stream, and acknowledges nothing
    /// after it.
    CancelMidStream,
    /// Reopened after a restart, a source reads on from the first record it did not
    /// acknowledge; records whose receipts were dropped unsettled are read again.
    RestartResumes,
    /// Two streams at once stay independent.
    ConcurrentStreams,
}

impl Check {
    pub const ALL: [Check; 9] = [
        Check::RecordsInOrder,
        Check::AcksOnlyAfterFlush,
        Check::NoAckForFailedWrite,
        Check::EmptyStream,
        Check::LargeRecord,
        Check::UndecodableBytes,
        Check::CancelMidStream,
        Check::RestartResumes,
        Check::ConcurrentStreams,
    ];

    /// The check's name, as failures give it.
    pub fn name(self) -> &'static str {
        match self {
            Check::RecordsInOrder => "records in order",
            Check::AcksOnlyAfterFlush => "acks only after the sink flush",
            Check::NoAckForFailedWrite => "no ack for a failed sink write",
            Check::EmptyStream => "empty stream",
            Check::LargeRecord => "a 64 MiB record",
            Check::UndecodableBytes => "bytes that don't decode",
            Check::CancelMidStream => "cancel mid-stream",
            Check::RestartResumes => "restart resumes where acknowledged",
            Check::ConcurrentStreams => "concurrent streams",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A check that failed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub check: Check,
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "check '{}' failed: {}", self.check, self.reason)
    }
}

/// The one error of this crate.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Checks failed; the others passed or were skipped as the fixture declared.
    #[error("{} of the endpoint's checks failed:\n{}", failures.len(), lines(failures))]
    Failed { failures: Vec<Failure> },
}

impl fmt::Debug for Error {
    /// As `Display`: a test returning this error shows every failure, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn lines(failures: &[Failure]) -> String {
    let lines: Vec<String> = failures.iter().map(|f| format!("  {f}")).collect();
    lines.join("\n")
}

/// What ran: every check passed or was skipped, by the fixture's declaration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub passed: Vec<Check>,
    /// The checks that do not apply, with the reason the fixture's traits give.
    pub skipped: Vec<(Check, &'static str)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.passed {
            writeln!(f, "passed: {c}")?;
        }
        for (c, why) in &self.skipped {
            writeln!(f, "skipped: {c} ({why})")?;
        }
        Ok(())
    }
}

/// The checks as they run.
#[derive(Default)]
struct Checks {
    report: Report,
    failures: Vec<Failure>,
}

impl Checks {
    /// Runs `check` unless `skip` gives a reason not to.
    async fn run(
        &mut self,
        check: Check,
        skip: Option<&'static str>,
        body: impl Future<Output = Result<(), String>>,
    ) {
        if let Some(why) = skip {
            self.skip(check, why);
            return;
        }
        let result = match tokio::time::timeout(CHECK_TIMEOUT, body).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "it did not finish within {} s",
                CHECK_TIMEOUT.as_secs()
            )),
        };
        match result {
            Ok(()) => self.report.passed.push(check),
            Err(reason) => self.failures.push(Failure { check, reason }),
        }
    }

    fn skip(&mut self, check: Check, why: &'static str) {
        self.report.skipped.push((check, why));
    }

    fn finish(self) -> Result<Report, Error> {
        if self.failures.is_empty() {
            Ok(self.report)
        } else {
            Err(Error::Failed {
                failures: self.failures,
            })
        }
    }
}

/// Runs every check of a source endpoint against `fixture`, each to its end, on the
/// caller's tokio runtime (the pipeline spawns tasks on it: a multi-threaded one, as
/// `#[tokio::test(flavor = "multi_thread")]` gives, runs it as the engine does).
pub async fn check_source<F: SourceFixture>(fixture: &F) -> Result<Report, Error> {
    let mut checks = Checks::default();
    source::run(fixture, &mut checks).await;
    checks.finish()
}

/// Runs every check of a sink endpoint against `fixture`, as [`check_source`] does.
pub async fn check_sink<F: SinkFixture>(fixture: &F) -> Result<Report, Error> {
    let mut checks = Checks::default();
    sink::run(fixture, &mut checks).await;
    checks.finish()
}
