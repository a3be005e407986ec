//! A shared memory page through which the worker tells which record it is scoring, so a
//! worker that dies mid-batch can be blamed on the exact record without any per-record
//! message. The engine creates the page (a memfd), keeps a mapping, and hands the file to
//! the worker as fd 4.
//!
//! Layout: word 0 is the number of the batch being scored, word 1 the 1-based index of the
//! record within it (0 = between records). Words are native-endian `u64`s at offsets 0 and
//! 8, so a worker's language runner may also map fd 4 itself and write word 1 from its own
//! loop (the Python runner does, through `mmap` + `memoryview.cast("Q")`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// The fd the page has in the worker.
pub const PROGRESS_FD: RawFd = 4;
/// Bytes in the page.
pub const PROGRESS_LEN: usize = 4096;

/// A mapping of the progress page.
#[derive(Debug)]
pub struct ProgressPage {
    ptr: *mut AtomicU64,
    fd: Option<OwnedFd>,
    /// No shared page (a worker started by hand): the words live in this buffer.
    local: Option<Box<[AtomicU64; 2]>>,
}

// Safety: the mapping is only accessed through atomics, and it stays mapped for the life of
// the value, whichever thread holds it.
unsafe impl Send for ProgressPage {}
// Safety: as above; every access is an atomic load or store.
unsafe impl Sync for ProgressPage {}

impl ProgressPage {
    /// A new page for a worker about to be spawned (the engine side).
    pub fn create() -> std::io::Result<ProgressPage> {
        // Safety: memfd_create takes a NUL-terminated name and flags; it returns a new fd or -1.
        let raw =
            unsafe { libc::memfd_create(c"model-runtime-progress".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Safety: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Safety: ftruncate on an fd we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), PROGRESS_LEN as libc::off_t) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Self::map(fd)
    }

    /// Maps the page the engine passed as fd 4 (the worker side); a worker started without
    /// one gets a private page, so it still runs.
    pub fn inherited() -> ProgressPage {
        // Safety: F_GETFD only asks whether the fd is open.
        let open = unsafe { libc::fcntl(PROGRESS_FD, libc::F_GETFD) } >= 0;
        if open {
            // Safety: the engine passes the page as fd 4 and nothing else in the worker
            // takes ownership of that fd.
            let fd = unsafe { OwnedFd::from_raw_fd(PROGRESS_FD) };
            if let Ok(page) = Self::map(fd) {
                return page;
            }
        }
        Self::private()
    }

    fn private() -> ProgressPage {
        let mut local = Box::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let ptr = local.as_mut_ptr();
        ProgressPage {
            ptr,
            fd: None,
            local: Some(local),
        }
    }

    fn map(fd: OwnedFd) -> std::io::Result<ProgressPage> {
        // Safety: mapping PROGRESS_LEN bytes of a file at least that long, shared, read and
        // write; the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PROGRESS_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(ProgressPage {
            ptr: ptr.cast(),
            fd: Some(fd),
            local: None,
        })
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < 2);
        // Safety: `ptr` points at a live, page-aligned mapping (or the local buffer) of at
        // least two u64 words for as long as `self` lives.
        unsafe { &*self.ptr.add(i) }
    }

    /// The fd of the page, to pass to a worker or map again.
    pub fn fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The page's file, to hand to a worker spawned by other means than `WorkerSession`.
    pub fn borrow_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    pub fn set_batch(&self, batch: u64) {
        self.word(0).store(batch, Ordering::Release);
        self.word(1).store(0, Ordering::Release);
    }

    /// `index` counts from 1 within the batch; 0 means between records.
    pub fn set_record(&self, index: u64) {
        self.word(1).store(index, Ordering::Release);
    }

    /// `(batch, 1-based index)` as last written.
    pub fn read(&self) -> (u64, u64) {
        (
            self.word(0).load(Ordering::Acquire),
            self.word(1).load(Ordering::Acquire),
        )
    }
}

impl Drop for ProgressPage {
    fn drop(&mut self) {
        if self.local.is_none() {
            // Safety: `ptr` was returned by mmap with this length and is unmapped once.
            unsafe {
                libc::munmap(self.ptr.cast(), PROGRESS_LEN);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_page_see_each_other() {
        let a = ProgressPage::create().unwrap();
        // Safety: dup of an fd we own, checked below.
        let dup = unsafe { libc::dup(a.fd().unwrap()) };
        assert!(dup >= 0);
        // Safety: `dup` is fresh and owned by the new mapping only.
        let b = ProgressPage::map(unsafe { OwnedFd::from_raw_fd(dup) }).unwrap();
        b.set_batch(7);
        b.set_record(42);
        assert_eq!(a.read(), (7, 42));
        let p = ProgressPage::private();
        p.set_record(3);
        assert_eq!(p.read(), (0, 3));
    }
}
