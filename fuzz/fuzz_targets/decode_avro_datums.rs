#![no_main]

use codecs::{Encoding, Framing};
use codecs_fuzz::{config, drain, schema};
use libfuzzer_sys::fuzz_target;

// The first byte picks the schema (see `DATUM_SCHEMAS`); the rest is the datum stream.
fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let mut cfg = config(Encoding::AvroBinary, Some(Framing::AvroDatums), false);
    cfg.schema = Some(schema(usize::from(pick)));
    drain(&cfg, data);
});
