//! The job store on a real SQLite file: the claims the queue relies on.

use service::store::{JobRow, JobState, Store, StoredLine};

fn waiting(id: &str, seq: i64) -> JobRow {
    JobRow {
        seq,
        ..JobRow::submitted(
            id.into(),
            "MODEL_BATCH_JOB".into(),
            None,
            JobState::Waiting,
            1,
            "{}".into(),
        )
    }
}

#[tokio::test]
async fn a_job_cancelled_after_being_picked_is_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.insert(waiting("a", 1)).await.unwrap();
    let picked = store.next_waiting().await.unwrap().expect("a waits");
    assert_eq!(picked.id, "a");
    // A cancel lands between the pick and the start.
    assert!(store
        .transition(
            "a",
            &[JobState::Created, JobState::Waiting],
            JobState::Cancelled
        )
        .await
        .unwrap());
    assert!(
        !store.start("a", 2).await.unwrap(),
        "a cancelled job is not claimed"
    );
    let row = store.get("a").await.unwrap().unwrap();
    assert_eq!(row.status, JobState::Cancelled);
    assert_eq!(row.runs, 0);
}

#[tokio::test]
async fn a_waiting_job_is_claimed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.insert(waiting("b", 1)).await.unwrap();
    assert!(store.start("b", 2).await.unwrap());
    assert!(
        !store.start("b", 3).await.unwrap(),
        "a running job is not claimed again"
    );
    let row = store.get("b").await.unwrap().unwrap();
    assert_eq!(row.status, JobState::Running);
    assert_eq!((row.runs, row.started_ms), (1, Some(2)));
}

fn line(at_ms: i64, message: &str) -> StoredLine {
    StoredLine {
        at_ms,
        level: "INFO".into(),
        source: "MODEL".into(),
        message: message.into(),
    }
}

#[tokio::test]
async fn a_job_running_when_the_engine_stopped_is_marked_interrupted_at_open_with_its_log_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert(waiting("running", 1)).await.unwrap();
        store.insert(waiting("done", 2)).await.unwrap();
        store.insert(waiting("queued", 3)).await.unwrap();
        let mut created = waiting("created", 4);
        created.status = JobState::Created;
        store.insert(created).await.unwrap();
        assert!(store.start("running", 10).await.unwrap());
        store
            .append_log("running", vec![line(11, "scored 1"), line(12, "scored 2")])
            .await
            .unwrap();
        assert!(store.start("done", 13).await.unwrap());
        assert!(store
            .transition("done", &[JobState::Running], JobState::Complete)
            .await
            .unwrap());
        // The engine stops here, "running" still RUNNING on disk.
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.get("running").await.unwrap().unwrap().status,
        JobState::Running,
        "nothing changes before recovery"
    );
    assert_eq!(store.recover(100).await.unwrap(), ["running"]);

    let row = store.get("running").await.unwrap().unwrap();
    assert_eq!(row.status, JobState::Error);
    assert_eq!(row.result.as_deref(), Some("FAILURE"));
    assert!(row.interrupted);
    assert!(
        row.reason.as_deref().unwrap_or("").contains("interrupted"),
        "{:?}",
        row.reason
    );
    assert_eq!(
        (row.started_ms, row.finished_ms, row.runs),
        (Some(10), Some(100), 1)
    );
    // The model's lines stay, in order, followed by the engine's note of how to re-run.
    let log = store.log("running").await.unwrap();
    let messages: Vec<&str> = log.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[..2], ["scored 1", "scored 2"]);
    assert_eq!(
        (log[2].level.as_str(), log[2].source.as_str()),
        ("ERROR", "ENGINE")
    );
    assert!(
        messages[2].contains("interrupted") && messages[2].contains("/api/jobs/running/rerun"),
        "{}",
        messages[2]
    );

    // The others: finished stays finished, waiting stays waiting, created is queued.
    let status = |id: &'static str| {
        let store = store.clone();
        async move { store.get(id).await.unwrap().unwrap() }
    };
    let done = status("done").await;
    assert_eq!((done.status, done.interrupted), (JobState::Complete, false));
    assert_eq!(status("queued").await.status, JobState::Waiting);
    assert_eq!(status("created").await.status, JobState::Waiting);

    // Opening again finds nothing more to recover, and the interrupted job can be re-run,
    // its log still there.
    assert!(store.recover(200).await.unwrap().is_empty());
    assert_eq!(
        store.get("running").await.unwrap().unwrap().finished_ms,
        Some(100)
    );
    assert!(store.requeue("running").await.unwrap());
    let again = store.get("running").await.unwrap().unwrap();
    assert_eq!(
        (again.status, again.interrupted),
        (JobState::Waiting, false)
    );
    assert_eq!(store.log("running").await.unwrap().len(), 3);
}
