//! The engine side against stand-in workers written in shell: greetings, deaths and console
//! lines, without any language runner.

use std::sync::Arc;

use runtime_core::{Error, LogSource, MemoryLog};
use worker::protocol::{encode_frame, FromWorker, PROTOCOL_VERSION};
use worker::{WorkerCommand, WorkerSession};

/// A worker that runs `script` in bash; `$HELLO` holds a printf format writing `hello`.
fn bash(script: &str, hello: &FromWorker) -> WorkerCommand {
    let mut frame = Vec::new();
    encode_frame(&mut frame, hello).unwrap();
    let escaped: String = frame.iter().map(|b| format!("\\x{b:02x}")).collect();
    let mut c = WorkerCommand::new("/bin/bash").arg("-c").arg(script);
    c.env.push(("HELLO".into(), escaped.into()));
    c
}

fn hello(version: u32) -> FromWorker {
    FromWorker::Hello { version, pid: 1 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_version_mismatch_is_a_protocol_error() {
    let log = Arc::new(MemoryLog::default());
    let cmd = bash(
        r#"printf "$HELLO" >&3; sleep 5"#,
        &hello(PROTOCOL_VERSION + 1),
    );
    match WorkerSession::spawn(&cmd, log).await {
        Err(Error::Protocol(m)) => assert!(m.contains("protocol version"), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dying_before_its_greeting_says_how_and_its_stderr_is_logged() {
    let log = Arc::new(MemoryLog::default());
    let cmd = bash(
        "echo 'thread main panicked at boom' >&2; echo out; exit 5",
        &hello(1),
    );
    match WorkerSession::spawn(&cmd, log.clone()).await {
        Err(Error::WorkerDied {
            reason,
            last_record,
        }) => {
            assert_eq!(reason, "exited with status 5");
            assert_eq!(last_record, None);
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    let lines = log.lines();
    assert!(lines.iter().any(
        |l| l.source == LogSource::ModelConsole && l.message == "thread main panicked at boom"
    ));
    assert!(lines
        .iter()
        .any(|l| l.source == LogSource::ModelConsole && l.message == "out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_names_the_signal() {
    let log = Arc::new(MemoryLog::default());
    let cmd = bash(
        r#"printf "$HELLO" >&3; kill -KILL $$"#,
        &hello(PROTOCOL_VERSION),
    );
    let mut s = WorkerSession::spawn(&cmd, log).await.unwrap();
    let init = runtime_core::InitContext::Job {
        raw_json: "{}".into(),
    };
    match s.init(&init).await {
        Err(Error::WorkerDied { reason, .. }) => {
            assert_eq!(reason, "killed by signal 9 (SIGKILL)")
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_is_an_io_error() {
    let log = Arc::new(MemoryLog::default());
    let cmd = WorkerCommand::new("/nonexistent/worker");
    match WorkerSession::spawn(&cmd, log).await {
        Err(Error::Io { context, .. }) => assert!(context.contains("/nonexistent/worker")),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn death_is_seen_even_when_a_descendant_holds_the_socket() {
    let log = Arc::new(MemoryLog::default());
    // The background sleep inherits fd 3 and keeps it open after bash exits.
    let cmd = bash(
        r#"printf "$HELLO" >&3; (sleep 30 >/dev/null 2>&1 &); exit 4"#,
        &hello(PROTOCOL_VERSION),
    );
    let mut s = WorkerSession::spawn(&cmd, log).await.unwrap();
    let init = runtime_core::InitContext::Job {
        raw_json: "{}".into(),
    };
    let started = std::time::Instant::now();
    match s.init(&init).await {
        Err(Error::WorkerDied { reason, .. }) => assert_eq!(reason, "exited with status 4"),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
