#![no_main]

use codecs::Encoding;
use codecs_fuzz::{config, drain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    drain(&config(Encoding::Utf8, None, false), data);
});
