use codecs::{CodecConfig, Encoding};
use endpoints::{FileSink, FileSource, InlineSource};
use runtime_core::{OutRecord, Position, ReadItem, RecordSink, RecordSource, RejectionKind, Value};

async fn read_all(src: &mut dyn RecordSource) -> Vec<ReadItem> {
    let mut all = Vec::new();
    while let Some(batch) = src.read_batch(2).await.unwrap() {
        assert!(batch.len() <= 2);
        all.extend(batch);
    }
    all
}

#[tokio::test]
async fn a_json_lines_file_streams_in_batches_with_rejections_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(&path, "{\"a\": 1}\n{broken\n[1, 2]\n\n{\"a\": 3}\n").unwrap();
    let mut src = FileSource::open(&path, &CodecConfig::new(Encoding::Json)).unwrap();
    let items = read_all(&mut src).await;
    assert_eq!(items.len(), 4);
    assert!(
        matches!(&items[1], ReadItem::Rejected(r) if r.kind == RejectionKind::Encoding && r.position.line == Some(2))
    );
    assert!(
        matches!(&items[2], ReadItem::Record(r) if r.value == Value::Array(vec![1.into(), 2.into()]))
    );
}

#[tokio::test]
async fn a_file_sink_writes_counts_and_rejects_what_json_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/out.jsonl");
    let mut sink = FileSink::create(&path, &CodecConfig::new(Encoding::Json)).unwrap();
    let batch = vec![
        OutRecord {
            value: Value::Int(1),
            position: Position::record(1),
            meta: None,
        },
        OutRecord {
            value: Value::Float(f64::NAN),
            position: Position::record(2),
            meta: None,
        },
        OutRecord {
            value: "x".into(),
            position: Position::record(3),
            meta: None,
        },
    ];
    let rejected = sink.write_batch(batch).await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].position.record, 2);
    assert!(
        !rejected[0].reason.starts_with("output record rejected"),
        "{}",
        rejected[0].reason
    );
    let report = sink.finish().await.unwrap();
    assert_eq!(report.records, 2);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n\"x\"\n");
    assert_eq!(report.bytes, 6);
}

#[tokio::test]
async fn a_missing_input_file_says_which() {
    let err = FileSource::open(
        std::path::Path::new("/nonexistent/in.json"),
        &CodecConfig::new(Encoding::Json),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("/nonexistent/in.json"), "{err}");
}

#[tokio::test]
async fn inline_messages_are_one_record_each() {
    let mut src = InlineSource::new(
        vec![b"{\"a\":1}".to_vec(), b"nope".to_vec(), b"[1]".to_vec()],
        CodecConfig::new(Encoding::Json),
    );
    let items = read_all(&mut src).await;
    assert_eq!(items.len(), 3);
    assert!(matches!(&items[1], ReadItem::Rejected(r) if r.position.record == 2));
}

#[tokio::test]
async fn a_truncated_avro_file_hands_out_every_record_before_the_break() {
    let schema = r#"{"type":"record","name":"r","fields":[{"name":"x","type":"long"}]}"#;
    let cfg = CodecConfig::new(Encoding::AvroBinary)
        .with_schema(codecs::AvroSchema::parse(schema).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.avro");
    let mut sink = FileSink::create(&path, &cfg).unwrap();
    let batch = (1..=100_000)
        .map(|i| {
            let mut m = runtime_core::Map::new();
            m.push("x", Value::Int(i));
            OutRecord {
                value: Value::Map(m),
                position: Position::record(i as u64),
                meta: None,
            }
        })
        .collect();
    assert!(sink.write_batch(batch).await.unwrap().is_empty());
    sink.finish().await.unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();

    // Batches bigger than a block: the break comes inside a batch.
    let mut src = FileSource::open(&path, &CodecConfig::new(Encoding::AvroBinary)).unwrap();
    let mut records = 0;
    let err = loop {
        match src.read_batch(50_000).await {
            Ok(Some(items)) => records += items.len(),
            Ok(None) => panic!("the stream ended without its break"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("truncated"), "{err}");
    assert!(records > 50_000 && records < 100_000, "{records}");
    assert_eq!(src.read_batch(10).await.unwrap(), None);
}

#[tokio::test]
async fn a_codec_that_cannot_be_built_is_the_source_of_the_endpoint_error() {
    use std::error::Error as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(&path, b"").unwrap();
    let mut cfg = CodecConfig::new(Encoding::Json);
    cfg.max_record_bytes = 0;
    let err = FileSource::open(&path, &cfg).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "file:{}: invalid codec config: field 'max_record_bytes': must be at least 1",
            path.display()
        )
    );
    let source = err.source().expect("the codec's error as the source");
    assert!(
        matches!(
            source.downcast_ref::<codecs::CodecError>(),
            Some(codecs::CodecError::Config {
                field: "max_record_bytes",
                ..
            })
        ),
        "{source:?}"
    );
}

#[tokio::test]
async fn an_inline_message_that_does_not_decode_is_rejected_with_the_codecs_reason() {
    let mut src = InlineSource::new(vec![b"nope".to_vec()], CodecConfig::new(Encoding::Json));
    let items = read_all(&mut src).await;
    let want = codecs::decode_message(&CodecConfig::new(Encoding::Json), b"nope")
        .unwrap_err()
        .to_string();
    assert!(
        matches!(&items[0], ReadItem::Rejected(r) if r.reason == want && !want.is_empty()),
        "{items:?}"
    );
}

fn out(value: Value, record: u64) -> OutRecord {
    OutRecord {
        value,
        position: Position::record(record),
        meta: None,
    }
}

fn row(id: i64, name: Value) -> Value {
    Value::Map(
        [("id", Value::from(id)), ("name", name)]
            .into_iter()
            .collect(),
    )
}

/// A Parquet output written through the file sink (a flush mid-stream is a row group), a
/// record that does not fit its columns rejected with its position and field; then read
/// back through the file source (random access, not a stream), alone and in a folder.
#[tokio::test]
async fn parquet_files_are_written_streaming_and_read_back_by_their_footer() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("parts");
    let cfg = CodecConfig::new(Encoding::Parquet);
    let mut sink = FileSink::create(&folder.join("a.parquet"), &cfg).unwrap();
    let rejected = sink
        .write_batch(vec![
            out(row(1, "a".into()), 1),
            out(row(2, Value::Int(7)), 2),
            out(row(3, "c".into()), 3),
        ])
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].position.record, 2);
    assert!(
        rejected[0].reason.contains("field 'name'"),
        "{}",
        rejected[0].reason
    );
    sink.flush().await.unwrap();
    let rejected = sink
        .write_batch(vec![out(row(4, Value::Null), 4)])
        .await
        .unwrap();
    assert!(rejected.is_empty());
    let report = sink.finish().await.unwrap();
    assert_eq!(report.records, 3);

    let mut sink = FileSink::create(&folder.join("b.parquet"), &cfg).unwrap();
    sink.write_batch(vec![out(row(5, "e".into()), 1)])
        .await
        .unwrap();
    sink.finish().await.unwrap();

    let mut src = FileSource::open(&folder.join("a.parquet"), &cfg).unwrap();
    let items = read_all(&mut src).await;
    let got: Vec<(u64, Value)> = items
        .iter()
        .map(|i| match i {
            ReadItem::Record(r) => (r.position.record, r.value.clone()),
            ReadItem::Rejected(r) => panic!("{r}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, row(1, "a".into())),
            (2, row(3, "c".into())),
            (3, row(4, Value::Null))
        ]
    );

    // A folder of Parquet files through the registry, as `engine run --input parts/` opens it.
    let d = endpoints::StreamDescriptor::parse(&format!(
        r#"{{"Transport": {{"Type": "file", "Path": "{}"}}, "Encoding": "parquet"}}"#,
        folder.display()
    ))
    .unwrap();
    assert_eq!(d.envelope, None);
    let mut src = endpoints::Registry::default()
        .open_source(&d, &d.codec_config())
        .unwrap();
    let items = read_all(src.as_mut()).await;
    assert_eq!(items.len(), 4);
    let origin = items[3].position().origin.clone().unwrap();
    assert!(origin.ends_with("b.parquet"), "{origin}");

    // A stream cannot be read as Parquet.
    let err = FileSource::from_reader("stdin".into(), std::io::Cursor::new(Vec::new()), &cfg)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("Parquet needs a seekable input"), "{err}");
}
