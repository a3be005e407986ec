//! Exit statuses of `engine`, in one place.

use jobs::JobOutcome;

/// The command line was wrong (bad flag, missing file, unknown encoding).
pub const USAGE: i32 = 64;

/// 0 SUCCESS, 1 COMPLETE with FAILURE, 2 ERROR or cancelled.
pub fn of_outcome(outcome: &JobOutcome) -> i32 {
    outcome.exit_code()
}

/// The same statuses for a job of a running engine, from its `jobStatus` and `jobResult`.
pub fn of_job(status: &str, result: &str) -> i32 {
    match (status, result) {
        ("COMPLETE", "SUCCESS") => 0,
        ("COMPLETE", _) => 1,
        _ => ERROR,
    }
}

/// The job could not even start for a reason of the model's or the machine's.
pub const ERROR: i32 = 2;
