//! The malformed-input corpus: tests/data/codecs/malformed/expected.json lists, per file, the
//! exact sequence of records and rejections (position and reason) and where reading breaks.
mod common;

use codecs::{AvroSchema, CodecConfig, Encoding};
use runtime_core::{Position, ReadItem};
use serde_json::Value as J;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/codecs/malformed/"
);

fn check_position(file: &str, i: usize, got: &Position, want: &J) {
    let opt = |k: &str| want.get(k).and_then(J::as_u64);
    assert_eq!(Some(got.record), opt("record"), "{file} item {i}: record");
    assert_eq!(got.line, opt("line"), "{file} item {i}: line");
    assert_eq!(
        got.byte_offset,
        opt("byte_offset"),
        "{file} item {i}: byte offset"
    );
}

#[test]
fn malformed_corpus_gives_the_expected_rejections() {
    let spec: Vec<J> =
        serde_json::from_slice(&std::fs::read(format!("{DIR}expected.json")).unwrap()).unwrap();
    assert!(spec.len() >= 8);
    for case in &spec {
        let file = case["file"].as_str().unwrap();
        let mut cfg = CodecConfig::new(
            case["encoding"]
                .as_str()
                .unwrap()
                .parse::<Encoding>()
                .unwrap(),
        );
        if let Some(max) = case.get("max_record_bytes").and_then(J::as_u64) {
            cfg.max_record_bytes = max as usize;
        }
        if let Some(schema) = case.get("schema").and_then(J::as_str) {
            let text = std::fs::read_to_string(format!("{DIR}{schema}")).unwrap();
            cfg.schema = Some(AvroSchema::parse(&text).unwrap());
        }
        let bytes = std::fs::read(format!("{DIR}{file}")).unwrap();
        let mut dec = codecs::decoder(&cfg, std::io::Cursor::new(bytes), "corpus").unwrap();
        let want_items = case["items"].as_array().unwrap();
        let mut n = 0;
        let mut broken = None;
        while let Some(item) = dec.next_item() {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            };
            let want = want_items
                .get(n)
                .unwrap_or_else(|| panic!("{file}: unexpected extra item {item:?}"));
            match item {
                ReadItem::Record(r) => {
                    assert!(
                        want.get("ok").is_some(),
                        "{file} item {n}: wanted a rejection, got a record"
                    );
                    check_position(file, n, &r.position, want);
                }
                ReadItem::Rejected(r) => {
                    assert!(
                        want.get("ok").is_none(),
                        "{file} item {n}: unexpected rejection {r}"
                    );
                    check_position(file, n, &r.position, want);
                    assert_eq!(
                        r.kind.as_str(),
                        want["kind"].as_str().unwrap(),
                        "{file} item {n}"
                    );
                    let reason = want["reason"].as_str().unwrap();
                    assert!(
                        r.reason.contains(reason),
                        "{file} item {n}: '{}' lacks '{reason}'",
                        r.reason
                    );
                }
            }
            n += 1;
        }
        assert_eq!(n, want_items.len(), "{file}: number of items");
        match (broken, case.get("broken")) {
            (None, None) => {}
            (
                Some(runtime_core::Error::StreamBroken {
                    position, reason, ..
                }),
                Some(want),
            ) => {
                check_position(file, n, &position, want);
                let w = want["reason"].as_str().unwrap();
                assert!(reason.contains(w), "{file}: '{reason}' lacks '{w}'");
            }
            (got, want) => panic!("{file}: broken stream {got:?}, expected {want:?}"),
        }
        assert!(
            dec.next_item().is_none(),
            "{file}: decoder goes on after the end"
        );
    }
}
