//! Parquet files: rows become records (maps of column name to value) and records rows.
//!
//! **Reading** needs random access: a Parquet file's footer, which says where everything
//! is, is at its end. [`parquet_decoder`] reads through a [`RandomAccess`] input (a local
//! file; an object store's range reads): the footer first, then one row group at a time,
//! its column chunks fetched with one read and decoded [`READ_BATCH_ROWS`] rows at a time.
//! Memory is bounded by a row group, never the file; nothing is spooled to disk. Reading a
//! Parquet file through [`crate::decoder`] (a byte stream) is refused.
//!
//! **Writing** streams ([`crate::encoder`] over any `Write`, seekable or not): records are
//! buffered and written as a row group every [`ROW_GROUP_ROWS`] records, snappy-compressed
//! (Spark's and pyarrow's default); the footer is written by
//! [`RecordEncoder::close`](crate::RecordEncoder::close). The columns come from the
//! slot's Avro schema when the config has one, else they are inferred from the records of
//! the first row group; a later record that does not fit them is rejected naming the field.
//!
//! The value mapping both ways is in docs/codecs.md ("Parquet").

mod read;
mod types;
mod write;

use std::io;

use bytes::Bytes;

pub(crate) use read::ParquetDecoder;
pub(crate) use types::arrow_schema_of;
pub(crate) use write::ParquetEncoder;

/// Rows decoded at a time within a row group (one Arrow batch).
pub const READ_BATCH_ROWS: usize = 1024;
/// Records per written row group (the last one may hold fewer, and so does each one a
/// mid-stream [`RecordEncoder::finish`](crate::RecordEncoder::finish) closes early).
pub const ROW_GROUP_ROWS: usize = 65_536;

/// An input that can be read at any offset, as a Parquet decoder needs: a local file, an
/// object in a store read by ranges.
///
/// The decoder calls [`len`](RandomAccess::len) once, then [`read_at`](RandomAccess::read_at)
/// for the footer (the last 64 KiB of the input, then more if the footer is longer) and once
/// per row group (the byte range of its column chunks, typically a few MiB to a few hundred
/// MiB): few and large reads, in file order after the footer, from one thread at a time. An
/// implementation over an object store maps each call to one ranged GET.
pub trait RandomAccess: Send {
    /// The input's length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Whether the input is empty (an empty input holds no rows).
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Exactly `len` bytes starting at `offset`; an input that ends first is an error
    /// (`io::ErrorKind::UnexpectedEof`).
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes>;
}

impl RandomAccess for std::fs::File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        read_exact_at(self, &mut buf, offset)?;
        Ok(Bytes::from(buf))
    }
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Bytes in memory (a file already fetched whole, a test's bytes).
impl RandomAccess for Bytes {
    fn len(&self) -> io::Result<u64> {
        Ok(Bytes::len(self) as u64)
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(len) {
            Some(end) if end <= Bytes::len(self) => Ok(self.slice(start..end)),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "bytes {offset}..{} asked of an input of {}",
                    offset.saturating_add(len as u64),
                    Bytes::len(self)
                ),
            )),
        }
    }
}
