use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use async_trait::async_trait;
use codecs::{CodecConfig, EncodeError, Encoding, RecordDecoder, RecordEncoder};
use runtime_core::{
    Error, OutRecord, ReadItem, RecordSink, RecordSource, Rejection, Result, SinkReport,
};

use crate::{encode_rejection, join_error};

const IO_BUFFER: usize = 1 << 20;

/// Reads records from a file, a batch at a time, streaming. When the stream breaks, the
/// records decoded before the break come out first and the break is the next call's error.
pub struct FileSource {
    name: String,
    decoder: Option<Box<dyn RecordDecoder>>,
    /// A broken stream, held back until the records decoded before it have been handed out.
    broken: Option<Error>,
    /// Bytes read from the file so far, and its size, when it is a file.
    read: Option<(std::sync::Arc<std::sync::atomic::AtomicU64>, u64)>,
}

/// A reader counting the bytes its user took: read through it, or consumed from its
/// buffer (so a buffered reader inside it reading ahead does not count).
struct Counted<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R> Counted<R> {
    fn took(&self, n: usize) {
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.took(n);
        Ok(n)
    }
}

impl<R: std::io::BufRead> std::io::BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.took(amt);
    }
}

impl codecs::RandomAccess for Counted<File> {
    fn len(&self) -> std::io::Result<u64> {
        codecs::RandomAccess::len(&self.inner)
    }

    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<bytes::Bytes> {
        let b = codecs::RandomAccess::read_at(&self.inner, offset, len)?;
        self.read
            .fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(b)
    }
}

impl FileSource {
    /// Opens `path` (blocking). A Parquet file is read at the offsets its footer gives
    /// (`codecs::parquet_decoder`), a row group at a time; any other is read as a stream.
    pub fn open(path: &Path, codec: &CodecConfig) -> Result<FileSource> {
        let name = format!("file:{}", path.display());
        let file = File::open(path)
            .map_err(|e| Error::io(format!("cannot open input {}", path.display()), e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut source = if codec.encoding == Encoding::Parquet {
            // A Parquet file is read where its footer points: the count is of what was read,
            // close to where the reading is.
            let file = Counted {
                inner: file,
                read: read.clone(),
            };
            let decoder = codecs::parquet_decoder(codec, Box::new(file), &name)
                .map_err(|e| Error::endpoint_source(&name, e))?;
            Self::from_decoder(name, decoder)
        } else {
            // Counted outside the buffer: the bytes the decoder took, not those read ahead.
            let reader = Counted {
                inner: BufReader::with_capacity(IO_BUFFER, file),
                read: read.clone(),
            };
            Self::from_reader(name, reader, codec)?
        };
        source.read = Some((read, size));
        Ok(source)
    }

    /// A decoder built by the caller (one over a `codecs::RandomAccess` input, say) as a
    /// source; `name` is what it is described as.
    pub fn from_decoder(name: String, decoder: Box<dyn RecordDecoder>) -> FileSource {
        FileSource {
            name,
            decoder: Some(decoder),
            broken: None,
            read: None,
        }
    }

    /// Any buffered reader (standard input, a test's bytes) as a source.
    pub fn from_reader<R: std::io::BufRead + Send + 'static>(
        name: String,
        reader: R,
        codec: &CodecConfig,
    ) -> Result<FileSource> {
        let decoder =
            codecs::decoder(codec, reader, &name).map_err(|e| Error::endpoint_source(&name, e))?;
        Ok(Self::from_decoder(name, decoder))
    }
}

#[async_trait]
impl RecordSource for FileSource {
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>> {
        let Some(mut decoder) = self.decoder.take() else {
            return match self.broken.take() {
                Some(e) => Err(e),
                None => Ok(None),
            };
        };
        let (decoder, result) = tokio::task::spawn_blocking(move || {
            let mut items = Vec::with_capacity(max);
            let result = match decoder.next_batch(max, &mut items) {
                Ok(more) => Ok((more, items)),
                Err(e) => Err((e, items)),
            };
            (decoder, result)
        })
        .await
        .map_err(|e| join_error(&self.name, e))?;
        let (more, items) = match result {
            Ok(r) => r,
            // Every record decoded before the break goes on; the break comes next call.
            Err((e, items)) if !items.is_empty() => {
                self.broken = Some(e);
                return Ok(Some(items));
            }
            Err((e, _)) => return Err(e),
        };
        if more {
            self.decoder = Some(decoder);
        }
        Ok(if items.is_empty() && !more {
            None
        } else {
            Some(items)
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn progress(&self) -> Option<f64> {
        if self.decoder.is_none() && self.broken.is_none() {
            return Some(1.0);
        }
        let (read, size) = self.read.as_ref()?;
        let read = read.load(std::sync::atomic::Ordering::Relaxed);
        Some(if *size == 0 {
            1.0
        } else {
            (read as f64 / *size as f64).min(1.0)
        })
    }
}

/// Writes records to a file or to standard output.
pub struct FileSink {
    name: String,
    location: String,
    encoder: Option<Box<dyn RecordEncoder>>,
    bytes: CountingHandle,
    records: u64,
}

impl FileSink {
    /// Creates (or truncates) `path`; its folder is created if missing.
    pub fn create(path: &Path, codec: &CodecConfig) -> Result<FileSink> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        }
        let file = File::create(path)
            .map_err(|e| Error::io(format!("cannot create output {}", path.display()), e))?;
        Self::from_writer(
            format!("file:{}", path.display()),
            path.display().to_string(),
            file,
            codec,
        )
    }

    pub fn stdout(codec: &CodecConfig) -> Result<FileSink> {
        Self::from_writer(
            "stdout".to_owned(),
            "stdout".to_owned(),
            std::io::stdout(),
            codec,
        )
    }

    /// Any writer as a sink: `name` names it in errors and `describe()`, `location` is what
    /// its report says it wrote to. The encoder writes through a 1 MiB buffer; `flush` and
    /// `finish` hand the writer what it holds and flush it.
    pub fn from_writer<W: Write + Send + 'static>(
        name: String,
        location: String,
        w: W,
        codec: &CodecConfig,
    ) -> Result<FileSink> {
        let bytes = CountingHandle::default();
        let writer = Counting {
            inner: BufWriter::with_capacity(IO_BUFFER, w),
            count: bytes.clone(),
        };
        let encoder =
            codecs::encoder(codec, writer).map_err(|e| Error::endpoint_source(&name, e))?;
        Ok(FileSink {
            name,
            location,
            encoder: Some(encoder),
            bytes,
            records: 0,
        })
    }
}

#[async_trait]
impl RecordSink for FileSink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
        let Some(mut encoder) = self.encoder.take() else {
            return Err(Error::endpoint(
                &self.name,
                "written to after it failed or finished",
            ));
        };
        let n = batch.len() as u64;
        let (encoder, result) = tokio::task::spawn_blocking(move || {
            let mut rejected = Vec::new();
            for rec in batch {
                match encoder.write(&rec.value) {
                    Ok(()) => {}
                    Err(EncodeError::Rejected(reason)) => {
                        rejected.push(encode_rejection(rec.position, reason))
                    }
                    Err(EncodeError::Io(e)) => return (encoder, Err(e)),
                }
            }
            (encoder, Ok(rejected))
        })
        .await
        .map_err(|e| join_error(&self.name, e))?;
        let rejected = result.map_err(|e| Error::io(format!("cannot write {}", self.name), e))?;
        self.records += n - rejected.len() as u64;
        self.encoder = Some(encoder);
        Ok(rejected)
    }

    /// Hands what the encoder buffered to the operating system (no `fsync`).
    async fn flush(&mut self) -> Result<()> {
        let Some(mut encoder) = self.encoder.take() else {
            return Err(Error::endpoint(
                &self.name,
                "flushed after it failed or finished",
            ));
        };
        let (encoder, flushed) = tokio::task::spawn_blocking(move || {
            let r = encoder.finish();
            (encoder, r)
        })
        .await
        .map_err(|e| join_error(&self.name, e))?;
        flushed.map_err(|e| Error::io(format!("cannot flush {}", self.name), e))?;
        self.encoder = Some(encoder);
        Ok(())
    }

    /// Closes the encoder (a Parquet file's footer is written here) and flushes.
    async fn finish(&mut self) -> Result<SinkReport> {
        if let Some(mut encoder) = self.encoder.take() {
            tokio::task::spawn_blocking(move || encoder.close())
                .await
                .map_err(|e| join_error(&self.name, e))?
                .map_err(|e| Error::io(format!("cannot flush {}", self.name), e))?;
        }
        Ok(SinkReport {
            records: self.records,
            bytes: self.bytes.get(),
            location: Some(self.location.clone()),
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Counts the bytes that reach the destination, for the sink's report.
#[derive(Clone, Default)]
struct CountingHandle(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl CountingHandle {
    fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

struct Counting<W> {
    inner: W,
    count: CountingHandle,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count
            .0
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Accepts every record and keeps none.
#[derive(Debug, Default)]
pub struct DiscardSink {
    records: u64,
}

#[async_trait]
impl RecordSink for DiscardSink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
        self.records += batch.len() as u64;
        Ok(Vec::new())
    }

    async fn finish(&mut self) -> Result<SinkReport> {
        Ok(SinkReport {
            records: self.records,
            bytes: 0,
            location: Some("discard".to_owned()),
        })
    }

    fn describe(&self) -> String {
        "discard".to_owned()
    }
}

/// Reads every regular file of a folder, in name order, one after the other; a record's
/// position names its file (`origin`). Links in the folder are not followed, so a folder
/// that may be read leads to nothing outside it.
pub struct FolderSource {
    name: String,
    files: std::vec::IntoIter<std::path::PathBuf>,
    /// How many files it lists.
    total: usize,
    codec: CodecConfig,
    current: Option<(std::sync::Arc<str>, FileSource)>,
}

impl FolderSource {
    /// Lists the folder's files now (blocking).
    pub fn open(dir: &Path, codec: &CodecConfig) -> Result<FolderSource> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("cannot list input folder {}", dir.display()), e))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| Error::io(format!("cannot list input folder {}", dir.display()), e))?;
            // The entry's own type: a link is not followed.
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(FolderSource {
            name: format!("file:{}/", dir.display()),
            total: files.len(),
            files: files.into_iter(),
            codec: codec.clone(),
            current: None,
        })
    }
}

#[async_trait]
impl RecordSource for FolderSource {
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>> {
        loop {
            let Some((file, source)) = self.current.as_mut() else {
                let Some(path) = self.files.next() else {
                    return Ok(None);
                };
                let codec = self.codec.clone();
                let file: std::sync::Arc<str> = path.display().to_string().into();
                let source = tokio::task::spawn_blocking(move || FileSource::open(&path, &codec))
                    .await
                    .map_err(|e| join_error(&self.name, e))??;
                self.current = Some((file, source));
                continue;
            };
            match source.read_batch(max).await? {
                Some(mut items) => {
                    for item in &mut items {
                        item.position_mut().origin = Some(file.to_string());
                    }
                    return Ok(Some(items));
                }
                None => self.current = None,
            }
        }
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    /// Files finished, plus the share of the one being read.
    fn progress(&self) -> Option<f64> {
        if self.total == 0 {
            return Some(1.0);
        }
        let current = self.current.as_ref();
        let done = self.total - self.files.len() - usize::from(current.is_some());
        let part = current.and_then(|(_, s)| s.progress()).unwrap_or(0.0);
        Some(((done as f64 + part) / self.total as f64).min(1.0))
    }
}

/// Opens an input again from its start; shared with the blocking pool.
pub type Reopen = std::sync::Arc<dyn Fn() -> Result<Box<dyn RecordSource>> + Send + Sync>;

/// An input read again from its start each time it ends (a descriptor's `Loop`). A pass
/// that reads nothing ends it, rather than spinning on an empty input.
pub struct Looping {
    reopen: Reopen,
    current: Box<dyn RecordSource>,
    read_this_pass: bool,
}

impl Looping {
    /// Opens the first pass now (blocking).
    pub fn new(reopen: Reopen) -> Result<Looping> {
        Ok(Looping {
            current: reopen()?,
            reopen,
            read_this_pass: false,
        })
    }
}

#[async_trait]
impl RecordSource for Looping {
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>> {
        loop {
            if let Some(items) = self.current.read_batch(max).await? {
                self.read_this_pass = true;
                return Ok(Some(items));
            }
            if !std::mem::take(&mut self.read_this_pass) {
                return Ok(None);
            }
            let reopen = self.reopen.clone();
            let name = self.current.describe();
            self.current = tokio::task::spawn_blocking(move || reopen())
                .await
                .map_err(|e| join_error(&name, e))??;
        }
    }

    fn describe(&self) -> String {
        format!("{} (looping)", self.current.describe())
    }
}
