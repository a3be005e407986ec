//! Scoring with several workers and surviving the loss of one.
//!
//! Batches are dealt to whichever session is idle; their outcomes come back in any order and
//! are put back in input order before anything is written, so the output keeps the input's
//! order whatever the number of workers.
//!
//! A record that breaks a worker limit (time, memory) fails alone: the worker is replaced by
//! a fresh one (loaded and initialized again) and the rest of its batch is scored there. A
//! worker that dies on its own is treated the same way while the job's restart budget lasts
//! (the job's [`RestartPolicy`](runtime_core::RestartPolicy), the one deployments use too;
//! `max_worker_restarts`, 0 by default: the reference runtime fails the job). The records of
//! the batch that came before the failed one are scored again by the new worker, since their
//! outcomes died with the old one: a model with side effects sees them twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use runtime_core::{
    Error as CoreError, JobLog, LogSource, ModelSpec, RecordFailure, Restarts, Runner, ScoreItem,
    ScoreOutcome, Session, SessionConfig, Slot,
};

/// What replacing a failed worker needs.
pub(crate) struct Recovery<'a> {
    pub runner: &'a dyn Runner,
    pub model: &'a ModelSpec,
    pub config: SessionConfig,
    pub restarts: Restarts,
    pub log: Arc<dyn JobLog>,
    /// The job's control, told of each batch scored.
    pub control: std::sync::Arc<crate::JobControl>,
    /// Whether a failed batch can be retried at all (its items are copied and kept for it,
    /// which costs a copy per record: only when limits or restarts can need it).
    pub enabled: bool,
}

/// Scores `items`; with recovery enabled, a record that took its worker down is failed and
/// the others are scored by a replacement worker.
pub(crate) async fn score_batch(
    session: &mut Box<dyn Session>,
    items: Vec<ScoreItem>,
    rc: &Recovery<'_>,
) -> Result<Vec<ScoreOutcome>, CoreError> {
    if !rc.enabled {
        return session.score(items).await;
    }
    let mut outcomes: Vec<Option<ScoreOutcome>> = vec![None; items.len()];
    let mut todo: Vec<usize> = (0..items.len()).collect();
    while !todo.is_empty() {
        let batch = todo.iter().map(|&i| items[i].clone()).collect();
        match session.score(batch).await {
            Ok(outs) => {
                for (&i, o) in todo.iter().zip(outs) {
                    outcomes[i] = Some(o);
                }
                break;
            }
            Err(e) => {
                let failed = session
                    .failed_seqno()
                    .and_then(|seq| todo.iter().position(|&i| items[i].seqno == seq));
                let Some(at) = failed else { return Err(e) };
                if !rc.restarts.allow(&e) {
                    return Err(e);
                }
                let i = todo.remove(at);
                rc.log.warn(
                    LogSource::Engine,
                    format!(
                        "record {} failed its worker ({e}); starting a new worker",
                        items[i].seqno
                    ),
                );
                outcomes[i] = Some(Err(RecordFailure {
                    message: e.to_string(),
                    traceback: String::new(),
                }));
                *session = rc.runner.start(rc.model, rc.config.clone()).await?;
            }
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Err(RecordFailure {
                    message: "the record was not scored".to_owned(),
                    traceback: String::new(),
                })
            })
        })
        .collect())
}

/// One scored batch, ready to be written in its turn.
pub(crate) struct Scored {
    pub slot: Slot,
    pub first_seqno: u64,
    pub outcomes: Vec<ScoreOutcome>,
}

/// A batch being scored: its session comes back with the outcomes.
struct Finished {
    session: Box<dyn Session>,
    idx: u64,
    slot: Slot,
    first_seqno: u64,
    result: Result<Vec<ScoreOutcome>, CoreError>,
}

/// Sessions dealt batches in turn; outcomes handed back in submission order.
pub(crate) struct Pool<'a> {
    idle: Vec<Box<dyn Session>>,
    running: FuturesUnordered<futures_util::future::BoxFuture<'a, Finished>>,
    next_idx: u64,
    emit_idx: u64,
    done: BTreeMap<u64, Scored>,
    failed_at: Option<u64>,
    rc: &'a Recovery<'a>,
}

impl<'a> Pool<'a> {
    pub(crate) fn new(sessions: Vec<Box<dyn Session>>, rc: &'a Recovery<'a>) -> Self {
        Pool {
            idle: sessions,
            running: FuturesUnordered::new(),
            next_idx: 0,
            emit_idx: 0,
            done: BTreeMap::new(),
            failed_at: None,
            rc,
        }
    }

    pub(crate) fn has_idle(&self) -> bool {
        !self.idle.is_empty()
    }

    pub(crate) fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// Hands a batch to an idle session. Call only when [`Pool::has_idle`].
    pub(crate) fn submit(&mut self, slot: Slot, items: Vec<ScoreItem>) {
        let Some(mut session) = self.idle.pop() else {
            return;
        };
        let idx = self.next_idx;
        self.next_idx += 1;
        let first_seqno = items.first().map_or(0, |i| i.seqno);
        let rc = self.rc;
        self.running.push(Box::pin(async move {
            let records = items.len();
            let started = std::time::Instant::now();
            let result = score_batch(&mut session, items, rc).await;
            rc.control.batch_scored(records, started.elapsed());
            Finished {
                session,
                idx,
                slot,
                first_seqno,
                result,
            }
        }));
    }

    /// Waits for one batch to finish. An error is returned once, for the first batch that
    /// failed; batches after it are not handed back.
    pub(crate) async fn complete_one(&mut self) -> Result<(), CoreError> {
        let Some(Finished {
            session,
            idx,
            slot,
            first_seqno,
            result,
        }) = self.running.next().await
        else {
            return Ok(());
        };
        match result {
            Ok(outcomes) => {
                self.idle.push(session);
                self.done.insert(
                    idx,
                    Scored {
                        slot,
                        first_seqno,
                        outcomes,
                    },
                );
                Ok(())
            }
            Err(e) => {
                // The session is broken: drop it (its worker is killed) and stop here.
                drop(session);
                self.failed_at = Some(self.failed_at.map_or(idx, |f| f.min(idx)));
                Err(e)
            }
        }
    }

    /// The next batches in submission order that are ready.
    pub(crate) fn ready(&mut self) -> Vec<Scored> {
        let mut out = Vec::new();
        while self.failed_at.is_none_or(|f| self.emit_idx < f) {
            match self.done.remove(&self.emit_idx) {
                Some(s) => {
                    out.push(s);
                    self.emit_idx += 1;
                }
                None => break,
            }
        }
        out
    }

    /// Waits for every running batch and gives back the sessions still usable.
    pub(crate) async fn into_sessions(mut self) -> Vec<Box<dyn Session>> {
        while let Some(f) = self.running.next().await {
            if f.result.is_ok() {
                self.idle.push(f.session);
            }
        }
        self.idle
    }
}
