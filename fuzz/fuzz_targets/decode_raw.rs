#![no_main]

use codecs::{Encoding, Framing};
use codecs_fuzz::{config, drain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    drain(
        &config(
            Encoding::Raw,
            Some(Framing::Delimited {
                separator: b"\r\n".to_vec(),
            }),
            false,
        ),
        data,
    );
});
