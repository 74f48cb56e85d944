//! Follows Loki's `GET /loki/api/v1/tail` over a WebSocket
//! ([`LokiSource::follow_tail`]).
//!
//! Each connection asks for `query`, `limit` and `start` = the cursor's timestamp
//! (inclusive, as the poller asks): Loki first sends what it holds from there, then
//! lines as they come, in frames of `{"streams":[..],"dropped_entries":[..]}`. Entries
//! the cursor had when the connection opened (before its timestamp, or read at it) are
//! skipped, so a reconnect or a restart repeats nothing and, unlike `start` = cursor +
//! 1 ns, loses none of the entries that share the last nanosecond. Within a connection
//! every entry Loki sends is taken (Loki sends each once, not always in time order), and
//! the cursor keeps the latest read. It is saved after each frame.

use std::sync::Arc;

use futures_util::StreamExt;
use selfheal_core::source::Feed;
use selfheal_core::{Error, Result};
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::{Cursor, FIRST_BACKOFF, LokiSource, MAX_BACKOFF, parse_tail_frame, quote};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How one connection attempt went.
enum Connect {
    Open(Box<Socket>),
    /// No answer, a 429 or a 5xx: back off and try again.
    Retry(String),
    /// A refusal retrying will not fix (a bad query, a refused token, no upgrade).
    Fatal(String),
}

/// How a connection ended.
enum Ended {
    /// The healer stopped.
    Stopped,
    /// Loki or the network closed it; `frames` says whether any frame came.
    Closed { frames: bool, why: String },
}

impl LokiSource {
    /// The `run` of a source that follows `tail`.
    pub(super) async fn run_tail(&self, feed: &Feed) -> Result<()> {
        let tls = self.tls_connector()?;
        let mut cursor = self.start(feed).await;
        let mut saved = cursor.clone();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let connected = tokio::select! {
                c = self.connect(&cursor, tls.clone()) => c,
                _ = feed.stopped() => return Ok(()),
            };
            let why = match connected {
                Connect::Open(socket) => {
                    self.stats.send_modify(|s| s.connections += 1);
                    tracing::debug!(
                        source = feed.name(),
                        start = cursor.ts,
                        "following the Loki tail"
                    );
                    match self.follow(feed, *socket, &mut cursor, &mut saved).await {
                        Ended::Stopped => return Ok(()),
                        Ended::Closed { frames, why } => {
                            if frames {
                                backoff = FIRST_BACKOFF;
                            }
                            why
                        }
                    }
                }
                Connect::Retry(why) => why,
                Connect::Fatal(why) => return Err(Error::invalid(why)),
            };
            tracing::warn!(
                source = feed.name(),
                error = %why,
                retry_in = ?backoff,
                resume_at = cursor.ts,
                "the Loki tail is down; reconnecting from the cursor"
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = feed.stopped() => return Ok(()),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Reads frames until the connection ends or the healer stops.
    async fn follow(
        &self,
        feed: &Feed,
        mut socket: Socket,
        cursor: &mut Cursor,
        saved: &mut Cursor,
    ) -> Ended {
        // What was read before this connection: Loki sends again from its timestamp.
        let resume = cursor.clone();
        let mut frames = false;
        let stopped = feed.stopped();
        tokio::pin!(stopped);
        loop {
            let message = tokio::select! {
                m = socket.next() => m,
                _ = &mut stopped => {
                    // Best effort: the healer is stopping either way.
                    let _ = socket.close(None).await;
                    return Ended::Stopped;
                }
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Binary(_))) => {
                    feed.malformed("a binary WebSocket message where Loki sends JSON text");
                    continue;
                }
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map_or_else(
                        || "Loki closed the WebSocket".to_owned(),
                        |f| format!("Loki closed the WebSocket ({}: {})", f.code, f.reason),
                    );
                    return Ended::Closed { frames, why };
                }
                // Pings are answered by the socket itself.
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Ended::Closed {
                        frames,
                        why: format!("the WebSocket broke: {e}"),
                    };
                }
                None => {
                    return Ended::Closed {
                        frames,
                        why: "the WebSocket ended".to_owned(),
                    };
                }
            };
            let answer = match parse_tail_frame(text.as_bytes()) {
                Ok(answer) => answer,
                Err(e) => {
                    feed.malformed(&e.to_string());
                    continue;
                }
            };
            frames = true;
            let dropped = answer.dropped.len() as u64;
            if dropped > 0 {
                tracing::warn!(
                    source = feed.name(),
                    dropped,
                    "Loki dropped entries of the tail (it could not keep up); they never reach the healer"
                );
            }
            self.stats.send_modify(|s| {
                s.frames += 1;
                s.dropped_by_loki += dropped;
            });
            let taken = self.take(feed, answer, cursor, Some(&resume)).await;
            self.save(feed, cursor, saved).await;
            if taken.is_none() {
                return Ended::Stopped;
            }
        }
    }

    /// One WebSocket handshake, with the source's headers, from `cursor`.
    async fn connect(&self, cursor: &Cursor, tls: Option<Connector>) -> Connect {
        let url = match self.tail_url(cursor.ts) {
            Ok(url) => url,
            Err(why) => return Connect::Fatal(why),
        };
        let mut request = match url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => return Connect::Fatal(format!("`{url}` is not a WebSocket URL: {e}")),
        };
        request.headers_mut().extend(self.headers.clone());
        let shown = format!("{}/loki/api/v1/tail", self.url);
        let handshake = tokio_tungstenite::connect_async_tls_with_config(request, None, false, tls);
        match tokio::time::timeout(self.timeout, handshake).await {
            Err(_) => Connect::Retry(format!("no answer from {shown} within {:?}", self.timeout)),
            Ok(Ok((socket, _))) => Connect::Open(Box::new(socket)),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status();
                let body = response.body().as_deref().map(quote).unwrap_or_default();
                let why = format!("{shown} answered {status}: {body}");
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    Connect::Retry(why)
                } else if status.is_client_error() {
                    Connect::Fatal(why)
                } else {
                    Connect::Fatal(format!(
                        "{why} instead of switching to a WebSocket: does a proxy in between \
                         pass WebSocket upgrades? Else poll (follow_tail(false))"
                    ))
                }
            }
            Ok(Err(e)) => Connect::Retry(format!("no WebSocket to {shown}: {e}")),
        }
    }

    /// `ws(s)://<base>/loki/api/v1/tail?query=..&start=..&limit=..`.
    fn tail_url(&self, start: i64) -> std::result::Result<reqwest::Url, String> {
        let mut url = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("the Loki URL `{}` is not a URL: {e}", self.url))?;
        let scheme = match url.scheme() {
            "http" | "ws" => "ws",
            "https" | "wss" => "wss",
            other => {
                return Err(format!(
                    "the Loki URL `{}` has the scheme `{other}`: use http(s)://",
                    self.url
                ));
            }
        };
        url.set_scheme(scheme)
            .map_err(|()| format!("the Loki URL `{}` cannot be made ws(s)://", self.url))?;
        let path = format!("{}/loki/api/v1/tail", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.query_pairs_mut()
            .clear()
            .append_pair("query", &self.query)
            .append_pair("start", &start.to_string())
            .append_pair("limit", &self.limit.to_string());
        Ok(url)
    }

    /// For `https://`: rustls as reqwest sets it up (the process's default provider,
    /// else aws-lc-rs; the platform's verifier), so both connections trust alike.
    fn tls_connector(&self) -> Result<Option<Connector>> {
        if !self.url.starts_with("https://") && !self.url.starts_with("wss://") {
            return Ok(None);
        }
        use rustls_platform_verifier::BuilderVerifierExt;
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_platform_verifier())
            .map_err(|e| Error::invalid(format!("TLS for the Loki tail: {e}")))?
            .with_no_client_auth();
        Ok(Some(Connector::Rustls(Arc::new(config))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_url_keeps_the_base_path_and_encodes_the_query() {
        let source = LokiSource::new("https://gw.example/logs/", r#"{app="api"} |= "a&b""#)
            .limit(7)
            .follow_tail(true);
        let url = source.tail_url(42).unwrap();
        assert_eq!(url.scheme(), "wss");
        assert_eq!(url.path(), "/logs/loki/api/v1/tail");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("query".into(), r#"{app="api"} |= "a&b""#.into()),
                ("start".into(), "42".into()),
                ("limit".into(), "7".into()),
            ]
        );
        let plain = LokiSource::new("http://loki:3100", "{a=\"b\"}");
        assert_eq!(plain.tail_url(1).unwrap().scheme(), "ws");
        let err = LokiSource::new("ftp://loki", "{}").tail_url(1).unwrap_err();
        assert!(err.contains("use http(s)://"), "{err}");
    }

    #[test]
    fn https_gets_a_rustls_connector_and_http_none() {
        let tls = LokiSource::new("https://loki", "{}")
            .tls_connector()
            .unwrap();
        assert!(matches!(tls, Some(Connector::Rustls(_))));
        let plain = LokiSource::new("http://loki", "{}")
            .tls_connector()
            .unwrap();
        assert!(plain.is_none());
    }
}
