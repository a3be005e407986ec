//! Inputs as real ModelOp models meet them, through the real `engine run`: broken streams,
//! data that must not change silently, whole-file records, encodings by extension and input
//! paths.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const ECHO: &str = "tests/models/echo-inputs/model.py";

fn engine(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .current_dir(root())
        .env_remove("ENGINE_LOG")
        .output()
        .expect("engine runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Runs the echo model over `input` with extra arguments.
fn echo(input: &Path, extra: &[&str]) -> Output {
    let input = input.to_str().unwrap();
    let mut args = vec!["run", ECHO, "--workers", "1", "--input", input];
    args.extend_from_slice(extra);
    engine(&args)
}

/// `n` MessagePack maps `{"x": i}`, then the start of one more cut short.
fn truncated_msgpack(n: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend_from_slice(&[0x81, 0xa1, b'x', 0xcd]);
        bytes.extend_from_slice(&i.to_be_bytes());
    }
    bytes.extend_from_slice(&[0x81, 0xa1, b'x', 0xcd, 0x01]);
    bytes
}

#[test]
fn h5_a_broken_stream_keeps_every_record_decoded_before_the_break() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cut.msgpack");
    std::fs::write(&input, truncated_msgpack(460)).unwrap();
    for batch in ["1000", "10"] {
        let out = echo(&input, &["--batch-size", batch]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let records = lines(&out);
        assert_eq!(records.len(), 460, "batch {batch}: {err}");
        assert_eq!(records[459]["value"]["x"], 459);
        assert!(err.contains("cannot be read past"), "{err}");
        assert!(err.contains("Records in/out: 460/460"), "{err}");
    }
}

#[test]
fn h5_silent_data_changes_are_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    std::fs::write(
        &input,
        "{\"id\": 18446744073709551615}\n{\"id\": 18446744073709551616}\n",
    )
    .unwrap();
    let out = echo(&input, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let records = lines(&out);
    assert_eq!(records.len(), 1, "{err}");
    assert_eq!(records[0]["value"]["id"], 18446744073709551615u64);
    assert!(
        err.contains("integer 18446744073709551616 does not fit in 64 bits"),
        "{err}"
    );

    let input = dir.path().join("dup.csv");
    std::fs::write(&input, "\u{feff}a,a\n1,2\n3,\"open\n").unwrap();
    let out = echo(&input, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let records = lines(&out);
    assert_eq!(records.len(), 1, "{err}");
    assert_eq!(records[0]["value"], serde_json::json!({"a": 1, "a.1": 2}));
    assert!(err.contains("never closed"), "{err}");
}
