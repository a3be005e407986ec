//! The floor a deployed model's REST scoring is measured against (`scripts/bench-service`):
//! an axum server that parses each JSON body and answers it back, no model, no engine.
//!
//!     cargo run --release -p service --example echo_floor -- PORT
//!
//! Prints `listening on http://127.0.0.1:PORT` once bound; loopback only.

#![allow(clippy::print_stdout)] // a program of its own: says where it listens

use axum::routing::post;
use axum::Json;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let app = axum::Router::new().route(
        "/echo",
        post(|Json(v): Json<serde_json::Value>| async move { Json(v) }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
