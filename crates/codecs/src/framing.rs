//! Cutting a byte stream into frames: at a separator, every `size` bytes, or not at all.
//!
//! Invariant: at most `max_record_bytes` (plus one read chunk) of a frame is ever buffered; a
//! longer frame is consumed and dropped, and reported as [`Frame::Oversize`].

use std::io::{self, BufRead};

#[derive(Clone, Debug)]
pub(crate) enum Split {
    Separator(Vec<u8>),
    Fixed(usize),
    Whole,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A frame is in [`Splitter::data`].
    Data,
    /// A frame of `len` bytes was longer than the limit and was skipped.
    Oversize {
        len: u64,
    },
    /// A fixed-size framing ended with a short chunk of `len` bytes.
    Short {
        len: u64,
    },
    End,
}

#[derive(Debug)]
pub(crate) struct Splitter<R> {
    input: R,
    split: Split,
    buf: Vec<u8>,
    max: usize,
    /// Bytes consumed from the input so far.
    offset: u64,
    /// Offset of the last frame's first byte.
    pub frame_offset: u64,
    /// Number of frames cut so far (the line number, for line framings).
    pub frames: u64,
    done: bool,
}

impl<R: BufRead> Splitter<R> {
    pub fn new(input: R, split: Split, max: usize) -> Self {
        Splitter {
            input,
            split,
            buf: Vec::new(),
            max,
            offset: 0,
            frame_offset: 0,
            frames: 0,
            done: false,
        }
    }

    /// The bytes of the last [`Frame::Data`].
    pub fn data(&self) -> &[u8] {
        &self.buf
    }

    pub fn next_frame(&mut self) -> io::Result<Frame> {
        if self.done {
            return Ok(Frame::End);
        }
        self.buf.clear();
        self.frame_offset = self.offset;
        let frame = match &self.split {
            Split::Separator(sep) if sep.len() == 1 => {
                let sep = sep[0];
                self.next_separated_byte(sep)?
            }
            Split::Separator(_) => self.next_separated()?,
            Split::Fixed(size) => {
                let size = *size;
                self.next_fixed(size)?
            }
            Split::Whole => {
                self.done = true;
                self.next_whole()?
            }
        };
        if frame != Frame::End {
            self.frames += 1;
        }
        Ok(frame)
    }

    fn consume(&mut self, n: usize) {
        self.input.consume(n);
        self.offset += n as u64;
    }

    /// The common case (a newline): memchr over the reader's own buffer, one copy per frame.
    fn next_separated_byte(&mut self, sep: u8) -> io::Result<Frame> {
        let mut dropped: u64 = 0;
        loop {
            let max = self.max;
            let chunk = fill(&mut self.input)?;
            if chunk.is_empty() {
                self.done = true;
                return Ok(if dropped > 0 {
                    Frame::Oversize {
                        len: dropped + self.buf.len() as u64,
                    }
                } else if self.buf.is_empty() {
                    Frame::End
                } else {
                    Frame::Data
                });
            }
            let (take, found) = match memchr::memchr(sep, chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if dropped == 0 && self.buf.len() + take <= max {
                self.buf.extend_from_slice(&chunk[..take]);
            } else {
                // Too long: count what we skip instead of keeping it.
                dropped += (self.buf.len() + take) as u64;
                self.buf.clear();
            }
            self.consume(take + usize::from(found));
            if found {
                return Ok(if dropped > 0 {
                    Frame::Oversize { len: dropped }
                } else {
                    Frame::Data
                });
            }
        }
    }

    fn next_separated(&mut self) -> io::Result<Frame> {
        let sep = match &self.split {
            Split::Separator(sep) => sep.clone(),
            _ => return Ok(Frame::End),
        };
        let keep = sep.len() - 1;
        let mut dropped: u64 = 0;
        loop {
            let max = self.max;
            let before = self.buf.len();
            let chunk = fill(&mut self.input)?;
            if chunk.is_empty() {
                self.done = true;
                return Ok(if dropped > 0 {
                    Frame::Oversize {
                        len: dropped + self.buf.len() as u64,
                    }
                } else if self.buf.is_empty() {
                    Frame::End
                } else {
                    Frame::Data
                });
            }
            let n = chunk.len();
            self.buf.extend_from_slice(chunk);
            // A separator may straddle two chunks: search from just before the new bytes.
            let from = before.saturating_sub(keep);
            if let Some(i) = memchr::memmem::find(&self.buf[from..], &sep) {
                let end = from + i;
                let used = end + sep.len() - before;
                self.buf.truncate(end);
                self.consume(used);
                if dropped > 0 || end > max {
                    return Ok(Frame::Oversize {
                        len: dropped + end as u64,
                    });
                }
                return Ok(Frame::Data);
            }
            self.consume(n);
            if dropped > 0 || self.buf.len() > max {
                let cut = self.buf.len() - keep.min(self.buf.len());
                dropped += cut as u64;
                self.buf.drain(..cut);
            }
        }
    }

    fn next_fixed(&mut self, size: usize) -> io::Result<Frame> {
        while self.buf.len() < size {
            let want = size - self.buf.len();
            let chunk = fill(&mut self.input)?;
            if chunk.is_empty() {
                self.done = true;
                return Ok(if self.buf.is_empty() {
                    Frame::End
                } else {
                    Frame::Short {
                        len: self.buf.len() as u64,
                    }
                });
            }
            let take = want.min(chunk.len());
            self.buf.extend_from_slice(&chunk[..take]);
            self.consume(take);
        }
        Ok(Frame::Data)
    }

    fn next_whole(&mut self) -> io::Result<Frame> {
        let mut dropped: u64 = 0;
        loop {
            let max = self.max;
            let chunk = fill(&mut self.input)?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            if dropped == 0 && self.buf.len() + n <= max {
                self.buf.extend_from_slice(chunk);
            } else {
                dropped += (self.buf.len() + n) as u64;
                self.buf.clear();
            }
            self.consume(n);
        }
        Ok(if dropped > 0 {
            Frame::Oversize { len: dropped }
        } else if self.buf.is_empty() {
            Frame::End
        } else {
            Frame::Data
        })
    }
}

/// `fill_buf`, retried on `Interrupted`.
pub(crate) fn fill<R: BufRead>(input: &mut R) -> io::Result<&[u8]> {
    loop {
        match input.fill_buf() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    input.fill_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], split: Split, max: usize, cap: usize) -> Vec<(String, u64)> {
        let reader = io::BufReader::with_capacity(cap, input);
        let mut s = Splitter::new(reader, split, max);
        let mut out = Vec::new();
        loop {
            match s.next_frame().unwrap() {
                Frame::End => break,
                Frame::Data => out.push((
                    String::from_utf8_lossy(s.data()).into_owned(),
                    s.frame_offset,
                )),
                Frame::Oversize { len } => out.push((format!("<oversize {len}>"), s.frame_offset)),
                Frame::Short { len } => out.push((format!("<short {len}>"), s.frame_offset)),
            }
        }
        out
    }

    #[test]
    fn lines_with_small_reads_and_oversize() {
        let got = frames(
            b"ab\n\nabcdefgh\nxy",
            Split::Separator(b"\n".to_vec()),
            4,
            3,
        );
        assert_eq!(
            got,
            vec![
                ("ab".into(), 0),
                ("".into(), 3),
                ("<oversize 8>".into(), 4),
                ("xy".into(), 13)
            ]
        );
    }

    #[test]
    fn multi_byte_separator_across_chunks() {
        let got = frames(
            b"a||bb||||cccccc||d",
            Split::Separator(b"||".to_vec()),
            4,
            2,
        );
        assert_eq!(
            got,
            vec![
                ("a".into(), 0),
                ("bb".into(), 3),
                ("".into(), 7),
                ("<oversize 6>".into(), 9),
                ("d".into(), 17)
            ]
        );
    }

    #[test]
    fn fixed_and_whole() {
        let got = frames(b"abcdefg", Split::Fixed(3), 10, 2);
        assert_eq!(
            got,
            vec![
                ("abc".into(), 0),
                ("def".into(), 3),
                ("<short 1>".into(), 6)
            ]
        );
        let got = frames(b"abcdefg", Split::Whole, 10, 2);
        assert_eq!(got, vec![("abcdefg".into(), 0)]);
        let got = frames(b"abcdefg", Split::Whole, 3, 2);
        assert_eq!(got, vec![("<oversize 7>".into(), 0)]);
    }
}
