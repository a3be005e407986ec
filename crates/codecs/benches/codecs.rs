//! Decode and encode throughput per encoding, next to the floor measured in the same run
//! (serde_json into `serde_json::Value`, the csv crate into `StringRecord`, the apache-avro
//! crate's `Reader` into its own `types::Value`, parquet's Arrow reader into record batches).
//! The other Avro floor is fastavro: scripts/bench-avro-fastavro.py reads and writes the
//! container file this bench leaves in the temp directory; the Parquet one is pyarrow's
//! `to_pylist()`, scripts/bench-parquet-pyarrow.py on the Parquet file it leaves there.
//!
//! `CODECS_BENCH_RECORDS` sets the number of records (default 1,000,000).
//! `CODECS_BENCH_AVRO_ROUNDS=N` adds N interleaved rounds of the Avro decoder and
//! apache-avro's Reader (one of each per round, in turn), `CODECS_BENCH_CSV_ROUNDS=N` the same
//! for the CSV decoder and the csv crate's `StringRecord`, for a ratio that load on a shared
//! machine shifts less than it shifts two criterion runs made one after the other; the rounds
//! are timed by the clock and by the thread's CPU time (which leaves out the time other
//! processes held the CPU, where Linux reports it). `CODECS_BENCH_PARQUET_ROUNDS=N` does the
//! same for the Parquet decoder against parquet's Arrow reader, and for the Parquet encoder
//! against parquet's `ArrowWriter` writing the same rows from Arrow batches.

use std::io::Write;
use std::time::Duration;

use codecs::{AvroSchema, CodecConfig, Encoding, RecordDecoder, RecordEncoder};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use runtime_core::{Map, ReadItem, Value};

const SCHEMA: &str = r#"{"type": "record", "name": "Small", "fields": [
  {"name": "id", "type": "long"}, {"name": "x", "type": "double"},
  {"name": "name", "type": "string"}, {"name": "flag", "type": "boolean"}]}"#;

fn records(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut m = Map::with_capacity(4);
            m.push("id", i as i64);
            m.push("x", i as f64 * 0.37 + 0.001);
            m.push("name", format!("name{}", i % 1000));
            m.push("flag", i % 2 == 0);
            Value::Map(m)
        })
        .collect()
}

fn encode(cfg: &CodecConfig, vals: &[Value]) {
    let mut enc: Box<dyn RecordEncoder> =
        codecs::encoder(cfg, Sink::default()).expect("encoder builds");
    for v in vals {
        enc.write(v).expect("record encodes");
    }
    enc.close().expect("flush");
}

/// Counts bytes; stands for the destination.
#[derive(Default)]
struct Sink(usize);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn encode_to_vec(cfg: &CodecConfig, vals: &[Value]) -> Vec<u8> {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut enc = codecs::encoder(cfg, Shared(buf.clone())).expect("encoder builds");
    for v in vals {
        enc.write(v).expect("record encodes");
    }
    enc.close().expect("flush");
    drop(enc);
    let out = buf.lock().expect("not poisoned").clone();
    out
}

fn decode(cfg: &CodecConfig, bytes: &'static [u8]) -> usize {
    let mut dec: Box<dyn RecordDecoder> = if cfg.encoding == Encoding::Parquet {
        let input = Box::new(bytes::Bytes::from_static(bytes));
        codecs::parquet_decoder(cfg, input, "bench").expect("decoder builds")
    } else {
        codecs::decoder(
            cfg,
            std::io::BufReader::with_capacity(256 * 1024, bytes),
            "bench",
        )
        .expect("decoder builds")
    };
    let mut n = 0;
    let mut batch = Vec::with_capacity(1000);
    loop {
        batch.clear();
        let more = dec.next_batch(1000, &mut batch).expect("stream reads");
        n += batch
            .iter()
            .filter(|i| matches!(i, ReadItem::Record(_)))
            .count();
        if !more {
            break;
        }
    }
    n
}

/// apache-avro's `Reader` over the container file; `keep` values are kept at a time, as the
/// decoder's callers keep a batch (1: each freed before the next is read).
fn apache_avro_decode(bytes: &[u8], keep: usize, n: usize) {
    let rdr = apache_avro::Reader::new(bytes).expect("valid header");
    let mut batch = Vec::with_capacity(keep);
    let mut k = 0;
    for v in rdr {
        let v = v.expect("valid datum");
        k += usize::from(matches!(v, apache_avro::types::Value::Record(_)));
        batch.push(v);
        if batch.len() == keep {
            batch.clear();
        }
    }
    assert_eq!(k, n);
}

/// Nanoseconds this thread has spent on a CPU (Linux's schedstat), if known: unlike the time
/// on the clock, it leaves out the time other processes had the CPU.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Interleaved rounds of the decoder (or encoder) and its floors (one of each per round, in
/// turn): the medians of each and the median of the per-round ratios, by the clock and by CPU
/// time.
fn rounds(what: &str, n: usize, rounds: usize, ours: &dyn Fn(), floors: &[(&str, &dyn Fn())]) {
    let time = |f: &dyn Fn()| {
        let cpu = thread_cpu_ns();
        let t = std::time::Instant::now();
        f();
        let wall = t.elapsed().as_secs_f64() * 1e3;
        let cpu = thread_cpu_ns()
            .zip(cpu)
            .map_or(f64::NAN, |(b, a)| (b - a) as f64 / 1e6);
        (wall, cpu)
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut times: Vec<Vec<(f64, f64)>> = vec![Vec::new(); floors.len() + 1];
    for _ in 0..rounds {
        times[0].push(time(ours));
        for (i, (_, f)) in floors.iter().enumerate() {
            times[i + 1].push(time(*f));
        }
    }
    for (by, pick) in [("clock", 0), ("CPU", 1)] {
        let ms = |i: usize| -> Vec<f64> {
            times[i]
                .iter()
                .map(|t| if pick == 0 { t.0 } else { t.1 })
                .collect()
        };
        let mut line = format!(
            "{what} rounds by {by} time: {rounds}, {n} records; ours {:.1} ms",
            median(ms(0))
        );
        for (i, (name, _)) in floors.iter().enumerate() {
            let ratio = median(ms(0).iter().zip(ms(i + 1)).map(|(a, b)| a / b).collect());
            line += &format!(", {name} {:.1} ms (ratio {ratio:.2})", median(ms(i + 1)));
        }
        eprintln!("{line}; ratio = our time / floor time, median of the rounds");
    }
}

fn csv_string_records(bytes: &[u8], n: usize) {
    let mut rdr = csv::Reader::from_reader(bytes);
    let mut rec = csv::StringRecord::new();
    let mut k = 0;
    while rdr.read_record(&mut rec).expect("valid CSV") {
        k += 1;
    }
    assert_eq!(k, n);
}

/// parquet's own reader over `bytes` into Arrow record batches: what the decoder converts to
/// records.
fn arrow_batches(bytes: &'static [u8]) -> Vec<arrow_array::RecordBatch> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
        bytes::Bytes::from_static(bytes),
        codecs::READ_BATCH_ROWS,
    )
    .expect("valid Parquet")
    .map(|b| b.expect("decodes"))
    .collect()
}

/// parquet's `ArrowWriter` writing `batches` as the encoder writes (snappy, row groups of
/// `ROW_GROUP_ROWS`): what the encoder adds records-to-arrays to.
fn arrow_write(batches: &[arrow_array::RecordBatch]) {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_max_row_group_row_count(Some(codecs::ROW_GROUP_ROWS))
        .build();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(Sink::default(), batches[0].schema(), Some(props))
            .expect("writer builds");
    for b in batches {
        w.write(b).expect("writes");
    }
    w.close().expect("closes");
}

fn env_rounds(var: &str) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("CODECS_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let vals = records(n);
    let schema = AvroSchema::parse(SCHEMA).expect("schema parses");
    let configs = [
        ("json", CodecConfig::new(Encoding::Json)),
        ("csv", CodecConfig::new(Encoding::Csv)),
        (
            "avro",
            CodecConfig::new(Encoding::AvroBinary).with_schema(schema),
        ),
        ("msgpack", CodecConfig::new(Encoding::MsgPack)),
        ("parquet", CodecConfig::new(Encoding::Parquet)),
    ];
    for (name, cfg) in &configs {
        let bytes: &'static [u8] = Box::leak(encode_to_vec(cfg, &vals).into_boxed_slice());
        if matches!(*name, "avro" | "parquet") {
            let path = std::env::temp_dir().join(format!("codecs-bench-{n}.{name}"));
            if std::fs::write(&path, bytes).is_ok() {
                eprintln!("{name} file for scripts/bench-*.py: {}", path.display());
            }
        }
        let mut g = c.benchmark_group(*name);
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(10);
        g.warm_up_time(Duration::from_secs(1));
        g.bench_function("decode", |b| b.iter(|| assert_eq!(decode(cfg, bytes), n)));
        g.bench_function("encode", |b| b.iter(|| encode(cfg, &vals)));
        match *name {
            "json" => {
                g.bench_function("floor serde_json::Value decode", |b| {
                    b.iter(|| {
                        let mut k = 0;
                        for line in bytes.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                            let v: serde_json::Value =
                                serde_json::from_slice(line).expect("valid JSON");
                            k += usize::from(v.is_object());
                        }
                        assert_eq!(k, n);
                    })
                });
                let parsed: Vec<serde_json::Value> = bytes
                    .split(|&c| c == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice(l).expect("valid JSON"))
                    .collect();
                g.bench_function("floor serde_json::Value encode", |b| {
                    b.iter(|| {
                        let mut out = std::io::BufWriter::with_capacity(64 * 1024, Sink::default());
                        for v in &parsed {
                            serde_json::to_writer(&mut out, v).expect("writes");
                            out.write_all(b"\n").expect("writes");
                        }
                        out.flush().expect("flush");
                    })
                });
            }
            "csv" => {
                g.bench_function("floor csv StringRecord decode", |b| {
                    b.iter(|| csv_string_records(bytes, n))
                });
                let k = env_rounds("CODECS_BENCH_CSV_ROUNDS");
                if k > 0 {
                    rounds(
                        "csv",
                        n,
                        k,
                        &|| assert_eq!(decode(cfg, bytes), n),
                        &[("csv StringRecord", &|| csv_string_records(bytes, n))],
                    );
                }
                g.bench_function("floor csv StringRecord encode", |b| {
                    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(bytes)
                        .records()
                        .map(|r| r.expect("valid CSV"))
                        .collect();
                    b.iter(|| {
                        let mut w = csv::Writer::from_writer(Sink::default());
                        for r in &rows {
                            w.write_record(r).expect("writes");
                        }
                        w.flush().expect("flush");
                    })
                });
            }
            "avro" => {
                // The reader the codecs' datum walker stands in for: the same container file
                // into apache-avro's own values (not converted to `Value`, which would only
                // add to its time).
                g.bench_function("floor apache-avro Reader decode", |b| {
                    b.iter(|| apache_avro_decode(bytes, 1, n))
                });
                // The same, with the values kept in batches of 1,000 as the decoder's callers
                // keep records.
                g.bench_function("floor apache-avro Reader decode, batches of 1000", |b| {
                    b.iter(|| apache_avro_decode(bytes, 1000, n))
                });
                let k = env_rounds("CODECS_BENCH_AVRO_ROUNDS");
                if k > 0 {
                    rounds(
                        "avro",
                        n,
                        k,
                        &|| assert_eq!(decode(cfg, bytes), n),
                        &[
                            ("apache-avro Reader", &|| apache_avro_decode(bytes, 1, n)),
                            ("apache-avro Reader in batches of 1000", &|| {
                                apache_avro_decode(bytes, 1000, n)
                            }),
                        ],
                    );
                }
            }
            "parquet" => {
                // parquet's own reader into Arrow record batches: what the decoder converts
                // to records.
                g.bench_function("floor parquet Arrow batches decode", |b| {
                    b.iter(|| {
                        let k: usize = arrow_batches(bytes).iter().map(|b| b.num_rows()).sum();
                        assert_eq!(k, n);
                    })
                });
                let k = env_rounds("CODECS_BENCH_PARQUET_ROUNDS");
                if k > 0 {
                    rounds(
                        "parquet decode",
                        n,
                        k,
                        &|| assert_eq!(decode(cfg, bytes), n),
                        &[("parquet Arrow batches", &|| {
                            let k: usize = arrow_batches(bytes).iter().map(|b| b.num_rows()).sum();
                            assert_eq!(k, n);
                        })],
                    );
                    let batches = arrow_batches(bytes);
                    rounds(
                        "parquet encode",
                        n,
                        k,
                        &|| encode(cfg, &vals),
                        &[("parquet ArrowWriter of Arrow batches", &|| {
                            arrow_write(&batches)
                        })],
                    );
                }
            }
            _ => {}
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
