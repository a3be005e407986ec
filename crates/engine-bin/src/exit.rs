//! Exit statuses of `engine`, in one place.

use jobs::{JobOutcome, JobResult, JobStatus};

/// The command line was wrong (bad flag, missing file, unknown encoding).
pub const USAGE: i32 = 64;

/// All went as asked (and `--help`, `--version`, a clean shutdown).
pub const OK: i32 = 0;

/// 0 SUCCESS, 1 COMPLETE with FAILURE, 2 ERROR or cancelled.
pub fn of_outcome(outcome: &JobOutcome) -> i32 {
    match (outcome.status, outcome.result) {
        (JobStatus::Complete, JobResult::Success) => OK,
        (JobStatus::Complete, JobResult::Failure) => FAILURE,
        _ => ERROR,
    }
}

/// The same statuses for a job of a running engine, from its `jobStatus` and `jobResult`.
pub fn of_job(status: &str, result: &str) -> i32 {
    match (status, result) {
        ("COMPLETE", "SUCCESS") => OK,
        ("COMPLETE", _) => FAILURE,
        _ => ERROR,
    }
}

/// The job ran to its end, but some records failed or were rejected (result FAILURE).
pub const FAILURE: i32 = 1;

/// The job could not even start for a reason of the model's or the machine's.
pub const ERROR: i32 = 2;
