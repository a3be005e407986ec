//! Copies records from one endpoint to another through a registry the Redis Streams
//! endpoint was added to, settling each record once its copy is flushed:
//!
//! ```text
//! redis-streams FROM TO [COUNT]
//! redis-streams '{"Transport": {"Type": "x-redis-streams", "Url": "redis://127.0.0.1:6379",
//!                 "Stream": "in"}, "Encoding": "json"}' out.jsonl 100
//! ```
//!
//! FROM and TO are stream descriptors (JSON or a short form). A Redis stream never ends:
//! COUNT (default 10) records are copied, then the source is closed, acknowledging them.

use std::time::Duration;

use endpoints::{Registry, StreamDescriptor};
use runtime_core::{Fate, OutRecord, ReadItem};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(from), Some(to)) = (args.first(), args.get(1)) else {
        eprintln!("usage: redis-streams FROM TO [COUNT]");
        std::process::exit(2);
    };
    let count: usize = match args.get(2).map(|c| c.parse()) {
        None => 10,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("COUNT: {e}: a number of records, please");
            std::process::exit(2);
        }
    };
    match copy(from, to, count).await {
        Ok(n) => eprintln!("copied {n} record(s)"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

async fn copy(from: &str, to: &str, count: usize) -> runtime_core::Result<usize> {
    // The one line that adds the endpoint: everything else is the engine's own API.
    let registry = redis_streams::register(Registry::default());
    let (from, to) = (StreamDescriptor::parse(from)?, StreamDescriptor::parse(to)?);
    let mut source = registry.open_source(&from, &from.codec_config())?;
    let mut sink = registry.open_sink(&to, &to.codec_config())?;
    let mut copied = 0;
    while copied < count {
        let Some(items) = source.read_batch(count - copied).await? else {
            break;
        };
        let mut receipts = Vec::new();
        let mut batch = Vec::new();
        for item in items {
            match item {
                ReadItem::Record(r) => {
                    copied += 1;
                    batch.push(OutRecord {
                        value: r.value,
                        position: r.position,
                        meta: r.receipt.meta().cloned(),
                    });
                    receipts.push(r.receipt);
                }
                ReadItem::Rejected(r) => {
                    eprintln!("{r}");
                    r.receipt.settle(Fate::Rejected);
                }
            }
        }
        let numbers: Vec<u64> = batch.iter().map(|r| r.position.record).collect();
        let refused = sink.write_batch(batch).await?;
        sink.flush().await?;
        // Durable at the sink (or refused by it): the source may acknowledge them.
        for (receipt, n) in receipts.into_iter().zip(numbers) {
            match refused.iter().find(|r| r.position.record == n) {
                Some(r) => {
                    eprintln!("{r}");
                    receipt.settle(Fate::Rejected);
                }
                None => receipt.settle(Fate::Delivered),
            }
        }
    }
    sink.finish().await?;
    source.close(Duration::from_secs(5)).await?;
    Ok(copied)
}
