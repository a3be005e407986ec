//! Which finished jobs are kept (`jobRetention`: at most so many jobs, so old, so many
//! bytes in their folders), and the deletion of one job. Applied when the engine starts
//! and after each job; the oldest finished jobs go first, with their folders. Waiting and
//! running jobs are never deleted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::JobRetention;
use crate::error::{Error, Result};
use crate::store::Store;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A job's folder under the data dir.
pub fn job_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("jobs").join(id)
}

/// `apply`, its outcome logged: what the engine does at start and after each job.
pub async fn apply_logged(store: &Store, data_dir: &Path, policy: JobRetention, now_ms: i64) {
    match apply(store, data_dir, policy, now_ms).await {
        Ok(deleted) if !deleted.is_empty() => {
            tracing::info!("job retention: {} old job(s) deleted", deleted.len());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("job retention: {e}"),
    }
}

/// Deletes the finished jobs `policy` does not keep; returns their ids.
pub async fn apply(
    store: &Store,
    data_dir: &Path,
    policy: JobRetention,
    now_ms: i64,
) -> Result<Vec<String>> {
    let finished = store.finished_oldest_first().await?;
    let all = store.ids().await?;
    let mut jobs = all.len() as u64;
    // Folders are walked only when their bytes are bounded.
    let sizes: HashMap<String, u64> = if policy.max_bytes == 0 {
        HashMap::new()
    } else {
        let data_dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            all.into_iter()
                .map(|id| {
                    let size = folder_bytes(&job_dir(&data_dir, &id));
                    (id, size)
                })
                .collect()
        })
        .await
        .map_err(|e| Error::Store(format!("measuring job folders failed: {e}")))?
    };
    let mut bytes: u64 = sizes.values().sum();
    let size_of = |id: &str| sizes.get(id).copied().unwrap_or(0);
    let oldest_kept = now_ms.saturating_sub((policy.max_age_days as i64).saturating_mul(DAY_MS));
    let mut deleted = Vec::new();
    for (id, finished_ms) in finished {
        let too_many = policy.max_jobs > 0 && jobs > policy.max_jobs;
        let too_old = policy.max_age_days > 0 && finished_ms < oldest_kept;
        let too_big = policy.max_bytes > 0 && bytes > policy.max_bytes;
        // Oldest first: the younger ones are no older, and count and size only go down.
        if !(too_many || too_old || too_big) {
            break;
        }
        if store.delete_finished(&id).await? {
            remove_folder(job_dir(data_dir, &id)).await;
            jobs -= 1;
            bytes = bytes.saturating_sub(size_of(&id));
            deleted.push(id);
        }
    }
    Ok(deleted)
}

/// Deletes one job with its log and folder. A job not finished yet is refused (409): it
/// must be cancelled first.
pub async fn delete_job(store: &Store, data_dir: &Path, id: &str) -> Result<()> {
    let row = store
        .get(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("job {id}")))?;
    if !row.status.is_final() || !store.delete_finished(id).await? {
        return Err(Error::Conflict(format!(
            "job {id} is {}: cancel it first (POST /api/jobs/{id}/cancel), then delete it",
            row.status.as_str()
        )));
    }
    remove_folder(job_dir(data_dir, id)).await;
    Ok(())
}

async fn remove_folder(dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove {}: {e}", dir.display());
            }
        }
    })
    .await;
}

/// Bytes of the regular files under `dir` (links not followed).
fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Finish, JobRow, JobState};

    fn row(id: &str) -> JobRow {
        JobRow::submitted(
            id.into(),
            "MODEL_BATCH_JOB".into(),
            None,
            JobState::Waiting,
            0,
            "{}".into(),
        )
    }

    fn done() -> Finish {
        Finish {
            status: JobState::Complete,
            result: Some("SUCCESS".into()),
            reason: None,
            records_in: 0,
            records_out: 0,
            records_rejected: 0,
            records_failed: 0,
            outcome: None,
            interrupted: false,
        }
    }

    #[tokio::test]
    async fn old_and_big_finished_jobs_go_waiting_ones_stay() {
        let data = tempfile::tempdir().unwrap();
        let store = Store::open(data.path()).unwrap();
        let now = 100 * DAY_MS;
        for (id, finished_days, bytes) in [("old", 10, 10), ("big", 90, 5000), ("new", 99, 10)] {
            store.insert(row(id)).await.unwrap();
            store
                .finish(id, finished_days * DAY_MS, done())
                .await
                .unwrap();
            std::fs::create_dir_all(job_dir(data.path(), id)).unwrap();
            std::fs::write(job_dir(data.path(), id).join("f"), vec![0u8; bytes]).unwrap();
        }
        store.insert(row("waiting")).await.unwrap();
        std::fs::create_dir_all(job_dir(data.path(), "waiting")).unwrap();
        std::fs::write(job_dir(data.path(), "waiting").join("f"), vec![0u8; 9000]).unwrap();
        let policy = JobRetention {
            max_jobs: 0,
            max_age_days: 30,
            max_bytes: 10_000,
        };
        let deleted = apply(&store, data.path(), policy, now).await.unwrap();
        assert_eq!(deleted, vec!["old".to_owned(), "big".to_owned()]);
        assert!(!job_dir(data.path(), "old").exists());
        assert!(store.get("new").await.unwrap().is_some());
        assert!(store.get("waiting").await.unwrap().is_some());
        let err = delete_job(&store, data.path(), "waiting")
            .await
            .unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::CONFLICT);
    }
}
