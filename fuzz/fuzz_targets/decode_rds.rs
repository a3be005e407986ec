#![no_main]

// The R worker's replies: R's serialization read to an R value, then to a record value.
// Errors are expected; a panic, an abort or an allocation far beyond the input is a failure
// (run with `-rss_limit_mb` / `-malloc_limit_mb` to catch the last). Seed the corpus with
// crates/runner-r/tests/data/*.bin.

use libfuzzer_sys::fuzz_target;
use runner_r::rds;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = rds::read(data) {
        let _ = rds::to_value(&v);
    }
});
