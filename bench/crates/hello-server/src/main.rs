//! A small HTTP server in the style of an axum service: tokio's runtime, hyper's HTTP/1
//! connection handling, a router over method and path, JSON-ish responses.
//!
//! `hello-server --version` prints the version; `hello-server --self-test` starts the server on
//! a free loopback port, requests `/health` from it and exits 0 when the answer is right (the
//! benchmark's proof that the image runs); otherwise it serves on $PORT (default 8080).

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn route(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => (StatusCode::OK, "{\"status\":\"ok\"}".to_string()),
        (&Method::GET, "/") => (
            StatusCode::OK,
            format!(
                "{{\"service\":\"hello-server\",\"version\":\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
        ),
        (&Method::POST, "/echo") => match req.into_body().collect().await {
            Ok(collected) => (
                StatusCode::OK,
                String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
            ),
            Err(_) => (
                StatusCode::BAD_REQUEST,
                "{\"error\":\"unreadable body\"}".into(),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "{\"error\":\"not found\"}".to_string(),
        ),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response"))
}

async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(route))
                .await;
        });
    }
}

async fn self_test() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(serve(listener));
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    if answer.starts_with("HTTP/1.1 200") && answer.ends_with("{\"status\":\"ok\"}") {
        Ok(())
    } else {
        Err(format!("unexpected answer: {answer:?}"))
    }
}

#[tokio::main]
async fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("--version") => println!("hello-server {}", env!("CARGO_PKG_VERSION")),
        Some("--self-test") => match self_test().await {
            Ok(()) => println!("self-test ok"),
            Err(e) => {
                eprintln!("self-test failed: {e}");
                std::process::exit(1);
            }
        },
        _ => {
            let port: u16 = std::env::var("PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(8080);
            let addr = SocketAddr::from(([0, 0, 0, 0], port));
            let listener = TcpListener::bind(addr).await.expect("bind");
            eprintln!("listening on {addr}");
            tokio::select! {
                _ = serve(listener) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    }
}
