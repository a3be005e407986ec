//! R metrics jobs stream their records to the R worker: the engine holds a batch at a time,
//! not the whole input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Peak resident memory of a process, KiB (`None` once it is gone).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs the metrics model over `records` records; returns the summary the model wrote and
/// the engine's peak resident memory in KiB.
fn metrics_run(dir: &Path, records: u64) -> (serde_json::Value, u64) {
    let input = dir.join(format!("in-{records}.jsonl"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let text = "r".repeat(200);
    for i in 0..records {
        writeln!(f, r#"{{"x": {i}, "text": "{text}"}}"#).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let output = dir.join(format!("out-{records}.jsonl"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args([
            "run",
            "tests/models/r-metrics-many-records/metrics.R",
            "--job",
            "metrics",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .current_dir(root())
        .env_remove("ENGINE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("engine runs");
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    // VmHWM only grows: the last reading before the engine exits is its peak.
    let mut peak = 0;
    let status = loop {
        if let Some(hwm) = vm_hwm_kib(pid) {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let err = err.join().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    let summary = std::fs::read_to_string(&output).unwrap();
    let summary: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    std::fs::remove_file(&input).unwrap();
    (summary, peak)
}

#[test]
fn an_r_metrics_job_over_many_records_keeps_the_engine_peak_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (small, small_peak) = metrics_run(dir.path(), 1_000);
    assert_eq!(small["rows"], 1_000);
    // 300,000 records of 200 characters: 60 MB of text alone, more as engine values.
    let n: u64 = 300_000;
    let (big, big_peak) = metrics_run(dir.path(), n);
    assert_eq!(big["rows"], n);
    assert_eq!(big["sum_x"].as_f64(), Some((n * (n - 1) / 2) as f64));
    assert_eq!(big["text_chars"], 200 * n);
    assert!(
        big_peak < small_peak + 40 * 1024,
        "the engine's peak grew from {small_peak} KiB over 1,000 records to {big_peak} KiB \
         over {n}: it holds the records instead of streaming them"
    );
}
