//! Multipart uploads, which WebHDFS has not: the parts are appended in order to a hidden
//! temporary sibling, renamed onto the object's path at `complete`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};
use reqwest::Body;

use crate::store::{payload_body, WebHdfs};
use crate::Error;

/// An upload in progress. Parts land in the order `put_part` was called, whatever order
/// their futures are polled in: each part's data waits in `Parts` until it is its turn, and
/// whichever future runs appends every part due up to its own (the first part `CREATE`s
/// the temporary file, the next ones `APPEND` to it). Dropped without `complete` or `abort`,
/// the temporary stays (hidden: its name starts with `.` and ends with `._COPYING_`).
#[derive(Debug)]
pub(crate) struct Upload {
    store: WebHdfs,
    location: Path,
    target: String,
    temporary: String,
    given: usize,
    parts: Arc<Mutex<Parts>>,
    /// Held by the one future appending at a time.
    appender: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Default)]
struct Parts {
    /// The number of the next part to append: parts before it are in the file.
    next: usize,
    /// Parts given and not appended yet, by number.
    waiting: BTreeMap<usize, PutPayload>,
    /// Why the upload cannot go on, once an append failed.
    failed: Option<String>,
}

impl Upload {
    pub(crate) fn new(store: WebHdfs, location: Path) -> Upload {
        let target = store.client.hdfs_path(&location);
        let temporary = store.client.temporary_path(&target);
        Upload {
            store,
            location,
            target,
            temporary,
            given: 0,
            parts: Arc::default(),
            appender: Arc::default(),
        }
    }

    /// Appends the waiting parts in order, up to part `until` (exclusive).
    async fn append_until(&self, until: usize) -> object_store::Result<()> {
        append_until(
            &self.store,
            &self.parts,
            &self.appender,
            &self.temporary,
            &self.location,
            until,
        )
        .await
    }
}

fn lock(parts: &Mutex<Parts>) -> std::sync::MutexGuard<'_, Parts> {
    // A panic elsewhere while holding it leaves nothing half-changed worth refusing.
    parts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn append_until(
    store: &WebHdfs,
    parts: &Mutex<Parts>,
    appender: &tokio::sync::Mutex<()>,
    temporary: &str,
    location: &Path,
    until: usize,
) -> object_store::Result<()> {
    let _turn = appender.lock().await;
    loop {
        let (number, data) = {
            let mut parts = lock(parts);
            if let Some(why) = &parts.failed {
                return Err(crate::error::generic(Error::PartFailed {
                    path: location.to_string(),
                    why: why.clone(),
                }));
            }
            if parts.next >= until {
                return Ok(());
            }
            let number = parts.next;
            match parts.waiting.remove(&number) {
                Some(data) => (number, data),
                None => {
                    return Err(crate::error::generic(Error::PartFailed {
                        path: location.to_string(),
                        why: format!("part {number} was never given"),
                    }))
                }
            }
        };
        let (body, length) = payload_body(data);
        let appended = if number == 0 {
            store
                .client
                .create(temporary, body, Some(length), true)
                .await
        } else {
            store.client.append(temporary, body, Some(length)).await
        };
        let mut parts = lock(parts);
        match appended {
            Ok(()) => parts.next = number + 1,
            Err(e) => {
                parts.failed = Some(format!("part {number}: {e}"));
                return Err(e.into_object_store(location.as_ref()));
            }
        }
    }
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let number = self.given;
        self.given += 1;
        lock(&self.parts).waiting.insert(number, data);
        let store = self.store.clone();
        let parts = self.parts.clone();
        let appender = self.appender.clone();
        let temporary = self.temporary.clone();
        let location = self.location.clone();
        Box::pin(async move {
            append_until(&store, &parts, &appender, &temporary, &location, number + 1).await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if self.given == 0 {
            // No part: the object is empty.
            self.store
                .client
                .create(&self.temporary, Body::from(Bytes::new()), Some(0), true)
                .await
                .map_err(|e| e.into_object_store(self.location.as_ref()))?;
        } else {
            self.append_until(self.given).await?;
        }
        let renamed = self
            .store
            .rename_onto(&self.temporary, &self.target, true, &self.location)
            .await;
        if renamed.is_err() {
            let _ = self.store.client.delete(&self.temporary).await;
        }
        renamed?;
        self.store.put_result(&self.location).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        // Parts not yet appended are dropped; one being appended is waited for, so it does
        // not land after the temporary is gone.
        {
            let mut parts = lock(&self.parts);
            parts.waiting.clear();
            parts.failed = Some("the upload was aborted".into());
        }
        let _turn = self.appender.lock().await;
        self.store
            .client
            .delete(&self.temporary)
            .await
            .map(|_| ())
            .map_err(|e| e.into_object_store(self.location.as_ref()))
    }
}
