//! Outputs. Records are encoded by the file endpoint's sink ([`FileSink::from_writer`]) into
//! a spool the sink empties after each call into an `Upload`: an object smaller than a part
//! goes up in one PUT when complete, a larger one as a multipart upload, a few parts in flight
//! at once. Memory holds a part per part in flight and what one batch encodes to.
//!
//! - `ObjectSink` writes one object, complete (visible) once the sink finishes; it cannot
//!   make records durable before that, so its `flush` with records written fails, saying to
//!   name a prefix.
//! - `RollingSink` writes a prefix: `part-00000000-<run>.<ext>` and on, each object
//!   complete at a flush that has records in it or once it holds
//!   `StoreSettings::roll_bytes`.
//!
//! An upload that cannot complete is aborted (nothing half-written is left), and so is one
//! whose sink is dropped before it finished.

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use codecs::{CodecConfig, Encoding, Framing};
use endpoints::FileSink;
use futures_util::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use runtime_core::{Error, OutRecord, RecordSink, Rejection, Result, SinkReport};

use crate::error::store_error;
use crate::settings::StoreSettings;
use crate::target::Located;

/// What an encoder wrote and the sink has not uploaded yet: shared between the encoder's
/// writer (on the blocking pool) and the sink.
#[derive(Clone, Default)]
struct Spool(Arc<Mutex<Vec<u8>>>);

impl Spool {
    fn take(&self) -> Vec<u8> {
        match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut v) => v.extend_from_slice(buf),
            Err(poisoned) => poisoned.into_inner().extend_from_slice(buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One object going up.
pub(crate) struct Upload {
    at: Located,
    part_bytes: usize,
    parts_in_flight: usize,
    state: UploadState,
    bytes: u64,
}

enum UploadState {
    /// Less than a part so far: kept, to go up in one PUT.
    Small(Vec<Bytes>, usize),
    Multipart(WriteMultipart),
    Done,
}

impl Upload {
    pub(crate) fn new(at: Located, settings: &StoreSettings) -> Upload {
        Upload {
            at,
            part_bytes: settings.part_bytes.max(5 << 20),
            parts_in_flight: settings.parts_in_flight.max(1),
            state: UploadState::Small(Vec::new(), 0),
            bytes: 0,
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    fn error(&self, e: object_store::Error) -> Error {
        store_error(&self.at.store, &self.at.key, "writing", e)
    }

    /// Adds `bytes` to the object, waiting while the parts in flight are at the bound.
    pub(crate) async fn put(&mut self, bytes: Bytes) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.bytes += bytes.len() as u64;
        let result = match &mut self.state {
            UploadState::Done => {
                return Err(Error::endpoint(
                    self.at.name(),
                    "written after it was complete",
                ))
            }
            UploadState::Small(chunks, len) if *len + bytes.len() < self.part_bytes => {
                *len += bytes.len();
                chunks.push(bytes);
                return Ok(());
            }
            UploadState::Small(chunks, _) => {
                let chunks = std::mem::take(chunks);
                match self.at.store.client.put_multipart(&self.at.path).await {
                    Ok(upload) => {
                        let mut parts =
                            WriteMultipart::new_with_chunk_size(upload, self.part_bytes);
                        for c in chunks {
                            parts.put(c);
                        }
                        parts.put(bytes);
                        let waited = parts.wait_for_capacity(self.parts_in_flight).await;
                        self.state = UploadState::Multipart(parts);
                        waited
                    }
                    Err(e) => {
                        self.state = UploadState::Done;
                        return Err(self.error(e));
                    }
                }
            }
            UploadState::Multipart(parts) => {
                parts.put(bytes);
                parts.wait_for_capacity(self.parts_in_flight).await
            }
        };
        if let Err(e) = result {
            self.abort().await;
            return Err(self.error(e));
        }
        Ok(())
    }

    /// Makes the object whole and visible.
    pub(crate) async fn complete(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.state, UploadState::Done) {
            UploadState::Done => Ok(()),
            UploadState::Small(chunks, _) => {
                let payload: PutPayload = chunks.into_iter().collect();
                self.at
                    .store
                    .client
                    .put_opts(&self.at.path, payload, Default::default())
                    .await
                    .map(|_| ())
                    .map_err(|e| self.error(e))
            }
            // `finish` aborts the upload itself when a part or the completion fails.
            UploadState::Multipart(parts) => {
                parts.finish().await.map(|_| ()).map_err(|e| self.error(e))
            }
        }
    }

    /// Gives the object up: a multipart upload begun is aborted, its parts deleted.
    pub(crate) async fn abort(&mut self) {
        if let UploadState::Multipart(parts) = std::mem::replace(&mut self.state, UploadState::Done)
        {
            if let Err(e) = parts.abort().await {
                tracing::warn!(
                    "{}: aborting the unfinished upload failed (its parts may stay until the \
                     bucket's lifecycle rule removes them): {}",
                    self.at.name(),
                    self.at.store.scrub(&e.to_string())
                );
            }
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let UploadState::Multipart(parts) = std::mem::replace(&mut self.state, UploadState::Done)
        else {
            return;
        };
        let name = self.at.name();
        tracing::warn!("{name}: the output stopped before it was complete; its upload is aborted");
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = parts.abort().await {
                        tracing::warn!("{name}: aborting the unfinished upload failed: {e}");
                    }
                });
            }
            Err(_) => tracing::warn!(
                "{name}: no runtime to abort the unfinished upload on; its parts stay until \
                 the bucket's lifecycle rule removes them"
            ),
        }
    }
}

/// One object being encoded and uploaded.
struct ObjectWriter {
    sink: FileSink,
    spool: Spool,
    upload: Upload,
    records: u64,
}

impl ObjectWriter {
    fn open(at: &Located, codec: &CodecConfig, settings: &StoreSettings) -> Result<ObjectWriter> {
        let spool = Spool::default();
        let sink = FileSink::from_writer(at.name(), at.name(), spool.clone(), codec)?;
        Ok(ObjectWriter {
            sink,
            spool,
            upload: Upload::new(at.clone(), settings),
            records: 0,
        })
    }

    async fn drain(&mut self) -> Result<()> {
        let bytes = self.spool.take();
        self.upload.put(Bytes::from(bytes)).await
    }

    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
        let n = batch.len() as u64;
        let rejected = match self.sink.write_batch(batch).await {
            Ok(r) => r,
            Err(e) => {
                self.upload.abort().await;
                return Err(e);
            }
        };
        self.records += n - rejected.len() as u64;
        self.drain().await?;
        Ok(rejected)
    }

    /// Encodes the end of the object, uploads the rest and completes it.
    async fn complete(&mut self) -> Result<SinkReport> {
        let report = match self.sink.finish().await {
            Ok(r) => r,
            Err(e) => {
                self.upload.abort().await;
                return Err(e);
            }
        };
        self.drain().await?;
        self.upload.complete().await?;
        Ok(report)
    }
}

/// An output to one object: complete once the sink finishes.
pub(crate) struct ObjectSink {
    at: Located,
    writer: ObjectWriter,
    failed: bool,
}

impl ObjectSink {
    pub(crate) fn open(
        at: Located,
        codec: &CodecConfig,
        settings: &StoreSettings,
    ) -> Result<ObjectSink> {
        Ok(ObjectSink {
            writer: ObjectWriter::open(&at, codec, settings)?,
            at,
            failed: false,
        })
    }

    fn check(&self) -> Result<()> {
        if self.failed {
            return Err(Error::endpoint(self.at.name(), "used after it failed"));
        }
        Ok(())
    }
}

#[async_trait]
impl RecordSink for ObjectSink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
        self.check()?;
        let r = self.writer.write_batch(batch).await;
        self.failed = r.is_err();
        r
    }

    /// An object is durable only once complete, when the sink finishes: records written
    /// cannot be made durable before that.
    async fn flush(&mut self) -> Result<()> {
        self.check()?;
        if self.writer.records == 0 {
            return Ok(());
        }
        self.failed = true;
        self.writer.upload.abort().await;
        Err(Error::endpoint(
            self.at.name(),
            "an output to one object is durable only once it is complete, at the end of the \
             stream, and this stream asks for its records to be durable as it goes (an input \
             that acknowledges, such as Kafka, or a deployed model's stream): name a prefix \
             ending in / instead, whose objects complete at each flush",
        ))
    }

    async fn finish(&mut self) -> Result<SinkReport> {
        self.check()?;
        let r = self.writer.complete().await;
        self.failed = true; // finished: nothing more to take
        let mut report = r?;
        report.location = Some(self.at.name());
        Ok(report)
    }

    fn describe(&self) -> String {
        self.at.name()
    }
}

/// An output to a prefix: objects one after the other, each complete at a flush that has
/// records in it, or once it holds `roll_bytes`.
pub(crate) struct RollingSink {
    at: Located,
    codec: CodecConfig,
    settings: Arc<StoreSettings>,
    extension: &'static str,
    /// Tells this sink's objects from those of another writing the same prefix.
    run: String,
    /// The number of the next object: after the highest already under the prefix, found
    /// when the first object starts.
    next: Option<u64>,
    current: Option<ObjectWriter>,
    records: u64,
    bytes: u64,
    failed: bool,
}

impl RollingSink {
    pub(crate) fn open(
        at: Located,
        codec: &CodecConfig,
        settings: Arc<StoreSettings>,
    ) -> Result<RollingSink> {
        Ok(RollingSink {
            extension: extension(codec),
            codec: codec.clone(),
            settings,
            run: run_id(),
            next: None,
            current: None,
            records: 0,
            bytes: 0,
            failed: false,
            at,
        })
    }

    fn check(&self) -> Result<()> {
        if self.failed {
            return Err(Error::endpoint(self.at.name(), "used after it failed"));
        }
        Ok(())
    }

    async fn writer(&mut self) -> Result<&mut ObjectWriter> {
        if self.current.is_none() {
            let n = match self.next {
                Some(n) => n,
                None => next_part_number(&self.at).await?,
            };
            self.next = Some(part_after(&self.at, n)?);
            let key = format!("{}part-{n:08}-{}.{}", self.at.key, self.run, self.extension);
            let at = self.at.object(key)?;
            self.current = Some(ObjectWriter::open(&at, &self.codec, &self.settings)?);
        }
        self.current
            .as_mut()
            .ok_or_else(|| Error::endpoint(self.at.name(), "no object open"))
    }

    /// Completes the object being written, if it holds records.
    async fn complete_current(&mut self) -> Result<()> {
        let Some(w) = self.current.as_mut().filter(|w| w.records > 0) else {
            return Ok(());
        };
        let report = w.complete().await?;
        self.records += report.records;
        self.bytes += report.bytes;
        self.current = None;
        Ok(())
    }

    async fn guarded<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.failed = true;
            if let Some(w) = self.current.as_mut() {
                w.upload.abort().await;
            }
        }
        r
    }
}

#[async_trait]
impl RecordSink for RollingSink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
        self.check()?;
        let roll = self.settings.roll_bytes;
        let r = match self.writer().await {
            Ok(w) => w.write_batch(batch).await,
            Err(e) => Err(e),
        };
        let rejected = self.guarded(r).await?;
        if self
            .current
            .as_ref()
            .is_some_and(|w| w.upload.bytes() >= roll)
        {
            let r = self.complete_current().await;
            self.guarded(r).await?;
        }
        Ok(rejected)
    }

    async fn flush(&mut self) -> Result<()> {
        self.check()?;
        let r = self.complete_current().await;
        self.guarded(r).await
    }

    async fn finish(&mut self) -> Result<SinkReport> {
        self.check()?;
        let r = self.complete_current().await;
        self.guarded(r).await?;
        // What is left holds no record (or nothing): no object is made of it.
        if let Some(mut w) = self.current.take() {
            w.upload.abort().await;
        }
        self.failed = true;
        Ok(SinkReport {
            records: self.records,
            bytes: self.bytes,
            location: Some(self.at.name()),
        })
    }

    fn describe(&self) -> String {
        self.at.name()
    }
}

/// The number after the highest `part-NNNNNNNN` directly under the prefix, or 0.
async fn next_part_number(at: &Located) -> Result<u64> {
    let store = &at.store;
    let listed: Vec<object_store::ObjectMeta> = store
        .client
        .list(Some(&at.path))
        .try_collect()
        .await
        .map_err(|e| store_error(store, &at.key, "listing", e))?;
    let highest = listed
        .iter()
        .filter_map(|m| {
            let key = m.location.as_ref();
            let name = key.strip_prefix(at.key.as_str())?;
            let digits = name.strip_prefix("part-")?;
            let end = digits.find(|c: char| !c.is_ascii_digit())?;
            digits[..end].parse::<u64>().ok()
        })
        .max();
    highest.map_or(Ok(0), |h| part_after(at, h))
}

/// The part number after `n` (the prefix's objects may hold any number).
fn part_after(at: &Located, n: u64) -> Result<u64> {
    n.checked_add(1).ok_or_else(|| {
        Error::endpoint(
            at.name(),
            format!(
                "the prefix holds an object numbered part-{n}, the highest number there can \
                 be: write under another prefix"
            ),
        )
    })
}

/// A short name no other sink is likely to draw: 8 hex digits from a randomly seeded hash of
/// the time.
fn run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(now);
    format!("{:08x}", h.finish() as u32)
}

/// The extension of a prefix's objects, from what they hold.
fn extension(codec: &CodecConfig) -> &'static str {
    let framing = codec.resolved_framing().ok();
    match (codec.encoding, framing) {
        (Encoding::Json, Some(Framing::Lines | Framing::Delimited { .. })) => "jsonl",
        (Encoding::Json, _) => "json",
        (Encoding::Csv, _) => "csv",
        (Encoding::AvroBinary, _) => "avro",
        (Encoding::MsgPack, _) => "msgpack",
        (Encoding::Utf8, _) => "txt",
        _ => "bin",
    }
}
