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
    target: String,
    given: usize,
    /// Shared with the futures `put_part` returns.
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: WebHdfs,
    location: Path,
    temporary: String,
    parts: Mutex<Parts>,
    /// Held by the one future appending at a time.
    appender: tokio::sync::Mutex<()>,
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
            target,
            given: 0,
            shared: Arc::new(Shared {
                store,
                location,
                temporary,
                parts: Mutex::default(),
                appender: tokio::sync::Mutex::default(),
            }),
        }
    }
}

impl Shared {
    fn parts(&self) -> std::sync::MutexGuard<'_, Parts> {
        // A panic elsewhere while holding it leaves nothing half-changed worth refusing.
        self.parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error(&self, e: Error) -> object_store::Error {
        e.into_object_store(self.location.as_ref())
    }

    /// Appends the waiting parts in order, up to part `until` (exclusive).
    async fn append_until(&self, until: usize) -> object_store::Result<()> {
        let _turn = self.appender.lock().await;
        loop {
            let (number, data) = {
                let mut parts = self.parts();
                if let Some(why) = &parts.failed {
                    return Err(crate::error::generic(Error::PartFailed {
                        path: self.location.to_string(),
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
                            path: self.location.to_string(),
                            why: format!("part {number} was never given"),
                        }))
                    }
                }
            };
            let (body, length) = payload_body(data);
            let client = &self.store.client;
            let appended = if number == 0 {
                client
                    .create(&self.temporary, body, Some(length), true)
                    .await
            } else {
                client.append(&self.temporary, body, Some(length)).await
            };
            let mut parts = self.parts();
            match appended {
                Ok(()) => parts.next = number + 1,
                Err(e) => {
                    parts.failed = Some(format!("part {number}: {e}"));
                    return Err(self.error(e));
                }
            }
        }
    }
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let number = self.given;
        self.given += 1;
        self.shared.parts().waiting.insert(number, data);
        let shared = self.shared.clone();
        Box::pin(async move { shared.append_until(number + 1).await })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let shared = &self.shared;
        if self.given == 0 {
            // No part: the object is empty.
            shared
                .store
                .client
                .create(&shared.temporary, Body::from(Bytes::new()), Some(0), true)
                .await
                .map_err(|e| shared.error(e))?;
        } else {
            shared.append_until(self.given).await?;
        }
        let renamed = shared
            .store
            .rename_onto(&shared.temporary, &self.target, true, &shared.location)
            .await;
        if renamed.is_err() {
            let _ = shared.store.client.delete(&shared.temporary).await;
        }
        renamed?;
        shared.store.put_result(&shared.location).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let shared = &self.shared;
        // Parts not yet appended are dropped; one being appended is waited for, so it does
        // not land after the temporary is gone.
        {
            let mut parts = shared.parts();
            parts.waiting.clear();
            parts.failed = Some("the upload was aborted".into());
        }
        let _turn = shared.appender.lock().await;
        shared
            .store
            .client
            .delete(&shared.temporary)
            .await
            .map(|_| ())
            .map_err(|e| shared.error(e))
    }
}
