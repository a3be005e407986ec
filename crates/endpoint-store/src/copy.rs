//! Whole files to and from a store, streamed to and from disk (a model's assets before it
//! starts, a training job's products). Called on threads that may block: each copy runs on a
//! thread and runtime of its own, whatever the caller's context.

use std::io::{Read, Write};
use std::path::Path;

use bytes::Bytes;
use runtime_core::{Error, Result};

use crate::read::open_body;
use crate::settings::StoreSettings;
use crate::target::Located;
use crate::write::Upload;

/// Runs `work` to its end on a thread and current-thread runtime of its own.
fn on_own_runtime<T: Send>(
    name: &str,
    work: impl std::future::Future<Output = Result<T>> + Send,
) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::io(format!("{name}: cannot start a runtime to copy"), e))?;
                runtime.block_on(work)
            })
            .join()
            .unwrap_or_else(|_| Err(Error::endpoint(name, "the copying thread panicked")))
    })
}

/// Copies the object `at` to `dest` (written beside it, then renamed into place), through the
/// transfer an input reads with: a cut in the middle is taken up where it stopped.
pub(crate) fn fetch(at: &Located, dest: &Path, settings: &StoreSettings) -> Result<u64> {
    if at.is_prefix() {
        return Err(Error::endpoint(
            at.name(),
            "a prefix is not one file: name the object to fetch",
        ));
    }
    let name = at.name();
    let partial = dest.with_file_name(format!(
        ".{}.partial",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let copied = on_own_runtime(&name, async {
        let mut body = open_body(at, settings, 0).await?;
        let mut file = std::fs::File::create(&partial)
            .map_err(|e| Error::io(format!("cannot create {}", partial.display()), e))?;
        let mut bytes = 0u64;
        while let Some(chunk) = body.next_chunk().await? {
            // This thread is the copy's own: blocking writes hold nobody up.
            file.write_all(&chunk)
                .map_err(|e| Error::io(format!("cannot write {}", partial.display()), e))?;
            bytes += chunk.len() as u64;
        }
        file.sync_all()
            .map_err(|e| Error::io(format!("cannot write {}", partial.display()), e))?;
        Ok(bytes)
    });
    match copied {
        Ok(bytes) => {
            std::fs::rename(&partial, dest).map_err(|e| {
                Error::io(
                    format!("cannot move {} to {}", partial.display(), dest.display()),
                    e,
                )
            })?;
            Ok(bytes)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Copies the local file `src` to the object `at` (under it, by the file's name, when `at`
/// is a prefix), as a multipart upload when it is larger than a part.
pub(crate) fn store(at: &Located, src: &Path, settings: &StoreSettings) -> Result<u64> {
    let at = if at.is_prefix() {
        let file = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Error::endpoint(at.name(), format!("{} names no file", src.display()))
            })?;
        at.object(format!("{}{file}", at.key))?
    } else {
        at.clone()
    };
    let name = at.name();
    on_own_runtime(&name, async {
        let mut file = std::fs::File::open(src)
            .map_err(|e| Error::io(format!("cannot open {}", src.display()), e))?;
        let mut upload = Upload::new(at.clone(), settings);
        let mut bytes = 0u64;
        loop {
            let mut buf = vec![0u8; settings.part_bytes.max(1 << 20)];
            let mut filled = 0;
            while filled < buf.len() {
                let n = match file.read(&mut buf[filled..]) {
                    Ok(n) => n,
                    Err(e) => {
                        upload.abort().await;
                        return Err(Error::io(format!("cannot read {}", src.display()), e));
                    }
                };
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            bytes += filled as u64;
            upload.put(Bytes::from(buf)).await?;
        }
        upload.complete().await?;
        Ok(bytes)
    })
}
