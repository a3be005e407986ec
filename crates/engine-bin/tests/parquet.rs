//! Parquet through the real `engine run`: a file pyarrow wrote (several row groups) read by
//! its extension and scored to JSON lines; a folder of them; a Parquet output pyarrow reads
//! back; a file cut short failing the job with the reason.
//!
//! pyarrow runs under `PYO3_PYTHON` (scripts/env.sh; scripts/requirements-test.txt); a missing
//! pyarrow fails these tests, saying so.

mod common;

use std::path::Path;
use std::process::Command;

use common::{json_lines as lines, run_engine as engine, text};
use serde_json::json;

const ECHO: &str = "tests/models/echo-inputs/model.py";

fn python(script: &str, args: &[&str]) -> String {
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {python}: {e}"));
    assert!(out.status.success(), "python failed: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `rows` rows of `{"id", "name", "at", "tags"}`, `per_group` per row group.
fn write_parquet(path: &Path, rows: usize, per_group: usize) {
    python(
        r#"
import sys, datetime, pyarrow as pa, pyarrow.parquet as pq
n, per = int(sys.argv[2]), int(sys.argv[3])
t = pa.table({
    "id": pa.array(range(n), pa.int64()),
    "name": pa.array(["row %d" % i if i % 5 else None for i in range(n)]),
    "at": pa.array([datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=i) for i in range(n)], pa.timestamp("ms")),
    "tags": pa.array([[i, i + 1] for i in range(n)], pa.list_(pa.int32())),
})
pq.write_table(t, sys.argv[1], row_group_size=per)
"#,
        &[
            path.to_str().unwrap(),
            &rows.to_string(),
            &per_group.to_string(),
        ],
    );
}

#[test]
fn a_parquet_file_is_scored_to_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("data.parquet");
    write_parquet(&input, 2500, 1000);
    let out = engine(&[
        "run",
        ECHO,
        "--workers",
        "1",
        "--input",
        input.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let records = lines(&out);
    assert_eq!(records.len(), 2500, "{err}");
    assert_eq!(
        records[0],
        json!({"type": "dict", "value": {"id": 0, "name": null, "at": "2024-01-01T00:00:00", "tags": [0, 1]}})
    );
    assert_eq!(
        records[1001],
        json!({"type": "dict", "value": {"id": 1001, "name": "row 1001", "at": "2024-01-01T00:16:41", "tags": [1001, 1002]}})
    );
    let ids: Vec<i64> = records
        .iter()
        .map(|r| r["value"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (0..2500).collect::<Vec<_>>(), "in file order");
    assert!(err.contains("Records in/out: 2500/2500"), "{err}");
}

#[test]
fn a_folder_of_parquet_files_is_read_file_after_file() {
    let dir = tempfile::tempdir().unwrap();
    let parts = dir.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    write_parquet(&parts.join("part-0.parquet"), 3, 2);
    write_parquet(&parts.join("part-1.parquet"), 2, 2);
    let descriptor = json!({
        "Transport": {"Type": "file", "Path": parts.to_str().unwrap()},
        "Encoding": "parquet",
    })
    .to_string();
    let out = engine(&["run", ECHO, "--workers", "1", "--input", &descriptor]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let ids: Vec<i64> = lines(&out)
        .iter()
        .map(|r| r["value"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [0, 1, 2, 0, 1]);
}

#[test]
fn a_parquet_output_is_read_back_by_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\": 1, \"x\": 0.5}\n{\"id\": 2, \"x\": 1}\n{\"id\": 3, \"x\": null}\n",
    )
    .unwrap();
    let output = dir.path().join("out.parquet");
    let out = engine(&[
        "run",
        ECHO,
        "--workers",
        "1",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let seen = python(
        r#"
import sys, json, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(json.dumps({"types": {f.name: str(f.type) for f in t.schema}, "rows": t.to_pylist()}))
"#,
        &[output.to_str().unwrap()],
    );
    let seen: serde_json::Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(
        seen,
        json!({
            "types": {"type": "string", "value": "struct<id: int64, x: double>"},
            "rows": [
                {"type": "dict", "value": {"id": 1, "x": 0.5}},
                {"type": "dict", "value": {"id": 2, "x": 1.0}},
                {"type": "dict", "value": {"id": 3, "x": null}},
            ],
        })
    );
}

#[test]
fn a_parquet_file_cut_short_fails_the_job_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.parquet");
    write_parquet(&good, 10, 5);
    let bytes = std::fs::read(&good).unwrap();
    let input = dir.path().join("cut.parquet");
    std::fs::write(&input, &bytes[..bytes.len() / 2]).unwrap();
    let out = engine(&[
        "run",
        ECHO,
        "--workers",
        "1",
        "--input",
        input.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(lines(&out).is_empty());
    assert!(
        err.contains("does not end with the magic number PAR1"),
        "{err}"
    );
}
