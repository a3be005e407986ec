//! The store against the WebHDFS test server: what each operation sends where (the
//! namenode's redirects, the two-step writes, the authentication), and each failure as the
//! caller sees it.

use std::error::Error as _;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, WriteMultipart};
use object_store_webhdfs::{Error, WebHdfs, WebHdfsBuilder};
use test_servers::{WebHdfsOptions, WebHdfsServer};

fn store(server: &WebHdfsServer) -> WebHdfs {
    WebHdfsBuilder::new()
        .with_url(format!("{}/data", server.webhdfs_url()))
        .with_user("alice")
        .build()
        .unwrap()
}

/// The whole object at `path`.
async fn read(store: &WebHdfs, path: &Path) -> Bytes {
    store.get(path).await.unwrap().bytes().await.unwrap()
}

/// The paths of every object `list` gives under `prefix`, sorted.
async fn listed(store: &WebHdfs, prefix: Option<&Path>) -> Vec<String> {
    let mut paths: Vec<String> = store
        .list(prefix)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    paths.sort();
    paths
}

/// `n` bytes that differ from offset to offset, so a misplaced range shows.
fn pattern(n: usize) -> Bytes {
    (0..n)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The crate's error behind an `object_store::Error`.
fn webhdfs_error(e: &object_store::Error) -> &Error {
    e.source()
        .and_then(|s| s.downcast_ref::<Error>())
        .unwrap_or_else(|| panic!("not a WebHDFS error: {e:?}"))
}

/// The names of every file under the server's root, relative to it, sorted.
fn files_on_disk(server: &WebHdfsServer) -> Vec<String> {
    fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(server.dir(), server.dir(), &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_sends_the_data_to_the_datanode_and_get_reads_it_back_through_the_redirect() {
    let server = WebHdfsServer::start();
    let store = store(&server);
    let path = Path::from("in/part-0.bin");
    let data = pattern(3 * 1024 * 1024 + 17);
    // A payload of several chunks is sent as they are.
    let payload: object_store::PutPayload =
        data.chunks(1 << 20).map(Bytes::copy_from_slice).collect();
    server.clear_requests();
    let put = store.put(&path, payload).await.unwrap();
    assert!(put.e_tag.is_some());

    let requests = server.requests();
    let creates: Vec<_> = requests.iter().filter(|r| r.op == "CREATE").collect();
    assert_eq!(creates.len(), 2, "{requests:?}");
    assert_eq!(creates[0].role, "namenode");
    assert_eq!(creates[0].body_bytes, 0, "no data in the first request");
    assert_eq!(creates[0].path, "/data/in/part-0.bin");
    assert_eq!(creates[0].param("overwrite"), Some("true"));
    assert_eq!(creates[0].param("user.name"), Some("alice"));
    assert_eq!(creates[1].role, "datanode");
    assert_eq!(creates[1].body_bytes, data.len() as u64);
    assert_eq!(
        std::fs::read(server.dir().join("data/in/part-0.bin")).unwrap(),
        data
    );

    // Whole, as a stream of several chunks.
    server.clear_requests();
    let got = store.get(&path).await.unwrap();
    assert_eq!(got.meta.size, data.len() as u64);
    assert_eq!(got.meta.location, path);
    let chunks: Vec<Bytes> = got.into_stream().try_collect().await.unwrap();
    assert!(chunks.len() > 1, "read as it arrives, not whole");
    assert_eq!(chunks.concat(), data);
    let opens: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.op == "OPEN")
        .collect();
    assert_eq!(
        opens.iter().map(|r| r.role).collect::<Vec<_>>(),
        ["namenode", "datanode"]
    );
    assert_eq!(opens[1].param("user.name"), Some("alice"));

    // Ranges: OPEN with offset and length.
    server.clear_requests();
    let range = store.get_range(&path, 1_000_000..1_000_100).await.unwrap();
    assert_eq!(range, data.slice(1_000_000..1_000_100));
    let open = server
        .requests()
        .into_iter()
        .find(|r| r.op == "OPEN" && r.role == "datanode")
        .unwrap();
    assert_eq!(open.param("offset"), Some("1000000"));
    assert_eq!(open.param("length"), Some("100"));

    let n = data.len() as u64;
    let suffix = store
        .get_opts(
            &path,
            GetOptions::new().with_range(Some(GetRange::Suffix(10))),
        )
        .await
        .unwrap();
    assert_eq!(suffix.range, n - 10..n);
    assert_eq!(suffix.bytes().await.unwrap(), data.slice(data.len() - 10..));
    let from = store
        .get_opts(
            &path,
            GetOptions::new().with_range(Some(GetRange::Offset(n - 3))),
        )
        .await
        .unwrap();
    assert_eq!(from.bytes().await.unwrap(), data.slice(data.len() - 3..));
    let ranges = store
        .get_ranges(&path, &[0..5, 2_000_000..2_000_001])
        .await
        .unwrap();
    assert_eq!(ranges, [data.slice(0..5), data.slice(2_000_000..2_000_001)]);
    store.get_range(&path, n..n + 1).await.unwrap_err();

    // Head: GETFILESTATUS only.
    server.clear_requests();
    let head = store.head(&path).await.unwrap();
    assert_eq!(head.size, n);
    assert_eq!(head.e_tag, put.e_tag);
    let ops: Vec<_> = server.requests().into_iter().map(|r| r.op).collect();
    assert_eq!(ops, ["GETFILESTATUS"]);

    // An empty object.
    let empty = Path::from("empty");
    store.put(&empty, Bytes::new().into()).await.unwrap();
    assert_eq!(store.head(&empty).await.unwrap().size, 0);
    assert!(read(&store, &empty).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_that_must_create_refuses_an_existing_file() {
    let server = WebHdfsServer::start();
    let store = store(&server);
    let path = Path::from("once");
    store
        .put_opts(&path, "a".into(), PutMode::Create.into())
        .await
        .unwrap();
    let e = store
        .put_opts(&path, "b".into(), PutMode::Create.into())
        .await
        .unwrap_err();
    assert!(
        matches!(e, object_store::Error::AlreadyExists { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("FileAlreadyExistsException"), "{e}");
    assert_eq!(read(&store, &path).await, "a");
    let e = store
        .put_opts(
            &path,
            "c".into(),
            PutMode::Update(object_store::UpdateVersion {
                e_tag: None,
                version: None,
            })
            .into(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, object_store::Error::NotImplemented { .. }),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_appends_its_parts_to_a_hidden_temporary_renamed_at_complete() {
    let server = WebHdfsServer::start();
    let store = store(&server);
    let path = Path::from("out/result.csv");
    store.put(&path, "old".into()).await.unwrap();
    let parts = [pattern(1 << 20), pattern(700_000), pattern(5)];

    server.clear_requests();
    let mut upload = store.put_multipart(&path).await.unwrap();
    for part in &parts {
        upload.put_part(part.clone().into()).await.unwrap();
    }
    // Until complete, the object is what it was and the parts sit in a hidden sibling that
    // listings leave out.
    assert_eq!(read(&store, &path).await, "old");
    let on_disk = files_on_disk(&server);
    let temporary: Vec<_> = on_disk
        .iter()
        .filter(|f| f.ends_with("._COPYING_"))
        .collect();
    assert_eq!(temporary.len(), 1, "{on_disk:?}");
    assert!(
        temporary[0].starts_with("data/out/.result.csv."),
        "{temporary:?}"
    );
    assert_eq!(listed(&store, None).await, [path.to_string()]);

    upload.complete().await.unwrap();
    let expected = parts.concat();
    assert_eq!(read(&store, &path).await, expected);
    assert_eq!(files_on_disk(&server), ["data/out/result.csv"]);
    let writes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.role == "namenode" && r.method != "GET")
        .map(|r| r.op)
        .collect();
    assert_eq!(
        writes,
        ["CREATE", "APPEND", "APPEND", "MKDIRS", "RENAME"],
        "{writes:?}"
    );

    // Through WriteMultipart, parts sent concurrently still land in order.
    let upload = store.put_multipart(&path).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 100_000);
    let data = pattern(1_234_567);
    for chunk in data.chunks(77_777) {
        writer.write(chunk);
    }
    writer.finish().await.unwrap();
    assert_eq!(read(&store, &path).await, data);

    // Abort leaves nothing, and the object as it was.
    let mut upload = store.put_multipart(&path).await.unwrap();
    upload.put_part(parts[0].clone().into()).await.unwrap();
    upload.put_part(parts[1].clone().into()).await.unwrap();
    upload.abort().await.unwrap();
    assert_eq!(files_on_disk(&server), ["data/out/result.csv"]);
    assert_eq!(read(&store, &path).await, data);

    // No part at all: an empty object.
    let mut upload = store.put_multipart(&Path::from("out/none")).await.unwrap();
    upload.complete().await.unwrap();
    assert_eq!(store.head(&Path::from("out/none")).await.unwrap().size, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_walk_folders_and_page_through_big_ones() {
    // Two entries per LISTSTATUS_BATCH answer: every listing takes several pages.
    let server = WebHdfsServer::start_with(WebHdfsOptions {
        list_batch: 2,
        ..Default::default()
    });
    let store = store(&server);
    let files = [
        "day=1/a.csv",
        "day=1/b.csv",
        "day=1/c.csv",
        "day=1/sub/d.csv",
        "day=2/a.csv",
        "day=20/a.csv",
        "top.csv",
    ];
    for f in files {
        store.put(&Path::from(f), f.into()).await.unwrap();
    }
    assert_eq!(listed(&store, None).await, files);
    assert_eq!(listed(&store, Some(&Path::from("day=1"))).await, files[..4]);
    // A prefix is whole segments: day=2 is not day=20.
    assert_eq!(
        listed(&store, Some(&Path::from("day=2"))).await,
        ["day=2/a.csv"]
    );
    assert!(listed(&store, Some(&Path::from("no/such")))
        .await
        .is_empty());

    let top = store.list_with_delimiter(None).await.unwrap();
    assert_eq!(
        top.common_prefixes,
        [
            Path::from("day=1"),
            Path::from("day=2"),
            Path::from("day=20")
        ]
    );
    assert_eq!(
        top.objects
            .iter()
            .map(|m| m.location.to_string())
            .collect::<Vec<_>>(),
        ["top.csv"]
    );
    let day1 = store
        .list_with_delimiter(Some(&Path::from("day=1")))
        .await
        .unwrap();
    assert_eq!(day1.common_prefixes, [Path::from("day=1/sub")]);
    assert_eq!(day1.objects.len(), 3);
    assert_eq!(day1.objects[0].size, "day=1/a.csv".len() as u64);
    let batches = server
        .requests()
        .iter()
        .filter(|r| {
            r.op == "LISTSTATUS_BATCH" && r.param("startAfter").is_some_and(|s| !s.is_empty())
        })
        .count();
    assert!(batches > 0, "listings continued after a page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_rename_and_copy() {
    let server = WebHdfsServer::start();
    let store = store(&server);
    let a = Path::from("a.txt");
    let b = Path::from("deeper/b.txt");
    store.put(&a, "A".into()).await.unwrap();

    store.rename(&a, &b).await.unwrap();
    assert!(matches!(
        store.head(&a).await.unwrap_err(),
        object_store::Error::NotFound { .. }
    ));
    assert_eq!(read(&store, &b).await, "A");

    store.put(&a, "A2".into()).await.unwrap();
    let e = store.rename_if_not_exists(&a, &b).await.unwrap_err();
    assert!(
        matches!(e, object_store::Error::AlreadyExists { .. }),
        "{e}"
    );
    store.rename(&a, &b).await.unwrap();
    assert_eq!(read(&store, &b).await, "A2");

    let e = store.rename(&a, &b).await.unwrap_err();
    assert!(
        matches!(&e, object_store::Error::NotFound { path, .. } if path == "a.txt"),
        "{e}"
    );

    // Copy: read and written again, through a temporary.
    let c = Path::from("copies/c.txt");
    store.copy(&b, &c).await.unwrap();
    assert_eq!(read(&store, &c).await, "A2");
    let e = store.copy_if_not_exists(&b, &c).await.unwrap_err();
    assert!(
        matches!(e, object_store::Error::AlreadyExists { .. }),
        "{e}"
    );
    let big = pattern(2 * 1024 * 1024 + 3);
    store.put(&a, big.clone().into()).await.unwrap();
    store.copy(&a, &c).await.unwrap();
    assert_eq!(read(&store, &c).await, big);

    store.delete(&a).await.unwrap();
    store.delete(&b).await.unwrap();
    store.delete(&c).await.unwrap();
    // A file that is not there: nothing to do, as with S3.
    store.delete(&a).await.unwrap();
    // Folders stay, as HDFS keeps them.
    assert_eq!(files_on_disk(&server), Vec::<String>::new());
    assert!(server.dir().join("data/copies").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_files_and_folders_are_not_found() {
    let server = WebHdfsServer::start();
    let store = store(&server);
    store
        .put(&Path::from("dir/file"), "x".into())
        .await
        .unwrap();
    for missing in ["nope", "dir/nope", "dir"] {
        let e = store.get(&Path::from(missing)).await.unwrap_err();
        assert!(
            matches!(&e, object_store::Error::NotFound { path, .. } if path == missing),
            "{missing}: {e}"
        );
        let e = store.head(&Path::from(missing)).await.unwrap_err();
        assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");
    }
    let e = store
        .copy(&Path::from("nope"), &Path::from("x"))
        .await
        .unwrap_err();
    assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_user_is_permission_denied_with_the_servers_message() {
    let server = WebHdfsServer::start_with(WebHdfsOptions {
        refused_users: vec!["mallory".into()],
        ..Default::default()
    });
    store(&server)
        .put(&Path::from("f"), "x".into())
        .await
        .unwrap();
    let mallory = WebHdfsBuilder::new()
        .with_url(format!("{}/data", server.webhdfs_url()))
        .with_user("mallory")
        .build()
        .unwrap();
    let e = mallory.get(&Path::from("f")).await.unwrap_err();
    assert!(
        matches!(e, object_store::Error::PermissionDenied { .. }),
        "{e}"
    );
    let text = e.to_string();
    assert!(text.contains("AccessControlException"), "{text}");
    assert!(text.contains("Permission denied: user=mallory"), "{text}");
    let e = mallory.put(&Path::from("g"), "x".into()).await.unwrap_err();
    assert!(
        matches!(e, object_store::Error::PermissionDenied { .. }),
        "{e}"
    );
    let e = mallory
        .list(None)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        matches!(e, object_store::Error::PermissionDenied { .. }),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_user_the_server_asks_for_authentication() {
    let server = WebHdfsServer::start();
    let anonymous = WebHdfsBuilder::new()
        .with_url(server.webhdfs_url())
        .build()
        .unwrap();
    let e = anonymous.head(&Path::from("f")).await.unwrap_err();
    assert!(
        matches!(e, object_store::Error::Unauthenticated { .. }),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_token_is_sent_instead_of_the_user_and_to_the_datanode_too() {
    let server = WebHdfsServer::start_with(WebHdfsOptions {
        delegation_tokens: vec![("TOKEN-1".into(), "bob".into())],
        // The datanode gets the token only if the client sends it again.
        redirect_without_auth: true,
        ..Default::default()
    });
    let store = WebHdfsBuilder::new()
        .with_url(server.url())
        .with_user("ignored-with-a-token")
        .with_delegation_token("TOKEN-1")
        .build()
        .unwrap();
    let path = Path::from("user/bob/f");
    store.put(&path, "data".into()).await.unwrap();
    assert_eq!(read(&store, &path).await, "data");
    let requests = server.requests();
    for r in &requests {
        assert_eq!(r.param("delegation"), Some("TOKEN-1"), "{r:?}");
        assert_eq!(r.param("user.name"), None, "{r:?}");
    }
    assert!(requests
        .iter()
        .any(|r| r.role == "datanode" && r.op == "CREATE"));
    assert!(requests
        .iter()
        .any(|r| r.role == "datanode" && r.op == "OPEN"));

    let stale = WebHdfsBuilder::new()
        .with_url(server.url())
        .with_delegation_token("EXPIRED")
        .build()
        .unwrap();
    let e = stale.get(&path).await.unwrap_err();
    assert!(
        matches!(e, object_store::Error::Unauthenticated { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("InvalidToken"), "{e}");
    // The token never shows in an error.
    assert!(!format!("{e} {e:?}").contains("EXPIRED"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_follows_redirects_that_leave_it_out() {
    let server = WebHdfsServer::start_with(WebHdfsOptions {
        redirect_without_auth: true,
        ..Default::default()
    });
    let store = store(&server);
    let path = Path::from("f");
    store.put(&path, "data".into()).await.unwrap();
    let mut upload = store.put_multipart(&path).await.unwrap();
    upload.put_part("a".into()).await.unwrap();
    upload.put_part("b".into()).await.unwrap();
    upload.complete().await.unwrap();
    assert_eq!(read(&store, &path).await, "ab");
    let datanode: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.role == "datanode")
        .collect();
    // The put, the upload's two parts, the get.
    assert_eq!(datanode.len(), 4, "{datanode:?}");
    for r in datanode {
        assert_eq!(r.param("user.name"), Some("alice"), "{r:?}");
        assert!(r.param("namenoderpcaddress").is_some(), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kerberos_is_refused_with_a_clear_not_supported_error() {
    let server = WebHdfsServer::start_with(WebHdfsOptions {
        kerberos: true,
        ..Default::default()
    });
    let store = store(&server);
    let e = store.get(&Path::from("f")).await.unwrap_err();
    assert!(matches!(e, object_store::Error::NotSupported { .. }), "{e}");
    assert!(matches!(
        webhdfs_error(&e),
        Error::KerberosNotSupported { .. }
    ));
    let text = e.to_string();
    assert!(text.contains("Kerberos"), "{text}");
    assert!(text.contains("not supported"), "{text}");
    assert!(text.contains(&server.address()), "{text}");
    let e = store.put(&Path::from("f"), "x".into()).await.unwrap_err();
    assert!(matches!(e, object_store::Error::NotSupported { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_namenode_is_named_and_retriable() {
    let port = test_servers::free_port();
    let store = WebHdfsBuilder::new()
        .with_url(format!("webhdfs://127.0.0.1:{port}"))
        .with_user("alice")
        .build()
        .unwrap();
    let e = store.get(&Path::from("f")).await.unwrap_err();
    assert!(matches!(e, object_store::Error::Generic { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "cannot reach the namenode at http://127.0.0.1:{port}"
        )),
        "{text}"
    );
    assert!(webhdfs_error(&e).is_retriable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_is_retriable_and_a_client_error_is_not() {
    let server = WebHdfsServer::start();
    let store = store(&server);
    store.put(&Path::from("f"), "x".into()).await.unwrap();
    server.fail_next_requests(1);
    let e = store.head(&Path::from("f")).await.unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
    assert!(webhdfs_error(&e).is_retriable(), "{e}");
    // Once the server is back, the same call works.
    store.head(&Path::from("f")).await.unwrap();

    store.put(&Path::from("dir/x"), "x".into()).await.unwrap();
    let e = store.put(&Path::from("dir"), "x".into()).await.unwrap_err();
    assert!(!webhdfs_error(&e).is_retriable(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hdfs_url_reaches_the_namenode_its_configuration_names() {
    let server = WebHdfsServer::start();
    let (base, path) =
        object_store_webhdfs::split_url("hdfs://namenode.example:8020/data/x.csv").unwrap();
    let store = WebHdfsBuilder::new()
        .with_url(base)
        .with_namenode("namenode.example:8020", server.url())
        .with_user("alice")
        .build()
        .unwrap();
    store.put(&path, "1,2".into()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(server.dir().join("data/x.csv")).unwrap(),
        "1,2"
    );
    assert_eq!(store.to_string(), format!("WebHdfs({}/)", server.url()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_httpfs_gateway_without_batched_listings_or_rename_options_works_the_same() {
    let server = WebHdfsServer::start_with(WebHdfsOptions {
        httpfs: true,
        ..Default::default()
    });
    let store = store(&server);
    let data = pattern(1_500_000);
    let path = Path::from("d/f.bin");
    store.put(&path, data.clone().into()).await.unwrap();
    assert_eq!(read(&store, &path).await, data);
    assert_eq!(
        store.get_range(&path, 10..20).await.unwrap(),
        data.slice(10..20)
    );
    // One port: the data went through the gateway, after a redirect to data=true.
    let requests = server.requests();
    assert!(
        requests.iter().all(|r| r.role == "namenode"),
        "{requests:?}"
    );
    let creates: Vec<_> = requests.iter().filter(|r| r.op == "CREATE").collect();
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[0].param("data"), None);
    assert_eq!(creates[0].body_bytes, 0);
    assert_eq!(creates[1].param("data"), Some("true"));
    assert_eq!(creates[1].body_bytes, data.len() as u64);

    // Whole listings (LISTSTATUS) once LISTSTATUS_BATCH is refused.
    store.put(&Path::from("d/g"), "g".into()).await.unwrap();
    assert_eq!(listed(&store, None).await, ["d/f.bin", "d/g"]);
    let ops: Vec<_> = server.requests().into_iter().map(|r| r.op).collect();
    assert!(ops.iter().any(|op| op == "LISTSTATUS"), "{ops:?}");

    // The old rename answers false onto an existing file: replaced when overwriting,
    // refused otherwise; a missing source is not found.
    store.put(&Path::from("d/h"), "h".into()).await.unwrap();
    let e = store
        .rename_if_not_exists(&Path::from("d/h"), &Path::from("d/g"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, object_store::Error::AlreadyExists { .. }),
        "{e}"
    );
    store
        .rename(&Path::from("d/h"), &Path::from("d/g"))
        .await
        .unwrap();
    assert_eq!(read(&store, &Path::from("d/g")).await, "h");
    let e = store
        .rename(&Path::from("d/h"), &Path::from("d/g"))
        .await
        .unwrap_err();
    assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");

    // A multipart upload: CREATE and APPEND through the gateway, renamed at complete.
    let mut upload = store.put_multipart(&path).await.unwrap();
    upload.put_part(data.slice(..700_000).into()).await.unwrap();
    upload.put_part(data.slice(700_000..).into()).await.unwrap();
    upload.complete().await.unwrap();
    assert_eq!(read(&store, &path).await, data);
    assert_eq!(files_on_disk(&server), ["data/d/f.bin", "data/d/g"]);
}
