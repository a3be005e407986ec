//! The engine's data folder: made absolute once at start-up and locked for the engine's
//! life, so two engines never share one queue, one database and one set of job folders.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file, inside the data folder; it holds the owning engine's pid.
pub const LOCK_FILE: &str = "engine.lock";

/// A data folder this engine owns. The exclusive `flock` on its lock file is held until
/// this is dropped (or the process dies, whatever way: the kernel releases it).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates `dir` if needed, makes it absolute (symlinks resolved, so every path the
    /// engine derives from it stays valid whatever the current directory of a worker), and
    /// takes its lock. Another engine holding it is refused, naming its pid.
    pub fn acquire(dir: &Path) -> Result<DataDir> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::io(
                format!("cannot create the data folder {}", dir.display()),
                e,
            )
        })?;
        let path = std::fs::canonicalize(dir).map_err(|e| {
            Error::io(
                format!("cannot resolve the data folder {}", dir.display()),
                e,
            )
        })?;
        let lock_path = path.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("cannot open {}", lock_path.display()), e))?;
        // Safety: flock on an fd this function owns for the call's duration.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::DataDirInUse {
                    dir: path.display().to_string(),
                    holder: if holder.is_empty() {
                        "unknown".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            return Err(Error::io(format!("cannot lock {}", lock_path.display()), e));
        }
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{pid}"))
            .and_then(|()| file.flush())
            .map_err(|e| Error::io(format!("cannot write {}", lock_path.display()), e))?;
        Ok(DataDir { path, _lock: file })
    }

    /// The absolute data folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::acquire(&dir.path().join("data")).unwrap();
        assert!(first.path().is_absolute());
        // flock locks belong to the open file description: a second open conflicts even
        // within one process.
        let e = DataDir::acquire(&dir.path().join("data")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        drop(first);
        DataDir::acquire(&dir.path().join("data")).unwrap();
    }
}
