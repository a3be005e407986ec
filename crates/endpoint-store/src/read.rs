//! Inputs: an object read as records flow, and a prefix read object after object in key
//! order. The bytes come from the store's GET stream on a task of their own, through a
//! bounded channel, into a blocking `BufRead` that the file endpoint's decoder
//! (`FileSource::from_reader`) reads on the blocking pool: memory holds a few chunks,
//! whatever the object's size.

use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes};
use codecs::CodecConfig;
use endpoints::FileSource;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectMeta};
use runtime_core::{Error, ReadItem, RecordSource, Result};
use tokio::sync::mpsc;

use crate::error::{kind, store_error, Kind};
use crate::settings::StoreSettings;
use crate::target::{object_name, Located};

/// Chunks of an object (as the server sends them, usually 16 to 64 KiB) read ahead of the
/// decoder.
const CHUNKS_AHEAD: usize = 64;

/// What the transfer task hands the reader.
enum Piece {
    Bytes(Bytes),
    /// The object ended where it should.
    End,
    /// The transfer failed for good.
    Failed(Error),
}

/// The reading side of a transfer: a `BufRead` for the decoder on the blocking pool, or
/// [`BodyReader::next_chunk`] on the runtime.
pub(crate) struct BodyReader {
    rx: mpsc::Receiver<Piece>,
    chunk: Bytes,
    ended: bool,
    name: String,
}

impl BodyReader {
    /// The object's next bytes as the server sent them, `None` at its end.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.ended {
            return Ok(None);
        }
        let piece = self.rx.recv().await;
        self.take(piece)
    }

    fn take(&mut self, piece: Option<Piece>) -> Result<Option<Bytes>> {
        match piece {
            Some(Piece::Bytes(b)) => Ok(Some(b)),
            Some(Piece::End) => {
                self.ended = true;
                Ok(None)
            }
            Some(Piece::Failed(e)) => Err(e),
            None => Err(Error::endpoint(
                &self.name,
                "the transfer stopped before the end of the object",
            )),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(buf.len());
            buf[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for BodyReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.chunk.is_empty() && !self.ended {
            let piece = self.rx.blocking_recv();
            match self.take(piece) {
                Ok(Some(b)) => self.chunk = b,
                Ok(None) => {}
                // Not a passing kind of I/O error: the decoder cannot take the stream up
                // again, so a retry of the read would end it as if whole.
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        Ok(&self.chunk)
    }

    fn consume(&mut self, amt: usize) {
        self.chunk.advance(amt.min(self.chunk.len()));
    }
}

/// Starts reading the object `at` (the GET answered before this returns: a missing object or
/// a refused access is the error here), its bytes flowing into the returned reader.
pub(crate) async fn open_body(
    at: &Located,
    settings: &StoreSettings,
    skip: u64,
) -> Result<BodyReader> {
    let store = &at.store;
    let options = GetOptions {
        range: (skip > 0).then_some(GetRange::Offset(skip)),
        ..GetOptions::default()
    };
    let got = store
        .client
        .get_opts(&at.path, options)
        .await
        .map_err(|e| store_error(store, &at.key, "reading", e))?;
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    let transfer = Transfer {
        at: at.clone(),
        etag: got.meta.e_tag.clone(),
        offset: got.range.start,
        end: got.range.end,
        resumes: settings.read_resumes,
    };
    tokio::spawn(transfer.run(got.into_stream(), tx));
    Ok(BodyReader {
        rx,
        chunk: Bytes::new(),
        ended: false,
        name: at.name(),
    })
}

/// One object's bytes from the store to a reader: a cut in the middle is taken up where it
/// stopped (a range read checked against the object's ETag), a few times in a row at most.
struct Transfer {
    at: Located,
    etag: Option<String>,
    offset: u64,
    end: u64,
    resumes: u32,
}

impl Transfer {
    async fn run(
        mut self,
        mut stream: BoxStream<'static, object_store::Result<Bytes>>,
        tx: mpsc::Sender<Piece>,
    ) {
        let mut failures = 0u32;
        loop {
            match stream.next().await {
                Some(Ok(bytes)) => {
                    failures = 0;
                    self.offset += bytes.len() as u64;
                    if tx.send(Piece::Bytes(bytes)).await.is_err() {
                        return; // the reader is gone
                    }
                }
                None if self.offset >= self.end => {
                    let _ = tx.send(Piece::End).await;
                    return;
                }
                ended_early => {
                    let why = match ended_early {
                        Some(Err(e)) => crate::error::chain_text(&e),
                        _ => format!("the server sent {} of {} bytes", self.offset, self.end),
                    };
                    match self.resume(&mut failures, &why).await {
                        Ok(s) => stream = s,
                        Err(fatal) => {
                            let _ = tx.send(Piece::Failed(fatal)).await;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// A new stream from where the transfer stopped, or why there is none.
    async fn resume(
        &mut self,
        failures: &mut u32,
        why: &str,
    ) -> Result<BoxStream<'static, object_store::Result<Bytes>>> {
        let store = &self.at.store;
        let name = self.at.name();
        loop {
            *failures += 1;
            if self.etag.is_none() {
                return Err(Error::endpoint(
                    name,
                    store.scrub(&format!(
                        "the transfer broke at byte {} ({why}) and cannot be taken up (the \
                         server gave no ETag to check the object against)",
                        self.offset
                    )),
                ));
            }
            if *failures > self.resumes {
                return Err(Error::endpoint(
                    name,
                    store.scrub(&format!(
                        "the transfer broke at byte {} {} times in a row ({why})",
                        self.offset, self.resumes
                    )),
                ));
            }
            let wait =
                Duration::from_millis(100u64 << (*failures).min(6)).min(Duration::from_secs(5));
            tracing::warn!(
                "{name}: the transfer broke at byte {} ({}); taking it up again in {} ms",
                self.offset,
                store.scrub(why),
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
            let options = GetOptions {
                range: Some(GetRange::Bounded(self.offset..self.end)),
                if_match: self.etag.clone(),
                ..GetOptions::default()
            };
            match store.client.get_opts(&self.at.path, options).await {
                Ok(got) => return Ok(got.into_stream()),
                Err(e) if kind(&e) == Kind::Passing => continue,
                Err(e) => return Err(store_error(store, &self.at.key, "reading", e)),
            }
        }
    }
}

/// One object, opened at its first read.
pub(crate) struct ObjectSource {
    at: Located,
    codec: CodecConfig,
    settings: Arc<StoreSettings>,
    skip: u64,
    state: State,
    /// Set on each record's position (a prefix's objects name themselves).
    origin: Option<Arc<str>>,
}

enum State {
    Unopened,
    Reading(FileSource),
    Done,
}

impl ObjectSource {
    pub(crate) fn new(at: Located, codec: CodecConfig, settings: Arc<StoreSettings>) -> Self {
        ObjectSource {
            at,
            codec,
            settings,
            skip: 0,
            state: State::Unopened,
            origin: None,
        }
    }

    pub(crate) fn starting_at(mut self, byte: u64) -> Self {
        self.skip = byte;
        self
    }

    fn naming_itself(mut self) -> Self {
        self.origin = Some(self.at.name().into());
        self
    }
}

#[async_trait]
impl RecordSource for ObjectSource {
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>> {
        loop {
            match &mut self.state {
                State::Done => return Ok(None),
                State::Unopened => {
                    // A failure here leaves it unopened: a retry asks again.
                    let reader = open_body(&self.at, &self.settings, self.skip).await?;
                    let (name, codec) = (self.at.name(), self.codec.clone());
                    let source = tokio::task::spawn_blocking(move || {
                        FileSource::from_reader(name, reader, &codec)
                    })
                    .await
                    .map_err(|e| {
                        Error::endpoint_caused(
                            self.at.name(),
                            format!("the decoder failed to start: {e}"),
                            e,
                        )
                    })??;
                    self.state = State::Reading(source);
                }
                State::Reading(source) => {
                    let batch = source.read_batch(max).await?;
                    let Some(mut items) = batch else {
                        self.state = State::Done;
                        return Ok(None);
                    };
                    if let Some(origin) = &self.origin {
                        for item in &mut items {
                            item.position_mut().origin = Some(origin.to_string());
                        }
                    }
                    return Ok(Some(items));
                }
            }
        }
    }

    fn describe(&self) -> String {
        self.at.name()
    }
}

/// Every object under a prefix, in key order, one after the other; each record's position
/// names its object. Listed at the first read; empty objects (folder markers, `_SUCCESS`)
/// are left out.
pub(crate) struct PrefixSource {
    at: Located,
    codec: CodecConfig,
    settings: Arc<StoreSettings>,
    listed: Option<VecDeque<String>>,
    current: Option<ObjectSource>,
}

impl PrefixSource {
    pub(crate) fn new(at: Located, codec: CodecConfig, settings: Arc<StoreSettings>) -> Self {
        PrefixSource {
            at,
            codec,
            settings,
            listed: None,
            current: None,
        }
    }
}

/// The keys of the objects under `at` (a prefix), in key order, empty ones left out.
pub(crate) async fn list_prefix(at: &Located) -> Result<Vec<ObjectMeta>> {
    let store = &at.store;
    let mut metas: Vec<ObjectMeta> = store
        .client
        .list(Some(&at.path))
        .try_collect()
        .await
        .map_err(|e| store_error(store, &at.key, "listing", e))?;
    metas.retain(|m| m.size > 0 && !m.location.as_ref().ends_with('/'));
    metas.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
    Ok(metas)
}

#[async_trait]
impl RecordSource for PrefixSource {
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>> {
        loop {
            if let Some(source) = self.current.as_mut() {
                match source.read_batch(max).await? {
                    Some(items) => return Ok(Some(items)),
                    None => self.current = None,
                }
            }
            let listed = match self.listed.as_mut() {
                Some(l) => l,
                None => {
                    let metas = list_prefix(&self.at).await?;
                    if let Some(m) = metas
                        .iter()
                        .find(|m| crate::is_parquet(m.location.as_ref()))
                    {
                        return Err(crate::parquet_refusal(&object_name(
                            &self.at.store,
                            m.location.as_ref(),
                        )));
                    }
                    if metas.is_empty() {
                        tracing::warn!("{}: no object under this prefix", self.at.name());
                    }
                    self.listed
                        .insert(metas.into_iter().map(|m| m.location.to_string()).collect())
                }
            };
            let Some(key) = listed.pop_front() else {
                return Ok(None);
            };
            let at = self.at.object(key)?;
            self.current = Some(
                ObjectSource::new(at, self.codec.clone(), self.settings.clone()).naming_itself(),
            );
        }
    }

    fn describe(&self) -> String {
        self.at.name()
    }
}
