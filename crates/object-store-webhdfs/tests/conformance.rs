//! object_store's own conformance suite (`object_store::integration`, what its backends run)
//! against the WebHDFS test server, each part on a server of its own.

use std::future::Future;
use std::time::Duration;

use object_store::integration;
use object_store_webhdfs::{WebHdfs, WebHdfsBuilder};
use test_servers::WebHdfsServer;

fn store(server: &WebHdfsServer) -> WebHdfs {
    WebHdfsBuilder::new()
        .with_url(format!("{}/user/alice/conformance", server.webhdfs_url()))
        .with_user("alice")
        .build()
        .unwrap()
}

/// Runs one part of the suite; a hang fails it instead of the whole run.
async fn run<F: Future<Output = ()>>(what: &str, part: impl FnOnce(WebHdfs) -> F) {
    let server = WebHdfsServer::start();
    tokio::time::timeout(Duration::from_secs(120), part(store(&server)))
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in 120 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_list() {
    run("put_get_delete_list", |s| async move {
        integration::put_get_delete_list(&s).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_opts() {
    run(
        "get_opts",
        |s| async move { integration::get_opts(&s).await },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_uses_directories_correctly() {
    run("list_uses_directories_correctly", |s| async move {
        integration::list_uses_directories_correctly(&s).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_delimiter() {
    run("list_with_delimiter", |s| async move {
        integration::list_with_delimiter(&s).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_copy() {
    run("rename_and_copy", |s| async move {
        integration::rename_and_copy(&s).await;
        integration::copy_if_not_exists(&s).await;
        integration::copy_rename_nonexistent_object(&s).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_get() {
    run("stream_get", |s| async move {
        integration::stream_get(&s).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_out_of_order() {
    run("multipart_out_of_order", |s| async move {
        integration::multipart_out_of_order(&s).await;
        integration::multipart_race_condition(&s, true).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_offset_exclusivity() {
    run("list_with_offset_exclusivity", |s| async move {
        integration::list_with_offset_exclusivity(&s).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_nonexistent_object() {
    run("get_nonexistent_object", |s| async move {
        let err = integration::get_nonexistent_object(&s, None)
            .await
            .unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_opts() {
    // PutMode::Create is HDFS's overwrite=false; PutMode::Update is not implemented.
    run("put_opts", |s| async move {
        integration::put_opts(&s, false).await
    })
    .await;
}
