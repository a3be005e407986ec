//! The cost of schema checking on top of decoding: JSON lines of a 10-field record decoded
//! with the codecs, alone, then with `check`, then with `conform` (what the pipeline does).
//!
//! `cargo bench -p schema --bench check`; `SCHEMA_BENCH_RECORDS` sets the size (default
//! 1,000,000). The overhead is (decode+check time) / (decode time) - 1; the second group
//! times the checking alone on records decoded beforehand, which gives the same ratio with
//! less noise: check time / decode time.

use std::hint::black_box;
use std::io::Cursor;
use std::sync::Arc;

use codecs::{CodecConfig, Encoding};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use runtime_core::ReadItem;
use schema::Checker;

const SCHEMA: &str = r#"{"type": "record", "name": "input_schema", "fields": [
    {"name": "id", "type": "long"},
    {"name": "x", "type": "double", "role": "predictor", "dataClass": "numerical"},
    {"name": "y", "type": "double"},
    {"name": "name", "type": "string"},
    {"name": "flag", "type": "boolean"},
    {"name": "count", "type": "int"},
    {"name": "note", "type": ["null", "string"]},
    {"name": "category", "type": {"type": "enum", "name": "Category", "symbols": ["A", "B", "C", "D"]}},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tags", "type": {"type": "array", "items": "string"}}
]}"#;

fn records() -> usize {
    std::env::var("SCHEMA_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

fn data(n: usize) -> Arc<[u8]> {
    let mut out = String::with_capacity(n * 200);
    for i in 0..n {
        let note = if i % 3 == 0 {
            "null".to_owned()
        } else {
            format!("\"note {}\"", i % 97)
        };
        out.push_str(&format!(
            "{{\"id\": {i}, \"x\": {}, \"y\": {}, \"name\": \"name{}\", \"flag\": {}, \"count\": {}, \"note\": {note}, \"category\": \"{}\", \"ts\": {}, \"tags\": [\"t{}\", \"u\"]}}\n",
            i as f64 * 0.25,
            (i % 1000) as f64 / 7.0,
            i % 1000,
            i % 2 == 0,
            i % 5000,
            ["A", "B", "C", "D"][i % 4],
            1_700_000_000_000i64 + i as i64,
            i % 10,
        ));
    }
    out.into_bytes().into()
}

#[derive(Clone, Copy)]
enum Mode {
    Decode,
    Check,
    Conform,
}

fn run(bytes: &Arc<[u8]>, checker: &Checker, mode: Mode) -> usize {
    let cfg = CodecConfig::new(Encoding::Json);
    let mut dec = codecs::decoder(&cfg, Cursor::new(bytes.clone()), "bench").expect("decoder");
    let mut batch = Vec::with_capacity(1000);
    let mut ok = 0;
    loop {
        batch.clear();
        let more = dec.next_batch(1000, &mut batch).expect("decode");
        for item in batch.iter_mut() {
            if let ReadItem::Record(r) = item {
                let pass = match mode {
                    Mode::Decode => true,
                    Mode::Check => checker.check(&r.value).is_ok(),
                    Mode::Conform => checker.conform(&mut r.value).is_ok(),
                };
                ok += usize::from(pass);
            }
        }
        black_box(&batch);
        if !more {
            break;
        }
    }
    ok
}

fn bench(c: &mut Criterion) {
    let n = records();
    let bytes = data(n);
    let checker = Checker::parse(SCHEMA).expect("schema");
    assert_eq!(
        run(&bytes, &checker, Mode::Conform),
        n,
        "every record conforms"
    );
    let mut g = c.benchmark_group("json_10_fields");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("decode", |b| b.iter(|| run(&bytes, &checker, Mode::Decode)));
    g.bench_function("decode+check", |b| {
        b.iter(|| run(&bytes, &checker, Mode::Check))
    });
    g.bench_function("decode+conform", |b| {
        b.iter(|| run(&bytes, &checker, Mode::Conform))
    });
    g.finish();

    // The checking alone, on records decoded beforehand (a 100,000-record slice walked until
    // `n` records are done): less exposed to the allocator than the runs above.
    let sample = n.min(100_000);
    let mut values = Vec::with_capacity(sample);
    let cfg = CodecConfig::new(Encoding::Json);
    let mut dec = codecs::decoder(&cfg, Cursor::new(data(sample)), "bench").expect("decoder");
    while let Some(item) = dec.next_item() {
        if let Ok(ReadItem::Record(r)) = item {
            values.push(r.value);
        }
    }
    let mut g = c.benchmark_group("json_10_fields_predecoded");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("check", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for v in values.iter().cycle().take(n) {
                ok += usize::from(checker.check(v).is_ok());
            }
            ok
        })
    });
    g.bench_function("conform", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for _ in 0..n.div_ceil(sample) {
                for v in values.iter_mut() {
                    ok += usize::from(checker.conform(v).is_ok());
                }
            }
            ok
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
