//! [`TcpVerifier`]: scores a target by whether a TCP connection opens, and how fast.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal_core::{Error, Health, Result, Verifier};
use tracing::{debug, instrument};

use super::http::latency_score;
use crate::executor::format_duration;

/// Connects to `host:port`: 100 when the connection opens within the slow threshold,
/// fewer points when slower (the same formula as
/// [`HttpVerifier`](crate::HttpVerifier)), 0 when refused, unreachable, unresolvable
/// or timed out. The connection is closed at once; nothing is sent.
///
/// ```
/// use selfheal_core::Verifier;
/// use selfheal_strategies::TcpVerifier;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// // Nothing listens on port 9 here.
/// let health = TcpVerifier::new("127.0.0.1:9")?.check().await?;
/// assert_eq!(health.score, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TcpVerifier {
    address: String,
    timeout: Duration,
    slow_threshold: Duration,
}

impl TcpVerifier {
    /// Default connect timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
    /// Default latency above which a connection loses points.
    pub const DEFAULT_SLOW_THRESHOLD: Duration = Duration::from_millis(500);

    /// Checks `address` (`host:port`).
    ///
    /// Errors: `InvalidInput` when it has no port.
    pub fn new(address: impl Into<String>) -> Result<Self> {
        let address = address.into();
        let port_ok = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(Error::invalid(format!(
                "invalid TCP address `{address}`; give host:port such as 127.0.0.1:6379"
            )));
        }
        Ok(TcpVerifier {
            address,
            timeout: Self::DEFAULT_TIMEOUT,
            slow_threshold: Self::DEFAULT_SLOW_THRESHOLD,
        })
    }

    /// How long a connection may take to open (default 3 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Latency above which it loses points (default 500 ms; zero disables).
    pub fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = threshold;
        self
    }
}

#[async_trait]
impl Verifier for TcpVerifier {
    fn name(&self) -> &str {
        "tcp"
    }

    #[instrument(skip_all, fields(address = %self.address), err)]
    async fn check(&self) -> Result<Health> {
        let started = Instant::now();
        let connected =
            tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(&self.address)).await;
        let latency = started.elapsed();
        let health = match connected {
            Ok(Ok(_stream)) => {
                let score = latency_score(latency, self.slow_threshold);
                Health::new(score, format!("connected in {}", format_duration(latency)))
            }
            Ok(Err(e)) => Health::new(0, format!("connection failed: {e}")),
            Err(_) => Health::new(
                0,
                format!(
                    "timed out: no connection within {}",
                    format_duration(self.timeout)
                ),
            ),
        };
        debug!(score = health.score, detail = %health.detail, "tcp check");
        Ok(health)
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn an_open_port_scores_100_and_a_closed_one_0() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let verifier = TcpVerifier::new(addr.to_string()).unwrap();

        let up = verifier.check().await.unwrap();
        assert_eq!(up.score, 100, "{}", up.detail);
        assert!(up.detail.starts_with("connected in "), "{}", up.detail);
        let (_accepted, _) = listener.accept().await.unwrap();

        drop(listener);
        let down = verifier.check().await.unwrap();
        assert_eq!(down.score, 0);
        assert!(
            down.detail.to_lowercase().contains("refused"),
            "{}",
            down.detail
        );
    }

    #[tokio::test]
    async fn an_unresolvable_host_is_score_0_not_an_error() {
        let health = TcpVerifier::new("no-such-host.invalid:80")
            .unwrap()
            .timeout(Duration::from_secs(5))
            .check()
            .await
            .unwrap();
        assert_eq!(health.score, 0, "{}", health.detail);
    }

    #[test]
    fn addresses_need_a_port() {
        for bad in ["localhost", "localhost:", ":80", "host:99999", "host:http"] {
            assert!(TcpVerifier::new(bad).is_err(), "{bad}");
        }
        assert!(TcpVerifier::new("[::1]:6379").is_ok());
    }
}
