//! The WebHDFS test server and this store checked against Apache Hadoop's own client,
//! `org.apache.hadoop.hdfs.web.WebHdfsFileSystem` from the Hadoop jars pyspark ships: files
//! written through one read back identically through the other, listings included. One JVM
//! per run (`tests/hadoop_client.py`, through py4j; pyspark from
//! scripts/requirements-test.txt, Java 17).

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use object_store_webhdfs::{WebHdfs, WebHdfsBuilder};
use serde_json::{json, Value};
use test_servers::WebHdfsServer;

/// Byte `i` is `(7 i + seed + i / 1024) mod 256`, as `pattern` in hadoop_client.py.
fn pattern(n: usize, seed: usize) -> Bytes {
    (0..n)
        .map(|i| ((i * 7 + seed + (i >> 10)) & 0xff) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Runs hadoop_client.py with `spec`; its result. Fails loudly when pyspark or Java is
/// missing, with what the script said.
fn hadoop_client(spec: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hadoop_client.py");
    let python = test_servers::python();
    let mut child = Command::new(&python)
        .arg(script)
        .arg(spec.to_string())
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("HADOOP_USER_NAME", "alice")
        .env("PYSPARK_PYTHON", &python)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    // Read both pipes while waiting, so a chatty JVM never blocks on a full one.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // A guard against a hung JVM, not a measure: far above the ~15 s a run takes.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hadoop_client.py did not finish in 600 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let result = out.lines().find_map(|l| l.strip_prefix("RESULT "));
    match (status.success(), result) {
        (true, Some(result)) => serde_json::from_str(result).unwrap(),
        _ => {
            let hint = if err.contains("No module named 'pyspark'") {
                "\npyspark is missing: pip install pyspark==4.3.0 (scripts/requirements-test.txt; \
                 scripts/setup installs it)"
            } else if err.contains("JAVA_HOME") || err.contains("java: not found") {
                "\nJava is missing: Hadoop's client needs a Java runtime (17)"
            } else {
                ""
            };
            panic!("hadoop_client.py failed ({status}){hint}\nstdout:\n{out}\nstderr:\n{err}")
        }
    }
}

/// Fails saying where `got` first differs from `want` (not printing megabytes).
fn same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes where {} were expected, first difference at {at:?}",
            got.len(),
            want.len()
        );
    }
}

async fn read(store: &WebHdfs, path: &str) -> Bytes {
    store
        .get(&Path::parse(path).unwrap())
        .await
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
        .bytes()
        .await
        .unwrap()
}

/// Every file under `prefix` through the store: absolute path and size, sorted.
async fn listed(store: &WebHdfs, prefix: &str) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = store
        .list(Some(&Path::from(prefix)))
        .map_ok(|m| (format!("/{}", m.location), m.size))
        .try_collect()
        .await
        .unwrap();
    files.sort();
    files
}

fn as_files(v: &Value) -> Vec<(String, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| (f[0].as_str().unwrap().to_owned(), f[1].as_u64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_read_back_identically_through_hadoops_webhdfs_client_and_this_store() {
    let server = WebHdfsServer::start();
    let store = WebHdfsBuilder::new()
        .with_url(server.webhdfs_url())
        .with_user("alice")
        .build()
        .unwrap();

    // Written here: a put, a multipart upload of several MiB, a nested file, an empty one,
    // a name that needs encoding.
    let mut ours: BTreeMap<&str, Bytes> = BTreeMap::new();
    ours.insert("/from-rust/small.txt", Bytes::from("hello from rust\n"));
    ours.insert("/from-rust/big.bin", pattern(5 * 1024 * 1024 + 123, 1));
    ours.insert("/from-rust/sub/nested.csv", Bytes::from("a,b\n1,2\n"));
    ours.insert("/from-rust/empty", Bytes::new());
    ours.insert("/from-rust/day=1/a b+c%.txt", Bytes::from("odd name"));
    for (path, data) in &ours {
        let location = Path::parse(&path[1..]).unwrap();
        if data.len() > 1024 * 1024 {
            let upload = store.put_multipart(&location).await.unwrap();
            let mut writer = WriteMultipart::new_with_chunk_size(upload, 1024 * 1024);
            writer.write(data);
            writer.finish().await.unwrap();
        } else {
            store.put(&location, data.clone().into()).await.unwrap();
        }
    }

    // Written there: files of several sizes, one appended to, one renamed, one deleted.
    let theirs = [
        ("/from-hadoop/small.txt", 100, 2),
        ("/from-hadoop/big.bin", 6 * 1024 * 1024 + 7, 3),
        ("/from-hadoop/dir/nested.bin", 10 * 1024, 4),
        ("/from-hadoop/appended.bin", 1000, 5),
        ("/from-hadoop/to-rename.bin", 10, 7),
        ("/from-hadoop/to-delete.bin", 10, 8),
    ];
    let spec = json!({
        "url": server.webhdfs_url(),
        "list": ["/from-rust"],
        "copy": ours.keys().collect::<Vec<_>>(),
        "ranges": [["/from-rust/big.bin", 3_000_000, 100_000]],
        "write": theirs.iter().map(|(p, n, s)| json!({"path": p, "size": n, "seed": s})).collect::<Vec<_>>(),
        "append": [{"path": "/from-hadoop/appended.bin", "size": 2000, "seed": 6}],
        "rename": [["/from-hadoop/to-rename.bin", "/from-hadoop/dir/renamed.bin"]],
        "delete": ["/from-hadoop/to-delete.bin"],
    });
    server.clear_requests();
    let result = hadoop_client(&spec);
    // Hadoop's client used the operations the server implements for it, as user alice, and
    // moved the data through the datanode.
    let requests = server.requests();
    let ops: std::collections::BTreeSet<(&str, &str)> =
        requests.iter().map(|r| (r.role, r.op.as_str())).collect();
    for op in [
        ("namenode", "GETFILESTATUS"),
        ("namenode", "LISTSTATUS"),
        ("namenode", "GETFILEBLOCKLOCATIONS"),
        ("namenode", "GETHOMEDIRECTORY"),
        ("namenode", "RENAME"),
        ("namenode", "DELETE"),
        ("datanode", "OPEN"),
        ("datanode", "CREATE"),
        ("datanode", "APPEND"),
    ] {
        assert!(ops.contains(&op), "Hadoop's client sent no {op:?}: {ops:?}");
    }
    assert!(requests
        .iter()
        .all(|r| r.param("user.name") == Some("alice")));

    // Hadoop's client lists and reads what this store wrote.
    let expected: Vec<(String, u64)> = ours
        .iter()
        .map(|(p, d)| (p.to_string(), d.len() as u64))
        .collect();
    assert_eq!(as_files(&result["listFiles"]["/from-rust"]), expected);
    assert_eq!(listed(&store, "from-rust").await, expected);
    let flat: Vec<(String, bool, u64)> = result["listStatus"]["/from-rust"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap().to_owned(),
                e[1].as_bool().unwrap(),
                e[2].as_u64().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = flat.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["big.bin", "day=1", "empty", "small.txt", "sub"]);
    let mut shallow = store
        .list_with_delimiter(Some(&Path::from("from-rust")))
        .await
        .unwrap();
    shallow.objects.sort_by(|a, b| a.location.cmp(&b.location));
    let files: Vec<String> = shallow
        .objects
        .iter()
        .map(|m| m.location.to_string())
        .collect();
    assert_eq!(
        files,
        [
            "from-rust/big.bin",
            "from-rust/empty",
            "from-rust/small.txt"
        ]
    );
    for (path, data) in &ours {
        assert_eq!(
            result["read"][path].as_u64(),
            Some(data.len() as u64),
            "{path}"
        );
        // What Hadoop read, written again through Hadoop, reads back here as the original.
        same(&read(&store, &path[1..]).await, data, path);
        same(
            &read(&store, &format!("roundtrip{path}")).await,
            data,
            &format!("{path} as Hadoop read it"),
        );
    }
    let big = &ours["/from-rust/big.bin"];
    same(
        &read(&store, "ranges/from-rust/big.bin.3000000").await,
        &big[3_000_000..3_100_000],
        "a range of big.bin as Hadoop read it",
    );

    // This store reads what Hadoop's client wrote.
    for (path, size, seed) in theirs.iter().take(3) {
        assert_eq!(
            read(&store, &path[1..]).await,
            pattern(*size, *seed),
            "{path}"
        );
        assert_eq!(
            result["blocks"][path],
            json!([[0, size]]),
            "{path}: one block (under 128 MiB)"
        );
    }
    let appended = [pattern(1000, 5), pattern(2000, 6)].concat();
    same(
        &read(&store, "from-hadoop/appended.bin").await,
        &appended,
        "appended.bin",
    );
    let range = store
        .get_range(&Path::from("from-hadoop/big.bin"), 4_000_000..4_000_010)
        .await
        .unwrap();
    assert_eq!(
        range,
        pattern(6 * 1024 * 1024 + 7, 3).slice(4_000_000..4_000_010)
    );
    assert_eq!(result["renamed"], json!([true]));
    assert_eq!(result["deleted"], json!([true]));
    same(
        &read(&store, "from-hadoop/dir/renamed.bin").await,
        &pattern(10, 7),
        "renamed.bin",
    );
    assert_eq!(
        listed(&store, "from-hadoop").await,
        [
            ("/from-hadoop/appended.bin".to_owned(), 3000),
            ("/from-hadoop/big.bin".to_owned(), 6 * 1024 * 1024 + 7),
            ("/from-hadoop/dir/nested.bin".to_owned(), 10 * 1024),
            ("/from-hadoop/dir/renamed.bin".to_owned(), 10),
            ("/from-hadoop/small.txt".to_owned(), 100),
        ]
    );
    assert_eq!(result["home"], json!("/user/alice"));
}
