//! The kit fails an endpoint that breaks the contract, naming the check (a sink whose flush
//! does not make its records durable and which swallows a broken destination; a source that
//! commits what it read before it was delivered), and passes the same endpoint done right (a
//! queue in memory that commits in ledger order, as a Kafka consumer does).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use codecs::{CodecConfig, Encoding};
use endpoint_kit::{
    check_sink, check_source, Check, OpenOptions, SinkFixture, SinkTraits, SourceFixture,
    SourceTraits,
};
use runtime_core::{
    Acks, Error, Fate, OutRecord, Position, ReadItem, Record, RecordSink, RecordSource, Rejection,
    RejectionKind, Result, SinkReport, Value,
};

/// Where a [`LazySink`] publishes: what a reader sees.
type Shelf = Arc<Mutex<Vec<Value>>>;

/// Buffers every record and publishes them only when finished; `flush` says Ok at once. When
/// `swallows` is set it also says Ok to everything while publishing nothing (a broken
/// destination reported as fine).
struct LazySink {
    buffer: Vec<Value>,
    shelf: Shelf,
    swallows: bool,
}

#[async_trait]
impl RecordSink for LazySink {
    async fn write_batch(&mut self, batch: Vec<OutRecord>) -> Result<Vec<Rejection>> {
        self.buffer.extend(batch.into_iter().map(|r| r.value));
        Ok(Vec::new())
    }

    async fn finish(&mut self) -> Result<SinkReport> {
        if !self.swallows {
            self.shelf.lock().unwrap().append(&mut self.buffer);
        }
        Ok(SinkReport::default())
    }

    fn describe(&self) -> String {
        "lazy".into()
    }
}

struct Lazy;

#[async_trait]
impl SinkFixture for Lazy {
    type Destination = Shelf;

    fn traits(&self) -> SinkTraits {
        SinkTraits {
            keeps: true,
            breaks: true,
        }
    }

    async fn create(&self) -> Result<Shelf> {
        Ok(Shelf::default())
    }

    async fn open(&self, shelf: &Shelf) -> Result<Box<dyn RecordSink>> {
        Ok(Box::new(LazySink {
            buffer: Vec::new(),
            shelf: shelf.clone(),
            swallows: false,
        }))
    }

    async fn read_back(&self, shelf: &Shelf) -> Result<Vec<Value>> {
        Ok(shelf
            .lock()
            .map_err(|_| Error::endpoint("lazy", "poisoned"))?
            .clone())
    }

    async fn open_broken(&self) -> Result<Box<dyn RecordSink>> {
        Ok(Box::new(LazySink {
            buffer: Vec::new(),
            shelf: Shelf::default(),
            swallows: true,
        }))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_whose_flush_is_not_durable_fails_by_name() {
    let err = check_sink(&Lazy).await.unwrap_err();
    let endpoint_kit::Error::Failed { failures } = &err else {
        panic!("{err}");
    };
    let failed: Vec<Check> = failures.iter().map(|f| f.check).collect();
    assert_eq!(
        failed,
        [Check::AcksOnlyAfterFlush, Check::NoAckForFailedWrite],
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(
            "check 'acks only after the sink flush' failed: right after flush returned Ok"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "check 'no ack for a failed sink write' failed: lazy: writing to a broken destination"
        ),
        "{text}"
    );
}

/// Messages in memory and the offset committed, as a Kafka partition keeps them for a group.
#[derive(Default)]
struct Queue {
    messages: Vec<Vec<u8>>,
    committed: Mutex<usize>,
}

/// Reads a [`Queue`] from its committed offset, never ending. Done right it commits, in
/// ledger order, up to the first record not delivered or rejected; `eager` commits whatever
/// it read at once.
struct QueueSource {
    queue: Arc<Queue>,
    next: usize,
    /// Items read by this source, numbering their positions.
    read: u64,
    acks: Acks<usize>,
    stalled: bool,
    eager: bool,
    codec: CodecConfig,
}

impl QueueSource {
    fn commit(&mut self, fates: Vec<(usize, Fate)>) {
        let mut committed = self.queue.committed.lock().unwrap();
        for (offset, fate) in fates {
            self.stalled |= fate == Fate::Failed;
            if !self.stalled && !self.eager {
                *committed = offset + 1;
            }
        }
    }
}

#[async_trait]
impl RecordSource for QueueSource {
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>> {
        let settled = self.acks.settled();
        self.commit(settled);
        let mut items = Vec::new();
        while items.len() < max && self.acks.has_room() && self.next < self.queue.messages.len() {
            let offset = self.next;
            self.next += 1;
            let bytes = &self.queue.messages[offset];
            self.read += 1;
            let position = Position::record(self.read);
            let receipt = self.acks.receipt(offset);
            items.push(if bytes.len() > self.codec.max_record_bytes {
                ReadItem::Rejected(Rejection {
                    receipt,
                    ..Rejection::new(RejectionKind::Size, position, "too large")
                })
            } else {
                match codecs::decode_message(&self.codec, bytes) {
                    Ok(value) => ReadItem::Record(Record {
                        receipt,
                        ..Record::new(value, position)
                    }),
                    Err(e) => ReadItem::Rejected(Rejection {
                        receipt,
                        ..Rejection::new(RejectionKind::Encoding, position, e.to_string())
                    }),
                }
            });
        }
        if self.eager {
            *self.queue.committed.lock().unwrap() = self.next;
        }
        if items.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Some(items))
    }

    async fn close(&mut self, grace: Duration) -> Result<()> {
        let rest = self.acks.drain(grace).await;
        self.commit(rest);
        Ok(())
    }

    fn describe(&self) -> String {
        "queue".into()
    }
}

struct Queues {
    eager: bool,
}

#[async_trait]
impl SourceFixture for Queues {
    type Stream = Arc<Queue>;

    fn traits(&self) -> SourceTraits {
        SourceTraits {
            ends: false,
            resumes: true,
        }
    }

    async fn create(&self, messages: &[Vec<u8>]) -> Result<Arc<Queue>> {
        Ok(Arc::new(Queue {
            messages: messages.to_vec(),
            committed: Mutex::new(0),
        }))
    }

    async fn open(
        &self,
        queue: &Arc<Queue>,
        options: &OpenOptions,
    ) -> Result<Box<dyn RecordSource>> {
        let mut codec = CodecConfig::new(Encoding::Json);
        codec.max_record_bytes = options.max_record_bytes;
        let next = *queue.committed.lock().unwrap();
        Ok(Box::new(QueueSource {
            queue: queue.clone(),
            next,
            read: 0,
            acks: Acks::new(100),
            stalled: false,
            eager: self.eager,
            codec,
        }))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_committing_in_ledger_order_passes_every_check() {
    let report = check_source(&Queues { eager: false }).await.unwrap();
    assert_eq!(report.passed, Check::ALL, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_committing_what_it_read_fails_the_checks_of_acknowledgement() {
    let err = check_source(&Queues { eager: true }).await.unwrap_err();
    let endpoint_kit::Error::Failed { failures } = &err else {
        panic!("{err}");
    };
    let failed: Vec<Check> = failures.iter().map(|f| f.check).collect();
    assert_eq!(
        failed,
        [
            Check::AcksOnlyAfterFlush,
            Check::NoAckForFailedWrite,
            Check::CancelMidStream,
            Check::RestartResumes
        ],
        "{err}"
    );
    assert!(
        err.to_string().contains(
            "check 'restart resumes where acknowledged' failed: the source gave 0 of the 18 item(s)"
        ),
        "{err}"
    );
}
