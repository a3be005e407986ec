//! End-to-end acknowledgements: a source learns what became of each record it read.
//!
//! A source that must know (a Kafka consumer committing offsets, a Redis stream sending
//! `XACK`) gives each record a [`Receipt`] from its [`Acks`] ledger. The receipt travels with
//! the record through the model: the pipeline [splits](Receipt::split) it among the outputs
//! the model made of the record, and each output's share is settled once its sink says the
//! output is durable ([`RecordSink::flush`](crate::RecordSink::flush)). When the last share is
//! settled the record's [`Fate`] is the worst of them, and the ledger learns it. A share dropped
//! without being settled counts as [`Fate::Failed`]: nothing is acknowledged by accident.
//!
//! The ledger hands fates back in the order the records were read ([`Acks::settled`]), so a
//! source commits an offset only once everything before it is settled, and it bounds the
//! records in flight ([`Acks::track`] waits while the ledger is full): a slow sink slows the
//! source.
//!
//! A source that needs none of this (a file) gives [`Receipt::none`], which costs nothing:
//! no allocation, and settling it does nothing.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::record::MessageMeta;

/// What became of a record, the worst of what became of its outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fate {
    /// Every output is durably accepted by its sink, or the model made none.
    Delivered,
    /// Dealt with for good, not delivered: the record or one of its outputs was refused (its
    /// encoding, its schema, its size) or the model failed on it; it is counted, logged, and
    /// written to the error output when one is attached. Reading it again would end the same
    /// way: a source moves past it (a poison record never blocks its partition).
    Rejected,
    /// Not dealt with: a sink failed to take an output (or the error output failed to take
    /// its error record), the job stopped before it was done, or a receipt was dropped
    /// unsettled. Reading it again may succeed: a source does not acknowledge it.
    Failed,
}

impl Fate {
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Delivered => "delivered",
            Fate::Rejected => "rejected",
            Fate::Failed => "failed",
        }
    }

    fn from_u8(n: u8) -> Fate {
        match n {
            0 => Fate::Delivered,
            1 => Fate::Rejected,
            _ => Fate::Failed,
        }
    }
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record's claim on its ledger entry; the entry is settled when the last share drops.
struct Entry {
    ledger: Arc<Ledger>,
    seq: u64,
    worst: AtomicU8,
    meta: Option<Arc<MessageMeta>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let fate = Fate::from_u8(self.worst.load(Ordering::Acquire));
        self.ledger.settle(self.seq, fate);
    }
}

/// A share of a record's acknowledgement. Settle it with [`Receipt::settle`]; dropping it
/// unsettled counts as [`Fate::Failed`]. Receipts compare equal to each other: they are not
/// part of a record's data.
#[derive(Default)]
pub struct Receipt {
    entry: Option<Arc<Entry>>,
}

impl Receipt {
    /// The receipt of a record whose source needs no acknowledgement.
    pub const fn none() -> Receipt {
        Receipt { entry: None }
    }

    /// Whether a source is waiting on this receipt.
    pub fn is_tracked(&self) -> bool {
        self.entry.is_some()
    }

    /// What the source's message carried beside the record (a Kafka key and headers), for
    /// the outputs and error records made of the record: every share has it.
    pub fn meta(&self) -> Option<&Arc<MessageMeta>> {
        self.entry.as_ref().and_then(|e| e.meta.as_ref())
    }

    /// Settles this share with `fate`. The record's fate is the worst of its shares.
    pub fn settle(mut self, fate: Fate) {
        if let Some(entry) = self.entry.take() {
            entry.worst.fetch_max(fate as u8, Ordering::AcqRel);
        }
    }

    /// Splits the receipt into `n` shares (one per output the model made of the record);
    /// `n == 0` settles it as delivered at once.
    pub fn split(mut self, n: usize) -> Vec<Receipt> {
        match (self.entry.take(), n) {
            (None, _) => (0..n).map(|_| Receipt::none()).collect(),
            (Some(_), 0) => Vec::new(),
            (Some(entry), _) => {
                let mut shares: Vec<Receipt> = (1..n)
                    .map(|_| Receipt {
                        entry: Some(entry.clone()),
                    })
                    .collect();
                shares.push(Receipt { entry: Some(entry) });
                shares
            }
        }
    }
}

impl Clone for Receipt {
    /// Another share of the same record, to be settled on its own.
    fn clone(&self) -> Receipt {
        Receipt {
            entry: self.entry.clone(),
        }
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            entry.worst.fetch_max(Fate::Failed as u8, Ordering::AcqRel);
        }
    }
}

impl PartialEq for Receipt {
    fn eq(&self, _: &Receipt) -> bool {
        true
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            None => f.write_str("Receipt(none)"),
            Some(e) => write!(f, "Receipt(#{})", e.seq),
        }
    }
}

/// The shared half of [`Acks`]: fates land here as receipts settle.
struct Ledger {
    state: Mutex<LedgerState>,
    settled: Notify,
}

#[derive(Default)]
struct LedgerState {
    /// Sequence number of `fates[0]`.
    front: u64,
    /// One slot per tracked record not yet handed back, in read order.
    fates: VecDeque<Option<Fate>>,
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        // A panic while holding the lock leaves only fates behind it: still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn settle(&self, seq: u64, fate: Fate) {
        let mut st = self.lock();
        let Some(i) = seq.checked_sub(st.front) else {
            return;
        };
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| st.fates.get_mut(i)) {
            *slot = Some(fate);
        }
        let front_settled = i == 0;
        drop(st);
        if front_settled {
            self.settled.notify_one();
        }
    }
}

/// A source's ledger of records in flight, per partition or stream: hands out receipts in read
/// order and gives their fates back in the same order. `T` is what the source needs to act
/// on a fate (an offset, a message id).
pub struct Acks<T> {
    ledger: Arc<Ledger>,
    tokens: VecDeque<T>,
    next: u64,
    max_in_flight: usize,
}

impl<T> fmt::Debug for Acks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acks")
            .field("in_flight", &self.tokens.len())
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

impl<T> Acks<T> {
    /// A ledger that lets at most `max_in_flight` records (at least one) be unsettled.
    pub fn new(max_in_flight: usize) -> Acks<T> {
        Acks {
            ledger: Arc::new(Ledger {
                state: Mutex::new(LedgerState::default()),
                settled: Notify::new(),
            }),
            tokens: VecDeque::new(),
            next: 0,
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Records read and not yet handed back by [`Acks::settled`].
    pub fn in_flight(&self) -> usize {
        self.tokens.len()
    }

    /// Whether another record may be tracked without waiting.
    pub fn has_room(&self) -> bool {
        self.tokens.len() < self.max_in_flight
    }

    /// A receipt for the next record read, whatever the ledger holds. Sources that bound
    /// what they read ahead call [`Acks::track`] instead.
    pub fn receipt(&mut self, token: T) -> Receipt {
        self.receipt_with(token, None)
    }

    /// A receipt, as [`Acks::receipt`], that carries `meta` (the message's key and headers)
    /// to the outputs made of the record.
    pub fn receipt_with(&mut self, token: T, meta: Option<Arc<MessageMeta>>) -> Receipt {
        let seq = self.next;
        self.next += 1;
        self.ledger.lock().fates.push_back(None);
        self.tokens.push_back(token);
        Receipt {
            entry: Some(Arc::new(Entry {
                ledger: self.ledger.clone(),
                seq,
                worst: AtomicU8::new(Fate::Delivered as u8),
                meta,
            })),
        }
    }

    /// A receipt for the next record read, after waiting for room in the ledger; whatever
    /// settled meanwhile (in order) is pushed to `done`.
    pub async fn track(&mut self, token: T, done: &mut Vec<(T, Fate)>) -> Receipt {
        self.wait_for_room(done).await;
        self.receipt(token)
    }

    /// Waits until another record may be tracked (no busy loop: it sleeps until a receipt
    /// settles); whatever settled meanwhile (in order) is pushed to `done`.
    pub async fn wait_for_room(&mut self, done: &mut Vec<(T, Fate)>) {
        while !self.has_room() {
            let before = done.len();
            self.settled_into(done);
            if done.len() == before {
                self.ledger.settled.notified().await;
            }
        }
    }

    /// The fates settled in an unbroken run from the oldest record in flight, in read order.
    /// A record settled after one still pending waits for it.
    pub fn settled(&mut self) -> Vec<(T, Fate)> {
        let mut done = Vec::new();
        self.settled_into(&mut done);
        done
    }

    fn settled_into(&mut self, done: &mut Vec<(T, Fate)>) {
        let mut st = self.ledger.lock();
        while let Some(Some(fate)) = st.fates.front().copied() {
            st.fates.pop_front();
            st.front += 1;
            if let Some(token) = self.tokens.pop_front() {
                done.push((token, fate));
            }
        }
    }

    /// Waits up to `grace` for every record in flight to settle (a rebalance, a detach, a
    /// shutdown) and returns the fates settled in order; records still pending after
    /// `grace` stay in the ledger.
    pub async fn drain(&mut self, grace: Duration) -> Vec<(T, Fate)> {
        let mut done = Vec::new();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            self.settled_into(&mut done);
            if self.tokens.is_empty() {
                return done;
            }
            let notified = self.ledger.settled.notified();
            // Settled between the look above and now: look again before sleeping.
            if self.front_settled() {
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.settled_into(&mut done);
                return done;
            }
        }
    }

    fn front_settled(&self) -> bool {
        matches!(self.ledger.lock().fates.front(), Some(Some(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_dropped_unsettled_counts_as_failed() {
        let mut acks = Acks::new(10);
        let r = acks.receipt("a");
        drop(r);
        assert_eq!(acks.settled(), vec![("a", Fate::Failed)]);
    }

    #[test]
    fn a_record_with_no_output_is_delivered_when_split_into_none() {
        let mut acks = Acks::new(10);
        acks.receipt(1).split(0);
        assert_eq!(acks.settled(), vec![(1, Fate::Delivered)]);
    }

    #[test]
    fn the_worst_share_decides_and_only_once_all_are_settled() {
        let mut acks = Acks::new(10);
        let mut shares = acks.receipt(7).split(3);
        let last = shares.pop();
        let (b, a) = (shares.pop().expect("share"), shares.pop().expect("share"));
        b.settle(Fate::Rejected);
        a.settle(Fate::Delivered);
        assert!(acks.settled().is_empty(), "one share is still out");
        last.expect("share").settle(Fate::Delivered);
        assert_eq!(acks.settled(), vec![(7, Fate::Rejected)]);
    }

    #[test]
    fn fates_come_back_in_read_order_never_past_a_pending_record() {
        let mut acks = Acks::new(10);
        let a = acks.receipt("a");
        let b = acks.receipt("b");
        let c = acks.receipt("c");
        c.settle(Fate::Delivered);
        b.settle(Fate::Failed);
        assert!(
            acks.settled().is_empty(),
            "a is pending, so nothing after it"
        );
        a.settle(Fate::Delivered);
        assert_eq!(
            acks.settled(),
            vec![
                ("a", Fate::Delivered),
                ("b", Fate::Failed),
                ("c", Fate::Delivered)
            ]
        );
        assert_eq!(acks.in_flight(), 0);
    }

    #[test]
    fn a_none_receipt_is_free_and_settling_it_does_nothing() {
        let r = Receipt::none();
        assert!(!r.is_tracked());
        assert_eq!(r.split(3).len(), 3);
        Receipt::none().settle(Fate::Failed);
    }

    #[tokio::test]
    async fn track_waits_for_room_and_drain_waits_for_the_rest() {
        let mut acks = Acks::new(2);
        let mut done = Vec::new();
        let a = acks.track(0u64, &mut done).await;
        let b = acks.track(1, &mut done).await;
        assert!(!acks.has_room());
        let settle_later = tokio::spawn(async move {
            tokio::task::yield_now().await;
            a.settle(Fate::Delivered);
            b
        });
        let c = acks.track(2, &mut done).await;
        assert_eq!(done, vec![(0, Fate::Delivered)]);
        let b = settle_later.await.expect("task");
        let drained = tokio::spawn(async move {
            let rest = acks.drain(Duration::from_secs(30)).await;
            (acks, rest)
        });
        b.settle(Fate::Delivered);
        c.settle(Fate::Rejected);
        let (acks, rest) = drained.await.expect("task");
        assert_eq!(rest, vec![(1, Fate::Delivered), (2, Fate::Rejected)]);
        assert_eq!(acks.in_flight(), 0);
    }

    #[tokio::test]
    async fn drain_gives_up_after_its_grace_and_keeps_the_pending() {
        let mut acks = Acks::new(4);
        let a = acks.receipt("a");
        let rest = acks.drain(Duration::from_millis(20)).await;
        assert!(rest.is_empty());
        assert_eq!(acks.in_flight(), 1);
        a.settle(Fate::Delivered);
        assert_eq!(acks.settled(), vec![("a", Fate::Delivered)]);
    }
}
