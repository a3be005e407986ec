//! The checks of a source endpoint.

use std::sync::Arc;
use std::time::Duration;

use jobs::{JobControl, JobStatus};
use runtime_core::{Fate, ReadItem, RecordSource, RejectionKind, Value};

use crate::data::{self, records, same};
use crate::fixture::{OpenOptions, SourceFixture, SourceTraits};
use crate::pipeline::{self, Breaks, Echo, MemorySink, CLOSE_GRACE};
use crate::{Check, Checks};

/// Records per batch read by the checks (small, so every stream spans several batches).
const BATCH: usize = 8;
/// How long a check waits for a source to give records it holds before failing.
const READ_DEADLINE: Duration = Duration::from_secs(30);

pub(crate) async fn run<F: SourceFixture>(fixture: &F, checks: &mut Checks) {
    let t = fixture.traits();
    const RESUME: &str = "the source does not resume where it acknowledged";
    checks
        .run(Check::RecordsInOrder, None, records_in_order(fixture, t))
        .await;
    checks
        .run(
            Check::AcksOnlyAfterFlush,
            (!t.resumes).then_some(RESUME),
            acks_only_after_flush(fixture, t),
        )
        .await;
    checks
        .run(
            Check::NoAckForFailedWrite,
            (!t.resumes).then_some(RESUME),
            no_ack_for_failed_write(fixture, t),
        )
        .await;
    checks
        .run(Check::EmptyStream, None, empty_stream(fixture, t))
        .await;
    checks
        .run(Check::LargeRecord, None, large_record(fixture, t))
        .await;
    checks
        .run(Check::UndecodableBytes, None, undecodable_bytes(fixture, t))
        .await;
    checks
        .run(Check::CancelMidStream, None, cancel_mid_stream(fixture, t))
        .await;
    checks
        .run(
            Check::RestartResumes,
            (!t.resumes).then_some(RESUME),
            restart_resumes(fixture, t),
        )
        .await;
    checks
        .run(
            Check::ConcurrentStreams,
            None,
            concurrent_streams(fixture, t),
        )
        .await;
}

fn fixture_error(what: &str, e: runtime_core::Error) -> String {
    format!("the fixture could not {what}: {e}")
}

async fn create<F: SourceFixture>(fixture: &F, messages: &[Vec<u8>]) -> Result<F::Stream, String> {
    fixture
        .create(messages)
        .await
        .map_err(|e| fixture_error("create a stream", e))
}

async fn open<F: SourceFixture>(
    fixture: &F,
    stream: &F::Stream,
    options: &OpenOptions,
) -> Result<Box<dyn RecordSource>, String> {
    fixture
        .open(stream, options)
        .await
        .map_err(|e| format!("opening the source failed: {e}"))
}

/// A fresh stream holding `values`, opened.
async fn stream_of<F: SourceFixture>(
    fixture: &F,
    values: &[Value],
) -> Result<(F::Stream, Box<dyn RecordSource>), String> {
    let stream = create(fixture, &data::messages(values)?).await?;
    let source = open(fixture, &stream, &OpenOptions::default()).await?;
    Ok((stream, source))
}

/// Empty batches in a row after which a source that never ends is taken to hold nothing
/// more (each waited up to its linger time).
const EMPTY_BATCHES: usize = 20;

/// Reads until `want` items came (a source that never ends) or the source ends. Each record's
/// receipt is settled as delivered as it comes, so a source's bound on records in flight
/// never stalls the reading.
async fn read_items(
    source: &mut dyn RecordSource,
    want: usize,
    t: SourceTraits,
) -> Result<Vec<ReadItem>, String> {
    read(source, want, t, true).await
}

/// [`read_items`], the receipts left on the items.
async fn read_holding(
    source: &mut dyn RecordSource,
    want: usize,
    t: SourceTraits,
) -> Result<Vec<ReadItem>, String> {
    read(source, want, t, false).await
}

async fn read(
    source: &mut dyn RecordSource,
    want: usize,
    t: SourceTraits,
    settle: bool,
) -> Result<Vec<ReadItem>, String> {
    let deadline = tokio::time::Instant::now() + READ_DEADLINE;
    let mut items = Vec::new();
    let mut empty = 0;
    loop {
        if !t.ends && items.len() >= want {
            return Ok(items);
        }
        let gave_up = |how: String| {
            format!(
                "the source gave {} of the {want} item(s) its stream holds{}, then {how}",
                items.len(),
                if t.ends { " without ending" } else { "" },
            )
        };
        match tokio::time::timeout_at(deadline, source.read_batch(BATCH)).await {
            Err(_) => {
                return Err(gave_up(format!(
                    "nothing more for {} s",
                    READ_DEADLINE.as_secs()
                )))
            }
            Ok(Err(e)) => return Err(format!("read_batch failed: {e}")),
            Ok(Ok(None)) if t.ends => return Ok(items),
            Ok(Ok(None)) => {
                return Err(
                    "the source ended (Ok(None)) although its fixture says it never ends".into(),
                )
            }
            Ok(Ok(Some(batch))) if batch.is_empty() => {
                empty += 1;
                if empty >= EMPTY_BATCHES {
                    return Err(gave_up(format!("{empty} empty batches in a row")));
                }
            }
            Ok(Ok(Some(batch))) => {
                if batch.len() > BATCH {
                    return Err(format!(
                        "read_batch({BATCH}) gave {} items: more than asked",
                        batch.len()
                    ));
                }
                empty = 0;
                for mut item in batch {
                    if settle {
                        std::mem::take(item.receipt_mut()).settle(Fate::Delivered);
                    }
                    items.push(item);
                }
            }
        }
    }
}

/// Closes a source, failing on an error.
async fn close(mut source: Box<dyn RecordSource>) -> Result<(), String> {
    source
        .close(CLOSE_GRACE)
        .await
        .map_err(|e| format!("closing the source failed: {e}"))
}

/// The job's stop for a source that never ends: once `n` items are accounted for.
fn stop_after(t: SourceTraits, n: usize) -> Option<u64> {
    (!t.ends).then_some(n as u64)
}

/// Runs the echo model from `source` into `sink`; the job must not end in ERROR.
async fn pipe(
    source: Box<dyn RecordSource>,
    sink: &MemorySink,
    t: SourceTraits,
    n: usize,
) -> Result<jobs::JobOutcome, String> {
    let control = Arc::new(JobControl::default());
    let job = pipeline::job(source, Box::new(sink.clone()), BATCH, control);
    let outcome = pipeline::drive(job, &Echo::default(), stop_after(t, n)).await;
    if outcome.status == JobStatus::Error {
        return Err(format!(
            "the job ended in ERROR: {}",
            outcome.error.as_deref().unwrap_or("(no reason)")
        ));
    }
    if t.ends && outcome.status != JobStatus::Complete {
        return Err(format!(
            "the job ended {} instead of COMPLETE",
            outcome.status.as_str()
        ));
    }
    Ok(outcome)
}

/// Whether the job ended on the kit's sink failing: in ERROR naming it, or, for a source
/// that never ends (whose jobs the kit stops by cancelling them), cancelled with that error.
fn sink_failed(outcome: &jobs::JobOutcome, t: SourceTraits) -> bool {
    let names_sink = outcome
        .error
        .as_deref()
        .is_some_and(|e| e.contains(pipeline::MEMORY_SINK));
    names_sink
        && (outcome.status == JobStatus::Error
            || (!t.ends && outcome.status == JobStatus::Cancelled))
}

/// Opens `stream` again and checks it reads exactly `want`, in order.
async fn reopened_reads<F: SourceFixture>(
    fixture: &F,
    stream: &F::Stream,
    t: SourceTraits,
    want: &[Value],
    what: &str,
) -> Result<(), String> {
    let mut again = open(fixture, stream, &OpenOptions::default()).await?;
    let mut items = read_items(&mut *again, want.len(), t).await?;
    if !t.ends {
        // Nothing more: a record acknowledged must not come again.
        let more = again
            .read_batch(BATCH)
            .await
            .map_err(|e| format!("read_batch failed: {e}"))?;
        items.extend(more.unwrap_or_default());
    }
    let got = data::values(what, items)?;
    let checked = same(what, &got, want);
    close(again).await?;
    checked
}

async fn records_in_order<F: SourceFixture>(fixture: &F, t: SourceTraits) -> Result<(), String> {
    // Read directly: every record, in order, numbered from 1.
    let want = records("a", 50);
    let (_stream, mut source) = stream_of(fixture, &want).await?;
    let items = read_items(&mut *source, want.len(), t).await?;
    for (i, item) in items.iter().enumerate() {
        let position = item.position();
        if position.record != i as u64 + 1 {
            return Err(format!(
                "item {} read stands at {position}: records are numbered from 1 in read order",
                i + 1
            ));
        }
    }
    same(
        "read directly",
        &data::values("read directly", items)?,
        &want,
    )?;
    close(source).await?;

    // Through the pipeline.
    let want = records("b", 250);
    let (_stream, source) = stream_of(fixture, &want).await?;
    let sink = MemorySink::default();
    pipe(source, &sink, t, want.len()).await?;
    same("the job's output", &sink.values(), &want)
}

async fn acks_only_after_flush<F: SourceFixture>(
    fixture: &F,
    t: SourceTraits,
) -> Result<(), String> {
    let want = records("a", 60);
    let (stream, source) = stream_of(fixture, &want).await?;
    // Two flushes succeed, the third fails: what the sink flushed is delivered, the rest
    // failed.
    let sink = MemorySink::breaking(Breaks::FlushingAfter(2));
    let control = Arc::new(JobControl::default());
    let job = pipeline::job(source, Box::new(sink.clone()), BATCH, control);
    let outcome = pipeline::drive(job, &Echo::default(), stop_after(t, want.len())).await;
    if !sink_failed(&outcome, t) {
        return Err(format!(
            "the job's sink failed its third flush, yet the job ended {} ({})",
            outcome.status.as_str(),
            outcome.error.as_deref().unwrap_or("")
        ));
    }
    let flushed = sink.flushed.load(std::sync::atomic::Ordering::SeqCst);
    if flushed == 0 || flushed >= want.len() {
        return Err(format!(
            "the sink flushed {flushed} of {} records before failing: the check needs some \
             flushed and some not",
            want.len()
        ));
    }
    reopened_reads(
        fixture,
        &stream,
        t,
        &want[flushed..],
        &format!(
            "reopened after {flushed} records were flushed and the sink's next flush failed, \
             the source reads"
        ),
    )
    .await
}

async fn no_ack_for_failed_write<F: SourceFixture>(
    fixture: &F,
    t: SourceTraits,
) -> Result<(), String> {
    let want = records("a", 40);
    let (stream, source) = stream_of(fixture, &want).await?;
    let sink = MemorySink::breaking(Breaks::Writing);
    let control = Arc::new(JobControl::default());
    let job = pipeline::job(source, Box::new(sink), BATCH, control);
    let outcome = pipeline::drive(job, &Echo::default(), stop_after(t, want.len())).await;
    if !sink_failed(&outcome, t) {
        return Err(format!(
            "every write of the job's sink failed, yet the job ended {} ({})",
            outcome.status.as_str(),
            outcome.error.as_deref().unwrap_or("")
        ));
    }
    reopened_reads(
        fixture,
        &stream,
        t,
        &want,
        "reopened after every write failed, the source reads",
    )
    .await
}

async fn empty_stream<F: SourceFixture>(fixture: &F, t: SourceTraits) -> Result<(), String> {
    let (_stream, mut source) = stream_of(fixture, &[]).await?;
    let first = source
        .read_batch(BATCH)
        .await
        .map_err(|e| format!("read_batch failed: {e}"))?;
    match first {
        Some(items) if !items.is_empty() => {
            return Err(format!("an empty stream gave {} item(s)", items.len()))
        }
        Some(_) if t.ends => {
            // An empty batch is allowed before the end; the end must come.
            let rest = read_items(&mut *source, 0, t).await?;
            if !rest.is_empty() {
                return Err(format!("an empty stream gave {} item(s)", rest.len()));
            }
        }
        None if !t.ends => {
            return Err(
                "the source ended (Ok(None)) although its fixture says it never ends".into(),
            )
        }
        _ => {}
    }
    close(source).await?;

    let (_stream, source) = stream_of(fixture, &[]).await?;
    let sink = MemorySink::default();
    let outcome = pipe(source, &sink, t, 0).await?;
    if outcome.records_in != 0 || !sink.values().is_empty() {
        return Err(format!(
            "a job over an empty stream read {} record(s) and wrote {}",
            outcome.records_in,
            sink.values().len()
        ));
    }
    Ok(())
}

async fn large_record<F: SourceFixture>(fixture: &F, t: SourceTraits) -> Result<(), String> {
    let want = vec![
        data::record("a", 1),
        data::large_record(2),
        data::record("a", 3),
    ];
    let messages = data::messages(&want)?;
    let size = messages[1].len();

    // Within the limit: read whole.
    let stream = create(fixture, &messages).await?;
    let roomy = OpenOptions {
        max_record_bytes: size + 1024,
    };
    let mut source = open(fixture, &stream, &roomy).await?;
    let items = read_items(&mut *source, want.len(), t).await?;
    same(
        &format!(
            "with a limit of {} bytes, the source reads",
            roomy.max_record_bytes
        ),
        &data::values("a record within the limit", items)?,
        &want,
    )?;
    close(source).await?;

    // Past the limit: rejected by size where it stands, and the stream goes on.
    let stream = create(fixture, &messages).await?;
    let tight = OpenOptions {
        max_record_bytes: size / 4,
    };
    let mut source = open(fixture, &stream, &tight).await?;
    let items = read_items(&mut *source, want.len(), t).await?;
    close(source).await?;
    match items.as_slice() {
        [ReadItem::Record(a), ReadItem::Rejected(big), ReadItem::Record(c)] => {
            if big.kind != RejectionKind::Size || big.position.record != 2 {
                return Err(format!(
                    "a record of {size} bytes past a limit of {} bytes must be rejected by size \
                     as record 2, not {big}",
                    tight.max_record_bytes
                ));
            }
            same(
                "around a record past the limit, the source reads",
                &[a.value.clone(), c.value.clone()],
                &[want[0].clone(), want[2].clone()],
            )
        }
        other => Err(format!(
            "a record of {size} bytes past a limit of {} bytes between two small ones: expected \
             a record, a size rejection and a record, got {}",
            tight.max_record_bytes,
            kinds(other)
        )),
    }
}

fn kinds(items: &[ReadItem]) -> String {
    let kinds: Vec<String> = items
        .iter()
        .map(|i| match i {
            ReadItem::Record(r) => format!("record at {}", r.position),
            ReadItem::Rejected(r) => format!("rejection ({r})"),
        })
        .collect();
    format!("[{}]", kinds.join("; "))
}

async fn undecodable_bytes<F: SourceFixture>(fixture: &F, t: SourceTraits) -> Result<(), String> {
    let good = records("a", 5);
    let mut messages = data::messages(&good)?;
    messages[1] = br#"{"n": 2, "text": "cut sh"#.to_vec();
    messages[3] = b"not JSON at all".to_vec();
    let stream = create(fixture, &messages).await?;
    let mut source = open(fixture, &stream, &OpenOptions::default()).await?;
    let items = read_items(&mut *source, messages.len(), t).await?;
    close(source).await?;
    if items.len() != messages.len() {
        return Err(format!(
            "5 messages, two of them not JSON: expected 5 items, got {}",
            kinds(&items)
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let n = i as u64 + 1;
        match (n, item) {
            (2 | 4, ReadItem::Rejected(r)) => {
                if r.kind != RejectionKind::Encoding
                    || r.position.record != n
                    || r.reason.is_empty()
                {
                    return Err(format!(
                        "message {n} is not JSON: expected an encoding rejection naming record \
                         {n} and why, got {r}"
                    ));
                }
            }
            (1 | 3 | 5, ReadItem::Record(r)) if r.value == good[i] && r.position.record == n => {}
            _ => {
                return Err(format!(
                    "messages 2 and 4 are not JSON, the others are records: got {}",
                    kinds(&items)
                ))
            }
        }
    }
    Ok(())
}

async fn cancel_mid_stream<F: SourceFixture>(fixture: &F, t: SourceTraits) -> Result<(), String> {
    let want = records("a", 400);
    let (stream, source) = stream_of(fixture, &want).await?;
    let sink = MemorySink::default();
    let control = Arc::new(JobControl::default());
    let job = pipeline::job(source, Box::new(sink.clone()), BATCH, control.clone());
    let outcome = pipeline::drive(job, &Echo::cancelling(40, control), None).await;
    if outcome.status != JobStatus::Cancelled {
        return Err(format!(
            "the job was cancelled after 40 records, yet it ended {} ({})",
            outcome.status.as_str(),
            outcome.error.as_deref().unwrap_or("")
        ));
    }
    let written = sink.values();
    if written.is_empty() || written.len() >= want.len() {
        return Err(format!(
            "cancelled after 40 of {} records, the job wrote {}: the stop did not land mid-stream",
            want.len(),
            written.len()
        ));
    }
    same(
        "cancelled mid-stream, the job wrote",
        &written,
        &want[..written.len()],
    )?;
    if !t.resumes {
        return Ok(());
    }
    reopened_reads(
        fixture,
        &stream,
        t,
        &want[written.len()..],
        &format!(
            "reopened after a cancel that delivered {} records, the source reads",
            written.len()
        ),
    )
    .await
}

async fn restart_resumes<F: SourceFixture>(fixture: &F, t: SourceTraits) -> Result<(), String> {
    const SETTLED: usize = 12;
    let want = records("a", 30);
    let (stream, mut source) = stream_of(fixture, &want).await?;
    let items = read_holding(&mut *source, want.len(), t).await?;
    if items.len() != want.len() {
        return Err(format!("read {} of {} records", items.len(), want.len()));
    }
    let mut untracked = 0;
    let mut dropped = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let ReadItem::Record(r) = item else {
            return Err(format!("record {} was rejected", i + 1));
        };
        untracked += usize::from(!r.receipt.is_tracked());
        if i < SETTLED {
            r.receipt.settle(Fate::Delivered);
        } else {
            dropped.push(r.receipt);
        }
    }
    if untracked > 0 {
        return Err(format!(
            "{untracked} record(s) carry no receipt: a source that resumes learns each \
             record's fate from an Acks ledger"
        ));
    }
    drop(dropped);
    close(source).await?;
    reopened_reads(
        fixture,
        &stream,
        t,
        &want[SETTLED..],
        &format!(
            "reopened after the first {SETTLED} records were delivered and the rest dropped \
             unsettled, the source reads"
        ),
    )
    .await
}

async fn concurrent_streams<F: SourceFixture>(fixture: &F, t: SourceTraits) -> Result<(), String> {
    let (a, b) = (records("a", 150), records("b", 150));
    let (_sa, source_a) = stream_of(fixture, &a).await?;
    let (_sb, source_b) = stream_of(fixture, &b).await?;
    let (sink_a, sink_b) = (MemorySink::default(), MemorySink::default());
    let (ra, rb) = tokio::join!(
        pipe(source_a, &sink_a, t, a.len()),
        pipe(source_b, &sink_b, t, b.len())
    );
    ra.map_err(|e| format!("stream a: {e}"))?;
    rb.map_err(|e| format!("stream b: {e}"))?;
    same("stream a, read beside stream b, gave", &sink_a.values(), &a)?;
    same("stream b, read beside stream a, gave", &sink_b.values(), &b)
}
