//! Shutting down without dropping work: on the signal the listener closes and readiness turns
//! 503, while connections already open are still answered (each then closed); a request in
//! flight is answered in full, a price WebSocket is closed with 1012 (service restart) after the
//! drain delay so that its client reconnects elsewhere, and the server stops within its
//! deadline.

use crate::support::*;
use etx_server::startup::Application;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_signalled_instance_turns_unready_finishes_what_it_has_and_closes_its_sockets() {
    let data_dir = std::env::temp_dir().join(format!("etx-test-{}", uuid::Uuid::now_v7()));
    let mut config = test_config(data_dir);
    config.database_url = fresh_database_url().await;
    config.http.drain_delay_ms = 800;
    config.http.shutdown_deadline_secs = 10;
    let app = Application::build(config).await.unwrap();
    let addr = app.local_addr();
    let (signal, on_signal) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async move {
        let _ = on_signal.await;
    }));
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let alice = json!({"username": "alice", "email": "alice@example.com", "password": PASSWORD});
    let r = client
        .post(format!("{base}/api/auth/register"))
        .json(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let ready = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/prices"))
        .await
        .unwrap();
    let hello = ws.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("connection"));

    // A login whose body is still arriving when the signal comes.
    let body = json!({"login": "alice", "password": PASSWORD}).to_string();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A connection a balancer keeps open to this instance.
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    let signalled = Instant::now();
    signal.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Draining: new connections are refused at once (a balancer retries them elsewhere)...
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted while stopping"
    );
    // ...while one already open is still answered: not ready, and closed after the answer.
    kept.write_all(format!("GET /health/ready HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    kept.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_lowercase().contains("connection: close"),
        "{answer}"
    );
    let readiness = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let v: Value = serde_json::from_str(readiness).unwrap();
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "shutdown" && c["ok"] == false),
        "{v}"
    );

    // The socket is told to reconnect once the drain delay is over.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = ws.next().await {
            if let Ok(Message::Close(frame)) = m {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("the socket is closed");
    assert_eq!(closed, Some(1012));
    assert!(signalled.elapsed() >= Duration::from_millis(800));

    // The login in flight is answered in full.
    slow.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("access_token"), "{answer}");

    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stopped within the deadline")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_deadline_cuts_off_what_does_not_finish() {
    let data_dir = std::env::temp_dir().join(format!("etx-test-{}", uuid::Uuid::now_v7()));
    let mut config = test_config(data_dir);
    config.database_url = fresh_database_url().await;
    config.http.shutdown_deadline_secs = 1;
    let app = Application::build(config).await.unwrap();
    let addr = app.local_addr();
    let (signal, on_signal) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async move {
        let _ = on_signal.await;
    }));
    // A request that never finishes sending its body.
    let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(
            b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    signal.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stopped at the deadline")
        .unwrap()
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}
