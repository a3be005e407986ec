//! S3 objects and prefixes against moto, HTTP documents against a Python file server: what
//! the conformance kit does not ask (prefixes, large objects, rolling outputs, whole files,
//! credentials) and every way it can fail, each a clear error naming the store, bucket and
//! key, none showing a secret.

mod support;

use std::time::Duration;

use endpoints::{Credential, Credentials, StreamDescriptor};
use object_store::ObjectStoreExt;
use runtime_core::{OutRecord, Position, RecordSink, Value};
use support::{Moto, KEY_ID, SECRET};
use test_servers::{HttpFiles, S3Server};

fn record(i: u64) -> OutRecord {
    let mut m = runtime_core::Map::new();
    m.push("id", Value::Int(i as i128));
    OutRecord {
        value: Value::Map(m),
        position: Position::record(i),
        meta: None,
    }
}

fn batch(range: std::ops::Range<u64>) -> Vec<OutRecord> {
    range.map(record).collect()
}

/// Writes `n` records of `bytes` each, a batch each.
async fn write_big_records(sink: &mut Box<dyn RecordSink>, n: u64, bytes: usize) {
    let big = Value::from("y".repeat(bytes));
    for i in 1..=n {
        let rec = OutRecord {
            value: big.clone(),
            position: Position::record(i),
            meta: None,
        };
        sink.write_batch(vec![rec]).await.unwrap();
    }
}

async fn error_of(sink: &mut Box<dyn RecordSink>) -> String {
    match sink.finish().await {
        Ok(r) => panic!("finished: {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_reads_every_object_under_it_in_key_order() {
    let moto = Moto::start();
    moto.create_bucket("days");
    moto.put("days", "day=2/b.jsonl", b"3\n4\n");
    moto.put("days", "day=1/z.jsonl", b"2\n");
    moto.put("days", "day=1/a.jsonl", b"1\n");
    moto.put("days", "day=1/_SUCCESS", b"");
    moto.put("days", "day=10/x.jsonl", b"5\n");
    moto.put("days", "other.jsonl", b"99\n");
    let registry = support::registry(support::settings());

    let d = moto.descriptor("days", "day=1/", r#", "Encoding": "json""#);
    let mut source = registry.open_source(&d, &d.codec_config()).unwrap();
    assert_eq!(source.describe(), "s3://days/day=1/");
    assert_eq!(
        support::drain(&mut source).await.unwrap(),
        ["1@s3://days/day=1/a.jsonl", "2@s3://days/day=1/z.jsonl"]
    );

    // Nested prefixes come in key order too ("day=1/" < "day=10/" < "day=2/").
    let d = moto.descriptor("days", "day", r#", "Encoding": "json""#);
    let err = registry
        .open_source(&d, &d.codec_config())
        .unwrap()
        .read_batch(10)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("there is no object 'day' in the bucket 'days'")
            && err.contains("a key ending in / reads every object under it"),
        "{err}"
    );

    // The short form, with the engine's own settings naming the server and the keys.
    let mut settings = support::settings();
    settings.aws.endpoint_url = Some(moto.endpoint());
    settings.aws.access_key_id = Some(KEY_ID.into());
    settings.aws.secret_access_key = Some(SECRET.into());
    let registry = support::registry(settings);
    let d = StreamDescriptor::parse("s3://days/day=2/b.jsonl").unwrap();
    let mut source = registry.open_source(&d, &d.codec_config()).unwrap();
    assert_eq!(support::drain(&mut source).await.unwrap(), ["3@", "4@"]);

    // Loop reads it again.
    let d = StreamDescriptor::parse(
        r#"{"Transport": {"Type": "S3", "Bucket": "days", "ObjectKey": "day=10/x.jsonl"}, "Loop": true}"#,
    )
    .unwrap();
    let mut source = registry.open_source(&d, &d.codec_config()).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.extend(source.read_batch(10).await.unwrap().unwrap());
    }
    assert_eq!(seen.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_of_several_parts_goes_up_and_comes_back_byte_for_byte() {
    let moto = Moto::start();
    moto.create_bucket("big");
    let registry = support::registry(support::settings());
    // 23 MiB of lines of raw bytes: five parts of 5 MiB.
    let line = |i: usize| format!("{i:08} {}\n", "x".repeat(1000 + i % 37));
    let lines: Vec<String> = (0..22_000).map(line).collect();
    let expected: Vec<u8> = lines.concat().into_bytes();
    assert!(expected.len() > 4 * (5 << 20), "{}", expected.len());

    let out = moto.descriptor("big", "whole.txt", r#", "Encoding": "utf-8""#);
    let mut sink = registry.open_sink(&out, &out.codec_config()).unwrap();
    for chunk in lines.chunks(1000) {
        let batch = chunk
            .iter()
            .enumerate()
            .map(|(i, l)| OutRecord {
                value: Value::from(l.trim_end_matches('\n').to_owned()),
                position: Position::record(i as u64 + 1),
                meta: None,
            })
            .collect();
        assert!(sink.write_batch(batch).await.unwrap().is_empty());
    }
    let report = sink.finish().await.unwrap();
    assert_eq!(report.records, 22_000);
    assert_eq!(report.location.as_deref(), Some("s3://big/whole.txt"));
    assert_eq!(moto.uploads_in_progress("big"), 0);
    let got = moto.get("big", "whole.txt").unwrap();
    assert!(
        got == expected,
        "{} bytes back, {} written",
        got.len(),
        expected.len()
    );

    // Read back through the source, raw lines, as they went.
    let d = moto.descriptor("big", "whole.txt", r#", "Encoding": "utf-8""#);
    let mut source = registry.open_source(&d, &d.codec_config()).unwrap();
    let values = support::values(&mut source).await.unwrap();
    assert_eq!(values.len(), 22_000);
    assert_eq!(
        values[21_999],
        Value::from(line(21_999).trim_end().to_owned())
    );

    // Whole files both ways, a multipart upload past a part.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("weights.bin");
    std::fs::write(&src, &expected).unwrap();
    let asset = moto.descriptor("big", "models/m1/", "");
    assert_eq!(
        registry.store_file(&asset, &src).unwrap(),
        expected.len() as u64
    );
    let fetched = dir.path().join("fetched.bin");
    let one = moto.descriptor("big", "models/m1/weights.bin", "");
    assert_eq!(
        registry.fetch_file(&one, &fetched).unwrap(),
        expected.len() as u64
    );
    assert!(std::fs::read(&fetched).unwrap() == expected);
    let missing = moto.descriptor("big", "models/m1/nothing.bin", "");
    let err = registry
        .fetch_file(&missing, &dir.path().join("nothing.bin"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("there is no object 'models/m1/nothing.bin'"),
        "{err}"
    );
    assert!(!dir.path().join("nothing.bin").exists());
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 2,
        "no partial file left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_object_is_durable_only_when_finished_and_a_failed_upload_leaves_nothing() {
    let moto = Moto::start();
    moto.create_bucket("out");
    let registry = support::registry(support::settings());

    // Nothing is visible before the end; a flush with records in it is refused by name.
    let d = moto.descriptor("out", "scores.jsonl", "");
    let mut sink = registry.open_sink(&d, &d.codec_config()).unwrap();
    sink.flush().await.unwrap();
    sink.write_batch(batch(1..11)).await.unwrap();
    assert!(moto.list("out", "").is_empty());
    let err = sink.flush().await.unwrap_err().to_string();
    assert!(
        err.starts_with("s3://out/scores.jsonl: ") && err.contains("name a prefix ending in /"),
        "{err}"
    );
    drop(sink);

    // Past a part, then failing: the multipart upload is aborted, no object is left.
    let mut sink = registry.open_sink(&d, &d.codec_config()).unwrap();
    write_big_records(&mut sink, 12, 1 << 20).await; // past a part of 5 MiB
    assert_eq!(moto.uploads_in_progress("out"), 1);
    assert!(sink.flush().await.is_err());
    assert_eq!(moto.uploads_in_progress("out"), 0);
    drop(sink);

    // Dropped without finishing: aborted too.
    let mut sink = registry.open_sink(&d, &d.codec_config()).unwrap();
    write_big_records(&mut sink, 12, 1 << 20).await; // past a part of 5 MiB
    assert_eq!(moto.uploads_in_progress("out"), 1);
    drop(sink);
    let mut left = 1;
    for _ in 0..100 {
        left = moto.uploads_in_progress("out");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "the dropped sink's upload is aborted");
    assert!(moto.list("out", "").is_empty());

    // Finished: one object with every record.
    let mut sink = registry.open_sink(&d, &d.codec_config()).unwrap();
    sink.write_batch(batch(1..4)).await.unwrap();
    sink.finish().await.unwrap();
    assert_eq!(
        moto.get("out", "scores.jsonl").unwrap(),
        b"{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_output_completes_an_object_per_flush_and_numbers_on_after_what_is_there() {
    let moto = Moto::start();
    moto.create_bucket("roll");
    let registry = support::registry(support::settings());
    let d = moto.descriptor("roll", "scores/", r#", "Encoding": "csv""#);

    let mut sink = registry.open_sink(&d, &d.codec_config()).unwrap();
    sink.write_batch(batch(1..3)).await.unwrap();
    sink.flush().await.unwrap();
    sink.flush().await.unwrap(); // nothing new: no empty object
    sink.write_batch(batch(3..4)).await.unwrap();
    sink.flush().await.unwrap();
    let report = sink.finish().await.unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.location.as_deref(), Some("s3://roll/scores/"));
    let keys = moto.list("roll", "");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].starts_with("scores/part-00000000-") && keys[0].ends_with(".csv"));
    assert!(keys[1].starts_with("scores/part-00000001-"), "{keys:?}");
    // Each is a whole CSV file, header and all.
    assert_eq!(moto.get("roll", &keys[0]).unwrap(), b"id\n1\n2\n");
    assert_eq!(moto.get("roll", &keys[1]).unwrap(), b"id\n3\n");

    // A second writer numbers on after them; nothing is overwritten.
    let mut sink = registry.open_sink(&d, &d.codec_config()).unwrap();
    sink.write_batch(batch(4..5)).await.unwrap();
    sink.finish().await.unwrap();
    let keys = moto.list("roll", "");
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys[2].starts_with("scores/part-00000002-"), "{keys:?}");

    // Read back as one input, in order.
    let mut source = registry.open_source(&d, &d.codec_config()).unwrap();
    let values: Vec<String> = support::values(&mut source)
        .await
        .unwrap()
        .iter()
        .map(|v| serde_json::to_string(v).unwrap())
        .collect();
    assert_eq!(
        values,
        [r#"{"id":1}"#, r#"{"id":2}"#, r#"{"id":3}"#, r#"{"id":4}"#]
    );

    // A size bound rolls without a flush (it counts what reached the upload: the encoder's
    // 1 MiB buffer aside).
    let mut settings = support::settings();
    settings.roll_bytes = 2 << 20;
    let small = support::registry(settings);
    let d = moto.descriptor("roll", "sized/", r#", "Encoding": "json""#);
    let mut sink = small.open_sink(&d, &d.codec_config()).unwrap();
    write_big_records(&mut sink, 60, 100 << 10).await;
    assert_eq!(sink.finish().await.unwrap().records, 60);
    let sized = moto.list("roll", "sized/");
    assert!(sized.len() >= 2, "{sized:?}");
    let mut source = small.open_source(&d, &d.codec_config()).unwrap();
    assert_eq!(support::values(&mut source).await.unwrap().len(), 60);

    // A part number already at the top of the range is refused by name, not wrapped to 0.
    moto.put("roll", &format!("top/part-{}-x.csv", u64::MAX), b"id\n1\n");
    let d = moto.descriptor("roll", "top/", r#", "Encoding": "csv""#);
    let mut sink = registry.open_sink(&d, &d.codec_config()).unwrap();
    let e = sink.write_batch(batch(1..2)).await.unwrap_err().to_string();
    assert!(
        e.starts_with(
            "s3://roll/top/: the prefix holds an object numbered part-18446744073709551615"
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_buckets_keys_and_servers_are_clear_errors_naming_them() {
    let moto = Moto::start();
    moto.create_bucket("here");
    let registry = support::registry(support::settings());
    let read_err = |d: StreamDescriptor| {
        let registry = registry.clone();
        async move {
            let mut source = registry.open_source(&d, &d.codec_config()).unwrap();
            source.read_batch(10).await.unwrap_err()
        }
    };
    let e = read_err(moto.descriptor("nowhere", "in.jsonl", "")).await;
    let text = e.to_string();
    assert!(
        text.starts_with(
            "s3://nowhere/in.jsonl: the bucket 'nowhere' does not exist (S3 at http://127.0.0.1:"
        ) && !e.is_retriable(),
        "{text}"
    );
    let e = read_err(moto.descriptor("here", "in/missing.jsonl", "")).await;
    let text = e.to_string();
    assert!(
        text.contains("s3://here/in/missing.jsonl: there is no object 'in/missing.jsonl' in the bucket 'here'")
            && !e.is_retriable(),
        "{text}"
    );
    let e = read_err(moto.descriptor("nowhere", "day=1/", "")).await;
    assert!(
        e.to_string()
            .contains("the bucket 'nowhere' does not exist"),
        "{e}"
    );

    // Writing to a missing bucket: the upload fails at the end, named.
    let d = moto.descriptor("nowhere", "out.jsonl", "");
    let mut sink = registry.open_sink(&d, &d.codec_config()).unwrap();
    sink.write_batch(batch(1..3)).await.unwrap();
    let text = error_of(&mut sink).await;
    assert!(
        text.contains("the bucket 'nowhere' does not exist"),
        "{text}"
    );

    // No server there: temporary (the job retries), naming where.
    let port = test_servers::free_port();
    let d = StreamDescriptor::parse(&format!(
        r#"{{"Transport": {{"Type": "S3", "Bucket": "here", "ObjectKey": "in.jsonl",
             "EndpointUrl": "http://127.0.0.1:{port}", "AccessKeyID": "{KEY_ID}",
             "SecretAccessKey": "{SECRET}"}}}}"#
    ))
    .unwrap();
    let e = read_err(d.clone()).await;
    let text = e.to_string();
    assert!(
        e.is_retriable()
            && text.starts_with(&format!(
                "s3://here/in.jsonl: S3 at http://127.0.0.1:{port} cannot be reached for now"
            )),
        "{text}"
    );
    for text in [text, format!("{e:?}"), format!("{d:?}")] {
        assert!(!text.contains(SECRET), "{text}");
    }
    // Fetching a file from it: the same, and no secret either.
    let dir = tempfile::tempdir().unwrap();
    let e = registry.fetch_file(&d, &dir.path().join("x")).unwrap_err();
    assert!(e.is_retriable() && !e.to_string().contains(SECRET), "{e}");
    // Parquet is refused until the codecs read it.
    let pq = moto.descriptor("here", "t/x.parquet", "");
    let e = registry.open_source(&pq, &pq.codec_config()).err().unwrap();
    assert!(
        e.to_string()
            .contains("reading Parquet from S3, HDFS or HTTP is not supported yet"),
        "{e}"
    );
    // A key the store's paths cannot hold is refused at open, before anything is read or
    // written.
    let odd = moto.descriptor("here", "in//x.jsonl", "");
    for e in [
        registry.open_source(&odd, &odd.codec_config()).err(),
        registry.open_sink(&odd, &odd.codec_config()).err(),
    ] {
        let e = e.unwrap().to_string();
        assert!(
            e.starts_with("s3://here/in//x.jsonl: the key cannot be used as it is written"),
            "{e}"
        );
    }
    // An unresolved secret reference is not sent as a key.
    let unresolved = StreamDescriptor::parse(
        r#"{"Transport": {"Type": "S3", "Bucket": "here", "ObjectKey": "k",
             "AccessKeyID": "id", "SecretAccessKey": "secret://s3-key"}}"#,
    )
    .unwrap();
    let e = registry
        .open_source(&unresolved, &unresolved.codec_config())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("'Transport.SecretAccessKey'") && e.contains("not resolved"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_refused_by_name_and_right_ones_come_from_each_source() {
    let moto = S3Server::start_signed(&["locked"]);
    let endpoint = moto.endpoint();
    let (key_id, secret) = moto.access_key().unwrap();
    support::client(&endpoint, "locked", key_id, secret)
        .put(&"in.jsonl".into(), b"{\"a\": 1}\n".to_vec().into())
        .await
        .unwrap();
    let descriptor = |id: &str, secret: &str| {
        StreamDescriptor::parse(&format!(
            r#"{{"Transport": {{"Type": "S3", "Bucket": "locked", "ObjectKey": "in.jsonl",
                 "EndpointUrl": "{}", "AccessKeyID": "{id}", "SecretAccessKey": "{secret}"}}}}"#,
            endpoint
        ))
        .unwrap()
    };
    let registry = support::registry(support::settings());
    let wrong = "wrong-secret-Kx81";
    let d = descriptor(key_id, wrong);
    let mut source = registry.open_source(&d, &d.codec_config()).unwrap();
    let e = source.read_batch(10).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("s3://locked/in.jsonl: access denied reading (S3 at http://127.0.0.1:")
            && text.contains("credentials from the descriptor's AccessKeyID")
            && text.contains("SignatureDoesNotMatch")
            && !e.is_retriable(),
        "{text}"
    );
    assert!(
        !text.contains(wrong) && !format!("{e:?}").contains(wrong),
        "{text}"
    );
    assert!(!source.describe().contains(wrong));

    // The right keys, from the descriptor.
    let d = descriptor(key_id, secret);
    let mut source = registry.open_source(&d, &d.codec_config()).unwrap();
    assert_eq!(support::drain(&mut source).await.unwrap(), [r#"{"a":1}@"#]);

    // From a credentials entry for the bucket, the descriptor naming none.
    let bare = StreamDescriptor::parse(&format!(
        r#"{{"Transport": {{"Type": "S3", "Bucket": "locked", "ObjectKey": "in.jsonl",
             "EndpointUrl": "{endpoint}"}}}}"#
    ))
    .unwrap();
    let mut entry = Credential::for_host("locked");
    entry.access_key_id = Some(key_id.into());
    entry.secret_access_key = Some(secret.into());
    let with_entry =
        support::registry(support::settings()).with_credentials(Credentials::new(vec![entry]));
    let mut source = with_entry.open_source(&bare, &bare.codec_config()).unwrap();
    assert_eq!(support::drain(&mut source).await.unwrap().len(), 1);

    // From the engine's settings, the entry absent; and wrong there, named as theirs.
    let mut settings = support::settings();
    settings.aws.access_key_id = Some(key_id.into());
    settings.aws.secret_access_key = Some(secret.into());
    let mut source = support::registry(settings.clone())
        .open_source(&bare, &bare.codec_config())
        .unwrap();
    assert_eq!(support::drain(&mut source).await.unwrap().len(), 1);
    settings.aws.secret_access_key = Some(wrong.into());
    settings.aws.keys_from = Some("profile ci".into());
    let mut source = support::registry(settings)
        .open_source(&bare, &bare.codec_config())
        .unwrap();
    let text = source.read_batch(1).await.unwrap_err().to_string();
    assert!(
        text.contains("credentials from the engine's profile ci") && !text.contains(wrong),
        "{text}"
    );

    // Writing with wrong keys fails at the upload, named, and leaves nothing.
    let d = StreamDescriptor::parse(&format!(
        r#"{{"Transport": {{"Type": "S3", "Bucket": "locked", "ObjectKey": "out.jsonl",
             "EndpointUrl": "{endpoint}", "AccessKeyID": "{key_id}", "SecretAccessKey": "{wrong}"}}}}"#
    ))
    .unwrap();
    let mut sink = registry.open_sink(&d, &d.codec_config()).unwrap();
    sink.write_batch(batch(1..3)).await.unwrap();
    let text = error_of(&mut sink).await;
    assert!(
        text.contains("access denied writing") && !text.contains(wrong),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_documents_are_read_with_their_credentials_and_statuses_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "1\n2\n3\n").unwrap();
    std::fs::write(dir.path().join("rows.csv"), "a,b\n1,x\n").unwrap();
    let open = HttpFiles::start(dir.path());
    let registry = support::registry(support::settings());
    let read = |url: String| {
        let registry = registry.clone();
        async move {
            let d = StreamDescriptor::parse(&url).unwrap();
            let mut source = registry.open_source(&d, &d.codec_config())?;
            support::drain(&mut source).await
        }
    };
    assert_eq!(
        read(format!("{}/in.jsonl", open.url())).await.unwrap(),
        ["1@", "2@", "3@"]
    );
    assert_eq!(
        read(format!("{}/rows.csv?version=2", open.url()))
            .await
            .unwrap(),
        [r#"{"a":1,"b":"x"}@"#]
    );
    // A transfer cut in the middle is taken up where it stopped (a range request checked
    // against the ETag), for an input and a fetched file alike: by the endpoint itself, the
    // client's own retries turned off.
    let many: String = (0..50_000).map(|i| format!("{i}\n")).collect();
    std::fs::write(dir.path().join("many.jsonl"), &many).unwrap();
    let resuming = support::registry(endpoint_store::StoreSettings {
        max_retries: 0,
        ..support::settings()
    });
    let cut = StreamDescriptor::parse(&format!("{}/cut/many.jsonl", open.url())).unwrap();
    let mut source = resuming.open_source(&cut, &cut.codec_config()).unwrap();
    let got = support::drain(&mut source).await.unwrap();
    assert_eq!(got.len(), 50_000);
    assert_eq!(got[49_999], "49999@");
    let fetched = dir.path().join("fetched.jsonl");
    assert_eq!(
        resuming.fetch_file(&cut, &fetched).unwrap(),
        many.len() as u64
    );
    assert!(std::fs::read_to_string(&fetched).unwrap() == many);
    // Redirects are followed.
    assert_eq!(
        read(format!("{}/redirect/in.jsonl", open.url()))
            .await
            .unwrap()
            .len(),
        3
    );
    // A 404 is fatal and names the URL; a 503 is temporary.
    let e = read(format!("{}/missing.jsonl", open.url()))
        .await
        .unwrap_err();
    assert!(
        !e.is_retriable()
            && e.to_string()
                .starts_with(&format!("{}/missing.jsonl: the HTTP server", open.url())),
        "{e}"
    );
    let e = read(format!("{}/status/503", open.url()))
        .await
        .unwrap_err();
    assert!(e.is_retriable(), "{e}");
    assert!(e.to_string().contains("/status/503"), "{e}");
    let e = read(format!("{}/status/418", open.url()))
        .await
        .unwrap_err();
    assert!(!e.is_retriable() && e.to_string().contains("418"), "{e}");
    // Parquet is refused, the URL's query aside.
    let e = read(format!("{}/t.parquet?v=2", open.url()))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("reading Parquet from S3, HDFS or HTTP is not supported yet"),
        "{e}"
    );
    // An output is refused.
    let d = StreamDescriptor::parse(&format!("{}/out.jsonl", open.url())).unwrap();
    assert!(registry.open_sink(&d, &d.codec_config()).is_err());

    // Behind Basic authentication: the URL's user:password, or a credentials entry.
    let locked = HttpFiles::start_with(dir.path(), "reader", "pa55-word", "");
    let host_url = locked.url();
    let e = read(format!("{host_url}/in.jsonl")).await.unwrap_err();
    assert!(
        e.to_string().contains("access denied") && e.to_string().contains("401"),
        "{e}"
    );
    let with_userinfo = host_url.replacen("http://", "http://reader:pa55-word@", 1);
    assert_eq!(
        read(format!("{with_userinfo}/in.jsonl"))
            .await
            .unwrap()
            .len(),
        3
    );
    let e = read(format!(
        "{}/missing.jsonl",
        host_url.replacen("http://", "http://reader:pa55-word@", 1)
    ))
    .await
    .unwrap_err();
    assert!(!e.to_string().contains("pa55-word"), "{e}");
    let mut entry = Credential::for_host("127.0.0.1");
    entry.username = Some("reader".into());
    entry.password = Some("pa55-word".into());
    let with_entry =
        support::registry(support::settings()).with_credentials(Credentials::new(vec![entry]));
    let d = StreamDescriptor::parse(&format!("{host_url}/in.jsonl")).unwrap();
    let mut source = with_entry.open_source(&d, &d.codec_config()).unwrap();
    assert!(!source.describe().contains("pa55-word"));
    assert_eq!(support::drain(&mut source).await.unwrap().len(), 3);
    // A fetched file, with the entry's bearer token.
    let bearer = HttpFiles::start_with(dir.path(), "", "", "tok-123");
    let mut entry = Credential::for_host("127.0.0.1");
    entry.token = Some("tok-123".into());
    let with_token =
        support::registry(support::settings()).with_credentials(Credentials::new(vec![entry]));
    let d = StreamDescriptor::parse(&format!("{}/in.jsonl", bearer.url())).unwrap();
    let out = tempfile::tempdir().unwrap();
    assert_eq!(
        with_token.fetch_file(&d, &out.path().join("got")).unwrap(),
        6
    );
    assert_eq!(std::fs::read(out.path().join("got")).unwrap(), b"1\n2\n3\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_whose_server_was_away_reads_once_it_is_back() {
    let port = test_servers::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let d = StreamDescriptor::parse(&format!(
        r#"{{"Transport": {{"Type": "S3", "Bucket": "late", "ObjectKey": "in.jsonl",
             "EndpointUrl": "{endpoint}", "AccessKeyID": "{KEY_ID}",
             "SecretAccessKey": "{SECRET}"}}}}"#
    ))
    .unwrap();
    let registry = support::registry(support::settings());
    let mut source = registry.open_source(&d, &d.codec_config()).unwrap();
    // Away: temporary, as a job's input retries with back-off.
    let e = source.read_batch(10).await.unwrap_err();
    assert!(e.is_retriable(), "{e}");
    // Back: the same source reads from the start.
    let moto = S3Server::start_on(port);
    moto.create_bucket("late");
    moto.put("late", "in.jsonl", b"1\n2\n");
    assert_eq!(support::drain(&mut source).await.unwrap(), ["1@", "2@"]);
}
