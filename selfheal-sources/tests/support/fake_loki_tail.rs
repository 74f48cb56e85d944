//! A stand-in for Loki's `GET /loki/api/v1/tail`: a WebSocket server that records each
//! handshake (its `query`, `start`, `limit` and headers) and plays one script per
//! connection: text frames shaped like Loki's (`{"streams":[{"stream":{..},"values":
//! [["<ns>","<line>"]]}],"dropped_entries":[{"labels":{..},"timestamp":"<ns>"}]}`) or
//! anything else, then a close, or it holds the connection until the client leaves.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// What one connection does.
#[derive(Debug, Clone)]
pub enum Step {
    /// Sends this text message.
    Text(String),
    /// Closes the connection (a close frame).
    Close,
    /// Keeps the connection open until the client closes it.
    Hold,
}

/// One handshake as received.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub path: String,
    pub params: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
}

impl Handshake {
    pub fn start(&self) -> i64 {
        self.params["start"].parse().unwrap()
    }
}

#[derive(Default)]
struct Inner {
    scripts: Mutex<VecDeque<Vec<Step>>>,
    handshakes: Mutex<Vec<Handshake>>,
    connected: Notify,
}

/// The running stand-in.
#[derive(Clone)]
pub struct FakeTail {
    inner: Arc<Inner>,
    /// `http://127.0.0.1:<port>`, as a `LokiSource` is given it.
    pub url: String,
}

/// A stream of a frame: its labels, and its entries as (timestamp, line).
pub type Stream<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, &'a str)]);

/// A frame of `tail`: `streams`, and `dropped` entries as (timestamp, app).
pub fn frame(streams: &[Stream<'_>], dropped: &[(i64, &str)]) -> String {
    let streams: Vec<Value> = streams
        .iter()
        .map(|(labels, values)| {
            let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
            let values: Vec<Value> = values
                .iter()
                .map(|(ts, line)| json!([ts.to_string(), line]))
                .collect();
            json!({"stream": labels, "values": values})
        })
        .collect();
    let dropped: Vec<Value> = dropped
        .iter()
        .map(|(ts, app)| json!({"labels": {"app": app}, "timestamp": ts.to_string()}))
        .collect();
    json!({"streams": streams, "dropped_entries": dropped}).to_string()
}

impl FakeTail {
    /// Serves one script per connection, in order; connections past the scripts hold.
    pub async fn start(scripts: Vec<Vec<Step>>) -> FakeTail {
        let inner = Arc::new(Inner {
            scripts: Mutex::new(scripts.into()),
            ..Inner::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = inner.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(server.clone(), stream));
            }
        });
        FakeTail { inner, url }
    }

    pub fn handshakes(&self) -> Vec<Handshake> {
        self.inner.handshakes.lock().unwrap().clone()
    }

    /// Waits until `n` handshakes came in (at most 20 s).
    pub async fn wait_handshakes(&self, n: usize) -> Vec<Handshake> {
        crate::support::wait_until(
            &self.inner.connected,
            || self.inner.handshakes.lock().unwrap().len() >= n,
            || format!("{n} connections expected, got {:?}", self.handshakes()),
        )
        .await;
        self.handshakes()
    }
}

async fn serve(inner: Arc<Inner>, stream: tokio::net::TcpStream) {
    let recorder = inner.clone();
    // The signature is tungstenite's `Callback`, whose error is an HTTP response.
    #[allow(clippy::result_large_err)]
    let record = move |request: &Request, response: Response| {
        let url = reqwest::Url::parse(&format!("http://loki{}", request.uri())).unwrap();
        let handshake = Handshake {
            path: url.path().to_owned(),
            params: url.query_pairs().into_owned().collect(),
            headers: request
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
        };
        recorder.handshakes.lock().unwrap().push(handshake);
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
        return;
    };
    inner.connected.notify_waiters();
    let script = inner
        .scripts
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| vec![Step::Hold]);
    for step in script {
        match step {
            Step::Text(text) => {
                if socket.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
            Step::Close => {
                let _ = socket.close(None).await;
                // Until the client's close frame comes back.
                while let Some(Ok(_)) = socket.next().await {}
                return;
            }
            Step::Hold => while let Some(Ok(_)) = socket.next().await {},
        }
    }
}
