//! [`WebHdfs`]: `object_store::ObjectStore` mapped onto WebHDFS operations.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::{Path, PathPart};
use object_store::{
    Attributes, CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, RenameTargetMode,
};
use reqwest::Body;

use crate::client::{Client, FileStatus, TEMPORARY_SUFFIX};
use crate::error::{generic, STORE};
use crate::upload::Upload;
use crate::Error;

/// HDFS through its WebHDFS (or HttpFS) REST API, as an [`ObjectStore`]. Built by
/// [`WebHdfsBuilder`](crate::WebHdfsBuilder); cheap to clone (clones share one HTTP client).
///
/// | `ObjectStore` | WebHDFS |
/// |---|---|
/// | `get_opts` | `GETFILESTATUS`, then `OPEN` with `offset`/`length`, following the 307 to a datanode |
/// | `head` | `GETFILESTATUS` |
/// | `put_opts` | `CREATE` (`overwrite=true`, or `false` for `PutMode::Create`): the namenode's 307, then the data to the datanode |
/// | `put_multipart_opts` | `CREATE` then `APPEND` per part, in order, of a hidden sibling `.<name>.<unique>._COPYING_`, renamed onto the path at `complete` (deleted at `abort`) |
/// | `delete_stream` | `DELETE` (not recursive); a missing file is not an error |
/// | `list`, `list_with_delimiter` | `LISTSTATUS_BATCH` pages (`LISTSTATUS` on servers without it), folders walked for `list` |
/// | `copy_opts` | read and write (HDFS has no server-side copy) through a temporary sibling renamed into place |
/// | `rename_opts` | `MKDIRS` of the target's folder, then `RENAME` with `renameoptions=OVERWRITE` or `NONE` |
///
/// Folders are HDFS's own: `list_with_delimiter` names every folder under the prefix as a
/// common prefix, empty ones too, and deleting a folder's last file leaves the folder.
#[derive(Clone)]
pub struct WebHdfs {
    pub(crate) client: Arc<Client>,
}

impl fmt::Debug for WebHdfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.client.fmt(f)
    }
}

impl fmt::Display for WebHdfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = if self.client.root().is_empty() {
            "/"
        } else {
            self.client.root()
        };
        write!(f, "WebHdfs({}{root})", self.client.address())
    }
}

fn not_implemented(operation: &str) -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: operation.into(),
        implementer: "WebHdfs".into(),
    }
}

fn meta(location: Path, status: &FileStatus) -> ObjectMeta {
    ObjectMeta {
        location,
        last_modified: DateTime::<Utc>::from_timestamp_millis(status.modification_time)
            .unwrap_or_default(),
        size: status.length,
        e_tag: Some(status.e_tag()),
        version: None,
    }
}

/// The object path of a listing's entry `name` in the folder `parent`.
fn child(parent: &Path, name: &str) -> Path {
    match PathPart::parse(name) {
        Ok(part) => parent.clone().join(part),
        // `.`, `..` or control characters: kept, encoded.
        Err(_) => parent.clone().join(PathPart::from(name)),
    }
}

/// A body for a payload: its chunks as they are, never copied into one buffer.
pub(crate) fn payload_body(payload: PutPayload) -> (Body, u64) {
    let length = payload.content_length() as u64;
    let chunks: Vec<Bytes> = payload.into_iter().collect();
    let body = match chunks.len() {
        0 => Body::from(Bytes::new()),
        1 => Body::from(chunks.into_iter().next().unwrap_or_default()),
        _ => Body::wrap_stream(stream::iter(
            chunks.into_iter().map(Ok::<Bytes, std::io::Error>),
        )),
    };
    (body, length)
}

/// A listing's entry that is not an object of the store: a temporary file being written.
fn hidden(status: &FileStatus) -> bool {
    status.path_suffix.ends_with(TEMPORARY_SUFFIX)
}

impl WebHdfs {
    /// The status of the file at `location`; `NotFound` for nothing or a folder.
    async fn file_status(&self, location: &Path) -> object_store::Result<FileStatus> {
        let hdfs = self.client.hdfs_path(location);
        match self.client.status(&hdfs).await {
            Ok(Some(status)) if status.is_file() => Ok(status),
            Ok(Some(_)) => Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: format!("{hdfs} is a folder").into(),
            }),
            Ok(None) => Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: format!("{hdfs} does not exist").into(),
            }),
            Err(e) => Err(e.into_object_store(location.as_ref())),
        }
    }

    /// What a finished write returns: the file's entity tag (HDFS says nothing of it when
    /// writing, so it is asked for).
    pub(crate) async fn put_result(&self, location: &Path) -> object_store::Result<PutResult> {
        let status = self.file_status(location).await?;
        Ok(PutResult {
            e_tag: Some(status.e_tag()),
            version: None,
            extensions: Default::default(),
        })
    }

    /// Creates the folder `hdfs` would be renamed into, unless it is the file system's root.
    async fn make_parent(&self, hdfs: &str) -> Result<(), Error> {
        match hdfs.rfind('/') {
            Some(0) | None => Ok(()),
            Some(i) => self.client.mkdirs(&hdfs[..i]).await,
        }
    }

    /// Renames the file `from` onto `to` (both HDFS paths), replacing a file there when
    /// `overwrite`; `location` names `to` in errors.
    pub(crate) async fn rename_onto(
        &self,
        from: &str,
        to: &str,
        overwrite: bool,
        location: &Path,
    ) -> object_store::Result<()> {
        let os = |e: Error| e.into_object_store(location.as_ref());
        self.make_parent(to).await.map_err(os)?;
        if self.client.rename(from, to, overwrite).await.map_err(os)? {
            return Ok(());
        }
        // A server that ignored `renameoptions` and did the old rename, which answers false
        // for a missing source or an existing target.
        if self.client.status(from).await.map_err(os)?.is_none() {
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: format!("{from} does not exist").into(),
            });
        }
        match self.client.status(to).await.map_err(os)? {
            Some(target) if !overwrite => Err(object_store::Error::AlreadyExists {
                path: location.to_string(),
                source: format!(
                    "{to} exists (a {})",
                    if target.is_dir() { "folder" } else { "file" }
                )
                .into(),
            }),
            Some(target) if target.is_file() => {
                self.client.delete(to).await.map_err(os)?;
                if self.client.rename(from, to, true).await.map_err(os)? {
                    Ok(())
                } else {
                    Err(self.refused(from, to))
                }
            }
            _ => Err(self.refused(from, to)),
        }
    }

    fn refused(&self, from: &str, to: &str) -> object_store::Error {
        generic(Error::RenameRefused {
            address: self.client.address().to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
        })
    }

    /// One page of the folder `hdfs` (the object path `dir`): its files as objects, its
    /// folders, and the name to continue after when more follow. `None` when `hdfs` is not a
    /// folder.
    async fn page(
        &self,
        hdfs: &str,
        dir: &Path,
        after: Option<&str>,
    ) -> object_store::Result<Option<(Vec<ObjectMeta>, Vec<String>, Option<String>)>> {
        let page = self
            .client
            .list_page(hdfs, after)
            .await
            .map_err(|e| e.into_object_store(dir.as_ref()))?;
        let Some(page) = page else {
            return Ok(None);
        };
        // A file lists as itself, with no name of its own: the prefix is not a folder.
        if page.entries.iter().any(|e| e.path_suffix.is_empty()) {
            return Ok(None);
        }
        let next = if page.more {
            page.entries.last().map(|e| e.path_suffix.clone())
        } else {
            None
        };
        let mut files = Vec::new();
        let mut folders = Vec::new();
        for entry in page.entries {
            if entry.is_dir() {
                folders.push(entry.path_suffix);
            } else if entry.is_file() && !hidden(&entry) {
                files.push(meta(child(dir, &entry.path_suffix), &entry));
            }
        }
        Ok(Some((files, folders, next)))
    }
}

/// A folder of a recursive listing still to be read, from after `after`.
struct Pending {
    hdfs: String,
    dir: Path,
    after: Option<String>,
}

struct Walk {
    store: WebHdfs,
    pending: Vec<Pending>,
    ready: VecDeque<ObjectMeta>,
}

#[async_trait]
impl ObjectStore for WebHdfs {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let overwrite = match opts.mode {
            PutMode::Overwrite => true,
            PutMode::Create => false,
            PutMode::Update(_) => return Err(not_implemented("put_opts with PutMode::Update")),
        };
        let hdfs = self.client.hdfs_path(location);
        let (body, length) = payload_body(payload);
        self.client
            .create(&hdfs, body, Some(length), overwrite)
            .await
            .map_err(|e| e.into_object_store(location.as_ref()))?;
        self.put_result(location).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(Upload::new(self.clone(), location.clone())))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.version.is_some() {
            return Err(not_implemented("get_opts of a version"));
        }
        let status = self.file_status(location).await?;
        let meta = meta(location.clone(), &status);
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(range) => range
                .as_range(meta.size)
                .map_err(|e| generic_range(location, e))?,
            None => 0..meta.size,
        };
        let payload = if options.head || range.is_empty() {
            GetResultPayload::Stream(stream::empty().boxed())
        } else {
            let hdfs = self.client.hdfs_path(location);
            let response = self
                .client
                .open(&hdfs, range.start, range.end - range.start)
                .await
                .map_err(|e| e.into_object_store(location.as_ref()))?;
            let expected = range.end - range.start;
            if let Some(sent) = response.content_length().filter(|n| *n != expected) {
                return Err(object_store::Error::Generic {
                    store: STORE,
                    source: format!(
                        "the datanode sends {sent} bytes of {hdfs} where {expected} were \
                         asked for (the file changed while read?)"
                    )
                    .into(),
                });
            }
            let path = location.to_string();
            GetResultPayload::Stream(
                Client::data_stream(response, hdfs)
                    .map_err(move |e| e.into_object_store(&path))
                    .boxed(),
            )
        };
        Ok(GetResult {
            payload,
            meta,
            range,
            attributes: Attributes::new(),
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let store = self.clone();
        locations
            .map(move |location| {
                let store = store.clone();
                async move {
                    let location = location?;
                    let hdfs = store.client.hdfs_path(&location);
                    // A missing file is not an error (as S3): false means nothing was there.
                    store
                        .client
                        .delete(&hdfs)
                        .await
                        .map_err(|e| e.into_object_store(location.as_ref()))?;
                    Ok(location)
                }
            })
            .buffered(8)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let dir = prefix.cloned().unwrap_or_default();
        let walk = Walk {
            pending: vec![Pending {
                hdfs: self.client.hdfs_path(&dir),
                dir,
                after: None,
            }],
            store: self.clone(),
            ready: VecDeque::new(),
        };
        stream::try_unfold(walk, |mut walk| async move {
            loop {
                if let Some(meta) = walk.ready.pop_front() {
                    return Ok(Some((meta, walk)));
                }
                let Some(next) = walk.pending.pop() else {
                    return Ok(None);
                };
                let Some((files, folders, after)) = walk
                    .store
                    .page(&next.hdfs, &next.dir, next.after.as_deref())
                    .await?
                else {
                    continue;
                };
                if let Some(after) = after {
                    walk.pending.push(Pending {
                        hdfs: next.hdfs.clone(),
                        dir: next.dir.clone(),
                        after: Some(after),
                    });
                }
                // Reversed onto the stack, so folders are walked in name order.
                for name in folders.into_iter().rev() {
                    walk.pending.push(Pending {
                        hdfs: format!("{}/{name}", next.hdfs.trim_end_matches('/')),
                        dir: child(&next.dir, &name),
                        after: None,
                    });
                }
                walk.ready.extend(files);
            }
        })
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let dir = prefix.cloned().unwrap_or_default();
        let hdfs = self.client.hdfs_path(&dir);
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        let mut after: Option<String> = None;
        loop {
            let Some((files, folders, next)) = self.page(&hdfs, &dir, after.as_deref()).await?
            else {
                break;
            };
            result.objects.extend(files);
            result
                .common_prefixes
                .extend(folders.iter().map(|name| child(&dir, name)));
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let overwrite = options.mode == CopyMode::Overwrite;
        let source = self.file_status(from).await?;
        let from_hdfs = self.client.hdfs_path(from);
        let to_hdfs = self.client.hdfs_path(to);
        if !overwrite
            && self
                .client
                .status(&to_hdfs)
                .await
                .map_err(|e| e.into_object_store(to.as_ref()))?
                .is_some()
        {
            return Err(object_store::Error::AlreadyExists {
                path: to.to_string(),
                source: format!("{to_hdfs} exists").into(),
            });
        }
        // The data streams from the source's datanode to the target's, through a temporary
        // sibling renamed into place: no reader sees a half-copied file.
        let temporary = self.client.temporary_path(&to_hdfs);
        let body = if source.length == 0 {
            Body::from(Bytes::new())
        } else {
            let response = self
                .client
                .open(&from_hdfs, 0, source.length)
                .await
                .map_err(|e| e.into_object_store(from.as_ref()))?;
            Body::wrap_stream(Client::data_stream(response, from_hdfs.clone()))
        };
        if let Err(e) = self
            .client
            .create(&temporary, body, Some(source.length), true)
            .await
        {
            let _ = self.client.delete(&temporary).await;
            return Err(e.into_object_store(to.as_ref()));
        }
        let renamed = self.rename_onto(&temporary, &to_hdfs, overwrite, to).await;
        if renamed.is_err() {
            let _ = self.client.delete(&temporary).await;
        }
        renamed
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let overwrite = options.target_mode == RenameTargetMode::Overwrite;
        let from_hdfs = self.client.hdfs_path(from);
        let to_hdfs = self.client.hdfs_path(to);
        if from_hdfs == to_hdfs {
            self.file_status(from).await?;
            return Ok(());
        }
        self.rename_onto(&from_hdfs, &to_hdfs, overwrite, to)
            .await
            .map_err(|e| match e {
                // Hadoop's rename2 names a missing source with FileNotFoundException: the
                // object missing is `from`.
                object_store::Error::NotFound { source, .. } => object_store::Error::NotFound {
                    path: from.to_string(),
                    source,
                },
                e => e,
            })
    }
}

fn generic_range(
    location: &Path,
    e: impl std::error::Error + Send + Sync + 'static,
) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: format!("{location}: {e}").into(),
    }
}
