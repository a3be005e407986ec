//! Limits on a worker process, enforced from the engine side by a watchdog task: a record
//! that runs longer than the per-record timeout, or a resident set larger than the memory
//! limit, gets the worker killed, and the session then reports which limit and which record.
//!
//! Why a watchdog and not `setrlimit`: an address-space limit also counts the mappings of
//! shared libraries and thread stacks (numpy's BLAS threads reserve hundreds of MiB they never
//! touch), so it fails imports long before real memory runs out and says nothing clear. The
//! resident set is what a machine runs out of, and polling it lets the engine say so.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime_core::{JobLog, LogSource};
use tokio::task::JoinHandle;

use crate::progress::ProgressPage;
use crate::supervisor::Batches;

/// Limits of one worker. `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerLimits {
    /// How long one record may run before the worker is killed.
    pub record_timeout: Option<Duration>,
    /// Largest resident set the worker may reach, in bytes.
    pub memory_bytes: Option<u64>,
    /// Not a limit: a record running this long (and every such interval after) gets a
    /// warning in the job's log naming it; the record goes on.
    pub slow_record_warning: Option<Duration>,
}

impl WorkerLimits {
    /// No limit that stops a worker (a slow-record warning is not one).
    pub fn is_none(&self) -> bool {
        self.record_timeout.is_none() && self.memory_bytes.is_none()
    }

    fn watches(&self) -> bool {
        !self.is_none() || self.slow_record_warning.is_some()
    }
}

/// Which limit a worker broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LimitHit {
    Time {
        timeout: Duration,
        batch: u64,
        index: u64,
    },
    Memory {
        limit: u64,
        rss: u64,
    },
}

impl LimitHit {
    pub(crate) fn limit(&self) -> &'static str {
        match self {
            LimitHit::Time { .. } => "time",
            LimitHit::Memory { .. } => "memory",
        }
    }

    pub(crate) fn detail(&self) -> String {
        match self {
            LimitHit::Time { timeout, .. } => format!(
                "a record ran longer than the per-record timeout of {} ms; the worker was killed",
                timeout.as_millis()
            ),
            LimitHit::Memory { limit, rss } => format!(
                "its memory reached {} MiB, over the limit of {} MiB; the worker was killed",
                rss / (1 << 20),
                limit / (1 << 20)
            ),
        }
    }

    /// The record the limit was hit on, as the progress page had it.
    pub(crate) fn position(&self) -> Option<(u64, u64)> {
        match self {
            LimitHit::Time { batch, index, .. } => Some((*batch, *index)),
            LimitHit::Memory { .. } => None,
        }
    }
}

/// The watchdog of one worker; stops when dropped.
#[derive(Debug)]
pub(crate) struct Watchdog {
    hit: Arc<Mutex<Option<LimitHit>>>,
    task: JoinHandle<()>,
}

impl Watchdog {
    /// Starts watching `pid`; `None` when there is nothing to watch.
    pub(crate) fn start(
        limits: WorkerLimits,
        pid: u32,
        page: Arc<ProgressPage>,
        log: Arc<dyn JobLog>,
        batches: Batches,
    ) -> Option<Watchdog> {
        if !limits.watches() || pid == 0 {
            return None;
        }
        let hit = Arc::new(Mutex::new(None));
        let found = hit.clone();
        let tick = limits
            .record_timeout
            .map_or(Duration::from_millis(100), |t| {
                (t / 4).clamp(Duration::from_millis(5), Duration::from_millis(100))
            });
        let task = tokio::spawn(async move {
            let mut seen = (0, 0);
            let mut since = Instant::now();
            let mut warned = 0u32;
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let mut broke = None;
                let now = page.read();
                if now != seen {
                    seen = now;
                    since = Instant::now();
                    warned = 0;
                }
                if let (Some(every), true) = (limits.slow_record_warning, now.1 != 0) {
                    let running = since.elapsed();
                    if running >= every * (warned + 1) {
                        warned += 1;
                        log.warn(
                            LogSource::Engine,
                            format!(
                                "{} has been running for {} s and is not limited (a record \
                                 timeout would stop it)",
                                name_record(&batches, now),
                                running.as_secs()
                            ),
                        );
                    }
                }
                if let Some(timeout) = limits.record_timeout {
                    if now.1 != 0 && since.elapsed() > timeout {
                        broke = Some(LimitHit::Time {
                            timeout,
                            batch: now.0,
                            index: now.1,
                        });
                    }
                }
                if let (None, Some(limit)) = (&broke, limits.memory_bytes) {
                    match crate::usage::resident_bytes(pid) {
                        Some(rss) if rss > limit => broke = Some(LimitHit::Memory { limit, rss }),
                        Some(_) => {}
                        // The process is gone: nothing left to watch.
                        None => return,
                    }
                }
                if let Some(b) = broke {
                    if let Ok(mut slot) = found.lock() {
                        *slot = Some(b);
                    }
                    // Safety: kill(2) on the worker's pid. The worker is our child and is
                    // not reaped before the session reads `hit`, so the pid is still its.
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGKILL);
                    }
                    // And what the model started, which would otherwise hold on.
                    crate::lifeline::kill_group(pid);
                    return;
                }
            }
        });
        Some(Watchdog { hit, task })
    }

    pub(crate) fn hit(&self) -> Option<LimitHit> {
        self.hit.lock().ok().and_then(|h| h.clone())
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `record seqno 7 (record 3 of batch 2)`, or without the seqno when it is not known.
fn name_record(batches: &Batches, (batch, index): (u64, u64)) -> String {
    let seqno = batches.lock().ok().and_then(|b| {
        let f = b.iter().find(|f| f.id == batch)?;
        let i = usize::try_from(index.checked_sub(1)?).ok()?;
        f.items.get(i).map(|item| item.seqno)
    });
    match seqno {
        Some(seqno) => format!("record seqno {seqno} (record {index} of batch {batch})"),
        None => format!("record {index} of batch {batch}"),
    }
}
