//! A local HTTP/1.1 server for the wire tests: it records every request (method, path,
//! headers, JSON body) and answers with scripted replies, in order. A reply can also
//! hang, holding the connection open without answering, to exercise timeouts.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use selfheal_core::{AdviceRequest, Incident, IncidentStatus, Severity, Uuid};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Status, extra headers and a body.
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Never answer.
    Hang,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Self {
        Self::raw(status, body.to_string())
    }
    pub fn raw(status: u16, body: impl Into<String>) -> Self {
        Reply::Http {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Reply::Http { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }
}

/// A request as the server saw it. Header names are lower-case.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    requests: mpsc::UnboundedReceiver<Recorded>,
}

impl Server {
    pub async fn start(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, requests) = mpsc::unbounded_channel();
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, replies) = (tx.clone(), replies.clone());
                tokio::spawn(serve(stream, tx, replies));
            }
        });
        Server { base, requests }
    }

    /// Every request received so far.
    pub fn received(&mut self) -> Vec<Recorded> {
        let mut out = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            out.push(r);
        }
        out
    }
}

async fn serve(
    stream: TcpStream,
    tx: mpsc::UnboundedSender<Recorded>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await.unwrap();
    let body = serde_json::from_slice(&body).expect("the client sent JSON");
    tx.send(Recorded {
        method,
        path,
        headers,
        body,
    })
    .ok();
    let reply = replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| Reply::raw(599, r#"{"error":"no reply scripted"}"#));
    let Reply::Http {
        status,
        headers,
        body,
    } = reply
    else {
        // Hold the connection open without answering.
        std::future::pending::<()>().await;
        return;
    };
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    let mut stream = reader.into_inner();
    stream.write_all(out.as_bytes()).await.unwrap();
    stream.shutdown().await.ok();
}

/// A port nothing listens on.
pub async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    base
}

/// What a model should answer: a registered strategy with parameters.
pub fn answer(strategy: Option<&str>, params: &str, confidence: f64) -> String {
    json!({
        "root_cause": "the connection pool leaks under load",
        "strategy": strategy,
        "params": params,
        "confidence": confidence,
        "explanation": "connections grow until the pool is exhausted",
    })
    .to_string()
}

/// A real chat-completions response carrying `content` (OpenAI reference shape).
pub fn completion(content: &str, total_tokens: u64) -> Value {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": total_tokens - 10,
            "completion_tokens": 10,
            "total_tokens": total_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306"
    })
}

/// A real chat-completions response with one tool call.
pub fn tool_call(function: &str, arguments: &str) -> Value {
    json!({
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1699896916,
        "model": "gpt-4o-mini",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": function, "arguments": arguments}
                }]
            },
            "logprobs": null,
            "finish_reason": "tool_calls"
        }],
        "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99}
    })
}

/// OpenAI's 429 body for a tokens-per-minute limit.
pub fn rate_limited() -> Value {
    json!({"error": {
        "message": "Rate limit reached for gpt-4o-mini in organization org-abc on tokens per min (TPM): Limit 200000, Used 199000, Requested 1500. Please try again in 150ms.",
        "type": "tokens",
        "param": null,
        "code": "rate_limit_exceeded"
    }})
}

/// A real Ollama `/api/chat` response (stream: false) carrying `content`.
pub fn ollama_chat(content: &str) -> Value {
    json!({
        "model": "llama3.2",
        "created_at": "2023-12-12T14:13:43.416799Z",
        "message": {"role": "assistant", "content": content},
        "done": true,
        "done_reason": "stop",
        "total_duration": 5191566416u64,
        "load_duration": 2154458,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 383809000,
        "eval_count": 298,
        "eval_duration": 4799921000u64
    })
}

/// A request about an unknown error on `orders-db`, with `sample` as its one message;
/// `restart` (needs an integer `grace_secs`) and `clear_cache` are registered.
pub fn request(sample: &str) -> AdviceRequest {
    let now = Utc::now();
    let incident = Incident {
        id: Uuid::new_v4(),
        target: "orders-db".into(),
        fingerprint: format!("{:016x}", rand_u64()),
        template: "query failed: <*>".into(),
        stack: None,
        related: Vec::new(),
        pattern: None,
        status: IncidentStatus::Open,
        severity: Severity::Medium,
        occurrences: 12,
        samples: vec![sample.to_owned()],
        opened_at: now,
        last_seen: now,
        closed_at: None,
        reason: String::new(),
    };
    let mut r = AdviceRequest::new(incident, vec!["restart".into(), "clear_cache".into()]);
    r.param_schemas.insert("restart".into(), restart_schema());
    r.stack_signature = Some("orders::db::query\norders::api::checkout".into());
    r.metrics = json!({"pool_in_use": 50, "pool_max": 50});
    r
}

pub fn restart_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"grace_secs": {"type": "integer", "minimum": 0, "maximum": 300}},
        "required": ["grace_secs"],
        "additionalProperties": false
    })
}

fn rand_u64() -> u64 {
    Uuid::new_v4().as_u64_pair().0
}

/// Short retries so the tests stay fast; `Retry-After` still decides when given.
pub fn fast_http() -> selfheal_llm::HttpSettings {
    selfheal_llm::HttpSettings {
        timeout: Duration::from_secs(5),
        max_retries: 2,
        backoff: Duration::from_millis(10),
        max_retry_wait: Duration::from_secs(5),
    }
}
