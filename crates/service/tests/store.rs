//! The job store on a real SQLite file: the claims the queue relies on.

use service::store::{JobRow, JobState, Store};

fn waiting(id: &str, seq: i64) -> JobRow {
    JobRow {
        id: id.into(),
        seq,
        job_type: "MODEL_BATCH_JOB".into(),
        name: None,
        status: JobState::Waiting,
        result: None,
        reason: None,
        created_ms: 1,
        started_ms: None,
        finished_ms: None,
        records_in: 0,
        records_out: 0,
        records_rejected: 0,
        records_failed: 0,
        document: "{}".into(),
        outcome: None,
        runs: 0,
        interrupted: false,
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
