//! Notifiers: how the healer tells humans. [`NtfyNotifier`] publishes to an ntfy
//! server, [`WebhookNotifier`] posts a JSON document to any URL.

mod ntfy;
mod webhook;

pub use ntfy::NtfyNotifier;
pub use webhook::{SIGNATURE_HEADER, WebhookNotifier};

use std::time::Duration;

use selfheal_core::{Error, ErrorKind, Result};

/// Default time a notification request may take.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses an http(s) URL, with an error that says what to give instead.
pub(crate) fn parse_http_url(url: &str, what: &str) -> Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        Error::invalid(format!(
            "invalid {what} URL `{}`: {e}; give a full URL such as https://ntfy.example.com",
            redact_str(url)
        ))
        .with_source(e)
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::invalid(format!(
            "{what} URL must be http or https, got `{}:`",
            parsed.scheme()
        )));
    }
    Ok(parsed)
}

/// A URL string with anything after `://user:` up to `@` hidden, for error messages.
fn redact_str(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => redacted(&u),
        Err(_) => match (url.find("://"), url.find('@')) {
            (Some(s), Some(at)) if at > s => format!("{}://<redacted>{}", &url[..s], &url[at..]),
            _ => url.to_owned(),
        },
    }
}

/// `url` without its password.
pub(crate) fn redacted(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("redacted"));
    }
    url.to_string()
}

/// An HTTP client that ignores environment proxies (notifications go where they are
/// configured to go) and says who it is.
pub(crate) fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .user_agent(concat!("selfheal/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("could not build the HTTP client: {e}; check the TLS setup"),
            )
            .with_source(e)
        })
}

/// Sends `request` and maps what came back into selfheal's error: 5xx, 429, timeouts
/// and connection failures are retryable (`Unavailable`/`Timeout`), other non-2xx
/// answers are `InvalidInput` (the request or its credentials are wrong).
pub(crate) async fn send(
    what: &str,
    url: &reqwest::Url,
    request: reqwest::RequestBuilder,
) -> Result<()> {
    let shown = redacted(url);
    let response = request.send().await.map_err(|e| {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Unavailable
        };
        let e = e.without_url();
        Error::new(
            kind,
            format!("{what} request to {shown} failed: {e}; check that the server is reachable"),
        )
        .with_source(e)
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = response.text().await.unwrap_or_default();
    if body.len() > 512 {
        let mut cut = 512;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    let body = body.trim();
    let kind = if status.is_server_error() || status.as_u16() == 429 {
        ErrorKind::Unavailable
    } else {
        ErrorKind::InvalidInput
    };
    let hint = match status.as_u16() {
        401 | 403 => "; check the token",
        404 => "; check the URL and topic",
        429 => "; the server rate-limits: send fewer notifications",
        _ => "",
    };
    Err(Error::new(
        kind,
        format!("{what} at {shown} answered HTTP {status}: {body}{hint}"),
    ))
}

#[cfg(test)]
pub(crate) mod testserver {
    //! A tiny HTTP/1.1 server on a free loopback port that records every request
    //! (method, path, headers, body) and answers with a fixed status.

    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// One request as the server read it.
    #[derive(Debug, Clone)]
    pub struct Recorded {
        pub method: String,
        pub path: String,
        /// Header names lower-cased.
        pub headers: BTreeMap<String, String>,
        pub body: Vec<u8>,
    }

    impl Recorded {
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("the body is JSON")
        }
    }

    /// Starts the server; every request gets `status` with `body`.
    pub async fn serve(
        status: u16,
        reply: &'static str,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Recorded>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let mut request_line = lines.next().unwrap_or_default().split(' ');
                    let method = request_line.next().unwrap_or_default().to_owned();
                    let path = request_line.next().unwrap_or_default().to_owned();
                    let headers: BTreeMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let length: usize = headers
                        .get("content-length")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0);
                    let mut body = buf[head_end + 4..].to_vec();
                    while body.len() < length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => body.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = tx.send(Recorded {
                        method,
                        path,
                        headers,
                        body,
                    });
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                        reply.len(),
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        (addr, rx)
    }
}
