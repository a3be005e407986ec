//! Stream descriptors, table-driven: JSON and short forms in, the fully defaulted JSON form
//! out; invalid descriptors in, the refused field and a piece of the reason out.

use endpoints::descriptor::{
    Batching, Encoding, Framing, OcfCodec, RestMode, Schema, SkipToRecord, Transport, TransportType,
};
use endpoints::{Direction, StreamDescriptor};
use runtime_core::Error;
use serde_json::{json, Value as Json};

fn parse(text: &str) -> StreamDescriptor {
    StreamDescriptor::parse(text).unwrap_or_else(|e| panic!("{text}\n  refused: {e}"))
}

/// The defaulted fields every descriptor gets unless the case says otherwise.
fn defaulted(mut overrides: Json) -> Json {
    let mut base = json!({
        "Description": null,
        "Batching": {"Watermark": 1000, "NagleTime": 500},
        "LingerTime": 3000,
        "Loop": false,
        "SkipTo": null,
        "SkipToRecord": null,
    });
    let base_map = base.as_object_mut().unwrap();
    for (k, v) in overrides.as_object_mut().unwrap().iter() {
        base_map.insert(k.clone(), v.clone());
    }
    base
}

fn lines() -> Json {
    json!({"Type": "delimited", "Separator": "\n"})
}

fn csv_default() -> Json {
    json!({"Type": "csv", "Delimiter": ",", "QuoteCharacter": "\"", "Header": true})
}

fn kafka(servers: Json, topic: &str) -> Json {
    json!({
        "Type": "Kafka", "BootstrapServers": servers, "Topic": topic,
        "Group": "model-runtime", "CommitOffset": true, "Partition": null, "MaxWaitTime": null, "Metadata": false, "MaxInFlight": null, "Consumers": null,
    })
}

fn s3(bucket: &str, key: &str) -> Json {
    json!({
        "Type": "S3", "Region": null, "Bucket": bucket, "ObjectKey": key,
        "AccessKeyID": null, "SecretAccessKey": null, "EndpointUrl": null, "PathStyle": true,
    })
}

/// JSON descriptors (as users write them) and their fully defaulted form.
fn json_cases() -> Vec<(&'static str, &'static str, Json)> {
    vec![
        (
            "FastScore REST input",
            r#"{"Version": "1.2", "Description": "scores over REST", "Transport": {"Type": "REST"},
                "Encoding": "JSON", "Schema": {"$ref": "input_schema"}}"#,
            defaulted(json!({
                "Version": "1.2", "Description": "scores over REST",
                "Transport": {"Type": "REST", "Mode": "simple"},
                "Encoding": "json", "Envelope": null, "Schema": {"$ref": "input_schema"},
                "Batching": {"Watermark": 1000, "NagleTime": 0},
            })),
        ),
        (
            "REST as a bare string, chunked mode in lower case fields",
            r#"{"transport": {"type": "rest", "mode": "Chunked"}, "encoding": "utf-8"}"#,
            defaulted(json!({
                "Transport": {"Type": "REST", "Mode": "chunked"},
                "Encoding": "utf-8", "Envelope": lines(),
                "Batching": {"Watermark": 1000, "NagleTime": 0},
            })),
        ),
        (
            "Encoding written as the string \"null\" is raw bytes",
            r#"{"Transport": {"Type": "file", "Path": "x.json"}, "Encoding": "NULL"}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "x.json"},
                "Encoding": null, "Envelope": lines(),
            })),
        ),
        (
            "Transport as a string",
            r#"{"Transport": "discard"}"#,
            defaulted(
                json!({"Transport": {"Type": "discard"}, "Encoding": null, "Envelope": null}),
            ),
        ),
        (
            "FastScore Kafka input, brokers as a list",
            r#"{"Transport": {"Type": "kafka", "BootstrapServers": ["127.0.0.1:9092"],
                "Topic": "data-feed-1", "Partition": 0}, "Envelope": null, "Encoding": "json",
                "Schema": "double"}"#,
            defaulted(json!({
                "Transport": {
                    "Type": "Kafka", "BootstrapServers": ["127.0.0.1:9092"], "Topic": "data-feed-1",
                    "Group": "model-runtime", "CommitOffset": true, "Partition": 0, "MaxWaitTime": null, "Metadata": false, "MaxInFlight": null, "Consumers": null,
                },
                "Encoding": "json", "Envelope": null, "Schema": "double",
            })),
        ),
        (
            "Kafka, brokers as a comma string, no group (so no commit)",
            r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "k1:9092, k2:9092",
                "Topic": "t", "Group": null, "MaxWaitTime": 10000}, "Encoding": "avro-binary"}"#,
            defaulted(json!({
                "Transport": {
                    "Type": "Kafka", "BootstrapServers": ["k1:9092", "k2:9092"], "Topic": "t",
                    "Group": null, "CommitOffset": false, "Partition": null, "MaxWaitTime": 10000, "Metadata": false, "MaxInFlight": null, "Consumers": null,
                },
                "Encoding": "avro-binary", "Envelope": null,
            })),
        ),
        (
            "Kafka with this runtime's MaxInFlight, Consumers and client Properties (numbers as text)",
            r#"{"Transport": {"Type": "Kafka", "BootstrapServers": ["b:9092"], "Topic": "in",
                "MaxInFlight": 500, "Consumers": 3, "Properties": {"security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512", "linger.ms": 5, "enable.ssl.certificate.verification": false}}}"#,
            defaulted(json!({
                "Transport": {
                    "Type": "Kafka", "BootstrapServers": ["b:9092"], "Topic": "in",
                    "Group": "model-runtime", "CommitOffset": true, "Partition": null, "MaxWaitTime": null,
                    "Metadata": false, "MaxInFlight": 500, "Consumers": 3,
                    "Properties": {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                        "linger.ms": "5", "enable.ssl.certificate.verification": "false"},
                },
                "Encoding": null, "Envelope": null,
            })),
        ),
        (
            "Kafka, explicit group and no commit, SkipToRecord latest",
            r#"{"Transport": {"Type": "KAFKA", "bootstrapservers": ["b:9092"], "TOPIC": "in",
                "Group": "fraud-model", "CommitOffset": false}, "Encoding": "msgpack",
                "SkipToRecord": "Latest"}"#,
            defaulted(json!({
                "Transport": {
                    "Type": "Kafka", "BootstrapServers": ["b:9092"], "Topic": "in",
                    "Group": "fraud-model", "CommitOffset": false, "Partition": null, "MaxWaitTime": null, "Metadata": false, "MaxInFlight": null, "Consumers": null,
                },
                "Encoding": "msgpack", "Envelope": null, "SkipToRecord": "latest",
            })),
        ),
        (
            "file with JSON lines, encoding and envelope spelled out",
            r#"{"Transport": {"Type": "file", "Path": "/root/data/input.jsons"},
                "Envelope": "delimited", "Encoding": "json", "Schema": null}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "/root/data/input.jsons"},
                "Encoding": "json", "Envelope": lines(), "Schema": null,
            })),
        ),
        (
            "file, encoding guessed from the extension when absent",
            r#"{"Transport": {"Type": "file", "Path": "data/in.CSV"}}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "data/in.CSV"},
                "Encoding": csv_default(), "Envelope": "delimited-csv",
            })),
        ),
        (
            "file, Encoding null is raw even with a .json path",
            r#"{"Transport": {"Type": "file", "Path": "x.json"}, "Encoding": null}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "x.json"},
                "Encoding": null, "Envelope": lines(),
            })),
        ),
        (
            "file, Envelope null: the whole file is one record",
            r#"{"Transport": {"Type": "file", "Path": "one.json"}, "Envelope": null}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "one.json"},
                "Encoding": "json", "Envelope": null,
            })),
        ),
        (
            "csv with options and a custom separator-free envelope",
            r#"{"Transport": {"Type": "file", "Path": "in.txt"},
                "Encoding": {"Type": "CSV", "Delimiter": ";", "QuoteCharacter": "'", "Header": false}}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "in.txt"},
                "Encoding": {"Type": "csv", "Delimiter": ";", "QuoteCharacter": "'", "Header": false},
                "Envelope": "delimited-csv",
            })),
        ),
        (
            "avro container file: ocf-block by default for .avro",
            r#"{"Transport": {"Type": "file", "Path": "/d/scores.avro"}, "Encoding": "avro-binary"}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "/d/scores.avro"},
                "Encoding": "avro-binary", "Envelope": "ocf-block",
            })),
        ),
        (
            "avro container file written with snappy blocks",
            r#"{"Transport": {"Type": "file", "Path": "/d/out.avro"}, "Envelope": {"Type": "OCF-block", "Codec": "Snappy"}}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "/d/out.avro"},
                "Encoding": "avro-binary", "Envelope": {"Type": "ocf-block", "Codec": "snappy"},
            })),
        ),
        (
            "the null block codec is the short form",
            r#"{"Transport": {"Type": "file", "Path": "/d/out.avro"}, "Envelope": {"Type": "ocf", "Codec": null}}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "/d/out.avro"},
                "Encoding": "avro-binary", "Envelope": "ocf-block",
            })),
        ),
        (
            "a Parquet file frames its own rows: no envelope",
            r#"{"Transport": {"Type": "S3", "Bucket": "b", "ObjectKey": "part-0.PARQUET"}}"#,
            defaulted(json!({
                "Transport": s3("b", "part-0.PARQUET"),
                "Encoding": "parquet", "Envelope": null,
            })),
        ),
        (
            "avro-binary datums in a file without .avro: no envelope",
            r#"{"Transport": {"Type": "file", "Path": "/d/datums.bin"}, "Encoding": "Avro-Binary"}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "/d/datums.bin"},
                "Encoding": "avro-binary", "Envelope": null,
            })),
        ),
        (
            "fixed-size raw records from TCP",
            r#"{"Transport": {"Type": "TCP", "Host": "127.0.0.1", "Port": 8182},
                "Encoding": null, "Envelope": {"Type": "fixed", "Size": 16}}"#,
            defaulted(json!({
                "Transport": {"Type": "TCP", "Host": "127.0.0.1", "Port": 8182},
                "Encoding": null, "Envelope": {"Type": "fixed", "Size": 16},
            })),
        ),
        (
            "delimited with its own separator",
            r#"{"Transport": {"Type": "exec", "Run": "cat data.txt"}, "Encoding": "utf-8",
                "Envelope": {"type": "Delimited", "separator": "\r\n"}}"#,
            defaulted(json!({
                "Transport": {"Type": "exec", "Run": "cat data.txt"},
                "Encoding": "utf-8", "Envelope": {"Type": "delimited", "Separator": "\r\n"},
            })),
        ),
        (
            "UDP input binds all addresses by default",
            r#"{"Transport": {"Type": "udp", "Port": 5000}, "Encoding": "json"}"#,
            defaulted(json!({
                "Transport": {"Type": "UDP", "Host": "0.0.0.0", "Port": 5000},
                "Encoding": "json", "Envelope": null,
            })),
        ),
        (
            "S3 with keys and an S3-compatible endpoint",
            r#"{"Transport": {"Type": "S3", "Bucket": "models", "ObjectKey": "in/batch.jsonl",
                "AccessKeyID": "secret://s3-id", "SecretAccessKey": "secret://s3-key",
                "EndpointUrl": "http://minio:9000", "Region": null}}"#,
            defaulted(json!({
                "Transport": {
                    "Type": "S3", "Region": null, "Bucket": "models", "ObjectKey": "in/batch.jsonl",
                    "AccessKeyID": "secret://s3-id", "SecretAccessKey": "secret://s3-key",
                    "EndpointUrl": "http://minio:9000", "PathStyle": true,
                },
                "Encoding": "json", "Envelope": lines(),
            })),
        ),
        (
            "ODBC output, rows are records, JSON by default",
            r#"{"Transport": {"Type": "odbc", "ConnectionString": "DSN=scores;UID=u;PWD=secret://db",
                "InsertIntoTable": "scores", "OutputFields": ["id", "score"]}}"#,
            defaulted(json!({
                "Transport": {
                    "Type": "ODBC", "ConnectionString": "DSN=scores;UID=u;PWD=secret://db",
                    "SelectQuery": null, "InsertIntoTable": "scores", "OutputFields": ["id", "score"],
                },
                "Encoding": "json", "Envelope": null,
            })),
        ),
        (
            "HDFS",
            r#"{"Transport": {"Type": "HDFS", "NameNode": "nn:8020", "Path": "/data/x.msgpack"}}"#,
            defaulted(json!({
                "Transport": {"Type": "HDFS", "NameNode": "nn:8020", "Path": "/data/x.msgpack"},
                "Encoding": "msgpack", "Envelope": null,
            })),
        ),
        (
            "HTTP input, extension read from the URL path, not the query",
            r#"{"Transport": {"Type": "HTTP", "Url": "https://example.org/data/in.csv?v=2"}}"#,
            defaulted(json!({
                "Transport": {"Type": "HTTP", "Url": "https://example.org/data/in.csv?v=2"},
                "Encoding": csv_default(), "Envelope": "delimited-csv",
            })),
        ),
        (
            "inline, one string cut by Separator",
            r#"{"Transport": {"Type": "inline", "Data": "a|b|c", "Separator": "|"}, "Encoding": "utf-8"}"#,
            defaulted(json!({
                "Transport": {"Type": "inline", "Data": ["a", "b", "c"]},
                "Encoding": "utf-8", "Envelope": null,
            })),
        ),
        (
            "inline, one string without Separator is one record; Loop",
            r#"{"Transport": {"Type": "inline", "Data": "{\"x\": 1, \"y\": 2}"}, "Loop": true}"#,
            defaulted(json!({
                "Transport": {"Type": "inline", "Data": ["{\"x\": 1, \"y\": 2}"]},
                "Encoding": "json", "Envelope": null, "Loop": true,
            })),
        ),
        (
            "Batching normal / explicit / null, LingerTime null",
            r#"{"Transport": "REST", "Batching": "explicit", "LingerTime": null}"#,
            defaulted(json!({
                "Transport": {"Type": "REST", "Mode": "simple"}, "Encoding": "json",
                "Envelope": null, "Batching": "explicit", "LingerTime": 0,
            })),
        ),
        (
            "Batching null switches batching off",
            r#"{"Transport": {"Type": "file", "Path": "a.json"}, "Batching": null}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "a.json"}, "Encoding": "json",
                "Envelope": lines(), "Batching": null,
            })),
        ),
        (
            "Batching object: absent NagleTime defaulted, Watermark given",
            r#"{"Transport": {"Type": "file", "Path": "a.json"}, "Batching": {"Watermark": 10}}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "a.json"}, "Encoding": "json",
                "Envelope": lines(), "Batching": {"Watermark": 10, "NagleTime": 500},
            })),
        ),
        (
            "Batching object: NagleTime null means no waiting; SkipToRecord a count",
            r#"{"Transport": {"Type": "file", "Path": "a.json"}, "Batching": {"NagleTime": null},
                "SkipToRecord": 5}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "a.json"}, "Encoding": "json",
                "Envelope": lines(), "Batching": {"Watermark": 1000, "NagleTime": 0},
                "SkipToRecord": 5,
            })),
        ),
        (
            "inline Avro schema object, SkipTo bytes",
            r#"{"Transport": {"Type": "file", "Path": "a.json"}, "SkipTo": 128,
                "Schema": {"type": "record", "name": "in", "fields": [{"name": "x", "type": "double"}]}}"#,
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "a.json"}, "Encoding": "json",
                "Envelope": lines(), "SkipTo": 128,
                "Schema": {"type": "record", "name": "in", "fields": [{"name": "x", "type": "double"}]},
            })),
        ),
        (
            "a schema name as a string becomes a $ref",
            r#"{"Transport": "REST", "Schema": "input_schema.avsc"}"#,
            defaulted(json!({
                "Transport": {"Type": "REST", "Mode": "simple"}, "Encoding": "json",
                "Envelope": null, "Schema": {"$ref": "input_schema.avsc"},
                "Batching": {"Watermark": 1000, "NagleTime": 0},
            })),
        ),
    ]
}

#[test]
fn json_descriptors_give_their_defaulted_form() {
    for (name, input, expected) in json_cases() {
        let d = parse(input);
        assert_eq!(d.to_json(), expected, "case: {name}");
    }
}

/// Short forms and their fully defaulted form.
fn short_cases() -> Vec<(&'static str, Json)> {
    let rest_batching = json!({"Watermark": 1000, "NagleTime": 0});
    vec![
        (
            "rest:",
            defaulted(json!({
                "Transport": {"Type": "REST", "Mode": "simple"}, "Encoding": "json",
                "Envelope": null, "Batching": rest_batching,
            })),
        ),
        (
            "REST:chunked",
            defaulted(json!({
                "Transport": {"Type": "REST", "Mode": "chunked"}, "Encoding": "json",
                "Envelope": lines(), "Batching": rest_batching,
            })),
        ),
        (
            "inline:1,2,3",
            defaulted(json!({
                "Transport": {"Type": "inline", "Data": ["1", "2", "3"]},
                "Encoding": "json", "Envelope": null,
            })),
        ),
        (
            r#"inline:{"a":1,"b":[1,2]},"x,y""#,
            defaulted(json!({
                "Transport": {"Type": "inline", "Data": ["{\"a\":1,\"b\":[1,2]}", "\"x,y\""]},
                "Encoding": "json", "Envelope": null,
            })),
        ),
        (
            "kafka:host:9092/topic.json",
            defaulted(json!({
                "Transport": kafka(json!(["host:9092"]), "topic"),
                "Encoding": "json", "Envelope": null,
            })),
        ),
        (
            "kafka:k1:9092,k2:9092/scores.avro",
            defaulted(json!({
                "Transport": kafka(json!(["k1:9092", "k2:9092"]), "scores"),
                "Encoding": "avro-binary", "Envelope": null,
            })),
        ),
        (
            "kafka://host:9092/events.v1",
            defaulted(json!({
                "Transport": kafka(json!(["host:9092"]), "events.v1"),
                "Encoding": null, "Envelope": null,
            })),
        ),
        (
            "file:/path.json",
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "/path.json"},
                "Encoding": "json", "Envelope": lines(),
            })),
        ),
        (
            "file:data/in.csv",
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "data/in.csv"},
                "Encoding": csv_default(), "Envelope": "delimited-csv",
            })),
        ),
        (
            "file:///abs/x.jsonl",
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "/abs/x.jsonl"},
                "Encoding": "json", "Envelope": lines(),
            })),
        ),
        (
            "/plain/path/out.msgpack",
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "/plain/path/out.msgpack"},
                "Encoding": "msgpack", "Envelope": null,
            })),
        ),
        (
            "relative/notes.txt",
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "relative/notes.txt"},
                "Encoding": "utf-8", "Envelope": lines(),
            })),
        ),
        (
            "images/cat.png",
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "images/cat.png"},
                "Encoding": null, "Envelope": lines(),
            })),
        ),
        (
            "file:in.avro",
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "in.avro"},
                "Encoding": "avro-binary", "Envelope": "ocf-block",
            })),
        ),
        (
            r"C:\data\in.csv",
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "C:\\data\\in.csv"},
                "Encoding": csv_default(), "Envelope": "delimited-csv",
            })),
        ),
        (
            "file:data:2024/x.json",
            defaulted(json!({
                "Transport": {"Type": "file", "Path": "data:2024/x.json"},
                "Encoding": "json", "Envelope": lines(),
            })),
        ),
        (
            r#""rest:""#,
            defaulted(json!({
                "Transport": {"Type": "REST", "Mode": "simple"}, "Encoding": "json",
                "Envelope": null, "Batching": rest_batching,
            })),
        ),
        (
            "s3://bucket/key.csv",
            defaulted(json!({
                "Transport": s3("bucket", "key.csv"),
                "Encoding": csv_default(), "Envelope": "delimited-csv",
            })),
        ),
        (
            "s3://bucket/deep/folder/part-0001",
            defaulted(json!({
                "Transport": s3("bucket", "deep/folder/part-0001"),
                "Encoding": null, "Envelope": lines(),
            })),
        ),
        (
            "discard:",
            defaulted(
                json!({"Transport": {"Type": "discard"}, "Encoding": null, "Envelope": null}),
            ),
        ),
        (
            "hdfs://namenode:8020/path",
            defaulted(json!({
                "Transport": {"Type": "HDFS", "NameNode": "namenode:8020", "Path": "/path"},
                "Encoding": null, "Envelope": lines(),
            })),
        ),
        (
            "webhdfs://namenode:9870/scores/in.jsonl",
            defaulted(json!({
                "Transport": {"Type": "HDFS", "NameNode": "webhdfs://namenode:9870", "Path": "/scores/in.jsonl"},
                "Encoding": "json", "Envelope": lines(),
            })),
        ),
        (
            "SWEBHDFS://namenode/x.jsonl",
            defaulted(json!({
                "Transport": {"Type": "HDFS", "NameNode": "swebhdfs://namenode", "Path": "/x.jsonl"},
                "Encoding": "json", "Envelope": lines(),
            })),
        ),
        (
            "https://example.org/in.json",
            defaulted(json!({
                "Transport": {"Type": "HTTP", "Url": "https://example.org/in.json"},
                "Encoding": "json", "Envelope": lines(),
            })),
        ),
    ]
}

#[test]
fn short_forms_give_their_defaulted_form() {
    for (input, expected) in short_cases() {
        let d = parse(input);
        assert_eq!(d.to_json(), expected, "short form: {input}");
    }
}

#[test]
fn defaulted_form_reads_back_to_the_same_descriptor() {
    let inputs: Vec<String> = json_cases()
        .into_iter()
        .map(|(_, input, _)| input.to_string())
        .chain(short_cases().into_iter().map(|(s, _)| s.to_string()))
        .collect();
    for input in inputs {
        let d = parse(&input);
        let again = StreamDescriptor::from_json(&d.to_json())
            .unwrap_or_else(|e| panic!("{input}: defaulted form refused: {e}"));
        assert_eq!(again, d, "{input}");
        assert_eq!(again.to_json(), d.to_json(), "{input}");
    }
}

/// Invalid descriptors: (input, refused field, piece of the reason).
const INVALID: &[(&str, &str, &str)] = &[
    // The document and the transport.
    ("[1, 2]", "(document)", "JSON object or a short-form string"),
    ("{not json", "(document)", "not valid JSON"),
    (r#"{"Encoding": "json"}"#, "Transport", "is required"),
    (r#"{"Transport": null}"#, "Transport", "is required"),
    (r#"{"Transport": 7}"#, "Transport", "not a number"),
    (r#"{"Transport": {"Path": "x"}}"#, "Transport.Type", "is required"),
    (r#"{"Transport": "kafak"}"#, "Transport.Type", "unknown transport 'kafak'; known transports: REST, HTTP, Kafka, S3, file, ODBC, HDFS, TCP, UDP, exec, inline, discard"),
    (r#"{"Transport": {"Type": "ftp", "Path": "x"}}"#, "Transport.Type", "unknown transport 'ftp'"),
    // Unknown and duplicated fields.
    (r#"{"Transport": "REST", "Encodng": "json"}"#, "Encodng", "did you mean 'Encoding'?"),
    (r#"{"Transport": "REST", "Colour": "red"}"#, "Colour", "unknown field of a stream descriptor"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topik": "t"}}"#, "Transport.Topik", "did you mean 'Topic'?"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t", "MaxInFlight": 0}}"#, "Transport.MaxInFlight", "must be at least 1"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t", "Consumers": 0}}"#, "Transport.Consumers", "must be from 1 to 16"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t", "Consumers": 17}}"#, "Transport.Consumers", "must be from 1 to 16"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t", "Partition": 1, "Consumers": 2}}"#, "Transport.Consumers", "one Partition is read by one consumer"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t", "Properties": ["acks=1"]}}"#, "Transport.Properties", "must be an object"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t", "Properties": {"enable.auto.commit": true}}}"#, "Transport.Properties.enable.auto.commit", "is set by the engine"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t", "Properties": {"linger.ms": [5]}}}"#, "Transport.Properties.linger.ms", "must be a string, a number or a boolean"),
    (r#"{"Transport": {"Type": "file", "Path": "a", "Mode": "simple"}}"#, "Transport.Mode", "unknown field of a file transport"),
    (r#"{"Transport": "REST", "encoding": "json", "Encoding": "json"}"#, "encoding", "given twice"),
    (r#"{"Transport": {"Type": "file", "Path": "a.json"}, "Batching": {"Watermark": 5, "Nagle": 5}}"#, "Batching.Nagle", "unknown field of Batching"),
    (r#"{"Transport": {"Type": "file", "Path": "a"}, "Envelope": {"Type": "fixed", "Sise": 4}, "Encoding": null}"#, "Envelope.Sise", "did you mean 'Size'?"),
    (r#"{"Transport": "REST", "Encoding": {"Type": "json", "Delimiter": ";"}}"#, "Encoding.Delimiter", "unknown field of a json encoding"),
    // Kafka.
    (r#"{"Transport": {"Type": "Kafka", "Topic": "t"}}"#, "Transport.BootstrapServers", "is required"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": ["b:9092"]}}"#, "Transport.Topic", "is required"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": [], "Topic": "t"}}"#, "Transport.BootstrapServers", "at least one"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": ""}}"#, "Transport.Topic", "must not be empty"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t", "Group": null, "CommitOffset": true}}"#, "Transport.CommitOffset", "needs a consumer Group"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t", "Partition": -1}}"#, "Transport.Partition", "must not be negative"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t", "CommitOffset": "yes"}}"#, "Transport.CommitOffset", "must be true or false"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t"}, "Loop": true}"#, "Loop", "only inputs that end can loop"),
    ("kafka:host:9092", "Transport.Topic", "kafka:host:port"),
    // S3, file, HDFS, HTTP, TCP, UDP, exec, ODBC, inline.
    (r#"{"Transport": {"Type": "S3", "ObjectKey": "k"}}"#, "Transport.Bucket", "is required"),
    (r#"{"Transport": {"Type": "S3", "Bucket": "b"}}"#, "Transport.ObjectKey", "is required"),
    ("s3://bucket", "Transport.ObjectKey", "must not be empty"),
    ("s3:bucket/key", "Transport", "s3://bucket/key"),
    (r#"{"Transport": {"Type": "S3", "Bucket": "b", "ObjectKey": "k", "AccessKeyID": "id"}}"#, "Transport.SecretAccessKey", "without its SecretAccessKey"),
    (r#"{"Transport": {"Type": "S3", "Bucket": "b", "ObjectKey": "k", "EndpointUrl": "minio:9000"}}"#, "Transport.EndpointUrl", "not an http:// or https:// URL"),
    (r#"{"Transport": "file"}"#, "Transport.Path", "is required"),
    (r#"{"Transport": {"Type": "file", "Path": null}}"#, "Transport.Path", "is required"),
    ("file:", "Transport.Path", "must not be empty"),
    (r#"{"Transport": {"Type": "file", "Path": 3}}"#, "Transport.Path", "must be a string, not a number"),
    ("hdfs:///only/path", "Transport.NameNode", "must not be empty"),
    (r#"{"Transport": {"Type": "HTTP", "Url": "ftp://x/y"}}"#, "Transport.Url", "not an http"),
    (r#"{"Transport": {"Type": "TCP", "Port": 80}}"#, "Transport.Host", "is required"),
    (r#"{"Transport": {"Type": "TCP", "Host": "h"}}"#, "Transport.Port", "is required"),
    (r#"{"Transport": {"Type": "TCP", "Host": "h", "Port": 0}}"#, "Transport.Port", "1 to 65535"),
    (r#"{"Transport": {"Type": "UDP", "Port": 70000}}"#, "Transport.Port", "1 to 65535"),
    (r#"{"Transport": {"Type": "exec", "Run": " "}}"#, "Transport.Run", "must not be empty"),
    (r#"{"Transport": {"Type": "ODBC", "ConnectionString": "DSN=x"}}"#, "Transport.SelectQuery", "SelectQuery (to read) or InsertIntoTable (to write)"),
    (r#"{"Transport": {"Type": "ODBC", "SelectQuery": "select 1"}}"#, "Transport.ConnectionString", "is required"),
    (r#"{"Transport": {"Type": "ODBC", "ConnectionString": "DSN=x", "SelectQuery": "q"}, "Encoding": "csv"}"#, "Encoding", "must be json"),
    (r#"{"Transport": {"Type": "ODBC", "ConnectionString": "DSN=x", "SelectQuery": "q"}, "Envelope": "delimited"}"#, "Envelope", "must be null"),
    (r#"{"Transport": {"Type": "ODBC", "ConnectionString": "DSN=x", "InsertIntoTable": "t", "OutputFields": []}}"#, "Transport.OutputFields", "at least one field"),
    (r#"{"Transport": "inline"}"#, "Transport.Data", "is required"),
    (r#"{"Transport": {"Type": "inline", "Data": []}}"#, "Transport.Data", "at least one record"),
    ("inline:", "Transport.Data", "at least one record"),
    (r#"{"Transport": {"Type": "inline", "Data": ["a"], "Separator": ","}}"#, "Transport.Separator", "only applies when Data is one string"),
    (r#"{"Transport": {"Type": "inline", "Data": [1, 2]}}"#, "Transport.Data", "must be a string"),
    (r#"{"Transport": {"Type": "REST", "Mode": "streaming"}}"#, "Transport.Mode", "expected one of simple, chunked"),
    // Encodings.
    (r#"{"Transport": "REST", "Encoding": "xml"}"#, "Encoding", "unknown encoding 'xml'; known encodings: null, utf-8, json, csv, msgpack, avro-binary, parquet"),
    (r#"{"Transport": "REST", "Encoding": {"Type": "yaml"}}"#, "Encoding.Type", "unknown encoding 'yaml'"),
    (r#"{"Transport": "REST", "Encoding": 5}"#, "Encoding", "not a number"),
    (r#"{"Transport": {"Type": "file", "Path": "a.csv"}, "Encoding": {"Type": "csv", "Delimiter": ";;"}}"#, "Encoding.Delimiter", "exactly one ASCII character"),
    (r#"{"Transport": {"Type": "file", "Path": "a.csv"}, "Encoding": {"Type": "csv", "Delimiter": "\n"}}"#, "Encoding.Delimiter", "other than a line break"),
    (r#"{"Transport": {"Type": "file", "Path": "a.csv"}, "Encoding": {"Type": "csv", "Delimiter": null}}"#, "Encoding.Delimiter", "CSV needs a delimiter"),
    (r#"{"Transport": {"Type": "file", "Path": "a.csv"}, "Encoding": {"Type": "csv", "QuoteCharacter": ","}}"#, "Encoding.QuoteCharacter", "must differ from the Delimiter"),
    // Envelopes.
    (r#"{"Transport": {"Type": "file", "Path": "a"}, "Encoding": null, "Envelope": "fixed"}"#, "Envelope.Size", "is required"),
    (r#"{"Transport": {"Type": "file", "Path": "a"}, "Encoding": null, "Envelope": {"Type": "fixed", "Size": 0}}"#, "Envelope.Size", "at least 1 byte"),
    (r#"{"Transport": {"Type": "file", "Path": "a"}, "Encoding": null, "Envelope": {"Type": "fixed", "Size": 2.5}}"#, "Envelope.Size", "whole number"),
    (r#"{"Transport": {"Type": "file", "Path": "a"}, "Encoding": "json", "Envelope": {"Type": "fixed", "Size": 8}}"#, "Envelope", "raw bytes"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t"}, "Encoding": null, "Envelope": {"Type": "fixed", "Size": 8}}"#, "Envelope", "carries one record per message"),
    (r#"{"Transport": "REST", "Encoding": null, "Envelope": {"Type": "fixed", "Size": 8}}"#, "Envelope", "carries one record per message"),
    (r#"{"Transport": {"Type": "file", "Path": "a.json"}, "Envelope": "ocf-block"}"#, "Envelope", "ocf-block (an Avro container file) needs Encoding avro-binary, not json"),
    (r#"{"Transport": {"Type": "file", "Path": "a.json"}, "Envelope": "delimited-csv"}"#, "Envelope", "delimited-csv needs Encoding csv, not json"),
    (r#"{"Transport": {"Type": "file", "Path": "a.csv"}, "Envelope": "delimited"}"#, "Envelope", "framed by delimited-csv"),
    (r#"{"Transport": {"Type": "file", "Path": "a.mp"}, "Encoding": "msgpack", "Envelope": "delimited"}"#, "Envelope", "msgpack records are binary"),
    (r#"{"Transport": {"Type": "file", "Path": "a"}, "Envelope": {"Type": "delimited", "Separator": ""}}"#, "Envelope.Separator", "must not be empty"),
    (r#"{"Transport": {"Type": "file", "Path": "a"}, "Envelope": {"Type": "delimited", "Separator": null}}"#, "Envelope.Separator", "needs a separator"),
    (r#"{"Transport": {"Type": "file", "Path": "a"}, "Envelope": "framed"}"#, "Envelope", "unknown envelope 'framed'"),
    (r#"{"Transport": {"Type": "file", "Path": "a.parquet"}, "Envelope": "delimited"}"#, "Envelope", "a Parquet file frames its own rows: its envelope is null, not delimited"),
    (r#"{"Transport": "REST", "Encoding": "parquet"}"#, "Encoding", "travels on file, S3, HDFS or HTTP, not REST"),
    (r#"{"Transport": {"Type": "Kafka", "BootstrapServers": "b:9092", "Topic": "t"}, "Encoding": "parquet"}"#, "Encoding", "not Kafka (one record per message)"),
    (r#"{"Transport": {"Type": "file", "Path": "a.avro"}, "Envelope": {"Type": "ocf-block", "Codec": "lzo"}}"#, "Envelope.Codec", "unknown Avro block codec 'lzo'; known codecs: null, deflate, snappy, zstandard"),
    (r#"{"Transport": {"Type": "file", "Path": "a.avro"}, "Envelope": {"Type": "ocf-block", "Codec": 1}}"#, "Envelope.Codec", "must be a string"),
    (r#"{"Transport": {"Type": "file", "Path": "a"}, "Envelope": {"Type": "delimited", "Codec": "snappy"}}"#, "Envelope.Codec", "unknown field"),
    (r#"{"Transport": {"Type": "file", "Path": "a"}, "Envelope": {"Size": 3}}"#, "Envelope.Type", "is required"),
    // Batching, schema, reading options.
    (r#"{"Transport": "REST", "Batching": {"Watermark": 0}}"#, "Batching.Watermark", "positive number of records"),
    (r#"{"Transport": "REST", "Batching": {"Watermark": -5}}"#, "Batching.Watermark", "must not be negative"),
    (r#"{"Transport": "REST", "Batching": {"Watermark": null}}"#, "Batching.Watermark", "\"Batching\": null"),
    (r#"{"Transport": "REST", "Batching": "adaptive"}"#, "Batching", "unknown batching 'adaptive'"),
    (r#"{"Transport": "REST", "Batching": {"NagleTime": -1}}"#, "Batching.NagleTime", "must not be negative"),
    (r#"{"Transport": "REST", "LingerTime": "3s"}"#, "LingerTime", "must be a number, not a string"),
    (r#"{"Transport": "REST", "Schema": {"$ref": "a", "type": "int"}}"#, "Schema", "takes no other field"),
    (r#"{"Transport": "REST", "Schema": ""}"#, "Schema", "must not be empty"),
    (r#"{"Transport": "REST", "Schema": 3}"#, "Schema", "not a number"),
    (r#"{"Transport": "REST", "Loop": true}"#, "Loop", "no start to go back to"),
    (r#"{"Transport": "REST", "SkipToRecord": 3}"#, "SkipToRecord", "no records to skip"),
    (r#"{"Transport": {"Type": "file", "Path": "a.json"}, "SkipToRecord": "latest"}"#, "SkipToRecord", "Kafka positions"),
    (r#"{"Transport": {"Type": "file", "Path": "a.json"}, "SkipToRecord": "middle"}"#, "SkipToRecord", "unknown position 'middle'"),
    (r#"{"Transport": {"Type": "inline", "Data": ["1"]}, "SkipTo": 4}"#, "SkipTo", "seekable input"),
    (r#"{"Transport": {"Type": "file", "Path": "a.json"}, "SkipTo": 4, "SkipToRecord": 2}"#, "SkipTo", "not both"),
    // Short forms.
    ("", "Transport", "empty short form"),
    ("ftp://host/file.csv", "Transport", "unknown short form 'ftp:'"),
    ("discard:now", "Transport", "takes nothing after the colon"),
    ("data:2024/x.csv", "Transport", "write file:data:2024/x.csv"),
];

fn refusal(result: Result<StreamDescriptor, Error>, input: &str) -> (String, String) {
    match result {
        Err(Error::Descriptor { field, reason }) => (field, reason),
        Err(other) => panic!("{input}: refused with the wrong error: {other}"),
        Ok(d) => panic!("{input}: accepted, but should be refused: {d:?}"),
    }
}

#[test]
fn invalid_descriptors_are_refused_naming_the_field() {
    let mut failures = Vec::new();
    for (input, field, reason) in INVALID {
        match StreamDescriptor::parse(input) {
            Err(Error::Descriptor {
                field: got_field,
                reason: got_reason,
            }) => {
                if got_field != *field || !got_reason.contains(reason) {
                    failures.push(format!(
                        "{input}\n  expected {field}: ..{reason}..\n  got      {got_field}: {got_reason}"
                    ));
                }
            }
            Err(other) => failures.push(format!("{input}\n  wrong error: {other}")),
            Ok(d) => failures.push(format!("{input}\n  accepted: {d:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_message_names_field_and_reason() {
    let err = StreamDescriptor::parse(r#"{"Transport": {"Type": "Kafka", "Topic": "t"}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'Transport.BootstrapServers'") && err.contains("is required"),
        "{err}"
    );
}

/// `None` if accepted, else the refused field and a piece of the reason.
type Expected = Option<(&'static str, &'static str)>;

/// (descriptor, direction, expected outcome).
const DIRECTIONS: &[(&str, Direction, Expected)] = &[
    ("inline:1,2", Direction::Input, None),
    (
        "inline:1,2",
        Direction::Output,
        Some(("Transport.Type", "inline cannot be an output")),
    ),
    (
        r#"{"Transport": {"Type": "exec", "Run": "gen"}}"#,
        Direction::Input,
        None,
    ),
    (
        r#"{"Transport": {"Type": "exec", "Run": "gen"}}"#,
        Direction::Output,
        Some(("Transport.Type", "exec cannot be an output")),
    ),
    (
        "https://h/x.json",
        Direction::Output,
        Some(("Transport.Type", "HTTP cannot be an output")),
    ),
    ("discard:", Direction::Output, None),
    (
        "discard:",
        Direction::Input,
        Some(("Transport.Type", "discard cannot be an input")),
    ),
    (
        r#"{"Transport": {"Type": "ODBC", "ConnectionString": "c", "SelectQuery": "q"}}"#,
        Direction::Input,
        None,
    ),
    (
        r#"{"Transport": {"Type": "ODBC", "ConnectionString": "c", "SelectQuery": "q"}}"#,
        Direction::Output,
        Some(("Transport.InsertIntoTable", "table it inserts into")),
    ),
    (
        r#"{"Transport": {"Type": "ODBC", "ConnectionString": "c", "InsertIntoTable": "t"}}"#,
        Direction::Output,
        None,
    ),
    (
        r#"{"Transport": {"Type": "ODBC", "ConnectionString": "c", "InsertIntoTable": "t"}}"#,
        Direction::Input,
        Some(("Transport.SelectQuery", "query whose rows it reads")),
    ),
    (
        r#"{"Transport": {"Type": "file", "Path": "a.json"}, "Loop": true}"#,
        Direction::Input,
        None,
    ),
    (
        r#"{"Transport": {"Type": "file", "Path": "a.json"}, "Loop": true}"#,
        Direction::Output,
        Some(("Loop", "only an input can loop")),
    ),
    (
        r#"{"Transport": {"Type": "file", "Path": "a.json"}, "SkipTo": 10}"#,
        Direction::Output,
        Some(("SkipTo", "only an input")),
    ),
    (
        r#"{"Transport": {"Type": "file", "Path": "a.json"}, "SkipToRecord": 10}"#,
        Direction::Output,
        Some(("SkipToRecord", "only an input")),
    ),
    (
        r#"{"Transport": {"Type": "UDP", "Port": 9}}"#,
        Direction::Input,
        None,
    ),
    (
        r#"{"Transport": {"Type": "UDP", "Port": 9}}"#,
        Direction::Output,
        Some(("Transport.Host", "host it sends to")),
    ),
    (
        r#"{"Transport": {"Type": "UDP", "Host": "10.0.0.2", "Port": 9}}"#,
        Direction::Output,
        None,
    ),
    ("kafka:b:9092/out.json", Direction::Output, None),
    ("rest:", Direction::Input, None),
    ("rest:", Direction::Output, None),
    ("s3://b/out.csv", Direction::Output, None),
];

#[test]
fn validate_for_tells_inputs_from_outputs() {
    for (input, direction, expected) in DIRECTIONS {
        let d = parse(input);
        let result = d.validate_for(*direction).map(|()| d.clone());
        match expected {
            None => {
                if let Err(e) = result {
                    panic!("{input} as {direction}: refused: {e}");
                }
            }
            Some((field, reason)) => {
                let (got_field, got_reason) = refusal(result, input);
                assert_eq!(&got_field, field, "{input} as {direction}: {got_reason}");
                assert!(
                    got_reason.contains(reason),
                    "{input} as {direction}: {got_reason:?} lacks {reason:?}"
                );
            }
        }
    }
}

#[test]
fn message_transports() {
    let cases: &[(&str, bool)] = &[
        ("rest:", true),
        ("rest:chunked", false),
        ("kafka:b:9092/t", true),
        ("inline:1", true),
        (r#"{"Transport": {"Type": "UDP", "Port": 9}}"#, true),
        (
            r#"{"Transport": {"Type": "ODBC", "ConnectionString": "c", "SelectQuery": "q"}}"#,
            true,
        ),
        ("discard:", true),
        ("file:a.json", false),
        ("s3://b/k", false),
        ("hdfs://nn:8020/p", false),
        ("http://h/x", false),
        (
            r#"{"Transport": {"Type": "TCP", "Host": "h", "Port": 1}}"#,
            false,
        ),
        (r#"{"Transport": {"Type": "exec", "Run": "x"}}"#, false),
    ];
    for (input, expected) in cases {
        assert_eq!(parse(input).is_message_transport(), *expected, "{input}");
    }
}

#[test]
fn secrets_resolve_through_the_lookup_and_stay_references_in_json() {
    let input = r#"{"Transport": {"Type": "S3", "Bucket": "b", "ObjectKey": "k.json",
        "AccessKeyID": "secret://id", "SecretAccessKey": "secret://key"}}"#;
    let mut d = parse(input);
    let before = d.to_json();
    assert_eq!(
        d.unresolved_secrets(),
        vec![
            ("Transport.AccessKeyID".to_string(), "id".to_string()),
            ("Transport.SecretAccessKey".to_string(), "key".to_string()),
        ]
    );
    d.resolve_secrets(|name| match name {
        "id" => Some("AKIA-TEST".to_string()),
        "key" => Some("very-secret-value".to_string()),
        _ => None,
    })
    .unwrap();
    let Transport::S3(s3) = &d.transport else {
        panic!("not S3: {d:?}")
    };
    assert_eq!(s3.access_key_id.as_deref(), Some("AKIA-TEST"));
    assert_eq!(s3.secret_access_key.as_deref(), Some("very-secret-value"));
    assert!(d.unresolved_secrets().is_empty());
    // The defaulted form and Debug show the references, never the values.
    assert_eq!(d.to_json(), before);
    let debug = format!("{d:?}");
    assert!(
        !debug.contains("very-secret-value") && debug.contains("secret://key"),
        "{debug}"
    );
    // Resolving again changes nothing and asks for nothing.
    d.resolve_secrets(|_| panic!("nothing left to resolve"))
        .unwrap();
}

#[test]
fn a_resolved_value_is_never_resolved_again() {
    let mut d = parse(r#"{"Transport": {"Type": "exec", "Run": "secret://cmd"}}"#);
    d.resolve_secrets(|_| Some("secret://looks-like-a-reference".to_string()))
        .unwrap();
    assert!(d.unresolved_secrets().is_empty());
    d.resolve_secrets(|_| None).unwrap();
    assert_eq!(
        d.transport,
        Transport::Exec {
            run: "secret://looks-like-a-reference".into()
        }
    );
    assert_eq!(d.to_json()["Transport"]["Run"], json!("secret://cmd"));
}

#[test]
fn secrets_in_lists_and_connection_strings() {
    let mut d = parse(
        r#"{"Transport": {"Type": "Kafka", "BootstrapServers": ["plain:9092", "secret://broker"],
            "Topic": "t"}}"#,
    );
    d.resolve_secrets(|n| (n == "broker").then(|| "hidden:9093".to_string()))
        .unwrap();
    let Transport::Kafka(k) = &d.transport else {
        panic!("not Kafka")
    };
    assert_eq!(k.bootstrap_servers, ["plain:9092", "hidden:9093"]);
    assert_eq!(
        d.to_json()["Transport"]["BootstrapServers"],
        json!(["plain:9092", "secret://broker"])
    );
}

#[test]
fn unknown_secret_names_the_field_and_changes_nothing() {
    let mut d = parse(
        r#"{"Transport": {"Type": "S3", "Bucket": "b", "ObjectKey": "k",
            "AccessKeyID": "secret://id", "SecretAccessKey": "secret://missing"}}"#,
    );
    let before = d.clone();
    let result = d
        .resolve_secrets(|name| (name == "id").then(|| "x".to_string()))
        .map(|()| d.clone());
    let (field, reason) = refusal(result, "unknown secret");
    assert_eq!(field, "Transport.SecretAccessKey");
    assert!(reason.contains("secret 'missing' is not known"), "{reason}");
    assert_eq!(
        d, before,
        "a failed resolution must leave the descriptor as it was"
    );

    let mut d = parse(r#"{"Transport": {"Type": "file", "Path": "secret://"}}"#);
    let (field, reason) = refusal(d.resolve_secrets(|_| None).map(|()| d.clone()), "empty");
    assert_eq!(field, "Transport.Path");
    assert!(reason.contains("names no secret"), "{reason}");
}

#[test]
fn typed_fields_match_the_json() {
    let d = parse("kafka:k:9092/scores.json");
    let Transport::Kafka(k) = &d.transport else {
        panic!("not Kafka: {d:?}")
    };
    assert_eq!(k.bootstrap_servers, ["k:9092"]);
    assert_eq!(k.topic, "scores");
    assert_eq!(k.group.as_deref(), Some("model-runtime"));
    assert!(k.commit_offset);
    assert_eq!(d.encoding, Encoding::Json);
    assert_eq!(d.envelope, None);
    assert_eq!(d.schema, Schema::Inherit);
    assert_eq!(
        d.batching,
        Batching::Normal(runtime_core::Batching {
            size: 1000,
            max_wait: Some(std::time::Duration::from_millis(500))
        })
    );
    assert_eq!(d.transport.transport_type(), TransportType::Kafka);

    let d = parse(r#"{"Transport": {"Type": "Rest", "Mode": "CHUNKED"}, "SkipToRecord": null}"#);
    assert_eq!(
        d.transport,
        Transport::Rest {
            mode: RestMode::Chunked
        }
    );
    assert_eq!(d.envelope, Some(Framing::Lines));
    assert_eq!(d.skip_to_record, None);

    let d = parse(r#"{"Transport": {"Type": "file", "Path": "p.json"}, "SkipToRecord": 2}"#);
    assert_eq!(d.skip_to_record, Some(SkipToRecord::Index(2)));
}

#[test]
fn ocf_block_codec_reaches_the_codec_config() {
    let d = parse(
        r#"{"Transport": {"Type": "file", "Path": "out.avro"}, "Envelope": {"Type": "ocf-block", "Codec": "zstd"}}"#,
    );
    assert_eq!(d.ocf_codec, OcfCodec::Zstandard);
    assert_eq!(d.codec_config().ocf_codec, OcfCodec::Zstandard);
    assert_eq!(
        parse("file:out.avro").codec_config().ocf_codec,
        OcfCodec::Null
    );
    // Parquet: no envelope, read through its own framing.
    let d = parse("file:data/part-0.parquet");
    assert_eq!((d.encoding, &d.envelope), (Encoding::Parquet, &None));
    assert_eq!(d.codec_config().framing, Some(Framing::ParquetFile));

    // Set by hand on another envelope, it is refused rather than ignored.
    let mut d = parse("file:out.jsonl");
    d.ocf_codec = OcfCodec::Snappy;
    let (field, _) = refusal(d.validate().map(|()| d.clone()), "codec on lines");
    assert_eq!(field, "Envelope.Codec");
}

#[test]
fn new_fills_the_same_defaults_as_parsing() {
    let built = StreamDescriptor::new(
        Transport::File {
            path: "in.csv".into(),
        },
        "CSV".parse::<Encoding>().unwrap(),
    );
    assert_eq!(built, parse("file:in.csv"));
    built.validate().unwrap();

    let mut changed = built.clone();
    changed.envelope = Some(Framing::Fixed { size: 0 });
    let (field, _) = refusal(changed.validate().map(|()| changed.clone()), "Size 0");
    assert_eq!(field, "Envelope.Size");
}

#[test]
fn serde_reads_both_forms_and_writes_the_defaulted_form() {
    #[derive(serde::Deserialize, serde::Serialize)]
    struct Job {
        input: StreamDescriptor,
        output: StreamDescriptor,
    }
    let job: Job = serde_json::from_value(json!({
        "input": "file:in.jsonl",
        "output": {"Transport": "discard"},
    }))
    .unwrap();
    assert_eq!(job.input, parse("file:in.jsonl"));
    let written = serde_json::to_value(&job).unwrap();
    assert_eq!(written["output"], parse("discard:").to_json());

    let err = serde_json::from_value::<Job>(json!({
        "input": {"Transport": "kafka"},
        "output": "discard:",
    }))
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("Transport.BootstrapServers"), "{err}");
}

#[test]
fn from_str_is_parse() {
    let d: StreamDescriptor = "rest:".parse().unwrap();
    assert_eq!(d, parse(r#"{"Transport": "REST"}"#));
}

#[test]
fn secrets_written_as_values_are_hidden_in_the_shown_form_and_debug() {
    let d = parse(
        r#"{"Transport": {"Type": "S3", "Bucket": "b", "ObjectKey": "k.json",
            "AccessKeyID": "AKIA-TEST", "SecretAccessKey": "wJalr-very-secret",
            "EndpointUrl": "http://minio:minio-pw@minio:9000"}}"#,
    );
    // The stored form keeps them (the engine opens the stream again from it).
    let stored = d.to_json().to_string();
    assert!(stored.contains("wJalr-very-secret"), "{stored}");
    let shown = d.to_shown_json();
    assert_eq!(shown["Transport"]["SecretAccessKey"], json!("***"));
    assert_eq!(shown["Transport"]["AccessKeyID"], json!("AKIA-TEST"));
    assert_eq!(
        shown["Transport"]["EndpointUrl"],
        json!("http://minio:***@minio:9000")
    );
    for text in [shown.to_string(), format!("{d:?}")] {
        assert!(
            !text.contains("wJalr-very-secret") && !text.contains("minio-pw"),
            "{text}"
        );
    }
    let Transport::S3(s3) = &d.transport else {
        panic!("not S3")
    };
    let debug = format!("{s3:?}");
    assert!(!debug.contains("wJalr-very-secret"), "{debug}");
    assert!(s3.path_style && s3.region.is_none(), "{debug}");
    let http = parse(r#"{"Transport": {"Type": "HTTP", "Url": "https://u:pw@h/x.json?a=1"}}"#);
    assert_eq!(
        http.to_shown_json()["Transport"]["Url"],
        json!("https://u:***@h/x.json?a=1")
    );
    let virtual_hosted = parse(
        r#"{"Transport": {"Type": "S3", "Bucket": "b", "ObjectKey": "k", "PathStyle": false}}"#,
    );
    let Transport::S3(s3) = &virtual_hosted.transport else {
        panic!("not S3")
    };
    assert!(!s3.path_style);
}
