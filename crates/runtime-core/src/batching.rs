//! The one batching bound of the engine: a job's pipeline, a deployed model's requests and
//! a stream descriptor's `Batching` all say it with this type.

use std::time::Duration;

/// How records are grouped before they go to a model's worker: at most `size` records, and,
/// where records arrive one by one (REST requests), at most `max_wait` spent waiting for
/// more once the first is there (`None`: take what is waiting, never wait).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Records per batch, at most.
    pub size: usize,
    /// How long a batch short of `size` waits for more, once its first record is there.
    pub max_wait: Option<Duration>,
}

impl Batching {
    /// Batches of at most `size` records (at least one), no waiting.
    pub fn new(size: usize) -> Batching {
        Batching {
            size: size.max(1),
            max_wait: None,
        }
    }

    /// The same bound, waiting up to `wait` for a batch to fill (zero: no waiting).
    pub fn waiting(self, wait: Duration) -> Batching {
        Batching {
            max_wait: (!wait.is_zero()).then_some(wait),
            ..self
        }
    }
}

impl Default for Batching {
    fn default() -> Self {
        Batching::new(1000)
    }
}
