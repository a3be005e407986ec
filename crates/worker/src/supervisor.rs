//! The one spawn and supervision path of every model worker, whatever protocol it speaks
//! ([`WorkerSession`](crate::WorkerSession)'s MessagePack socket, the R runner's pipes):
//!
//! - the process runs in a group of its own, with the lifeline (it dies with the engine);
//! - it starts from the command's base environment (see [`crate::env`]);
//! - it gets the caller's fds at chosen numbers, and the [progress page](crate::progress)
//!   as fd 4, which the engine creates here;
//! - its stdout and stderr are drained into the job's log, lines cut at the console cap;
//! - the watchdog enforces the command's limits (per-record timeout, memory, slow-record
//!   warnings) off the progress page;
//! - the batches in flight are kept here, so a worker that dies is reported, with
//!   [`WorkerProcess::death`], as `Error::WorkerDied` (or `Error::LimitExceeded` when the
//!   watchdog killed it) naming the record it was on.
//!
//! Dropping a [`WorkerProcess`] kills the process and its group.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtime_core::{Error, JobLog, Level, Result, ScoreItem, Value};
use tokio::task::JoinHandle;

use crate::console;
use crate::limits::Watchdog;
use crate::progress::{ProgressPage, PROGRESS_FD};
use crate::session::WorkerCommand;

/// How long the console drains get to pass on the last lines of a finished worker.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Longest rendering of a record in an error message.
const RECORD_SHOWN: usize = 200;

/// One batch sent to a worker and not yet answered.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) id: u64,
    pub(crate) items: Vec<ScoreItem>,
}

/// The batches in flight of one worker, oldest first; shared with its watchdog, which
/// names the record it warns about from them.
pub(crate) type Batches = Arc<Mutex<VecDeque<InFlight>>>;

/// A running, supervised worker process. Dropping it kills the process and its group.
#[derive(Debug)]
pub struct WorkerProcess {
    child: tokio::process::Child,
    pid: u32,
    consoles: Vec<JoinHandle<()>>,
    page: Arc<ProgressPage>,
    watchdog: Option<Watchdog>,
    batches: Batches,
}

/// Why a worker cannot go on; kept so every later call fails the same way (the
/// error itself is not `Clone`). Shared with runners whose workers speak their own protocol.
#[derive(Clone, Debug)]
pub enum Broken {
    Died {
        reason: String,
        last_record: Option<String>,
    },
    Protocol(String),
    Limit {
        limit: &'static str,
        detail: String,
        last_record: Option<String>,
    },
}

impl Broken {
    pub fn error(&self) -> Error {
        match self {
            Broken::Died {
                reason,
                last_record,
            } => Error::WorkerDied {
                reason: reason.clone(),
                last_record: last_record.clone(),
            },
            Broken::Protocol(m) => Error::Protocol(m.clone()),
            Broken::Limit {
                limit,
                detail,
                last_record,
            } => Error::LimitExceeded {
                limit: (*limit).to_owned(),
                detail: detail.clone(),
                last_record: last_record.clone(),
            },
        }
    }
}

/// How a worker ended, as [`WorkerProcess::death`] found it.
#[derive(Clone, Debug)]
pub struct Death {
    /// `Died` or `Limit`, naming the record in flight.
    pub broken: Broken,
    /// The seqno of the record in flight, when exactly known.
    pub seqno: Option<u64>,
}

impl WorkerProcess {
    /// Starts `command` with each `(fd, number)` of `fds` open in the child as `number`
    /// (from 3 to 9, not 4: the progress page is fd 4); stdin is empty. The caller keeps
    /// its fds and closes the ones only the child needs after this returns.
    pub fn spawn(
        command: &WorkerCommand,
        fds: &[(BorrowedFd<'_>, RawFd)],
        log: Arc<dyn JobLog>,
    ) -> Result<WorkerProcess> {
        let page = ProgressPage::create().map_err(|e| spawn_error(command, e))?;
        let page_fd = page
            .borrow_fd()
            .ok_or_else(|| Error::Protocol("the progress page has no fd".into()))?;
        if let Some((_, number)) = fds
            .iter()
            .find(|(_, n)| !(3..10).contains(n) || *n == PROGRESS_FD)
        {
            return Err(Error::Protocol(format!(
                "a worker fd cannot be placed at {number}; use 3 or 5 to 9 (4 is the progress page)"
            )));
        }
        let mut placed = Vec::with_capacity(fds.len() + 1);
        for (fd, number) in fds.iter().copied().chain([(page_fd, PROGRESS_FD)]) {
            // Copies numbered 10 or above, so no dup2 below overwrites another's source.
            let high = high_dup(fd).map_err(|e| spawn_error(command, e))?;
            placed.push((high, number));
        }
        let pairs: Vec<(RawFd, RawFd)> = placed.iter().map(|(f, n)| (f.as_raw_fd(), *n)).collect();

        let mut cmd = tokio::process::Command::new(&command.program);
        // The worker starts from `base_env` (or the engine's), then `env` on top.
        if let Some(base) = &command.base_env {
            cmd.env_clear().envs(base.iter().map(|(k, v)| (k, v)));
        }
        cmd.envs(command.env.iter().map(|(k, v)| (k, v)));
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
        let page = Arc::new(page);
        let batches = Batches::default();
        let watchdog = Watchdog::start(
            command.limits,
            pid,
            page.clone(),
            log.clone(),
            batches.clone(),
        );
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
            page,
            watchdog,
            batches,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Batch `id` (its items) was sent to the worker: a record of it is named by seqno if
    /// the worker dies on it or runs slow.
    pub fn batch_started(&self, id: u64, items: Vec<ScoreItem>) {
        if let Ok(mut batches) = self.batches.lock() {
            batches.push_back(InFlight { id, items });
        }
    }

    /// Batch `id` has its outcomes: it is no longer in flight.
    pub fn batch_done(&self, id: u64) {
        if let Ok(mut batches) = self.batches.lock() {
            if let Some(at) = batches.iter().position(|b| b.id == id) {
                batches.remove(at);
            }
        }
    }

    /// Resolves when the process has exited (for `select!` next to a read from it).
    pub async fn exited(&mut self) {
        let _ = self.child.wait().await;
    }

    /// The worker's connection broke or it exited: how it ended (waiting up to `grace`,
    /// then killing it), which limit the watchdog killed it for if it did, and the record
    /// it was on. The console's last lines are passed on before returning.
    pub async fn death(&mut self, grace: Duration) -> Death {
        let reason = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => describe_exit(status),
            Ok(Err(e)) => format!("cannot be waited for: {e}"),
            Err(_) => {
                let _ = self.child.kill().await;
                "closed its connection to the engine and was killed".to_owned()
            }
        };
        let hit = self.watchdog.as_ref().and_then(Watchdog::hit);
        let at = hit
            .as_ref()
            .and_then(|h| h.position())
            .unwrap_or_else(|| self.page.read());
        let (last_record, seqno) = self.last_record(at);
        self.drain_consoles().await;
        let broken = match hit {
            Some(hit) => Broken::Limit {
                limit: hit.limit(),
                detail: hit.detail(),
                last_record,
            },
            None => Broken::Died {
                reason,
                last_record,
            },
        };
        Death { broken, seqno }
    }

    /// The record at `(batch, 1-based index)` rendered for a message, and its seqno; or
    /// the range of seqnos in flight when the worker was between records.
    fn last_record(&self, (batch, index): (u64, u64)) -> (Option<String>, Option<u64>) {
        let Ok(batches) = self.batches.lock() else {
            return (None, None);
        };
        if let Some(f) = batches.iter().find(|f| f.id == batch) {
            if let Some(item) = index.checked_sub(1).and_then(|i| f.items.get(i as usize)) {
                let shown = format!(
                    "seqno {} on slot {}: {}",
                    item.seqno,
                    item.slot,
                    short(&item.value)
                );
                return (Some(shown), Some(item.seqno));
            }
        }
        let range = (|| {
            let first = batches.front()?.items.first()?;
            let last = batches.back()?.items.last()?;
            Some(format!(
                "one of seqno {}..={} (between records)",
                first.seqno, last.seqno
            ))
        })();
        (range, None)
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
        // kill_on_drop also does this; the group takes the programs the model started,
        // even after a clean exit.
        let _ = self.child.start_kill();
        crate::lifeline::kill_group(self.pid);
    }
}

/// A new close-on-exec copy of `fd` numbered 10 or above, so that placing it below 10 in
/// the child can never clobber another.
fn high_dup(fd: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    // Safety: F_DUPFD_CLOEXEC duplicates an fd we hold; the result is checked.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Safety: `new` is a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// This process's id, for the child to check its parent against.
/// Ties a program the engine starts that is not a worker (`spark-submit`, say) to the engine
/// as a worker is tied: it leads a process group of its own (killed whole by
/// [`crate::kill_group`]) and gets SIGHUP when the thread that spawns it exits, so that thread must
/// wait for it. Such a program has no worker side: SIGHUP's default action (or its own
/// handler, a JVM's shutdown) ends it.
pub fn tie_to_engine(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let engine_pid = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    // Safety: the closure runs in the forked child before exec and only calls prctl and
    // getppid, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || crate::lifeline::child_setup(engine_pid));
    }
}

fn engine_pid() -> libc::pid_t {
    libc::pid_t::try_from(std::process::id()).unwrap_or(0)
}

pub(crate) fn spawn_error(command: &WorkerCommand, e: std::io::Error) -> Error {
    Error::io(
        format!("cannot start the worker {}", command.program.display()),
        e,
    )
}

fn short(value: &Value) -> String {
    let mut s = value.to_string();
    if s.len() > RECORD_SHOWN {
        let mut cut = RECORD_SHOWN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// `exited with status 3`, `killed by signal 11 (SIGSEGV)`.
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    if let Some(sig) = status.signal() {
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        return match signal_name(sig) {
            Some(name) => format!("killed by signal {sig} ({name}{core})"),
            None => format!("killed by signal {sig}{core}"),
        };
    }
    format!("ended ({status})")
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}
