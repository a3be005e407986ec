//! Exit statuses of `engine`, in one place.

use jobs::JobOutcome;

/// The command line was wrong (bad flag, missing file, unknown encoding).
pub const USAGE: i32 = 64;

/// 0 SUCCESS, 1 COMPLETE with FAILURE, 2 ERROR or cancelled.
pub fn of_outcome(outcome: &JobOutcome) -> i32 {
    outcome.exit_code()
}

/// The job could not even start for a reason of the model's or the machine's.
pub const ERROR: i32 = 2;
