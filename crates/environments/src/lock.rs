//! Advisory whole-file locks (`flock`), one lock file per environment key.
//!
//! A shared lock means "this environment is in use"; an exclusive one means "building or
//! deleting it". Locks die with their process, so an engine that is killed never leaves an
//! environment locked.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug)]
pub(crate) struct LockFile {
    file: File,
    path: PathBuf,
}

impl LockFile {
    pub(crate) fn open(path: &Path) -> Result<LockFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(format!("cannot open lock file {}", path.display()), e))?;
        Ok(LockFile {
            file,
            path: path.to_owned(),
        })
    }

    /// Waits for a shared lock.
    pub(crate) fn shared(&self) -> Result<()> {
        self.flock(libc::LOCK_SH)
            .map_err(|e| Error::io(format!("cannot lock {}", self.path.display()), e))
    }

    /// Waits for an exclusive lock.
    pub(crate) fn exclusive(&self) -> Result<()> {
        self.flock(libc::LOCK_EX)
            .map_err(|e| Error::io(format!("cannot lock {}", self.path.display()), e))
    }

    /// Takes an exclusive lock if nobody holds any; false when someone does.
    pub(crate) fn try_exclusive(&self) -> Result<bool> {
        match self.flock(libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
            Err(e) => Err(Error::io(format!("cannot lock {}", self.path.display()), e)),
        }
    }

    pub(crate) fn unlock(&self) {
        // Closing the file releases the lock too; an error here changes nothing.
        let _ = self.flock(libc::LOCK_UN);
    }

    fn flock(&self, operation: libc::c_int) -> io::Result<()> {
        loop {
            // Safety: the descriptor is owned by `self.file` and open for the whole call.
            let rc = unsafe { libc::flock(self.file.as_raw_fd(), operation) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}
