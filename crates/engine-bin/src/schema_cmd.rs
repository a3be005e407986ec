//! `engine schema check SCHEMA DATA`.

use std::io::BufReader;

use codecs::{CodecConfig, Encoding};

use crate::cli::SchemaCheckArgs;
use crate::exit;

pub fn check(args: &SchemaCheckArgs) -> i32 {
    let text = match std::fs::read_to_string(&args.schema) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("engine schema check: {}: {e}", args.schema.display());
            return exit::USAGE;
        }
    };
    let encoding = match &args.encoding {
        Some(e) => match e.parse::<Encoding>() {
            Ok(e) => e,
            Err(err) => {
                eprintln!("engine schema check: --encoding {e}: {err}");
                return exit::USAGE;
            }
        },
        None => {
            Encoding::from_extension(args.data.extension().and_then(|e| e.to_str()).unwrap_or(""))
        }
    };
    let file = match std::fs::File::open(&args.data) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("engine schema check: {}: {e}", args.data.display());
            return exit::USAGE;
        }
    };
    let codec = CodecConfig::new(encoding);
    match schema::check_stream(&text, BufReader::new(file), &codec) {
        Ok(report) => {
            eprintln!("{report}");
            if report.is_clean() {
                exit::OK
            } else {
                exit::FAILURE
            }
        }
        Err(e) => {
            eprintln!("engine schema check: {e}");
            exit::ERROR
        }
    }
}
