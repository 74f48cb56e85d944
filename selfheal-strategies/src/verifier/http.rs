//! [`HttpVerifier`]: health from an HTTP GET.

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal_core::{Error, ErrorKind, Health, Result, Verifier};
use tracing::{debug, instrument};

use crate::executor::format_duration;

/// Measures health with an HTTP GET.
///
/// | answer | score | detail |
/// |---|---|---|
/// | 2xx within the slow threshold | 100 | `HTTP 200 OK in 12ms` |
/// | 2xx slower than the threshold | 100 − penalty (≥ 50) | `HTTP 200 OK in 3.2s (slower than 1s)` |
/// | any other status (after redirects) | 0 | `HTTP 503 Service Unavailable` |
/// | no answer within the timeout | 0 | `timed out: no response within 5s` |
/// | connection or protocol error | 0 | `connection failed: …` with the error chain |
///
/// **Latency penalty**: with `latency` the time to the response headers and `slow` the
/// slow threshold (default 1 s), a 2xx answer scores
/// `100 − min(50, round(10 × (latency − slow) / slow))` when `latency > slow`: ten
/// points per threshold's worth of extra latency, never below 50, so a slow but working
/// target scores below a healthy one yet above a failing one. With the default 80-point
/// pass mark a target fails verification from about 3 × the threshold. A zero threshold
/// disables the penalty.
///
/// An unreachable target is `Ok` with score 0 (the verifier worked, the target is
/// unhealthy). Requests go straight to the target: environment proxies are ignored. The
/// URL's password and the error's URL are kept out of `Debug` and details.
///
/// ```no_run
/// use std::time::Duration;
/// use selfheal_core::Verifier;
/// use selfheal_strategies::HttpVerifier;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let verifier = HttpVerifier::new("http://127.0.0.1:8080/healthz")?
///     .timeout(Duration::from_secs(2))
///     .slow_threshold(Duration::from_millis(250));
/// let health = verifier.check().await?;
/// if health.score < 80 {
///     tracing::warn!(score = health.score, detail = %health.detail, "api is unhealthy");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpVerifier {
    url: reqwest::Url,
    timeout: Duration,
    slow_threshold: Duration,
    client: reqwest::Client,
}

impl HttpVerifier {
    /// Default time to wait for the response headers.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default latency above which a 2xx answer loses points.
    pub const DEFAULT_SLOW_THRESHOLD: Duration = Duration::from_secs(1);

    /// A verifier that GETs `url` (http or https) with the default timeout (5 s) and slow
    /// threshold (1 s).
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for a URL that does not parse or is not
    /// http(s); [`ErrorKind::Internal`] if the HTTP client cannot be built.
    pub fn new(url: impl AsRef<str>) -> Result<Self> {
        let url = url.as_ref();
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            Error::invalid(format!(
                "invalid health check URL `{url}`: {e}; give a full URL such as http://127.0.0.1:8080/healthz"
            ))
            .with_source(e)
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid(format!(
                "health check URL must be http or https, got `{}:`",
                parsed.scheme()
            )));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .user_agent(concat!("selfheal/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("could not build the HTTP client: {e}; check the TLS setup"),
                )
                .with_source(e)
            })?;
        Ok(HttpVerifier {
            url: parsed,
            timeout: Self::DEFAULT_TIMEOUT,
            slow_threshold: Self::DEFAULT_SLOW_THRESHOLD,
            client,
        })
    }

    /// How long to wait for the response headers (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Latency above which a 2xx answer loses points (default 1 s; zero disables the
    /// penalty). See the type's docs for the formula.
    pub fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = threshold;
        self
    }

    /// The URL checked, without its password.
    pub fn url(&self) -> String {
        redacted(&self.url)
    }
}

impl fmt::Debug for HttpVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpVerifier")
            .field("url", &redacted(&self.url))
            .field("timeout", &self.timeout)
            .field("slow_threshold", &self.slow_threshold)
            .finish_non_exhaustive()
    }
}

/// `url` without its password.
fn redacted(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        // Only fails for URLs that cannot have credentials, which have no password.
        let _ = url.set_password(Some("redacted"));
    }
    url.to_string()
}

/// The score of a 2xx answer that took `latency`; see [`HttpVerifier`].
pub(crate) fn latency_score(latency: Duration, slow: Duration) -> u8 {
    if slow.is_zero() || latency <= slow {
        return 100;
    }
    let over = (latency - slow).as_secs_f64() / slow.as_secs_f64();
    let penalty = (10.0 * over).round().min(50.0);
    // `penalty` is in 0..=50, so the cast is exact.
    100 - penalty as u8
}

/// `err` and its sources, `: `-separated, without repeats and without the URL.
fn error_chain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[async_trait]
impl Verifier for HttpVerifier {
    fn name(&self) -> &str {
        "http"
    }

    #[instrument(skip_all, fields(url = %redacted(&self.url)), err)]
    async fn check(&self) -> Result<Health> {
        let started = Instant::now();
        let sent = self
            .client
            .get(self.url.clone())
            .timeout(self.timeout)
            .send()
            .await;
        let latency = started.elapsed();
        let health = match sent {
            Ok(response) => {
                let status = response.status();
                let label = match status.canonical_reason() {
                    Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
                    None => format!("HTTP {}", status.as_u16()),
                };
                if status.is_success() {
                    let score = latency_score(latency, self.slow_threshold);
                    let mut detail = format!("{label} in {}", format_duration(latency));
                    if score < 100 {
                        detail.push_str(&format!(
                            " (slower than {})",
                            format_duration(self.slow_threshold)
                        ));
                    }
                    Health::new(score, detail)
                } else {
                    Health::new(0, label)
                }
            }
            Err(e) if e.is_timeout() => Health::new(
                0,
                format!(
                    "timed out: no response within {}",
                    format_duration(self.timeout)
                ),
            ),
            Err(e) if e.is_connect() => {
                Health::new(0, format!("connection failed: {}", error_chain(e)))
            }
            Err(e) => Health::new(0, format!("request failed: {}", error_chain(e))),
        };
        debug!(score = health.score, detail = %health.detail, "http check");
        Ok(health)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    /// How the test server answers.
    #[derive(Clone, Copy)]
    enum Reply {
        /// This raw response, after this much simulated latency.
        With(&'static str, Duration),
        /// Reads the request and never answers.
        Never,
    }

    /// A one-route HTTP/1.1 server on a free loopback port. Reports the request line of
    /// every request it reads.
    async fn serve(reply: Reply) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let requests_tx = requests_tx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let _ = requests_tx.send(head.lines().next().unwrap_or_default().to_owned());
                    match reply {
                        Reply::With(response, latency) => {
                            tokio::time::sleep(latency).await;
                            let _ = socket.write_all(response.as_bytes()).await;
                            let _ = socket.shutdown().await;
                        }
                        Reply::Never => std::future::pending::<()>().await,
                    }
                });
            }
        });
        (addr, requests)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndown";
    const NOT_FOUND: &str =
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    #[tokio::test]
    async fn a_2xx_answer_scores_100_and_the_request_is_a_get_of_the_path() {
        let (addr, mut requests) = serve(Reply::With(OK, Duration::ZERO)).await;
        let verifier = HttpVerifier::new(format!("http://{addr}/healthz?deep=1")).unwrap();

        let health = verifier.check().await.unwrap();

        assert_eq!(health.score, 100, "{}", health.detail);
        assert!(
            health.detail.starts_with("HTTP 200 OK in "),
            "{}",
            health.detail
        );
        assert_eq!(
            requests.recv().await.unwrap(),
            "GET /healthz?deep=1 HTTP/1.1"
        );
        assert_eq!(verifier.name(), "http");
    }

    #[tokio::test]
    async fn a_503_answer_scores_0_with_the_status_in_the_detail() {
        let (addr, _requests) = serve(Reply::With(UNAVAILABLE, Duration::ZERO)).await;
        let health = HttpVerifier::new(format!("http://{addr}/"))
            .unwrap()
            .check()
            .await
            .unwrap();
        assert_eq!(health, Health::new(0, "HTTP 503 Service Unavailable"));
    }

    #[tokio::test]
    async fn a_404_answer_scores_0() {
        let (addr, _requests) = serve(Reply::With(NOT_FOUND, Duration::ZERO)).await;
        let health = HttpVerifier::new(format!("http://{addr}/missing"))
            .unwrap()
            .check()
            .await
            .unwrap();
        assert_eq!(health, Health::new(0, "HTTP 404 Not Found"));
    }

    #[tokio::test]
    async fn a_refused_connection_is_ok_with_score_0_and_the_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener); // nothing listens there now

        let health = HttpVerifier::new(format!("http://{addr}/healthz"))
            .unwrap()
            .check()
            .await
            .unwrap();

        assert_eq!(health.score, 0);
        assert!(
            health.detail.starts_with("connection failed: "),
            "{}",
            health.detail
        );
        assert!(
            health.detail.to_lowercase().contains("refused"),
            "{}",
            health.detail
        );
        assert!(
            !health.detail.contains(&addr.to_string()),
            "no URL: {}",
            health.detail
        );
    }

    #[tokio::test]
    async fn no_answer_within_the_timeout_is_ok_with_score_0() {
        let (addr, mut requests) = serve(Reply::Never).await;
        let verifier = HttpVerifier::new(format!("http://{addr}/healthz"))
            .unwrap()
            .timeout(Duration::from_millis(200));

        let started = Instant::now();
        let health = verifier.check().await.unwrap();

        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(
            health,
            Health::new(0, "timed out: no response within 200ms")
        );
        assert_eq!(
            requests.recv().await.unwrap(),
            "GET /healthz HTTP/1.1",
            "it connected and asked"
        );
    }

    #[tokio::test]
    async fn a_slow_2xx_answer_loses_points_but_stays_above_failing() {
        let (addr, _requests) = serve(Reply::With(OK, Duration::from_millis(300))).await;
        let health = HttpVerifier::new(format!("http://{addr}/"))
            .unwrap()
            .slow_threshold(Duration::from_millis(100))
            .check()
            .await
            .unwrap();
        // ≥ 300 ms against a 100 ms threshold: a penalty of at least 20, at most 50.
        assert!((50..=80).contains(&health.score), "{health:?}");
        assert!(
            health.detail.starts_with("HTTP 200 OK in "),
            "{}",
            health.detail
        );
        assert!(
            health.detail.ends_with("(slower than 100ms)"),
            "{}",
            health.detail
        );
    }

    #[test]
    fn latency_penalty_follows_the_documented_formula() {
        let slow = Duration::from_secs(1);
        assert_eq!(latency_score(Duration::from_millis(10), slow), 100);
        assert_eq!(latency_score(slow, slow), 100);
        assert_eq!(latency_score(Duration::from_millis(1500), slow), 95);
        assert_eq!(latency_score(Duration::from_secs(2), slow), 90);
        assert_eq!(latency_score(Duration::from_secs(3), slow), 80);
        assert_eq!(latency_score(Duration::from_secs(60), slow), 50);
        assert_eq!(latency_score(Duration::from_secs(60), Duration::ZERO), 100);
    }

    #[test]
    fn invalid_urls_are_refused_up_front() {
        for bad in ["not a url", "ftp://example.com/", "/healthz"] {
            let err = HttpVerifier::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn the_password_never_shows() {
        let verifier = HttpVerifier::new("http://admin:hunter2@127.0.0.1:1/healthz").unwrap();
        assert!(!format!("{verifier:?}").contains("hunter2"));
        assert_eq!(verifier.url(), "http://admin:redacted@127.0.0.1:1/healthz");
    }
}
