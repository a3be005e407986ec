//! A supervised worker process that speaks no particular protocol: the spawning, console
//! draining, exit reporting and kill-on-drop of [`WorkerSession`](crate::WorkerSession),
//! for runners whose worker cannot use the MessagePack protocol over a socket (the R
//! runner talks to `Rscript` over pipes).
//!
//! The caller hands over the fds the child gets (each placed at a chosen number below 10)
//! and keeps its own ends to talk over. Given the progress page the worker writes, the
//! process gets the same watchdog as a `WorkerSession` (`command.limits`: per-record
//! timeout, memory limit, slow-record warnings).

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use runtime_core::{Error, JobLog, Level, Result};
use tokio::task::JoinHandle;

use crate::console;
use crate::limits::{BatchSeqnos, Watchdog};
use crate::progress::ProgressPage;
use crate::session::{engine_pid, high_dup, spawn_error};
use crate::{describe_exit, Broken, WorkerCommand};

/// How long the console drains get to pass on the last lines of a finished worker.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// A running worker process whose stdout and stderr go to the job's log as the model's
/// console (stdout at INFO, stderr at WARN). Dropping it kills the process.
#[derive(Debug)]
pub struct WorkerProcess {
    child: tokio::process::Child,
    pid: u32,
    consoles: Vec<JoinHandle<()>>,
    watchdog: Option<Watchdog>,
    /// Batches in flight by first seqno, for the watchdog's warnings.
    seqnos: BatchSeqnos,
}

impl WorkerProcess {
    /// Starts `command` with each `(fd, number)` of `fds` open in the child as `number`
    /// (which must be from 3 to 9); stdin is empty. The caller keeps its fds and closes
    /// the ones only the child needs after this returns.
    ///
    /// With `page` (the progress page the child writes, among `fds`), `command.limits` are
    /// enforced: a record running past the timeout, or a resident set past the memory
    /// limit, gets the process and its group killed, and [`WorkerProcess::limit_broken`]
    /// says which.
    pub fn spawn(
        command: &WorkerCommand,
        fds: &[(BorrowedFd<'_>, RawFd)],
        page: Option<Arc<ProgressPage>>,
        log: Arc<dyn JobLog>,
    ) -> Result<WorkerProcess> {
        let mut placed = Vec::with_capacity(fds.len());
        for (fd, number) in fds {
            if !(3..10).contains(number) {
                return Err(Error::Protocol(format!(
                    "a worker fd cannot be placed at {number}; use 3 to 9"
                )));
            }
            // Copies numbered 10 or above, so no dup2 below overwrites another's source.
            let high = high_dup(fd.as_raw_fd()).map_err(|e| spawn_error(command, e))?;
            placed.push((high, *number));
        }
        let pairs: Vec<(RawFd, RawFd)> = placed.iter().map(|(f, n)| (f.as_raw_fd(), *n)).collect();

        let mut cmd = tokio::process::Command::new(&command.program);
        command.apply_env(&mut cmd);
        cmd.args(&command.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = &command.cwd {
            cmd.current_dir(cwd);
        }
        // A group of its own, so what the worker starts is killed with it.
        cmd.process_group(0);
        let engine_pid = engine_pid();
        // Safety: the closure runs in the forked child before exec and only calls dup2,
        // prctl and getppid, which are async-signal-safe; it allocates nothing (`pairs` was
        // built before the fork). Sources are 10 or above and targets below 10, so no dup2
        // overwrites another's source, and dup2 clears close-on-exec on exactly the targets.
        unsafe {
            cmd.pre_exec(move || {
                for (src, dst) in &pairs {
                    if libc::dup2(*src, *dst) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                crate::lifeline::child_setup(engine_pid)
            });
        }
        let mut child = cmd.spawn().map_err(|e| spawn_error(command, e))?;
        drop(placed);
        let pid = child.id().unwrap_or_default();
        let seqnos = BatchSeqnos::default();
        let watchdog = page.and_then(|page| {
            Watchdog::start(command.limits, pid, page, log.clone(), seqnos.clone())
        });
        let mut consoles = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            consoles.push(console::drain(
                out,
                command.console,
                log.clone(),
                Level::Info,
            ));
        }
        if let Some(err) = child.stderr.take() {
            consoles.push(console::drain(err, command.console, log, Level::Warn));
        }
        Ok(WorkerProcess {
            child,
            pid,
            consoles,
            watchdog,
            seqnos,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Tells the watchdog that batch `batch` starts at `first_seqno` (and whether its
    /// seqnos follow on), so a slow-record warning names the record's seqno.
    pub fn batch_started(&self, batch: u64, first_seqno: u64, consecutive: bool) {
        if self.watchdog.is_some() {
            if let Ok(mut seqnos) = self.seqnos.lock() {
                seqnos.push_back((batch, first_seqno, consecutive));
            }
        }
    }

    /// The batch has its outcomes: the watchdog no longer names its records.
    pub fn batch_done(&self, batch: u64) {
        if let Ok(mut seqnos) = self.seqnos.lock() {
            seqnos.retain(|(b, _, _)| *b != batch);
        }
    }

    /// The record a limit was hit on, `(batch, 1-based index)` as the progress page had it
    /// when the watchdog killed the process (`None`: no limit hit, or not a per-record one).
    pub fn limit_position(&self) -> Option<(u64, u64)> {
        self.watchdog
            .as_ref()
            .and_then(Watchdog::hit)
            .and_then(|h| h.position())
    }

    /// Why the process was killed when the watchdog killed it: a [`Broken::Limit`]
    /// blaming `last_record`.
    pub fn limit_broken(&self, last_record: Option<String>) -> Option<Broken> {
        let hit = self.watchdog.as_ref().and_then(Watchdog::hit)?;
        Some(Broken::Limit {
            limit: hit.limit(),
            detail: hit.detail(),
            last_record,
        })
    }

    /// Resolves when the process has exited (for `select!` next to a read from it).
    pub async fn exited(&mut self) {
        let _ = self.child.wait().await;
    }

    /// How the process ended (`exited with status 3`), waiting up to `grace` for it, then
    /// killing it; the console's last lines are passed on before returning.
    pub async fn end_reason(&mut self, grace: Duration) -> String {
        let reason = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => describe_exit(status),
            Ok(Err(e)) => format!("cannot be waited for: {e}"),
            Err(_) => {
                let _ = self.child.kill().await;
                "closed its connection to the engine and was killed".to_owned()
            }
        };
        self.drain_consoles().await;
        reason
    }

    /// Waits up to `grace` for a clean exit; `Ok(None)` if the process exited with status
    /// 0, `Ok(Some(reason))` if it ended otherwise or had to be killed.
    pub async fn wait_exit(&mut self, grace: Duration) -> Result<Option<String>> {
        let ended = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => None,
            Ok(Ok(status)) => Some(describe_exit(status)),
            Ok(Err(e)) => return Err(Error::io("waiting for the model's worker", e)),
            Err(_) => {
                let _ = self.child.kill().await;
                Some(format!(
                    "did not exit within {} s and was killed",
                    grace.as_secs()
                ))
            }
        };
        self.drain_consoles().await;
        Ok(ended)
    }

    /// Stops the process and what it started now (SIGKILL); it is reaped on drop or by a
    /// later wait.
    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
        crate::lifeline::kill_group(self.pid);
    }

    async fn drain_consoles(&mut self) {
        for handle in self.consoles.drain(..) {
            let _ = tokio::time::timeout(DRAIN_GRACE, handle).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        crate::lifeline::kill_group(self.pid);
    }
}
