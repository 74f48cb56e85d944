//! A stand-in Loki: `GET /loki/api/v1/query_range` answered with the shapes of Loki's
//! HTTP API documentation (`status`, `data.resultType = "streams"`, `data.result[]`
//! of `stream` + `values` of `["<ns>", "<line>"]`, `data.stats`), honouring `start`
//! (inclusive), `end` (exclusive), `limit` and `direction=forward` like Loki does: the
//! first `limit` entries in time over all streams, grouped by stream. Scripted answers
//! (a 429, a 5xx, a page that never comes) go first, one per request.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

/// One log entry Loki holds.
#[derive(Debug, Clone)]
pub struct Stored {
    pub labels: BTreeMap<String, String>,
    pub ts: i64,
    pub line: String,
}

/// An answer to give instead of the entries.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// This status, `Retry-After` header and body.
    Status(u16, Option<&'static str>, &'static str),
    /// Never answer (until the client gives up).
    Hang,
    /// Answer with the entries, as without a script.
    Entries,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub start: i64,
    pub end: i64,
    pub limit: usize,
    pub direction: String,
    pub tenant: Option<String>,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    entries: Mutex<Vec<Stored>>,
    script: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<Seen>>,
    asked: Notify,
}

/// The running stand-in.
#[derive(Clone)]
pub struct FakeLoki {
    inner: Arc<Inner>,
    pub url: String,
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

impl FakeLoki {
    pub async fn start() -> FakeLoki {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .route("/loki/api/v1/query_range", get(query_range))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeLoki { inner, url }
    }

    /// Stores a line of the stream `labels` at `ts`.
    pub fn push(&self, labels: &[(&str, &str)], ts: i64, line: &str) {
        self.inner.entries.lock().unwrap().push(Stored {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ts,
            line: line.to_owned(),
        });
    }

    /// Answers the next requests so, in order, before the entries again.
    pub fn script(&self, answers: &[Scripted]) {
        self.inner
            .script
            .lock()
            .unwrap()
            .extend(answers.iter().cloned());
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Waits until `n` requests came in (at most 20 s).
    pub async fn wait_requests(&self, n: usize) -> Vec<Seen> {
        crate::support::wait_until(
            &self.inner.asked,
            || self.inner.requests.lock().unwrap().len() >= n,
            || format!("{n} requests expected, got {:?}", self.requests()),
        )
        .await;
        self.requests()
    }
}

async fn query_range(
    State(inner): State<Arc<Inner>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let num = |k: &str| params.get(k).and_then(|v| v.parse::<i64>().ok());
    let (Some(start), Some(end)) = (num("start"), num("end")) else {
        return (StatusCode::BAD_REQUEST, "start and end are required here").into_response();
    };
    let limit = num("limit").unwrap_or(100) as usize;
    let direction = params.get("direction").cloned().unwrap_or_default();
    inner.requests.lock().unwrap().push(Seen {
        start,
        end,
        limit,
        direction: direction.clone(),
        tenant: headers
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        at: Instant::now(),
    });
    inner.asked.notify_waiters();
    let scripted = inner.script.lock().unwrap().pop_front();
    match scripted {
        Some(Scripted::Status(code, retry_after, body)) => {
            let mut response = (StatusCode::from_u16(code).unwrap(), body).into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            return response;
        }
        Some(Scripted::Hang) => std::future::pending::<()>().await,
        Some(Scripted::Entries) | None => {}
    }
    if direction != "forward" {
        return (
            StatusCode::BAD_REQUEST,
            "this stand-in answers forward only",
        )
            .into_response();
    }
    let mut hits: Vec<Stored> = inner
        .entries
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.ts >= start && e.ts < end)
        .cloned()
        .collect();
    hits.sort_by_key(|e| e.ts);
    hits.truncate(limit);
    // Grouped by stream, in the order the streams first appear; oldest first in each.
    let mut streams: Vec<(BTreeMap<String, String>, Vec<Value>)> = Vec::new();
    for e in hits {
        let value = json!([e.ts.to_string(), e.line]);
        match streams.iter_mut().find(|(l, _)| *l == e.labels) {
            Some((_, values)) => values.push(value),
            None => streams.push((e.labels, vec![value])),
        }
    }
    let result: Vec<Value> = streams
        .into_iter()
        .map(|(labels, values)| json!({"stream": labels, "values": values}))
        .collect();
    axum::Json(json!({
        "status": "success",
        "data": {
            "resultType": "streams",
            "result": result,
            "stats": {
                "summary": {
                    "bytesProcessedPerSecond": 12_345,
                    "linesProcessedPerSecond": 67,
                    "totalBytesProcessed": 1_024,
                    "totalLinesProcessed": 8,
                    "execTime": 0.001,
                    "queueTime": 0.0,
                    "totalEntriesReturned": 3
                },
                "querier": {"store": {"totalChunksRef": 0}},
                "ingester": {"totalReached": 1}
            }
        }
    }))
    .into_response()
}
