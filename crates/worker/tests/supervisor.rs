//! The supervisor every worker runs under, against stand-in workers written in shell that
//! speak no protocol: fds placed as asked, the progress page at fd 4 read by the watchdog,
//! and a death naming the record in flight.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use runtime_core::{Error, MemoryLog, ScoreItem, Slot, Value};
use worker::{WorkerCommand, WorkerLimits, WorkerProcess};

fn bash(script: &str) -> WorkerCommand {
    WorkerCommand::new("/bin/bash").arg("-c").arg(script)
}

fn items(first: u64, n: u64) -> Vec<ScoreItem> {
    (first..first + n)
        .map(|seqno| ScoreItem {
            slot: Slot(0),
            seqno,
            value: Value::Int(seqno as i128),
        })
        .collect()
}

/// Bash writing the progress page's two words (batch 1, record 2) through its fd 4.
const ON_RECORD_2_OF_BATCH_1: &str =
    r"printf '\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00' >&4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_looping_on_a_record_is_killed_at_its_time_limit_naming_the_record() {
    let log = Arc::new(MemoryLog::default());
    let cmd =
        bash(&format!("{ON_RECORD_2_OF_BATCH_1}; while :; do :; done")).with_limits(WorkerLimits {
            record_timeout: Some(Duration::from_millis(300)),
            ..WorkerLimits::default()
        });
    let mut p = WorkerProcess::spawn(&cmd, &[], log).unwrap();
    p.batch_started(1, items(5, 3));
    tokio::time::timeout(Duration::from_secs(20), p.exited())
        .await
        .expect("the watchdog stops the worker");
    let death = p.death(Duration::from_secs(2)).await;
    assert_eq!(death.seqno, Some(6));
    match death.broken.error() {
        Error::LimitExceeded {
            limit, last_record, ..
        } => {
            assert_eq!(limit, "time");
            assert_eq!(last_record.as_deref(), Some("seqno 6 on slot 0: 6"));
        }
        other => panic!("expected a time limit, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dying_between_records_is_reported_with_the_batch_in_flight() {
    use std::io::Read;
    let log = Arc::new(MemoryLog::default());
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut p = WorkerProcess::spawn(
        &bash("printf ready >&5; echo bye >&2; exit 3"),
        &[(theirs.as_fd(), 5)],
        log.clone(),
    )
    .unwrap();
    drop(theirs);
    p.batch_started(1, items(5, 3));
    let mut said = String::new();
    ours.read_to_string(&mut said).unwrap();
    assert_eq!(said, "ready", "the fd reached the worker as 5");
    let death = p.death(Duration::from_secs(5)).await;
    assert_eq!(death.seqno, None);
    match death.broken.error() {
        Error::WorkerDied {
            reason,
            last_record,
        } => {
            assert_eq!(reason, "exited with status 3");
            assert_eq!(
                last_record.as_deref(),
                Some("one of seqno 5..=7 (between records)")
            );
        }
        other => panic!("expected a death, got {other:?}"),
    }
    assert!(
        log.lines().iter().any(|l| l.message == "bye"),
        "the console reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_page_s_fd_cannot_be_taken() {
    let log = Arc::new(MemoryLog::default());
    let (_ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let e = WorkerProcess::spawn(&bash("exit 0"), &[(theirs.as_fd(), 4)], log).unwrap_err();
    assert!(e.to_string().contains("progress page"), "{e}");
}
