//! The kit fails an endpoint that breaks the contract, naming the check: a sink whose flush
//! does not make its records durable, and one that swallows a broken destination.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use endpoint_kit::{check_sink, Check, SinkFixture, SinkTraits};
use runtime_core::{Error, OutRecord, RecordSink, Rejection, Result, SinkReport, Value};

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
