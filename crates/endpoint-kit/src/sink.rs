//! The checks of a sink endpoint.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jobs::{JobControl, JobStatus};
use runtime_core::{Fate, OutRecord, Position, RecordSink, Value};

use crate::data::{self, records, same};
use crate::fixture::{SinkFixture, SinkTraits};
use crate::pipeline::{self, locked, Ask, Echo, LedgerSource, Probe};
use crate::{Check, Checks};

/// Records per batch written by the checks.
const BATCH: usize = 8;

pub(crate) async fn run<F: SinkFixture>(fixture: &F, checks: &mut Checks) {
    let t = fixture.traits();
    const KEEPS: &str = "the sink keeps nothing to read back";
    let keeps = (!t.keeps).then_some(KEEPS);
    checks
        .run(Check::RecordsInOrder, keeps, records_in_order(fixture))
        .await;
    checks
        .run(
            Check::AcksOnlyAfterFlush,
            None,
            acks_only_after_flush(fixture, t),
        )
        .await;
    checks
        .run(
            Check::NoAckForFailedWrite,
            (!t.breaks).then_some("the sink's destination cannot break"),
            no_ack_for_failed_write(fixture),
        )
        .await;
    checks
        .run(Check::EmptyStream, None, empty_stream(fixture, t))
        .await;
    checks
        .run(Check::LargeRecord, keeps, large_record(fixture))
        .await;
    checks.skip(Check::UndecodableBytes, "a sink decodes nothing");
    checks
        .run(Check::CancelMidStream, None, cancel_mid_stream(fixture, t))
        .await;
    checks.skip(Check::RestartResumes, "a sink reads nothing");
    checks
        .run(Check::ConcurrentStreams, keeps, concurrent_streams(fixture))
        .await;
}

async fn destination<F: SinkFixture>(
    fixture: &F,
) -> Result<(F::Destination, Box<dyn RecordSink>), String> {
    let dest = fixture
        .create()
        .await
        .map_err(|e| format!("the fixture could not create a destination: {e}"))?;
    let sink = fixture
        .open(&dest)
        .await
        .map_err(|e| format!("opening the sink failed: {e}"))?;
    Ok((dest, sink))
}

async fn read_back<F: SinkFixture>(
    fixture: &F,
    dest: &F::Destination,
) -> Result<Vec<Value>, String> {
    fixture
        .read_back(dest)
        .await
        .map_err(|e| format!("reading back what the sink wrote failed: {e}"))
}

/// What the kit's source learned.
struct Learned {
    outcome: jobs::JobOutcome,
    fates: Vec<(u64, Fate)>,
    violations: Vec<String>,
}

/// Runs the echo model from the kit's source holding `values` into `sink`.
async fn pipe(
    values: Vec<Value>,
    sink: Box<dyn RecordSink>,
    runner: &Echo,
    control: Arc<JobControl>,
) -> Learned {
    let source = LedgerSource::new(values);
    let (fates, violations) = (source.fates.clone(), source.violations.clone());
    let job = pipeline::job(Box::new(source), sink, BATCH, control);
    let outcome = pipeline::drive(job, runner, None).await;
    let fates = locked(&fates).clone();
    let violations = locked(&violations).clone();
    Learned {
        outcome,
        fates,
        violations,
    }
}

/// The job completed and every record was delivered, in order.
fn all_delivered(learned: &Learned, n: usize) -> Result<(), String> {
    if learned.outcome.status != JobStatus::Complete {
        return Err(format!(
            "the job ended {}: {}",
            learned.outcome.status.as_str(),
            learned.outcome.error.as_deref().unwrap_or("")
        ));
    }
    if let Some(v) = learned.violations.first() {
        return Err(v.clone());
    }
    let want: Vec<(u64, Fate)> = (1..=n as u64).map(|i| (i, Fate::Delivered)).collect();
    if learned.fates != want {
        return Err(format!(
            "the source learned {} fate(s), expected each of {n} records delivered in order; \
             the first that differs: {:?}",
            learned.fates.len(),
            learned
                .fates
                .iter()
                .zip(&want)
                .find(|(a, b)| a != b)
                .map(|(a, _)| a)
        ));
    }
    Ok(())
}

async fn records_in_order<F: SinkFixture>(fixture: &F) -> Result<(), String> {
    let want = records("a", 250);
    let (dest, sink) = destination(fixture).await?;
    let learned = pipe(want.clone(), sink, &Echo::default(), Arc::default()).await;
    all_delivered(&learned, want.len())?;
    same(
        "read back, the sink holds",
        &read_back(fixture, &dest).await?,
        &want,
    )
}

async fn acks_only_after_flush<F: SinkFixture>(fixture: &F, t: SinkTraits) -> Result<(), String> {
    let want = records("a", 100);
    let (dest, sink) = destination(fixture).await?;
    let durable = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let flushes = Arc::new(AtomicUsize::new(0));
    let (ask_tx, mut ask_rx) = tokio::sync::mpsc::channel::<Ask>(1);
    let probe = Probe {
        inner: sink,
        written: Vec::new(),
        durable: durable.clone(),
        flushes: flushes.clone(),
        ask: t.keeps.then_some(ask_tx),
        violations: violations.clone(),
    };
    let mut source = LedgerSource::new(want.clone());
    source.durable = Some(durable);
    source.violations = violations.clone();
    let fates = source.fates.clone();
    let job = pipeline::job(Box::new(source), Box::new(probe), BATCH, Arc::default());
    // Each time the sink's flush returns Ok, everything written so far must read back.
    let answer = async {
        while let Some((written, reply)) = ask_rx.recv().await {
            let verdict = match fixture.read_back(&dest).await {
                Ok(held) => same(
                    "right after flush returned Ok, the destination holds",
                    &held,
                    &written,
                ),
                Err(e) => Err(format!("reading back right after a flush failed: {e}")),
            };
            let _ = reply.send(verdict);
        }
    };
    let echo = Echo::default();
    let (outcome, ()) = tokio::join!(pipeline::drive(job, &echo, None), answer);
    let learned = Learned {
        outcome,
        fates: locked(&fates).clone(),
        violations: locked(&violations).clone(),
    };
    all_delivered(&learned, want.len())?;
    if flushes.load(Ordering::SeqCst) == 0 {
        return Err(
            "the pipeline settled receipts without the sink's flush ever returning Ok".into(),
        );
    }
    Ok(())
}

async fn no_ack_for_failed_write<F: SinkFixture>(fixture: &F) -> Result<(), String> {
    // Directly: writing, flushing or finishing a broken destination fails.
    let mut sink = fixture
        .open_broken()
        .await
        .map_err(|e| format!("the fixture could not open a sink on a broken destination: {e}"))?;
    let batch: Vec<OutRecord> = records("a", 3)
        .into_iter()
        .zip(1..)
        .map(|(value, n)| OutRecord {
            value,
            position: Position::record(n),
            meta: None,
        })
        .collect();
    let failed = match sink.write_batch(batch).await {
        Err(_) => true,
        Ok(_) => match sink.flush().await {
            Err(_) => true,
            Ok(()) => sink.finish().await.is_err(),
        },
    };
    if !failed {
        return Err(format!(
            "{}: writing to a broken destination, flushing and finishing all returned Ok",
            sink.describe()
        ));
    }

    // Through the pipeline: nothing is delivered, the job ends in ERROR naming the sink.
    let sink = fixture
        .open_broken()
        .await
        .map_err(|e| format!("the fixture could not open a sink on a broken destination: {e}"))?;
    let name = sink.describe();
    let n = 20;
    let learned = pipe(records("a", n), sink, &Echo::default(), Arc::default()).await;
    if learned.outcome.status != JobStatus::Error {
        return Err(format!(
            "a job writing to {name} (broken) ended {}",
            learned.outcome.status.as_str()
        ));
    }
    let error = learned.outcome.error.unwrap_or_default();
    if !error.contains(&name) {
        return Err(format!(
            "the job's error does not name the sink {name}: {error}"
        ));
    }
    if learned.fates.len() != n as usize || learned.fates.iter().any(|(_, f)| *f != Fate::Failed) {
        return Err(format!(
            "every record written to a broken destination must fail; the source learned {:?}",
            learned.fates
        ));
    }
    Ok(())
}

async fn empty_stream<F: SinkFixture>(fixture: &F, t: SinkTraits) -> Result<(), String> {
    let (dest, sink) = destination(fixture).await?;
    let learned = pipe(Vec::new(), sink, &Echo::default(), Arc::default()).await;
    all_delivered(&learned, 0)?;
    if t.keeps {
        same(
            "after an empty stream, read back",
            &read_back(fixture, &dest).await?,
            &[],
        )?;
    }
    Ok(())
}

async fn large_record<F: SinkFixture>(fixture: &F) -> Result<(), String> {
    let want = vec![
        data::record("a", 1),
        data::large_record(2),
        data::record("a", 3),
    ];
    let (dest, sink) = destination(fixture).await?;
    let learned = pipe(want.clone(), sink, &Echo::default(), Arc::default()).await;
    all_delivered(&learned, want.len())?;
    same(
        "read back, the sink holds",
        &read_back(fixture, &dest).await?,
        &want,
    )
}

async fn cancel_mid_stream<F: SinkFixture>(fixture: &F, t: SinkTraits) -> Result<(), String> {
    let want = records("a", 400);
    let (dest, sink) = destination(fixture).await?;
    let control = Arc::new(JobControl::default());
    let learned = pipe(
        want.clone(),
        sink,
        &Echo::cancelling(40, control.clone()),
        control,
    )
    .await;
    if learned.outcome.status != JobStatus::Cancelled {
        return Err(format!(
            "the job was cancelled after 40 records, yet it ended {} ({})",
            learned.outcome.status.as_str(),
            learned.outcome.error.as_deref().unwrap_or("")
        ));
    }
    let delivered = learned
        .fates
        .iter()
        .take_while(|(_, f)| *f == Fate::Delivered)
        .count();
    if let Some((n, _)) = learned.fates[delivered..]
        .iter()
        .find(|(_, f)| *f == Fate::Delivered)
    {
        return Err(format!(
            "record {n} was delivered after an earlier record failed"
        ));
    }
    if delivered == 0 || delivered >= want.len() {
        return Err(format!(
            "cancelled after 40 of {} records, {delivered} were delivered: the stop did not land \
             mid-stream",
            want.len()
        ));
    }
    if t.keeps {
        same(
            "cancelled mid-stream, the sink holds",
            &read_back(fixture, &dest).await?,
            &want[..delivered],
        )?;
    }
    Ok(())
}

async fn concurrent_streams<F: SinkFixture>(fixture: &F) -> Result<(), String> {
    let (a, b) = (records("a", 150), records("b", 150));
    let (dest_a, sink_a) = destination(fixture).await?;
    let (dest_b, sink_b) = destination(fixture).await?;
    let echo = Echo::default();
    let (la, lb) = tokio::join!(
        pipe(a.clone(), sink_a, &echo, Arc::default()),
        pipe(b.clone(), sink_b, &echo, Arc::default())
    );
    all_delivered(&la, a.len()).map_err(|e| format!("stream a: {e}"))?;
    all_delivered(&lb, b.len()).map_err(|e| format!("stream b: {e}"))?;
    same(
        "stream a, written beside stream b, holds",
        &read_back(fixture, &dest_a).await?,
        &a,
    )?;
    same(
        "stream b, written beside stream a, holds",
        &read_back(fixture, &dest_b).await?,
        &b,
    )
}
