//! What the admin tests share: a served router, an SSE reader over real HTTP, a token.
#![allow(dead_code)] // each test binary uses its part

pub mod flag;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use selfheal_admin::AdminConfig;
use selfheal_core::Healer;
use tokio::net::TcpListener;

/// A token made for this test run (never a fixed secret).
pub fn token() -> String {
    format!("t-{}", uuid::Uuid::new_v4().simple())
}

/// The admin config the tests use: `token` as an operator.
pub fn config(token: &str) -> AdminConfig {
    AdminConfig::default().token(selfheal_admin::Role::Operator, "test-operator", token)
}

/// Serves the admin router of `healer` on 127.0.0.1 and answers its base URL.
pub async fn serve(healer: &Healer, token: &str) -> String {
    let app = selfheal_admin::router(healer.clone(), config(token));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

/// Serves the admin router of `healer` nested at `/selfheal` the way a host would;
/// answers the dashboard's URL (`…/selfheal`: axum nests `/` at the prefix without a
/// trailing slash).
pub async fn serve_nested(healer: &Healer, token: &str) -> String {
    let app = axum::Router::new().nest(
        "/selfheal",
        selfheal_admin::router(healer.clone(), config(token)),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}/selfheal")
}

/// One server-sent event as read off the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

/// Reads `/events` over HTTP, frame by frame.
pub struct SseReader {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    pub async fn connect(base: &str, token: &str, last_event_id: Option<u64>) -> Self {
        let mut req = reqwest::Client::new()
            .get(format!("{base}/events"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Self {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), or `None` if the stream ended or
    /// nothing came within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut sse = Sse {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut any = false;
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        sse.id = Some(v.trim().parse().unwrap());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        sse.event = v.trim().to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if !sse.data.is_empty() {
                            sse.data.push('\n');
                        }
                        sse.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                if any {
                    return Some(sse);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buf
                .push_str(std::str::from_utf8(&chunk.ok()?).unwrap());
        }
    }
}

/// A counter's value in a Prometheus text answer.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
